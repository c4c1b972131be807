//! The network side of the binary: federation flags of `serve`, `caravan demo --network` (three nodes in this
//! process) and `caravan net soak` (N node processes, M envelopes, a receiver killed mid-run).

use anyhow::{bail, Context, Result};
use caravan_federation::directory::Level;
use caravan_server::federation::{Federation, FederationConfig};
use caravan_server::network::{self, DemoNode, NodeSpec, Pace};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Membership of a network (all optional: without `--node-id` the node is standalone).
#[derive(Args, Clone, Debug)]
pub struct FedArgs {
    /// This node's id in the network directory (turns federation on).
    #[arg(long, env = "CARAVAN_NODE_ID")]
    pub node_id: Option<String>,
    /// Keyring file (`caravan keys generate`); default DATA/federation/keyring.json.
    #[arg(long, env = "CARAVAN_KEYRING")]
    pub keyring: Option<PathBuf>,
    /// Signed directory file (`caravan directory sign`); re-read every minute.
    #[arg(long, env = "CARAVAN_DIRECTORY")]
    pub directory: Option<PathBuf>,
    /// Pinned anchor public key (base64url) or a file holding one; repeat for several. A base64url key may
    /// begin with '-' (one in 64 does): it is taken as the value, not as an option.
    #[arg(
        long = "anchor",
        env = "CARAVAN_ANCHORS",
        value_delimiter = ',',
        allow_hyphen_values = true
    )]
    pub anchors: Vec<String>,
    /// Anchor signatures required on the directory.
    #[arg(long, default_value_t = 1)]
    pub anchor_threshold: usize,
    /// How long an expert node may keep the case packets this node sends, in days (this country's rule).
    #[arg(long, default_value_t = 90)]
    pub retention_days: u32,
    /// How often this node publishes its expert catalogue, in seconds.
    #[arg(long, default_value_t = 900)]
    pub catalogue_seconds: u64,
    /// First retry delay of an undelivered envelope, in milliseconds (doubles up to --retry-max-ms).
    #[arg(long, default_value_t = 1000)]
    pub retry_base_ms: u64,
    /// Longest retry delay, in milliseconds.
    #[arg(long, default_value_t = 3_600_000)]
    pub retry_max_ms: u64,
}

impl FedArgs {
    /// The federation of a node started with these flags, if any.
    pub fn load(&self, data: &Path) -> Result<Option<Arc<Federation>>> {
        let Some(id) = &self.node_id else {
            return Ok(None);
        };
        let node_id = caravan_federation::NodeId::new(id.as_str())?;
        let Some(directory) = self.directory.clone() else {
            bail!("--node-id needs --directory (the signed member directory)");
        };
        if self.anchors.is_empty() {
            bail!("--node-id needs at least one --anchor (the directory's pinned anchor key)");
        }
        let mut anchors = Vec::new();
        for a in &self.anchors {
            anchors.extend(
                caravan_federation::keys::load_public_keys(a)
                    .with_context(|| format!("anchor {a}"))?,
            );
        }
        let keyring = self
            .keyring
            .clone()
            .unwrap_or_else(|| data.join("federation").join("keyring.json"));
        let mut cfg = FederationConfig::new(node_id, keyring, directory, anchors);
        cfg.threshold = self.anchor_threshold;
        cfg.retention_days = self.retention_days;
        cfg.catalogue_every = Duration::from_secs(self.catalogue_seconds.max(1));
        cfg.delivery.base_delay = Duration::from_millis(self.retry_base_ms.max(1));
        cfg.delivery.max_delay = Duration::from_millis(self.retry_max_ms.max(self.retry_base_ms));
        Ok(Some(Arc::new(Federation::load(cfg)?)))
    }
}

/// HTTPS and mutual TLS between nodes (all optional: without `--tls-cert` the node speaks plain HTTP).
#[derive(Args, Clone, Debug)]
pub struct TlsArgs {
    /// Serve HTTPS with this certificate chain (PEM; `caravan tls generate` mints a self-signed one). Also the
    /// client certificate this node presents to its federation peers.
    #[arg(long, env = "CARAVAN_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM, PKCS#8 or SEC1).
    #[arg(long, env = "CARAVAN_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require mutual TLS from federation peers: the inbox takes only requests over a connection whose client
    /// certificate is pinned in the directory for the signing node (or, for a member without pins, issued by
    /// --federation-ca for its host). Browsers and API clients need no certificate.
    #[arg(long, env = "CARAVAN_FEDERATION_MTLS", requires = "tls_cert")]
    pub federation_mtls: bool,
    /// CA bundle (PEM) trusted for peers' certificates in addition to the directory's pins.
    #[arg(long, env = "CARAVAN_FEDERATION_CA", requires = "tls_cert")]
    pub federation_ca: Option<PathBuf>,
}

impl TlsArgs {
    /// The node's TLS settings, if it serves TLS.
    pub fn load(&self, federated: bool) -> Result<Option<Arc<caravan_server::tls::NodeTls>>> {
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            return Ok(None);
        };
        if self.federation_mtls && !federated && self.federation_ca.is_none() {
            bail!(
                "--federation-mtls needs federation (--node-id: peers are pinned in the directory) or \
                 --federation-ca"
            );
        }
        let tls = caravan_server::tls::NodeTls::load(
            cert,
            key,
            self.federation_mtls,
            self.federation_ca.as_deref(),
        )?;
        tracing::info!(spki_sha256 = %tls.spki_pin(), mtls = self.federation_mtls, "TLS identity loaded");
        Ok(Some(Arc::new(tls)))
    }
}

#[derive(Subcommand)]
pub enum NetCommand {
    /// Start N nodes (separate processes on 127.0.0.1), send M net.ping envelopes around the ring, optionally
    /// SIGKILL and restart a receiver mid-run, and print {"sent","delivered","lost","duplicated","seconds"}.
    /// Exits non-zero unless nothing was lost or duplicated.
    Soak {
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        #[arg(long, default_value_t = 10_000)]
        messages: u32,
        /// SIGKILL the second node (a receiver) once a third of its share arrived, and restart it.
        #[arg(long)]
        kill_receiver: bool,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 300)]
        timeout_seconds: u64,
        /// Keep the nodes' folders (databases, logs) instead of deleting them.
        #[arg(long)]
        keep: Option<PathBuf>,
    },
}

/// `caravan demo --network`: the three nodes of [`DemoNode`] in this process, on `listen`'s port and the two
/// after it, with a cross-border case already answered and another waiting for the expert.
pub async fn demo_network(listen: std::net::SocketAddr, data: &Path, tls: bool) -> Result<()> {
    let mut listeners = Vec::new();
    for i in 0..3u16 {
        let mut addr = listen;
        if addr.port() != 0 {
            addr.set_port(addr.port() + i);
        }
        listeners.push(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr}"))?,
        );
    }
    let config = caravan_server::NodeConfig {
        secure_cookies: false,
        ..caravan_server::NodeConfig::default()
    };
    let dir = data.join("network");
    let nodes = network::start_demo_with(
        &dir,
        listeners,
        config,
        Pace::DEMO,
        caravan_fhir::routes,
        tls,
    )
    .await
    .map_err(anyhow::Error::msg)?;
    for n in &nodes[1..] {
        network::wait_for_catalogue(n, DemoNode::Center, Duration::from_secs(30))
            .await
            .map_err(anyhow::Error::msg)?;
    }
    network::demo_cases(&nodes)
        .await
        .map_err(anyhow::Error::msg)?;
    // A measles outbreak reported at the center: its alert crosses to Kashgar's node (surveillance pages).
    caravan_server::surveil::demo::network_outbreak(&nodes)
        .await
        .map_err(anyhow::Error::msg)?;
    println!(
        "Caravan demo network: three nodes, each with its own database under {}",
        dir.display()
    );
    for n in &nodes {
        let spec = n.node.spec(n.base.clone());
        println!(
            "  {:<13} {} ({}) {}/",
            n.node.id(),
            spec.display_name,
            spec.country,
            n.base
        );
        for (user, what) in n.node.logins() {
            println!("      {user:<16} {what}");
        }
    }
    if tls {
        println!(
            "HTTPS with mutual TLS between the nodes; each node's self-signed certificate (pinned in the \
             directory) is DATA/network/<node>/tls.crt."
        );
    }
    println!(
        "Password for all: {}. A case from Kashgar was answered by the center; one from Samarkand waits for \
         pulm.petrova at the center.",
        caravan_server::demo::DEMO_PASSWORD
    );
    let _ = tokio::signal::ctrl_c().await;
    Ok(())
}

/// A listener on a free port for a child node, which binds it once this one is dropped. The port is taken
/// below Linux's ephemeral range (32768-60999 by default): a port from `127.0.0.1:0` lies in that range, where any
/// outgoing connection of the machine may take it between its release and the child's bind.
fn reserve_port(salt: u32) -> Result<std::net::TcpListener> {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
        ^ std::process::id().rotate_left(16)
        ^ salt.wrapping_mul(2_654_435_761);
    for i in 0..500u32 {
        let port = 20_000 + (seed.wrapping_add(i.wrapping_mul(7_919)) % 12_000) as u16;
        if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            return Ok(l);
        }
    }
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?)
}

/// The last lines of a node's log, for an error that says why it stopped.
fn log_tail(path: &std::path::Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

struct SoakNode {
    id: String,
    addr: std::net::SocketAddr,
    data: PathBuf,
    args: Vec<String>,
    token: String,
    child: Option<tokio::process::Child>,
}

impl SoakNode {
    fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    async fn spawn(&mut self) -> Result<()> {
        let exe = std::env::current_exe()?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data.join("node.log"))?;
        let child = tokio::process::Command::new(exe)
            .args(&self.args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start node {}", self.id))?;
        self.child = Some(child);
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = http.get(format!("{}/healthz", self.base())).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            let exited = match self.child.as_mut() {
                Some(c) => c.try_wait()?,
                None => None,
            };
            if exited.is_some() || Instant::now() > deadline {
                let how = exited.map_or_else(
                    || "is not answering after 30 s".to_owned(),
                    |status| format!("exited ({status})"),
                );
                bail!(
                    "node {} on {} {how}; the end of its log:\n{}",
                    self.id,
                    self.addr,
                    log_tail(&self.data.join("node.log"), 20)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn kill(&mut self) -> Result<()> {
        if let Some(mut c) = self.child.take() {
            c.kill().await?; // SIGKILL: no chance to flush or say goodbye
        }
        Ok(())
    }

    async fn counts(&self, http: &reqwest::Client) -> Result<Value> {
        let r = http
            .get(format!("{}/api/v1/federation", self.base()))
            .bearer_auth(&self.token)
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("{}: status {}", self.id, r.status());
        }
        Ok(r.json::<Value>().await?["counts"].clone())
    }
}

/// Seed a soak node's database: one institution and an administrator with an API token.
async fn seed_admin(data: &Path, country: &str) -> Result<String> {
    use caravan_domain::*;
    let store = caravan_server::open_store(&data.join("caravan.sqlite").display().to_string())
        .await
        .map_err(anyhow::Error::msg)?;
    let inst = Institution {
        id: InstitutionId::new(),
        name: "Soak hospital".into(),
        level: InstitutionLevel::Hospital,
        country: country.parse()?,
        parent: None,
        timezone: "UTC".into(),
    };
    store.insert_institution(&inst, vec![]).await?;
    let admin = User {
        id: UserId::new(),
        username: "admin".into(),
        display_name: "Soak administrator".into(),
        institution_id: inst.id,
        role: Role::Admin,
        patient_id: None,
        profile: None,
        locale: "en".into(),
        active: true,
    };
    store.insert_user(&admin, None, vec![]).await?;
    let token = caravan_server::auth::random_token();
    store
        .create_api_token(
            &caravan_server::auth::token_hash(&token),
            admin.id,
            "soak",
            vec![],
        )
        .await?;
    Ok(token)
}

/// `caravan net soak`.
pub async fn soak(
    nodes: usize,
    messages: u32,
    kill_receiver: bool,
    timeout: Duration,
    keep: Option<PathBuf>,
) -> Result<bool> {
    if !(2..=20).contains(&nodes) {
        bail!("--nodes must be between 2 and 20");
    }
    if messages == 0 {
        bail!("--messages must be at least 1");
    }
    let temp = tempfile::tempdir()?;
    let root = keep.clone().unwrap_or_else(|| temp.path().to_path_buf());
    std::fs::create_dir_all(&root)?;
    let countries = ["KZ", "CN", "UZ", "KG", "TJ", "MN", "RU", "TR"];
    // Reserve free ports (all held until each is chosen, so none is chosen twice), release them for the
    // children to bind.
    let held = (0..nodes)
        .map(|i| reserve_port(i as u32))
        .collect::<Result<Vec<_>>>()?;
    let addrs = held
        .iter()
        .map(|l| l.local_addr())
        .collect::<std::io::Result<Vec<_>>>()?;
    drop(held);
    let specs: Vec<NodeSpec> = (0..nodes)
        .map(|i| NodeSpec {
            id: format!("node-{}", i + 1),
            display_name: format!("Soak node {}", i + 1),
            level: Level::Hospital,
            country: countries[i % countries.len()].into(),
            base_url: format!("http://{}", addrs[i]),
            tls_spki_sha256: Vec::new(),
        })
        .collect();
    let files = network::create(&root, &specs).map_err(anyhow::Error::msg)?;
    let anchor = caravan_federation::keys::b64url(files.anchor.verifying_key().as_bytes());
    let mut ring = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let data = root.join(&spec.id);
        let token = seed_admin(&data, &spec.country).await?;
        let args = vec![
            "serve".into(),
            "--listen".into(),
            addrs[i].to_string(),
            "--data".into(),
            data.display().to_string(),
            "--node-id".into(),
            spec.id.clone(),
            "--keyring".into(),
            files.keyrings[i].display().to_string(),
            "--directory".into(),
            files.directory.display().to_string(),
            "--anchor".into(),
            anchor.clone(),
            "--retry-base-ms".into(),
            "100".into(),
            "--retry-max-ms".into(),
            "1000".into(),
            "--catalogue-seconds".into(),
            "3600".into(),
        ];
        ring.push(SoakNode {
            id: spec.id.clone(),
            addr: addrs[i],
            data,
            args,
            token,
            child: None,
        });
    }
    for n in &mut ring {
        n.spawn().await?;
    }
    let http = reqwest::Client::new();
    // Each node sends its share to the next one around the ring.
    let share =
        |i: usize| messages / nodes as u32 + u32::from((i as u32) < messages % nodes as u32);
    let started = Instant::now();
    for i in 0..nodes {
        let to = &ring[(i + 1) % nodes].id;
        let mut left = share(i);
        while left > 0 {
            let batch = left.min(2_000);
            let r = http
                .post(format!("{}/api/v1/federation/pings", ring[i].base()))
                .bearer_auth(&ring[i].token)
                .json(&json!({ "to": to, "count": batch }))
                .send()
                .await?;
            if !r.status().is_success() {
                bail!("{}: enqueue refused: {}", ring[i].id, r.text().await?);
            }
            left -= batch;
        }
    }
    let enqueued = started.elapsed();
    // Baselines: the catalogue envelopes are not pings; only pings are counted.
    let mut killed = !kill_receiver;
    let deadline = Instant::now() + timeout;
    let (delivered, duplicated, dead) = loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if !killed {
            if let Ok(c) = ring[1].counts(&http).await {
                if c["distinct_pings"].as_u64().unwrap_or(0) >= u64::from(share(0)) / 3 {
                    ring[1].kill().await?;
                    tracing::info!(node = %ring[1].id, "receiver killed");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    ring[1].spawn().await?;
                    killed = true;
                }
            }
            continue;
        }
        let mut delivered = 0u64;
        let mut duplicated = 0u64;
        let mut pending = 0u64;
        let mut dead = 0u64;
        let mut ok = true;
        for n in &ring {
            match n.counts(&http).await {
                Ok(c) => {
                    let pings = c["pings"].as_u64().unwrap_or(0);
                    let distinct = c["distinct_pings"].as_u64().unwrap_or(0);
                    delivered += distinct;
                    duplicated += pings - distinct.min(pings);
                    pending += c["pending"].as_u64().unwrap_or(0);
                    dead += c["dead"].as_u64().unwrap_or(0);
                }
                Err(_) => ok = false,
            }
        }
        if ok && pending == 0 && delivered + dead >= u64::from(messages) {
            break (delivered, duplicated, dead);
        }
        if Instant::now() > deadline {
            break (delivered, duplicated, dead);
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    for n in &mut ring {
        n.kill().await?;
    }
    let lost = u64::from(messages).saturating_sub(delivered);
    println!(
        "{}",
        json!({
            "nodes": nodes,
            "sent": messages,
            "delivered": delivered,
            "lost": lost,
            "duplicated": duplicated,
            "dead_letters": dead,
            "receiver_killed": kill_receiver,
            "enqueue_seconds": (enqueued.as_secs_f64() * 1000.0).round() / 1000.0,
            "seconds": (seconds * 1000.0).round() / 1000.0,
            "per_second": (delivered as f64 / seconds).round(),
        })
    );
    if keep.is_none() {
        drop(temp);
    }
    Ok(lost == 0 && duplicated == 0)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    #[derive(Parser)]
    struct Serve {
        #[command(flatten)]
        fed: super::FedArgs,
    }

    /// A key whose base64url begins with '-' made `net soak` fail about once in 64 runs ("unexpected argument
    /// '-0' found"); it is a value like any other.
    #[test]
    fn an_anchor_key_may_begin_with_a_hyphen() {
        let s = Serve::try_parse_from(["serve", "--anchor", "-0Ab_c", "--anchor", "xyz"]).unwrap();
        assert_eq!(s.fed.anchors, ["-0Ab_c", "xyz"]);
    }
}
