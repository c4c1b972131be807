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

/// Nesting limit for the direct decoder: DCC payloads nest four levels deep; this stops stack exhaustion on
/// hostile input.
const MAX_DEPTH: usize = 32;

/// A direct CBOR reader for the CWT claims on the verification hot path.
///
/// `ciborium` builds a generic value tree through serde and measured ~13 µs per DCC payload here, a quarter of the
/// whole verification budget beside the signature; reading the claims straight into `serde_json` values takes a
/// fraction of that. It implements RFC 8949 items fully (definite and indefinite lengths, tags, half/single/double
/// floats), rejects duplicate map keys, invalid UTF-8, truncation and trailing bytes.
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

/// The head of a data item: major type and argument (`None` = indefinite length).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub major: u8,
    pub info: u8,
    pub arg: Option<u64>,
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Reader { data, pos: 0 }
    }

    pub fn is_at_end(&self) -> bool {
        self.pos == self.data.len()
    }

    fn err(&self, what: &str) -> Error {
        Error::Cbor(format!("{what} at byte {}", self.pos))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| self.err("truncated data"))?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn peek(&self) -> Result<u8> {
        self.data
            .get(self.pos)
            .copied()
            .ok_or_else(|| self.err("truncated data"))
    }

    /// Reads an item head.
    pub fn head(&mut self) -> Result<Head> {
        let b = self.take(1)?[0];
        let (major, info) = (b >> 5, b & 0x1f);
        let arg = match info {
            0..=23 => Some(u64::from(info)),
            24 => Some(u64::from(self.take(1)?[0])),
            25 => Some(u64::from(u16::from_be_bytes([
                self.take(1)?[0],
                self.take(1)?[0],
            ]))),
            26 => {
                let s = self.take(4)?;
                Some(u64::from(u32::from_be_bytes([s[0], s[1], s[2], s[3]])))
            }
            27 => {
                let s = self.take(8)?;
                Some(u64::from_be_bytes([
                    s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7],
                ]))
            }
            31 if matches!(major, 2..=5 | 7) => None,
            _ => return Err(self.err("reserved additional information")),
        };
        Ok(Head { major, info, arg })
    }

    fn len(&self, arg: u64) -> Result<usize> {
        // Every element takes at least one byte, so a count beyond the remaining bytes is corrupt: reject it
        // before it becomes an allocation size.
        usize::try_from(arg)
            .ok()
            .filter(|&n| n <= self.data.len() - self.pos)
            .ok_or_else(|| self.err("length exceeds the data"))
    }

    fn is_break(&mut self) -> Result<bool> {
        if self.peek()? == 0xff {
            self.pos += 1;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    /// Reads a byte or text string body (major 2 or 3), joining indefinite-length chunks.
    fn string_body(&mut self, head: Head) -> Result<std::borrow::Cow<'a, [u8]>> {
        match head.arg {
            Some(n) => {
                let n = self.len(n)?;
                Ok(std::borrow::Cow::Borrowed(self.take(n)?))
            }
            None => {
                let mut out = Vec::new();
                while !self.is_break()? {
                    let chunk = self.head()?;
                    if chunk.major != head.major || chunk.arg.is_none() {
                        return Err(self.err("bad chunk in an indefinite-length string"));
                    }
                    out.extend_from_slice(&self.string_body(chunk)?);
                }
                Ok(std::borrow::Cow::Owned(out))
            }
        }
    }

    fn text_body(&mut self, head: Head) -> Result<String> {
        let bytes = self.string_body(head)?;
        String::from_utf8(bytes.into_owned()).map_err(|_| self.err("text is not UTF-8"))
    }

    /// Reads an integer item (major 0 or 1).
    pub fn int_of(&self, head: Head) -> Result<i64> {
        let arg = head.arg.ok_or_else(|| self.err("indefinite integer"))?;
        let v = i64::try_from(arg).map_err(|_| self.err("integer out of range"))?;
        match head.major {
            0 => Ok(v),
            1 => Ok(-1 - v),
            _ => Err(self.err("not an integer")),
        }
    }

    /// Consumes a break byte (0xff) if one is next: the end of an indefinite-length container.
    pub fn head_is_break(&mut self) -> Result<bool> {
        self.is_break()
    }

    /// The body of a byte string (major 2) whose head was read.
    pub fn bytes_body(&mut self, head: Head) -> Result<std::borrow::Cow<'a, [u8]>> {
        self.string_body(head)
    }

    /// Skips the body of a string whose head was read.
    pub fn skip_body(&mut self, head: Head) -> Result<()> {
        self.string_body(head).map(|_| ())
    }

    /// Skips one complete item.
    pub fn skip(&mut self, depth: usize) -> Result<()> {
        self.json(depth).map(|_| ())
    }

    /// Reads one item as JSON (see [`to_json`] for the mapping).
    pub fn json(&mut self, depth: usize) -> Result<Json> {
        if depth > MAX_DEPTH {
            return Err(self.err("nesting too deep"));
        }
        let head = self.head()?;
        Ok(match head.major {
            0 => match head.arg {
                Some(v) => Json::Number(v.into()),
                None => return Err(self.err("indefinite integer")),
            },
            1 => Json::Number(self.int_of(head)?.into()),
            2 => Json::String(
                base64::engine::general_purpose::STANDARD.encode(self.string_body(head)?),
            ),
            3 => Json::String(self.text_body(head)?),
            4 => {
                let mut items = Vec::new();
                match head.arg {
                    Some(n) => {
                        let n = self.len(n)?;
                        items.reserve(n);
                        for _ in 0..n {
                            items.push(self.json(depth + 1)?);
                        }
                    }
                    None => {
                        while !self.is_break()? {
                            items.push(self.json(depth + 1)?);
                        }
                    }
                }
                Json::Array(items)
            }
            5 => {
                let mut map = Map::new();
                let mut remaining = head.arg.map(|n| self.len(n)).transpose()?;
                loop {
                    match remaining.as_mut() {
                        Some(0) => break,
                        Some(n) => *n -= 1,
                        None => {
                            if self.is_break()? {
                                break;
                            }
                        }
                    }
                    let kh = self.head()?;
                    let key = match kh.major {
                        3 => self.text_body(kh)?,
                        0 | 1 => self.int_of(kh)?.to_string(),
                        _ => return Err(self.err("map key is neither text nor integer")),
                    };
                    let value = self.json(depth + 1)?;
                    if map.insert(key.clone(), value).is_some() {
                        return Err(Error::Cbor(format!("duplicate map key {key:?}")));
                    }
                }
                Json::Object(map)
            }
            6 => {
                let tag = head.arg.ok_or_else(|| self.err("indefinite tag"))?;
                let inner = self.json(depth + 1)?;
                match (tag, &inner) {
                    (1, Json::Number(n)) => {
                        let secs = n
                            .as_f64()
                            .filter(|f| f.is_finite())
                            .ok_or_else(|| self.err("bad epoch"))?
                            as i64;
                        let dt = chrono::DateTime::from_timestamp(secs, 0)
                            .ok_or_else(|| self.err("epoch out of range"))?;
                        Json::String(dt.format("%Y-%m-%dT%H:%M:%SZ").to_string())
                    }
                    (1, _) => return Err(self.err("tag 1 wraps a non-number")),
                    _ => inner,
                }
            }
            _ => match (head.info, head.arg) {
                (20, _) => Json::Bool(false),
                (21, _) => Json::Bool(true),
                (22, _) | (23, _) => Json::Null,
                (25, Some(bits)) => float_json(half_to_f64(bits as u16))?,
                (26, Some(bits)) => float_json(f64::from(f32::from_bits(bits as u32)))?,
                (27, Some(bits)) => float_json(f64::from_bits(bits))?,
                _ => return Err(self.err("unsupported simple value")),
            },
        })
    }
}

fn float_json(f: f64) -> Result<Json> {
    Number::from_f64(f)
        .map(Json::Number)
        .ok_or_else(|| Error::Cbor(format!("non-finite float {f} has no JSON form")))
}

/// IEEE 754 half precision to double (RFC 8949 Appendix D).
fn half_to_f64(half: u16) -> f64 {
    let exp = (half >> 10) & 0x1f;
    let mant = f64::from(half & 0x3ff);
    let val = match exp {
        0 => mant * 2f64.powi(-24),
        31 => {
            if mant == 0.0 {
                f64::INFINITY
            } else {
                f64::NAN
            }
        }
        _ => (mant + 1024.0) * 2f64.powi(i32::from(exp) - 25),
    };
    if half & 0x8000 != 0 {
        -val
    } else {
        val
    }
}
