//! RFC 8785 JSON Canonicalization Scheme, the signed form of envelopes and directories.
//!
//! This wraps the `serde_jcs` crate (UTF-16 key ordering, ECMAScript number formatting through `ryu-js`,
//! minimal string escapes). It was checked here against the RFC's own examples (below), including with
//! serde_json's `arbitrary_precision` feature that the workspace turns on: such numbers reach `serde_jcs`
//! as their decimal text, which it re-reads as an IEEE 754 double before formatting, as RFC 8785 §3.2.2.3
//! requires.

use serde::Serialize;

/// The value cannot be put in canonical form (a number that is not a finite double, for example).
#[derive(Debug, thiserror::Error)]
#[error("cannot canonicalise JSON: {0}")]
pub struct CanonicalError(String);

/// The canonical (RFC 8785) bytes of a value.
pub fn canonical<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CanonicalError> {
    serde_jcs::to_vec(value).map_err(|e| CanonicalError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon_text(input: &str) -> String {
        let v: serde_json::Value = serde_json::from_str(input).unwrap();
        String::from_utf8(canonical(&v).unwrap()).unwrap()
    }

    #[test]
    fn rfc8785_section_3_2_2_example() {
        // RFC 8785 §3.2.2: the input with numbers, escapes and literals, and its canonical output.
        let input = r#"{
          "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
          "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
          "literals": [null, true, false]
        }"#;
        let expected = "{\"literals\":[null,true,false],\"numbers\":[333333333.3333333,1e+30,4.5,0.002,1e-27],\"string\":\"\u{20ac}$\\u000f\\nA'B\\\"\\\\\\\\\\\"/\"}";
        assert_eq!(canon_text(input), expected);
    }

    #[test]
    fn rfc8785_section_3_2_3_sorting_is_by_utf16_code_units() {
        let input = r#"{
          "\u20ac": "Euro Sign",
          "\r": "Carriage Return",
          "\ufb33": "Hebrew Letter Dalet With Dagesh",
          "1": "One",
          "\ud83d\ude00": "Emoji: Grinning Face",
          "\u0080": "Control",
          "\u00f6": "Latin Small Letter O With Diaeresis"
        }"#;
        let out = canon_text(input);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let values: Vec<&str> = out
            .split("\":\"")
            .skip(1)
            .map(|s| s.split('"').next().unwrap())
            .collect();
        assert_eq!(
            values,
            [
                "Carriage Return",
                "One",
                "Control",
                "Latin Small Letter O With Diaeresis",
                "Euro Sign",
                "Emoji: Grinning Face",
                "Hebrew Letter Dalet With Dagesh"
            ]
        );
        assert_eq!(v.as_object().unwrap().len(), 7);
    }

    #[test]
    fn rfc8785_appendix_b_numbers() {
        // RFC 8785 Appendix B: IEEE 754 bit patterns and their canonical text.
        let cases: &[(u64, &str)] = &[
            (0x0000000000000000, "0"),
            (0x8000000000000000, "0"),
            (0x0000000000000001, "5e-324"),
            (0x8000000000000001, "-5e-324"),
            (0x7fefffffffffffff, "1.7976931348623157e+308"),
            (0xffefffffffffffff, "-1.7976931348623157e+308"),
            (0x4340000000000000, "9007199254740992"),
            (0xc340000000000000, "-9007199254740992"),
            (0x4430000000000000, "295147905179352830000"),
            (0x44b52d02c7e14af5, "9.999999999999997e+22"),
            (0x44b52d02c7e14af6, "1e+23"),
            (0x44b52d02c7e14af7, "1.0000000000000001e+23"),
            (0x444b1ae4d6e2ef4e, "999999999999999700000"),
            (0x444b1ae4d6e2ef4f, "999999999999999900000"),
            (0x444b1ae4d6e2ef50, "1e+21"),
            (0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"),
            (0x3eb0c6f7a0b5ed8d, "0.000001"),
            (0x41b3de4355555553, "333333333.3333332"),
            (0x41b3de4355555554, "333333333.33333325"),
            (0x41b3de4355555555, "333333333.3333333"),
            (0x41b3de4355555556, "333333333.3333334"),
            (0x41b3de4355555557, "333333333.33333343"),
            (0xbecbf647612f3696, "-0.0000033333333333333333"),
            (0x43143ff3c1cb0959, "1424953923781206.2"),
        ];
        for (bits, expected) in cases {
            let f = f64::from_bits(*bits);
            // Through a typed f64 and through arbitrary-precision JSON text: both must agree with the RFC.
            assert_eq!(
                String::from_utf8(canonical(&f).unwrap()).unwrap(),
                *expected,
                "{bits:#x}"
            );
            let text = format!("{f:e}");
            assert_eq!(canon_text(&text), *expected, "{bits:#x} via {text}");
        }
    }

    #[test]
    fn non_finite_numbers_are_refused() {
        assert!(canonical(&f64::NAN).is_err());
        let v: Result<serde_json::Value, _> = serde_json::from_str("1e400");
        if let Ok(v) = v {
            assert!(canonical(&v).is_err());
        }
    }
}
