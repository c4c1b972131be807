//! Decoding WFDB signal files (`.dat`) in the common storage formats, per `signal(5)`.

use super::header::{Header, SignalSpec};
use crate::error::{EcgError, Result};
use crate::signal::{normalise_lead_name, Ecg, Lead};

/// A decoded WFDB record: the header plus each signal's samples in ADC units.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub header: Header,
    /// One vector of ADC values per signal; the format's invalid-sample value is kept as read.
    pub adu: Vec<Vec<i32>>,
}

/// The ADC value a format uses to mark an invalid (missing) sample.
pub fn invalid_value(format: u16) -> i32 {
    match format {
        212 => -2048,
        80 => -128,
        _ => -32768,
    }
}

/// Bytes needed to hold `k` samples of a format.
fn bytes_for(format: u16, k: usize) -> Option<usize> {
    match format {
        212 => (k / 2)
            .checked_mul(3)?
            .checked_add(if k % 2 == 1 { 2 } else { 0 }),
        16 | 61 | 160 => k.checked_mul(2),
        80 => Some(k),
        _ => None,
    }
}

/// Whole samples that fit in `n` bytes.
fn samples_in(format: u16, n: usize) -> usize {
    match format {
        212 => (n / 3) * 2 + usize::from(n % 3 == 2),
        16 | 61 | 160 => n / 2,
        _ => n,
    }
}

fn decode(format: u16, data: &[u8], k: usize, out: &mut Vec<i32>) {
    out.reserve(k);
    match format {
        212 => {
            // Two 12-bit samples packed into three bytes: the low nibble of the middle byte holds the high bits
            // of the first sample, its high nibble those of the second.
            let sext = |v: i32| if v & 0x800 != 0 { v - 0x1000 } else { v };
            for i in 0..k {
                let p = (i / 2) * 3;
                let v = if i % 2 == 0 {
                    i32::from(data[p]) | (i32::from(data[p + 1] & 0x0F) << 8)
                } else {
                    i32::from(data[p + 2]) | (i32::from(data[p + 1] & 0xF0) << 4)
                };
                out.push(sext(v));
            }
        }
        16 => out.extend(
            data[..k * 2]
                .chunks_exact(2)
                .map(|c| i32::from(i16::from_le_bytes([c[0], c[1]]))),
        ),
        61 => out.extend(
            data[..k * 2]
                .chunks_exact(2)
                .map(|c| i32::from(i16::from_be_bytes([c[0], c[1]]))),
        ),
        160 => out.extend(
            data[..k * 2]
                .chunks_exact(2)
                .map(|c| i32::from(u16::from_le_bytes([c[0], c[1]])) - 32768),
        ),
        _ => out.extend(data[..k].iter().map(|&b| i32::from(b) - 128)),
    }
}

/// Decodes the signals of a parsed header, asking `load` for the bytes of each signal file by name.
pub fn decode_record<F>(header: Header, mut load: F) -> Result<Record>
where
    F: FnMut(&str) -> Result<Vec<u8>>,
{
    let nsig = header.signals.len();
    for (i, s) in header.signals.iter().enumerate() {
        if !matches!(s.format, 16 | 61 | 80 | 160 | 212) {
            return Err(EcgError::UnsupportedFormat {
                signal: i,
                format: s.format,
            });
        }
        if s.samples_per_frame != 1 {
            return Err(EcgError::UnsupportedWfdb(format!(
                "signal {i} has {} samples per frame (multi-frequency records are not read)",
                s.samples_per_frame
            )));
        }
        if s.skew != 0 {
            return Err(EcgError::UnsupportedWfdb(format!(
                "signal {i} declares a skew of {} samples",
                s.skew
            )));
        }
    }
    // Signals stored in one file form a group whose samples are interleaved frame by frame.
    let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
    for (i, s) in header.signals.iter().enumerate() {
        match groups.iter_mut().find(|(f, _)| *f == s.file_name) {
            Some((_, members)) => {
                let first = members[0];
                let fs = &header.signals[first];
                if fs.format != s.format {
                    return Err(EcgError::InconsistentGroup {
                        file: s.file_name.clone(),
                        first,
                        second: i,
                        what: "formats",
                    });
                }
                if fs.byte_offset != s.byte_offset {
                    return Err(EcgError::InconsistentGroup {
                        file: s.file_name.clone(),
                        first,
                        second: i,
                        what: "byte offsets",
                    });
                }
                members.push(i);
            }
            None => groups.push((s.file_name.clone(), vec![i])),
        }
    }
    let mut adu: Vec<Vec<i32>> = vec![Vec::new(); nsig];
    let mut nsamp = header.samples;
    for (file, members) in &groups {
        let spec: &SignalSpec = &header.signals[members[0]];
        let bytes = load(file)?;
        let offset = usize::try_from(spec.byte_offset).unwrap_or(usize::MAX);
        let data = bytes.get(offset..).unwrap_or(&[]);
        let m = members.len();
        let frames = match nsamp {
            Some(n) => n,
            None => {
                let n = samples_in(spec.format, data.len()) / m;
                nsamp = Some(n);
                n
            }
        };
        let k = frames
            .checked_mul(m)
            .ok_or_else(|| EcgError::UnsupportedWfdb("sample count overflows".into()))?;
        let need = bytes_for(spec.format, k)
            .ok_or_else(|| EcgError::UnsupportedWfdb("sample count overflows".into()))?;
        if data.len() < need {
            return Err(EcgError::ShortSignalFile {
                file: file.clone(),
                samples: frames,
                expected: need.saturating_add(offset),
                actual: bytes.len(),
            });
        }
        let mut flat = Vec::new();
        decode(spec.format, data, k, &mut flat);
        for (j, &sig) in members.iter().enumerate() {
            adu[sig] = flat.iter().skip(j).step_by(m).copied().collect();
        }
    }
    for (i, s) in header.signals.iter().enumerate() {
        if let Some(expected) = s.checksum {
            // WFDB's checksum is the 16-bit sum of all samples, so it only applies to a complete read.
            let computed = adu[i].iter().fold(0i32, |acc, &v| acc.wrapping_add(v)) as u16 as i16;
            if computed != expected {
                return Err(EcgError::ChecksumMismatch {
                    signal: i,
                    expected,
                    computed,
                });
            }
        }
    }
    Ok(Record { header, adu })
}

impl Record {
    /// Converts into physical units (millivolts when the header says mV or uV), marking invalid samples NaN.
    pub fn to_ecg(&self) -> Result<Ecg> {
        let leads = self
            .header
            .signals
            .iter()
            .zip(&self.adu)
            .enumerate()
            .map(|(i, (spec, adu))| {
                let invalid = invalid_value(spec.format);
                let scale = match spec.units.as_str() {
                    "uV" | "µV" => 1e-3,
                    "V" => 1e3,
                    _ => 1.0,
                };
                let name = if spec.description.is_empty() {
                    format!("signal {i}")
                } else {
                    normalise_lead_name(&spec.description)
                };
                Lead {
                    name,
                    samples: adu
                        .iter()
                        .map(|&v| {
                            if v == invalid {
                                f64::NAN
                            } else {
                                spec.to_physical(v) * scale
                            }
                        })
                        .collect(),
                }
            })
            .collect();
        Ecg::new(self.header.fs, leads)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wfdb::header::parse_header;

    fn enc212(samples: &[i32]) -> Vec<u8> {
        let mut out = Vec::new();
        for pair in samples.chunks(2) {
            let a = (pair[0] & 0xFFF) as u32;
            out.push((a & 0xFF) as u8);
            if pair.len() == 2 {
                let b = (pair[1] & 0xFFF) as u32;
                out.push((((b >> 8) << 4) | (a >> 8)) as u8);
                out.push((b & 0xFF) as u8);
            } else {
                out.push((a >> 8) as u8);
            }
        }
        out
    }

    #[test]
    fn format_212_round_trips_including_odd_counts_and_negatives() {
        let samples = [0, 1, -1, 2047, -2048, 1000, -1000];
        let bytes = enc212(&samples);
        assert_eq!(bytes.len(), 11);
        let h = parse_header("r 1 100 7\nr.dat 212\n").unwrap();
        let rec = decode_record(h, |_| Ok(bytes.clone())).unwrap();
        assert_eq!(rec.adu[0], samples);
    }

    #[test]
    fn format_16_multi_signal_interleaving_and_physical_units() {
        // Three signals, two frames: (10, -20, 30), (11, -21, 31).
        let vals: [i16; 6] = [10, -20, 30, 11, -21, 31];
        let bytes: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
        let h = parse_header(
            "r 3 500 2\nr.dat 16 100(10)/mV 16 0 10 21 0 I\nr.dat 16 1000/uV 16 0\nr.dat 16 200 16 0\n",
        )
        .unwrap();
        let rec = decode_record(h, |_| Ok(bytes.clone())).unwrap();
        assert_eq!(rec.adu, vec![vec![10, 11], vec![-20, -21], vec![30, 31]]);
        let ecg = rec.to_ecg().unwrap();
        assert_eq!(ecg.leads[0].name, "I");
        assert!((ecg.leads[0].samples[1] - 0.01).abs() < 1e-12);
        // 1000 adu per uV: -20 adu is -0.02 uV = -2e-5 mV.
        assert!((ecg.leads[1].samples[0] + 2e-5).abs() < 1e-12);
    }

    #[test]
    fn signals_in_separate_files_and_other_formats() {
        let h = parse_header("r 2 100 3\na.dat 80\nb.dat 61\n").unwrap();
        let rec = decode_record(h, |name| {
            Ok(match name {
                "a.dat" => vec![128, 0, 255],
                _ => vec![0x01, 0x00, 0xFF, 0xFF, 0x80, 0x00],
            })
        })
        .unwrap();
        assert_eq!(rec.adu[0], vec![0, -128, 127]);
        assert_eq!(rec.adu[1], vec![256, -1, -32768]);
        let ecg = rec.to_ecg().unwrap();
        assert!(
            ecg.leads[0].samples[1].is_nan(),
            "invalid sample becomes NaN"
        );
        assert!(ecg.leads[1].samples[2].is_nan());
    }

    #[test]
    fn short_files_and_bad_checksums_are_errors() {
        let h = parse_header("r 1 100 10\nr.dat 16\n").unwrap();
        let err = decode_record(h, |_| Ok(vec![0; 7])).unwrap_err();
        assert!(
            matches!(
                err,
                EcgError::ShortSignalFile {
                    expected: 20,
                    actual: 7,
                    ..
                }
            ),
            "{err}"
        );
        let h = parse_header("r 1 100 2\nr.dat 16 200 16 0 0 5\n").unwrap();
        let err = decode_record(h, |_| Ok(vec![1, 0, 3, 0])).unwrap_err();
        assert!(
            matches!(
                err,
                EcgError::ChecksumMismatch {
                    expected: 5,
                    computed: 4,
                    ..
                }
            ),
            "{err}"
        );
        let h = parse_header("r 1 100 2\nr.dat 311\n").unwrap();
        assert!(matches!(
            decode_record(h, |_| Ok(vec![])).unwrap_err(),
            EcgError::UnsupportedFormat { format: 311, .. }
        ));
        let h = parse_header("r 2 100 2\nr.dat 16\nr.dat 212\n").unwrap();
        assert!(matches!(
            decode_record(h, |_| Ok(vec![0; 100])).unwrap_err(),
            EcgError::InconsistentGroup { .. }
        ));
    }

    #[test]
    fn unknown_length_is_taken_from_the_file() {
        let h = parse_header("r 2 100\nr.dat 16\nr.dat 16\n").unwrap();
        // 9 bytes: two whole frames of two 16-bit samples and a stray byte.
        let rec = decode_record(h, |_| Ok(vec![1, 0, 2, 0, 3, 0, 4, 0, 9])).unwrap();
        assert_eq!(rec.adu, vec![vec![1, 3], vec![2, 4]]);
    }
}
