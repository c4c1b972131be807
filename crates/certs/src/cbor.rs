//! CBOR ⇄ JSON for the DCC payload.
//!
//! The DCC JSON schema describes the payload, but the wire format is CBOR. Issuers in the test data use a few CBOR
//! features with no JSON twin (tagged date/times, integer map keys in CWT claims), so the conversion is explicit
//! here rather than a serde round trip, which would silently accept or drop them.

use crate::error::{Error, Result};
use base64::Engine as _;
use ciborium::value::{Integer, Value};
use serde_json::{Map, Number, Value as Json};

/// Parses one CBOR data item, rejecting trailing bytes.
pub fn parse(bytes: &[u8]) -> Result<Value> {
    let mut reader = bytes;
    let value: Value =
        ciborium::de::from_reader(&mut reader).map_err(|e| Error::Cbor(e.to_string()))?;
    if !reader.is_empty() {
        return Err(Error::Cbor(format!(
            "{} trailing bytes after the data item",
            reader.len()
        )));
    }
    Ok(value)
}

/// Serialises one CBOR value.
pub fn to_vec(value: &Value) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    ciborium::ser::into_writer(value, &mut out).map_err(|e| Error::Cbor(e.to_string()))?;
    Ok(out)
}

/// Converts a CBOR value to JSON. Date/time tags (0 and 1) become RFC 3339 strings, as the DCC schema expects.
pub fn to_json(value: &Value) -> Result<Json> {
    Ok(match value {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Integer(i) => integer_to_json(*i)?,
        Value::Float(f) => Number::from_f64(*f)
            .map(Json::Number)
            .ok_or_else(|| Error::Cbor(format!("non-finite float {f} has no JSON form")))?,
        Value::Text(s) => Json::String(s.clone()),
        Value::Bytes(b) => Json::String(base64::engine::general_purpose::STANDARD.encode(b)),
        Value::Array(items) => Json::Array(items.iter().map(to_json).collect::<Result<_>>()?),
        Value::Map(entries) => {
            let mut map = Map::with_capacity(entries.len());
            for (k, v) in entries {
                let key = match k {
                    Value::Text(s) => s.clone(),
                    Value::Integer(i) => i128::from(*i).to_string(),
                    other => {
                        return Err(Error::Cbor(format!("map key {other:?} has no JSON form")))
                    }
                };
                if map.insert(key.clone(), to_json(v)?).is_some() {
                    return Err(Error::Cbor(format!("duplicate map key {key:?}")));
                }
            }
            Json::Object(map)
        }
        Value::Tag(1, inner) => {
            let secs = match inner.as_ref() {
                Value::Integer(i) => i64::try_from(i128::from(*i))
                    .map_err(|_| Error::Cbor("epoch out of range".into()))?,
                Value::Float(f) if f.is_finite() => *f as i64,
                other => return Err(Error::Cbor(format!("tag 1 wraps {other:?}, not a number"))),
            };
            let dt = chrono::DateTime::from_timestamp(secs, 0)
                .ok_or_else(|| Error::Cbor("epoch out of range".into()))?;
            Json::String(dt.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        }
        Value::Tag(_, inner) => to_json(inner)?,
        other => return Err(Error::Cbor(format!("unsupported CBOR item {other:?}"))),
    })
}

fn integer_to_json(i: Integer) -> Result<Json> {
    let wide = i128::from(i);
    if let Ok(v) = i64::try_from(wide) {
        Ok(Json::Number(v.into()))
    } else if let Ok(v) = u64::try_from(wide) {
        Ok(Json::Number(v.into()))
    } else {
        Err(Error::Cbor(format!("integer {wide} out of JSON range")))
    }
}

/// Converts JSON to CBOR for issuing. Integers stay integers, other numbers become floats.
pub fn from_json(json: &Json) -> Result<Value> {
    Ok(match json {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::Integer(i.into())
            } else if let Some(u) = n.as_u64() {
                Value::Integer(u.into())
            } else {
                Value::Float(
                    n.as_f64()
                        .ok_or_else(|| Error::Cbor(format!("number {n} out of range")))?,
                )
            }
        }
        Json::String(s) => Value::Text(s.clone()),
        Json::Array(items) => Value::Array(items.iter().map(from_json).collect::<Result<_>>()?),
        Json::Object(map) => Value::Map(
            map.iter()
                .map(|(k, v)| Ok((Value::Text(k.clone()), from_json(v)?)))
                .collect::<Result<_>>()?,
        ),
    })
}

/// Looks a key up in a CBOR map by integer label.
pub fn map_get_int(entries: &[(Value, Value)], label: i64) -> Option<&Value> {
    entries.iter().find_map(|(k, v)| match k {
        Value::Integer(i) if i128::from(*i) == i128::from(label) => Some(v),
        _ => None,
    })
}

/// Reads an integer or float as whole seconds (NumericDate allows both).
pub fn as_seconds(value: &Value) -> Option<i64> {
    match value {
        Value::Integer(i) => i64::try_from(i128::from(*i)).ok(),
        Value::Float(f) if f.is_finite() && f.abs() < 1e15 => Some(f.floor() as i64),
        Value::Tag(1, inner) => as_seconds(inner),
        _ => None,
    }
}
