//! Differential check against certlogic-js 1.2.2, the reference implementation, run through `node`.
//!
//! Opt-in: set `CERTLOGIC_JS_DIR` to a folder whose `node_modules` holds certlogic-js
//! (`npm install --prefix DIR certlogic-js@1.2.2`); without it the test prints why it is skipped.
//!
//! Every test-suite assertion, every rule test and a table of edge cases must give the same value (or an error in
//! both). A second table lists where this crate follows the specification's text and the JavaScript implementation
//! does something else; those cases must differ, so that the README's list of divergences stays true.

// Helpers outside #[test] functions unwrap too: a fixture that fails to load must fail the test.
#![allow(clippy::unwrap_used)]

use certlogic::cli::peer;
use certlogic::conformance::load_rule_tests;
use certlogic::evaluate;
use serde_json::{json, Value};
use std::path::PathBuf;

fn data(sub: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(sub)
}

fn suite_pairs() -> Vec<(Value, Value)> {
    let mut pairs = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(data("certlogic/testSuite"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for file in files {
        let suite: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        if suite["directive"] == "skip" {
            continue;
        }
        for case in suite["cases"].as_array().unwrap() {
            for assertion in case["assertions"].as_array().unwrap() {
                if case["directive"] == "skip" || assertion["directive"] == "skip" {
                    continue;
                }
                let expr = assertion
                    .get("certLogicExpression")
                    .unwrap_or(&case["certLogicExpression"]);
                pairs.push((expr.clone(), assertion["data"].clone()));
            }
        }
    }
    pairs
}

fn rule_pairs() -> Vec<(Value, Value)> {
    load_rule_tests(&data("dcc-rules"))
        .unwrap()
        .into_iter()
        .flat_map(|r| {
            let logic = r.rule.logic;
            r.tests.into_iter().map(move |t| {
                (
                    logic.clone(),
                    json!({"payload": t.payload, "external": t.external}),
                )
            })
        })
        .collect()
}

/// Cases where both implementations must agree (a value, or an error in both).
fn edge_cases() -> Vec<(Value, Value)> {
    let pt = |d: &str, n: i64, u: &str| (json!({"plusTime": [d, n, u]}), json!(null));
    let dob = |d: Value| (json!({"dccDateOfBirth": [{"var": "d"}]}), json!({"d": d}));
    let uvci = |s: &str, i: i64| {
        (
            json!({"extractFromUVCI": [{"var": "u"}, i]}),
            json!({"u": s}),
        )
    };
    vec![
        pt("2020-02-29", 1, "year"),
        pt("2020-02-29", -4, "year"),
        pt("2020-02-29", 1, "month"),
        pt("2021-01-31", 1, "month"),
        pt("2021-03-31", -1, "month"),
        pt("2021-03-15T12:00:00Z", -15, "month"),
        pt("2021-05-03T10:20:30+130", 0, "day"),
        pt("2021-05-03T10:20:30+1", 0, "day"),
        pt("2021-05-03T10:20:30-0130", 0, "day"),
        pt("2021-05-03T10:20:30+01:30", 2, "hour"),
        pt("2021-05-03T10:20:30.123456-02", 0, "hour"),
        pt("2021-05-03T10:20:30.1Z", 0, "hour"),
        pt("2021-05-03T10:20:30", 0, "day"),
        pt("2004", 18, "year"),
        pt("2004-02", 0, "day"),
        pt("2021-12-31T23:00:00-01:00", 1, "month"),
        pt("2021-06-01", 40, "hour"),
        pt("2021-06-01 10:00:00", 0, "day"),
        pt("21-06-01", 0, "day"),
        pt("2021-06-01T10:00", 0, "day"),
        (json!({"plusTime": ["2021-06-01", 1.5, "day"]}), json!(null)),
        (json!({"plusTime": ["2021-06-01", 1, "week"]}), json!(null)),
        (
            json!({"plusTime": [{"var": "x"}, 1, "day"]}),
            json!({"x": 20210601}),
        ),
        dob(json!("2004")),
        dob(json!("2004-02")),
        dob(json!("2000-02-29")),
        dob(json!("2004-1")),
        dob(json!("")),
        dob(json!(null)),
        dob(json!(2004)),
        uvci("URN:UVCI:01:NL:187/37512422923", 1),
        uvci("urn:uvci:01:NL:187", 0),
        uvci("a::c/#/f", 5),
        uvci("", 0),
        uvci("x", -1),
        (
            json!({"extractFromUVCI": [{"var": "u"}, 0]}),
            json!({"u": 5}),
        ),
        (json!({"<": [1, 2, 3]}), json!(null)),
        (json!({">=": [3, 3, 4]}), json!(null)),
        (json!({"<": [1, "2"]}), json!(null)),
        (json!({"<": [1, 2, 3, 4]}), json!(null)),
        (json!({"after": [1, 2]}), json!(null)),
        (
            json!({"not-before": [{"plusTime": ["2021-01-01", 0, "day"]}, {"plusTime": ["2020-12-31T23:00:00-01:00", 0, "day"]}]}),
            json!(null),
        ),
        (
            json!({"before": [{"plusTime": ["2021-01-01", 0, "day"]}, {"plusTime": ["2021-01-02", 0, "day"]}, {"plusTime": ["2021-01-03", 0, "day"]}]}),
            json!(null),
        ),
        (json!({"in": [1, [1, "1"]]}), json!(null)),
        (json!({"in": ["1", [1]]}), json!(null)),
        (json!({"in": ["a", "abc"]}), json!(null)),
        (
            json!({"in": [{"var": "x"}, {"var": "y"}]}),
            json!({"x": null, "y": null}),
        ),
        (json!({"===": [{"var": "x"}, null]}), json!({})),
        (json!({"===": [true, true]}), json!(null)),
        (json!({"+": [2_147_483_647, 1]}), json!(null)),
        (json!({"+": [1, "1"]}), json!(null)),
        (json!({"+": [1, 2, 3]}), json!(null)),
        (
            json!({"reduce": [{"var": "x"}, {"+": [{"var": "accumulator"}, {"var": "current"}]}, 0]}),
            json!({"x": [1, 2, 3]}),
        ),
        (
            json!({"reduce": [{"var": "x"}, {"+": [{"var": "accumulator"}, {"var": "current"}]}, 0]}),
            json!({"x": "abc"}),
        ),
        (
            json!({"reduce": [{"var": "x"}, {"var": "current"}, 7]}),
            json!({}),
        ),
        (
            json!({"reduce": [[1, 2], {"var": "accumulator.current"}, {"var": ""}]}),
            json!({"current": 5}),
        ),
        (json!({"var": "x.1"}), json!({"x": [1, 2]})),
        (json!({"var": "x.01"}), json!({"x": [1, 2]})),
        (json!({"var": "x.5"}), json!({"x": [1, 2]})),
        (json!({"var": "x.y"}), json!({"x": [1, 2]})),
        (json!({"var": "0.a"}), json!([{"a": 1}])),
        (json!({"var": 0}), json!([1])),
        (json!({"!": ["0"]}), json!(null)),
        (json!({"!": [{}]}), json!(null)),
        (json!({"!": [[null]]}), json!(null)),
        (
            json!({"if": [{"var": "x"}, "yes", "no"]}),
            json!({"x": {"a": 1}}),
        ),
        (
            json!({"and": [1, "a", [0], {"var": "x"}]}),
            json!({"x": {"k": null}}),
        ),
        (json!({"and": [1, 0, {"map": []}]}), json!(null)),
        (
            json!([{"plusTime": ["2021-01-01", 0, "day"]}, 1, "x"]),
            json!(null),
        ),
        (json!({"map": [[1], 1]}), json!(null)),
        (json!({}), json!(null)),
        (json!(null), json!(null)),
        (json!(1.5), json!(null)),
        (json!({"all": "x"}), json!(null)),
    ]
}

/// Cases where this crate follows the specification's text and certlogic-js 1.2.2 does not (or where the
/// specification leaves the behaviour open); see the README.
fn divergences() -> Vec<(&'static str, Value, Value)> {
    vec![
        (
            "`and` must reject a last operand that is neither truthy nor falsy",
            json!({"and": [true, {"var": "f"}]}),
            json!({"f": 1.5}),
        ),
        (
            "a non-integer number is neither truthy nor falsy",
            json!({"if": [{"var": "f"}, 1, 2]}),
            json!({"f": 0.5}),
        ),
        (
            "=== compares arrays structurally, not by object identity",
            json!({"===": [{"var": "a"}, {"var": "b"}]}),
            json!({"a": [1], "b": [1]}),
        ),
        (
            "a malformed var path is an invalid expression",
            json!({"var": "x."}),
            json!({"x": 1}),
        ),
        (
            "an if with more than 3 operands is an invalid expression",
            json!({"if": [true, 1, 2, 3]}),
            json!(null),
        ),
        (
            "an impossible calendar date is an error, not an Invalid Date",
            json!({"plusTime": ["2021-02-30", 0, "day"]}),
            json!(null),
        ),
        (
            "an offset with a colon but no minutes is not an allowed format",
            json!({"plusTime": ["2021-01-01T10:00:00+01:", 0, "day"]}),
            json!(null),
        ),
        (
            "strings cannot be indexed by var",
            json!({"var": "s.0"}),
            json!({"s": "abc"}),
        ),
    ]
}

#[test]
fn agrees_with_certlogic_js() {
    let Some(dir) = std::env::var_os("CERTLOGIC_JS_DIR").map(PathBuf::from) else {
        eprintln!(
            "skipped: set CERTLOGIC_JS_DIR to a folder whose node_modules holds certlogic-js@1.2.2"
        );
        return;
    };
    let mut pairs = suite_pairs();
    let suite_count = pairs.len();
    pairs.extend(rule_pairs());
    let rule_count = pairs.len() - suite_count;
    pairs.extend(edge_cases());
    let divergent = divergences();
    pairs.extend(divergent.iter().map(|(_, e, d)| (e.clone(), d.clone())));
    let js = peer::evaluate_all(&dir, &pairs).unwrap();
    assert_eq!(js.len(), pairs.len());
    assert_eq!(
        (suite_count, rule_count, edge_cases().len()),
        (218, 518, 74)
    );

    let agreeing = pairs.len() - divergent.len();
    let mut disagreements = Vec::new();
    for ((expr, data), theirs) in pairs.iter().zip(&js).take(agreeing) {
        let ours = evaluate(expr, data);
        let same = match (&ours, theirs) {
            (Ok(a), Ok(b)) => a == b,
            (Err(_), Err(_)) => true,
            _ => false,
        };
        if !same {
            disagreements.push(format!(
                "{expr} on {data}: ours {ours:?}, certlogic-js {theirs:?}"
            ));
        }
    }
    assert_eq!(disagreements, Vec::<String>::new());

    for ((why, expr, data), theirs) in divergent.iter().zip(&js[agreeing..]) {
        let ours = evaluate(expr, data);
        let same = match (&ours, theirs) {
            (Ok(a), Ok(b)) => a == b,
            (Err(_), Err(_)) => true,
            _ => false,
        };
        assert!(
            !same,
            "no longer divergent ({why}): {expr} on {data}: both {ours:?}"
        );
    }
}
