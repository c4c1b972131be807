//! Black-box test of `caravan trust`: the node's certificate material from files, on the command line.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_caravan");

fn data(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn trust(args: &[&str]) -> (bool, Value, String) {
    let out = Command::new(BIN).arg("trust").args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    // Some commands print one JSON document per input: keep the last.
    let last = stdout
        .rfind("\n{")
        .map_or(stdout.as_str(), |i| &stdout[i + 1..])
        .to_owned();
    (
        out.status.success(),
        serde_json::from_str(&last).unwrap_or(Value::Null),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn trust_lists_rules_and_issuer_keys_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let (ok, v, err) = trust(&[
        "import",
        "--data",
        d,
        data("crates/server/fixtures/certs/dgc-testdata-dsc.json")
            .to_str()
            .unwrap(),
    ]);
    assert!(ok, "{err}");
    assert_eq!(v["imported"]["dsc"]["DE"], 1, "{v}");
    let (ok, _, err) = trust(&[
        "import",
        "--data",
        d,
        "--country",
        "LU",
        data("crates/certs/tests/data/issuer/es256.dsc.pem")
            .to_str()
            .unwrap(),
    ]);
    assert!(ok, "{err}");
    let (ok, v, err) = trust(&[
        "rules",
        "--data",
        d,
        data("crates/server/fixtures/certs/rules.json")
            .to_str()
            .unwrap(),
    ]);
    assert!(ok, "{err}");
    assert_eq!(v["imported"]["rules"]["DE"], 11, "{v}");
    let (ok, _, err) = trust(&[
        "issuer",
        "--data",
        d,
        "--dcc-country",
        "UZ",
        "--shc-key",
        "--shc-iss",
        "https://node.example/shc",
    ]);
    assert!(ok, "{err}");
    let (ok, v, _) = trust(&["list", "--data", d]);
    assert!(ok);
    let countries: Vec<&str> = v["countries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert!(countries.contains(&"LU") && countries.contains(&"UZ") && countries.contains(&"DE"));
    assert_eq!(v["issuer"]["shc_iss"], "https://node.example/shc");
    assert_eq!(v["rules"]["CH"], 20);
    let (ok, v, _) = trust(&["remove", "--data", d, "--country", "DE"]);
    assert!(ok);
    assert_eq!(v["removed"], 1);
    let (ok, v, _) = trust(&["export", "--data", d]);
    assert!(ok);
    assert!(v["dsc"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["country"] != "DE"));
    // A file that is no trust list, and an issuer URL that is not https: exit 1 with the reason.
    let (ok, _, err) = trust(&["import", "--data", d, data("Cargo.toml").to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("not a usable trust list"), "{err}");
    let (ok, _, err) = trust(&["issuer", "--data", d, "--shc-iss", "http://x"]);
    assert!(!ok);
    assert!(err.contains("https"), "{err}");
}
