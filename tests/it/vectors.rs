//! Replays format-spec/vectors byte for byte (see format-spec/SPEC.md#test-vectors).

use std::path::PathBuf;

use cairn_engine::ChunkId;
use cairn_engine::crypto::{Key32, context, derive};
use cairn_engine::format::envelope::{ObjectKind, open, seal_with_nonce};
use cairn_engine::keys::RecoveryCode;

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../format-spec/vectors")
}

fn load(name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(vectors_dir().join(name)).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn hex32(v: &serde_json::Value) -> [u8; 32] {
    let mut out = [0u8; 32];
    hex::decode_to_slice(v.as_str().unwrap(), &mut out).unwrap();
    out
}

fn kind(name: &str) -> ObjectKind {
    match name {
        "config" => ObjectKind::Config,
        "keyring" => ObjectKind::Keyring,
        "data_blob" => ObjectKind::DataBlob,
        "tree_blob" => ObjectKind::TreeBlob,
        "pack_header" => ObjectKind::PackHeader,
        "index_segment" => ObjectKind::IndexSegment,
        "snapshot" => ObjectKind::Snapshot,
        "pack_locator" => ObjectKind::PackLocator,
        other => panic!("unknown kind {other}"),
    }
}

/// The envelope itself is unchanged since version 1, so every case replays. The case "pack
/// header with empty name" is an envelope vector only: since version 2 a pack header's name is
/// the BLAKE3 of its pack's blob area (SPEC §10, `pack.json`).
#[test]
fn envelope_vectors_replay_byte_for_byte() {
    let doc = load("envelope.json");
    let cases = doc["cases"].as_array().unwrap();
    assert!(cases.len() >= 3);
    for case in cases {
        let key = Key32::from_bytes(hex32(&case["key"]));
        let mut nonce = [0u8; 24];
        hex::decode_to_slice(case["nonce"].as_str().unwrap(), &mut nonce).unwrap();
        let name = hex::decode(case["name_hex"].as_str().unwrap()).unwrap();
        let plaintext = hex::decode(case["plaintext"].as_str().unwrap()).unwrap();
        let epoch = case["epoch"].as_u64().unwrap() as u32;
        let k = kind(case["kind"].as_str().unwrap());
        let sealed = seal_with_nonce(&key, epoch, k, &name, &plaintext, &nonce).unwrap();
        assert_eq!(hex::encode(&sealed), case["sealed"].as_str().unwrap(), "case {}", case["description"]);
        assert_eq!(open(&sealed, k, &name, "vector", |_| Ok(&key)).unwrap(), plaintext);
    }
}

#[test]
fn derivation_vectors_replay() {
    let doc = load("derive.json");
    for case in doc["cases"].as_array().unwrap() {
        let ctx = match case["context"].as_str().unwrap() {
            "KEYRING_SEAL" => context::KEYRING_SEAL,
            "KEYRING_NAME" => context::KEYRING_NAME,
            "GEAR_TABLE" => context::GEAR_TABLE,
            "RECOVERY_SLOT" => context::RECOVERY_SLOT,
            other => panic!("unknown context {other}"),
        };
        let material = hex::decode(case["material"].as_str().unwrap()).unwrap();
        assert_eq!(hex::encode(derive(ctx, &material).expose()), case["output"].as_str().unwrap());
    }
}

#[test]
fn chunk_id_and_gear_vectors_replay() {
    let doc = load("chunking.json");
    let cdc_key = Key32::from_bytes(hex32(&doc["cdc_key"]));
    let params = cairn_engine::chunker::ChunkerParams { min_size: 256, avg_size: 1024, max_size: 4096 };
    let chunker = cairn_engine::chunker::Chunker::new(&cdc_key, params).unwrap();
    let data: Vec<u8> =
        (0..doc["input_len"].as_u64().unwrap()).map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8).collect();
    let cuts: Vec<u64> = chunker.cut_all(&data).into_iter().map(|n| n as u64).collect();
    let want: Vec<u64> = doc["chunk_lengths"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    assert_eq!(cuts, want);
    let id_key = hex32(&doc["id_key"]);
    let first = &data[..cuts[0] as usize];
    assert_eq!(blake3::keyed_hash(&id_key, first).to_hex().as_str(), doc["first_chunk_id"].as_str().unwrap());
}

#[test]
fn recovery_code_vector_replays() {
    let doc = load("recovery.json");
    let mut entropy = [0u8; 18];
    hex::decode_to_slice(doc["entropy"].as_str().unwrap(), &mut entropy).unwrap();
    let code = RecoveryCode::from_entropy(entropy);
    assert_eq!(code.display().as_str(), doc["display"].as_str().unwrap());
}

const PACK_KEY: [u8; 32] = [0x42; 32];
const PACK_EPOCH: u32 = 3;

/// Version 2's padding and pack layout, built from fixed keys, nonces and contents: Padmé
/// classes, two padded data blobs (stored raw) sealed with nonces 0x01.. and 0x02.., and the
/// pack holding them in that order, its header sealed with nonce 0x0a.. and its locator with 0x0b...
fn pack_vectors() -> serde_json::Value {
    use cairn_engine::format::pack::{self, PackBlob};
    use cairn_engine::format::{BlobKind, blob, padding};
    let key = Key32::from_bytes(PACK_KEY);
    let padme: Vec<[u64; 2]> =
        [0u64, 1, 9, 100, 255, 256, 1000, 1025, 65_537, 1 << 20, (1 << 20) + 1, 16_777_217, 4_000_000_000]
            .iter()
            .map(|&n| [n, padding::padme(n)])
            .collect();
    let contents = [b"a small chunk".to_vec(), (0..3000u32).map(|i| (i * 7 % 251) as u8).collect::<Vec<u8>>()];
    let mut blobs = Vec::new();
    let mut sealed = Vec::new();
    for (i, data) in contents.iter().enumerate() {
        let id = ChunkId([0xc0 + i as u8; 32]);
        let nonce = [i as u8 + 1; 24];
        let plain = blob::encode(data, 0).unwrap();
        let s = seal_with_nonce(&key, PACK_EPOCH, ObjectKind::DataBlob, id.as_bytes(), &plain, &nonce).unwrap();
        blobs.push(serde_json::json!({
            "id": id.to_hex(), "content": hex::encode(data), "nonce": hex::encode(nonce),
            "plaintext": hex::encode(&plain), "sealed": hex::encode(&s),
        }));
        sealed.push((id, data.len() as u32, s));
    }
    let parts: Vec<PackBlob<'_>> = sealed
        .iter()
        .map(|(id, raw, s)| PackBlob { kind: BlobKind::Data, id: *id, raw_length: *raw, sealed: s })
        .collect();
    let closed = pack::close(&parts, |kind, name, plain| {
        let nonce = if kind == ObjectKind::PackHeader { [0x0a; 24] } else { [0x0b; 24] };
        seal_with_nonce(&key, PACK_EPOCH, kind, name, plain, &nonce)
    })
    .unwrap();
    let area: Vec<u8> = sealed.iter().flat_map(|(_, _, s)| s.clone()).collect();
    let bytes = [area.clone(), closed.header.clone(), closed.locator.clone()].concat();
    serde_json::json!({
        "description": "format version 2: Padmé size classes [length, padded]; data blobs stored raw (codec 0), \
            padded and sealed under key and epoch; the pack of those blobs in this order: blob area, header \
            (named by the BLAKE3 of the blob area, padded so the pack is a size class of at least 16 KiB), \
            locator (the header envelope's length)",
        "padme": padme, "key": hex::encode(PACK_KEY), "epoch": PACK_EPOCH, "blobs": blobs,
        "header_nonce": hex::encode([0x0a; 24]), "locator_nonce": hex::encode([0x0b; 24]),
        "blob_area_blake3": blake3::hash(&area).to_hex().as_str(), "header_offset": area.len(),
        "header_length": closed.header.len(), "pack_size": closed.size, "pack_id": closed.id.to_hex(),
        "pack": hex::encode(&bytes),
    })
}

#[test]
fn padding_and_pack_vectors_replay_byte_for_byte() {
    use cairn_engine::format::blob;
    use cairn_engine::format::pack;
    let doc = load("pack.json");
    assert_eq!(doc, pack_vectors(), "pack.json replays");
    // And the stored bytes open: every blob, and the pack's header listing them.
    let key = Key32::from_bytes(hex32(&doc["key"]));
    let pack_bytes = hex::decode(doc["pack"].as_str().unwrap()).unwrap();
    assert_eq!(cairn_engine::PackId::of(&pack_bytes).to_hex(), doc["pack_id"].as_str().unwrap());
    let opened =
        pack::open(&pack_bytes, "vector", |k, name, sealed| open(sealed, k, name, "vector", |_| Ok(&key))).unwrap();
    assert_eq!(opened.header_offset, doc["header_offset"].as_u64().unwrap());
    let blobs = doc["blobs"].as_array().unwrap();
    assert_eq!(opened.header.blobs.len(), blobs.len());
    for (entry, b) in opened.header.blobs.iter().zip(blobs) {
        assert_eq!(entry.id.to_hex(), b["id"].as_str().unwrap());
        let start = entry.offset as usize;
        let sealed = &pack_bytes[start..start + entry.length as usize];
        assert_eq!(hex::encode(sealed), b["sealed"].as_str().unwrap());
        let plain = open(sealed, ObjectKind::DataBlob, entry.id.as_bytes(), "vector", |_| Ok(&key)).unwrap();
        let content = blob::decode(&plain, entry.raw_length as usize, "vector").unwrap();
        assert_eq!(hex::encode(content), b["content"].as_str().unwrap());
    }
}

/// Regenerates the version 1 vector files. Vectors are append-only: run this only to add new cases,
/// never to change existing bytes (that needs a new format version).
/// `cargo test -p cairn-tests --test it write_vectors -- --ignored`
#[test]
#[ignore = "writes format-spec/vectors; run by hand when adding vectors"]
fn write_vectors() {
    let key = [0x42u8; 32];
    let nonce = [0x24u8; 24];
    let mut cases = Vec::new();
    for (desc, k, name, plain, epoch) in [
        ("empty config-kind object", "config", b"config".to_vec(), Vec::new(), 0u32),
        ("snapshot with text", "snapshot", b"snapshots/00".to_vec(), b"cairn snapshot plaintext".to_vec(), 0),
        ("data blob named by a chunk id, epoch 7", "data_blob", vec![0xab; 32], vec![1, 2, 3, 4, 5], 7),
        ("pack header with empty name", "pack_header", Vec::new(), vec![1, 0], 0),
    ] {
        let sealed = seal_with_nonce(&Key32::from_bytes(key), epoch, kind(k), &name, &plain, &nonce).unwrap();
        cases.push(serde_json::json!({
            "description": desc, "kind": k, "key": hex::encode(key), "nonce": hex::encode(nonce),
            "epoch": epoch, "name_hex": hex::encode(&name), "plaintext": hex::encode(&plain), "sealed": hex::encode(&sealed),
        }));
    }
    let write = |name: &str, v: serde_json::Value| {
        std::fs::write(vectors_dir().join(name), serde_json::to_string_pretty(&v).unwrap() + "\n").unwrap()
    };
    write("envelope.json", serde_json::json!({ "cases": cases }));

    let mut dcases = Vec::new();
    for (c, ctx) in [
        ("KEYRING_SEAL", context::KEYRING_SEAL),
        ("KEYRING_NAME", context::KEYRING_NAME),
        ("GEAR_TABLE", context::GEAR_TABLE),
        ("RECOVERY_SLOT", context::RECOVERY_SLOT),
    ] {
        let material = [0x11u8; 32];
        dcases.push(serde_json::json!({ "context": c, "context_string": ctx, "material": hex::encode(material), "output": hex::encode(derive(ctx, &material).expose()) }));
    }
    write("derive.json", serde_json::json!({ "cases": dcases }));

    let cdc_key = [0x33u8; 32];
    let id_key = [0x44u8; 32];
    let params = cairn_engine::chunker::ChunkerParams { min_size: 256, avg_size: 1024, max_size: 4096 };
    let chunker = cairn_engine::chunker::Chunker::new(&Key32::from_bytes(cdc_key), params).unwrap();
    let input_len = 20_000u64;
    let data: Vec<u8> = (0..input_len).map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8).collect();
    let cuts = chunker.cut_all(&data);
    write(
        "chunking.json",
        serde_json::json!({
            "description": "input byte i = ((i * 2654435761) >> 7) mod 256; chunker min/avg/max 256/1024/4096",
            "cdc_key": hex::encode(cdc_key), "id_key": hex::encode(id_key), "input_len": input_len,
            "chunk_lengths": cuts, "first_chunk_id": blake3::keyed_hash(&id_key, &data[..cuts[0]]).to_hex().as_str(),
        }),
    );

    let entropy = [0x5au8; 18];
    write(
        "recovery.json",
        serde_json::json!({ "entropy": hex::encode(entropy), "display": RecoveryCode::from_entropy(entropy).display().as_str() }),
    );
}

/// A key file (§7.5) from fixed ids and secret, and the slot key it gives for a fixed salt,
/// computed from the spec's definition (BLAKE3-derive(KEY_FILE_SLOT, secret || salt)).
fn key_file_vectors() -> serde_json::Value {
    use cairn_engine::ObjectId;
    use cairn_engine::keys::KeyFile;
    let (repository, slot, secret, salt) = ([0x61u8; 32], [0x62u8; 32], [0x63u8; 32], [0x64u8; 32]);
    let file = KeyFile::from_secret(ObjectId(repository), ObjectId(slot), secret);
    serde_json::json!({
        "repository_id": hex::encode(repository), "slot": hex::encode(slot), "secret": hex::encode(secret),
        "text": file.encode().as_str(), "salt": hex::encode(salt),
        "slot_key": hex::encode(derive(context::KEY_FILE_SLOT, &[secret, salt].concat()).expose()),
    })
}

#[test]
fn key_file_vector_replays() {
    let doc = load("keyfile.json");
    assert_eq!(doc, key_file_vectors(), "keyfile.json replays");
    let file = cairn_engine::keys::KeyFile::parse(doc["text"].as_str().unwrap()).unwrap();
    assert_eq!(file.slot.to_hex(), doc["slot"].as_str().unwrap());
    assert_eq!(file.repository_id.to_hex(), doc["repository_id"].as_str().unwrap());
    let salt = hex::decode(doc["salt"].as_str().unwrap()).unwrap();
    assert_eq!(hex::encode(file.wrapping_key(&salt).expose()), doc["slot_key"].as_str().unwrap());
}

/// A version 2 envelope (§4): an epoch's reader key pair derived from a fixed data key, a
/// fixed ephemeral secret and nonce, and the sealed bytes, computed from the definitions.
fn reader_vectors() -> serde_json::Value {
    use cairn_engine::format::envelope::ObjectKind;
    use cairn_engine::keys::{ReaderSealer, reader_public};
    let (data_key, ephemeral_secret, nonce, epoch) = ([0x71u8; 32], [0x72u8; 32], [0x73u8; 24], 5u32);
    let reader = reader_public(epoch, &Key32::from_bytes(data_key));
    let sealer = ReaderSealer::from_ephemeral_secret(epoch, &reader, ephemeral_secret).unwrap();
    let (name, plaintext) = (b"snapshots/00".to_vec(), b"sealed to the reader".to_vec());
    let sealed = sealer.seal_with_nonce(ObjectKind::Snapshot, &name, &plaintext, &nonce).unwrap();
    let reader_secret = derive(context::READER_SECRET, &[&epoch.to_le_bytes()[..], &data_key].concat());
    serde_json::json!({
        "data_key": hex::encode(data_key), "epoch": epoch, "reader_secret": hex::encode(reader_secret.expose()),
        "reader_public": hex::encode(reader), "ephemeral_secret": hex::encode(ephemeral_secret),
        "nonce": hex::encode(nonce), "kind": "snapshot", "name_hex": hex::encode(&name),
        "plaintext": hex::encode(&plaintext), "sealed": hex::encode(&sealed),
    })
}

#[test]
fn reader_envelope_vector_replays() {
    use cairn_engine::format::envelope::{ObjectKind, open_sealed};
    let doc = load("reader.json");
    assert_eq!(doc, reader_vectors(), "reader.json replays");
    // The reader public key is X25519(reader secret, basepoint), the secret as derived.
    let secret = x25519_dalek::StaticSecret::from(hex32(&doc["reader_secret"]));
    assert_eq!(hex::encode(x25519_dalek::PublicKey::from(&secret).to_bytes()), doc["reader_public"].as_str().unwrap());
    let data_key = Key32::from_bytes(hex32(&doc["data_key"]));
    let sealed = hex::decode(doc["sealed"].as_str().unwrap()).unwrap();
    let name = hex::decode(doc["name_hex"].as_str().unwrap()).unwrap();
    assert_eq!(sealed[0], 2, "a version 2 envelope");
    let opened = open_sealed(&sealed, ObjectKind::Snapshot, &name, "vector", |to| {
        cairn_engine::keys::opening_key(&data_key, to, "vector")
    })
    .unwrap();
    assert_eq!(hex::encode(opened), doc["plaintext"].as_str().unwrap());
}

/// Writes the vector files whose content a function here computes (`pack.json`,
/// `keyfile.json`, `reader.json`); the `*_replay*` tests compare each file with that function's
/// output on every run. Append-only like the others: run by hand only to add a file.
/// `cargo test -p cairn-tests --test it write_computed_vectors -- --ignored`
#[test]
#[ignore = "writes format-spec/vectors/{pack,keyfile,reader}.json; run by hand when adding vectors"]
fn write_computed_vectors() {
    for (file, doc) in
        [("pack.json", pack_vectors()), ("keyfile.json", key_file_vectors()), ("reader.json", reader_vectors())]
    {
        let text = serde_json::to_string_pretty(&doc).unwrap() + "\n";
        std::fs::write(vectors_dir().join(file), text).unwrap();
    }
}
