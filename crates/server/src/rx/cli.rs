//! `caravan rx …`: verify a printed prescription offline (`verify`: only the published keys, no network), print the
//! node's prescription keys (`keys`), and import the reference tables into a node's database (`import`).

use super::sign;
use clap::Subcommand;
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Verify a prescription QR code offline against published keys; prints one JSON line, exits 1 if invalid.
    Verify {
        /// The published keys: the node's `/.well-known/caravan-rx-keys.json` saved to a file, a keyring file,
        /// or one base64url Ed25519 public key (which may begin with '-').
        #[arg(long, allow_hyphen_values = true)]
        keys: String,
        /// A photo or scan of the QR code (PNG or JPEG) instead of its text.
        #[arg(long)]
        image: Option<PathBuf>,
        /// The QR code's text (`RX1:…`), or `-` to read it from standard input.
        code: Option<String>,
    },
    /// Print this node's prescription keys (JWKS), creating the keyring in DATA/certs on first use.
    Keys {
        #[arg(long, default_value = "caravan-data", env = "CARAVAN_DATA")]
        data: PathBuf,
    },
    /// Import a reference table (CSV with header row, or a JSON array) into the node's database, replacing it.
    Import {
        #[arg(long, default_value = "caravan-data", env = "CARAVAN_DATA")]
        data: PathBuf,
        /// A `postgres://` URL instead of DATA/caravan.sqlite.
        #[arg(long, env = "CARAVAN_DATABASE")]
        database: Option<String>,
        /// formulary, interactions or allergies.
        #[arg(long)]
        table: Option<String>,
        /// Import the shipped starter tables (all three) instead of a file.
        #[arg(long)]
        starter: bool,
        file: Option<PathBuf>,
    },
}

pub fn run(cmd: Command) -> ExitCode {
    match execute(cmd) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn execute(cmd: Command) -> Result<ExitCode, String> {
    match cmd {
        Command::Verify { keys, image, code } => {
            let key_text = if std::path::Path::new(&keys).is_file() {
                std::fs::read_to_string(&keys).map_err(|e| format!("{keys}: {e}"))?
            } else {
                keys
            };
            let keys = sign::parse_keys(&key_text)?;
            let text = match (image, code.as_deref()) {
                (Some(path), _) => {
                    let bytes =
                        std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                    certs::qr::decode_image(&bytes).map_err(|e| e.to_string())?
                }
                (None, Some("-")) => {
                    let mut s = String::new();
                    std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
                        .map_err(|e| format!("stdin: {e}"))?;
                    s
                }
                (None, Some(c)) => c.to_owned(),
                (None, None) => return Err("give the code, `-` for stdin, or --image".into()),
            };
            match sign::verify(&text, &keys, chrono::Utc::now()) {
                Ok(payload) => {
                    println!("{}", json!({ "valid": true, "payload": payload }));
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    println!("{}", json!({ "valid": false, "reason": e.to_string() }));
                    Ok(ExitCode::from(1))
                }
            }
        }
        Command::Keys { data } => {
            let ring = sign::load_or_create(&data.join("certs"))?;
            println!("{}", sign::jwks(&ring));
            Ok(ExitCode::SUCCESS)
        }
        Command::Import {
            data,
            database,
            table,
            starter,
            file,
        } => {
            let url = match database {
                Some(d) => d,
                None => {
                    std::fs::create_dir_all(&data)
                        .map_err(|e| format!("{}: {e}", data.display()))?;
                    data.join("caravan.sqlite").display().to_string()
                }
            };
            let mut work: Vec<(caravan_store::RxTable, String)> = Vec::new();
            if starter {
                for (t, text) in super::tables::STARTER {
                    work.push((t, text.to_owned()));
                }
            } else {
                let name = table.ok_or("--table is required (or --starter)")?;
                let t = caravan_store::RxTable::parse(&name)
                    .ok_or_else(|| super::tables::TableError::UnknownTable(name).to_string())?;
                let path = file.ok_or("the table file is required")?;
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                work.push((t, text));
            }
            let mut changes = Vec::new();
            for (t, text) in &work {
                let rows =
                    super::tables::parse(*t, text).map_err(|e| format!("{}: {e}", t.as_str()))?;
                println!("{}", json!({ "table": t.as_str(), "rows": rows.len() }));
                changes.push(caravan_store::Change::Rx(
                    caravan_store::RxChange::ReplaceTable { table: *t, rows },
                ));
            }
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async {
                let store = crate::open_store(&url).await?;
                store
                    .apply(
                        changes,
                        vec![crate::audit::system_event(
                            caravan_domain::AuditAction::Update,
                            "rx-table",
                            "cli",
                            None,
                            "tables imported from the command line",
                        )],
                    )
                    .await
                    .map_err(|e| e.to_string())
            })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
