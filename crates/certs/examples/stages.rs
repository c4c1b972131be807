//! Times each verification stage over the expected-valid dgc-testdata cases (profiling aid).
#![allow(clippy::unwrap_used)] // a profiling aid over known-good data

fn main() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/dgc-testdata");
    let (cases, trust) = certs::bench::collect_cases(&dir, false).unwrap();
    let cases: Vec<_> = cases.into_iter().filter(|c| c.es256).collect();
    let n = 100;
    let t = |name: &str, f: &dyn Fn(&certs::bench::Case)| {
        let s = certs::bench::cpu_seconds();
        for _ in 0..n {
            for c in &cases {
                f(c);
            }
        }
        println!(
            "{name:>12}: {:7.2} us",
            (certs::bench::cpu_seconds() - s) * 1e6 / (n * cases.len()) as f64
        );
    };
    t("unprefix+b45", &|c| {
        std::hint::black_box(
            certs::hcert::base45_decode(certs::hcert::strip_prefix(&c.prefix).unwrap()).unwrap(),
        );
    });
    t("+inflate", &|c| {
        std::hint::black_box(
            certs::hcert::inflate(&certs::hcert::base45_decode(&c.prefix[4..]).unwrap()).unwrap(),
        );
    });
    t("+cose", &|c| {
        std::hint::black_box(certs::hcert::decode_text(&c.prefix).unwrap());
    });
    t("+claims", &|c| {
        let cose = certs::hcert::decode_text(&c.prefix).unwrap();
        std::hint::black_box(certs::hcert::Claims::parse(&cose.payload).unwrap());
    });
    t("+sig", &|c| {
        std::hint::black_box(
            certs::verifier::verify_dcc_signature(&trust, &c.prefix)
                .unwrap()
                .claims
                .iat,
        );
    });
    t("zlib-only", &|c| {
        let z = certs::hcert::base45_decode(&c.prefix[4..]).unwrap();
        std::hint::black_box(certs::hcert::inflate(&z).unwrap());
    });
    let payloads: Vec<Vec<u8>> = cases
        .iter()
        .map(|c| certs::hcert::decode_text(&c.prefix).unwrap().payload)
        .collect();
    let s = certs::bench::cpu_seconds();
    for _ in 0..n {
        for p in &payloads {
            std::hint::black_box(certs::hcert::Claims::parse(p).unwrap());
        }
    }
    println!(
        "claims-only: {:7.2} us",
        (certs::bench::cpu_seconds() - s) * 1e6 / (n * payloads.len()) as f64
    );
    let mut v = certs::Verifier::new(trust.clone(), None, certs::Clock::System);
    v.check_schema = false;
    t("full", &|c| {
        std::hint::black_box(v.verify_at(&c.prefix, c.clock));
    });
}
