//! Bad input and attacks on the inbound side: each is refused with its own typed error and problem code,
//! and stores nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use caravan_federation::directory::{
    Directory, DirectoryError, KeyStatus, LookupError, MemberKey, SharedDirectory, TrustPolicy,
};
use caravan_federation::envelope::{self, Envelope, EnvelopeError, EnvelopeLimits, MessageType};
use caravan_federation::httpsig::{HttpSigError, MemoryReplayGuard, RequestSigner};
use caravan_federation::keys::{b64url, NodeKey};
use caravan_federation::receiver::{ReceiveError, Receiver, ReceiverConfig, StoreOutcome};
use chrono::{Duration, Utc};
use common::*;
use serde_json::{json, Map, Value};

const BASE_C: &str = "https://center-c.example";
const INBOX_C: &str = "https://center-c.example/federation/v1/inbox";

struct World {
    anchor: NodeKey,
    a: NodeKey,
    b_revoked: NodeKey,
    c: NodeKey,
    d: NodeKey,
    outsider: NodeKey,
    receiver: Receiver<MemInbox, MemoryReplayGuard>,
}

fn world() -> World {
    world_with(EnvelopeLimits::default())
}

fn world_with(limits: EnvelopeLimits) -> World {
    let anchor = NodeKey::generate();
    let a = NodeKey::generate();
    let b_revoked = NodeKey::generate();
    let c = NodeKey::generate();
    let d = NodeKey::generate();
    let outsider = NodeKey::generate();
    let mut mb = member(
        "hospital-b",
        "https://b.example",
        &b_revoked,
        &["consult.packet"],
        "IT",
    );
    mb.keys[0].status = KeyStatus::Revoked;
    let dir = directory(
        &anchor,
        1,
        vec![
            member(
                "hospital-a",
                "https://a.example",
                &a,
                &["consult.packet", "consult.message"],
                "FR",
            ),
            mb,
            member("center-c", BASE_C, &c, &["consult.report"], "ES"),
            member(
                "hospital-d",
                "https://d.example",
                &d,
                &["consult.packet"],
                "PT",
            ),
        ],
    );
    let mut config = ReceiverConfig::new(id("center-c"), BASE_C);
    config.limits = limits;
    let receiver = Receiver::new(
        config,
        SharedDirectory::new(dir),
        MemInbox::default(),
        MemoryReplayGuard::default(),
    );
    World {
        anchor,
        a,
        b_revoked,
        c,
        d,
        outsider,
        receiver,
    }
}

fn body() -> Map<String, Value> {
    json!({"case": "demo", "question": "second opinion"})
        .as_object()
        .unwrap()
        .clone()
}

fn envelope_bytes(from: &str, to: &str, kind: MessageType, key: &NodeKey) -> Vec<u8> {
    Envelope::new(id(from), id(to), kind, body())
        .sign(key)
        .unwrap()
        .bytes()
        .to_vec()
}

/// Signs an arbitrary envelope JSON value as the envelope format does (for types the registry refuses).
fn sign_raw_envelope(mut v: Value, key: &NodeKey) -> Vec<u8> {
    let canonical = caravan_federation::jcs::canonical(&v).unwrap();
    v["signature"] =
        json!({"alg": "ed25519", "kid": key.kid(), "sig": b64url(&key.sign(&canonical))});
    serde_json::to_vec(&v).unwrap()
}

async fn send(w: &World, key: &NodeKey, body: &[u8]) -> Result<StoreOutcome, ReceiveError> {
    let headers = signed_post(key, INBOX_C, body, Utc::now());
    w.receiver
        .receive("POST", &headers, body)
        .await
        .map(|r| r.status)
}

fn stored(w: &World) -> usize {
    w.receiver.store().ids.lock().unwrap().len()
}

fn sig_err<T: std::fmt::Debug>(r: Result<T, ReceiveError>) -> HttpSigError {
    match r {
        Err(ReceiveError::Signature(e)) => e,
        other => panic!("expected a signature refusal, got {other:?}"),
    }
}

fn env_err<T: std::fmt::Debug>(r: Result<T, ReceiveError>) -> EnvelopeError {
    match r {
        Err(ReceiveError::Envelope(e)) => e,
        other => panic!("expected an envelope refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn good_request_is_stored_once_and_duplicates_acknowledged() {
    let w = world();
    let env = envelope_bytes("hospital-a", "center-c", MessageType::ConsultPacket, &w.a);
    assert_eq!(send(&w, &w.a, &env).await.unwrap(), StoreOutcome::Stored);
    // The same envelope in a new request (new nonce): acknowledged, not stored again.
    assert_eq!(send(&w, &w.a, &env).await.unwrap(), StoreOutcome::Duplicate);
    assert_eq!(stored(&w), 1);
    let resp = w
        .receiver
        .handle("POST", &signed_post(&w.a, INBOX_C, &env, Utc::now()), &env)
        .await;
    assert_eq!(resp.status(), 200);
    assert!(resp.body().contains("\"status\":\"duplicate\""));
}

#[tokio::test]
async fn unsigned_request() {
    let w = world();
    let env = envelope_bytes("hospital-a", "center-c", MessageType::ConsultPacket, &w.a);
    let r = w
        .receiver
        .receive("POST", &http::HeaderMap::new(), &env)
        .await;
    assert_eq!(sig_err(r), HttpSigError::Unsigned);
    let resp = w
        .receiver
        .handle("POST", &http::HeaderMap::new(), &env)
        .await;
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    let p: Value = serde_json::from_str(resp.body()).unwrap();
    assert_eq!(p["code"], "unsigned");
    assert_eq!(p["type"], "urn:caravan:federation:unsigned");
    assert_eq!(stored(&w), 0);
}

#[tokio::test]
async fn badly_signed_request() {
    let w = world();
    let env = envelope_bytes("hospital-a", "center-c", MessageType::ConsultPacket, &w.a);
    // Headers signed by the outsider but claiming a's key id.
    let mut headers = signed_post(&w.outsider, INBOX_C, &env, Utc::now());
    let input = headers["signature-input"]
        .to_str()
        .unwrap()
        .replace(w.outsider.kid().as_str(), w.a.kid().as_str());
    headers.insert("signature-input", input.parse().unwrap());
    assert_eq!(
        sig_err(w.receiver.receive("POST", &headers, &env).await),
        HttpSigError::BadSignature
    );
    // Signed for another target (a captured request replayed at another node).
    let headers = signed_post(
        &w.a,
        "https://d.example/federation/v1/inbox",
        &env,
        Utc::now(),
    );
    assert_eq!(
        sig_err(w.receiver.receive("POST", &headers, &env).await),
        HttpSigError::BadSignature
    );
    // Garbage signature header.
    let mut headers = signed_post(&w.a, INBOX_C, &env, Utc::now());
    headers.insert("signature", "caravan=\"not bytes\"".parse().unwrap());
    assert!(matches!(
        sig_err(w.receiver.receive("POST", &headers, &env).await),
        HttpSigError::Malformed { .. }
    ));
    assert_eq!(stored(&w), 0);
}

#[tokio::test]
async fn replayed_nonce() {
    let w = world();
    let env = envelope_bytes("hospital-a", "center-c", MessageType::ConsultPacket, &w.a);
    let headers = signed_post(&w.a, INBOX_C, &env, Utc::now());
    w.receiver.receive("POST", &headers, &env).await.unwrap();
    assert_eq!(
        sig_err(w.receiver.receive("POST", &headers, &env).await),
        HttpSigError::Replayed
    );
    let resp = w.receiver.handle("POST", &headers, &env).await;
    assert_eq!(resp.status(), 409);
    assert_eq!(stored(&w), 1);
}

#[tokio::test]
async fn expired_too_old_and_future_signatures() {
    let w = world();
    let env = envelope_bytes("hospital-a", "center-c", MessageType::ConsultPacket, &w.a);
    let now = Utc::now();
    // expires = created + 60 s; two minutes ago it expired a minute ago (> 30 s skew).
    let headers = signed_post(&w.a, INBOX_C, &env, now - Duration::seconds(120));
    assert!(matches!(
        sig_err(w.receiver.receive("POST", &headers, &env).await),
        HttpSigError::Expired { .. }
    ));
    // A long-lived signature is still refused once older than the window.
    let mut headers = http::HeaderMap::new();
    RequestSigner::new(w.a.clone())
        .with_validity_secs(100_000)
        .sign(
            "POST",
            INBOX_C,
            &mut headers,
            &env,
            (now - Duration::seconds(600)).timestamp(),
        )
        .unwrap();
    assert!(matches!(
        sig_err(w.receiver.receive("POST", &headers, &env).await),
        HttpSigError::TooOld { .. }
    ));
    // Created two minutes in the future.
    let headers = signed_post(&w.a, INBOX_C, &env, now + Duration::seconds(120));
    assert!(matches!(
        sig_err(w.receiver.receive("POST", &headers, &env).await),
        HttpSigError::CreatedInFuture { .. }
    ));
    // Within the skew it passes.
    let headers = signed_post(&w.a, INBOX_C, &env, now + Duration::seconds(10));
    assert_eq!(
        w.receiver
            .receive("POST", &headers, &env)
            .await
            .unwrap()
            .status,
        StoreOutcome::Stored
    );
}

#[tokio::test]
async fn digest_mismatch() {
    let w = world();
    let env = envelope_bytes("hospital-a", "center-c", MessageType::ConsultPacket, &w.a);
    let headers = signed_post(&w.a, INBOX_C, &env, Utc::now());
    let other = envelope_bytes("hospital-a", "center-c", MessageType::ConsultPacket, &w.a);
    assert_eq!(
        sig_err(w.receiver.receive("POST", &headers, &other).await),
        HttpSigError::DigestMismatch
    );
    // Recomputing the digest header does not help: the digest is covered by the signature.
    let mut headers2 = headers.clone();
    headers2.insert(
        "content-digest",
        caravan_federation::httpsig::content_digest(&other)
            .parse()
            .unwrap(),
    );
    assert_eq!(
        sig_err(w.receiver.receive("POST", &headers2, &other).await),
        HttpSigError::BadSignature
    );
    // Removing the digest header.
    let mut headers3 = headers.clone();
    headers3.remove("content-digest");
    assert_eq!(
        sig_err(w.receiver.receive("POST", &headers3, &env).await),
        HttpSigError::MissingDigest
    );
    assert_eq!(stored(&w), 0);
}

#[tokio::test]
async fn signature_must_cover_the_required_components() {
    use caravan_federation::httpsig::{
        sign_with_params, ParamValue, RequestParts, SignatureParams,
    };
    let w = world();
    let env = envelope_bytes("hospital-a", "center-c", MessageType::ConsultPacket, &w.a);
    let empty = http::HeaderMap::new();
    let mut headers = http::HeaderMap::new();
    let now = Utc::now().timestamp();
    let params = SignatureParams {
        components: vec!["@method".into()],
        params: vec![
            ("created".into(), ParamValue::Int(now)),
            ("expires".into(), ParamValue::Int(now + 60)),
            ("nonce".into(), ParamValue::Str("n1".into())),
            ("alg".into(), ParamValue::Str("ed25519".into())),
            ("keyid".into(), ParamValue::Str(w.a.kid().to_string())),
        ],
    };
    let parts = RequestParts {
        method: "POST",
        target_uri: INBOX_C,
        headers: &empty,
        body: &env,
    };
    let (input, sig) = sign_with_params(&w.a, "caravan", &params, &parts).unwrap();
    headers.insert("signature-input", input.parse().unwrap());
    headers.insert("signature", sig.parse().unwrap());
    assert_eq!(
        sig_err(w.receiver.receive("POST", &headers, &env).await),
        HttpSigError::NotCovered("@target-uri".into())
    );
    // An algorithm other than ed25519.
    let mut params = params.clone();
    params.components = ["@method", "@target-uri", "@authority"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    params.params[3].1 = ParamValue::Str("rsa-pss-sha512".into());
    let (input, sig) = sign_with_params(&w.a, "caravan", &params, &parts).unwrap();
    headers.insert("signature-input", input.parse().unwrap());
    headers.insert("signature", sig.parse().unwrap());
    let mut policy_ok = caravan_federation::httpsig::VerifyPolicy::default();
    policy_ok
        .required_components
        .retain(|c| c != "content-digest");
    let r = caravan_federation::httpsig::verify_request(
        &RequestParts {
            method: "POST",
            target_uri: INBOX_C,
            headers: &headers,
            body: &env,
        },
        &policy_ok,
        now,
        |_| Ok((w.a.verifying_key(), ())),
    );
    assert_eq!(
        r.unwrap_err(),
        HttpSigError::UnsupportedAlgorithm("rsa-pss-sha512".into())
    );
}

#[tokio::test]
async fn oversized_body() {
    let w = world_with(EnvelopeLimits {
        max_bytes: 512,
        ..EnvelopeLimits::default()
    });
    let mut big = body();
    big.insert("padding".into(), Value::String("x".repeat(1000)));
    let env = Envelope::new(
        id("hospital-a"),
        id("center-c"),
        MessageType::ConsultPacket,
        big,
    )
    .sign(&w.a)
    .unwrap();
    let r = send(&w, &w.a, env.bytes()).await;
    assert!(matches!(r, Err(ReceiveError::TooLarge { max: 512, .. })));
    let resp = w
        .receiver
        .handle(
            "POST",
            &signed_post(&w.a, INBOX_C, env.bytes(), Utc::now()),
            env.bytes(),
        )
        .await;
    assert_eq!(resp.status(), 413);
    assert!(resp.body().contains("\"retryable\":false"));
    assert_eq!(stored(&w), 0);
}

#[tokio::test]
async fn unknown_message_type() {
    let w = world();
    let mut v = serde_json::to_value(Envelope::new(
        id("hospital-a"),
        id("center-c"),
        MessageType::ConsultPacket,
        body(),
    ))
    .unwrap();
    v["type"] = json!("consult.teleport");
    let raw = sign_raw_envelope(v, &w.a);
    assert_eq!(
        env_err(send(&w, &w.a, &raw).await),
        EnvelopeError::UnknownType("consult.teleport".into())
    );
    let resp = w
        .receiver
        .handle("POST", &signed_post(&w.a, INBOX_C, &raw, Utc::now()), &raw)
        .await;
    assert_eq!(resp.status(), 422);
    let p: Value = serde_json::from_str(resp.body()).unwrap();
    assert_eq!(p["code"], "unknown_type");
    assert_eq!(p["retryable"], false);
    assert_eq!(stored(&w), 0);
}

#[tokio::test]
async fn sender_not_in_directory() {
    let w = world();
    let env = envelope_bytes(
        "outsider",
        "center-c",
        MessageType::ConsultPacket,
        &w.outsider,
    );
    // Its request key is unknown...
    assert_eq!(
        sig_err(send(&w, &w.outsider, &env).await),
        HttpSigError::Key {
            keyid: w.outsider.kid().to_string(),
            reason: LookupError::UnknownKey(w.outsider.kid().to_string())
        }
    );
    // ...and an envelope claiming to come from a non-member, carried by a member, is refused too.
    let resp = w
        .receiver
        .handle("POST", &signed_post(&w.a, INBOX_C, &env, Utc::now()), &env)
        .await;
    assert_eq!(resp.status(), 403);
    assert_eq!(
        env_err(send(&w, &w.a, &env).await),
        EnvelopeError::Sender(LookupError::UnknownNode("outsider".into()))
    );
    assert_eq!(stored(&w), 0);
}

#[tokio::test]
async fn revoked_key() {
    let w = world();
    let env = envelope_bytes(
        "hospital-b",
        "center-c",
        MessageType::ConsultPacket,
        &w.b_revoked,
    );
    assert!(matches!(
        sig_err(send(&w, &w.b_revoked, &env).await),
        HttpSigError::Key {
            reason: LookupError::KeyRevoked(_),
            ..
        }
    ));
    let resp = w
        .receiver
        .handle(
            "POST",
            &signed_post(&w.b_revoked, INBOX_C, &env, Utc::now()),
            &env,
        )
        .await;
    assert_eq!(resp.status(), 403);
    let p: Value = serde_json::from_str(resp.body()).unwrap();
    assert_eq!(p["code"], "key_revoked");
    assert_eq!(p["retryable"], false);
    assert_eq!(stored(&w), 0);
}

#[tokio::test]
async fn envelope_refusals() {
    let w = world();
    // Type not allowed for the sender.
    let env = envelope_bytes("hospital-a", "center-c", MessageType::ConsultReport, &w.a);
    assert!(matches!(
        env_err(send(&w, &w.a, &env).await),
        EnvelopeError::TypeNotAllowed { .. }
    ));
    // Addressed to another node.
    let env = envelope_bytes("hospital-a", "hospital-d", MessageType::ConsultPacket, &w.a);
    assert!(matches!(
        env_err(send(&w, &w.a, &env).await),
        EnvelopeError::NotForMe { .. }
    ));
    // Envelope from d carried (request-signed) by a.
    let env = envelope_bytes("hospital-d", "center-c", MessageType::ConsultPacket, &w.d);
    assert!(matches!(
        env_err(send(&w, &w.a, &env).await),
        EnvelopeError::SenderMismatch { .. }
    ));
    // Envelope signed by a with its body changed afterwards.
    let env = envelope_bytes("hospital-a", "center-c", MessageType::ConsultPacket, &w.a);
    let mut v: Value = serde_json::from_slice(&env).unwrap();
    v["body"]["question"] = json!("something else");
    let tampered = serde_json::to_vec(&v).unwrap();
    assert_eq!(
        env_err(send(&w, &w.a, &tampered).await),
        EnvelopeError::BadSignature
    );
    // Envelope signed with the wrong key (the request key is fine).
    let env = envelope_bytes(
        "hospital-a",
        "center-c",
        MessageType::ConsultPacket,
        &w.outsider,
    );
    assert!(matches!(
        env_err(send(&w, &w.a, &env).await),
        EnvelopeError::Sender(LookupError::UnknownKey(_))
    ));
    // Envelope without signature.
    v.as_object_mut().unwrap().remove("signature");
    let unsigned = serde_json::to_vec(&v).unwrap();
    assert_eq!(
        env_err(send(&w, &w.a, &unsigned).await),
        EnvelopeError::Unsigned
    );
    // Another version.
    let mut v2 = serde_json::to_value(Envelope::new(
        id("hospital-a"),
        id("center-c"),
        MessageType::ConsultPacket,
        body(),
    ))
    .unwrap();
    v2["v"] = json!(2);
    let raw = sign_raw_envelope(v2, &w.a);
    assert!(matches!(
        env_err(send(&w, &w.a, &raw).await),
        EnvelopeError::UnsupportedVersion(_)
    ));
    // Created in the future.
    let mut e = Envelope::new(
        id("hospital-a"),
        id("center-c"),
        MessageType::ConsultPacket,
        body(),
    );
    e.created = Utc::now() + Duration::hours(1);
    let raw = e.sign(&w.a).unwrap().bytes().to_vec();
    assert!(matches!(
        env_err(send(&w, &w.a, &raw).await),
        EnvelopeError::CreatedInFuture(_)
    ));
    // A malformed field: refused without echoing its content (it could be clinical text).
    let mut v3 = serde_json::to_value(Envelope::new(
        id("hospital-a"),
        id("center-c"),
        MessageType::ConsultPacket,
        body(),
    ))
    .unwrap();
    v3["created"] = json!("Jane Doe, born 1970");
    let raw = sign_raw_envelope(v3, &w.a);
    let e = env_err(send(&w, &w.a, &raw).await);
    assert!(matches!(e, EnvelopeError::Malformed(_)));
    assert!(!e.to_string().contains("Jane"), "{e}");
    // Not JSON.
    assert!(matches!(
        env_err(send(&w, &w.a, b"{oops").await),
        EnvelopeError::Malformed(_)
    ));
    assert_eq!(stored(&w), 0);
    let _ = (&w.anchor, &w.c);
}

#[test]
fn rotated_key_old_envelopes_still_verify_new_ones_use_the_new_key() {
    let anchor = NodeKey::generate();
    let c = NodeKey::generate();
    let now = Utc::now();
    let mut ring = caravan_federation::keys::Keyring::generate(
        Some("hospital-a".into()),
        now - Duration::days(10),
    );
    let old = ring.active().clone();
    // An envelope made before the rotation.
    let mut e = Envelope::new(
        id("hospital-a"),
        id("center-c"),
        MessageType::ConsultPacket,
        body(),
    );
    e.created = now - Duration::days(2);
    let old_env = e.sign(&old).unwrap();
    ring.rotate(now - Duration::days(1));
    let mut ma = member(
        "hospital-a",
        "https://a.example",
        ring.active(),
        &["consult.packet"],
        "FR",
    );
    ma.keys = ring.directory_keys();
    ma.keys[0].not_before = now - Duration::days(1);
    let dir = directory(
        &anchor,
        2,
        vec![ma, member("center-c", BASE_C, &c, &[], "ES")],
    );
    let limits = EnvelopeLimits::default();
    envelope::verify(old_env.bytes(), &dir, &id("center-c"), now, &limits).unwrap();
    // The retired key cannot sign anything new (outside its window).
    let late = Envelope::new(
        id("hospital-a"),
        id("center-c"),
        MessageType::ConsultPacket,
        body(),
    )
    .sign(&old)
    .unwrap();
    assert!(matches!(
        envelope::verify(late.bytes(), &dir, &id("center-c"), now, &limits),
        Err(EnvelopeError::Sender(LookupError::KeyNotValid(_)))
    ));
    let fresh = Envelope::new(
        id("hospital-a"),
        id("center-c"),
        MessageType::ConsultPacket,
        body(),
    )
    .sign(ring.active())
    .unwrap();
    envelope::verify(fresh.bytes(), &dir, &id("center-c"), now, &limits).unwrap();
    let _: &MemberKey = &dir.member(&id("hospital-a")).unwrap().keys[1];
}

#[test]
fn directory_with_bad_anchor_signature_and_rollback() {
    let anchor = NodeKey::generate();
    let impostor = NodeKey::generate();
    let a = NodeKey::generate();
    let policy = TrustPolicy::new(vec![anchor.verifying_key()]);
    let good = signed_directory(
        &anchor,
        7,
        vec![member("hospital-a", "https://a.example", &a, &[], "FR")],
    );
    let shared = SharedDirectory::new(Directory::verify(&good, &policy, Utc::now(), None).unwrap());
    // Same content, signature replaced by the impostor's under the anchor's kid.
    let mut v: Value = serde_json::from_slice(&good).unwrap();
    let mut unsigned = v.clone();
    unsigned.as_object_mut().unwrap().remove("signatures");
    let canonical = caravan_federation::jcs::canonical(&unsigned).unwrap();
    v["signatures"][0]["sig"] = json!(b64url(&impostor.sign(&canonical)));
    let forged = serde_json::to_vec(&v).unwrap();
    assert!(matches!(
        shared.refresh(&forged, &policy, Utc::now()),
        Err(DirectoryError::BadAnchorSignature { .. })
    ));
    // Directory signed only by an unpinned key.
    let other = signed_directory(&impostor, 8, vec![]);
    assert!(matches!(
        shared.refresh(&other, &policy, Utc::now()),
        Err(DirectoryError::UntrustedAnchor { .. })
    ));
    // Older serial, properly signed: rollback.
    let older = signed_directory(&anchor, 6, vec![]);
    assert!(matches!(
        shared.refresh(&older, &policy, Utc::now()),
        Err(DirectoryError::Rollback {
            held: 7,
            offered: 6
        })
    ));
    assert_eq!(shared.get().serial(), 7);
    assert_eq!(shared.get().members().len(), 1);
}

#[test]
fn expired_directory_refuses_lookups() {
    let anchor = NodeKey::generate();
    let a = NodeKey::generate();
    let dir = directory(
        &anchor,
        1,
        vec![member(
            "hospital-a",
            "https://a.example",
            &a,
            &["consult.packet"],
            "FR",
        )],
    );
    let later = Utc::now() + Duration::days(31);
    assert!(matches!(
        dir.check_fresh(later),
        Err(LookupError::DirectoryExpired(_))
    ));
    let raw = signed_directory(&anchor, 2, vec![]);
    assert!(matches!(
        Directory::verify(
            &raw,
            &TrustPolicy::new(vec![anchor.verifying_key()]),
            later,
            None
        ),
        Err(DirectoryError::Expired { .. })
    ));
}
