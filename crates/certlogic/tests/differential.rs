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

const RANDOM_CASES: usize = 5_000;

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

/// A small deterministic generator (xorshift64*), so that the random cases are the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())].clone()
    }
}

const DATES: [&str; 15] = [
    "2021-01-31",
    "2020-02-29",
    "2021-06-01T12:00:00Z",
    "2021-06-01T12:00:00+02:00",
    "2021-06-01T12:00:00.5-0130",
    "2004",
    "2004-02",
    "2021-12-31T23:59:59.999Z",
    "2021-03-28T01:30:00+1",
    "x",
    "",
    "2021-06-01T24:00:00Z",
    "1900-02-28",
    "2021-06-01T12:00:00.123456789+0530",
    "2021-06-01T12:00:00+1:30",
];
const PATHS: [&str; 15] = [
    "a", "b", "d", "e", "u", "arr", "arr.0", "arr.1", "n.m.0.v", "n.m.1", "n.x", "missing", "",
    "arr.0.x", "a.k",
];

fn random_data(rng: &mut Rng) -> Value {
    json!({
        "a": rng.pick(&[json!(0), json!(1), json!(-3), json!("0"), json!(""), json!(true), json!(false), json!(null),
            json!([]), json!([1]), json!({}), json!({"k": 1})]),
        "b": rng.pick(&[json!(0), json!(1), json!(5), json!("x"), json!(null), json!([1, 2]), json!(["a", "b"])]),
        "d": rng.pick(&DATES),
        "e": rng.pick(&DATES),
        "u": rng.pick(&["URN:UVCI:01:NL:187/37512422923", "01:AT:10807843F94AEE0EE5093FBC254BD813#B", "a::c/#/f", "", "URN:UVCI:"]),
        "arr": rng.pick(&[json!([]), json!([1, 2, 3]), json!(["a", "b"]), json!([null]), json!([{"x": 1}, {"x": 2}])]),
        "n": {"m": [{"v": rng.pick(&[json!(1), json!(2), json!("s"), json!(null)])}]},
    })
}

fn random_date(rng: &mut Rng) -> Value {
    let operand = if rng.below(2) == 0 {
        json!({"var": rng.pick(&["d", "e"])})
    } else {
        json!(rng.pick(&DATES))
    };
    if rng.below(5) < 3 {
        json!({"plusTime": [operand, rng.pick(&[0, 1, -1, 12, 18, -18, 24, 365, -400]), rng.pick(&["year", "month", "day", "hour"])]})
    } else {
        json!({"dccDateOfBirth": [operand]})
    }
}

/// Operands for `===`: never arrays or objects, whose equality is a documented divergence.
fn random_scalar(rng: &mut Rng) -> Value {
    match rng.below(5) {
        0 => json!({"var": rng.pick(&["b", "d", "u", "n.m.0.v", "missing"])}),
        1 => json!({"extractFromUVCI": [{"var": "u"}, rng.pick(&[0, 1, 2, 3, 4])]}),
        2 => json!({"+": [{"var": "n.m.0.v"}, 1]}),
        _ => rng.pick(&[
            json!(1),
            json!(0),
            json!("x"),
            json!(""),
            json!(true),
            json!("s"),
        ]),
    }
}

fn random_expr(rng: &mut Rng, depth: usize) -> Value {
    if depth > 3 {
        let path = rng.pick(&PATHS);
        return rng.pick(&[
            json!({"var": path}),
            json!(1),
            json!(0),
            json!("x"),
            json!(true),
            json!(false),
        ]);
    }
    let sub = |rng: &mut Rng| random_expr(rng, depth + 1);
    match rng.below(14) {
        0 => json!({"var": rng.pick(&PATHS)}),
        1 => rng.pick(&[
            json!(1),
            json!(0),
            json!(-1),
            json!("a"),
            json!(""),
            json!(true),
            json!(false),
        ]),
        2 => json!({"if": [sub(rng), sub(rng), sub(rng)]}),
        3 => json!({"===": [random_scalar(rng), random_scalar(rng)]}),
        4 => json!({"and": (0..2 + rng.below(2)).map(|_| sub(rng)).collect::<Vec<_>>()}),
        5 => json!({"!": [sub(rng)]}),
        6 => {
            json!({rng.pick(&["<", ">", "<=", ">="]): (0..2 + rng.below(2)).map(|_| sub(rng)).collect::<Vec<_>>()})
        }
        7 => json!({rng.pick(&["after", "before", "not-after", "not-before"]):
            (0..2 + rng.below(2)).map(|_| random_date(rng)).collect::<Vec<_>>()}),
        8 => {
            json!({"in": [sub(rng), rng.pick(&[json!({"var": "arr"}), json!(["a", "b", 1]), json!({"var": "b"}), json!([])])]})
        }
        9 => json!({"+": [sub(rng), sub(rng)]}),
        10 => json!({"reduce": [
            rng.pick(&[json!({"var": "arr"}), json!({"var": "b"}), json!({"var": "missing"})]),
            rng.pick(&[json!({"+": [{"var": "accumulator"}, 1]}), json!({"var": "current"}),
                json!({"if": [{"var": "current"}, {"var": "accumulator"}, {"var": "current"}]})]),
            sub(rng)
        ]}),
        11 => {
            json!({"extractFromUVCI": [rng.pick(&[json!({"var": "u"}), json!({"var": "a"}), json!({"var": "missing"})]),
            rng.pick(&[-1, 0, 1, 2, 3, 4, 5])]})
        }
        12 => json!((0..rng.below(3)).map(|_| sub(rng)).collect::<Vec<_>>()),
        _ => random_date(rng),
    }
}

/// Random expressions over random data, avoiding only the documented divergences (array equality, impossible
/// dates, Date-range overflow): both engines must agree on every one.
fn random_cases(n: usize) -> Vec<(Value, Value)> {
    let mut rng = Rng(0x5eed_ce27_1091_c0de);
    (0..n)
        .map(|_| {
            let expr = if rng.below(10) < 3 {
                random_date(&mut rng)
            } else {
                random_expr(&mut rng, 0)
            };
            (expr, random_data(&mut rng))
        })
        .collect()
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
    pairs.extend(random_cases(RANDOM_CASES));
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
    // The random cases must exercise evaluation, not just error paths.
    let random = &pairs[agreeing - RANDOM_CASES..agreeing];
    let values = random
        .iter()
        .filter(|(e, d)| evaluate(e, d).is_ok())
        .count();
    eprintln!("{values} of {RANDOM_CASES} random cases evaluate to a value");
    assert!(
        values > RANDOM_CASES / 2,
        "only {values} random cases evaluate to a value"
    );

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

fn real_payloads() -> Vec<(String, String, Value)> {
    let text = std::fs::read_to_string(data("dgc-payloads/payloads.json")).unwrap();
    let items: Vec<Value> = serde_json::from_str(&text).unwrap();
    items
        .into_iter()
        .map(|i| {
            (
                i["file"].as_str().unwrap().to_owned(),
                i["clock"].as_str().unwrap().to_owned(),
                i["payload"].clone(),
            )
        })
        .collect()
}

#[test]
fn agrees_with_certlogic_js_on_every_rule_over_real_certificates() {
    let Some(dir) = std::env::var_os("CERTLOGIC_JS_DIR").map(PathBuf::from) else {
        eprintln!(
            "skipped: set CERTLOGIC_JS_DIR to a folder whose node_modules holds certlogic-js@1.2.2"
        );
        return;
    };
    let rules = certlogic::load_rules(&data("dcc-rules")).unwrap();
    let value_sets =
        certlogic::load_value_sets(&data("dcc-rules/valuesets/valueSets.json")).unwrap();
    let payloads = real_payloads();
    // Every rule against every certificate of the EU test data, at the test's validation clock, as the rule
    // repository's tooling does: whether a rule would be selected does not matter for agreement.
    let contexts: Vec<Value> = payloads
        .iter()
        .map(|(_, clock, payload)| {
            json!({"payload": payload, "external": {"valueSets": value_sets, "validationClock": clock, "countryCode": "DE"}})
        })
        .collect();
    let logics: Vec<Value> = rules.iter().map(|r| r.logic.clone()).collect();
    let theirs = peer::evaluate_matrix(&dir, &logics, &contexts).unwrap();
    assert_eq!(theirs.len(), contexts.len());
    let (mut compared, mut values, mut disagreements) = (0, 0, Vec::new());
    for ((file, _, _), (context, row)) in payloads.iter().zip(contexts.iter().zip(&theirs)) {
        for (rule, theirs) in rules.iter().zip(row) {
            let ours = evaluate(&rule.logic, context);
            values += usize::from(ours.is_ok());
            let same = match (&ours, theirs) {
                (Ok(a), Ok(b)) => a == b,
                (Err(_), Err(_)) => true,
                _ => false,
            };
            if !same {
                disagreements.push(format!(
                    "{} on {file}: ours {ours:?}, certlogic-js {theirs:?}",
                    rule.identifier
                ));
            }
            compared += 1;
        }
    }
    assert_eq!(compared, 377 * 77);
    assert_eq!(disagreements, Vec::<String>::new());
    eprintln!("{compared} rule evaluations over real certificates agree ({values} values, the rest errors in both)");
}
