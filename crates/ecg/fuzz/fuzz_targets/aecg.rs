//! Any text as an HL7 aECG document.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = ecg::aecg::read_aecg(text);
    }
});
