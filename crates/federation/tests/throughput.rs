//! Throughput figures (printed; run with `--release -- --nocapture` for the README): request signatures
//! and envelopes signed and verified per second on one core, and the receiver's whole check pipeline.
//! Each loop is bounded in time; the assertions only check that the work was real.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use caravan_federation::directory::SharedDirectory;
use caravan_federation::envelope::{self, Envelope, EnvelopeLimits, MessageType};
use caravan_federation::httpsig::{
    verify_request, MemoryReplayGuard, RequestParts, RequestSigner, VerifyPolicy,
};
use caravan_federation::keys::NodeKey;
use caravan_federation::receiver::{Receiver, ReceiverConfig, StoreOutcome};
use chrono::Utc;
use common::*;
use http::HeaderMap;
use serde_json::json;

const URL: &str = "https://center-c.example/federation/v1/inbox";
const BUDGET: Duration = Duration::from_millis(700);

fn rate(label: &str, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < BUDGET {
        for _ in 0..16 {
            f();
        }
        n += 16;
    }
    let per_sec = n as f64 / start.elapsed().as_secs_f64();
    eprintln!("{label:<44} {per_sec:>10.0} /s");
    per_sec
}

#[tokio::test(flavor = "current_thread")]
async fn signatures_per_second() {
    let anchor = NodeKey::generate();
    let a = NodeKey::generate();
    let c = NodeKey::generate();
    let dir = directory(
        &anchor,
        1,
        vec![
            member(
                "hospital-a",
                "https://a.example",
                &a,
                &["consult.packet"],
                "FR",
            ),
            member("center-c", "https://center-c.example", &c, &[], "ES"),
        ],
    );
    let body = json!({"case": "pseudonymised", "history": "x".repeat(2000)})
        .as_object()
        .unwrap()
        .clone();
    let env = Envelope::new(
        id("hospital-a"),
        id("center-c"),
        MessageType::ConsultPacket,
        body.clone(),
    )
    .sign(&a)
    .unwrap();
    let raw = env.bytes().to_vec();
    eprintln!("envelope size: {} bytes", raw.len());
    let signer = RequestSigner::new(a.clone());
    let now = Utc::now();

    let http_sign = rate("httpsig sign (digest + Ed25519)", || {
        let mut h = HeaderMap::new();
        signer
            .sign("POST", URL, &mut h, &raw, now.timestamp())
            .unwrap();
    });
    let mut headers = HeaderMap::new();
    signer
        .sign("POST", URL, &mut headers, &raw, now.timestamp())
        .unwrap();
    let policy = VerifyPolicy::default();
    let key = a.verifying_key();
    let http_verify = rate("httpsig verify (parse + digest + Ed25519)", || {
        let parts = RequestParts {
            method: "POST",
            target_uri: URL,
            headers: &headers,
            body: &raw,
        };
        verify_request(&parts, &policy, now.timestamp(), |_| Ok((key, ()))).unwrap();
    });
    let env_sign = rate("envelope sign (JCS + Ed25519)", || {
        Envelope::new(
            id("hospital-a"),
            id("center-c"),
            MessageType::ConsultPacket,
            body.clone(),
        )
        .sign(&a)
        .unwrap();
    });
    let limits = EnvelopeLimits::default();
    let me = id("center-c");
    let env_verify = rate("envelope verify (parse + JCS + Ed25519)", || {
        envelope::verify(&raw, &dir, &me, now, &limits).unwrap();
    });

    // The receiver's whole pipeline, with a fresh request each time (new nonce) and an in-memory inbox.
    let receiver = Receiver::new(
        ReceiverConfig::new(me.clone(), "https://center-c.example"),
        SharedDirectory::new(dir.clone()),
        MemInbox::default(),
        MemoryReplayGuard::default(),
    );
    let mut prepared = Vec::new();
    for _ in 0..3000 {
        let e = Envelope::new(
            id("hospital-a"),
            id("center-c"),
            MessageType::ConsultPacket,
            body.clone(),
        )
        .sign(&a)
        .unwrap();
        let raw = e.bytes().to_vec();
        let mut h = HeaderMap::new();
        signer
            .sign("POST", URL, &mut h, &raw, now.timestamp())
            .unwrap();
        prepared.push((h, raw));
    }
    let start = Instant::now();
    let mut done = 0;
    for (h, raw) in &prepared {
        let r = receiver.receive_at("POST", h, raw, now).await.unwrap();
        assert_eq!(r.status, StoreOutcome::Stored);
        done += 1;
        if start.elapsed() > BUDGET {
            break;
        }
    }
    let pipeline = done as f64 / start.elapsed().as_secs_f64();
    eprintln!(
        "{:<44} {pipeline:>10.0} /s",
        "receiver pipeline (request + envelope + store)"
    );
    assert_eq!(receiver.store().ids.lock().unwrap().len(), done);
    for r in [http_sign, http_verify, env_sign, env_verify, pipeline] {
        assert!(r > 0.0);
    }
}
