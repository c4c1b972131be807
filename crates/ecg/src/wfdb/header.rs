//! WFDB header (`.hea`) parsing, following the `header(5)` page of the WFDB Software Package.
//!
//! Written by hand because no maintained Rust crate reads WFDB headers with the precision needed here (typed
//! errors per field, ADC zero and baseline defaults, formats 16 and 212).

use crate::error::{EcgError, Result};

/// WFDB's default gain when the header gives none or gives zero (ADC units per physical unit).
pub const DEFAULT_GAIN: f64 = 200.0;
/// WFDB's default sampling frequency when the record line gives none.
pub const DEFAULT_FS: f64 = 250.0;

/// A parsed single-segment WFDB header.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    pub record_name: String,
    /// Sampling frequency per signal in hertz.
    pub fs: f64,
    /// Samples per signal; `None` when the header leaves it out (the signal files then decide).
    pub samples: Option<usize>,
    /// Base time as written (`HH:MM:SS`), if present.
    pub base_time: Option<String>,
    /// Base date as written (`DD/MM/YYYY`), if present.
    pub base_date: Option<String>,
    pub signals: Vec<SignalSpec>,
    /// `#` comment lines (without the `#`), in order; these may hold patient information and are never logged.
    pub comments: Vec<String>,
}

/// One signal specification line.
#[derive(Debug, Clone, PartialEq)]
pub struct SignalSpec {
    pub file_name: String,
    pub format: u16,
    pub samples_per_frame: u32,
    pub skew: u32,
    pub byte_offset: u64,
    /// ADC units per physical unit.
    pub gain: f64,
    /// The ADC value that corresponds to 0 physical units.
    pub baseline: i32,
    pub units: String,
    pub adc_resolution: u32,
    pub adc_zero: i32,
    pub initial_value: Option<i32>,
    pub checksum: Option<i16>,
    pub block_size: u32,
    pub description: String,
}

impl SignalSpec {
    /// Converts an ADC value into physical units.
    pub fn to_physical(&self, adu: i32) -> f64 {
        f64::from(adu - self.baseline) / self.gain
    }
}

fn bad_record(line: usize, field: &'static str, value: &str) -> EcgError {
    EcgError::BadRecordLine {
        line,
        field,
        value: value.to_string(),
    }
}

fn bad_signal(line: usize, signal: usize, field: &'static str, value: &str) -> EcgError {
    EcgError::BadSignalLine {
        line,
        signal,
        field,
        value: value.to_string(),
    }
}

fn positive_finite(v: f64) -> bool {
    v.is_finite() && v > 0.0
}

/// Parses the text of a `.hea` file.
pub fn parse_header(text: &str) -> Result<Header> {
    let mut comments = Vec::new();
    // (1-based line number, content without trailing comment)
    let mut lines: Vec<(usize, &str)> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let trimmed = raw.trim();
        if let Some(c) = trimmed.strip_prefix('#') {
            comments.push(c.trim().to_string());
            continue;
        }
        if trimmed.is_empty() {
            continue;
        }
        lines.push((i + 1, trimmed));
    }
    let Some(&(rec_line, rec)) = lines.first() else {
        return Err(EcgError::EmptyHeader);
    };
    let mut fields = rec.split_whitespace();
    let name_field = fields.next().ok_or(EcgError::EmptyHeader)?;
    if name_field.contains('/') {
        return Err(EcgError::UnsupportedWfdb(format!(
            "multi-segment record {name_field:?} (only single-segment records are read)"
        )));
    }
    if !name_field
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
    {
        return Err(bad_record(rec_line, "record name", name_field));
    }
    let nsig_s = fields
        .next()
        .ok_or_else(|| bad_record(rec_line, "number of signals", ""))?;
    let nsig: usize = nsig_s
        .parse()
        .map_err(|_| bad_record(rec_line, "number of signals", nsig_s))?;
    if nsig > 4096 {
        return Err(bad_record(rec_line, "number of signals", nsig_s));
    }
    let mut fs = DEFAULT_FS;
    if let Some(f) = fields.next() {
        // `fs[/counterfreq[(basecounter)]]`; only the sampling frequency matters here.
        let head = f.split(['/', '(']).next().unwrap_or(f);
        fs = head
            .parse::<f64>()
            .ok()
            .filter(|v| positive_finite(*v))
            .ok_or_else(|| bad_record(rec_line, "sampling frequency", f))?;
    }
    let mut samples = None;
    if let Some(n) = fields.next() {
        let v: u64 = n
            .parse()
            .map_err(|_| bad_record(rec_line, "number of samples", n))?;
        // Zero means "unknown" in WFDB.
        if v > 0 {
            samples =
                Some(usize::try_from(v).map_err(|_| bad_record(rec_line, "number of samples", n))?);
        }
    }
    let base_time = fields.next().map(str::to_string);
    let base_date = fields.next().map(str::to_string);

    let sig_lines = &lines[1..];
    if sig_lines.len() < nsig {
        return Err(EcgError::MissingSignalLines {
            declared: nsig,
            found: sig_lines.len(),
        });
    }
    let mut signals = Vec::with_capacity(nsig);
    for (idx, &(ln, line)) in sig_lines.iter().take(nsig).enumerate() {
        signals.push(parse_signal_line(ln, idx, line)?);
    }
    Ok(Header {
        record_name: name_field.to_string(),
        fs,
        samples,
        base_time,
        base_date,
        signals,
        comments,
    })
}

fn parse_signal_line(ln: usize, idx: usize, line: &str) -> Result<SignalSpec> {
    let mut fields = line.split_whitespace();
    let file_name = fields
        .next()
        .ok_or_else(|| bad_signal(ln, idx, "file name", ""))?
        .to_string();
    if file_name.contains("..") || file_name.starts_with('/') || file_name.contains('\\') {
        return Err(bad_signal(ln, idx, "file name", &file_name));
    }
    let fmt_field = fields
        .next()
        .ok_or_else(|| bad_signal(ln, idx, "format", ""))?;
    // `format[xsamp][:skew][+offset]`
    let (rest, byte_offset) = match fmt_field.split_once('+') {
        Some((a, b)) => (
            a,
            b.parse::<u64>()
                .map_err(|_| bad_signal(ln, idx, "byte offset", fmt_field))?,
        ),
        None => (fmt_field, 0),
    };
    let (rest, skew) = match rest.split_once(':') {
        Some((a, b)) => (
            a,
            b.parse::<u32>()
                .map_err(|_| bad_signal(ln, idx, "skew", fmt_field))?,
        ),
        None => (rest, 0),
    };
    let (fmt_s, spf) = match rest.split_once('x') {
        Some((a, b)) => (
            a,
            b.parse::<u32>()
                .ok()
                .filter(|v| (1..=1024).contains(v))
                .ok_or_else(|| bad_signal(ln, idx, "samples per frame", fmt_field))?,
        ),
        None => (rest, 1),
    };
    let format: u16 = fmt_s
        .parse()
        .map_err(|_| bad_signal(ln, idx, "format", fmt_field))?;

    let mut gain = DEFAULT_GAIN;
    let mut baseline: Option<i32> = None;
    let mut units = "mV".to_string();
    if let Some(g) = fields.next() {
        // `gain[(baseline)][/units]`
        let (g_rest, u) = match g.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (g, None),
        };
        let (g_num, b) = match g_rest.split_once('(') {
            Some((a, b)) => {
                let inner = b
                    .strip_suffix(')')
                    .ok_or_else(|| bad_signal(ln, idx, "baseline", g))?;
                (
                    a,
                    Some(
                        inner
                            .parse::<i32>()
                            .map_err(|_| bad_signal(ln, idx, "baseline", g))?,
                    ),
                )
            }
            None => (g_rest, None),
        };
        let gv: f64 = g_num
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| bad_signal(ln, idx, "gain", g))?;
        // WFDB reads a zero gain as "uncalibrated" and uses the default.
        gain = if gv == 0.0 { DEFAULT_GAIN } else { gv };
        baseline = b;
        if let Some(u) = u {
            if u.is_empty() {
                return Err(bad_signal(ln, idx, "units", g));
            }
            units = u.to_string();
        }
    }
    let default_res = match format {
        80 | 160 => 8,
        212 => 12,
        _ => 16,
    };
    let adc_resolution = match fields.next() {
        Some(s) => s
            .parse::<u32>()
            .ok()
            .filter(|v| *v <= 64)
            .ok_or_else(|| bad_signal(ln, idx, "ADC resolution", s))?,
        None => default_res,
    };
    let adc_zero = match fields.next() {
        Some(s) => s
            .parse::<i32>()
            .map_err(|_| bad_signal(ln, idx, "ADC zero", s))?,
        None => 0,
    };
    let initial_value = match fields.next() {
        Some(s) => Some(
            s.parse::<i32>()
                .map_err(|_| bad_signal(ln, idx, "initial value", s))?,
        ),
        None => None,
    };
    let checksum = match fields.next() {
        // The checksum is a 16-bit quantity; some writers print it unsigned.
        Some(s) => Some(
            s.parse::<i32>()
                .ok()
                .filter(|v| (-32768..=65535).contains(v))
                .map(|v| v as u16 as i16)
                .ok_or_else(|| bad_signal(ln, idx, "checksum", s))?,
        ),
        None => None,
    };
    let block_size = match fields.next() {
        Some(s) => s
            .parse::<u32>()
            .map_err(|_| bad_signal(ln, idx, "block size", s))?,
        None => 0,
    };
    let description = fields.collect::<Vec<_>>().join(" ");
    Ok(SignalSpec {
        file_name,
        format,
        samples_per_frame: spf,
        skew,
        byte_offset,
        gain,
        // WFDB: a missing baseline defaults to the ADC zero.
        baseline: baseline.unwrap_or(adc_zero),
        units,
        adc_resolution,
        adc_zero,
        initial_value,
        checksum,
        block_size,
        description,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_record_100() {
        let text = "100 2 360 650000\n100.dat 212 200 11 1024 995 -22131 0 MLII\n100.dat 212 200 11 1024 1011 20052 0 V5\n# 69 M 1085 1629 x1\n# Aldomet, Inderal\n";
        let h = parse_header(text).unwrap();
        assert_eq!(h.record_name, "100");
        assert_eq!(h.fs, 360.0);
        assert_eq!(h.samples, Some(650000));
        assert_eq!(h.signals.len(), 2);
        let s = &h.signals[0];
        assert_eq!(s.format, 212);
        assert_eq!(s.gain, 200.0);
        assert_eq!(s.adc_resolution, 11);
        assert_eq!(s.adc_zero, 1024);
        assert_eq!(s.baseline, 1024, "baseline defaults to ADC zero");
        assert_eq!(s.initial_value, Some(995));
        assert_eq!(s.checksum, Some(-22131));
        assert_eq!(s.description, "MLII");
        assert_eq!(h.comments.len(), 2);
    }

    #[test]
    fn parses_full_field_syntax() {
        let text = "rec 1 500/1000(3) 10 12:00:00 01/02/2020\nrec.dat 16x1:0+512 400(-7)/uV 16 0 5 -1 0 Lead V1\n";
        let h = parse_header(text).unwrap();
        assert_eq!(h.fs, 500.0);
        assert_eq!(h.base_time.as_deref(), Some("12:00:00"));
        assert_eq!(h.base_date.as_deref(), Some("01/02/2020"));
        let s = &h.signals[0];
        assert_eq!(s.byte_offset, 512);
        assert_eq!(s.gain, 400.0);
        assert_eq!(s.baseline, -7);
        assert_eq!(s.units, "uV");
        assert_eq!(s.description, "Lead V1");
        assert_eq!(s.checksum, Some(-1));
        assert!((s.to_physical(393) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn defaults_when_fields_missing() {
        let h = parse_header("r 1\nr.dat 16\n").unwrap();
        assert_eq!(h.fs, DEFAULT_FS);
        assert_eq!(h.samples, None);
        assert_eq!(h.signals[0].gain, DEFAULT_GAIN);
        assert_eq!(h.signals[0].baseline, 0);
        assert_eq!(h.signals[0].units, "mV");
        // A zero gain means "uncalibrated": WFDB substitutes its default.
        let h = parse_header("r 1 360 0\nr.dat 212 0(5) 12 0\n").unwrap();
        assert_eq!(h.signals[0].gain, DEFAULT_GAIN);
        assert_eq!(h.signals[0].baseline, 5);
    }

    #[test]
    fn corrupt_headers_are_rejected_precisely() {
        let table: &[(&str, &str)] = &[
            ("", "empty"),
            ("# only a comment\n", "empty"),
            ("100 x 360\n", "number of signals"),
            (
                "100 2 abc 650000\n100.dat 212\n100.dat 212\n",
                "sampling frequency",
            ),
            ("100 1 -360\n100.dat 212\n", "sampling frequency"),
            ("100 1 360 12q\n100.dat 212\n", "number of samples"),
            (
                "100 2 360 650000\n100.dat 212 200\n",
                "declares 2 signals but specifies 1",
            ),
            ("100 1 360\n100.dat zz\n", "format"),
            ("100 1 360\n100.dat 212 abc\n", "gain"),
            ("100 1 360\n100.dat 212 200(12\n", "baseline"),
            ("100 1 360\n100.dat 212 200 11 q\n", "ADC zero"),
            ("100 1 360\n100.dat 212 200 11 0 0 99999\n", "checksum"),
            ("100 1 360\n../etc/passwd 212\n", "file name"),
            ("100/3 2 360\n", "multi-segment"),
            ("100 1 360\n100.dat 212x0\n", "samples per frame"),
        ];
        for (text, want) in table {
            let err = parse_header(text).expect_err(text).to_string();
            assert!(
                err.contains(want),
                "header {text:?}: error {err:?} lacks {want:?}"
            );
        }
    }
}
