//! WFDB annotation files in MIT format (`annot(5)`), including the SKIP, NUM, SUB, CHN and AUX pseudo-codes.
//!
//! Each annotation is a little-endian 16-bit word: the top 6 bits hold the code, the low 10 bits the time since
//! the previous annotation. Pseudo-codes modify the annotation just read (SUB, CHN, NUM, AUX) or the time of
//! the next one (SKIP). Hand-written because no Rust crate reads this format.

use crate::error::{EcgError, Result};

/// Pseudo-code: a 32-bit time increment follows.
pub const SKIP: u8 = 59;
/// Pseudo-code: sets `num` for this and later annotations.
pub const NUM: u8 = 60;
/// Pseudo-code: sets `subtype` of the current annotation.
pub const SUB: u8 = 61;
/// Pseudo-code: sets `chan` for this and later annotations.
pub const CHN: u8 = 62;
/// Pseudo-code: auxiliary bytes follow.
pub const AUX: u8 = 63;

/// One annotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Annotation {
    /// Sample index (time) of the annotation.
    pub sample: i64,
    /// The annotation code (1 = NORMAL, 5 = PVC, ...).
    pub code: u8,
    pub subtype: i8,
    pub chan: u8,
    pub num: i8,
    /// Auxiliary text (e.g. rhythm labels such as "(N"), trailing NULs removed.
    pub aux: Option<String>,
}

impl Annotation {
    /// The WFDB mnemonic of the code.
    pub fn symbol(&self) -> &'static str {
        code_symbol(self.code)
    }

    /// True when the annotation marks a QRS complex (WFDB's `isqrs`).
    pub fn is_beat(&self) -> bool {
        is_beat_code(self.code)
    }
}

/// WFDB's `isqrs` table: the codes that label a heartbeat.
pub fn is_beat_code(code: u8) -> bool {
    matches!(code, 1..=13 | 25 | 30 | 34 | 35 | 38 | 41)
}

/// The WFDB mnemonic for an annotation code (`ecgcodes.h`).
pub fn code_symbol(code: u8) -> &'static str {
    const TABLE: [&str; 42] = [
        " ", "N", "L", "R", "a", "V", "F", "J", "A", "S", "E", "j", "/", "Q", "~", "[15]", "|",
        "[17]", "s", "T", "*", "D", "\"", "=", "p", "B", "^", "t", "+", "u", "?", "!", "[", "]",
        "e", "n", "@", "x", "f", "(", ")", "r",
    ];
    TABLE.get(usize::from(code)).copied().unwrap_or("[?]")
}

/// The annotation code for a WFDB mnemonic, the inverse of [`code_symbol`] for the defined codes.
pub fn symbol_code(symbol: &str) -> Option<u8> {
    (0u8..=41).find(|&c| code_symbol(c) == symbol && !code_symbol(c).starts_with('['))
}

/// Parses a whole MIT-format annotation file.
pub fn parse_annotations(bytes: &[u8]) -> Result<Vec<Annotation>> {
    let mut out: Vec<Annotation> = Vec::new();
    let mut pos = 0usize;
    let mut time: i64 = 0;
    let mut chan: u8 = 0;
    let mut num: i8 = 0;
    let word_at = |pos: usize| -> Option<u16> {
        let b = bytes.get(pos..pos + 2)?;
        Some(u16::from_le_bytes([b[0], b[1]]))
    };
    // Annotations that follow a non-annotation pseudo-code must come after a real annotation.
    let need_current = |out: &mut Vec<Annotation>, offset: usize| -> Result<usize> {
        if out.is_empty() {
            return Err(EcgError::BadAnnotation {
                offset,
                what: "modifier pseudo-code before any annotation",
            });
        }
        Ok(out.len() - 1)
    };
    loop {
        let Some(word) = word_at(pos) else {
            if pos < bytes.len() {
                return Err(EcgError::TruncatedAnnotation {
                    offset: pos,
                    what: "odd trailing byte",
                });
            }
            // Some writers omit the end-of-file word; a clean word boundary is accepted as the end.
            break;
        };
        let code = (word >> 10) as u8;
        let interval = i64::from(word & 0x3FF);
        let here = pos;
        pos += 2;
        match code {
            0 if interval == 0 => break,
            SKIP => {
                // A 32-bit interval follows as two 16-bit words, high word first (PDP-11 order).
                let (Some(hi), Some(lo)) = (word_at(pos), word_at(pos + 2)) else {
                    return Err(EcgError::TruncatedAnnotation {
                        offset: here,
                        what: "SKIP without its 32-bit interval",
                    });
                };
                pos += 4;
                let skip = i64::from(((u32::from(hi) << 16) | u32::from(lo)) as i32);
                time = time.checked_add(skip).ok_or(EcgError::BadAnnotation {
                    offset: here,
                    what: "SKIP overflows the time",
                })?;
                if time < 0 {
                    return Err(EcgError::BadAnnotation {
                        offset: here,
                        what: "SKIP moves the time before the start of the record",
                    });
                }
            }
            NUM => {
                // The 10-bit field is a signed number in two's complement.
                num = sign10(interval) as i8;
                let i = need_current(&mut out, here)?;
                out[i].num = num;
            }
            SUB => {
                let i = need_current(&mut out, here)?;
                out[i].subtype = sign10(interval) as i8;
            }
            CHN => {
                chan = interval as u8;
                let i = need_current(&mut out, here)?;
                out[i].chan = chan;
            }
            AUX => {
                let len = interval as usize;
                let Some(data) = bytes.get(pos..pos + len) else {
                    return Err(EcgError::TruncatedAnnotation {
                        offset: here,
                        what: "AUX string longer than the rest of the file",
                    });
                };
                pos += len + (len & 1);
                let i = need_current(&mut out, here)?;
                let text = String::from_utf8_lossy(data)
                    .trim_end_matches('\0')
                    .to_string();
                out[i].aux = Some(text);
            }
            _ => {
                time += interval;
                out.push(Annotation {
                    sample: time,
                    code,
                    subtype: 0,
                    chan,
                    num,
                    aux: None,
                });
            }
        }
    }
    Ok(out)
}

fn sign10(v: i64) -> i64 {
    if v & 0x200 != 0 {
        v - 0x400
    } else {
        v
    }
}

/// Writes annotations in MIT format (used by tests and to export detections for WFDB tools).
pub fn write_annotations(anns: &[Annotation]) -> Vec<u8> {
    let mut out = Vec::new();
    let put = |w: u16, out: &mut Vec<u8>| out.extend_from_slice(&w.to_le_bytes());
    let (mut t, mut chan, mut num) = (0i64, 0u8, 0i8);
    for a in anns {
        let mut delta = a.sample - t;
        if !(0..=1023).contains(&delta) {
            // A SKIP carries a signed 32-bit interval; larger jumps take several.
            while delta != 0 {
                let step = delta.clamp(i64::from(i32::MIN), i64::from(i32::MAX));
                put(u16::from(SKIP) << 10, &mut out);
                let d = step as i32 as u32;
                put((d >> 16) as u16, &mut out);
                put((d & 0xFFFF) as u16, &mut out);
                delta -= step;
            }
            put(u16::from(a.code) << 10, &mut out);
        } else {
            put((u16::from(a.code) << 10) | delta as u16, &mut out);
        }
        t = a.sample;
        if a.subtype != 0 {
            put(
                (u16::from(SUB) << 10) | (a.subtype as u16 & 0x3FF),
                &mut out,
            );
        }
        if a.chan != chan {
            put((u16::from(CHN) << 10) | u16::from(a.chan), &mut out);
            chan = a.chan;
        }
        if a.num != num {
            put((u16::from(NUM) << 10) | (a.num as u16 & 0x3FF), &mut out);
            num = a.num;
        }
        if let Some(aux) = &a.aux {
            let b = aux.as_bytes();
            let len = b.len().min(255);
            put((u16::from(AUX) << 10) | len as u16, &mut out);
            out.extend_from_slice(&b[..len]);
            if len % 2 == 1 {
                out.push(0);
            }
        }
    }
    put(0, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann(sample: i64, code: u8) -> Annotation {
        Annotation {
            sample,
            code,
            subtype: 0,
            chan: 0,
            num: 0,
            aux: None,
        }
    }

    #[test]
    fn pseudo_codes_round_trip() {
        let anns = vec![
            Annotation {
                aux: Some("(N".into()),
                code: 28,
                ..ann(18, 28)
            },
            ann(77, 1),
            // A gap larger than 1023 samples needs SKIP.
            Annotation {
                subtype: -3,
                chan: 1,
                num: 7,
                ..ann(100_000, 5)
            },
            // A jump beyond the 32-bit range takes several SKIPs.
            Annotation {
                chan: 1,
                num: 7,
                ..ann(5_000_000_000, 1)
            },
            // chan and num carry over when not repeated.
            Annotation {
                chan: 1,
                num: 7,
                ..ann(5_000_000_300, 1)
            },
            Annotation {
                chan: 0,
                num: -2,
                aux: Some("odd".into()),
                ..ann(5_000_000_301, 22)
            },
        ];
        let bytes = write_annotations(&anns);
        assert_eq!(parse_annotations(&bytes).unwrap(), anns);
    }

    #[test]
    fn symbols_and_beats() {
        assert_eq!(code_symbol(1), "N");
        assert_eq!(code_symbol(5), "V");
        assert_eq!(code_symbol(28), "+");
        assert_eq!(symbol_code("A"), Some(8));
        assert_eq!(symbol_code("+"), Some(28));
        assert!(is_beat_code(1) && is_beat_code(8) && is_beat_code(41));
        assert!(!is_beat_code(28) && !is_beat_code(14) && !is_beat_code(37));
    }

    #[test]
    fn corrupt_files_are_rejected() {
        let table: &[(&[u8], &str)] = &[
            (&[0x12], "odd trailing byte"),
            (&[0x00, 0xEC, 0x00], "SKIP without"),
            (&[0x01, 0x04, 0x05, 0xFC, b'a'], "AUX string longer"),
            (&[0x03, 0xF8, 0x00, 0x00], "before any annotation"),
            (
                &[0x00, 0xEC, 0xFF, 0xFF, 0x00, 0x00, 0x01, 0x04],
                "before the start",
            ),
        ];
        for (bytes, want) in table {
            let err = parse_annotations(bytes).unwrap_err().to_string();
            assert!(err.contains(want), "{bytes:?}: {err}");
        }
    }

    #[test]
    fn missing_eof_word_is_accepted() {
        assert_eq!(parse_annotations(&[0x05, 0x04]).unwrap(), vec![ann(5, 1)]);
        assert_eq!(parse_annotations(&[]).unwrap(), vec![]);
    }
}
