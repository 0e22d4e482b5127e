//! The bodies of the fuzz targets (`engine/fuzz`), one per decoder of repository bytes, shared
//! with the test that replays the committed corpus on stable (`tests/it/fuzz_corpus.rs`), so
//! an input found once stays a test. Each body feeds its bytes to a decoder, which must return
//! an error rather than panic, and checks what is cheap to check on what decodes: decoding the
//! re-encoded value gives the value back, and opening a sealed object gives its plaintext.
//!
//! A fuzzer cannot forge an authentication tag, so the decoders behind the AEAD get plaintext
//! directly; where an open path does work after the AEAD (the keyring's checks, a pack's
//! locator, header and tiling), the body seals the input under a fixed key, or opens the pack
//! through a null cipher, to reach it. Only with the `fuzzing` feature: these functions panic
//! to report a finding, which production code never does.

// A panic here is how a body reports a finding to libFuzzer or the replay test.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use std::fmt::Debug;

use crate::audit::{AuditEntry, entry_name, parse_entry_name};
use crate::blob;
use crate::codec::Reader;
use crate::compress;
use crate::config::Config;
use crate::crypto::{Key32, TAG_LEN};
use crate::envelope::{self, ENVELOPE_VERSION, HEADER_LEN, ObjectKind};
use crate::error::Result;
use crate::id::{ObjectId, PackId};
use crate::index::IndexSegment;
use crate::keyring::KeyringDoc;
use crate::keys::{KeyFile, Keyring, RecoveryCode};
use crate::lock::LockDoc;
use crate::marks::PruneMarks;
use crate::pack::{self, PackBlob};
use crate::padding;
use crate::slot::{SlotDoc, SlotInfo};
use crate::snapshot::Snapshot;
use crate::tree::{Tree, TreeRefs};

/// The key the bodies seal and open with. Seeds sealed under it pass authentication.
pub const FUZZ_KEY: [u8; 32] = [7; 32];
/// The name sealed objects of the `envelope` body are bound to.
pub const ENVELOPE_NAME: &[u8] = b"snapshots/fuzz";
/// The name the `keyring` body seals its input as.
pub const KEYRING_NAME: &str = "keyring/fuzz";
/// The most bytes a blob body may decompress to (the chunker's largest maximum is 16 MiB; a
/// smaller bound keeps every execution under the fuzzer's 64 MiB allocation limit).
pub const MAX_BLOB: usize = 1 << 20;

/// A target's body: takes any bytes; panics only to report a finding.
pub type Body = fn(&[u8]);

/// Every target: its name (the fuzz binary and corpus directory) and its body.
pub const TARGETS: &[(&str, Body)] = &[
    ("audit", audit),
    ("blob_codec", blob_codec),
    ("config", config),
    ("envelope", envelope),
    ("index", index),
    ("key_file", key_file),
    ("keyring", keyring),
    ("lock", lock),
    ("marks", marks),
    ("pack", pack),
    ("recovery_code", recovery_code),
    ("slot", slot),
    ("snapshot", snapshot),
    ("tree", tree),
];

/// Checks that a decoded value survives encoding and decoding again.
fn round_trip<T: PartialEq + Debug>(value: &T, encode: impl Fn(&T) -> Vec<u8>, decode: impl Fn(&[u8]) -> Result<T>) {
    let bytes = encode(value);
    match decode(&bytes) {
        Ok(again) => assert_eq!(&again, value, "decode(encode(x)) != x"),
        Err(e) => panic!("decode(encode(x)) failed: {e}"),
    }
}

/// A small, input-dependent number (which bit to flip).
fn spread(data: &[u8]) -> usize {
    let h = blake3::hash(data);
    let mut n = [0u8; 8];
    n.copy_from_slice(h.as_bytes().get(..8).unwrap_or(&[0; 8]));
    usize::try_from(u64::from_le_bytes(n) >> 16).unwrap_or(0)
}

/// The sealed-object envelope: the bytes as a sealed object (open fails without a tag made
/// under [`FUZZ_KEY`]); the bytes as plaintext, which must open again after sealing and must
/// not open once any bit of the sealed form is flipped.
pub fn envelope(data: &[u8]) {
    let key = Key32::from_bytes(FUZZ_KEY);
    let claimed = envelope::epoch_of(data, "fuzz");
    if let Ok(plain) = envelope::open(data, ObjectKind::Snapshot, ENVELOPE_NAME, "fuzz", |_| Ok(&key)) {
        assert!(claimed.is_ok(), "an envelope opened whose epoch does not parse");
        assert_eq!(plain.len() + envelope::OVERHEAD, data.len());
    }
    let epoch = u32::from(data.first().copied().unwrap_or(0));
    let sealed = envelope::seal(&key, epoch, ObjectKind::Snapshot, ENVELOPE_NAME, data).expect("sealing");
    assert_eq!(envelope::epoch_of(&sealed, "fuzz").ok(), Some(epoch));
    let opened = envelope::open(&sealed, ObjectKind::Snapshot, ENVELOPE_NAME, "fuzz", |_| Ok(&key));
    assert_eq!(opened.ok().as_deref(), Some(data), "open(seal(x)) != x");
    let mut bad = sealed;
    let bit = spread(data) % (bad.len() * 8);
    if let Some(byte) = bad.get_mut(bit / 8) {
        *byte ^= 1 << (bit % 8);
    }
    assert!(
        envelope::open(&bad, ObjectKind::Snapshot, ENVELOPE_NAME, "fuzz", |_| Ok(&key)).is_err(),
        "a sealed object with bit {bit} flipped opened"
    );
    // Version 2 (sealed to the reader key of FUZZ_KEY as a data key): the bytes as an envelope,
    // then sealed and opened again.
    let reader_open = |bytes: &[u8]| {
        envelope::open_sealed(bytes, ObjectKind::Snapshot, ENVELOPE_NAME, "fuzz", |to| {
            crate::keys::opening_key(&key, to, "fuzz")
        })
    };
    if let Ok(plain) = reader_open(data)
        && data.first() == Some(&envelope::READER_ENVELOPE_VERSION)
    {
        assert_eq!(plain.len() + envelope::READER_OVERHEAD, data.len());
    }
    let sealer = crate::keys::ReaderSealer::new(epoch, &crate::keys::reader_public(epoch, &key)).expect("sealer");
    let sealed = sealer.seal(ObjectKind::Snapshot, ENVELOPE_NAME, data).expect("sealing to the reader");
    assert_eq!(reader_open(&sealed).ok().as_deref(), Some(data), "open(seal_to_reader(x)) != x");
    assert!(
        envelope::open_sealed(&sealed, ObjectKind::Config, ENVELOPE_NAME, "fuzz", |_| Ok(std::borrow::Cow::Borrowed(
            &key
        )))
        .is_err(),
        "a version 2 config opened"
    );
}

/// A key slot (JSON, the one unsealed object), the slot info sealed inside it, and the write
/// kit sealed in a write-only slot (its plaintext, as the AEAD and the MAC let it through).
pub fn slot(data: &[u8]) {
    if let Ok(doc) = SlotDoc::decode(data, "fuzz") {
        round_trip(&doc, SlotDoc::encode, |b| SlotDoc::decode(b, "fuzz"));
        let _ = doc.associated_data();
        let _ = doc.sealed_key_ad();
    }
    if let Ok(info) = SlotInfo::decode(data, "fuzz") {
        round_trip(&info, SlotInfo::encode, |b| SlotInfo::decode(b, "fuzz"));
    }
    crate::keys::fuzz_kit_decode(data);
}

/// A recovery code as typed.
pub fn recovery_code(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(code) = RecoveryCode::parse(&text) {
        let shown = code.display();
        assert_eq!(shown.len(), 39);
        assert_eq!(RecoveryCode::parse(&shown).ok(), Some(code), "parse(display(c)) != c");
    }
}

/// A key file as read from disk: what parses writes out again to the same key file.
pub fn key_file(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(file) = KeyFile::parse(&text) {
        assert_eq!(KeyFile::parse(&file.encode()).ok(), Some(file), "parse(encode(f)) != f");
    }
}

/// The keyring's plaintext, directly and through [`Keyring::open`] (sealed under
/// [`FUZZ_KEY`]), whose checks run after the AEAD; an opened keyring seals and opens again
/// to the same keys.
pub fn keyring(data: &[u8]) {
    let decoded = KeyringDoc::decode(data, "fuzz");
    if let Ok(doc) = &decoded {
        let again = KeyringDoc::decode(&doc.encode(), "fuzz");
        assert!(again.as_ref().ok() == Some(doc), "decode(encode(keyring)) != keyring");
    }
    let key = Key32::from_bytes(FUZZ_KEY);
    let sealed = envelope::seal(&key, 0, ObjectKind::Keyring, KEYRING_NAME.as_bytes(), data).expect("sealing");
    let repository_id = ObjectId(decoded.as_ref().map(|d| d.repository_id).unwrap_or_default());
    let Ok(ring) = Keyring::open(&sealed, &key, KEYRING_NAME, repository_id) else { return };
    assert!(decoded.is_ok(), "Keyring::open accepted a keyring its decoder refuses");
    let resealed = ring.seal(&key, KEYRING_NAME).expect("sealing a keyring");
    let again = Keyring::open(&resealed, &key, KEYRING_NAME, repository_id).expect("reopening a sealed keyring");
    assert_eq!(again.epochs(), ring.epochs());
    assert_eq!(again.listed_slots(), ring.listed_slots());
    assert_eq!(again.revision(), ring.revision());
    assert_eq!(again.metadata_floor(), ring.metadata_floor());
    assert_eq!(again.identity(), ring.identity());
    for epoch in ring.epochs() {
        assert_eq!(again.epoch_fingerprint(epoch), ring.epoch_fingerprint(epoch));
        assert_eq!(again.epoch_created(epoch), ring.epoch_created(epoch));
    }
}

/// The config's plaintext (decoded and validated).
pub fn config(data: &[u8]) {
    if let Ok(c) = Config::decode(data) {
        round_trip(&c, Config::encode, Config::decode);
        assert!(c.max_pack_size() > u64::from(c.pack_target_size));
    }
}

/// An index segment's plaintext.
pub fn index(data: &[u8]) {
    if let Ok(seg) = IndexSegment::decode(data, "fuzz") {
        round_trip(&seg, IndexSegment::encode, |b| IndexSegment::decode(b, "fuzz"));
    }
}

/// A snapshot's plaintext.
pub fn snapshot(data: &[u8]) {
    if let Ok((s, proof)) = Snapshot::decode_any(data, "fuzz") {
        match proof {
            None => round_trip(&s, Snapshot::encode, |b| Snapshot::decode(b, "fuzz")),
            // The proof is checked, never trusted: checking one that does not verify fails
            // cleanly.
            Some(p) => {
                let key = crate::crypto::Key32::from_bytes([7; 32]);
                let _ = p.verify(data, "fuzz", &key);
            }
        }
    }
}

/// A tree blob's plaintext (entries sorted, names valid); every entry is found by its name.
/// Its references alone ([`TreeRefs`]) decode from exactly the same bytes, to the same ids.
pub fn tree(data: &[u8]) {
    let refs = TreeRefs::decode(data, "fuzz");
    assert_eq!(refs.is_ok(), Tree::decode(data, "fuzz").is_ok(), "both decoders accept or both refuse");
    if let Ok(t) = Tree::decode(data, "fuzz") {
        assert_eq!(refs.ok(), Some(t.refs()));
        round_trip(&t, |t| t.clone().encode(), |b| Tree::decode(b, "fuzz"));
        for node in &t.nodes {
            assert_eq!(t.find(&node.name), Some(node));
        }
    }
}

/// A lock's plaintext.
pub fn lock(data: &[u8]) {
    if let Ok(l) = LockDoc::decode(data, "fuzz") {
        round_trip(&l, LockDoc::encode, |b| LockDoc::decode(b, "fuzz"));
        let _ = l.holder();
    }
}

/// A deletion marks object's plaintext.
pub fn marks(data: &[u8]) {
    if let Ok(m) = PruneMarks::decode(data, "fuzz") {
        round_trip(&m, PruneMarks::encode, |b| PruneMarks::decode(b, "fuzz"));
    }
}

/// An audit entry's stored plaintext (`entry || MAC`), and the bytes as an entry name.
pub fn audit(data: &[u8]) {
    if let Ok((entry, mac, body)) = AuditEntry::decode_with_mac(data, "fuzz") {
        assert_eq!(Some(body.as_slice()), data.get(..data.len() - mac.len()), "the MAC input is the stored entry");
        let mut again = entry.encode();
        again.extend_from_slice(&mac);
        match AuditEntry::decode_with_mac(&again, "fuzz") {
            Ok((e, m, _)) => assert!(e == entry && m == mac, "decode(encode(entry)) != entry"),
            Err(e) => panic!("decode(encode(entry)) failed: {e}"),
        }
    }
    let name = String::from_utf8_lossy(data);
    if let Some((seq, mac)) = parse_entry_name(&name) {
        assert_eq!(entry_name(seq, &mac), name, "an entry has one name");
    }
}

/// A blob's opened plaintext (padding, codec byte, zstd frame bounded by [`MAX_BLOB`]), the
/// bare `codec || body` and the padded-plaintext framing. What decodes encodes again to
/// something that decodes to it; a valid padded plaintext is exactly its payload framed.
pub fn blob_codec(data: &[u8]) {
    if let Ok(content) = blob::decode(data, MAX_BLOB, "fuzz") {
        for level in [0, 3] {
            let plain = blob::encode(&content, level).expect("encoding a blob");
            assert_eq!(blob::decode(&plain, content.len(), "fuzz").ok(), Some(content.clone()));
        }
    }
    if let Ok(content) = compress::decode(data, MAX_BLOB, "fuzz") {
        assert!(content.len() <= MAX_BLOB.max(data.len()));
        let encoded = compress::encode(&content, 3);
        assert_eq!(compress::decode(&encoded, content.len(), "fuzz").ok(), Some(content));
    }
    if let Ok(payload) = padding::unframe(data, "fuzz") {
        assert_eq!(padding::frame(payload, data.len()).ok().as_deref(), Some(data), "frame(unframe(x)) != x");
    }
}

/// Seals as an envelope with no encryption: header, plaintext, a zero tag. Only for
/// [`pack`], which opens with [`null_open`] to reach the parsing behind the AEAD.
pub fn null_seal(_kind: ObjectKind, _name: &[u8], plain: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(plain.len() + envelope::OVERHEAD);
    out.push(ENVELOPE_VERSION);
    out.extend_from_slice(&0u32.to_le_bytes());
    out.resize(HEADER_LEN, 0);
    out.extend_from_slice(plain);
    out.extend_from_slice(&[0; TAG_LEN]);
    Ok(out)
}

/// Opens an envelope of [`null_seal`]: checks the version and the lengths as the real open
/// does, and hands back the bytes between header and tag.
pub fn null_open(_kind: ObjectKind, _name: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
    envelope::epoch_of(sealed, "fuzz")?;
    let mut r = Reader::new(sealed, "fuzz");
    r.take(HEADER_LEN)?;
    let body = r.rest();
    let ct = body
        .len()
        .checked_sub(TAG_LEN)
        .and_then(|n| body.get(..n))
        .ok_or_else(|| crate::Error::corrupt("fuzz", "shorter than a tag"))?;
    Ok(ct.to_vec())
}

/// A whole pack, its envelopes opened through the null cipher: the locator, the header's
/// span, the epochs, the padding and the header's tiling of the blob area. A pack that opens
/// closes again, from the blobs its header lists, to the same header.
pub fn pack(data: &[u8]) {
    let Ok(opened) = pack::open(data, "fuzz", null_open) else { return };
    assert_eq!(opened.id, PackId::of(data));
    let area = data.get(..opened.header_offset as usize).expect("the header offset lies in the pack");
    let blobs: Vec<PackBlob<'_>> = opened
        .header
        .blobs
        .iter()
        .map(|b| PackBlob {
            kind: b.kind,
            id: b.id,
            raw_length: b.raw_length,
            sealed: area.get(b.offset as usize..(b.offset as usize + b.length as usize)).expect("a blob in the area"),
        })
        .collect();
    let closed = pack::close(&blobs, null_seal).expect("closing the blobs of an opened pack");
    assert_eq!(closed.blobs, opened.header.blobs);
    let rebuilt = [area, &closed.header, &closed.locator].concat();
    let again = pack::open(&rebuilt, "fuzz", null_open).expect("reopening a closed pack");
    assert_eq!(again.header, opened.header);
    assert_eq!(again.id, closed.id);
}
