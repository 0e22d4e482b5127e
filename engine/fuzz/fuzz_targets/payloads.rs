//! Every postcard payload decoder (config, keyring, pack header, index segment, tree,
//! snapshot, lock, deletion marks, audit entry and its name), the padded plaintext, the pack
//! locator and a whole pack (every envelope "opened" as itself, so the parsing after the AEAD
//! sees these bytes) on arbitrary plaintext: errors, never panics.
#![no_main]

use cairn_engine::format::audit::{AuditEntry, parse_entry_name};
use cairn_engine::format::config::Config;
use cairn_engine::format::index::IndexSegment;
use cairn_engine::format::keyring::KeyringDoc;
use cairn_engine::format::lock::LockDoc;
use cairn_engine::format::marks::PruneMarks;
use cairn_engine::format::pack::{self, PackHeader, header_span};
use cairn_engine::format::padding::unframe;
use cairn_engine::format::snapshot::Snapshot;
use cairn_engine::format::tree::Tree;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Config::decode(data);
    let _ = KeyringDoc::decode(data, "fuzz");
    let _ = PackHeader::decode(data, data.len() as u64, "fuzz");
    let _ = IndexSegment::decode(data, "fuzz");
    let _ = Tree::decode(data, "fuzz");
    let _ = Snapshot::decode(data, "fuzz");
    let _ = LockDoc::decode(data, "fuzz");
    let _ = PruneMarks::decode(data, "fuzz");
    let _ = AuditEntry::decode_with_mac(data, "fuzz");
    let _ = parse_entry_name(&String::from_utf8_lossy(data));
    let _ = header_span(data.len() as u64, data, "fuzz");
    let _ = unframe(data, "fuzz");
    let _ = pack::open(data, "fuzz", |_, _, sealed| Ok(sealed.to_vec()));
});
