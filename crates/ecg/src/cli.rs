//! `caravan ecg ...`: detect, measure, score, render and bench, wired into the binary by the lead.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use crate::error::{EcgError, Result};
use crate::load::{load, sniff, Format};
use crate::score::{reference_beats, score, ScoreOptions};
use crate::signal::Ecg;

/// The ECG subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Detect R peaks: one sample index per line.
    Detect {
        /// WFDB record (header path without .hea), DICOM waveform, HL7 aECG or SCP-ECG file.
        record: PathBuf,
        /// Detect on this channel only (0-based); by default all leads are used together.
        #[arg(long)]
        channel: Option<usize>,
    },
    /// Measure heart rate, RR, PR, QRS, QT and QTc; prints JSON.
    Measure {
        /// WFDB record (header path without .hea), DICOM waveform, HL7 aECG or SCP-ECG file.
        file: PathBuf,
    },
    /// Score our detections against a WFDB annotation file (EC57: 150 ms window, first 5 minutes skipped).
    Score {
        /// WFDB record (header path without .hea).
        record: PathBuf,
        /// Annotator (annotation file extension) holding the reference beats.
        #[arg(long, default_value = "atr")]
        annotator: String,
        /// Detect on this channel only; by default all leads are used together.
        #[arg(long)]
        channel: Option<usize>,
    },
    /// Render a printable SVG on standard ECG paper with beats and measurements marked.
    Render {
        /// WFDB record (header path without .hea), DICOM waveform, HL7 aECG or SCP-ECG file.
        file: PathBuf,
        /// Write the SVG here instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Time our detector and the wfdb Python package's xqrs_detect on the same WFDB record and channel.
    Bench {
        /// WFDB record (header path without .hea).
        record: PathBuf,
        /// Channel both detectors run on.
        #[arg(long, default_value_t = 0)]
        channel: usize,
        /// Timed repetitions per detector (the median is reported).
        #[arg(long, default_value_t = 3)]
        repeat: usize,
        /// Python interpreter with `wfdb` installed.
        #[arg(long, default_value = "python3")]
        python: String,
    },
}

/// Runs a subcommand, writing results to stdout and a one-line error to stderr.
pub fn run(cmd: Command) -> ExitCode {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match execute(cmd, &mut out) {
        Ok(()) => ExitCode::SUCCESS,
        // A reader that stops early (`| head`) is not an error of ours.
        Err(EcgError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            let _ = out.flush();
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn io_err(e: std::io::Error) -> EcgError {
    EcgError::Output(e)
}

fn detect_on(ecg: &Ecg, channel: Option<usize>) -> Result<Vec<usize>> {
    match channel {
        Some(c) => crate::qrs::detect(&ecg.channel(c)?.samples, ecg.fs),
        None => crate::qrs::detect_ecg(ecg),
    }
}

/// Runs a subcommand, writing its output into `out` (testable without a process).
pub fn execute(cmd: Command, out: &mut dyn Write) -> Result<()> {
    match cmd {
        Command::Detect { record, channel } => {
            let (_, ecg) = load(&record)?;
            let beats = detect_on(&ecg, channel)?;
            let mut text = String::with_capacity(beats.len() * 8);
            for b in beats {
                text.push_str(&b.to_string());
                text.push('\n');
            }
            out.write_all(text.as_bytes()).map_err(io_err)
        }
        Command::Measure { file } => {
            let (_, ecg) = load(&file)?;
            let m = crate::measure::measure(&ecg)?;
            let json = serde_json::to_string_pretty(&m)
                .map_err(|e| EcgError::Analysis(format!("cannot serialise measurements: {e}")))?;
            writeln!(out, "{json}").map_err(io_err)
        }
        Command::Score {
            record,
            annotator,
            channel,
        } => {
            let (format, path) = sniff(&record)?;
            if format != Format::Wfdb {
                return Err(EcgError::InvalidRequest(
                    "scoring needs a WFDB record with an annotation file".into(),
                ));
            }
            let (_, ecg) = load(&path)?;
            let anns = crate::wfdb::read_annotations(&path, &annotator)?;
            let det: Vec<i64> = detect_on(&ecg, channel)?
                .into_iter()
                .map(|d| d as i64)
                .collect();
            let s = score(
                &reference_beats(&anns),
                &det,
                ecg.fs,
                &ScoreOptions::default(),
            );
            writeln!(
                out,
                "record {} annotator {annotator}: EC57 (150 ms window, first 300 s skipped)\nTP {}  FN {}  FP {}\nSe {:.2} %  +P {:.2} %",
                path.display(),
                s.true_positives,
                s.false_negatives,
                s.false_positives,
                s.sensitivity,
                s.positive_predictivity
            )
            .map_err(io_err)
        }
        Command::Render { file, output } => {
            let (_, ecg) = load(&file)?;
            let svg = crate::render::render_recording(&ecg)?;
            match output {
                Some(p) => {
                    std::fs::write(&p, svg).map_err(|source| EcgError::Io { path: p, source })
                }
                None => out.write_all(svg.as_bytes()).map_err(io_err),
            }
        }
        Command::Bench {
            record,
            channel,
            repeat,
            python,
        } => bench(&record, channel, repeat, &python, out),
    }
}

/// The peer script, shipped inside the crate so the bench works from any directory.
const XQRS_SCRIPT: &str = include_str!("../scripts/xqrs_bench.py");

fn median_s(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn bench(
    record: &Path,
    channel: usize,
    repeat: usize,
    python: &str,
    out: &mut dyn Write,
) -> Result<()> {
    let (format, path) = sniff(record)?;
    if format != Format::Wfdb {
        return Err(EcgError::InvalidRequest(
            "the bench needs a WFDB record (xqrs reads WFDB)".into(),
        ));
    }
    let (_, ecg) = load(&path)?;
    let lead = ecg.channel(channel)?;
    let repeat = repeat.max(1);
    let mut ours_t = Vec::with_capacity(repeat);
    let mut ours_cpu = Vec::with_capacity(repeat);
    let mut ours = Vec::new();
    let cpu_err =
        |e: std::io::Error| EcgError::InvalidRequest(format!("cannot read the CPU clock: {e}"));
    for _ in 0..repeat {
        let (t0, c0) = (
            Instant::now(),
            cpu_time::ThreadTime::try_now().map_err(cpu_err)?,
        );
        ours = crate::qrs::detect(&lead.samples, ecg.fs)?;
        ours_cpu.push(c0.try_elapsed().map_err(cpu_err)?.as_secs_f64());
        ours_t.push(t0.elapsed().as_secs_f64());
    }
    let output = std::process::Command::new(python)
        .arg("-c")
        .arg(XQRS_SCRIPT)
        .arg(&path)
        .arg(channel.to_string())
        .arg(repeat.to_string())
        .output()
        .map_err(|e| EcgError::InvalidRequest(format!("cannot run {python}: {e}")))?;
    if !output.status.success() {
        let err = String::from_utf8_lossy(&output.stderr);
        let last = err.lines().last().unwrap_or("no message");
        return Err(EcgError::InvalidRequest(format!(
            "the xqrs peer failed ({last}); install it with `pip install wfdb`"
        )));
    }
    let peer: serde_json::Value = serde_json::from_slice(&output.stdout)
        .map_err(|e| EcgError::InvalidRequest(format!("xqrs peer printed no JSON: {e}")))?;
    let floats = |key: &str| -> Vec<f64> {
        peer[key]
            .as_array()
            .map(|a| a.iter().filter_map(serde_json::Value::as_f64).collect())
            .unwrap_or_default()
    };
    let (peer_t, peer_cpu) = (floats("seconds"), floats("cpu_seconds"));
    let peer_peaks: Vec<i64> = peer["peaks"]
        .as_array()
        .map(|a| a.iter().filter_map(serde_json::Value::as_i64).collect())
        .unwrap_or_default();
    let (ours_s, peer_s) = (median_s(ours_t), median_s(peer_t));
    let (ours_c, peer_c) = (median_s(ours_cpu), median_s(peer_cpu));
    let seconds = ecg.len() as f64 / ecg.fs;
    writeln!(
        out,
        "record {} channel {channel} ({}, {seconds:.0} s at {} Hz), median of {repeat} run(s), detection only",
        path.display(),
        lead.name,
        ecg.fs
    )
    .map_err(io_err)?;
    let ours_i: Vec<i64> = ours.iter().map(|&b| b as i64).collect();
    let refs = crate::wfdb::read_annotations(&path, "atr").ok();
    let line = |name: &str, secs: f64, cpu: f64, beats: &[i64]| -> String {
        let acc = refs
            .as_ref()
            .map(|a| {
                let s = score(&reference_beats(a), beats, ecg.fs, &ScoreOptions::default());
                format!(
                    "  Se {:6.2} %  +P {:6.2} %",
                    s.sensitivity, s.positive_predictivity
                )
            })
            .unwrap_or_default();
        format!(
            "{name:<20} wall {:>9.1} ms  cpu {:>9.1} ms  {:>5} beats{acc}",
            secs * 1000.0,
            cpu * 1000.0,
            beats.len()
        )
    };
    writeln!(
        out,
        "{}",
        line("caravan ecg (Rust)", ours_s, ours_c, &ours_i)
    )
    .map_err(io_err)?;
    let version = peer["wfdb_version"].as_str().unwrap_or("?");
    writeln!(
        out,
        "{}",
        line(&format!("wfdb {version} xqrs"), peer_s, peer_c, &peer_peaks)
    )
    .map_err(io_err)?;
    writeln!(
        out,
        "speed-up: {:.0}x CPU time, {:.0}x wall clock",
        peer_c / ours_c,
        peer_s / ours_s
    )
    .map_err(io_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: Command,
    }

    fn data(p: &str) -> String {
        format!("{}/tests/data/{p}", env!("CARGO_MANIFEST_DIR"))
    }

    fn run_args(args: &[&str]) -> Result<String> {
        let cli = Cli::try_parse_from(std::iter::once("ecg").chain(args.iter().copied()))
            .map_err(|e| EcgError::InvalidRequest(e.to_string()))?;
        let mut out = Vec::new();
        execute(cli.cmd, &mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn detect_prints_one_index_per_line() {
        let text = run_args(&["detect", &data("mitdb/100"), "--channel", "0"]).unwrap();
        let beats: Vec<usize> = text.lines().map(|l| l.parse().unwrap()).collect();
        assert_eq!(beats.len(), 2273);
        assert!(beats.windows(2).all(|w| w[0] < w[1]));
        // The .hea path is accepted too, and DICOM and aECG files are recognised by content.
        let hea = run_args(&["detect", &data("mitdb/100.hea"), "--channel", "0"]).unwrap();
        assert_eq!(hea, text);
        let dcm = run_args(&["detect", &data("dicom/waveform_ecg.dcm")]).unwrap();
        assert_eq!(dcm.lines().count(), 10);
        let xml = run_args(&["detect", &data("aecg/mitdb100_10s.xml"), "--channel", "0"]).unwrap();
        assert_eq!(xml.lines().count(), 13);
        let scp = run_args(&["detect", &data("scp/waveform_ecg.scp")]).unwrap();
        assert_eq!(
            scp, dcm,
            "SCP-ECG and DICOM copies of one ECG give the same beats"
        );
    }

    #[test]
    fn measure_prints_json() {
        let text = run_args(&["measure", &data("dicom/waveform_ecg.dcm")]).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let hr = v["heart_rate_bpm"].as_f64().unwrap();
        assert!((55.0..70.0).contains(&hr), "{hr}");
        assert!(v["qtc_bazett_ms"].as_f64().unwrap() > 300.0);
    }

    #[test]
    fn score_prints_se_and_ppv() {
        let text = run_args(&["score", &data("mitdb/100"), "--annotator", "atr"]).unwrap();
        assert!(text.contains("Se 100.00 %  +P 100.00 %"), "{text}");
        assert!(text.contains("TP 1902  FN 0  FP 0"), "{text}");
    }

    #[test]
    fn errors_are_clear() {
        let table: &[(&[&str], &str)] = &[
            (
                &["detect", "/nonexistent/rec"],
                "cannot read /nonexistent/rec",
            ),
            (
                &["detect", &data("mitdb/LICENSE-wfdb-python")],
                "unrecognised ECG file",
            ),
            (
                &["score", &data("dicom/waveform_ecg.dcm")],
                "needs a WFDB record",
            ),
            (
                &["score", &data("mitdb/100"), "--annotator", "qrs"],
                "100.qrs",
            ),
            (
                &["bench", &data("dicom/waveform_ecg.dcm")],
                "needs a WFDB record",
            ),
        ];
        for (args, want) in table {
            let e = run_args(args).unwrap_err().to_string();
            assert!(e.contains(want), "{args:?}: {e}");
        }
        let e = run_args(&["detect", &data("mitdb/100"), "--channel", "7"]).unwrap_err();
        assert!(e.to_string().contains("channel 7 does not exist"), "{e}");
    }

    #[test]
    fn render_writes_svg() {
        let dir = std::env::temp_dir().join(format!("ecg-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("ecg.svg");
        run_args(&[
            "render",
            &data("dicom/waveform_ecg.dcm"),
            "-o",
            out.to_str().unwrap(),
        ])
        .unwrap();
        let svg = std::fs::read_to_string(&out).unwrap();
        assert!(svg.starts_with("<svg") || svg.starts_with("<?xml"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The side-by-side bench against the wfdb package; opt-in because it needs Python with `wfdb`.
    #[test]
    fn bench_against_xqrs() {
        if std::env::var("CARAVAN_ECG_XQRS").is_err() {
            eprintln!("skipped: set CARAVAN_ECG_XQRS=1 (needs python3 with `pip install wfdb`)");
            return;
        }
        let text = run_args(&["bench", &data("mitdb/100"), "--repeat", "1"]).unwrap();
        eprintln!("{text}");
        assert!(text.contains("speed-up"), "{text}");
        assert!(text.contains("xqrs"), "{text}");
    }
}
