//! Key slot JSON and recovery codes from arbitrary bytes.
#![no_main]

use cairn_engine::format::slot::SlotDoc;
use cairn_engine::keys::RecoveryCode;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = SlotDoc::decode(data, "fuzz");
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = RecoveryCode::parse(s);
    }
});
