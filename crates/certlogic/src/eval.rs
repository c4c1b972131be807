//! The CertLogic evaluator.
//!
//! Why not a JsonLogic crate (`datalogic-rs`, `jsonlogic-rs`)? CertLogic is a *restricted* JsonLogic with different
//! semantics in exactly the places that decide a traveller's status:
//! - truthiness is narrower and three-valued: `"0"` and `[0]` are truthy, a float, a date-time or anything else is
//!   *neither* truthy nor falsy, and using such a value as a guard is an error, where JsonLogic applies JavaScript's
//!   coercions;
//! - `===` and the comparisons never coerce types (`<` accepts integers only, `after`/`before` date-times only),
//!   `in` demands an array, `+` takes exactly two integers;
//! - there is a date-time *type* that only `plusTime` and `dccDateOfBirth` create, with the specification's own
//!   parsing rules and JavaScript `Date` arithmetic, plus `extractFromUVCI`; JsonLogic has none of these;
//! - `reduce` sees `{accumulator, current}` only, `var` has no default value, and every unknown operator, every
//!   wrong operand count and every malformed operation must be an error rather than a best-effort value.
//!
//! Bending a generic engine into this would mean overriding nearly every operator and still inheriting its coercions
//! in corner cases, so the evaluator is written directly from the specification (v1.3.3). Evaluation borrows from
//! the expression and the data wherever it can: a rule run against a large `external.valueSets` copies nothing.

use crate::datetime::{DateTime, TimeUnit};
use crate::Error;
use serde_json::{Map, Number, Value};
use std::borrow::Cow;

/// How deep expressions may nest before evaluation stops with [`Error::TooDeep`]. It equals `serde_json`'s own
/// parsing limit, and guards expressions built in code against exhausting the stack.
pub const MAX_DEPTH: usize = 128;

/// A value during evaluation: JSON borrowed from the expression or the data, or something computed.
#[derive(Clone, Debug)]
pub(crate) enum Val<'a> {
    Ref(&'a Value),
    Null,
    Bool(bool),
    Int(i64),
    Str(Cow<'a, str>),
    Array(Vec<Val<'a>>),
    /// An object built by the evaluator: the data context of a `reduce` lambda, or the rule data context.
    Object(Vec<(&'static str, Val<'a>)>),
    DateTime(DateTime),
}

/// A read-only view of a [`Val`] that unifies borrowed JSON and computed values.
enum View<'v, 'a> {
    Null,
    Bool(bool),
    Int(i64),
    /// A JSON number that is not an integer.
    Float(f64),
    Str(&'v str),
    JsonArray(&'v [Value]),
    ValArray(&'v [Val<'a>]),
    JsonObject(&'v Map<String, Value>),
    ValObject(&'v [(&'static str, Val<'a>)]),
    DateTime(DateTime),
}

/// The integer value of a JSON number, if it is an integer that fits in 64 bits. JSON `42.0` is the integer 42, as it
/// is in JavaScript, which the specification's integers are a subset of.
pub(crate) fn number_int(n: &Number) -> Option<i64> {
    if let Some(i) = n.as_i64() {
        return Some(i);
    }
    let f = n.as_f64()?;
    // `i64::MAX as f64` is exactly 2^63; integral floats below it in magnitude convert exactly.
    (f.fract() == 0.0 && f.abs() < i64::MAX as f64).then_some(f as i64)
}

fn json_view(v: &Value) -> View<'_, '_> {
    match v {
        Value::Null => View::Null,
        Value::Bool(b) => View::Bool(*b),
        Value::Number(n) => match number_int(n) {
            Some(i) => View::Int(i),
            None => View::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => View::Str(s),
        Value::Array(a) => View::JsonArray(a),
        Value::Object(o) => View::JsonObject(o),
    }
}

impl<'a> Val<'a> {
    fn view(&self) -> View<'_, 'a> {
        match self {
            Val::Ref(v) => json_view(v),
            Val::Null => View::Null,
            Val::Bool(b) => View::Bool(*b),
            Val::Int(i) => View::Int(*i),
            Val::Str(s) => View::Str(s),
            Val::Array(a) => View::ValArray(a),
            Val::Object(o) => View::ValObject(o),
            Val::DateTime(d) => View::DateTime(*d),
        }
    }

    /// `Some(true)` if truthy, `Some(false)` if falsy, `None` if neither (the specification's "boolsiness").
    pub(crate) fn boolsiness(&self) -> Option<bool> {
        match self.view() {
            View::Null => Some(false),
            View::Bool(b) => Some(b),
            View::Int(i) => Some(i != 0),
            View::Str(s) => Some(!s.is_empty()),
            View::JsonArray(a) => Some(!a.is_empty()),
            View::ValArray(a) => Some(!a.is_empty()),
            View::JsonObject(o) => Some(!o.is_empty()),
            View::ValObject(o) => Some(!o.is_empty()),
            View::Float(_) | View::DateTime(_) => None,
        }
    }

    fn as_int(&self) -> Option<i64> {
        match self.view() {
            View::Int(i) => Some(i),
            _ => None,
        }
    }

    fn as_datetime(&self) -> Option<DateTime> {
        match self {
            Val::DateTime(d) => Some(*d),
            _ => None,
        }
    }

    /// A short description of the value's type for error messages (never the value itself, which may be personal
    /// data from a certificate).
    fn type_name(&self) -> &'static str {
        match self.view() {
            View::Null => "null",
            View::Bool(_) => "a boolean",
            View::Int(_) => "an integer",
            View::Float(_) => "a non-integer number",
            View::Str(_) => "a string",
            View::JsonArray(_) | View::ValArray(_) => "an array",
            View::JsonObject(_) | View::ValObject(_) => "an object",
            View::DateTime(_) => "a date-time",
        }
    }

    /// Converts to JSON; date-times become `YYYY-MM-DDThh:mm:ss.sssZ` strings, as `JSON.stringify` renders a `Date`.
    pub(crate) fn into_json(self) -> Value {
        match self {
            Val::Ref(v) => v.clone(),
            Val::Null => Value::Null,
            Val::Bool(b) => Value::Bool(b),
            Val::Int(i) => Value::from(i),
            Val::Str(s) => Value::String(s.into_owned()),
            Val::Array(a) => Value::Array(a.into_iter().map(Val::into_json).collect()),
            Val::Object(o) => Value::Object(
                o.into_iter()
                    .map(|(k, v)| (k.to_owned(), v.into_json()))
                    .collect(),
            ),
            Val::DateTime(d) => Value::String(d.to_string()),
        }
    }

    fn to_json(&self) -> Value {
        self.clone().into_json()
    }

    /// The child at one `var` path fragment: an array element for an integer fragment, an object member otherwise;
    /// `null` wherever nothing is there (including drilling into strings, numbers and date-times).
    fn child(&self, fragment: &str) -> Val<'a> {
        match self {
            Val::Ref(Value::Array(items)) => match fragment.parse::<usize>() {
                Ok(i) => items.get(i).map_or(Val::Null, Val::Ref),
                Err(_) => Val::Null,
            },
            Val::Ref(Value::Object(map)) => map.get(fragment).map_or(Val::Null, Val::Ref),
            Val::Array(items) => match fragment.parse::<usize>() {
                Ok(i) => items.get(i).cloned().unwrap_or(Val::Null),
                Err(_) => Val::Null,
            },
            Val::Object(entries) => entries
                .iter()
                .find(|(k, _)| *k == fragment)
                .map_or(Val::Null, |(_, v)| v.clone()),
            _ => Val::Null,
        }
    }
}

/// Strict equality (`===`) without coercion. Strings, integers, booleans and `null` compare by value as in
/// JavaScript; for arrays and objects, where JavaScript would compare object identity, values compare structurally
/// (as the Kotlin reference implementation does), and date-times compare by instant.
fn strict_equals(l: &Val<'_>, r: &Val<'_>) -> bool {
    match (l.view(), r.view()) {
        (View::Null, View::Null) => true,
        (View::Bool(a), View::Bool(b)) => a == b,
        (View::Int(a), View::Int(b)) => a == b,
        (View::Float(a), View::Float(b)) => a == b,
        (View::Str(a), View::Str(b)) => a == b,
        (View::DateTime(a), View::DateTime(b)) => a == b,
        (View::JsonArray(_) | View::ValArray(_), View::JsonArray(_) | View::ValArray(_))
        | (View::JsonObject(_) | View::ValObject(_), View::JsonObject(_) | View::ValObject(_)) => {
            l.to_json() == r.to_json()
        }
        _ => false,
    }
}

/// Whether a `var` path is well-formed: empty (the whole context), or non-empty fragments separated by periods.
pub(crate) fn valid_path(path: &str) -> bool {
    path.is_empty() || path.split('.').all(|fragment| !fragment.is_empty())
}

fn access<'a>(data: &Val<'a>, path: &str) -> Val<'a> {
    if path.is_empty() {
        return data.clone();
    }
    let mut fragments = path.split('.');
    let Some(first) = fragments.next() else {
        return data.clone();
    };
    let mut current = data.child(first);
    for fragment in fragments {
        if matches!(current, Val::Null | Val::Ref(Value::Null)) {
            return Val::Null;
        }
        current = current.child(fragment);
    }
    current
}

/// Fragment `index` of a UVCI (`URN:UVCI:` prefix optional), split on `/`, `#` and `:`.
pub(crate) fn extract_from_uvci(uvci: &str, index: i64) -> Option<&str> {
    let index = usize::try_from(index).ok()?;
    let rest = uvci.strip_prefix("URN:UVCI:").unwrap_or(uvci);
    rest.split(['/', '#', ':']).nth(index)
}

/// Whether a JSON value is a CertLogic literal (a string, a boolean, an integer, or an array of literals), which
/// evaluates to itself. Arrays nested deeper than `budget` count as not literal, so that evaluation reaches its own
/// depth check instead of recursing here without bound.
fn is_literal(v: &Value, budget: usize) -> bool {
    match v {
        Value::String(_) | Value::Bool(_) => true,
        Value::Number(n) => number_int(n).is_some(),
        Value::Array(items) => budget > 0 && items.iter().all(|i| is_literal(i, budget - 1)),
        Value::Null | Value::Object(_) => false,
    }
}

fn malformed(op: &str, reason: impl Into<String>) -> Error {
    Error::Malformed {
        op: op.to_owned(),
        reason: reason.into(),
    }
}

fn literal_int(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => number_int(n),
        _ => None,
    }
}

/// The comparison operators, with their integer or date-time operand type.
#[derive(Clone, Copy)]
enum Cmp {
    Gt,
    Lt,
    Ge,
    Le,
}

impl Cmp {
    fn holds<T: PartialOrd>(self, l: T, r: T) -> bool {
        match self {
            Cmp::Gt => l > r,
            Cmp::Lt => l < r,
            Cmp::Ge => l >= r,
            Cmp::Le => l <= r,
        }
    }
}

struct Evaluator;

impl Evaluator {
    fn eval<'a>(expr: &'a Value, data: &Val<'a>, depth: usize) -> Result<Val<'a>, Error> {
        if depth > MAX_DEPTH {
            return Err(Error::TooDeep(MAX_DEPTH));
        }
        match expr {
            Value::String(_) | Value::Bool(_) => Ok(Val::Ref(expr)),
            Value::Number(n) => match number_int(n) {
                Some(_) => Ok(Val::Ref(expr)),
                None => Err(Error::InvalidExpression(format!(
                    "{n} is a non-integer number"
                ))),
            },
            Value::Null => Err(Error::InvalidExpression(
                "null is not allowed as a literal".to_owned(),
            )),
            // An array of literals evaluates to itself: borrow it instead of rebuilding it (rules list value-set
            // codes and vaccine products this way, and are evaluated many times).
            Value::Array(_) if is_literal(expr, MAX_DEPTH - depth) => Ok(Val::Ref(expr)),
            Value::Array(items) => items
                .iter()
                .map(|item| Self::eval(item, data, depth + 1))
                .collect::<Result<_, _>>()
                .map(Val::Array),
            Value::Object(map) => {
                let mut entries = map.iter();
                let (Some((op, operands)), None) = (entries.next(), entries.next()) else {
                    return Err(Error::InvalidExpression(format!(
                        "an expression object must have exactly one key, but it has {}",
                        map.len()
                    )));
                };
                Self::operation(op, operands, data, depth + 1)
            }
        }
    }

    fn operation<'a>(
        op: &'a str,
        operands: &'a Value,
        data: &Val<'a>,
        depth: usize,
    ) -> Result<Val<'a>, Error> {
        if op == "var" {
            let Value::String(path) = operands else {
                return Err(malformed(op, "not of the form { \"var\": \"<path>\" }"));
            };
            if !valid_path(path) {
                return Err(malformed(
                    op,
                    format!("data access path doesn't have a valid format: {path}"),
                ));
            }
            return Ok(access(data, path));
        }
        let args = match operands {
            Value::Array(args) if !args.is_empty() => args.as_slice(),
            _ => {
                return Err(if is_operator(op) {
                    malformed(
                        op,
                        "operation not of the form { \"<operator>\": [ <values...> ] }",
                    )
                } else {
                    Error::UnknownOperator(op.to_owned())
                })
            }
        };
        let args = Args { op, args, depth };
        // Each operation is its own function so that the recursion's stack frames stay small.
        match op {
            "if" => Self::op_if(args, data),
            "!" => Self::op_not(args, data),
            "and" => Self::op_and(args, data),
            "===" | "in" | "+" => Self::op_binary(args, data),
            ">" | "<" | ">=" | "<=" | "after" | "before" | "not-after" | "not-before" => {
                Self::op_compare(args, data)
            }
            "plusTime" => Self::op_plus_time(args, data),
            "dccDateOfBirth" => Self::op_date_of_birth(args, data),
            "reduce" => Self::op_reduce(args, data),
            "extractFromUVCI" => Self::op_extract_from_uvci(args, data),
            _ => Err(Error::UnknownOperator(op.to_owned())),
        }
    }

    fn op_if<'a>(a: Args<'a>, data: &Val<'a>) -> Result<Val<'a>, Error> {
        a.arity(3)?;
        let guard = Self::eval(&a.args[0], data, a.depth)?;
        match guard.boolsiness() {
            Some(true) => Self::eval(&a.args[1], data, a.depth),
            Some(false) => Self::eval(&a.args[2], data, a.depth),
            None => Err(Error::Type {
                op: "if",
                reason: format!(
                    "guard evaluates to {}, which is neither truthy nor falsy",
                    guard.type_name()
                ),
            }),
        }
    }

    fn op_not<'a>(a: Args<'a>, data: &Val<'a>) -> Result<Val<'a>, Error> {
        a.arity(1)?;
        let operand = Self::eval(&a.args[0], data, a.depth)?;
        match operand.boolsiness() {
            Some(b) => Ok(Val::Bool(!b)),
            None => Err(Error::Type {
                op: "!",
                reason: format!(
                    "operand evaluates to {}, which is neither truthy nor falsy",
                    operand.type_name()
                ),
            }),
        }
    }

    fn op_and<'a>(a: Args<'a>, data: &Val<'a>) -> Result<Val<'a>, Error> {
        if a.args.len() < 2 {
            return Err(malformed(
                a.op,
                format!("must have at least 2 operands, but it has {}", a.args.len()),
            ));
        }
        // Lazily, in order: the first falsy operand is the result; every operand evaluated must be truthy or falsy,
        // the last one included.
        let mut last = Val::Bool(true);
        for arg in a.args {
            last = Self::eval(arg, data, a.depth)?;
            match last.boolsiness() {
                Some(true) => {}
                Some(false) => return Ok(last),
                None => {
                    return Err(Error::Type {
                        op: "and",
                        reason: format!(
                            "an operand evaluates to {}, which is neither truthy nor falsy",
                            last.type_name()
                        ),
                    })
                }
            }
        }
        Ok(last)
    }

    fn op_binary<'a>(a: Args<'a>, data: &Val<'a>) -> Result<Val<'a>, Error> {
        a.arity(2)?;
        let l = Self::eval(&a.args[0], data, a.depth)?;
        let r = Self::eval(&a.args[1], data, a.depth)?;
        match a.op {
            "===" => Ok(Val::Bool(strict_equals(&l, &r))),
            "in" => match (l.view(), r.view()) {
                // The common case, a code looked up in a value set, without the general comparison's dispatch.
                (View::Str(needle), View::JsonArray(items)) => Ok(Val::Bool(
                    items
                        .iter()
                        .any(|i| matches!(i, Value::String(s) if s == needle)),
                )),
                (_, View::JsonArray(items)) => Ok(Val::Bool(
                    items.iter().any(|i| strict_equals(&l, &Val::Ref(i))),
                )),
                (_, View::ValArray(items)) => {
                    Ok(Val::Bool(items.iter().any(|i| strict_equals(&l, i))))
                }
                _ => Err(Error::Type {
                    op: "in",
                    reason: format!(
                        "right-hand side must be an array, but it is {}",
                        r.type_name()
                    ),
                }),
            },
            _ => match (l.as_int(), r.as_int()) {
                (Some(x), Some(y)) => x.checked_add(y).map(Val::Int).ok_or(Error::Overflow(x, y)),
                _ => Err(Error::Type {
                    op: "+",
                    reason: format!(
                        "operands must both be integers, but they are {} and {}",
                        l.type_name(),
                        r.type_name()
                    ),
                }),
            },
        }
    }

    fn op_compare<'a>(a: Args<'a>, data: &Val<'a>) -> Result<Val<'a>, Error> {
        if !(2..=3).contains(&a.args.len()) {
            return Err(malformed(
                a.op,
                format!("must have 2 or 3 operands, but it has {}", a.args.len()),
            ));
        }
        let (cmp, dates, name) = match a.op {
            ">" => (Cmp::Gt, false, ">"),
            "<" => (Cmp::Lt, false, "<"),
            ">=" => (Cmp::Ge, false, ">="),
            "<=" => (Cmp::Le, false, "<="),
            "after" => (Cmp::Gt, true, "after"),
            "before" => (Cmp::Lt, true, "before"),
            "not-after" => (Cmp::Le, true, "not-after"),
            _ => (Cmp::Ge, true, "not-before"),
        };
        let values = a
            .args
            .iter()
            .map(|x| Self::eval(x, data, a.depth))
            .collect::<Result<Vec<_>, _>>()?;
        let holds = if dates {
            let times = values
                .iter()
                .map(Val::as_datetime)
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| Error::Type {
                    op: name,
                    reason: type_list("all operands must be date-times", &values),
                })?;
            times.windows(2).all(|w| cmp.holds(w[0], w[1]))
        } else {
            let ints = values
                .iter()
                .map(Val::as_int)
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| Error::Type {
                    op: name,
                    reason: type_list("all operands must be integers", &values),
                })?;
            ints.windows(2).all(|w| cmp.holds(w[0], w[1]))
        };
        Ok(Val::Bool(holds))
    }

    fn op_plus_time<'a>(a: Args<'a>, data: &Val<'a>) -> Result<Val<'a>, Error> {
        a.arity(3)?;
        let amount = literal_int(&a.args[1]).ok_or_else(|| {
            malformed(a.op, "\"amount\" argument (#2) must be an integer literal")
        })?;
        let unit = a.args[2]
            .as_str()
            .and_then(TimeUnit::from_name)
            .ok_or_else(|| {
                malformed(
                    a.op,
                    format!(
                        "\"unit\" argument (#3) must be one of the strings {}",
                        TimeUnit::NAMES.join(", ")
                    ),
                )
            })?;
        let date = Self::eval(&a.args[0], data, a.depth)?;
        let View::Str(s) = date.view() else {
            return Err(Error::Type {
                op: "plusTime",
                reason: format!(
                    "date argument (#1) must be a string, but it is {}",
                    date.type_name()
                ),
            });
        };
        Ok(Val::DateTime(DateTime::parse(s)?.plus(amount, unit)?))
    }

    fn op_date_of_birth<'a>(a: Args<'a>, data: &Val<'a>) -> Result<Val<'a>, Error> {
        a.arity(1)?;
        let dob = Self::eval(&a.args[0], data, a.depth)?;
        let View::Str(s) = dob.view() else {
            return Err(Error::Type {
                op: "dccDateOfBirth",
                reason: format!("operand must be a string, but it is {}", dob.type_name()),
            });
        };
        Ok(Val::DateTime(DateTime::parse_date_of_birth(s)?))
    }

    fn op_reduce<'a>(a: Args<'a>, data: &Val<'a>) -> Result<Val<'a>, Error> {
        a.arity(3)?;
        let operand = Self::eval(&a.args[0], data, a.depth)?;
        let items: Vec<Val<'a>> = match operand {
            Val::Null | Val::Ref(Value::Null) => return Self::eval(&a.args[2], data, a.depth),
            Val::Ref(Value::Array(items)) => items.iter().map(Val::Ref).collect(),
            Val::Array(items) => items,
            other => {
                return Err(Error::Type {
                    op: "reduce",
                    reason: format!(
                        "operand must be an array or null, but it is {}",
                        other.type_name()
                    ),
                })
            }
        };
        let mut accumulator = Self::eval(&a.args[2], data, a.depth)?;
        for current in items {
            let context = Val::Object(vec![("accumulator", accumulator), ("current", current)]);
            accumulator = Self::eval(&a.args[1], &context, a.depth)?;
        }
        Ok(accumulator)
    }

    fn op_extract_from_uvci<'a>(a: Args<'a>, data: &Val<'a>) -> Result<Val<'a>, Error> {
        a.arity(2)?;
        let index = literal_int(&a.args[1])
            .ok_or_else(|| malformed(a.op, "\"index\" argument (#2) must be an integer literal"))?;
        match Self::eval(&a.args[0], data, a.depth)? {
            Val::Null | Val::Ref(Value::Null) => Ok(Val::Null),
            Val::Ref(Value::String(s)) => {
                Ok(extract_from_uvci(s, index).map_or(Val::Null, |f| Val::Str(Cow::Borrowed(f))))
            }
            Val::Str(s) => Ok(extract_from_uvci(&s, index)
                .map_or(Val::Null, |f| Val::Str(Cow::Owned(f.to_owned())))),
            other => Err(Error::Type {
                op: "extractFromUVCI",
                reason: format!(
                    "UVCI argument (#1) must be a string or null, but it is {}",
                    other.type_name()
                ),
            }),
        }
    }
}

/// An operation's operator, operands and nesting depth.
#[derive(Clone, Copy)]
struct Args<'a> {
    op: &'a str,
    args: &'a [Value],
    depth: usize,
}

impl Args<'_> {
    fn arity(&self, n: usize) -> Result<(), Error> {
        if self.args.len() == n {
            Ok(())
        } else {
            Err(malformed(
                self.op,
                format!(
                    "must have exactly {n} operand(s), but it has {}",
                    self.args.len()
                ),
            ))
        }
    }
}

fn type_list(what: &str, values: &[Val<'_>]) -> String {
    let types: Vec<&str> = values.iter().map(Val::type_name).collect();
    format!("{what}, but they are {}", types.join(", "))
}

/// The operators CertLogic defines (besides `var`).
pub(crate) const OPERATORS: [&str; 18] = [
    "if",
    "===",
    "and",
    ">",
    "<",
    ">=",
    "<=",
    "in",
    "+",
    "after",
    "before",
    "not-after",
    "not-before",
    "!",
    "plusTime",
    "reduce",
    "extractFromUVCI",
    "dccDateOfBirth",
];

pub(crate) fn is_operator(op: &str) -> bool {
    OPERATORS.contains(&op)
}

/// Evaluates a CertLogic expression against a data context, exactly as the specification (v1.3.3) defines.
///
/// Literals evaluate to themselves, arrays element-wise, and operations as specified; date-times in the result are
/// rendered as `YYYY-MM-DDThh:mm:ss.sssZ` strings. An expression that is not valid CertLogic, or whose operands have
/// the wrong types, yields an [`Error`]: a validator must treat that as "rule not passed".
///
/// ```
/// use serde_json::json;
/// let logic = json!({"after": [{"dccDateOfBirth": [{"var": "dob"}]}, {"plusTime": ["2022-12-30", -18, "year"]}]});
/// assert_eq!(certlogic::evaluate(&logic, &json!({"dob": "2004"})).unwrap(), json!(true));
/// assert!(certlogic::evaluate(&json!({"map": [[1], 2]}), &json!({})).is_err());
/// ```
pub fn evaluate(logic: &Value, data: &Value) -> Result<Value, Error> {
    Evaluator::eval(logic, &Val::Ref(data), 0).map(Val::into_json)
}

/// Evaluates against an already-built context without converting the result to JSON (used by rule validation, which
/// only needs the result's truthiness).
pub(crate) fn evaluate_val<'a>(logic: &'a Value, data: &Val<'a>) -> Result<Val<'a>, Error> {
    Evaluator::eval(logic, data, 0)
}

/// Whether a JSON value is truthy (`Some(true)`), falsy (`Some(false)`) or neither (`None`) in CertLogic's sense:
/// falsy are `false`, `null`, `""`, `0`, `[]` and `{}`; truthy are `true`, non-empty strings, non-zero integers,
/// non-empty arrays and non-empty objects; non-integer numbers are neither.
pub fn boolsiness(value: &Value) -> Option<bool> {
    Val::Ref(value).boolsiness()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rejects_what_is_not_certlogic() {
        let data = json!({"x": [1, 2], "f": 1.5});
        for (expr, what) in [
            (json!(null), "null literal"),
            (json!(3.5), "float literal"),
            (json!({}), "empty object"),
            (json!({"a": [1], "b": [2]}), "two keys"),
            (json!({"map": [[1], 2]}), "JsonLogic operator"),
            (json!({"var": ["x", 1]}), "var with default"),
            (json!({"var": "x..0"}), "bad path"),
            (json!({"if": [true, 1]}), "if with 2 operands"),
            (json!({"===": [1, 1, 1]}), "=== with 3 operands"),
            (json!({"<": [1, 2, 3, 4]}), "< with 4 operands"),
            (json!({"and": [true]}), "and with 1 operand"),
            (json!({"!": [true, false]}), "! with 2 operands"),
            (json!({"<": [1, "2"]}), "< on a string"),
            (json!({"after": [1, 2]}), "after on integers"),
            (json!({"+": [1, 2.5]}), "+ on a float"),
            (
                json!({"+": [9_223_372_036_854_775_807_i64, 1]}),
                "+ overflow",
            ),
            (json!({"in": [1, "123"]}), "in on a string"),
            (json!({"if": [3.5, 1, 2]}), "float guard"),
            (
                json!({"!": [{"plusTime": ["2021-01-01", 0, "day"]}]}),
                "date-time negated",
            ),
            (
                json!({"plusTime": ["2021-01-01", {"var": "x.0"}, "day"]}),
                "computed amount",
            ),
            (
                json!({"plusTime": ["2021-01-01", 1, "week"]}),
                "unknown unit",
            ),
            (
                json!({"plusTime": [{"var": "x"}, 1, "day"]}),
                "plusTime on an array",
            ),
            (json!({"reduce": ["abc", 1, 0]}), "reduce on a string"),
            (json!({"extractFromUVCI": [1, 0]}), "UVCI of an integer"),
            (
                json!({"dccDateOfBirth": [null]}),
                "dccDateOfBirth of a null literal",
            ),
            (
                json!({"and": [true, {"var": "f"}]}),
                "and ending in a float",
            ),
            (json!({"if": [{"var": "f"}, 1, 2]}), "float data as guard"),
            (json!({"foo": "bar"}), "unknown operator without array"),
        ] {
            assert!(
                evaluate(&expr, &data).is_err(),
                "{what}: {expr} evaluated to {:?}",
                evaluate(&expr, &data)
            );
        }
    }

    #[test]
    fn reduce_sees_accumulator_and_current_and_can_return_date_times() {
        // The latest of several dates, kept as a date-time in the accumulator.
        let later = json!({"plusTime": [{"var": "current"}, 0, "day"]});
        let logic = json!({"reduce": [
            {"var": "dates"},
            {"if": [{"after": [later, {"var": "accumulator"}]}, later, {"var": "accumulator"}]},
            {"plusTime": ["1970-01-01", 0, "day"]}
        ]});
        let data = json!({"dates": ["2021-03-01", "2021-07-01T12:00:00+02:00", "2021-05-01"]});
        assert_eq!(
            evaluate(&logic, &data).unwrap(),
            json!("2021-07-01T10:00:00.000Z")
        );
        assert_eq!(
            evaluate(&json!({"reduce": [[1, 2], {"var": ""}, 0]}), &json!(null)).unwrap(),
            json!({"accumulator": {"accumulator": 0, "current": 1}, "current": 2})
        );
    }

    #[test]
    fn equality_and_membership_do_not_coerce() {
        let t = |e: Value| evaluate(&e, &json!({"a": [1, "x"], "d": "2021-01-01"})).unwrap();
        assert_eq!(t(json!({"===": [1, "1"]})), json!(false));
        assert_eq!(t(json!({"===": [1, 1.0]})), json!(true));
        assert_eq!(t(json!({"in": ["1", {"var": "a"}]})), json!(false));
        assert_eq!(t(json!({"in": ["x", {"var": "a"}]})), json!(true));
        assert_eq!(t(json!({"===": [{"var": "a"}, [1, "x"]]})), json!(true));
        assert_eq!(
            t(
                json!({"===": [{"plusTime": [{"var": "d"}, 24, "hour"]}, {"plusTime": ["2021-01-02", 0, "day"]}]})
            ),
            json!(true)
        );
        assert_eq!(
            t(json!({"===": [{"plusTime": [{"var": "d"}, 0, "day"]}, {"var": "d"}]})),
            json!(false)
        );
    }

    #[test]
    fn truthiness_is_three_valued() {
        assert_eq!(boolsiness(&json!("0")), Some(true));
        assert_eq!(boolsiness(&json!([0])), Some(true));
        assert_eq!(boolsiness(&json!({"a": null})), Some(true));
        assert_eq!(boolsiness(&json!(-1)), Some(true));
        assert_eq!(boolsiness(&json!(0)), Some(false));
        assert_eq!(boolsiness(&json!({})), Some(false));
        assert_eq!(boolsiness(&json!(0.5)), None);
    }

    #[test]
    fn depth_is_bounded() {
        let mut expr = json!(true);
        for _ in 0..(MAX_DEPTH + 10) {
            expr = json!({"!": [expr]});
        }
        assert_eq!(
            evaluate(&expr, &json!(null)),
            Err(Error::TooDeep(MAX_DEPTH))
        );
    }

    #[test]
    fn arbitrarily_deep_values_built_in_code_neither_overflow_nor_recurse_unbounded() {
        // Built iteratively: a parser would refuse such nesting, code need not.
        let mut array = json!(1);
        for _ in 0..100_000 {
            array = Value::Array(vec![array]);
        }
        assert_eq!(
            evaluate(&array, &json!(null)),
            Err(Error::TooDeep(MAX_DEPTH))
        );
        // (Not `json!`, which would serialise the interpolated value recursively.)
        let wrapped = Value::Object(Map::from_iter([(
            "if".to_owned(),
            Value::Array(vec![array]),
        )]));
        let issues = crate::validate_format(&wrapped);
        assert_eq!(issues.len(), 2);
        assert_eq!(
            issues[0].message,
            "an \"if\"-operation must have exactly 3 values/operands, but it has 1"
        );
        assert_eq!(
            issues[1].message,
            format!("expression nested deeper than {MAX_DEPTH} levels")
        );
        drop(issues);
        // Dropping a 100,000-deep value recurses in serde_json itself; take it apart iteratively instead.
        let mut rest = wrapped;
        loop {
            rest = match rest {
                Value::Array(mut items) => items.pop().unwrap_or(Value::Null),
                Value::Object(mut map) => map.remove("if").unwrap_or(Value::Null),
                _ => break,
            };
        }
    }
}
