//! Property tests for every format type: `decode(encode(x)) == x`, and arbitrary bytes decode
//! to an error, never a panic.

use proptest::collection::vec;
use proptest::prelude::*;

use super::config::Config;
use super::index::{IndexSegment, IndexedPack};
use super::keyring::{EpochKeyDoc, KeyringDoc, SlotRefDoc};
use super::pack::{self, BlobEntry, PackBlob, PackHeader, header_span};
use super::slot::{SLOT_VERSION, SlotAccess, SlotDoc, SlotKind};
use super::snapshot::{Snapshot, SnapshotSummary};
use super::tree::{Node, NodeKind, Tree, TreeRefs};
use super::{BlobKind, FORMAT_VERSION};
use crate::chunker::ChunkerParams;
use crate::crypto::Argon2Params;
use crate::id::{ChunkId, ObjectId, PackId};

fn chunk_id() -> impl Strategy<Value = ChunkId> {
    any::<[u8; 32]>().prop_map(ChunkId)
}

fn blob_entry() -> impl Strategy<Value = BlobEntry> {
    (any::<bool>(), chunk_id(), 0u32..1000, 0u32..1000, any::<u32>()).prop_map(|(t, id, offset, length, raw_length)| {
        BlobEntry { kind: if t { BlobKind::Tree } else { BlobKind::Data }, id, offset, length, raw_length }
    })
}

fn node_kind() -> impl Strategy<Value = NodeKind> {
    prop_oneof![
        (vec(chunk_id(), 0..4), vec((any::<u64>(), any::<u64>()), 0..3))
            .prop_map(|(chunks, holes)| NodeKind::File { chunks, holes }),
        chunk_id().prop_map(|subtree| NodeKind::Dir { subtree }),
        vec(any::<u8>(), 0..40).prop_map(|target| NodeKind::Symlink { target }),
        Just(NodeKind::Fifo),
        any::<u64>().prop_map(|rdev| NodeKind::CharDevice { rdev }),
        any::<u64>().prop_map(|rdev| NodeKind::BlockDevice { rdev }),
        Just(NodeKind::Socket),
    ]
}

fn node() -> impl Strategy<Value = Node> {
    (
        vec(any::<u8>().prop_filter("no slash or nul", |b| *b != b'/' && *b != 0), 1..20)
            .prop_filter("not . or ..", |n| n != b"." && n != b".."),
        node_kind(),
        (any::<u32>(), any::<u32>(), any::<u32>(), proptest::option::of("[a-z]{1,8}"), any::<u64>()),
        (any::<i64>(), any::<i64>(), any::<i64>(), any::<u64>(), proptest::option::of(any::<u64>())),
        vec((vec(any::<u8>(), 1..10), vec(any::<u8>(), 0..10)), 0..3),
    )
        .prop_map(
            |(
                name,
                kind,
                (mode, uid, gid, user, size),
                (mtime_ns, atime_ns, ctime_ns, inode, hardlink_group),
                xattrs,
            )| {
                Node {
                    name,
                    kind,
                    mode,
                    uid,
                    gid,
                    user: user.clone(),
                    group: user,
                    size,
                    mtime_ns,
                    atime_ns,
                    ctime_ns,
                    inode,
                    device: inode ^ 1,
                    links: 1,
                    hardlink_group,
                    xattrs,
                    flags: mode,
                }
            },
        )
}

proptest! {
    #[test]
    fn tree_round_trips(nodes in vec(node(), 0..6)) {
        let mut tree = Tree { nodes };
        tree.nodes.sort_by(|a, b| a.name.cmp(&b.name));
        tree.nodes.dedup_by(|a, b| a.name == b.name);
        let bytes = tree.clone().encode();
        prop_assert_eq!(Tree::decode(&bytes, "t").unwrap(), tree);
    }

    #[test]
    fn tree_refs_match_full_decoding(nodes in vec(node(), 0..6), cut in any::<usize>(), flip in any::<(usize, u8)>()) {
        let mut tree = Tree { nodes };
        tree.nodes.sort_by(|a, b| a.name.cmp(&b.name));
        tree.nodes.dedup_by(|a, b| a.name == b.name);
        let bytes = tree.clone().encode();
        prop_assert_eq!(TreeRefs::decode(&bytes, "t").unwrap(), tree.refs());
        // Damaged bytes (cut short, one byte changed, entries out of order): both accept or
        // both refuse, and agree on what they accept.
        let short = &bytes[..cut % bytes.len()];
        let mut changed = bytes.clone();
        if let Some(b) = changed.get_mut(flip.0 % bytes.len()) {
            *b ^= flip.1.max(1);
        }
        tree.nodes.reverse();
        let unsorted = crate::codec::encode_versioned(crate::tree::TREE_VERSION, &tree);
        for b in [short, &changed, &unsorted] {
            match (Tree::decode(b, "t"), TreeRefs::decode(b, "t")) {
                (Ok(t), Ok(r)) => prop_assert_eq!(r, t.refs()),
                (Err(_), Err(_)) => {}
                (full, refs) => prop_assert!(false, "full decoding ok: {}, references ok: {}", full.is_ok(), refs.is_ok()),
            }
        }
    }

    #[test]
    fn pack_header_and_index_round_trip(entries in vec(blob_entry(), 0..6), pack in any::<[u8; 32]>(), size in any::<u64>()) {
        let mut offset = 0;
        let blobs: Vec<BlobEntry> = entries.into_iter().map(|mut e| { e.offset = offset; offset += e.length; e }).collect();
        let header = PackHeader { blobs: blobs.clone() };
        prop_assert_eq!(PackHeader::decode(&header.encode(), u64::from(offset), "p").unwrap(), header);
        let unverified = if size % 2 == 1 { vec![PackId(pack)] } else { Vec::new() };
        let seg = IndexSegment { packs: vec![IndexedPack { pack: PackId(pack), size, blobs }], supersedes: vec![ObjectId(pack)], unverified };
        let bytes = seg.encode();
        // Payload version 2 only when a pack is unverified: other segments stay as they were.
        prop_assert_eq!(bytes[0], if seg.unverified.is_empty() { 1 } else { 2 });
        prop_assert_eq!(IndexSegment::decode(&bytes, "i").unwrap(), seg);
    }

    #[test]
    fn packs_close_open_and_refuse_any_changed_byte(sizes in vec(0usize..3000, 0..5), kinds in any::<bool>(), flip in any::<usize>()) {
        let key = crate::crypto::Key32::from_bytes([6; 32]);
        let bodies: Vec<Vec<u8>> = sizes.iter().enumerate().map(|(i, &n)| vec![i as u8; n]).collect();
        let kind = if kinds { BlobKind::Tree } else { BlobKind::Data };
        let parts: Vec<PackBlob<'_>> = bodies.iter().enumerate()
            .map(|(i, b)| PackBlob { kind, id: ChunkId([i as u8; 32]), raw_length: i as u32, sealed: b }).collect();
        let closed = pack::close(&parts, |k, n, p| super::envelope::seal(&key, 3, k, n, p)).unwrap();
        let bytes = [bodies.concat(), closed.header.clone(), closed.locator.clone()].concat();
        prop_assert_eq!(bytes.len() as u64, closed.size);
        prop_assert_eq!(closed.size, super::padding::padme(closed.size).max(pack::MIN_PACK_SIZE));
        let open = |b: &[u8]| pack::open(b, "p", |k, n, s| super::envelope::open(s, k, n, "p", |_| Ok(&key)));
        let opened = open(&bytes).unwrap();
        prop_assert_eq!(&opened.header.blobs, &closed.blobs);
        prop_assert_eq!(opened.id, PackId::of(&bytes));
        let mut bad = bytes.clone();
        let at = flip % bad.len();
        bad[at] ^= 0x80;
        prop_assert!(open(&bad).is_err(), "a flipped byte at {} of {}", at, bytes.len());
    }

    #[test]
    fn snapshot_round_trips(host in ".{0,20}", paths in vec(vec(any::<u8>(), 0..30), 0..4), tags in vec("[a-z]{0,8}", 0..3), t in any::<i64>(), tree in chunk_id(), parent in proptest::option::of(any::<[u8; 32]>()), n in any::<u64>()) {
        let s = Snapshot { time_ns: t, hostname: host.clone(), username: host, paths, tags, tree, parent: parent.map(ObjectId), program: "p".into(),
            summary: SnapshotSummary { files_new: n, bytes_read: n / 2, started_ns: t, ..SnapshotSummary::default() }, writer: Default::default() };
        prop_assert_eq!(&Snapshot::decode(&s.encode(), "s").unwrap(), &s);
        // Attested (payload 2): the same snapshot, its slot, a proof only the slot's key makes.
        let (slot, key) = (ObjectId([n as u8; 32]), crate::crypto::Key32::from_bytes([t as u8; 32]));
        let attested = s.encode_attested("snap-s", slot, &key);
        let (back, proof) = Snapshot::decode_any(&attested, "s").unwrap();
        prop_assert_eq!(&back, &s);
        let proof = proof.unwrap();
        prop_assert_eq!(proof.slot, slot);
        prop_assert!(proof.verify(&attested, "snap-s", &key).is_ok());
        prop_assert!(proof.verify(&attested, "snap-t", &key).is_err());
        let other = crate::crypto::Key32::from_bytes([(t as u8) ^ 1; 32]);
        prop_assert!(proof.verify(&attested, "snap-s", &other).is_err());
    }

    #[test]
    fn lock_round_trips(exclusive in any::<bool>(), op in ".{0,12}", host in ".{0,20}", pid in any::<u32>(), t in any::<i64>(), machine in any::<[u8; 16]>()) {
        let l = crate::lock::LockDoc { exclusive, operation: op, hostname: host.clone(), username: host, pid, created_ns: t, refreshed_ns: t, machine };
        prop_assert_eq!(crate::lock::LockDoc::decode(&l.encode(), "l").unwrap(), l);
    }

    #[test]
    fn config_keyring_and_slot_round_trip(id in any::<[u8; 32]>(), level in 0i32..=22, created in any::<i64>(), epochs in vec(any::<u32>(), 1..4)) {
        let c = Config { format_version: FORMAT_VERSION, repository_id: ObjectId(id), chunker: ChunkerParams::default(), pack_target_size: 16 << 20, zstd_level: level, created_ns: created };
        prop_assert_eq!(Config::decode(&c.encode()).unwrap(), c);
        let k = KeyringDoc { repository_id: id, id_key: id, cdc_key: id, audit_key: id,
            epochs: epochs.iter().map(|&e| EpochKeyDoc { epoch: e, key: id, created_ns: created }).collect(),
            slots: epochs.iter().map(|&e| SlotRefDoc { id: [e as u8; 32], public_key: id }).collect(),
            metadata_floor: epochs[0], replaces: vec![[id[0]; 16]], revision: u64::from(epochs[0]),
            retired: vec![super::keyring::RetiredEpochDoc { epoch: epochs[0], fingerprint: id }], write_only: Vec::new() };
        prop_assert!(KeyringDoc::decode(&k.encode(), "k").unwrap() == k);
        prop_assert_eq!(k.encode()[0], super::keyring::KEYRING_VERSION, "no write-only slot: payload version 2");
        let mut w = k.clone();
        w.write_only = vec![super::keyring::WriteOnlySlotDoc { id: [epochs[0] as u8; 32], kit_mac_key: id }];
        prop_assert_eq!(w.encode()[0], super::keyring::KEYRING_WRITE_ONLY_VERSION);
        prop_assert!(KeyringDoc::decode(&w.encode(), "k").unwrap() == w);
        let slot = SlotDoc { version: SLOT_VERSION, id: ObjectId(id), repository_id: ObjectId(id), kind: SlotKind::Password { argon2id: Argon2Params::MIN },
            access: SlotAccess::Full, salt: id.to_vec(), nonce: id[..24].to_vec(), wrapped_secret: [id, id, id].concat()[..80].to_vec(),
            public_key: id.to_vec(), keyring: hex::encode(&id[..16]),
            sealed_key: [id, id, id, id].concat()[..104].to_vec(), info: [id, id].concat()[..50].to_vec() };
        prop_assert_eq!(SlotDoc::decode(&slot.encode(), "s").unwrap(), slot.clone());
        let hsm = SlotDoc { kind: SlotKind::Hsm, nonce: id[..12].to_vec(), ..slot.clone() };
        prop_assert_eq!(SlotDoc::decode(&hsm.encode(), "s").unwrap(), hsm);
        let write_only = SlotDoc { access: SlotAccess::WriteOnly, wrapped_secret: [id, id, id, id].concat()[..112].to_vec(),
            sealed_key: [id; 8].concat()[..200].to_vec(), ..slot };
        prop_assert_eq!(SlotDoc::decode(&write_only.encode(), "s").unwrap(), write_only);
    }

    #[test]
    fn prune_marks_round_trip(generation in any::<u64>(), t in any::<i64>(), ids in proptest::collection::btree_set(any::<[u8; 32]>(), 0..5), sizes in any::<u64>()) {
        use crate::marks::{MarkedPack, PruneMarks};
        let packs = ids.iter().map(|&id| MarkedPack { pack: crate::id::PackId(id), size: sizes, marked_ns: t }).collect();
        let m = PruneMarks { generation, created_ns: t, supersedes: ids.iter().map(|&id| ObjectId(id)).collect(), packs };
        prop_assert_eq!(PruneMarks::decode(&m.encode(), "m").unwrap(), m);
    }

    #[test]
    fn audit_entry_round_trips(seq in 1u64.., prev in vec(any::<[u8; 32]>(), 1..3), t in any::<i64>(), host in ".{0,16}",
                               op in ".{0,16}", made in vec(any::<[u8; 32]>(), 0..3), packs in any::<u64>(), mac in any::<[u8; 32]>()) {
        use crate::audit::{AuditEntry, entry_name, parse_entry_name};
        let e = AuditEntry { seq, prev, time_ns: t, host, operation: op, snapshots_created: made, packs_created: packs,
            outcome: "ok".into(), ..AuditEntry::default() };
        let mut bytes = e.encode();
        bytes.extend_from_slice(&mac);
        let (back, back_mac, body) = AuditEntry::decode_with_mac(&bytes, "x").unwrap();
        prop_assert_eq!(back, e.clone());
        prop_assert_eq!(back_mac, mac);
        prop_assert_eq!(body, e.encode());
        prop_assert_eq!(parse_entry_name(&entry_name(seq, &mac)), Some((seq, mac)));
    }

    /// Arbitrary bytes given to every decoder: no panic; a refusal says the object is damaged
    /// (or of a newer version), never anything a caller would take for another problem; and
    /// whatever a decoder accepts is a value the format writes and reads back the same.
    #[test]
    fn arbitrary_bytes_are_errors_not_panics(data in vec(any::<u8>(), 0..400)) {
        use crate::error::Error;
        fn damage<T: std::fmt::Debug>(r: &crate::error::Result<T>) -> bool {
            matches!(r, Ok(_) | Err(Error::Corrupt { .. } | Error::UnsupportedVersion { .. }))
        }
        macro_rules! stable {
            ($decode:expr, $reencode:expr) => {{
                let decoded = $decode(&data);
                prop_assert!(damage(&decoded), "{:?}", decoded.as_ref().err());
                if let Ok(value) = decoded {
                    let again = $decode(&$reencode(&value)).expect("an accepted value re-encodes to bytes that decode");
                    prop_assert_eq!(again, value);
                }
            }};
        }
        let audit = crate::audit::AuditEntry::decode_with_mac(&data, "x");
        prop_assert!(damage(&audit));
        if let Ok((entry, _, body)) = audit {
            prop_assert_eq!(body, entry.encode(), "the MAC covers exactly the entry's encoding");
        }
        if let Some((seq, mac)) = crate::audit::parse_entry_name(&String::from_utf8_lossy(&data)) {
            prop_assert_eq!(crate::audit::parse_entry_name(&crate::audit::entry_name(seq, &mac)), Some((seq, mac)));
        }
        stable!(|b: &[u8]| Config::decode(b), |v: &Config| v.encode());
        stable!(|b: &[u8]| KeyringDoc::decode(b, "x"), |v: &KeyringDoc| v.encode());
        stable!(|b: &[u8]| IndexSegment::decode(b, "x"), |v: &IndexSegment| v.encode());
        stable!(|b: &[u8]| Tree::decode(b, "x"), |v: &Tree| v.clone().encode());
        stable!(|b: &[u8]| Snapshot::decode(b, "x"), |v: &Snapshot| v.encode());
        stable!(|b: &[u8]| crate::lock::LockDoc::decode(b, "x"), |v: &crate::lock::LockDoc| v.encode());
        stable!(|b: &[u8]| crate::marks::PruneMarks::decode(b, "x"), |v: &crate::marks::PruneMarks| v.encode());
        stable!(|b: &[u8]| SlotDoc::decode(b, "x"), |v: &SlotDoc| v.encode());
        let header = PackHeader::decode(&data, 1000, "x");
        prop_assert!(damage(&header));
        prop_assert!(damage(&header_span(data.len() as u64 + 10, &data, "x")));
        // Packs, blobs and padding with every envelope "opened" as itself: the parsing after
        // the AEAD sees arbitrary bytes too.
        prop_assert!(damage(&pack::open(&data, "x", |_, _, sealed| Ok(sealed.to_vec()))));
        prop_assert!(damage(&super::padding::unframe(&data, "x")));
        prop_assert!(damage(&super::blob::decode(&data, 1 << 16, "x")));
        // A payload with a wrong version byte is rejected whatever follows.
        let mut bad = data.clone();
        bad.insert(0, 0xee);
        prop_assert!(Tree::decode(&bad, "x").is_err());
        prop_assert!(Snapshot::decode(&bad, "x").is_err());
    }
}
