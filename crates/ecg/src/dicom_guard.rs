//! A bounds pre-scan of DICOM Part 10 bytes before dicom-rs parses them.
//!
//! dicom-parser 0.10 allocates and zero-fills an element's declared length before reading it, so a 3 KB file
//! declaring a 4 GB value made the reader touch 4 GB of memory (found by this crate's `dicom` fuzz target).
//! The scan follows dicom-parser's own reading exactly where it deviates from the standard (group FFFE
//! elements other than items and delimiters, whole-value reads of binary VRs with odd lengths), because a
//! scan that lost step with the parser would miss the header the parser then trusts.
//! This scan walks the element headers — descending into sequences and items, skipping encapsulated
//! fragments — and rejects any declared length longer than the bytes that remain, so that no parse can ask
//! for more memory than the input's size. It checks structure only; dicom-rs still does the real parsing.

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::StandardDataDictionary;

use crate::error::{EcgError, Result};

const UNDEFINED: u32 = 0xFFFF_FFFF;
const MAX_DEPTH: usize = 64;

fn fail(msg: String) -> EcgError {
    EcgError::Dicom(msg)
}

/// The VRs whose explicit-VR length field is 16 bits (PS3.5 7.1.2), as dicom-encoding reads them.
fn short_form(vr: VR) -> bool {
    matches!(
        vr,
        VR::AE
            | VR::AS
            | VR::AT
            | VR::CS
            | VR::DA
            | VR::DS
            | VR::DT
            | VR::FL
            | VR::FD
            | VR::IS
            | VR::LO
            | VR::LT
            | VR::PN
            | VR::SH
            | VR::SL
            | VR::SS
            | VR::ST
            | VR::TM
            | VR::UI
            | VR::UL
            | VR::US
    )
}

struct Scan<'a> {
    b: &'a [u8],
    explicit: bool,
    big_endian: bool,
}

impl Scan<'_> {
    fn u16(&self, at: usize) -> Option<u16> {
        let s: [u8; 2] = self.b.get(at..at + 2)?.try_into().ok()?;
        Some(if self.big_endian {
            u16::from_be_bytes(s)
        } else {
            u16::from_le_bytes(s)
        })
    }

    fn u32(&self, at: usize) -> Option<u32> {
        let s: [u8; 4] = self.b.get(at..at + 4)?.try_into().ok()?;
        Some(if self.big_endian {
            u32::from_be_bytes(s)
        } else {
            u32::from_le_bytes(s)
        })
    }

    fn check(&self, tag: (u16, u16), len: u32, pos: usize, end: usize) -> Result<usize> {
        let len = len as usize;
        if len > end.saturating_sub(pos) {
            return Err(fail(format!(
                "element ({:04X},{:04X}) at byte {pos} declares {len} bytes but only {} remain",
                tag.0,
                tag.1,
                end.saturating_sub(pos)
            )));
        }
        Ok(pos + len)
    }

    /// Elements until `end`, an item delimiter or the end of the data; returns where scanning stopped.
    fn dataset(&self, mut pos: usize, end: usize, depth: usize) -> Result<usize> {
        if depth > MAX_DEPTH {
            return Err(fail(format!(
                "sequences nested deeper than {MAX_DEPTH} levels"
            )));
        }
        while pos + 8 <= end {
            let (Some(group), Some(element)) = (self.u16(pos), self.u16(pos + 2)) else {
                break;
            };
            if group == 0xFFFE {
                // Headers in group FFFE carry no VR. Delimiters end a nested data set (at the top level, where
                // they are stray, scanning goes on); an item's length must fit; any other FFFE element is an
                // ordinary value that dicom-rs reads as UN, so its length must fit and its value is skipped.
                let len = self.u32(pos + 4).unwrap_or(0);
                let tag = (group, element);
                pos += 8;
                // Whatever the parser makes of this header in its context, a defined length must fit: a
                // delimiter's length is zero in any valid file, yet dicom-parser reads a value of that length
                // when a delimiter turns up where it does not expect one.
                if len != UNDEFINED {
                    self.check(tag, len, pos, end)?;
                }
                match element {
                    0xE00D | 0xE0DD => {
                        if depth > 0 {
                            return Ok(pos);
                        }
                    }
                    // An item header where data elements are expected: dicom-parser reads a defined-length one
                    // as a plain value and skips it.
                    0xE000 if len != UNDEFINED => pos += len as usize,
                    0xE000 => {}
                    _ if len == UNDEFINED => {
                        pos = Scan {
                            b: self.b,
                            explicit: false,
                            big_endian: self.big_endian,
                        }
                        .sequence(pos, end, depth + 1)?;
                    }
                    _ => pos = self.check(tag, len, pos, end)?,
                }
                continue;
            }
            let tag = (group, element);
            let (vr, len, header) = if self.explicit {
                // Exactly as dicom-encoding decides: an unknown VR is read as UN, and only the short-form
                // VRs have a 16-bit length.
                let vr = VR::from_binary([self.b[pos + 4], self.b[pos + 5]]).unwrap_or(VR::UN);
                let long = !short_form(vr);
                let vr = Some(vr);
                if long {
                    let Some(len) = self.u32(pos + 8) else { break };
                    (vr, len, 12)
                } else {
                    let Some(len) = self.u16(pos + 6) else { break };
                    (vr, u32::from(len), 8)
                }
            } else {
                let Some(len) = self.u32(pos + 4) else { break };
                let vr = StandardDataDictionary
                    .by_tag(Tag(group, element))
                    .and_then(|e| match e.vr() {
                        VirtualVr::Exact(v) => Some(v),
                        _ => None,
                    });
                (vr, len, 8)
            };
            pos += header;
            if len == UNDEFINED {
                pos = match vr {
                    // Encapsulated pixel data (or other undefined-length bytes): fragments in items.
                    Some(VR::OB | VR::OW) => self.fragments(pos, end)?,
                    // PS3.5 6.2.2: an undefined-length UN is a sequence encoded in implicit VR little endian.
                    Some(VR::UN) if self.explicit => Scan {
                        b: self.b,
                        explicit: false,
                        big_endian: false,
                    }
                    .sequence(pos, end, depth + 1)?,
                    _ => self.sequence(pos, end, depth + 1)?,
                };
            } else {
                let next = self.check(tag, len, pos, end)?;
                if vr == Some(VR::SQ) {
                    self.sequence(pos, next, depth + 1)?;
                }
                // dicom-parser 0.10 reads only whole values of binary VRs (len / size of them) and goes on
                // from there, so an odd length shifts where it reads the next header; follow it.
                let size = match vr {
                    Some(VR::US | VR::OW | VR::SS) => 2,
                    Some(VR::AT | VR::FL | VR::OF | VR::SL | VR::UL | VR::OL) => 4,
                    Some(VR::FD | VR::OD | VR::SV | VR::UV | VR::OV) => 8,
                    _ => 1,
                };
                pos = next - (len as usize % size);
            }
        }
        Ok(pos.min(end))
    }

    /// Items of a sequence until `end` or the sequence delimiter.
    fn sequence(&self, mut pos: usize, end: usize, depth: usize) -> Result<usize> {
        while pos + 8 <= end {
            let (Some(group), Some(element), Some(len)) =
                (self.u16(pos), self.u16(pos + 2), self.u32(pos + 4))
            else {
                break;
            };
            pos += 8;
            if len != UNDEFINED {
                self.check((group, element), len, pos, end)?;
            }
            match (group, element) {
                (0xFFFE, 0xE0DD) => return Ok(pos),
                (0xFFFE, 0xE000) if len == UNDEFINED => pos = self.dataset(pos, end, depth)?,
                (0xFFFE, 0xE000) => {
                    let next = self.check((group, element), len, pos, end)?;
                    self.dataset(pos, next, depth)?;
                    pos = next;
                }
                // Not an item: malformed, and dicom-rs will say so.
                _ => return Ok(pos),
            }
        }
        Ok(pos.min(end))
    }

    /// Encapsulated fragments until the sequence delimiter.
    fn fragments(&self, mut pos: usize, end: usize) -> Result<usize> {
        while pos + 8 <= end {
            let (Some(group), Some(element), Some(len)) =
                (self.u16(pos), self.u16(pos + 2), self.u32(pos + 4))
            else {
                break;
            };
            pos += 8;
            if (group, element) == (0xFFFE, 0xE0DD) {
                if len != UNDEFINED {
                    self.check((group, element), len, pos, end)?;
                }
                return Ok(pos);
            }
            if len == UNDEFINED {
                return Err(fail(format!(
                    "fragment at byte {pos} has an undefined length"
                )));
            }
            pos = self.check((group, element), len, pos, end)?;
        }
        Ok(pos.min(end))
    }
}

/// Checks the declared lengths of a Part 10 stream that starts with "DICM" (after the preamble).
pub fn check_declared_lengths(body: &[u8]) -> Result<()> {
    // The file meta group is always explicit VR little endian.
    let meta = Scan {
        b: body,
        explicit: true,
        big_endian: false,
    };
    let mut pos = 4;
    let mut transfer_syntax = String::new();
    // dicom-object reads the group length (0002,0000) first, then elements of any tag until that many bytes
    // are consumed; the data set starts wherever that ends, so the scan must count the same way.
    let mut group_end: Option<usize> = None;
    while pos + 8 <= body.len() && group_end.is_none_or(|e| pos < e) {
        let group = meta.u16(pos).unwrap_or(0);
        let element = meta.u16(pos + 2).unwrap_or(0);
        let vr = [body[pos + 4], body[pos + 5]];
        let long = !VR::from_binary(vr).is_some_and(short_form);
        let (len, header) = if long {
            (meta.u32(pos + 8).unwrap_or(UNDEFINED), 12)
        } else {
            (u32::from(meta.u16(pos + 6).unwrap_or(0)), 8)
        };
        if len == UNDEFINED {
            return Err(fail(format!(
                "file meta element ({group:04X},{element:04X}) has an undefined length"
            )));
        }
        let start = pos + header;
        let next = meta.check((group, element), len, start, body.len())?;
        match (group, element, group_end) {
            (2, 0, None) if len == 4 => {
                group_end = meta.u32(start).map(|g| next.saturating_add(g as usize));
            }
            // Without a group length first, dicom-object refuses the file before reading any value.
            (_, _, None) => return Ok(()),
            (2, 0x0010, Some(_)) => {
                transfer_syntax = String::from_utf8_lossy(&body[start..next])
                    .trim_end_matches(['\0', ' '])
                    .to_string();
            }
            _ => {}
        }
        pos = next;
    }
    let scan = match transfer_syntax.as_str() {
        "1.2.840.10008.1.2" => Scan {
            b: body,
            explicit: false,
            big_endian: false,
        },
        "1.2.840.10008.1.2.2" => Scan {
            b: body,
            explicit: true,
            big_endian: true,
        },
        // A deflated data set cannot be scanned before inflation; such ECGs are rare and dicom-rs inflates
        // into memory bounded by the compressed stream's own content.
        "1.2.840.10008.1.2.1.99" => return Ok(()),
        _ => Scan {
            b: body,
            explicit: true,
            big_endian: false,
        },
    };
    scan.dataset(pos, body.len(), 0).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> Vec<u8> {
        let ts = b"1.2.840.10008.1.2.1\0";
        let mut group = vec![0x02, 0x00, 0x10, 0x00, b'U', b'I'];
        group.extend_from_slice(&(ts.len() as u16).to_le_bytes());
        group.extend_from_slice(ts);
        let mut b = b"DICM".to_vec();
        b.extend_from_slice(&[0x02, 0x00, 0x00, 0x00, b'U', b'L', 4, 0]);
        b.extend_from_slice(&(group.len() as u32).to_le_bytes());
        b.extend_from_slice(&group);
        b
    }

    #[test]
    fn the_data_set_starts_where_the_group_length_says() {
        // A group length that ends the meta group early: the rest of group 0002 is data set to dicom-object,
        // so a huge length there must be caught.
        let mut b = b"DICM".to_vec();
        b.extend_from_slice(&[0x02, 0x00, 0x00, 0x00, b'U', b'L', 4, 0, 0, 0, 0, 0]);
        b.extend_from_slice(&[
            0x02, 0x00, 0x10, 0x00, b'O', b'B', 0, 0, 0xF0, 0xFF, 0xFF, 0x7F,
        ]);
        assert!(check_declared_lengths(&b).is_err());
    }

    #[test]
    fn huge_declared_lengths_are_rejected_anywhere() {
        // A top-level OB claiming 4 GB.
        let mut b = meta();
        b.extend_from_slice(&[
            0x09, 0x00, 0x10, 0x00, b'O', b'B', 0, 0, 0xF0, 0xFF, 0xFF, 0xFF,
        ]);
        b.extend_from_slice(&[1, 2, 3, 4]);
        let e = check_declared_lengths(&b).unwrap_err().to_string();
        assert!(
            e.contains("(0009,0010)") && e.contains("only 4 remain"),
            "{e}"
        );
        // The same inside an undefined-length sequence item.
        let mut b = meta();
        b.extend_from_slice(&[
            0x00, 0x54, 0x00, 0x01, b'S', b'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
        ]);
        b.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
        b.extend_from_slice(&[
            0x00, 0x54, 0x10, 0x10, b'O', b'W', 0, 0, 0x00, 0x00, 0x00, 0x40,
        ]);
        let e = check_declared_lengths(&b).unwrap_err().to_string();
        assert!(e.contains("(5400,1010)"), "{e}");
        // Deep nesting is refused rather than recursed into.
        let mut b = meta();
        for _ in 0..100 {
            b.extend_from_slice(&[
                0x00, 0x54, 0x00, 0x01, b'S', b'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
            ]);
            b.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
        }
        assert!(check_declared_lengths(&b)
            .unwrap_err()
            .to_string()
            .contains("nested"));
    }

    #[test]
    fn well_formed_lengths_pass() {
        let mut b = meta();
        b.extend_from_slice(&[0x08, 0x00, 0x60, 0x00, b'C', b'S', 2, 0, b'E', b'C']);
        assert!(check_declared_lengths(&b).is_ok());
    }
}
