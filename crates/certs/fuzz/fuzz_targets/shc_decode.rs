//! SMART Health Card inputs (numeric QR, JWS, file JSON) on arbitrary text.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = certs::shc::numeric_to_jws(text);
        let _ = certs::shc::decode_jws(text);
        let _ = certs::shc::verify_all(&certs::TrustList::new(), text, 1_700_000_000);
    }
});
