//! The worked examples in docs/federation.md (made by an independent Python implementation,
//! tests/data/protocol_examples.py) must verify with this crate: the document cannot drift from the code.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use caravan_federation::directory::{Directory, SharedDirectory, TrustPolicy};
use caravan_federation::envelope::{self, EnvelopeLimits};
use caravan_federation::httpsig::{
    parse_signature, signature_base, MemoryReplayGuard, RequestParts,
};
use caravan_federation::keys::parse_public_key;
use caravan_federation::receiver::{Receiver, ReceiverConfig, StoreOutcome};
use chrono::{DateTime, Utc};
use common::{id, MemInbox};
use http::HeaderMap;

const DOC: &str = include_str!("../../../docs/federation.md");

/// The fenced block following `<!-- example:NAME -->`.
fn block(name: &str) -> String {
    let marker = format!("<!-- example:{name} -->");
    let at = DOC.find(&marker).unwrap_or_else(|| panic!("no {marker}"));
    let rest = &DOC[at + marker.len()..];
    let open = rest.find("```").unwrap();
    let rest = &rest[open..];
    let start = rest.find('\n').unwrap() + 1;
    let end = rest[start..].find("\n```").unwrap();
    rest[start..start + end].to_string()
}

fn anchor() -> ed25519_dalek::VerifyingKey {
    let marker = "<!-- example:anchor -->`";
    let at = DOC.find(marker).unwrap() + marker.len();
    let end = DOC[at..].find('`').unwrap();
    parse_public_key(&DOC[at..at + end]).unwrap()
}

fn now() -> DateTime<Utc> {
    "2026-12-05T10:00:01Z".parse().unwrap()
}

fn directory() -> Directory {
    Directory::verify(
        block("directory").as_bytes(),
        &TrustPolicy::new(vec![anchor()]),
        now(),
        None,
    )
    .unwrap()
}

/// Splits the request block into headers and body.
fn request() -> (HeaderMap, Vec<u8>) {
    let text = block("request");
    let (head, body) = text.split_once("\n\n").unwrap();
    let mut headers = HeaderMap::new();
    for line in head.lines().skip(1) {
        let (k, v) = line.split_once(": ").unwrap();
        headers.append(
            http::HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    (headers, body.as_bytes().to_vec())
}

#[test]
fn directory_example_verifies_with_the_pinned_anchor() {
    let dir = directory();
    assert_eq!(dir.serial(), 42);
    assert_eq!(dir.members().len(), 2);
    assert!(dir.type_allowed(&id("hospital-a.fr"), "consult.packet"));
}

#[test]
fn envelope_example_verifies_pretty_and_compact() {
    let dir = directory();
    let me = id("center-c.es");
    let limits = EnvelopeLimits::default();
    let pretty = envelope::verify(block("envelope").as_bytes(), &dir, &me, now(), &limits).unwrap();
    let (_, body) = request();
    let compact = envelope::verify(&body, &dir, &me, now(), &limits).unwrap();
    assert_eq!(pretty.envelope, compact.envelope);
    let canonical = caravan_federation::jcs::canonical(&pretty.envelope).unwrap();
    assert_eq!(
        String::from_utf8(canonical).unwrap(),
        block("envelope-canonical")
    );
}

#[test]
fn request_example_base_and_signature() {
    let (headers, body) = request();
    let (params, _) = parse_signature(&headers, "caravan").unwrap();
    let parts = RequestParts {
        method: "POST",
        target_uri: "https://center-c.example/federation/v1/inbox",
        headers: &headers,
        body: &body,
    };
    assert_eq!(signature_base(&params, &parts).unwrap(), block("base"));
}

#[tokio::test]
async fn request_example_is_accepted_by_a_receiver() {
    let (headers, body) = request();
    let receiver = Receiver::new(
        ReceiverConfig::new(id("center-c.es"), "https://center-c.example"),
        SharedDirectory::new(directory()),
        MemInbox::default(),
        MemoryReplayGuard::default(),
    );
    let receipt = receiver
        .receive_at("POST", &headers, &body, now())
        .await
        .unwrap();
    assert_eq!(receipt.status, StoreOutcome::Stored);
    assert_eq!(receipt.from, id("hospital-a.fr"));
    // The same request again is a replay.
    assert!(receiver
        .receive_at("POST", &headers, &body, now())
        .await
        .is_err());
}
