//! `caravan keys ...` and `caravan directory ...`.
//!
//! Exit codes: 0 success, 1 the check failed (bad signature, rollback, expired...), 2 bad usage or
//! unreadable input.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use chrono::Utc;
use clap::Subcommand;
use serde_json::Value;

use crate::directory::{Directory, DirectoryBody, TrustPolicy};
use crate::keys::{load_public_keys, load_signing_key, rfc3339, Keyring, NodeKey};
use crate::NodeId;

/// `caravan keys ...`: the node's signing keys.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Generate a keyring with a new Ed25519 key (file mode 0600).
    Generate {
        /// Keyring file to write.
        #[arg(long)]
        out: PathBuf,
        /// The node id the keyring belongs to.
        #[arg(long)]
        node_id: Option<String>,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Make a new active key; the old one is kept (public half) so its signatures still verify.
    Rotate {
        /// Keyring file.
        #[arg(long, env = "CARAVAN_KEYRING")]
        keyring: PathBuf,
    },
    /// Show the keyring's public keys.
    Show {
        /// Keyring file.
        #[arg(long, env = "CARAVAN_KEYRING")]
        keyring: PathBuf,
        /// Print the keys as directory `keys` entries (JSON), ready to paste into the directory.
        #[arg(long)]
        json: bool,
    },
}

/// `caravan directory ...`: the signed member directory.
#[derive(Debug, Subcommand)]
pub enum DirectoryCommand {
    /// Sign a directory with one or more anchor keys.
    Sign {
        /// Anchor signing key: a keyring, a PKCS#8 PEM or a base64url seed (repeat for several anchors).
        #[arg(long = "anchor-key", required = true, allow_hyphen_values = true)]
        anchor_keys: Vec<PathBuf>,
        /// The unsigned directory (any `signatures` member is replaced).
        #[arg(long = "in")]
        input: PathBuf,
        /// Where to write the signed directory.
        #[arg(long)]
        out: PathBuf,
    },
    /// Verify a signed directory against pinned anchor public keys.
    Verify {
        /// Anchor public key: base64url, or a file (keyring, SPKI PEM, base64url lines). Repeatable.
        #[arg(long = "anchor", required = true, allow_hyphen_values = true)]
        anchors: Vec<String>,
        /// Refuse a serial lower than this one (the serial already held).
        #[arg(long)]
        held_serial: Option<u64>,
        /// Signed directory file.
        file: PathBuf,
    },
    /// Show a directory's members and keys.
    Show {
        /// Check the signature against these anchors first (otherwise it is shown unverified).
        #[arg(long = "anchor", allow_hyphen_values = true)]
        anchors: Vec<String>,
        /// Directory file.
        file: PathBuf,
    },
}

/// Both command groups, for a binary that mounts them under one name.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Node signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// The signed member directory.
    #[command(subcommand)]
    Directory(DirectoryCommand),
}

/// Runs either group.
pub fn run(cmd: Command) -> ExitCode {
    match cmd {
        Command::Keys(c) => run_keys(c),
        Command::Directory(c) => run_directory(c),
    }
}

fn usage(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(2)
}

fn refused(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("refused: {msg}");
    ExitCode::from(1)
}

/// Runs `caravan keys ...`.
pub fn run_keys(cmd: KeysCommand) -> ExitCode {
    match cmd {
        KeysCommand::Generate {
            out,
            node_id,
            force,
        } => {
            if let Some(id) = &node_id {
                if let Err(e) = NodeId::new(id.clone()) {
                    return usage(e);
                }
            }
            if out.exists() && !force {
                return usage(format!(
                    "{} exists (use --force to overwrite)",
                    out.display()
                ));
            }
            let ring = Keyring::generate(node_id, Utc::now());
            if let Err(e) = ring.save(&out) {
                return usage(e);
            }
            println!("wrote {}", out.display());
            print_ring(&ring);
            ExitCode::SUCCESS
        }
        KeysCommand::Rotate { keyring } => {
            let mut ring = match Keyring::load(&keyring) {
                Ok(r) => r,
                Err(e) => return usage(e),
            };
            let old = ring.active().kid().clone();
            let new = ring.rotate(Utc::now());
            if let Err(e) = ring.save(&keyring) {
                return usage(e);
            }
            println!("rotated: {old} retired, {new} active");
            println!("publish the new key in the directory (caravan keys show --json) before the node uses it");
            ExitCode::SUCCESS
        }
        KeysCommand::Show { keyring, json } => {
            let ring = match Keyring::load(&keyring) {
                Ok(r) => r,
                Err(e) => return usage(e),
            };
            if json {
                match serde_json::to_string_pretty(&ring.directory_keys()) {
                    Ok(s) => println!("{s}"),
                    Err(e) => return usage(e),
                }
            } else {
                print_ring(&ring);
            }
            ExitCode::SUCCESS
        }
    }
}

fn print_ring(ring: &Keyring) {
    if let Some(id) = &ring.node_id {
        println!("node:       {id}");
    }
    println!("active kid: {}", ring.active().kid());
    println!("public key: {}", ring.active().public_key_b64());
    println!("created:    {}", rfc3339(ring.active_created()));
    for r in ring.retired() {
        println!(
            "retired:    {} (public key {}, retired {})",
            r.kid,
            r.public_key,
            rfc3339(r.retired)
        );
    }
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn anchors(args: &[String]) -> Result<Vec<ed25519_dalek::VerifyingKey>, String> {
    let mut keys = Vec::new();
    for a in args {
        keys.extend(load_public_keys(a).map_err(|e| e.to_string())?);
    }
    Ok(keys)
}

/// Runs `caravan directory ...`.
pub fn run_directory(cmd: DirectoryCommand) -> ExitCode {
    match cmd {
        DirectoryCommand::Sign {
            anchor_keys,
            input,
            out,
        } => {
            let keys: Result<Vec<NodeKey>, _> =
                anchor_keys.iter().map(|p| load_signing_key(p)).collect();
            let keys = match keys {
                Ok(k) => k,
                Err(e) => return usage(e),
            };
            let raw = match read(&input) {
                Ok(r) => r,
                Err(e) => return usage(e),
            };
            let mut doc: Value = match serde_json::from_slice(&raw) {
                Ok(v) => v,
                Err(e) => return usage(format!("{}: {e}", input.display())),
            };
            let Some(obj) = doc.as_object_mut() else {
                return usage("the directory must be a JSON object");
            };
            obj.remove("signatures");
            let listed = obj
                .get("anchors")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty());
            if !listed {
                let kids: Vec<Value> = keys
                    .iter()
                    .map(|k| Value::String(k.kid().to_string()))
                    .collect();
                obj.insert("anchors".into(), Value::Array(kids));
            }
            let body: DirectoryBody = match serde_json::from_value(doc) {
                Ok(b) => b,
                Err(e) => return usage(format!("{}: {e}", input.display())),
            };
            let refs: Vec<&NodeKey> = keys.iter().collect();
            let signed = match body.sign(&refs) {
                Ok(s) => s,
                Err(e) => return refused(e),
            };
            let text = match serde_json::to_string_pretty(&signed) {
                Ok(t) => t + "\n",
                Err(e) => return usage(e),
            };
            if let Err(e) = std::fs::write(&out, text) {
                return usage(format!("{}: {e}", out.display()));
            }
            println!(
                "signed directory {} serial {} ({} members) with {} anchor key(s) -> {}",
                body.network,
                body.serial,
                body.members.len(),
                keys.len(),
                out.display()
            );
            ExitCode::SUCCESS
        }
        DirectoryCommand::Verify {
            anchors: anchor_args,
            held_serial,
            file,
        } => {
            let keys = match anchors(&anchor_args) {
                Ok(k) => k,
                Err(e) => return usage(e),
            };
            let raw = match read(&file) {
                Ok(r) => r,
                Err(e) => return usage(e),
            };
            match Directory::verify(&raw, &TrustPolicy::new(keys), Utc::now(), held_serial) {
                Ok(dir) => {
                    let b = dir.body();
                    println!(
                        "ok: network {} serial {} members {} expires {}",
                        b.network,
                        b.serial,
                        b.members.len(),
                        rfc3339(b.expires_at)
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => refused(e),
            }
        }
        DirectoryCommand::Show {
            anchors: anchor_args,
            file,
        } => {
            let raw = match read(&file) {
                Ok(r) => r,
                Err(e) => return usage(e),
            };
            let body: DirectoryBody = if anchor_args.is_empty() {
                let mut doc: Value = match serde_json::from_slice(&raw) {
                    Ok(v) => v,
                    Err(e) => return usage(format!("{}: {e}", file.display())),
                };
                if let Some(obj) = doc.as_object_mut() {
                    obj.remove("signatures");
                }
                match serde_json::from_value(doc) {
                    Ok(b) => b,
                    Err(e) => return usage(format!("{}: {e}", file.display())),
                }
            } else {
                let keys = match anchors(&anchor_args) {
                    Ok(k) => k,
                    Err(e) => return usage(e),
                };
                match Directory::verify(&raw, &TrustPolicy::new(keys), Utc::now(), None) {
                    Ok(d) => d.body().clone(),
                    Err(e) => return refused(e),
                }
            };
            print!("{}", render(&body, !anchor_args.is_empty()));
            ExitCode::SUCCESS
        }
    }
}

/// A human-readable listing of a directory.
pub fn render(body: &DirectoryBody, verified: bool) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "network {}  serial {}  issued {}  expires {}  ({})",
        body.network,
        body.serial,
        rfc3339(body.issued_at),
        rfc3339(body.expires_at),
        if verified {
            "signature verified"
        } else {
            "signature NOT checked: pass --anchor"
        }
    );
    for a in &body.anchors {
        let _ = writeln!(s, "anchor  {a}");
    }
    for m in &body.members {
        let level = serde_json::to_value(m.level)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "\n{}  {}  [{}] {}  {}",
            m.node_id, m.display_name, m.country, level, m.base_url
        );
        let _ = writeln!(
            s,
            "  valid {} .. {}",
            rfc3339(m.valid_from),
            m.valid_until.map(rfc3339).unwrap_or_else(|| "open".into())
        );
        let _ = writeln!(s, "  may send: {}", m.message_types.join(", "));
        for pin in &m.tls_spki_sha256 {
            let _ = writeln!(s, "  tls key sha256 {pin}");
        }
        for k in &m.keys {
            let status = serde_json::to_value(k.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            let _ = writeln!(
                s,
                "  key {}  {}  {} .. {}",
                k.kid,
                status,
                rfc3339(k.not_before),
                k.not_after.map(rfc3339).unwrap_or_else(|| "open".into())
            );
        }
    }
    s
}
