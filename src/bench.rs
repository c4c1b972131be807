//! `caravan bench`: measure a real node (release build, SQLite, loopback HTTP) under load.
//!
//! The node runs in this process on 127.0.0.1:0 with a fresh temporary data folder and the demo seed; the load
//! generator is an HTTP client in the same process, so both share the machine's cores as they would with wrk.

use anyhow::{anyhow, Context, Result};
use caravan_server::{demo, AppState, Blobs, NodeConfig};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct BenchNode {
    base: String,
    _dir: tempfile::TempDir,
    tokens: std::collections::HashMap<String, String>,
}

async fn start_node() -> Result<BenchNode> {
    let dir = tempfile::tempdir()?;
    let store =
        caravan_server::open_store(&dir.path().join("caravan.sqlite").display().to_string())
            .await
            .map_err(|e| anyhow!(e))?;
    let config = NodeConfig {
        secure_cookies: false,
        ..NodeConfig::default()
    };
    demo::seed(store.as_ref(), &config.sla).await?;
    let mut tokens = std::collections::HashMap::new();
    for name in ["dr.aliyev", "cardio.nurlanov", "cardio.li", "coordinator"] {
        let (u, _) = store.get_user_credentials(name).await?;
        let token = caravan_server::auth::random_token();
        store
            .create_api_token(
                &caravan_server::auth::token_hash(&token),
                u.id,
                "bench",
                vec![],
            )
            .await?;
        tokens.insert(u.id.to_string(), token.clone());
        tokens.insert(name.to_owned(), token);
    }
    let blobs =
        Blobs::open(&dir.path().join("blobs").display().to_string()).map_err(|e| anyhow!(e))?;
    let state = AppState::new(store, blobs, config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(caravan_server::serve(
        listener,
        state,
        std::future::pending(),
    ));
    Ok(BenchNode {
        base,
        _dir: dir,
        tokens,
    })
}

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: &str,
    body: Option<Value>,
) -> Result<Value> {
    let mut req = http.request(method, url).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await?;
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        return Err(anyhow!("HTTP {status}: {v}"));
    }
    Ok(v)
}

/// Patients with consent, for the referrer.
async fn patients(node: &BenchNode, http: &reqwest::Client, n: usize) -> Result<Vec<String>> {
    let t = &node.tokens["dr.aliyev"];
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let p = call(http, reqwest::Method::POST, format!("{}/api/v1/patients", node.base), t, Some(json!({ "given_name": "Bench", "family_name": format!("P{i}"), "birth_date": "1970-01-01", "sex": "other" }))).await?;
        let id = p["id"].as_str().context("patient id")?.to_owned();
        call(
            http,
            reqwest::Method::POST,
            format!("{}/api/v1/patients/{id}/consents", node.base),
            t,
            Some(json!({ "scope": "consultation", "granted": true })),
        )
        .await?;
        out.push(id);
    }
    Ok(out)
}

/// One whole consultation: create+submit (routed) → accept → report → acknowledge → outcome.
async fn workflow(node: &BenchNode, http: &reqwest::Client, patient: &str) -> Result<()> {
    let referrer = &node.tokens["dr.aliyev"];
    let base = &node.base;
    let c = call(http, reqwest::Method::POST, format!("{base}/api/v1/consultations"), referrer, Some(json!({ "patient_id": patient, "question": "bench", "specialty": "cardiology", "urgency": "urgent", "languages": ["ru"], "submit": true }))).await?;
    let id = c["id"].as_str().context("id")?;
    let assignee = c["assigned_to"].as_str().context("routed")?;
    let consultant = node.tokens.get(assignee).context("consultant token")?;
    let ev = format!("{base}/api/v1/consultations/{id}/events");
    call(
        http,
        reqwest::Method::POST,
        ev.clone(),
        consultant,
        Some(json!({ "type": "accept" })),
    )
    .await?;
    call(
        http,
        reqwest::Method::POST,
        ev.clone(),
        consultant,
        Some(
            json!({ "type": "report", "findings": "f", "impression": "i", "recommendations": "r" }),
        ),
    )
    .await?;
    call(
        http,
        reqwest::Method::POST,
        ev.clone(),
        referrer,
        Some(json!({ "type": "acknowledge" })),
    )
    .await?;
    call(
        http,
        reqwest::Method::POST,
        ev,
        referrer,
        Some(json!({ "type": "record_outcome", "status": "improved" })),
    )
    .await?;
    Ok(())
}

pub async fn workflows(total: usize, concurrency: usize) -> Result<()> {
    let node = start_node().await?;
    let http = reqwest::Client::new();
    let pats = Arc::new(patients(&node, &http, concurrency.max(1)).await?);
    let node = Arc::new(node);
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = vec![];
    for w in 0..concurrency.max(1) {
        let (node, http, pats, next) = (node.clone(), http.clone(), pats.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < total as u64 {
                workflow(&node, &http, &pats[w]).await?;
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({ "bench": "workflow", "backend": "sqlite", "workflows": total, "concurrency": concurrency, "http_requests": total * 5, "seconds": secs, "workflows_per_second": total as f64 / secs, "goal_per_second": 500 })
    );
    Ok(())
}

pub async fn mixed(seconds: u64, concurrency: usize) -> Result<()> {
    let node = start_node().await?;
    let http = reqwest::Client::new();
    let pats = patients(&node, &http, 20).await?;
    // A working set of consultations to read and write on.
    let mut cases = vec![];
    for p in &pats {
        let c = call(&http, reqwest::Method::POST, format!("{}/api/v1/consultations", node.base), &node.tokens["dr.aliyev"], Some(json!({ "patient_id": p, "question": "load", "specialty": "cardiology", "urgency": "routine", "submit": true }))).await?;
        cases.push(c["id"].as_str().context("id")?.to_owned());
    }
    let node = Arc::new(node);
    let (pats, cases) = (Arc::new(pats), Arc::new(cases));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = vec![];
    for w in 0..concurrency.max(1) {
        let (node, http, pats, cases) = (node.clone(), http.clone(), pats.clone(), cases.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(100_000);
            let (mut reads, mut writes, mut errors) = (0u64, 0u64, 0u64);
            let t = node.tokens["dr.aliyev"].clone();
            let mut i = w;
            while Instant::now() < deadline {
                i = i.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                let case = &cases[i % cases.len()];
                let r = (i >> 8) % 10;
                let began = Instant::now();
                let res = match r {
                    // 70 % reads: a case page's data, the open list, a patient.
                    0..=3 => call(&http, reqwest::Method::GET, format!("{}/api/v1/consultations/{case}", node.base), &t, None).await,
                    4 | 5 => call(&http, reqwest::Method::GET, format!("{}/api/v1/consultations?state=assigned,in_progress&limit=50", node.base), &t, None).await,
                    6 => call(&http, reqwest::Method::GET, format!("{}/api/v1/patients/{}", node.base, pats[i % pats.len()]), &t, None).await,
                    // 30 % writes: thread messages and patient registrations.
                    7 | 8 => call(&http, reqwest::Method::POST, format!("{}/api/v1/consultations/{case}/messages", node.base), &t, Some(json!({ "body": "load test message" }))).await,
                    _ => call(&http, reqwest::Method::POST, format!("{}/api/v1/patients", node.base), &t, Some(json!({ "given_name": "Load", "family_name": "Test", "birth_date": "1980-01-01", "sex": "other" }))).await,
                };
                lat.push(began.elapsed());
                match (res.is_ok(), r <= 6) {
                    (false, _) => errors += 1,
                    (true, true) => reads += 1,
                    (true, false) => writes += 1,
                }
            }
            (lat, reads, writes, errors)
        }));
    }
    let mut lat = vec![];
    let (mut reads, mut writes, mut errors) = (0, 0, 0);
    for t in tasks {
        let (l, r, w, e) = t.await?;
        lat.extend(l);
        reads += r;
        writes += w;
        errors += e;
    }
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(0.0)
    };
    let total = reads + writes;
    println!(
        "{}",
        json!({ "bench": "mixed-api", "backend": "sqlite", "seconds": seconds, "concurrency": concurrency, "requests": total, "reads": reads, "writes": writes, "errors": errors,
                "requests_per_second": total as f64 / seconds as f64, "p50_ms": pct(0.50), "p99_ms": pct(0.99), "max_ms": pct(1.0), "goal": "2500 req/s with p99 < 50 ms" })
    );
    if errors > 0 {
        return Err(anyhow!("{errors} requests failed"));
    }
    Ok(())
}
