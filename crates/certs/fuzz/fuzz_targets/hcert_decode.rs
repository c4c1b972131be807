//! The whole HC1 verification path on arbitrary text: must never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let verifier = certs::Verifier::new(certs::TrustList::new(), None, certs::Clock::Fixed(1_700_000_000));
        let _ = verifier.verify(text);
        let _ = certs::hcert::decode_text(text);
    }
    let _ = certs::hcert::inflate(data);
    let _ = certs::hcert::CoseSign1::parse(data);
});
