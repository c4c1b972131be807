//! The `imaging` subcommands: `serve` (a standalone SCP + DICOMweb on a data folder) and `bench`
//! (C-STORE ingest and QIDO-RS latency against Orthanc, side by side).

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
            };
            let report = runtime.block_on(bench(&options))?;
            report.write(out, json)
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
}

/// One server's figures.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ServerFigures {
    pub name: String,
    pub ingest_seconds: f64,
    pub instances_per_second: f64,
    pub stored: u64,
    pub qido_median_ms: Option<f64>,
    pub qido_p95_ms: Option<f64>,
}

/// The benchmark's result.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchReport {
    pub instances: usize,
    pub bytes_per_instance: usize,
    pub caravan: ServerFigures,
    pub orthanc: Option<ServerFigures>,
    pub orthanc_note: Option<String>,
    /// dcmtk storescp writing files only: the floor set by the sender and the machine.
    pub storescp: Option<ServerFigures>,
    /// Caravan instances/s divided by Orthanc's.
    pub ingest_ratio: Option<f64>,
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
            "C-STORE ingest of {} CT instances ({} bytes each) with dcmtk storescu",
            self.instances, self.bytes_per_instance
        )?;
        let line = |f: &ServerFigures| {
            format!(
                "  {:<8} {:>8.2} s  {:>8.1} instances/s  stored {}{}",
                f.name,
                f.ingest_seconds,
                f.instances_per_second,
                f.stored,
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
            writeln!(out, "ingest ratio caravan/orthanc: {r:.2}x (goal >= 3x)")?;
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

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Sends every file of `dir` with dcmtk storescu; returns the wall time.
fn run_storescu(storescu: &str, port: u16, called: &str, dir: &Path) -> Result<Duration> {
    let start = Instant::now();
    let output = Process::new(storescu)
        // Debian's dcmtk keeps Nagle's algorithm on unless TCP_NODELAY=1 is in the environment;
        // without it every instance waits ~40 ms for a delayed ACK, whoever the receiver is.
        .env("TCP_NODELAY", "1")
        .args(["-aet", "BENCH", "-aec", called, "+sd", "+r"])
        .arg("127.0.0.1")
        .arg(port.to_string())
        .arg(dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::Config(format!("cannot run {storescu}: {e}")))?;
    let elapsed = start.elapsed();
    if !output.status.success() {
        return Err(Error::Network(format!(
            "storescu failed: {}",
            String::from_utf8_lossy(&output.stderr)
                .lines()
                .last()
                .unwrap_or("")
        )));
    }
    Ok(elapsed)
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

/// Times `n` QIDO-RS study searches; returns (median, p95) in ms.
fn qido_latency(port: u16, prefix: &str, n: usize) -> Result<(f64, f64)> {
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        // Alternate a keyed study search and an instance search within the study.
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
    times.sort_by(f64::total_cmp);
    Ok((percentile(&times, 0.5), percentile(&times, 0.95)))
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

fn bench_orthanc(
    options: &BenchOptions,
    exe: &str,
    work: &Path,
    series_dir: &Path,
) -> Result<ServerFigures> {
    let dicom_port = free_port()?;
    let http_port = free_port()?;
    let storage = work.join("orthanc-storage");
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
        // Orthanc fsyncs every file by default; Caravan's object store does not (the index is
        // WAL-synced). --orthanc-no-sync compares like with like.
        "SyncStorageArea": !options.orthanc_no_sync,
        "Plugins": plugin.iter().collect::<Vec<_>>(),
        "DicomWeb": {"Enable": true, "Root": "/dicom-web/"},
    });
    let config_path = work.join("orthanc.json");
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
    let _guard = OrthancProcess(child);
    if !wait_for_port(dicom_port, Duration::from_secs(30))
        || !wait_for_port(http_port, Duration::from_secs(30))
    {
        return Err(Error::Network("Orthanc did not start within 30 s".into()));
    }
    let elapsed = run_storescu(&options.storescu, dicom_port, "ORTHANC", series_dir)?;
    let (_, body) = http_get(http_port, "/statistics")?;
    let stored = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("CountInstances").and_then(|c| c.as_u64()))
        .unwrap_or(0);
    let qido = if plugin.is_some() && options.queries > 0 {
        Some(qido_latency(http_port, "/dicom-web", options.queries)?)
    } else {
        None
    };
    Ok(ServerFigures {
        name: "orthanc".into(),
        ingest_seconds: elapsed.as_secs_f64(),
        instances_per_second: options.instances as f64 / elapsed.as_secs_f64(),
        stored,
        qido_median_ms: qido.map(|q| q.0),
        qido_p95_ms: qido.map(|q| q.1),
    })
}

/// Times dcmtk's storescp receiving the series (files only).
fn bench_storescp(
    options: &BenchOptions,
    exe: &str,
    work: &Path,
    series_dir: &Path,
) -> Result<ServerFigures> {
    let port = free_port()?;
    let out = work.join("storescp-out");
    std::fs::create_dir_all(&out)?;
    let child = Process::new(exe)
        .env("TCP_NODELAY", "1")
        .arg("-od")
        .arg(&out)
        .arg(port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| Error::Config(format!("cannot start {exe}: {e}")))?;
    let _guard = OrthancProcess(child);
    if !wait_for_port(port, Duration::from_secs(10)) {
        return Err(Error::Network("storescp did not start".into()));
    }
    let elapsed = run_storescu(&options.storescu, port, "STORESCP", series_dir)?;
    let stored = std::fs::read_dir(&out)?.count() as u64;
    Ok(ServerFigures {
        name: "storescp".into(),
        ingest_seconds: elapsed.as_secs_f64(),
        instances_per_second: options.instances as f64 / elapsed.as_secs_f64(),
        stored,
        qido_median_ms: None,
        qido_p95_ms: None,
    })
}

/// Runs the benchmark.
pub async fn bench(options: &BenchOptions) -> Result<BenchReport> {
    if options.instances == 0 {
        return Err(Error::Config("--instances must be at least 1".into()));
    }
    let work = tempfile::tempdir()?;
    let source = match &options.source {
        Some(p) => std::fs::read(p)?,
        None => CT_SMALL.to_vec(),
    };
    let series_dir = work.path().join("series");
    let size = generate_series(&source, options.instances, &series_dir)?;

    // Caravan: SCP on a folder archive, DICOMweb on an ephemeral port.
    let archive = Archive::open_folder(&work.path().join("caravan")).await?;
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
    let dir = series_dir.clone();
    let elapsed =
        tokio::task::spawn_blocking(move || run_storescu(&storescu, port, "CARAVAN", &dir))
            .await
            .map_err(|e| Error::Config(e.to_string()))??;
    let stored = archive.count_instances().await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let http_port = listener.local_addr()?.port();
    let app = axum::Router::new().nest("/dicomweb", dicomweb::router(DicomWebState::new(archive)));
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let queries = options.queries;
    let qido = if queries > 0 {
        Some(
            tokio::task::spawn_blocking(move || qido_latency(http_port, "/dicomweb", queries))
                .await
                .map_err(|e| Error::Config(e.to_string()))??,
        )
    } else {
        None
    };
    server.abort();
    scp.stop().await;
    let caravan = ServerFigures {
        name: "caravan".into(),
        ingest_seconds: elapsed.as_secs_f64(),
        instances_per_second: options.instances as f64 / elapsed.as_secs_f64(),
        stored,
        qido_median_ms: qido.map(|q| q.0),
        qido_p95_ms: qido.map(|q| q.1),
    };

    let (orthanc, orthanc_note) = match &options.orthanc {
        None => (None, Some("skipped (--no-orthanc)".to_string())),
        Some(exe) => {
            let options = options.clone();
            let exe = exe.clone();
            let work_path = work.path().to_path_buf();
            let result = tokio::task::spawn_blocking(move || {
                bench_orthanc(&options, &exe, &work_path, &series_dir)
            })
            .await
            .map_err(|e| Error::Config(e.to_string()))?;
            match result {
                Ok(f) => {
                    let note = f
                        .qido_median_ms
                        .is_none()
                        .then(|| "DICOMweb plugin not installed: no QIDO-RS figure".to_string());
                    (Some(f), note)
                }
                Err(e) => (None, Some(format!("not measured: {e}"))),
            }
        }
    };
    let storescp = match &options.storescp {
        Some(exe) => {
            let (options, exe, work_path, dir) = (
                options.clone(),
                exe.clone(),
                work.path().to_path_buf(),
                work.path().join("series"),
            );
            tokio::task::spawn_blocking(move || bench_storescp(&options, &exe, &work_path, &dir))
                .await
                .map_err(|e| Error::Config(e.to_string()))?
                .ok()
        }
        None => None,
    };
    let ingest_ratio = orthanc
        .as_ref()
        .map(|o| caravan.instances_per_second / o.instances_per_second);
    let qido_ratio =
        orthanc
            .as_ref()
            .and_then(|o| match (o.qido_median_ms, caravan.qido_median_ms) {
                (Some(o), Some(c)) if c > 0.0 => Some(o / c),
                _ => None,
            });
    Ok(BenchReport {
        instances: options.instances,
        bytes_per_instance: size,
        caravan,
        orthanc,
        orthanc_note,
        storescp,
        ingest_ratio,
        qido_ratio,
    })
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
