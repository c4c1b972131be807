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
    let cpu_before = process_cpu_seconds();
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
        json!({ "bench": "workflow", "backend": "sqlite", "workflows": total, "concurrency": concurrency, "http_requests": total * 5, "seconds": secs, "workflows_per_second": total as f64 / secs,
                "cpu_ms_per_workflow_node_and_client": process_cpu_seconds().zip(cpu_before).map(|(a, b)| (a - b) * 1000.0 / total.max(1) as f64),
                "goal_per_second": 500 })
    );
    Ok(())
}

pub async fn mixed(seconds: u64, concurrency: usize, cases: usize, client: &str) -> Result<()> {
    if cases == 0 {
        return Err(anyhow!("--cases must be at least 1"));
    }
    let node = start_node().await?;
    let http = reqwest::Client::new();
    let pats = patients(&node, &http, 20).await?;
    // A working set of consultations to read and write on, spread over the patients.
    let n_cases = cases;
    let mut cases = vec![];
    for p in pats.iter().cycle().take(n_cases) {
        let c = call(&http, reqwest::Method::POST, format!("{}/api/v1/consultations", node.base), &node.tokens["dr.aliyev"], Some(json!({ "patient_id": p, "question": "load", "specialty": "cardiology", "urgency": "routine", "submit": true }))).await?;
        cases.push(c["id"].as_str().context("id")?.to_owned());
    }
    let wrk_found = std::process::Command::new("wrk")
        .arg("--version")
        .output()
        .is_ok();
    match client {
        "wrk" => return mixed_wrk(&node, &pats, &cases, seconds, concurrency).await,
        "auto" if wrk_found => return mixed_wrk(&node, &pats, &cases, seconds, concurrency).await,
        "auto" | "rust" => {}
        other => {
            return Err(anyhow!(
                "unknown load generator {other:?} (wrk, rust or auto)"
            ))
        }
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
        json!({ "bench": "mixed-api", "backend": "sqlite", "client": "reqwest (in process)", "seconds": seconds, "concurrency": concurrency, "cases": cases.len(), "requests": total, "reads": reads, "writes": writes, "errors": errors,
                "requests_per_second": total as f64 / seconds as f64, "p50_ms": pct(0.50), "p99_ms": pct(0.99), "max_ms": pct(1.0), "goal": "2500 req/s with p99 < 50 ms" })
    );
    if errors > 0 {
        return Err(anyhow!("{errors} requests failed"));
    }
    Ok(())
}

/// The same 70/30 mix from wrk, a separate process (so the generator costs the node little of its 2 cores): the
/// script picks each request like the Rust client does. wrk counts non-2xx answers; they fail the run.
async fn mixed_wrk(
    node: &BenchNode,
    pats: &[String],
    cases: &[String],
    seconds: u64,
    concurrency: usize,
) -> Result<()> {
    let list = |v: &[String]| {
        v.iter()
            .map(|s| format!("\"{s}\""))
            .collect::<Vec<_>>()
            .join(",")
    };
    let script = format!(
        r#"local cases = {{{cases}}}
local pats = {{{pats}}}
local auth = "Bearer {token}"
local get = {{ ["Authorization"] = auth }}
local post = {{ ["Authorization"] = auth, ["Content-Type"] = "application/json" }}
request = function()
  local r = math.random(0, 9)
  local case = cases[math.random(#cases)]
  if r <= 3 then return wrk.format("GET", "/api/v1/consultations/" .. case, get)
  elseif r <= 5 then return wrk.format("GET", "/api/v1/consultations?state=assigned,in_progress&limit=50", get)
  elseif r == 6 then return wrk.format("GET", "/api/v1/patients/" .. pats[math.random(#pats)], get)
  elseif r <= 8 then return wrk.format("POST", "/api/v1/consultations/" .. case .. "/messages", post, '{{"body":"load test message"}}')
  else return wrk.format("POST", "/api/v1/patients", post, '{{"given_name":"Load","family_name":"Test","birth_date":"1980-01-01","sex":"other"}}')
  end
end
"#,
        cases = list(cases),
        pats = list(pats),
        token = node.tokens["dr.aliyev"],
    );
    let dir = tempfile::tempdir()?;
    let cpu_before = process_cpu_seconds();
    let path = dir.path().join("mix.lua");
    std::fs::write(&path, script)?;
    let out = tokio::process::Command::new("wrk")
        .args(["-t", "1", "-c", &concurrency.max(1).to_string()])
        .args(["-d", &format!("{seconds}s"), "--latency", "-s"])
        .arg(&path)
        .arg(&node.base)
        .output()
        .await
        .context("running wrk (apt-get install wrk)")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(anyhow!(
            "wrk failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let report = parse_wrk(&text).with_context(|| format!("unexpected wrk output:\n{text}"))?;
    let node_cpu = process_cpu_seconds().zip(cpu_before).map(|(a, b)| a - b);
    println!(
        "{}",
        json!({ "bench": "mixed-api", "backend": "sqlite", "client": "wrk (separate process, 1 thread)", "seconds": seconds, "concurrency": concurrency, "cases": cases.len(),
                "requests": report.requests, "errors": report.non_2xx + report.socket_errors, "requests_per_second": report.per_second,
                "p50_ms": report.p50_ms, "p99_ms": report.p99_ms,
                "node_cpu_ms_per_request": node_cpu.map(|c| c * 1000.0 / report.requests.max(1) as f64),
                "wal_bytes_after": std::fs::metadata(node._dir.path().join("caravan.sqlite-wal")).map(|m| m.len()).ok(),
                "goal": "2500 req/s with p99 < 50 ms" })
    );
    if report.non_2xx + report.socket_errors > 0 {
        return Err(anyhow!(
            "{} requests failed",
            report.non_2xx + report.socket_errors
        ));
    }
    Ok(())
}

/// CPU time (user + system) this process has used, from /proc (Linux): a cost per request that does not depend
/// on what else the machine is running, unlike throughput.
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces); utime and stime are the
    // 14th and 15th fields, in clock ticks (100 per second on Linux).
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

#[derive(Debug, PartialEq)]
struct WrkReport {
    requests: u64,
    per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    non_2xx: u64,
    socket_errors: u64,
}

/// Read wrk's text report (`--latency`): the request count, requests/s, the 50 % and 99 % latencies, errors.
fn parse_wrk(text: &str) -> Option<WrkReport> {
    let ms = |v: &str| -> Option<f64> {
        let (num, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic())?);
        let n: f64 = num.parse().ok()?;
        Some(match unit {
            "us" => n / 1000.0,
            "ms" => n,
            "s" => n * 1000.0,
            "m" => n * 60_000.0,
            _ => return None,
        })
    };
    let mut r = WrkReport {
        requests: 0,
        per_second: 0.0,
        p50_ms: f64::NAN,
        p99_ms: f64::NAN,
        non_2xx: 0,
        socket_errors: 0,
    };
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["50%", v] => r.p50_ms = ms(v)?,
            ["99%", v] => r.p99_ms = ms(v)?,
            ["Requests/sec:", v] => r.per_second = v.parse().ok()?,
            ["Non-2xx", "or", "3xx", "responses:", n] => r.non_2xx = n.parse().ok()?,
            [n, "requests", "in", ..] => r.requests = n.parse().ok()?,
            ["Socket", "errors:", rest @ ..] => {
                r.socket_errors = rest
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
                    .sum()
            }
            _ => {}
        }
    }
    (r.requests > 0 && r.p99_ms.is_finite()).then_some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wrk_reports() {
        let text = "Running 8s test @ http://127.0.0.1:40000
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    10.59ms    5.21ms  80.12ms   75.00%
  Latency Distribution
     50%    9.80ms
     75%   12.50ms
     90%   16.00ms
     99%   31.20ms
  24000 requests in 8.00s, 20.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 5
Requests/sec:   3000.10
Transfer/sec:      2.50MB
";
        assert_eq!(
            parse_wrk(text),
            Some(WrkReport {
                requests: 24000,
                per_second: 3000.10,
                p50_ms: 9.8,
                p99_ms: 31.2,
                non_2xx: 5,
                socket_errors: 3,
            })
        );
        assert_eq!(parse_wrk("garbage"), None);
        assert_eq!(
            parse_wrk("     50%  850.00us\n     99%    1.20s\n  10 requests in 1.00s\n")
                .map(|r| (r.p50_ms, r.p99_ms)),
            Some((0.85, 1200.0))
        );
    }
}
