//! Any bytes as a WFDB header; when it parses, the same bytes also serve as every signal file it names.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(header) = ecg::wfdb::parse_header(&text) {
        if let Ok(record) = ecg::wfdb::decode_record(header, |_| Ok(data.to_vec())) {
            let _ = record.to_ecg();
        }
    }
});
