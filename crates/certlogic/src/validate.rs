//! Static validation of CertLogic expressions (the specification's "validator").
//!
//! Evaluation only checks the branches it takes; a rule author or a verifier loading rules wants to know up front
//! whether *every* part of an expression is well-formed. The messages are those of the reference validator
//! (`certlogic-js/validation`), because the specification's validation test suite compares them verbatim.

use crate::datetime::TimeUnit;
use crate::eval::valid_path;
use serde::Serialize;
use serde_json::{Number, Value};

/// One problem found in an expression: the offending sub-expression and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Issue {
    /// The sub-expression the problem is in.
    pub expr: Value,
    /// What is wrong, in the reference validator's words.
    pub message: String,
}

/// Renders a JSON value as JavaScript's template-literal interpolation (`${value}`) would, so that messages match
/// the reference validator's.
fn js_string(v: &Value) -> String {
    js_string_bounded(v, 16)
}

/// [`js_string`] that stops descending into nested arrays after `budget` levels.
fn js_string_bounded(v: &Value, budget: usize) -> String {
    match v {
        Value::Array(_) if budget == 0 => "…".to_owned(),
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => js_number(n),
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(|i| {
                if i.is_null() {
                    String::new()
                } else {
                    js_string_bounded(i, budget - 1)
                }
            })
            .collect::<Vec<_>>()
            .join(","),
        Value::Object(_) => "[object Object]".to_owned(),
    }
}

fn js_number(n: &Number) -> String {
    match (n.as_i64(), n.as_u64(), n.as_f64()) {
        (Some(i), _, _) => i.to_string(),
        (_, Some(u), _) => u.to_string(),
        (_, _, Some(f)) if f.fract() == 0.0 && f.abs() < 1e21 => format!("{f:.0}"),
        (_, _, Some(f)) => f.to_string(),
        _ => n.to_string(),
    }
}

/// Copies a value for an issue report, replacing whatever is nested deeper than `budget` levels by `null` (a
/// plain clone of an arbitrarily deep value built in code would recurse without bound).
fn clone_bounded(v: &Value, budget: usize) -> Value {
    match v {
        Value::Array(_) | Value::Object(_) if budget == 0 => Value::Null,
        Value::Array(items) => {
            Value::Array(items.iter().map(|i| clone_bounded(i, budget - 1)).collect())
        }
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, i)| (k.clone(), clone_bounded(i, budget - 1)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Whether a literal is an integer in the evaluator's sense, so that validation and evaluation agree.
fn is_int(v: &Value) -> bool {
    matches!(v, Value::Number(n) if crate::eval::number_int(n).is_some())
}

struct Validator {
    issues: Vec<Issue>,
    depth: usize,
}

impl Validator {
    fn push(&mut self, expr: &Value, message: String) {
        self.issues.push(Issue {
            expr: clone_bounded(expr, crate::eval::MAX_DEPTH),
            message,
        });
    }

    fn all(&mut self, values: &[Value]) {
        for v in values {
            self.expr(v);
        }
    }

    fn expr(&mut self, expr: &Value) {
        if self.depth > crate::eval::MAX_DEPTH {
            // The sub-expression itself is not copied into the issue: it may be arbitrarily deep.
            self.issues.push(Issue {
                expr: Value::Null,
                message: format!(
                    "expression nested deeper than {} levels",
                    crate::eval::MAX_DEPTH
                ),
            });
            return;
        }
        self.depth += 1;
        self.expr_inner(expr);
        self.depth -= 1;
    }

    fn expr_inner(&mut self, expr: &Value) {
        match expr {
            Value::String(_) | Value::Bool(_) => {}
            Value::Number(n) => {
                if !is_int(expr) {
                    self.push(expr, format!("{} is a non-integer number", js_number(n)));
                }
            }
            Value::Null => self.push(expr, "invalid CertLogic expression".to_owned()),
            Value::Array(items) => self.all(items),
            Value::Object(map) => {
                if map.len() != 1 {
                    self.push(
                        expr,
                        format!(
                            "expression object must have exactly one key, but it has {}",
                            map.len()
                        ),
                    );
                    return;
                }
                let Some((op, values)) = map.iter().next() else {
                    return;
                };
                if op == "var" {
                    match values {
                        Value::String(path) if valid_path(path) => {}
                        Value::String(path) => self.push(
                            expr,
                            format!("data access path doesn't have a valid format: {path}"),
                        ),
                        _ => self.push(expr, "not of the form { \"var\": \"<path>\" }".to_owned()),
                    }
                    return;
                }
                let Value::Array(values) = values else {
                    self.push(
                        expr,
                        "operation not of the form { \"<operator>\": [ <values...> ] }".to_owned(),
                    );
                    return;
                };
                self.operation(expr, op, values);
            }
        }
    }

    fn operation(&mut self, expr: &Value, op: &str, values: &[Value]) {
        let n = values.len();
        match op {
            "if" | "reduce" => {
                if n != 3 {
                    self.push(expr, format!("a{} \"{op}\"-operation must have exactly 3 values/operands, but it has {n}",
                        if op == "if" { "n" } else { "" }));
                }
                self.all(&values[..n.min(3)]);
            }
            "and" => {
                if n < 2 {
                    self.push(
                        expr,
                        format!(
                            "an \"and\" operation must have at least 2 operands, but it has {n}"
                        ),
                    );
                }
                self.all(values);
            }
            "<" | ">" | "<=" | ">=" | "after" | "before" | "not-after" | "not-before" => {
                if !(2..=3).contains(&n) {
                    self.push(expr, format!("an operation with operator \"{op}\" must have 2 or 3 operands, but it has {n}"));
                }
                self.all(&values[..n.min(3)]);
            }
            "===" | "in" | "+" => {
                if n != 2 {
                    self.push(expr, format!("an operation with operator \"{op}\" must have 2 operands, but it has {n}"));
                }
                self.all(&values[..n.min(2)]);
            }
            "!" => {
                if n == 1 {
                    self.expr(&values[0]);
                } else {
                    self.push(expr, format!("a !-operation (logical not/negation) must have exactly 1 operand, but it has {n}"));
                }
            }
            "plusTime" => {
                if n != 3 {
                    self.push(expr, format!("a \"plusTime\"-operation must have exactly 3 values/operands, but it has {n}"));
                }
                if let Some(date) = values.first() {
                    self.expr(date);
                }
                if let Some(amount) = values.get(1).filter(|a| !is_int(a)) {
                    self.push(expr, format!("\"amount\" argument (#2) of \"plusTime\" must be an integer, but it is: {}", js_string(amount)));
                }
                if let Some(unit) = values
                    .get(2)
                    .filter(|u| u.as_str().and_then(TimeUnit::from_name).is_none())
                {
                    self.push(expr, format!("\"unit\" argument (#3) of \"plusTime\" must be a string equal to one of {}, but it is: {}",
                        TimeUnit::NAMES.join(", "), js_string(unit)));
                }
            }
            "extractFromUVCI" => {
                if n != 2 {
                    self.push(expr, format!("an \"extractFromUVCI\"-operation must have exactly 2 values/operands, but it has {n}"));
                }
                if let Some(operand) = values.first() {
                    self.expr(operand);
                }
                if let Some(index) = values.get(1).filter(|i| !is_int(i)) {
                    self.push(expr, format!("\"index\" argument (#2) of \"extractFromUVCI\" must be an integer, but it is: {}", js_string(index)));
                }
            }
            "dccDateOfBirth" => {
                if n != 1 {
                    self.push(expr, format!("a \"dccDateOfBirth\"-operation must have exactly 1 value/operand, but it has {n}"));
                }
                if let Some(operand) = values.first() {
                    self.expr(operand);
                }
            }
            _ => self.push(expr, format!("unrecognised operator: \"{op}\"")),
        }
    }
}

/// Validates the format of a CertLogic expression without evaluating it, returning every issue found (an empty list
/// means the expression is well-formed). Type errors that depend on the data cannot be found this way.
///
/// ```
/// use serde_json::json;
/// let issues = certlogic::validate_format(&json!({"and": [{"var": "x."}]}));
/// assert_eq!(issues.len(), 2);
/// assert!(certlogic::validate_format(&json!({"if": [{"var": "payload.v.0"}, true, false]})).is_empty());
/// ```
pub fn validate_format(expr: &Value) -> Vec<Issue> {
    let mut validator = Validator {
        issues: Vec::new(),
        depth: 0,
    };
    validator.expr(expr);
    validator.issues
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reports_each_operation_shape_problem() {
        let messages = |e: Value| {
            validate_format(&e)
                .into_iter()
                .map(|i| i.message)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            messages(json!({"if": [true, 1]})),
            ["an \"if\"-operation must have exactly 3 values/operands, but it has 2"]
        );
        assert_eq!(
            messages(json!({"reduce": [[], 1, 0, 4]})),
            ["a \"reduce\"-operation must have exactly 3 values/operands, but it has 4"]
        );
        assert_eq!(
            messages(json!({"plusTime": [{"var": ""}, 1.5, "week"]})),
            [
                "\"amount\" argument (#2) of \"plusTime\" must be an integer, but it is: 1.5",
                "\"unit\" argument (#3) of \"plusTime\" must be a string equal to one of year, month, day, hour, but it is: week"
            ]
        );
        assert_eq!(
            messages(json!({"extractFromUVCI": [{"var": "x"}, "1"]})),
            ["\"index\" argument (#2) of \"extractFromUVCI\" must be an integer, but it is: 1"]
        );
        assert_eq!(
            messages(json!({"!": [true, true]})),
            ["a !-operation (logical not/negation) must have exactly 1 operand, but it has 2"]
        );
        assert_eq!(messages(json!({"in": [[null, 1.5]]})).len(), 3);
        assert!(messages(json!({"dccDateOfBirth": [{"var": "payload.dob"}]})).is_empty());
    }
}
