//! `caravan`: the node binary. It parses flags and wires the library crates together; nothing else lives here.

mod bench;
mod dicom_node;
mod domains;
mod net;
mod slides;

use anyhow::{Context, Result};
use caravan_server::{AppState, Blobs, NodeConfig};
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "caravan",
    version,
    about = "A node of the Caravan cross-border telemedicine network"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node.
    Serve(ServeArgs),
    /// Run a node seeded with a demo network (institutions in three countries, users, patients, consultations).
    Demo(ServeArgs),
    /// API tokens for integrations.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// The tamper-evident audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Health certificates: verify offline, issue, conformance, benchmark (EU DCC, SMART Health Cards).
    Cert {
        #[command(subcommand)]
        command: certs::cli::Command,
    },
    /// e-Prescription: verify a printed prescription offline, the node's prescription keys, table import.
    Rx {
        #[command(subcommand)]
        command: caravan_server::rx::cli::Command,
    },
    /// This node's certificate trust lists, rules and issuing keys in DATA/certs (import, list, export, issuer).
    Trust {
        #[command(subcommand)]
        command: caravan_server::certs_web::cli::Command,
    },
    /// CertLogic business rules: evaluate, lint, conformance suites (`rules conformance certlogic|rules DIR`).
    Rules {
        #[command(subcommand)]
        command: certlogic::cli::Command,
    },
    /// Infectious-disease surveillance: outbreak detection, model fitting, R_t, forecasts, importation risk.
    Surveil {
        #[command(subcommand)]
        command: domains::Surveil,
    },
    /// ECG: detect QRS complexes, measure intervals, score against annotations, render.
    Ecg {
        #[command(subcommand)]
        command: ecg::cli::Command,
    },
    /// DICOM: a standalone archive with DIMSE SCP and DICOMweb, and the C-STORE benchmark.
    Dicom {
        #[command(subcommand)]
        command: imaging::cli::Command,
    },
    /// Federation: this node's Ed25519 signing keys (generate, rotate, show).
    Keys {
        #[command(subcommand)]
        command: caravan_federation::cli::KeysCommand,
    },
    /// Federation: the network's signed member directory (sign with an anchor key, verify, show).
    Directory {
        #[command(subcommand)]
        command: caravan_federation::cli::DirectoryCommand,
    },
    /// TLS certificates for nodes: mint a self-signed one, print a certificate's directory pin.
    Tls {
        #[command(subcommand)]
        command: caravan_server::tls::TlsCommand,
    },
    /// Remote monitoring: NEWS2, MQTT ingest of device readings, alerts, the device simulator and the soak test.
    Monitor {
        #[command(subcommand)]
        command: monitoring::cli::Command,
    },
    /// Federation tools: `net soak` (N node processes, M envelopes, a receiver killed mid-run).
    Net {
        #[command(subcommand)]
        command: net::NetCommand,
    },
    /// Benchmarks of a node (build with --release): consultation workflows per second, mixed API load.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Whole consultations (create → route → accept → report → acknowledge → outcome) per second.
    Workflow {
        #[arg(long, default_value_t = 3000)]
        n: usize,
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
    },
    /// Mixed API load, 70 % reads and 30 % writes; throughput and latency percentiles.
    Api {
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Consultations the load reads, lists and posts in (over 20 patients; the list asks for 50). A fifth of
        /// the requests post a message to one of them, so their threads grow as the run goes on: with 20 cases,
        /// by ~300 messages a case per 10 s at 3,000 requests/s.
        #[arg(long, default_value_t = 20)]
        cases: usize,
        /// Load generator: `wrk` (a separate process, Debian's wrk; the default when it is installed) or `rust`
        /// (reqwest in this process, sharing its cores with the node).
        #[arg(long, default_value = "auto")]
        client: String,
    },
}

#[derive(Args, Clone)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080", env = "CARAVAN_LISTEN")]
    listen: SocketAddr,
    /// Data folder: the SQLite database and attachments live here unless --database/--blobs say otherwise.
    #[arg(long, default_value = "caravan-data", env = "CARAVAN_DATA")]
    data: PathBuf,
    /// Database URL: a SQLite file (default: DATA/caravan.sqlite).
    #[arg(long, env = "CARAVAN_DATABASE")]
    database: Option<String>,
    /// Blob store URL: a folder, file:///path or s3://bucket/prefix (default: DATA/blobs).
    #[arg(long, env = "CARAVAN_BLOBS")]
    blobs: Option<String>,
    /// Largest case attachment in bytes (whole-slide images run to gigabytes). Attachments are streamed into the
    /// blob store, so this bounds storage, not memory; other request bodies stay limited to 20 MB. On S3 at most
    /// 5 GB (a larger bound is refused at start).
    #[arg(long, default_value_t = caravan_server::config::DEFAULT_MAX_ATTACHMENT_BYTES, env = "CARAVAN_MAX_ATTACHMENT_BYTES")]
    max_attachment_bytes: u64,
    /// Name shown in the page header.
    #[arg(long, default_value = "Caravan", env = "CARAVAN_NODE_NAME")]
    node_name: String,
    /// SLA clock for routine consultations, in hours.
    #[arg(long, default_value_t = 72)]
    sla_routine_hours: i64,
    /// SLA clock for urgent consultations, in hours.
    #[arg(long, default_value_t = 24)]
    sla_urgent_hours: i64,
    /// SLA clock for emergencies, in minutes.
    #[arg(long, default_value_t = 60)]
    sla_emergency_minutes: i64,
    /// Do not set the Secure flag on cookies (only for plain-HTTP access on a trusted network or loopback).
    #[arg(long)]
    insecure_cookies: bool,
    /// Aberration detection on surveillance reports, as JSON with R's parameter names in snake case, e.g.
    /// '{"method":"ears-c3"}' or '{"method":"farrington-flexible","b":3,"threshold_method":"Muan"}'. Default:
    /// Farrington flexible with the Noufaily (2013) settings, EARS C2 for series shorter than its 5 years.
    #[arg(long, env = "CARAVAN_SURVEILLANCE_METHOD")]
    surveillance_method: Option<String>,
    /// Also accept DICOM associations (C-ECHO, C-STORE, C-FIND, C-MOVE; AE title CARAVAN) on this address.
    /// DICOMweb is always served at /dicomweb behind the node's sign-in.
    #[arg(long, env = "CARAVAN_DICOM_LISTEN")]
    dicom_listen: Option<SocketAddr>,
    /// With `demo`: start the demo network instead, three nodes (a national center in KZ, hospitals in CN and
    /// UZ) on --listen's port and the two after it, each with its own database, exchanging a cross-border case.
    #[arg(long)]
    network: bool,
    /// With `demo --network`: HTTPS and mutual TLS between the three nodes (self-signed certificates pinned in
    /// the directory).
    #[arg(long = "tls", requires = "network")]
    network_tls: bool,
    #[command(flatten)]
    federation: net::FedArgs,
    #[command(flatten)]
    tls: net::TlsArgs,
    /// Video visits: TURN relay (`--turn-url`, `--turn-secret`, `--turn-ttl`), relay-only, audio-only thresholds.
    #[command(flatten)]
    visits: caravan_server::visits::VisitArgs,
    /// Remote monitoring: `--mqtt mqtt://host:port` runs the MQTT ingest in the node.
    #[command(flatten)]
    monitoring: caravan_server::monitor::MonitorArgs,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create an API token for a user and print it (it is shown only once).
    Create {
        #[arg(long, default_value = "caravan-data")]
        data: PathBuf,
        #[arg(long)]
        database: Option<String>,
        /// User name.
        #[arg(long)]
        user: String,
        /// A name for the token.
        #[arg(long, default_value = "cli")]
        name: String,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Verify the audit hash chain; exits non-zero and names the first broken event after any tampering.
    Verify {
        #[arg(long, default_value = "caravan-data")]
        data: PathBuf,
        #[arg(long)]
        database: Option<String>,
    },
}

fn database_url(data: &std::path::Path, database: &Option<String>) -> Result<String> {
    match database {
        Some(d) => Ok(d.clone()),
        None => {
            std::fs::create_dir_all(data)
                .with_context(|| format!("cannot create data folder {}", data.display()))?;
            Ok(data.join("caravan.sqlite").display().to_string())
        }
    }
}

async fn node(args: &ServeArgs, demo: bool) -> Result<()> {
    if args.network {
        if !demo {
            anyhow::bail!("--network starts the demo network: use it with `caravan demo`");
        }
        return net::demo_network(args.listen, &args.data, args.network_tls).await;
    }
    let federation = args.federation.load(&args.data)?;
    let db = database_url(&args.data, &args.database)?;
    let store = caravan_server::open_store(&db)
        .await
        .map_err(anyhow::Error::msg)?;
    let blobs_spec = args
        .blobs
        .clone()
        .unwrap_or_else(|| args.data.join("blobs").display().to_string());
    let blobs = Blobs::open(&blobs_spec).map_err(anyhow::Error::msg)?;
    blobs
        .check_attachment_bound(args.max_attachment_bytes)
        .map_err(anyhow::Error::msg)?;
    let config = NodeConfig {
        node_name: args.node_name.clone(),
        sla: caravan_domain::SlaPolicy {
            routine_minutes: args.sla_routine_hours * 60,
            urgent_minutes: args.sla_urgent_hours * 60,
            emergency_minutes: args.sla_emergency_minutes,
        },
        secure_cookies: !(args.insecure_cookies || demo),
        max_attachment_bytes: args.max_attachment_bytes,
        certs_dir: Some(args.data.join("certs")),
        tls: args.tls.load(federation.is_some())?,
        surveillance_method: args
            .surveillance_method
            .as_deref()
            .map(serde_json::from_str::<surveillance::Method>)
            .transpose()
            .context("--surveillance-method is not a detection method (see `caravan surveil detect --help`)")?,
        visits: args.visits.config().map_err(anyhow::Error::msg)?,
        ..NodeConfig::default()
    };
    if demo {
        let certs = caravan_server::certs_web::material::CertsDir::new(args.data.join("certs"));
        caravan_server::certs_web::seed_demo(&certs)?;
        let seeded = caravan_server::demo::seed(store.as_ref(), &config.sla).await?;
        tracing::info!(seeded, "demo data ready");
    }
    let config_tls = config.tls.is_some();
    let state = AppState::federated(store, blobs, config, federation);
    let dicom = dicom_node::start(&args.data, args.dicom_listen, &state).await?;
    // Remote monitoring: DATA/monitoring.sqlite, the escalation loop and, with --mqtt, the ingest.
    let monitor_tasks = caravan_server::monitor::start(&state, &args.data, &args.monitoring)
        .await
        .map_err(anyhow::Error::msg)?;
    if demo {
        if let Some(m) = state.monitoring() {
            let seeded =
                caravan_server::monitor::demo::seed(m, state.store(), chrono::Utc::now()).await?;
            tracing::info!(
                devices = seeded.devices,
                messages = seeded.messages,
                alerts = seeded.alerts,
                "monitoring demo data ready"
            );
        }
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    if let Some(scp) = &dicom.scp {
        println!("DICOM SCP CARAVAN listening on {}", scp.local_addr());
    }
    let scheme = if config_tls { "https" } else { "http" };
    println!("Caravan node listening on {scheme}://{addr}/");
    if demo {
        println!(
            "Demo logins (password for all: {}):",
            caravan_server::demo::DEMO_PASSWORD
        );
        for (user, what) in caravan_server::demo::DEMO_LOGINS {
            println!("  {user:<16} {what}");
        }
    }
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let extra = caravan_fhir::routes().merge(dicom.routes);
    caravan_server::serve_with(listener, state, extra, shutdown).await?;
    for task in monitor_tasks {
        task.abort();
    }
    if let Some(scp) = dicom.scp {
        scp.stop().await;
    }
    Ok(())
}

async fn token_create(
    data: &std::path::Path,
    database: &Option<String>,
    user: &str,
    name: &str,
) -> Result<()> {
    let db = database_url(data, database)?;
    let store = caravan_server::open_store(&db)
        .await
        .map_err(anyhow::Error::msg)?;
    let (u, _) = store
        .get_user_credentials(user)
        .await
        .with_context(|| format!("no user named {user:?}"))?;
    let token = caravan_server::auth::random_token();
    let audit = vec![caravan_server::audit::system_event(
        caravan_domain::AuditAction::TokenCreated,
        "user",
        u.id,
        None,
        "cli",
    )];
    store
        .create_api_token(&caravan_server::auth::token_hash(&token), u.id, name, audit)
        .await?;
    println!("{token}");
    Ok(())
}

async fn audit_verify(data: &std::path::Path, database: &Option<String>) -> Result<bool> {
    let db = database_url(data, database)?;
    let store = caravan_server::open_store(&db)
        .await
        .map_err(anyhow::Error::msg)?;
    match caravan_store::verify_audit_chain(store.as_ref()).await? {
        Ok(n) => {
            println!("audit chain intact: {n} events verified");
            Ok(true)
        }
        Err(e) => {
            eprintln!("audit chain BROKEN at event {}: {e}", e.seq());
            Ok(false)
        }
    }
}

/// mimalloc: under many threads (tokio workers, sqlx's SQLite worker threads) glibc's malloc showed up at ~15 % of
/// the node's CPU in `perf`; mimalloc's thread-local free lists avoid most of that.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let cli = match cli.command {
        Command::Cert { command } => return domains::cert(command),
        Command::Trust { command } => return caravan_server::certs_web::cli::run(command),
        Command::Rx { command } => return caravan_server::rx::cli::run(command),
        Command::Rules { command } => return domains::rules(command),
        Command::Surveil { command } => return domains::surveil(command),
        Command::Ecg { command } => return domains::ecg(command),
        Command::Dicom { command } => return domains::dicom(command),
        Command::Monitor { command } => return domains::monitor(command),
        Command::Keys { command } => return caravan_federation::cli::run_keys(command),
        Command::Directory { command } => return caravan_federation::cli::run_directory(command),
        Command::Tls { command } => return caravan_server::tls::run(command),
        other => other,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result: Result<ExitCode> = runtime.block_on(async {
        match cli {
            Command::Serve(a) => node(&a, false).await.map(|_| ExitCode::SUCCESS),
            Command::Demo(a) => node(&a, true).await.map(|_| ExitCode::SUCCESS),
            Command::Token {
                command:
                    TokenCommand::Create {
                        data,
                        database,
                        user,
                        name,
                    },
            } => token_create(&data, &database, &user, &name)
                .await
                .map(|_| ExitCode::SUCCESS),
            Command::Net {
                command:
                    net::NetCommand::Soak {
                        nodes,
                        messages,
                        kill_receiver,
                        timeout_seconds,
                        keep,
                    },
            } => net::soak(
                nodes,
                messages,
                kill_receiver,
                std::time::Duration::from_secs(timeout_seconds),
                keep,
            )
            .await
            .map(|ok| {
                if ok {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }),
            Command::Bench {
                command: BenchCommand::Workflow { n, concurrency },
            } => bench::workflows(n, concurrency)
                .await
                .map(|_| ExitCode::SUCCESS),
            Command::Bench {
                command:
                    BenchCommand::Api {
                        seconds,
                        client,
                        concurrency,
                        cases,
                    },
            } => bench::mixed(seconds, concurrency, cases, &client)
                .await
                .map(|_| ExitCode::SUCCESS),
            // Dispatched before the runtime starts (above): some libraries start runtimes of their own.
            Command::Cert { .. }
            | Command::Trust { .. }
            | Command::Rx { .. }
            | Command::Tls { .. }
            | Command::Rules { .. }
            | Command::Surveil { .. }
            | Command::Ecg { .. }
            | Command::Dicom { .. }
            | Command::Monitor { .. }
            | Command::Keys { .. }
            | Command::Directory { .. } => Ok(ExitCode::FAILURE),
            Command::Audit {
                command: AuditCommand::Verify { data, database },
            } => {
                if audit_verify(&data, &database).await? {
                    Ok(ExitCode::SUCCESS)
                } else {
                    Ok(ExitCode::from(2))
                }
            }
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
