//! The CWT claims reader and the generic CBOR → JSON conversion on arbitrary bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = certs::hcert::Claims::parse(data);
    if let Ok(v) = certs::cbor::parse(data) {
        let _ = certs::cbor::to_json(&v);
    }
});
