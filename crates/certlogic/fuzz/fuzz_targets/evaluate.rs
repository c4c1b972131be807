//! Fuzzes the evaluator and the validator with arbitrary expression/data pairs.
//!
//! Input: UTF-8 text, expression JSON and data JSON separated by the first NUL byte (data defaults to `null`).
//! Nothing may panic or overflow the stack, and evaluation must be deterministic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|bytes: &[u8]| {
    let (logic, data) = match bytes.iter().position(|&b| b == 0) {
        Some(i) => (&bytes[..i], &bytes[i + 1..]),
        None => (bytes, &b"null"[..]),
    };
    let Ok(logic) = serde_json::from_slice::<Value>(logic) else {
        return;
    };
    let data = serde_json::from_slice::<Value>(data).unwrap_or(Value::Null);
    let first = certlogic::evaluate(&logic, &data);
    let second = certlogic::evaluate(&logic, &data);
    assert_eq!(first, second, "evaluation is not deterministic");
    let _ = certlogic::validate_format(&logic);
    let _ = certlogic::data_accesses(&logic);
    // Strings met while evaluating are also fed to the date parsers directly.
    if let Value::String(s) = &data {
        if let Ok(d) = certlogic::DateTime::parse(s) {
            // Formatting and re-parsing a date-time must give the same instant.
            let again = certlogic::DateTime::parse(&d.to_string());
            assert!(again.is_err() || again == Ok(d), "round trip changed {s:?}");
        }
        let _ = certlogic::DateTime::parse_date_of_birth(s);
    }
});
