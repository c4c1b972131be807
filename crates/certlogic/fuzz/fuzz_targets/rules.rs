//! Fuzzes the business-rule path: arbitrary JSON parsed as a rule, then evaluated against arbitrary payloads.
//!
//! Input: rule JSON and payload JSON separated by the first NUL byte.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

fuzz_target!(|bytes: &[u8]| {
    let (rule, payload) = match bytes.iter().position(|&b| b == 0) {
        Some(i) => (&bytes[..i], &bytes[i + 1..]),
        None => (bytes, &b"{}"[..]),
    };
    let Ok(rule) = serde_json::from_slice::<certlogic::Rule>(rule) else {
        return;
    };
    let payload = serde_json::from_slice::<Value>(payload).unwrap_or(Value::Null);
    let external = json!({"validationClock": "2021-12-01T12:00:00Z", "valueSets": {"country-2-codes": ["DE", "AT"]}});
    let outcomes = certlogic::validate_json([&rule], &payload, &external, "de");
    assert_eq!(outcomes.len(), 1);
    let _ = certlogic::Status::of(&outcomes);
    let _ = rule.description("fr");
    let _ = rule.problems();
});
