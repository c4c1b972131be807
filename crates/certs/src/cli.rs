//! `caravan cert …` subcommands. Each command writes its results to a writer (stdout in [`run`]) so tests can
//! capture them; errors are one line on stderr and a non-zero exit code.

use crate::error::{Error, Result};
use crate::issue::{self, DccIssuer, Event, Person};
use crate::trust::TrustList;
use crate::verifier::{Clock, RulesConfig, Verifier};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Health certificate commands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Verify EU DCC (`HC1:`) and SMART Health Card inputs offline; prints one JSON object per input.
    Verify {
        /// Trust list file (PEM/DER DSCs, DSC list JSON, exchange JSON, or SHC issuer JWKS with `iss`); repeatable.
        #[arg(long = "trust", value_name = "PATH")]
        trust: Vec<PathBuf>,
        /// Directory of business rules (and value sets) to evaluate.
        #[arg(long, value_name = "DIR")]
        rules: Option<PathBuf>,
        /// Country of arrival whose acceptance rules apply (ISO 3166-1 alpha-2); needed with --rules.
        #[arg(long, value_name = "CC")]
        country: Option<String>,
        /// Validation clock (RFC 3339, YYYY-MM-DD or epoch seconds); default now.
        #[arg(long, value_name = "TIME")]
        at: Option<String>,
        /// Language of rule descriptions.
        #[arg(long, default_value = "en")]
        lang: String,
        /// Skip DCC JSON schema validation.
        #[arg(long)]
        no_schema: bool,
        /// Inputs: a file (text, `.smart-health-card`, or a PNG QR image), `-` for stdin lines, or the text itself.
        #[arg(required = true, value_name = "INPUT")]
        inputs: Vec<String>,
    },
    /// Issue an EU DCC signed with a DSC key; prints the `HC1:` text (and writes QR images if asked).
    Issue {
        /// PKCS#8 private key (PEM or DER) of the DSC.
        #[arg(long)]
        key: PathBuf,
        /// The DSC (PEM or DER).
        #[arg(long)]
        cert: PathBuf,
        /// ES256 or PS256.
        #[arg(long, default_value = "ES256")]
        alg: String,
        /// Issuing country (CWT iss).
        #[arg(long)]
        country: String,
        /// JSON file with `{"person": {...}, "event": {"type": "vaccination"|"test"|"recovery", ...}}`, or a
        /// complete DCC payload (with `ver`).
        #[arg(long)]
        payload: PathBuf,
        /// Issued-at (default now).
        #[arg(long)]
        iat: Option<String>,
        /// Validity in days.
        #[arg(long, default_value_t = 365)]
        days: i64,
        /// Write the QR code as PNG.
        #[arg(long)]
        png: Option<PathBuf>,
        /// Write the QR code as SVG.
        #[arg(long)]
        svg: Option<PathBuf>,
    },
    /// Run a conformance suite.
    Conformance {
        #[command(subcommand)]
        suite: Suite,
    },
    /// Full verifications per second over the expected-valid HC1 cases of a dgc-testdata folder, side by side
    /// with the Python baseline and `openssl speed ecdsap256`.
    Bench {
        /// dgc-testdata directory.
        dir: PathBuf,
        /// Seconds per measurement.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        /// Python interpreter for the baseline (skipped if it cannot run).
        #[arg(long, default_value = "python3")]
        python: String,
        /// Also validate the DCC schema in each verification.
        #[arg(long)]
        schema: bool,
    },
}

/// Conformance suites.
#[derive(Debug, clap::Subcommand)]
pub enum Suite {
    /// The EU dgc-testdata repository (every EXPECTED* flag of every test file).
    DgcTestdata { dir: PathBuf },
    /// The CertLogic specification's test suite and validation suite (same as `caravan rules conformance certlogic`).
    Certlogic { dir: PathBuf },
    /// Country business rules with their tests (same as `caravan rules conformance rules`).
    Rules { dir: PathBuf },
}

fn certlogic_suite(suite: certlogic::cli::Suite, dir: PathBuf, out: &mut dyn Write) -> ExitCode {
    certlogic::cli::run_to(
        certlogic::cli::Command::Conformance { suite, dir },
        out,
        &mut std::io::stderr().lock(),
    )
}

/// Runs a command with stdout.
pub fn run(cmd: Command) -> ExitCode {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match execute(cmd, &mut out) {
        Ok(code) => code,
        Err(e) => {
            let _ = out.flush();
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// Runs a command, writing results to `out`. Returns the exit code for success paths (1 when some input was not
/// green or some assertion failed).
pub fn execute(cmd: Command, out: &mut dyn Write) -> Result<ExitCode> {
    let io = |e: std::io::Error| Error::Io(e.to_string());
    match cmd {
        Command::Verify {
            trust,
            rules,
            country,
            at,
            lang,
            no_schema,
            inputs,
        } => {
            let mut list = TrustList::new();
            for path in &trust {
                list.import_file(path)?;
            }
            let rules = match rules {
                None => None,
                Some(dir) => {
                    let country = country.ok_or_else(|| {
                        Error::Io("--rules needs --country (the country of arrival)".into())
                    })?;
                    Some(RulesConfig {
                        rules: crate::rules::RuleSet::load_dir(&dir)?,
                        country: country.to_ascii_uppercase(),
                        lang,
                    })
                }
            };
            let clock = match at {
                Some(t) => Clock::parse(&t)?,
                None => Clock::System,
            };
            let mut verifier = Verifier::new(list, rules, clock);
            verifier.check_schema = !no_schema;
            let mut all_green = true;
            for input in read_inputs(&inputs)? {
                let v = verifier.verify(&input);
                all_green &= v.status == crate::Status::Green;
                let line = serde_json::to_string(&v).map_err(|e| Error::Io(e.to_string()))?;
                writeln!(out, "{line}").map_err(io)?;
            }
            Ok(if all_green {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Issue {
            key,
            cert,
            alg,
            country,
            payload,
            iat,
            days,
            png,
            svg,
        } => {
            let alg = match alg.to_ascii_uppercase().as_str() {
                "ES256" => crate::crypto::Algorithm::Es256,
                "PS256" => crate::crypto::Algorithm::Ps256,
                other => {
                    return Err(Error::Issue(format!(
                        "algorithm {other} (use ES256 or PS256)"
                    )))
                }
            };
            let key = crate::crypto::SigningKey::from_pkcs8_pem_or_der(alg, &read(&key)?)?;
            let cert_bytes = read(&cert)?;
            let der = crate::crypto::pem_to_der(&cert_bytes, "CERTIFICATE")?.unwrap_or(cert_bytes);
            let issuer = DccIssuer::new(key, &der, &country)?;
            let spec: serde_json::Value = serde_json::from_slice(&read(&payload)?)
                .map_err(|e| Error::Issue(format!("{}: not JSON: {e}", payload.display())))?;
            let dcc = if spec.get("ver").is_some() {
                spec
            } else {
                let person: Person =
                    serde_json::from_value(spec.get("person").cloned().unwrap_or_default())
                        .map_err(|e| Error::Issue(format!("person: {e}")))?;
                let event: Event =
                    serde_json::from_value(spec.get("event").cloned().unwrap_or_default())
                        .map_err(|e| Error::Issue(format!("event: {e}")))?;
                issue::build_dcc(&person, &event, &issue::new_uvci(&country)?)?
            };
            let iat = match iat {
                Some(t) => Clock::parse(&t)?.now(),
                None => chrono::Utc::now().timestamp(),
            };
            let text = issuer.issue(&dcc, iat, iat + days * 86_400)?;
            if let Some(p) = png {
                std::fs::write(&p, crate::qr::render_png(&text, 4)?).map_err(io)?;
            }
            if let Some(p) = svg {
                std::fs::write(&p, crate::qr::render_svg(&text)?).map_err(io)?;
            }
            writeln!(out, "{text}").map_err(io)?;
            Ok(ExitCode::SUCCESS)
        }
        // The CertLogic suites live in the `certlogic` crate; they are offered here too so that every conformance
        // run of the certificate capability is spelled `caravan cert conformance ...`.
        Command::Conformance {
            suite: Suite::Certlogic { dir },
        } => Ok(certlogic_suite(certlogic::cli::Suite::Certlogic, dir, out)),
        Command::Conformance {
            suite: Suite::Rules { dir },
        } => Ok(certlogic_suite(certlogic::cli::Suite::Rules, dir, out)),
        Command::Conformance {
            suite: Suite::DgcTestdata { dir },
        } => {
            let report = crate::conformance::run_dgc_testdata(&dir)?;
            report.write(out).map_err(io)?;
            Ok(if report.failed() == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Bench {
            dir,
            seconds,
            python,
            schema,
        } => {
            crate::bench::run(&dir, seconds, &python, schema, out)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::Io(format!("{}: {e}", path.display())))
}

/// Resolves inputs: `-` reads stdin (one input per line), an existing file is read (PNG/JPEG images are decoded as
/// QR codes), anything else is taken as the text itself.
fn read_inputs(inputs: &[String]) -> Result<Vec<String>> {
    let mut texts = Vec::new();
    for input in inputs {
        if input == "-" {
            for line in std::io::stdin().lines() {
                let line = line.map_err(|e| Error::Io(format!("stdin: {e}")))?;
                if !line.trim().is_empty() {
                    texts.push(line);
                }
            }
            continue;
        }
        let path = Path::new(input);
        if input.len() < 4096 && path.is_file() {
            let bytes = read(path)?;
            if bytes.starts_with(b"\x89PNG") || bytes.starts_with(b"\xFF\xD8") {
                texts.push(crate::qr::decode_image(&bytes)?);
            } else {
                texts.push(
                    String::from_utf8(bytes)
                        .map_err(|_| Error::Io(format!("{input}: not UTF-8 text")))?,
                );
            }
        } else {
            texts.push(input.clone());
        }
    }
    Ok(texts)
}
