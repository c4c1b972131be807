//! `caravan trust …`: the node's certificate material on the command line (the same files the admin page edits;
//! a running node picks the change up on its next request).

use super::material::{CertsDir, MaterialError};
use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Import trust anchors: PEM/DER DSCs, DGCA DSC lists, SMART Health Card issuer JWKS (with `iss`), or a
    /// trust-list exchange document.
    Import {
        /// Data folder of the node (its certificate material is in DATA/certs).
        #[arg(long, default_value = "caravan-data", env = "CARAVAN_DATA")]
        data: PathBuf,
        /// Country of certificates that do not name one (PEM/DER).
        #[arg(long)]
        country: Option<String>,
        files: Vec<PathBuf>,
    },
    /// Import business rules and value sets (files, or folders such as a dgc-business-rules checkout).
    Rules {
        #[arg(long, default_value = "caravan-data", env = "CARAVAN_DATA")]
        data: PathBuf,
        paths: Vec<PathBuf>,
    },
    /// Remove a country's trusted DSCs.
    Remove {
        #[arg(long, default_value = "caravan-data", env = "CARAVAN_DATA")]
        data: PathBuf,
        #[arg(long)]
        country: String,
    },
    /// Print the trust anchors, rules and issuing keys as JSON.
    List {
        #[arg(long, default_value = "caravan-data", env = "CARAVAN_DATA")]
        data: PathBuf,
    },
    /// Print the trust list as the exchange document federation peers import.
    Export {
        #[arg(long, default_value = "caravan-data", env = "CARAVAN_DATA")]
        data: PathBuf,
    },
    /// This node's issuing keys: a new DCC key for a country, a new SHC key, and the SHC issuer URL.
    Issuer {
        #[arg(long, default_value = "caravan-data", env = "CARAVAN_DATA")]
        data: PathBuf,
        /// Generate a new DCC signing key and DSC for this country.
        #[arg(long)]
        dcc_country: Option<String>,
        /// Name written in the DSC.
        #[arg(long, default_value = "Caravan", env = "CARAVAN_NODE_NAME")]
        node_name: String,
        /// Generate a new SMART Health Card signing key.
        #[arg(long)]
        shc_key: bool,
        /// Set the SMART Health Card issuer URL (https, no trailing slash).
        #[arg(long)]
        shc_iss: Option<String>,
    },
    /// Seed the demo material (test trust lists and rules; never for production).
    Demo {
        #[arg(long, default_value = "caravan-data", env = "CARAVAN_DATA")]
        data: PathBuf,
    },
}

fn dir(data: &std::path::Path) -> CertsDir {
    CertsDir::new(data.join("certs"))
}

/// Prints JSON to stdout; a closed pipe (`| head`) ends quietly.
fn print(v: &impl serde::Serialize) -> Result<(), MaterialError> {
    use std::io::Write as _;
    let s = serde_json::to_string_pretty(v).map_err(|e| MaterialError::Io(e.to_string()))?;
    match writeln!(std::io::stdout().lock(), "{s}") {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(MaterialError::Io(format!("stdout: {e}")))
        }
        _ => Ok(()),
    }
}

fn run_inner(cmd: Command) -> Result<(), MaterialError> {
    match cmd {
        Command::Import {
            data,
            country,
            files,
        } => {
            let d = dir(&data);
            for f in files {
                let bytes = std::fs::read(&f)
                    .map_err(|e| MaterialError::Invalid(format!("{}: {e}", f.display())))?;
                let report = d
                    .import_trust(&bytes, country.as_deref())
                    .map_err(|e| MaterialError::Invalid(format!("{}: {e}", f.display())))?;
                print(&serde_json::json!({ "file": f, "imported": report }))?;
            }
        }
        Command::Rules { data, paths } => {
            let d = dir(&data);
            for p in paths {
                let report = d
                    .import_rules(&p)
                    .map_err(|e| MaterialError::Invalid(format!("{}: {e}", p.display())))?;
                print(&serde_json::json!({ "path": p, "imported": report }))?;
            }
        }
        Command::Remove { data, country } => {
            let n = dir(&data).remove_country(&country)?;
            print(&serde_json::json!({ "country": country, "removed": n }))?;
        }
        Command::List { data } => print(&super::trust_summary(&dir(&data).load()?))?,
        Command::Export { data } => print(&dir(&data).load()?.trust.to_json())?,
        Command::Issuer {
            data,
            dcc_country,
            node_name,
            shc_key,
            shc_iss,
        } => {
            let d = dir(&data);
            if let Some(iss) = shc_iss {
                d.set_shc_iss(&iss)?;
            }
            if let Some(c) = dcc_country {
                let kid = d.generate_dcc_key(&c, &node_name)?;
                eprintln!("new DCC key for {c}: {kid}");
            }
            if shc_key {
                let kid = d.generate_shc_key()?;
                eprintln!("new SMART Health Card key: {kid}");
            }
            print(&super::trust_summary(&d.load()?)["issuer"])?;
        }
        Command::Demo { data } => {
            let d = dir(&data);
            super::seed_demo(&d)?;
            print(&super::trust_summary(&d.load()?)["rules"])?;
        }
    }
    Ok(())
}

/// Runs a `caravan trust` command: exit 0, or 1 with the error on stderr.
pub fn run(cmd: Command) -> ExitCode {
    match run_inner(cmd) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
