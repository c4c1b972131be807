//! The `imaging` subcommands: `serve` (a standalone SCP + DICOMweb on a data folder), `bench`
//! (C-STORE ingest and QIDO-RS latency against Orthanc, side by side) and `slides-bench` (Deep Zoom
//! tiles per second, cold and cached, [`crate::wsi::bench`]).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command as Process, ExitCode, Stdio};
use std::time::{Duration, Instant};

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::meta::FileMetaTableBuilder;

use crate::archive::{error_chain, Archive};
use crate::dicomweb::{self, DicomWebState};
use crate::dimse::{Scp, ScpConfig};
use crate::error::{Error, Result};

/// The CT image the benchmark series is made from: pydicom's `CT_small.dcm` (see
/// `tests/data/README.md` for its source and licence).
const CT_SMALL: &[u8] = include_bytes!("../tests/data/CT_small.dcm");

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Run a standalone DICOM node: DIMSE SCP and DICOMweb on a data folder.
    Serve {
        /// Folder for the archive (objects and index).
        #[arg(long, default_value = "caravan-imaging")]
        data: PathBuf,
        /// Address of the DIMSE SCP.
        #[arg(long, default_value = "127.0.0.1:11112")]
        dicom_listen: SocketAddr,
        /// Address of the DICOMweb server (routes under /dicomweb). No authentication: use the
        /// Caravan server for anything but a local test.
        #[arg(long, default_value = "127.0.0.1:8080")]
        http_listen: SocketAddr,
        /// Our AE title.
        #[arg(long, default_value = "CARAVAN")]
        ae_title: String,
        /// A C-MOVE destination, `AE=host:port` (repeatable).
        #[arg(long = "move-destination", value_name = "AE=HOST:PORT")]
        move_destinations: Vec<String>,
    },
    /// Benchmark C-STORE ingest (dcmtk storescu) and QIDO-RS latency, Caravan vs Orthanc.
    Bench {
        /// Number of CT instances to send.
        #[arg(long, default_value_t = 1000)]
        instances: usize,
        /// Source CT instance to clone (default: the bundled CT_small.dcm).
        #[arg(long)]
        source: Option<PathBuf>,
        /// Number of QIDO-RS requests per server.
        #[arg(long, default_value_t = 200)]
        queries: usize,
        /// Skip Orthanc (measure Caravan only).
        #[arg(long)]
        no_orthanc: bool,
        /// Orthanc executable.
        #[arg(long, default_value = "Orthanc")]
        orthanc: String,
        /// dcmtk storescu executable.
        #[arg(long, default_value = "/usr/bin/storescu")]
        storescu: String,
        /// dcmtk storescp, timed as a baseline (a receiver that only writes files, no index).
        #[arg(long, default_value = "/usr/bin/storescp")]
        storescp: String,
        /// Run Orthanc with SyncStorageArea=false (no fsync per file, as Caravan).
        #[arg(long)]
        orthanc_no_sync: bool,
        /// Rounds of the whole comparison (figures are medians over rounds).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Concurrent storescu associations sharing the instances.
        #[arg(long, default_value_t = 1)]
        associations: usize,
        /// Print results as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Benchmark pathology slide tiles: cold (slide opened, every Deep Zoom tile made) and warm (from the
    /// tile cache) tiles/s, with CPU per tile and the load average. Build with --release.
    SlidesBench {
        /// A TIFF/SVS file, or the DICOM files of one WSI series separated by commas (repeatable; default:
        /// the fixtures in crates/imaging/tests/data/wsi).
        #[arg(long = "slide")]
        slides: Vec<String>,
        /// Passes over every tile of every slide (figures are medians).
        #[arg(long, default_value_t = 5)]
        passes: usize,
        /// Only the K finest Deep Zoom levels (default: all).
        #[arg(long)]
        levels: Option<usize>,
        /// Print results as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a subcommand, printing results to stdout and one error line to stderr.
pub fn run(cmd: Command) -> ExitCode {
    let mut out = std::io::stdout();
    match run_to(cmd, &mut out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a subcommand writing its results to `out` (what tests call).
pub fn run_to(cmd: Command, out: &mut dyn Write) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cmd {
        Command::Serve {
            data,
            dicom_listen,
            http_listen,
            ae_title,
            move_destinations,
        } => runtime.block_on(serve(
            &data,
            dicom_listen,
            http_listen,
            ae_title,
            &move_destinations,
            out,
        )),
        Command::Bench {
            instances,
            source,
            queries,
            no_orthanc,
            orthanc,
            storescu,
            storescp,
            orthanc_no_sync,
            rounds,
            associations,
            json,
        } => {
            let options = BenchOptions {
                instances,
                source,
                queries,
                orthanc: (!no_orthanc).then_some(orthanc),
                storescu,
                storescp: Some(storescp).filter(|p| Path::new(p).exists()),
                orthanc_no_sync,
                rounds,
                associations,
            };
            let report = runtime.block_on(bench(&options))?;
            report.write(out, json)
        }
        Command::SlidesBench {
            slides,
            passes,
            levels,
            json,
        } => {
            let sources = if slides.is_empty() {
                crate::wsi::bench::SlideSource::fixtures()
            } else {
                slides
                    .iter()
                    .map(|s| crate::wsi::bench::SlideSource::parse(s))
                    .collect()
            };
            crate::wsi::bench::run(&sources, passes, levels)?.write(out, json)
        }
    }
}

/// Parses `AE=host:port` pairs.
pub fn parse_destinations(list: &[String]) -> Result<HashMap<String, String>> {
    let mut map = HashMap::new();
    for item in list {
        let (ae, addr) = item
            .split_once('=')
            .filter(|(ae, addr)| !ae.is_empty() && addr.contains(':'))
            .ok_or_else(|| {
                Error::Config(format!(
                    "move destination must be AE=host:port, got {item:?}"
                ))
            })?;
        if ae.len() > 16 {
            return Err(Error::Config(format!(
                "AE title {ae:?} is longer than 16 characters"
            )));
        }
        map.insert(ae.to_string(), addr.to_string());
    }
    Ok(map)
}

async fn serve(
    data: &Path,
    dicom_listen: SocketAddr,
    http_listen: SocketAddr,
    ae_title: String,
    move_destinations: &[String],
    out: &mut dyn Write,
) -> Result<()> {
    if ae_title.is_empty() || ae_title.len() > 16 {
        return Err(Error::Config(format!(
            "AE title {ae_title:?} must be 1 to 16 characters"
        )));
    }
    let archive = Archive::open_folder(data).await?;
    let config = ScpConfig {
        ae_title: ae_title.clone(),
        move_destinations: parse_destinations(move_destinations)?,
        ..ScpConfig::default()
    };
    let scp = Scp::bind(dicom_listen, archive.clone(), config).await?;
    let app = axum::Router::new().nest("/dicomweb", dicomweb::router(DicomWebState::new(archive)));
    let listener = tokio::net::TcpListener::bind(http_listen).await?;
    let http_addr = listener.local_addr()?;
    writeln!(
        out,
        "DICOM SCP {ae_title} on {}; DICOMweb on http://{http_addr}/dicomweb; data in {}",
        scp.local_addr(),
        data.display()
    )?;
    out.flush()?;
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    scp.stop().await;
    Ok(())
}

/// Benchmark settings.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub instances: usize,
    pub source: Option<PathBuf>,
    pub queries: usize,
    pub orthanc: Option<String>,
    pub storescu: String,
    /// dcmtk storescp for the baseline run, if installed.
    pub storescp: Option<String>,
    pub orthanc_no_sync: bool,
    /// Rounds of the whole comparison; figures are medians over rounds.
    pub rounds: usize,
    /// Concurrent storescu associations sharing the instances.
    pub associations: usize,
}

/// One server's figures: medians over the rounds.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ServerFigures {
    pub name: String,
    pub ingest_seconds: f64,
    pub instances_per_second: f64,
    /// Ingest time of every round, in round order.
    pub rounds_seconds: Vec<f64>,
    /// CPU time (user + system) the server process used per instance during ingest, median
    /// over rounds; a load-independent cost beside the wall-clock rate.
    pub cpu_ms_per_instance: Option<f64>,
    /// Instances the server reports stored after the last round.
    pub stored: u64,
    pub qido_median_ms: Option<f64>,
    pub qido_p95_ms: Option<f64>,
}

/// The benchmark's result.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchReport {
    pub instances: usize,
    pub bytes_per_instance: usize,
    pub rounds: usize,
    pub associations: usize,
    pub caravan: ServerFigures,
    pub orthanc: Option<ServerFigures>,
    pub orthanc_note: Option<String>,
    /// dcmtk storescp writing files only: the floor set by the sender and the machine.
    pub storescp: Option<ServerFigures>,
    /// Median Caravan instances/s divided by median Orthanc instances/s.
    pub ingest_ratio: Option<f64>,
    /// Lowest and highest per-round ratio.
    pub ingest_ratio_range: Option<(f64, f64)>,
    /// Orthanc CPU per instance divided by Caravan's.
    pub cpu_ratio: Option<f64>,
    /// Orthanc QIDO median latency divided by Caravan's.
    pub qido_ratio: Option<f64>,
}

impl BenchReport {
    fn write(&self, out: &mut dyn Write, json: bool) -> Result<()> {
        if json {
            let text =
                serde_json::to_string_pretty(self).map_err(|e| Error::Encoding(e.to_string()))?;
            writeln!(out, "{text}")?;
            return Ok(());
        }
        writeln!(
            out,
            "C-STORE ingest of {} CT instances ({} bytes each) with dcmtk storescu, {} association(s), median of {} round(s)",
            self.instances, self.bytes_per_instance, self.associations, self.rounds
        )?;
        let line = |f: &ServerFigures| {
            let rounds: Vec<String> = f.rounds_seconds.iter().map(|s| format!("{s:.2}")).collect();
            format!(
                "  {:<8} {:>8.2} s  {:>8.1} instances/s  {}  stored {}  rounds [{}]{}",
                f.name,
                f.ingest_seconds,
                f.instances_per_second,
                match f.cpu_ms_per_instance {
                    Some(c) => format!("cpu {c:.2} ms/instance"),
                    None => "cpu n/a".into(),
                },
                f.stored,
                rounds.join(" "),
                match (f.qido_median_ms, f.qido_p95_ms) {
                    (Some(m), Some(p)) => format!("  QIDO-RS median {m:.2} ms, p95 {p:.2} ms"),
                    _ => String::new(),
                }
            )
        };
        writeln!(out, "{}", line(&self.caravan))?;
        if let Some(o) = &self.orthanc {
            writeln!(out, "{}", line(o))?;
        }
        if let Some(b) = &self.storescp {
            writeln!(out, "{}  (baseline: files only, no index)", line(b))?;
        }
        if let Some(note) = &self.orthanc_note {
            writeln!(out, "  orthanc: {note}")?;
        }
        if let Some(r) = self.ingest_ratio {
            let range = self
                .ingest_ratio_range
                .map(|(lo, hi)| format!(" (rounds {lo:.2}x to {hi:.2}x)"))
                .unwrap_or_default();
            writeln!(
                out,
                "ingest ratio caravan/orthanc: {r:.2}x{range} (goal >= 3x)"
            )?;
        }
        if let Some(r) = self.cpu_ratio {
            writeln!(out, "CPU per instance orthanc/caravan: {r:.2}x")?;
        }
        if let Some(r) = self.qido_ratio {
            writeln!(out, "QIDO-RS latency ratio orthanc/caravan: {r:.2}x")?;
        }
        Ok(())
    }
}

/// Writes `count` CT instances cloned from `source` into `dir`: one new study and series, new SOP
/// Instance UIDs and instance numbers, everything else as in the source.
pub fn generate_series(source: &[u8], count: usize, dir: &Path) -> Result<usize> {
    let template = crate::render::open(source)?;
    let ts = template
        .meta()
        .transfer_syntax()
        .trim_end_matches('\0')
        .to_string();
    let study = crate::uid::new_uid();
    let series = crate::uid::new_uid();
    std::fs::create_dir_all(dir)?;
    let mut size = 0;
    for i in 0..count {
        let mut obj = template.clone().into_inner();
        let sop = crate::uid::new_uid();
        obj.put(DataElement::new(
            tags::STUDY_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::from(study.clone()),
        ));
        obj.put(DataElement::new(
            tags::SERIES_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::from(series.clone()),
        ));
        obj.put(DataElement::new(
            tags::SOP_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::from(sop),
        ));
        obj.put(DataElement::new(
            tags::INSTANCE_NUMBER,
            VR::IS,
            PrimitiveValue::from((i + 1).to_string()),
        ));
        let file = obj
            .with_meta(FileMetaTableBuilder::new().transfer_syntax(ts.clone()))
            .map_err(|e| Error::Encoding(error_chain(&e)))?;
        let mut bytes = Vec::new();
        file.write_all(&mut bytes)
            .map_err(|e| Error::Encoding(error_chain(&e)))?;
        size = bytes.len();
        std::fs::write(dir.join(format!("ct{i:05}.dcm")), bytes)?;
    }
    Ok(size)
}

/// CPU time (user + system, all threads) a process has used so far, from `/proc/PID/stat`, in
/// seconds; `None` where there is no procfs. Clock ticks are Linux's fixed USER_HZ of 100.
pub fn process_cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after its closing parenthesis are
    // space-separated, utime and stime being the 12th and 13th of them.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ').skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Sends every file under `dirs` with dcmtk storescu, one association per folder, all at once;
/// returns the wall time until the last one finished.
fn run_storescu(storescu: &str, port: u16, called: &str, dirs: &[PathBuf]) -> Result<Duration> {
    let start = Instant::now();
    let mut children = Vec::with_capacity(dirs.len());
    for dir in dirs {
        let child = Process::new(storescu)
            // Debian's dcmtk keeps Nagle's algorithm on unless TCP_NODELAY=1 is in the
            // environment; without it every instance waits ~40 ms for a delayed ACK, whoever the
            // receiver is.
            .env("TCP_NODELAY", "1")
            .args(["-aet", "BENCH", "-aec", called, "+sd", "+r"])
            .arg("127.0.0.1")
            .arg(port.to_string())
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::Config(format!("cannot run {storescu}: {e}")))?;
        children.push(child);
    }
    let mut failure = None;
    for child in children {
        let output = child.wait_with_output()?;
        if !output.status.success() && failure.is_none() {
            failure = Some(
                String::from_utf8_lossy(&output.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
                    .to_string(),
            );
        }
    }
    let elapsed = start.elapsed();
    match failure {
        Some(f) => Err(Error::Network(format!("storescu failed: {f}"))),
        None => Ok(elapsed),
    }
}

/// A minimal HTTP/1.1 GET over a fresh connection, enough for local benchmarking without an HTTP
/// client dependency. Returns the status and body.
fn http_get(port: u16, path: &str) -> Result<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/dicom+json\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf)?;
    let split = memchr::memmem::find(&buf, b"\r\n\r\n")
        .ok_or_else(|| Error::Network("malformed HTTP response".into()))?;
    let head = String::from_utf8_lossy(&buf[..split]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Error::Network("malformed HTTP status line".into()))?;
    Ok((status, buf[split + 4..].to_vec()))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Times `n` QIDO-RS searches; returns each latency in ms.
fn qido_latency(port: u16, prefix: &str, n: usize) -> Result<Vec<f64>> {
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        // Alternate a keyed study search and a series search.
        let path = if i % 2 == 0 {
            format!("{prefix}/studies?PatientID=*&limit=10")
        } else {
            format!("{prefix}/series?Modality=CT")
        };
        let start = Instant::now();
        let (status, _) = http_get(port, &path)?;
        times.push(start.elapsed().as_secs_f64() * 1000.0);
        if status != 200 && status != 204 {
            return Err(Error::Network(format!("QIDO-RS {path} answered {status}")));
        }
    }
    Ok(times)
}

fn orthanc_dicomweb_plugin() -> Option<PathBuf> {
    let p = PathBuf::from("/usr/share/orthanc/plugins/libOrthancDicomWeb.so");
    p.exists().then_some(p)
}

/// A peer process, killed when dropped.
struct OrthancProcess(std::process::Child);

impl Drop for OrthancProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for_port(port: u16, timeout: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// One server's measurement in one round.
#[derive(Debug, Clone)]
struct Sample {
    seconds: f64,
    cpu_seconds: Option<f64>,
    stored: u64,
    qido_ms: Vec<f64>,
}

fn cpu_delta(pid: &str, before: Option<f64>) -> Option<f64> {
    process_cpu_seconds(pid).zip(before).map(|(b, a)| b - a)
}

/// Caravan: its SCP on a new folder archive in this process, then QIDO-RS on its router.
async fn round_caravan(options: &BenchOptions, folder: &Path, dirs: &[PathBuf]) -> Result<Sample> {
    let archive = Archive::open_folder(folder).await?;
    let scp = Scp::bind(
        "127.0.0.1:0"
            .parse()
            .map_err(|_| Error::Config("bad address".into()))?,
        archive.clone(),
        ScpConfig::default(),
    )
    .await?;
    let port = scp.local_addr().port();
    let storescu = options.storescu.clone();
    let dirs = dirs.to_vec();
    // This process's CPU during ingest is the SCP's: the bench itself only waits for storescu.
    let cpu0 = process_cpu_seconds("self");
    let elapsed =
        tokio::task::spawn_blocking(move || run_storescu(&storescu, port, "CARAVAN", &dirs))
            .await
            .map_err(|e| Error::Config(e.to_string()))??;
    let cpu = cpu_delta("self", cpu0);
    let stored = archive.count_instances().await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let http_port = listener.local_addr()?.port();
    let app = axum::Router::new().nest("/dicomweb", dicomweb::router(DicomWebState::new(archive)));
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let queries = options.queries;
    let qido = tokio::task::spawn_blocking(move || qido_latency(http_port, "/dicomweb", queries))
        .await
        .map_err(|e| Error::Config(e.to_string()))?;
    server.abort();
    scp.stop().await;
    Ok(Sample {
        seconds: elapsed.as_secs_f64(),
        cpu_seconds: cpu,
        stored,
        qido_ms: qido?,
    })
}

/// Orthanc with its own configuration and storage under `folder`.
fn round_orthanc(
    options: &BenchOptions,
    exe: &str,
    folder: &Path,
    dirs: &[PathBuf],
) -> Result<Sample> {
    let dicom_port = free_port()?;
    let http_port = free_port()?;
    let storage = folder.join("storage");
    std::fs::create_dir_all(&storage)?;
    let plugin = orthanc_dicomweb_plugin();
    let config = serde_json::json!({
        "Name": "caravan-bench",
        "StorageDirectory": storage,
        "IndexDirectory": storage,
        "DicomAet": "ORTHANC",
        "DicomPort": dicom_port,
        "HttpPort": http_port,
        "RemoteAccessAllowed": false,
        "AuthenticationEnabled": false,
        "DicomCheckCalledAet": false,
        // Orthanc fsyncs every file by default; Caravan does not (see the README's durability
        // note). --orthanc-no-sync compares like with like.
        "SyncStorageArea": !options.orthanc_no_sync,
        "Plugins": plugin.iter().collect::<Vec<_>>(),
        "DicomWeb": {"Enable": true, "Root": "/dicom-web/"},
    });
    let config_path = folder.join("orthanc.json");
    std::fs::write(&config_path, config.to_string())?;
    let child = Process::new(exe)
        // Orthanc's DICOM server is dcmtk's, which also keeps Nagle's algorithm on unless told.
        .env("TCP_NODELAY", "1")
        .arg(&config_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| Error::Config(format!("cannot start {exe}: {e}")))?;
    let pid = child.id().to_string();
    let _guard = OrthancProcess(child);
    if !wait_for_port(dicom_port, Duration::from_secs(30))
        || !wait_for_port(http_port, Duration::from_secs(30))
    {
        return Err(Error::Network("Orthanc did not start within 30 s".into()));
    }
    let cpu0 = process_cpu_seconds(&pid);
    let elapsed = run_storescu(&options.storescu, dicom_port, "ORTHANC", dirs)?;
    let cpu = cpu_delta(&pid, cpu0);
    let (_, body) = http_get(http_port, "/statistics")?;
    let stored = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("CountInstances").and_then(|c| c.as_u64()))
        .unwrap_or(0);
    let qido_ms = if plugin.is_some() {
        qido_latency(http_port, "/dicom-web", options.queries)?
    } else {
        Vec::new()
    };
    Ok(Sample {
        seconds: elapsed.as_secs_f64(),
        cpu_seconds: cpu,
        stored,
        qido_ms,
    })
}

/// dcmtk's storescp writing files only (it serves one association at a time).
fn round_storescp(
    options: &BenchOptions,
    exe: &str,
    folder: &Path,
    dirs: &[PathBuf],
) -> Result<Sample> {
    let port = free_port()?;
    std::fs::create_dir_all(folder)?;
    let child = Process::new(exe)
        .env("TCP_NODELAY", "1")
        .arg("-od")
        .arg(folder)
        .arg(port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| Error::Config(format!("cannot start {exe}: {e}")))?;
    let pid = child.id().to_string();
    let _guard = OrthancProcess(child);
    if !wait_for_port(port, Duration::from_secs(10)) {
        return Err(Error::Network("storescp did not start".into()));
    }
    let cpu0 = process_cpu_seconds(&pid);
    let elapsed = run_storescu(&options.storescu, port, "STORESCP", dirs)?;
    let cpu = cpu_delta(&pid, cpu0);
    let stored = std::fs::read_dir(folder)?.count() as u64;
    Ok(Sample {
        seconds: elapsed.as_secs_f64(),
        cpu_seconds: cpu,
        stored,
        qido_ms: Vec::new(),
    })
}

fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

fn figures(name: &str, instances: usize, samples: &[Sample]) -> Option<ServerFigures> {
    let seconds: Vec<f64> = samples.iter().map(|s| s.seconds).collect();
    let ingest = median(&seconds)?;
    let cpu: Vec<f64> = samples
        .iter()
        .filter_map(|s| s.cpu_seconds)
        .map(|c| c * 1000.0 / instances as f64)
        .collect();
    let mut qido: Vec<f64> = samples.iter().flat_map(|s| s.qido_ms.clone()).collect();
    qido.sort_by(f64::total_cmp);
    Some(ServerFigures {
        name: name.into(),
        ingest_seconds: ingest,
        instances_per_second: instances as f64 / ingest,
        rounds_seconds: seconds,
        cpu_ms_per_instance: median(&cpu),
        stored: samples.last().map(|s| s.stored).unwrap_or(0),
        qido_median_ms: (!qido.is_empty()).then(|| percentile(&qido, 0.5)),
        qido_p95_ms: (!qido.is_empty()).then(|| percentile(&qido, 0.95)),
    })
}

/// Runs the benchmark: every round sends a new series to Caravan, Orthanc and storescp, in an
/// order that rotates from round to round. Nothing is deleted until the end: on this machine's
/// ext4 (no journal) creating a file right after many deletions scans the recently freed inodes,
/// which made back-to-back runs pay up to ~0.4 ms more per file.
pub async fn bench(options: &BenchOptions) -> Result<BenchReport> {
    if options.instances == 0 {
        return Err(Error::Config("--instances must be at least 1".into()));
    }
    if options.rounds == 0 || options.associations == 0 {
        return Err(Error::Config(
            "--rounds and --associations must be at least 1".into(),
        ));
    }
    let work = tempfile::tempdir()?;
    let source = match &options.source {
        Some(p) => std::fs::read(p)?,
        None => CT_SMALL.to_vec(),
    };
    let mut size = 0;
    let (mut caravan, mut orthanc, mut storescp) = (Vec::new(), Vec::new(), Vec::new());
    let mut orthanc_error = None;
    for round in 0..options.rounds {
        let base = work.path().join(format!("round{round}"));
        let series = base.join("series");
        size = generate_series(&source, options.instances, &series)?;
        let dirs = split_into(&series, options.associations)?;
        for step in 0..3 {
            match (round + step) % 3 {
                0 => caravan.push(round_caravan(options, &base.join("caravan"), &dirs).await?),
                1 => {
                    let Some(exe) = options.orthanc.clone() else {
                        continue;
                    };
                    let (o, folder, d) = (options.clone(), base.join("orthanc"), dirs.clone());
                    let result =
                        tokio::task::spawn_blocking(move || round_orthanc(&o, &exe, &folder, &d))
                            .await
                            .map_err(|e| Error::Config(e.to_string()))?;
                    match result {
                        Ok(s) => orthanc.push(s),
                        Err(e) => orthanc_error = Some(e.to_string()),
                    }
                }
                _ => {
                    let Some(exe) = options.storescp.clone() else {
                        continue;
                    };
                    let (o, folder, d) = (options.clone(), base.join("storescp"), dirs.clone());
                    if let Ok(Ok(s)) =
                        tokio::task::spawn_blocking(move || round_storescp(&o, &exe, &folder, &d))
                            .await
                    {
                        storescp.push(s);
                    }
                }
            }
        }
    }
    let n = options.instances;
    let caravan = figures("caravan", n, &caravan)
        .ok_or_else(|| Error::Config("no Caravan round completed".into()))?;
    let orthanc_fig = figures("orthanc", n, &orthanc);
    let orthanc_note = match (&options.orthanc, &orthanc_fig, orthanc_error) {
        (None, _, _) => Some("skipped (--no-orthanc)".to_string()),
        (_, None, Some(e)) => Some(format!("not measured: {e}")),
        (_, Some(f), _) if f.qido_median_ms.is_none() && options.queries > 0 => {
            Some("DICOMweb plugin not installed: no QIDO-RS figure".to_string())
        }
        (_, _, Some(e)) => Some(format!("a round failed: {e}")),
        _ => None,
    };
    let ingest_ratio = orthanc_fig
        .as_ref()
        .map(|o| caravan.instances_per_second / o.instances_per_second);
    let ratios: Vec<f64> = orthanc_fig
        .as_ref()
        .map(|o| {
            o.rounds_seconds
                .iter()
                .zip(&caravan.rounds_seconds)
                .map(|(o, c)| o / c)
                .collect()
        })
        .unwrap_or_default();
    let ingest_ratio_range = ratios
        .iter()
        .copied()
        .reduce(f64::min)
        .zip(ratios.iter().copied().reduce(f64::max));
    let cpu_ratio = orthanc_fig
        .as_ref()
        .and_then(|o| o.cpu_ms_per_instance.zip(caravan.cpu_ms_per_instance))
        .filter(|(_, c)| *c > 0.0)
        .map(|(o, c)| o / c);
    let qido_ratio = orthanc_fig
        .as_ref()
        .and_then(|o| o.qido_median_ms.zip(caravan.qido_median_ms))
        .filter(|(_, c)| *c > 0.0)
        .map(|(o, c)| o / c);
    Ok(BenchReport {
        instances: n,
        bytes_per_instance: size,
        rounds: options.rounds,
        associations: options.associations,
        caravan,
        orthanc: orthanc_fig,
        orthanc_note,
        storescp: figures("storescp", n, &storescp),
        ingest_ratio,
        ingest_ratio_range,
        cpu_ratio,
        qido_ratio,
    })
}

/// Moves the files of `dir` into `n` sub-folders (round robin) for `n` concurrent associations.
fn split_into(dir: &Path, n: usize) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    files.sort();
    let dirs: Vec<PathBuf> = (0..n).map(|i| dir.join(format!("a{i}"))).collect();
    for d in &dirs {
        std::fs::create_dir_all(d)?;
    }
    for (i, f) in files.iter().enumerate() {
        if let Some(name) = f.file_name() {
            std::fs::rename(f, dirs[i % n].join(name))?;
        }
    }
    Ok(dirs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(subcommand)]
        command: Command,
    }

    #[test]
    fn bench_flags_parse() {
        let cli = Cli::try_parse_from([
            "imaging",
            "bench",
            "--instances",
            "10",
            "--no-orthanc",
            "--json",
        ])
        .expect("parse");
        match cli.command {
            Command::Bench {
                instances,
                no_orthanc,
                json,
                ..
            } => {
                assert_eq!(instances, 10);
                assert!(no_orthanc);
                assert!(json);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(Cli::try_parse_from(["imaging", "bench", "--instances", "x"]).is_err());
    }

    #[test]
    fn destinations_parse_and_reject_garbage() {
        let m = parse_destinations(&["STORE=127.0.0.1:104".into()]).expect("ok");
        assert_eq!(m["STORE"], "127.0.0.1:104");
        assert!(parse_destinations(&["nohost".into()]).is_err());
        assert!(parse_destinations(&["=1.2.3.4:5".into()]).is_err());
        assert!(parse_destinations(&["AN_AE_TITLE_TOO_LONG=h:1".into()]).is_err());
    }

    #[test]
    fn generated_series_has_new_uids_and_keeps_pixels() {
        let dir = tempfile::tempdir().expect("tmp");
        generate_series(CT_SMALL, 3, dir.path()).expect("generate");
        let mut sops = std::collections::HashSet::new();
        let mut studies = std::collections::HashSet::new();
        for entry in std::fs::read_dir(dir.path()).expect("dir") {
            let bytes = std::fs::read(entry.expect("entry").path()).expect("read");
            let parsed = crate::archive::parse_instance(bytes.into()).expect("valid instance");
            sops.insert(parsed.attrs.sop_uid);
            studies.insert(parsed.attrs.study_uid);
        }
        assert_eq!(sops.len(), 3);
        assert_eq!(studies.len(), 1);
    }
}
