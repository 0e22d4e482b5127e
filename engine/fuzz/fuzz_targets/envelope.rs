//! Opening arbitrary bytes as a sealed object must fail cleanly, never panic.
#![no_main]

use cairn_engine::crypto::Key32;
use cairn_engine::format::envelope::{ObjectKind, epoch_of, open};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = Key32::from_bytes([7; 32]);
    let _ = epoch_of(data, "fuzz");
    let _ = open(data, ObjectKind::Snapshot, b"snapshots/x", "fuzz", |_| Ok(&key));
});
