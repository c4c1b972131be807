//! Test kit: a real demo node with the FHIR routes on 127.0.0.1:0, and a FHIR client that signs in like a user.
#![allow(dead_code, clippy::unwrap_used)]

use caravan_server::{demo, AppState, Blobs, NodeConfig};
use reqwest::StatusCode;
use serde_json::{json, Value};

pub struct Node {
    pub base: String,
    pub dir: tempfile::TempDir,
}

pub async fn start() -> Node {
    let config = NodeConfig {
        secure_cookies: false,
        ..NodeConfig::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let store = caravan_server::open_store(dir.path().join("caravan.sqlite").to_str().unwrap())
        .await
        .unwrap();
    demo::seed(store.as_ref(), &config.sla).await.unwrap();
    let blobs = Blobs::open(dir.path().join("blobs").to_str().unwrap()).unwrap();
    let state = AppState::new(store, blobs, config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(caravan_server::serve_with(
        listener,
        state,
        caravan_fhir::routes(),
        std::future::pending(),
    ));
    Node { base, dir }
}

/// A response: status, content type and body (JSON when it parses).
pub struct Resp {
    pub status: StatusCode,
    pub content_type: String,
    pub location: Option<String>,
    pub body: Value,
    pub bytes: Vec<u8>,
}

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

    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        content_type: Option<&str>,
        body: Option<Vec<u8>>,
        accept: Option<&str>,
    ) -> Resp {
        let mut req = self
            .http
            .request(method, format!("{}{}", self.base, path))
            .header("x-csrf-token", &self.csrf);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        if let Some(a) = accept {
            req = req.header("accept", a);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        let content_type = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let location = r
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = r.bytes().await.unwrap().to_vec();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Resp {
            status,
            content_type,
            location,
            body,
            bytes,
        }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.request(reqwest::Method::GET, path, None, None, None)
            .await
    }

    pub async fn post_fhir(&self, path: &str, body: &Value) -> Resp {
        self.request(
            reqwest::Method::POST,
            path,
            Some("application/fhir+json"),
            Some(serde_json::to_vec(body).unwrap()),
            None,
        )
        .await
    }

    /// The JSON API, for cross-checking what FHIR shows and for workflow steps FHIR does not offer.
    pub async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let r = self
            .request(
                method,
                path,
                body.as_ref().map(|_| "application/json"),
                body.map(|b| serde_json::to_vec(&b).unwrap()),
                None,
            )
            .await;
        (r.status, r.body)
    }
}

/// Every FHIR body this node sends must parse with the fhirbolt R4 model in strict mode.
pub fn assert_r4(v: &Value) {
    let bytes = serde_json::to_vec(v).unwrap();
    let parsed: Result<fhirbolt::model::r4::Resource, _> = fhirbolt::json::from_slice(
        &bytes,
        Some(fhirbolt::serde::DeserializationConfig {
            mode: fhirbolt::serde::DeserializationMode::Strict,
        }),
    );
    assert!(parsed.is_ok(), "not valid R4: {:?}\n{v:#}", parsed.err());
}

/// A searchset bundle's resources, after checking the bundle's shape.
pub fn entries(r: &Resp, rtype: &str) -> Vec<Value> {
    assert_eq!(r.status, StatusCode::OK, "{:#}", r.body);
    assert!(
        r.content_type.starts_with("application/fhir+json"),
        "{}",
        r.content_type
    );
    assert_r4(&r.body);
    assert_eq!(r.body["resourceType"], "Bundle");
    assert_eq!(r.body["type"], "searchset");
    assert_eq!(r.body["link"][0]["relation"], "self");
    assert!(r.body["link"][0]["url"]
        .as_str()
        .unwrap()
        .contains(&format!("/fhir/{rtype}")));
    let list: Vec<Value> = r.body["entry"]
        .as_array()
        .map(|a| a.iter().map(|e| e["resource"].clone()).collect())
        .unwrap_or_default();
    assert_eq!(r.body["total"].as_u64().unwrap() as usize, list.len());
    for x in &list {
        assert_eq!(x["resourceType"], rtype);
    }
    list
}

/// Assert an OperationOutcome error with this status.
pub fn assert_outcome(r: &Resp, status: u16, what: &str) {
    assert_eq!(r.status.as_u16(), status, "{what}: {:#}", r.body);
    assert!(
        r.content_type.starts_with("application/fhir+json"),
        "{what}: {}",
        r.content_type
    );
    assert_r4(&r.body);
    assert_eq!(r.body["resourceType"], "OperationOutcome", "{what}");
    assert_eq!(r.body["issue"][0]["severity"], "error", "{what}");
    assert!(
        !r.body["issue"][0]["diagnostics"]
            .as_str()
            .unwrap_or("")
            .is_empty(),
        "{what}: no diagnostics"
    );
}
