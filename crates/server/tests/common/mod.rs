//! Test kit: a real node on 127.0.0.1:0 with a temporary SQLite database, seeded with the demo.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use caravan_server::{demo, AppState, Blobs, NodeConfig};
use reqwest::StatusCode;
use serde_json::{json, Value};

pub struct Node {
    pub base: String,
    pub dir: tempfile::TempDir,
}

pub async fn start() -> Node {
    start_with(NodeConfig {
        secure_cookies: false,
        sweep_every: std::time::Duration::from_millis(100),
        ..NodeConfig::default()
    })
    .await
}

pub async fn start_with(config: NodeConfig) -> Node {
    start_with_blobs(config, None).await
}

/// A node whose attachments go to `blobs` (an object_store URL such as `s3://bucket/prefix`) instead of a folder.
pub async fn start_with_blobs(config: NodeConfig, blobs: Option<&str>) -> Node {
    start_full(config, blobs, None).await.0
}

/// A node with remote monitoring started as `caravan serve --mqtt ...` starts it (`None`: only attached, no
/// background tasks, as in every other test).
pub async fn start_full(
    mut config: NodeConfig,
    blobs: Option<&str>,
    monitoring: Option<caravan_server::monitor::MonitorArgs>,
) -> (Node, AppState) {
    let dir = tempfile::tempdir().unwrap();
    // Health certificates: the demo's test trust lists and rules in DATA/certs, as `caravan demo` seeds them.
    let certs = config
        .certs_dir
        .get_or_insert_with(|| dir.path().join("certs"))
        .clone();
    caravan_server::certs_web::seed_demo(&caravan_server::certs_web::material::CertsDir::new(
        certs,
    ))
    .unwrap();
    let store = caravan_server::open_store(dir.path().join("caravan.sqlite").to_str().unwrap())
        .await
        .unwrap();
    demo::seed(store.as_ref(), &config.sla).await.unwrap();
    let local = dir.path().join("blobs");
    let blobs = Blobs::open(blobs.unwrap_or(local.to_str().unwrap())).unwrap();
    let state = AppState::new(store, blobs, config);
    // The node's DICOM archive, as `caravan serve` opens it in DATA/dicom.
    state.attach_imaging(
        imaging::Archive::open_folder(&dir.path().join("dicom"))
            .await
            .unwrap(),
    );
    // Remote monitoring in DATA/monitoring.sqlite, as `caravan serve` opens it.
    match &monitoring {
        None => {
            caravan_server::monitor::attach(&state, dir.path())
                .await
                .unwrap();
        }
        Some(args) => {
            caravan_server::monitor::start(&state, dir.path(), args)
                .await
                .unwrap();
        }
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(caravan_server::serve(
        listener,
        state.clone(),
        std::future::pending(),
    ));
    (Node { base, dir }, state)
}

/// A signed-in API client (cookie session + CSRF header).
pub struct Client {
    pub http: reqwest::Client,
    pub base: String,
    pub csrf: String,
    pub user: Value,
}

impl Client {
    pub async fn login(node: &Node, username: &str) -> Client {
        let http = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let r = http
            .post(format!("{}/api/v1/session", node.base))
            .json(&json!({ "username": username, "password": demo::DEMO_PASSWORD }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "login {username}");
        let v: Value = r.json().await.unwrap();
        Client {
            http,
            base: node.base.clone(),
            csrf: v["csrf_token"].as_str().unwrap().to_owned(),
            user: v["user"].clone(),
        }
    }

    pub fn id(&self) -> String {
        self.user["id"].as_str().unwrap().to_owned()
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        let r = self
            .http
            .get(format!("{}{}", self.base, path))
            .send()
            .await
            .unwrap();
        let s = r.status();
        let text = r.text().await.unwrap();
        (
            s,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{}", self.base, path))
            .header("x-csrf-token", &self.csrf);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let s = r.status();
        let text = r.text().await.unwrap();
        (
            s,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    /// Upload a file to a consultation (multipart field `file`).
    pub async fn upload(
        &self,
        consultation: &str,
        name: &str,
        mime: &str,
        bytes: Vec<u8>,
    ) -> (StatusCode, Value) {
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(bytes)
                .file_name(name.to_owned())
                .mime_str(mime)
                .unwrap(),
        );
        let r = self
            .http
            .post(format!(
                "{}/api/v1/consultations/{consultation}/attachments",
                self.base
            ))
            .header("x-csrf-token", &self.csrf)
            .multipart(form)
            .send()
            .await
            .unwrap();
        let s = r.status();
        let text = r.text().await.unwrap();
        (
            s,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Download an attachment's bytes.
    pub async fn download(&self, attachment: &str) -> (StatusCode, Vec<u8>) {
        let r = self
            .http
            .get(format!("{}/api/v1/attachments/{attachment}", self.base))
            .send()
            .await
            .unwrap();
        let s = r.status();
        (s, r.bytes().await.unwrap().to_vec())
    }
}
