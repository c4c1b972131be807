//! SCP-ECG (EN 1064 / ISO 11073-91064) records: CRC-checked sections, Section 3 lead definitions and
//! Section 6 rhythm data, uncompressed or Huffman-encoded with the standard's default table, stored as
//! samples, first or second differences.
//!
//! Written by hand because no Rust crate reads SCP-ECG. Not supported (rejected with a clear error): custom
//! Huffman tables, reference-beat subtraction and bimodal compression, which only some carts use.

use std::path::Path;

use crate::error::{EcgError, Result};
use crate::signal::{Ecg, Lead};

/// CRC-CCITT as SCP-ECG uses it (polynomial 0x1021, initial value 0xFFFF).
const CRC: crc::Crc<u16> = crc::Crc::<u16>::new(&crc::CRC_16_IBM_3740);

fn err(msg: impl Into<String>) -> EcgError {
    EcgError::Scp(msg.into())
}

/// True when the bytes start like an SCP-ECG record (Section 0 header carrying "SCPECG").
pub fn is_scp(bytes: &[u8]) -> bool {
    bytes.get(16..22) == Some(b"SCPECG") && bytes.get(8..10) == Some(&[0, 0])
}

/// Reads an SCP-ECG file from disk.
pub fn read_scp_file(path: &Path) -> Result<Ecg> {
    let bytes = std::fs::read(path).map_err(|source| EcgError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    read_scp(&bytes)
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// A section's body (after its 16-byte header), its CRC verified.
fn section(rec: &[u8], id: u16, start: usize, len: usize) -> Result<&[u8]> {
    let s = rec.get(start..start.saturating_add(len)).ok_or_else(|| {
        err(format!(
            "section {id} ({len} bytes at byte {start}) lies outside the record"
        ))
    })?;
    if s.len() < 16 {
        return Err(err(format!(
            "section {id} is shorter than its 16-byte header"
        )));
    }
    let stored = u16_at(s, 0).unwrap_or(0);
    let computed = CRC.checksum(&s[2..]);
    if stored != computed {
        return Err(err(format!(
            "section {id} CRC mismatch (stored {stored:#06x}, computed {computed:#06x})"
        )));
    }
    let sid = u16_at(s, 2).unwrap_or(u16::MAX);
    if sid != id {
        return Err(err(format!(
            "pointer to section {id} leads to section {sid}"
        )));
    }
    let declared = u32_at(s, 4).unwrap_or(0) as usize;
    if declared != len {
        return Err(err(format!(
            "section {id} declares {declared} bytes, its pointer {len}"
        )));
    }
    Ok(&s[16..])
}

/// Lead names for the SCP-ECG lead identification codes (EN 1064 Table 41) that resting ECGs use.
fn lead_name(id: u8) -> String {
    match id {
        1 => "I",
        2 => "II",
        3 => "V1",
        4 => "V2",
        5 => "V3",
        6 => "V4",
        7 => "V5",
        8 => "V6",
        61 => "III",
        62 => "aVR",
        63 => "aVL",
        64 => "aVF",
        _ => return format!("SCP lead {id}"),
    }
    .to_string()
}

/// Parses an SCP-ECG record held in memory.
pub fn read_scp(rec: &[u8]) -> Result<Ecg> {
    if rec.len() < 6 + 16 {
        return Err(err(format!(
            "{} bytes is too short for an SCP-ECG record",
            rec.len()
        )));
    }
    let size = u32_at(rec, 2).unwrap_or(0) as usize;
    if size != rec.len() {
        return Err(err(format!(
            "record declares {size} bytes but {} are present",
            rec.len()
        )));
    }
    let stored = u16_at(rec, 0).unwrap_or(0);
    let computed = CRC.checksum(&rec[2..]);
    if stored != computed {
        return Err(err(format!(
            "record CRC mismatch (stored {stored:#06x}, computed {computed:#06x})"
        )));
    }
    if !is_scp(rec) {
        return Err(err(
            "section 0 does not start at byte 7 with the \"SCPECG\" mark",
        ));
    }
    let s0_len = u32_at(rec, 10).unwrap_or(0) as usize;
    let s0 = section(rec, 0, 6, s0_len)?;
    // Pointer fields: section id, length, 1-based index into the record.
    let mut ptr = std::collections::BTreeMap::new();
    for p in s0.chunks_exact(10) {
        let id = u16_at(p, 0).unwrap_or(0);
        let len = u32_at(p, 2).unwrap_or(0) as usize;
        let index = u32_at(p, 6).unwrap_or(0) as usize;
        if len > 0 && index > 0 {
            ptr.insert(id, (index - 1, len));
        }
    }
    let get = |id: u16| -> Result<Option<&[u8]>> {
        match ptr.get(&id) {
            Some(&(start, len)) => section(rec, id, start, len).map(Some),
            None => Ok(None),
        }
    };
    let huffman = match get(2)? {
        None => false,
        Some(b) => match u16_at(b, 0) {
            Some(19999) => true,
            Some(n) => {
                return Err(err(format!(
                    "section 2 defines {n} custom Huffman table(s); only the default table (19999) is supported"
                )))
            }
            None => return Err(err("section 2 is empty")),
        },
    };
    let s3 = get(3)?.ok_or_else(|| err("section 3 (lead definition) is missing"))?;
    let nleads = usize::from(*s3.first().ok_or_else(|| err("section 3 is empty"))?);
    let flags = s3.get(1).copied().unwrap_or(0);
    if flags & 1 != 0 {
        return Err(err("reference beat subtraction is used (not supported)"));
    }
    if nleads == 0 {
        return Err(err("section 3 defines no lead"));
    }
    let mut defs = Vec::with_capacity(nleads);
    for i in 0..nleads {
        let at = 2 + 9 * i;
        let (Some(start), Some(end), Some(&id)) =
            (u32_at(s3, at), u32_at(s3, at + 4), s3.get(at + 8))
        else {
            return Err(err(format!("section 3 is truncated at lead {i}")));
        };
        if end < start || start == 0 {
            return Err(err(format!(
                "lead {i}: sample range {start}..{end} is invalid"
            )));
        }
        defs.push(((end - start + 1) as usize, id));
    }
    let samples = defs[0].0;
    if defs.iter().any(|d| d.0 != samples) {
        return Err(err("leads cover different sample ranges (not supported)"));
    }
    if samples > 100_000_000 {
        return Err(err(format!("{samples} samples per lead is implausible")));
    }
    let s6 = get(6)?.ok_or_else(|| err("section 6 (rhythm data) is missing"))?;
    let (Some(avm), Some(interval), Some(&diff), Some(&bimodal)) =
        (u16_at(s6, 0), u16_at(s6, 2), s6.get(4), s6.get(5))
    else {
        return Err(err("section 6 header is truncated"));
    };
    if bimodal != 0 {
        return Err(err("bimodal compression is used (not supported)"));
    }
    if avm == 0 || interval == 0 {
        return Err(err(format!(
            "section 6: amplitude multiplier {avm} nV or sample interval {interval} us is zero"
        )));
    }
    if diff > 2 {
        return Err(err(format!(
            "section 6: difference encoding {diff} is not 0, 1 or 2"
        )));
    }
    let mut at = 6 + 2 * nleads;
    let lens: Vec<usize> = (0..nleads)
        .map(|i| u16_at(s6, 6 + 2 * i).map(usize::from))
        .collect::<Option<_>>()
        .ok_or_else(|| err("section 6 lead lengths are truncated"))?;
    let mv_per_unit = f64::from(avm) * 1e-6;
    let mut leads = Vec::with_capacity(nleads);
    for (i, (&len, &(_, id))) in lens.iter().zip(&defs).enumerate() {
        let data = s6
            .get(at..at + len)
            .ok_or_else(|| err(format!("section 6: lead {i} data runs past the section")))?;
        at += len;
        let d = if huffman {
            decode_default_huffman(data, samples).ok_or_else(|| {
                err(format!(
                    "lead {i}: Huffman data ends before {samples} samples"
                ))
            })?
        } else {
            if data.len() < 2 * samples {
                return Err(err(format!(
                    "lead {i}: {} bytes hold fewer than {samples} 16-bit samples",
                    data.len()
                )));
            }
            data.chunks_exact(2)
                .take(samples)
                .map(|c| i64::from(i16::from_le_bytes([c[0], c[1]])))
                .collect()
        };
        let x = undifference(&d, diff);
        leads.push(Lead {
            name: lead_name(id),
            samples: x.iter().map(|&v| v as f64 * mv_per_unit).collect(),
        });
    }
    Ecg::new(1e6 / f64::from(interval), leads)
}

/// Reconstructs samples from first or second differences (EN 1064 §5.9.4).
fn undifference(d: &[i64], order: u8) -> Vec<i64> {
    let mut x = Vec::with_capacity(d.len());
    for (i, &v) in d.iter().enumerate() {
        let s = match (order, i) {
            (1, i) if i >= 1 => v.saturating_add(x[i - 1]),
            (2, i) if i >= 2 => v
                .saturating_add(x[i - 1].saturating_mul(2))
                .saturating_sub(x[i - 2]),
            _ => v,
        };
        x.push(s);
    }
    x
}

/// Decodes `count` values with the default Huffman table of EN 1064 (Annex C): `0` is 0; k ones, a zero and
/// a sign bit encode ±k for k = 1..8; ten ones but a final zero escape to an 8-bit value, ten ones to a
/// 16-bit value. Bits are read most significant first.
fn decode_default_huffman(data: &[u8], count: usize) -> Option<Vec<i64>> {
    // Every value takes at least one bit, which bounds what a hostile sample count can make us allocate.
    let mut out = Vec::with_capacity(count.min(data.len() * 8));
    let mut bit = 0usize;
    let total = data.len() * 8;
    let read = |n: usize, bit: &mut usize| -> Option<u32> {
        if *bit + n > total {
            return None;
        }
        let mut v = 0u32;
        for _ in 0..n {
            let b = (data[*bit / 8] >> (7 - *bit % 8)) & 1;
            v = (v << 1) | u32::from(b);
            *bit += 1;
        }
        Some(v)
    };
    while out.len() < count {
        let mut ones = 0;
        while ones < 10 && read(1, &mut bit)? == 1 {
            ones += 1;
        }
        let v = match ones {
            0 => 0,
            // `ones` ones and a zero: a sign bit follows.
            1..=8 => {
                let k = i64::from(ones as u8);
                if read(1, &mut bit)? == 1 {
                    -k
                } else {
                    k
                }
            }
            9 => i64::from(read(8, &mut bit)? as u8 as i8),
            _ => i64::from(read(16, &mut bit)? as u16 as i16),
        };
        out.push(v);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_huffman_codes() {
        // 0 | 1 -> 100 | -1 -> 101 | 8 -> 1111111100 | escape8(-100) | escape16(1000).
        let bits = [
            "0",
            "100",
            "101",
            "1111111100",
            "1111111110",
            "10011100",
            "1111111111",
            "0000001111101000",
        ]
        .concat();
        let mut bytes = Vec::new();
        for chunk in bits.as_bytes().chunks(8) {
            // Pad the last byte with zeros, as writers do.
            let mut b = 0u8;
            for (i, c) in chunk.iter().enumerate() {
                b |= (c - b'0') << (7 - i);
            }
            bytes.push(b);
        }
        let v = decode_default_huffman(&bytes, 6).unwrap();
        assert_eq!(v, vec![0, 1, -1, 8, -100, 1000]);
        assert!(decode_default_huffman(&bytes, 40).is_none());
        assert_eq!(decode_default_huffman(&[], 0), Some(vec![]));
    }

    #[test]
    fn differences() {
        assert_eq!(undifference(&[5, 1, 1, -2], 1), vec![5, 6, 7, 5]);
        // x = 1, 3, 6, 10 -> second differences 1, 3, (6-6+1)=1, (10-12+3)=1
        assert_eq!(undifference(&[1, 3, 1, 1], 2), vec![1, 3, 6, 10]);
        assert_eq!(undifference(&[4, 2], 0), vec![4, 2]);
    }
}
