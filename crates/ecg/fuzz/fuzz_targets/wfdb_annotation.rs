//! Any bytes as an MIT-format annotation file; what parses must survive a write/parse round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(anns) = ecg::wfdb::parse_annotations(data) {
        let bytes = ecg::wfdb::annotation::write_annotations(&anns);
        let again = ecg::wfdb::parse_annotations(&bytes);
        assert!(again.is_ok(), "re-reading written annotations failed");
    }
});
