//! `caravan keys ...` and `caravan directory ...` through clap parsing, on real files.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::ExitCode;

use caravan_federation::cli::{run, Command};
use caravan_federation::directory::{tls_spki_pin, KeyStatus, Level, Member};
use caravan_federation::keys::Keyring;
use caravan_federation::NodeId;
use chrono::{Duration, Utc};
use clap::{CommandFactory, Parser};
use serde_json::{json, Value};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: Command,
}

fn caravan(args: &[&str]) -> ExitCode {
    let mut argv = vec!["caravan"];
    argv.extend_from_slice(args);
    run(Cli::try_parse_from(argv).unwrap().cmd)
}

#[test]
fn clap_definitions_are_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn keys_and_directory_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |name: &str| tmp.path().join(name).to_str().unwrap().to_string();

    assert_eq!(
        caravan(&[
            "keys",
            "generate",
            "--out",
            &p("anchor.json"),
            "--node-id",
            "anchor"
        ]),
        ExitCode::SUCCESS
    );
    assert_eq!(
        caravan(&[
            "keys",
            "generate",
            "--out",
            &p("a.json"),
            "--node-id",
            "hospital-a"
        ]),
        ExitCode::SUCCESS
    );
    // No silent overwrite of a key.
    assert_eq!(
        caravan(&["keys", "generate", "--out", &p("a.json")]),
        ExitCode::from(2)
    );
    assert_eq!(
        caravan(&[
            "keys",
            "generate",
            "--out",
            &p("x.json"),
            "--node-id",
            "bad id"
        ]),
        ExitCode::from(2)
    );
    assert_eq!(
        caravan(&["keys", "show", "--keyring", &p("a.json")]),
        ExitCode::SUCCESS
    );
    assert_eq!(
        caravan(&["keys", "show", "--keyring", &p("a.json"), "--json"]),
        ExitCode::SUCCESS
    );

    let ring = Keyring::load(tmp.path().join("a.json").as_path()).unwrap();
    let now = Utc::now();
    let member = Member {
        node_id: NodeId::new("hospital-a").unwrap(),
        display_name: "Hospital A".into(),
        level: Level::Hospital,
        country: "FR".into(),
        base_url: "https://a.example".into(),
        keys: ring.directory_keys(),
        message_types: vec!["consult.packet".into()],
        valid_from: now - Duration::days(1),
        valid_until: None,
        tls_spki_sha256: vec![tls_spki_pin(b"a TLS key")],
    };
    let unsigned = json!({
        "network": "caravan-demo",
        "serial": 3,
        "issued_at": now - Duration::minutes(1),
        "expires_at": now + Duration::days(30),
        "members": [member],
    });
    std::fs::write(
        p("unsigned.json"),
        serde_json::to_vec_pretty(&unsigned).unwrap(),
    )
    .unwrap();
    assert_eq!(
        caravan(&[
            "directory",
            "sign",
            "--anchor-key",
            &p("anchor.json"),
            "--in",
            &p("unsigned.json"),
            "--out",
            &p("signed.json")
        ]),
        ExitCode::SUCCESS
    );
    let signed: Value = serde_json::from_slice(&std::fs::read(p("signed.json")).unwrap()).unwrap();
    let anchor = Keyring::load(tmp.path().join("anchor.json").as_path()).unwrap();
    assert_eq!(signed["anchors"][0], anchor.active().kid().as_str());
    assert_eq!(signed["signatures"].as_array().unwrap().len(), 1);
    // The optional TLS pin is signed like the keys: changing it breaks the anchor signature.
    assert_eq!(
        signed["members"][0]["tls_spki_sha256"][0],
        tls_spki_pin(b"a TLS key").as_str()
    );
    let mut repinned = signed.clone();
    repinned["members"][0]["tls_spki_sha256"] = json!([tls_spki_pin(b"an attacker's key")]);
    std::fs::write(p("repinned.json"), serde_json::to_vec(&repinned).unwrap()).unwrap();

    let anchor_pub = anchor.active().public_key_b64();
    assert_eq!(
        caravan(&[
            "directory",
            "verify",
            "--anchor",
            &anchor_pub,
            &p("signed.json")
        ]),
        ExitCode::SUCCESS
    );
    assert_eq!(
        caravan(&[
            "directory",
            "verify",
            "--anchor",
            &p("anchor.json"),
            &p("signed.json")
        ]),
        ExitCode::SUCCESS
    );
    assert_eq!(
        caravan(&[
            "directory",
            "show",
            "--anchor",
            &anchor_pub,
            &p("signed.json")
        ]),
        ExitCode::SUCCESS
    );
    assert_eq!(
        caravan(&["directory", "show", &p("signed.json")]),
        ExitCode::SUCCESS
    );
    // Wrong anchor, rollback, tampering: refused with exit code 1.
    let other = ring.active().public_key_b64();
    assert_eq!(
        caravan(&["directory", "verify", "--anchor", &other, &p("signed.json")]),
        ExitCode::from(1)
    );
    assert_eq!(
        caravan(&[
            "directory",
            "verify",
            "--anchor",
            &anchor_pub,
            "--held-serial",
            "4",
            &p("signed.json")
        ]),
        ExitCode::from(1)
    );
    assert_eq!(
        caravan(&[
            "directory",
            "verify",
            "--anchor",
            &anchor_pub,
            &p("repinned.json")
        ]),
        ExitCode::from(1)
    );
    let mut tampered = signed.clone();
    tampered["members"][0]["base_url"] = json!("https://evil.example");
    std::fs::write(p("tampered.json"), serde_json::to_vec(&tampered).unwrap()).unwrap();
    assert_eq!(
        caravan(&[
            "directory",
            "verify",
            "--anchor",
            &anchor_pub,
            &p("tampered.json")
        ]),
        ExitCode::from(1)
    );
    assert_eq!(
        caravan(&[
            "directory",
            "verify",
            "--anchor",
            &anchor_pub,
            &p("missing.json")
        ]),
        ExitCode::from(2)
    );
    // An unsigned body that is inconsistent (kid not matching its key) is not signed.
    let mut bad = unsigned.clone();
    bad["members"][0]["keys"][0]["kid"] = json!(anchor.active().kid().as_str());
    std::fs::write(p("bad.json"), serde_json::to_vec(&bad).unwrap()).unwrap();
    assert_eq!(
        caravan(&[
            "directory",
            "sign",
            "--anchor-key",
            &p("anchor.json"),
            "--in",
            &p("bad.json"),
            "--out",
            &p("bad-signed.json")
        ]),
        ExitCode::from(1)
    );

    // Rotation keeps the old key as retired, and the file stays private.
    let old = ring.active().kid().clone();
    assert_eq!(
        caravan(&["keys", "rotate", "--keyring", &p("a.json")]),
        ExitCode::SUCCESS
    );
    let rotated = Keyring::load(tmp.path().join("a.json").as_path()).unwrap();
    assert_ne!(rotated.active().kid(), &old);
    assert_eq!(rotated.retired()[0].kid, old);
    let keys = rotated.directory_keys();
    assert_eq!(keys[1].status, KeyStatus::Retired);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(p("a.json")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}

#[test]
fn signing_with_a_pkcs8_pem_anchor() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |name: &str| tmp.path().join(name).to_str().unwrap().to_string();
    // RFC 9421 B.1.4's Ed25519 key as an anchor, as `openssl genpkey -algorithm ed25519` would write it.
    std::fs::write(
        p("anchor.pem"),
        "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    std::fs::write(
        p("anchor.pub.pem"),
        "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=\n-----END PUBLIC KEY-----\n",
    )
    .unwrap();
    let now = Utc::now();
    let unsigned = json!({
        "network": "n", "serial": 1, "issued_at": now, "expires_at": now + Duration::days(1), "members": []
    });
    std::fs::write(p("u.json"), unsigned.to_string()).unwrap();
    assert_eq!(
        caravan(&[
            "directory",
            "sign",
            "--anchor-key",
            &p("anchor.pem"),
            "--in",
            &p("u.json"),
            "--out",
            &p("s.json")
        ]),
        ExitCode::SUCCESS
    );
    assert_eq!(
        caravan(&[
            "directory",
            "verify",
            "--anchor",
            &p("anchor.pub.pem"),
            &p("s.json")
        ]),
        ExitCode::SUCCESS
    );
}
