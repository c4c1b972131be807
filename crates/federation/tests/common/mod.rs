//! Test helpers: a small network (anchor, members, signed directory), signed requests, in-memory and
//! SQLite stores.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

pub mod sqlite;

use std::collections::HashSet;
use std::sync::Mutex;

use async_trait::async_trait;
use caravan_federation::directory::{
    Directory, DirectoryBody, KeyStatus, Level, Member, MemberKey, TrustPolicy,
};
use caravan_federation::envelope::SignedEnvelope;
use caravan_federation::httpsig::RequestSigner;
use caravan_federation::keys::NodeKey;
use caravan_federation::receiver::{InboxStore, InboxStoreError, StoreOutcome};
use caravan_federation::NodeId;
use chrono::{DateTime, Duration, Utc};
use http::HeaderMap;

pub fn id(s: &str) -> NodeId {
    NodeId::new(s).unwrap()
}

pub fn member(node: &str, base_url: &str, key: &NodeKey, types: &[&str], country: &str) -> Member {
    let now = Utc::now();
    Member {
        node_id: id(node),
        display_name: format!("Node {node}"),
        level: Level::Hospital,
        country: country.into(),
        base_url: base_url.into(),
        keys: vec![MemberKey {
            kid: key.kid().clone(),
            public_key: key.public_key_b64(),
            status: KeyStatus::Active,
            not_before: now - Duration::days(30),
            not_after: None,
        }],
        message_types: types.iter().map(|s| s.to_string()).collect(),
        valid_from: now - Duration::days(30),
        valid_until: None,
        tls_spki_sha256: Vec::new(),
    }
}

pub fn signed_directory(anchor: &NodeKey, serial: u64, members: Vec<Member>) -> Vec<u8> {
    let now = Utc::now();
    let body = DirectoryBody {
        network: "caravan-test".into(),
        serial,
        issued_at: now - Duration::minutes(1),
        expires_at: now + Duration::days(30),
        anchors: vec![anchor.kid().clone()],
        members,
    };
    serde_json::to_vec_pretty(&body.sign(&[anchor]).unwrap()).unwrap()
}

pub fn directory(anchor: &NodeKey, serial: u64, members: Vec<Member>) -> Directory {
    let raw = signed_directory(anchor, serial, members);
    Directory::verify(
        &raw,
        &TrustPolicy::new(vec![anchor.verifying_key()]),
        Utc::now(),
        None,
    )
    .unwrap()
}

/// Signs a POST of `body` to `url` at `now` with `key`; returns the headers.
pub fn signed_post(key: &NodeKey, url: &str, body: &[u8], now: DateTime<Utc>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", "application/json".parse().unwrap());
    RequestSigner::new(key.clone())
        .sign("POST", url, &mut headers, body, now.timestamp())
        .unwrap();
    headers
}

/// An inbox in memory: ids seen, and how many were processed (stored as new).
#[derive(Default)]
pub struct MemInbox {
    pub ids: Mutex<Vec<uuid::Uuid>>,
    seen: Mutex<HashSet<uuid::Uuid>>,
}

#[async_trait]
impl InboxStore for MemInbox {
    async fn store(&self, env: &SignedEnvelope) -> Result<StoreOutcome, InboxStoreError> {
        if self.seen.lock().unwrap().insert(env.envelope.id) {
            self.ids.lock().unwrap().push(env.envelope.id);
            Ok(StoreOutcome::Stored)
        } else {
            Ok(StoreOutcome::Duplicate)
        }
    }
}
