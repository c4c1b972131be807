//! Prints how each SMART Health Card negative vector is rejected (development aid).
#![allow(clippy::unwrap_used)]
fn main() {
    let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/shc");
    let jwks: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(base.join("issuer/.well-known/jwks.json")).unwrap(),
    )
    .unwrap();
    let mut trust = certs::TrustList::new();
    trust.add_shc_issuer(
        certs::shc::ShcIssuer::from_jwks("https://spec.smarthealth.cards/examples/issuer", &jwks)
            .unwrap(),
    );
    let mut names: Vec<_> = std::fs::read_dir(base.join("negative"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    for p in names {
        let text = std::fs::read_to_string(&p).unwrap();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        let r = if name.contains("-b-") {
            certs::shc::parse_strict_json(&text)
                .and_then(|v| certs::shc::check_payload(&v, 1_900_000_000))
        } else if name.contains("-a-") {
            certs::shc::parse_strict_json(&text).and_then(|v| certs::shc::check_bundle(&v))
        } else if name.contains("-e-") {
            certs::shc::read_file(&p)
                .and_then(|t| certs::shc::verify_all(&trust, &t, 1_900_000_000))
                .map(|_| ())
        } else {
            certs::shc::verify(&trust, &text, 1_900_000_000).map(|_| ())
        };
        println!("{name}: {:?}", r.map_err(|e| (e.code(), e.to_string())));
    }
}
