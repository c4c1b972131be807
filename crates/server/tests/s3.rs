//! Attachments in S3-compatible storage (object_store). Opt-in: `CARAVAN_TEST_S3_ENDPOINT=http://127.0.0.1:9000`
//! pointing at an S3-compatible server that accepts any credentials (`.ci/run` starts moto's server from PyPI).

mod common;
use common::*;
use reqwest::StatusCode;

#[tokio::test]
async fn attachments_round_trip_through_s3() {
    let Ok(endpoint) = std::env::var("CARAVAN_TEST_S3_ENDPOINT") else {
        eprintln!("skipped: set CARAVAN_TEST_S3_ENDPOINT to an S3-compatible endpoint");
        return;
    };
    let bucket = format!("caravan-{}", uuid::Uuid::new_v4().simple());
    let r = reqwest::Client::new()
        .put(format!("{endpoint}/{bucket}"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "create bucket: {}", r.status());
    // The node reads its S3 settings from the usual AWS_* variables, as an operator would set them. This is the
    // only test in this binary, so setting the environment races with nothing.
    for (k, v) in [
        ("AWS_ENDPOINT", endpoint.as_str()),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_ACCESS_KEY_ID", "caravan"),
        ("AWS_SECRET_ACCESS_KEY", "caravan-secret"),
        ("AWS_REGION", "us-east-1"),
    ] {
        std::env::set_var(k, v);
    }
    let spec = format!("s3://{bucket}/node-a");
    let blobs = caravan_server::Blobs::open(&spec).unwrap();
    blobs
        .put("probe/one", bytes::Bytes::from_static(b"hello"))
        .await
        .unwrap();
    assert_eq!(&blobs.get("probe/one").await.unwrap()[..], b"hello");
    let missing = blobs.get("probe/none").await.unwrap_err();
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    // A whole node on S3: upload an attachment as the referrer, read it back as the lead consultant.
    let node = start_with_blobs(
        caravan_server::NodeConfig {
            secure_cookies: false,
            ..Default::default()
        },
        Some(&spec),
    )
    .await;
    let referrer = Client::login(&node, "dr.aliyev").await;
    let (_, cases) = referrer
        .get("/api/v1/consultations?state=in_progress")
        .await;
    let cid = cases[0]["consultation"]["id"].as_str().unwrap().to_owned();
    let pdf = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n".to_vec();
    let (s, att) = referrer
        .upload(&cid, "echo.pdf", "application/pdf", pdf.clone())
        .await;
    assert_eq!(s, StatusCode::CREATED, "{att}");
    assert_eq!(
        referrer.download(att["id"].as_str().unwrap()).await,
        (StatusCode::OK, pdf)
    );
    // The bytes really are in the bucket, under the node's prefix and the attachment's content address.
    let listing = reqwest::Client::new()
        .get(format!("{endpoint}/{bucket}?list-type=2&prefix=node-a/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        listing.contains(att["sha256"].as_str().unwrap()),
        "{listing} / {att}"
    );

    // A file of several multipart parts (5 MB each): streamed into a staging upload, copied to its content
    // address, the staging object removed.
    let mut big = b"%PDF-1.7\n".to_vec();
    let mut seed = 1u64;
    while big.len() < 12 * 1024 * 1024 {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        big.push((seed >> 56) as u8);
    }
    let (s, att) = referrer
        .upload(&cid, "scan.pdf", "application/pdf", big.clone())
        .await;
    assert_eq!(s, StatusCode::CREATED, "{att}");
    assert_eq!(
        referrer.download(att["id"].as_str().unwrap()).await,
        (StatusCode::OK, big)
    );
    let listing = reqwest::Client::new()
        .get(format!("{endpoint}/{bucket}?list-type=2&prefix=node-a/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        listing.contains(att["sha256"].as_str().unwrap()),
        "{listing}"
    );
    assert!(
        !listing.contains("incoming"),
        "a staging object is left: {listing}"
    );
}
