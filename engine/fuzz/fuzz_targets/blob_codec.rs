//! Blob plaintexts (padded `codec byte || body`) and bare bodies (codec byte + zstd frame)
//! with a bounded output size.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cairn_engine::compress::decode(data, 1 << 20, "fuzz");
    let _ = cairn_engine::format::blob::decode(data, 1 << 20, "fuzz");
});
