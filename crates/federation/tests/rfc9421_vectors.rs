//! Interoperability: RFC 9421 Appendix B and RFC 9530 test vectors.
//!
//! Source of the constants: RFC 9421 "HTTP Message Signatures" (Backman, Richer, Sporny; February 2024),
//! Appendix B.1.4 (test-key-ed25519), B.2 (the test request) and B.2.1, B.2.3, B.2.5, B.2.6 (signature
//! inputs, bases and values); RFC 9530 "Digest Fields" Appendix B (the `{"hello": "world"}` digests).
//! Copyright (c) IETF Trust and the persons identified as the document authors; code components are
//! under the Revised BSD License.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use caravan_federation::httpsig::{
    check_content_digest, content_digest, parse_signature, sign_with_params, signature_base,
    verify_request, HttpSigError, ParamValue, RequestParts, SignatureParams, VerifyPolicy,
};
use caravan_federation::keys::NodeKey;
use hmac::{Hmac, Mac};
use http::HeaderMap;

const ED25519_PRIVATE_PEM: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF
-----END PRIVATE KEY-----
";
const ED25519_PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=
-----END PUBLIC KEY-----
";
const HMAC_SECRET: &str =
    "uzvJfB4u3N0Jy4T7NZ75MDVcr8zSTInedJtkgcu46YW4XByzNJjxBdtjUkdJPBtbmHhIDi6pcl8jsasjlTMtDQ==";

const TARGET: &str = "https://example.com/foo?param=Value&Pet=dog";
const BODY: &[u8] = br#"{"hello": "world"}"#;

fn test_request_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("host", "example.com".parse().unwrap());
    h.insert("date", "Tue, 20 Apr 2021 02:07:55 GMT".parse().unwrap());
    h.insert("content-type", "application/json".parse().unwrap());
    h.insert(
        "content-digest",
        "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:"
            .parse()
            .unwrap(),
    );
    h.insert("content-length", "18".parse().unwrap());
    h
}

fn parts(h: &HeaderMap) -> RequestParts<'_> {
    RequestParts {
        method: "POST",
        target_uri: TARGET,
        headers: h,
        body: BODY,
    }
}

/// Parses a `Signature-Input` value (with a placeholder `Signature`) into parameters.
fn params_of(label: &str, input: &str) -> SignatureParams {
    let mut h = HeaderMap::new();
    h.insert("signature-input", input.parse().unwrap());
    h.insert("signature", format!("{label}=:AAAA:").parse().unwrap());
    parse_signature(&h, label).unwrap().0
}

#[test]
fn b21_minimal_signature_base() {
    let input =
        r#"sig-b21=();created=1618884473;keyid="test-key-rsa-pss";nonce="b3k2pp5k7z-50gnwp.yemd""#;
    let p = params_of("sig-b21", input);
    let h = test_request_headers();
    assert_eq!(
        signature_base(&p, &parts(&h)).unwrap(),
        r#""@signature-params": ();created=1618884473;keyid="test-key-rsa-pss";nonce="b3k2pp5k7z-50gnwp.yemd""#
    );
}

#[test]
fn b23_full_coverage_signature_base() {
    let input = r#"sig-b23=("date" "@method" "@path" "@query" "@authority" "content-type" "content-digest" "content-length");created=1618884473;keyid="test-key-rsa-pss""#;
    let p = params_of("sig-b23", input);
    let h = test_request_headers();
    let expected = [
        r#""date": Tue, 20 Apr 2021 02:07:55 GMT"#,
        r#""@method": POST"#,
        r#""@path": /foo"#,
        r#""@query": ?param=Value&Pet=dog"#,
        r#""@authority": example.com"#,
        r#""content-type": application/json"#,
        r#""content-digest": sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:"#,
        r#""content-length": 18"#,
        r#""@signature-params": ("date" "@method" "@path" "@query" "@authority" "content-type" "content-digest" "content-length");created=1618884473;keyid="test-key-rsa-pss""#,
    ]
    .join("\n");
    assert_eq!(signature_base(&p, &parts(&h)).unwrap(), expected);
}

#[test]
fn b25_hmac_proves_the_base_byte_for_byte() {
    let input = r#"sig-b25=("date" "@authority" "content-type");created=1618884473;keyid="test-shared-secret""#;
    let p = params_of("sig-b25", input);
    let h = test_request_headers();
    let base = signature_base(&p, &parts(&h)).unwrap();
    let mut mac =
        Hmac::<sha2::Sha256>::new_from_slice(&STANDARD.decode(HMAC_SECRET).unwrap()).unwrap();
    mac.update(base.as_bytes());
    assert_eq!(
        STANDARD.encode(mac.finalize().into_bytes()),
        "pxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8="
    );
}

const B26_INPUT: &str = r#"sig-b26=("date" "@method" "@path" "@authority" "content-type" "content-length");created=1618884473;keyid="test-key-ed25519""#;
const B26_SIGNATURE: &str = "sig-b26=:wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw==:";

#[test]
fn b26_ed25519_signature_is_reproduced_exactly() {
    let key = NodeKey::from_pkcs8_pem(ED25519_PRIVATE_PEM).unwrap();
    let params = SignatureParams {
        components: [
            "date",
            "@method",
            "@path",
            "@authority",
            "content-type",
            "content-length",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        params: vec![
            ("created".into(), ParamValue::Int(1618884473)),
            ("keyid".into(), ParamValue::Str("test-key-ed25519".into())),
        ],
    };
    let h = test_request_headers();
    let (input, signature) = sign_with_params(&key, "sig-b26", &params, &parts(&h)).unwrap();
    assert_eq!(input, B26_INPUT);
    // Ed25519 is deterministic: the RFC's signature value must come out exactly.
    assert_eq!(signature, B26_SIGNATURE);
}

fn b26_policy() -> VerifyPolicy {
    VerifyPolicy {
        label: "sig-b26".into(),
        required_components: vec!["@method".into(), "@authority".into()],
        max_skew_secs: 30,
        max_age_secs: 300,
        // The RFC example has no expires, nonce or alg.
        strict_params: false,
    }
}

#[test]
fn b26_ed25519_signature_verifies_with_the_rfc_public_key() {
    use ed25519_dalek::pkcs8::DecodePublicKey;
    let public = ed25519_dalek::VerifyingKey::from_public_key_pem(ED25519_PUBLIC_PEM).unwrap();
    let mut h = test_request_headers();
    h.insert("signature-input", B26_INPUT.parse().unwrap());
    h.insert("signature", B26_SIGNATURE.parse().unwrap());
    let v = verify_request(&parts(&h), &b26_policy(), 1618884473 + 10, |kid| {
        assert_eq!(kid, "test-key-ed25519");
        Ok((public, ()))
    })
    .unwrap();
    assert_eq!(v.created, 1618884473);

    // A changed covered header breaks it.
    let mut changed = h.clone();
    changed.insert("date", "Tue, 20 Apr 2021 02:07:56 GMT".parse().unwrap());
    assert_eq!(
        verify_request(&parts(&changed), &b26_policy(), 1618884473, |_| Ok((
            public,
            ()
        )))
        .unwrap_err(),
        HttpSigError::BadSignature
    );
    // So does another method.
    let mut p = parts(&h);
    p.method = "PUT";
    assert_eq!(
        verify_request(&p, &b26_policy(), 1618884473, |_| Ok((public, ()))).unwrap_err(),
        HttpSigError::BadSignature
    );
    // Years later the signature is refused as too old.
    assert!(matches!(
        verify_request(&parts(&h), &b26_policy(), 1_700_000_000, |_| Ok((
            public,
            ()
        ))),
        Err(HttpSigError::TooOld { .. })
    ));
}

#[test]
fn rfc9530_content_digests() {
    // RFC 9530 Appendix B: sha-256 of {"hello": "world"}.
    assert_eq!(
        content_digest(BODY),
        "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"
    );
    check_content_digest(
        "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:",
        BODY,
    )
    .unwrap();
    // RFC 9421's test request carries the sha-512 form.
    let h = test_request_headers();
    check_content_digest(h.get("content-digest").unwrap().to_str().unwrap(), BODY).unwrap();
    assert_eq!(
        check_content_digest(&content_digest(BODY), br#"{"hello": "world!"}"#),
        Err(HttpSigError::DigestMismatch)
    );
    assert_eq!(
        check_content_digest("md5=:AAAA:", BODY),
        Err(HttpSigError::UnsupportedDigest)
    );
    assert!(matches!(
        check_content_digest("sha-256=not-a-byte-sequence", BODY),
        Err(HttpSigError::Malformed { .. })
    ));
}
