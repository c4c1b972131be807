//! Pathology slides in the real `caravan` binary: DICOM WSI received over C-STORE and an Aperio SVS uploaded as a
//! case attachment, served as Deep Zoom behind the node's sign-in, with every role checked on the pages and the
//! tiles, and the accesses in the audit chain.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_caravan");
const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/crates/imaging/tests/data/wsi");

struct Running {
    child: Child,
    base: String,
    dicom: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(data: &Path) -> Running {
    start_with(data, &[])
}

fn start_with(data: &Path, extra: &[&str]) -> Running {
    let mut child = Command::new(BIN)
        .args(["demo", "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .args(["--insecure-cookies", "--dicom-listen", "127.0.0.1:0"])
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start caravan");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut dicom = None;
    let base = loop {
        let line = lines.next().expect("caravan exited early").unwrap();
        if let Some(rest) = line.strip_prefix("DICOM SCP CARAVAN listening on ") {
            dicom = Some(rest.trim().to_owned());
        }
        if let Some(rest) = line.strip_prefix("Caravan node listening on ") {
            break rest.trim_end_matches('/').to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Running {
        child,
        base,
        dicom: dicom.expect("the SCP address is printed"),
    }
}

fn token(data: &Path, user: &str) -> String {
    let out = Command::new(BIN)
        .args(["token", "create", "--user", user, "--data"])
        .arg(data)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{DATA}/{name}")).unwrap()
}

#[tokio::test]
async fn slides_are_served_as_deep_zoom_behind_sign_in_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path());
    let users = [
        ("dr.aliyev", true),
        ("radio.zhang", true),
        ("coordinator", true),
        ("officer", false),
        ("admin", false),
        ("patient", false),
    ];
    let tokens: Vec<(String, bool)> = users
        .iter()
        .map(|(u, allowed)| (token(dir.path(), u), *allowed))
        .collect();
    let referrer = tokens[0].0.clone();
    let consultant = tokens[1].0.clone();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let get = |url: String, tok: Option<String>| {
        let r = http.get(url);
        let r = match tok {
            Some(t) => r.bearer_auth(t),
            None => r,
        };
        async move { r.send().await.unwrap() }
    };

    // A DICOM WSI series (three levels and a label) over C-STORE.
    let files: Vec<Vec<u8>> = [
        "wsi-full-0.dcm",
        "wsi-full-1.dcm",
        "wsi-full-2.dcm",
        "wsi-full-label.dcm",
    ]
    .iter()
    .map(|n| fixture(n))
    .collect();
    let statuses = imaging::dimse::scu::store_files(&node.dicom, "SCANNER", "CARAVAN", &files)
        .await
        .unwrap();
    assert_eq!(statuses, vec![0, 0, 0, 0]);

    // The list page: every role, the sign-in first.
    let list = format!("{}/ui/slides", node.base);
    let r = get(list.clone(), None).await;
    assert!(r.status().is_redirection(), "{}", r.status());
    let mut page = String::new();
    for (tok, allowed) in &tokens {
        let r = get(list.clone(), Some(tok.clone())).await;
        if *allowed {
            assert_eq!(r.status(), 200);
            page = r.text().await.unwrap();
        } else {
            assert_eq!(r.status(), 403);
        }
    }
    let start = page.find("/ui/slides/dcm-").expect("the series is listed");
    let id: String = page[start + "/ui/slides/".len()..]
        .chars()
        .take_while(|c| *c != '"')
        .collect();
    assert!(page.contains("Slide Test (WSI-TEST)"), "{page}");

    // Descriptor and tiles: 401 without sign-in, 403 for the wrong roles, served to clinicians.
    let dzi = format!("{}/slides/{id}.dzi", node.base);
    let tile = |level: u32, c: u32, r: u32| {
        format!("{}/slides/{id}_files/{level}/{c}_{r}.jpeg", node.base)
    };
    assert_eq!(get(dzi.clone(), None).await.status(), 401);
    assert_eq!(get(tile(10, 0, 0), None).await.status(), 401);
    for (tok, allowed) in &tokens {
        let expected = if *allowed { 200 } else { 403 };
        assert_eq!(get(dzi.clone(), Some(tok.clone())).await.status(), expected);
        assert_eq!(
            get(tile(9, 0, 0), Some(tok.clone())).await.status(),
            expected
        );
        let viewer = format!("{}/ui/slides/{id}", node.base);
        assert_eq!(get(viewer, Some(tok.clone())).await.status(), expected);
    }
    let r = get(dzi.clone(), Some(consultant.clone())).await;
    assert_eq!(r.headers()["content-type"], "application/xml");
    let xml = r.text().await.unwrap();
    assert!(
        xml.contains("TileSize=\"254\"") && xml.contains("<Size Width=\"600\" Height=\"400\"/>"),
        "{xml}"
    );
    // The full-resolution tile (1, 1) is 256×147 (overlap on both sides across, above only) and shows the
    // reference pixels (JPEG twice: within a few levels).
    let r = get(tile(10, 1, 1), Some(consultant.clone())).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/jpeg");
    let img = image::load_from_memory(&r.bytes().await.unwrap())
        .unwrap()
        .to_rgb8();
    assert_eq!(img.dimensions(), (256, 147));
    let reference = image::open(format!("{DATA}/reference.png"))
        .unwrap()
        .to_rgb8();
    let mut err = 0u64;
    for (x, y, p) in img.enumerate_pixels() {
        let q = reference.get_pixel(253 + x, 253 + y);
        err += (0..3)
            .map(|c| u64::from(p.0[c].abs_diff(q.0[c])))
            .sum::<u64>();
    }
    let mean = err as f64 / (256.0 * 147.0 * 3.0);
    assert!(
        mean < 4.0,
        "tile differs from the reference by {mean:.2} on average"
    );
    // Outside the pyramid and malformed names.
    assert_eq!(
        get(tile(11, 0, 0), Some(consultant.clone())).await.status(),
        404
    );
    assert_eq!(
        get(tile(10, 3, 0), Some(consultant.clone())).await.status(),
        404
    );
    let bad = format!("{}/slides/dcm-1.2-x.dzi", node.base);
    assert_eq!(get(bad, Some(consultant.clone())).await.status(), 400);
    let missing = format!("{}/slides/dcm-1.2.3-4.5.6.dzi", node.base);
    assert_eq!(get(missing, Some(consultant.clone())).await.status(), 404);

    // An Aperio SVS as a case attachment (browsers send .svs as application/octet-stream).
    let cases: Value = http
        .get(format!("{}/api/v1/consultations?mine=true", node.base))
        .bearer_auth(&referrer)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let case = cases[0]["consultation"]["id"]
        .as_str()
        .expect("the referrer has a case")
        .to_owned();
    let upload = |name: &'static str, mime: &'static str, bytes: Vec<u8>| {
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(bytes)
                .file_name(name)
                .mime_str(mime)
                .unwrap(),
        );
        http.post(format!(
            "{}/api/v1/consultations/{case}/attachments",
            node.base
        ))
        .bearer_auth(&referrer)
        .multipart(form)
        .send()
    };
    let r = upload(
        "biopsy.svs",
        "application/octet-stream",
        fixture("aperio-jpeg.svs"),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    let a: Value = r.json().await.unwrap();
    assert_eq!(a["content_type"], "image/tiff");
    let svs = format!("att-{}", a["id"].as_str().unwrap());
    let r = get(
        format!("{}/slides/{svs}.dzi", node.base),
        Some(referrer.clone()),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("<Size Width=\"600\" Height=\"400\"/>"));
    for (c, r) in [(0, 0), (1, 0), (2, 1)] {
        let resp = get(
            format!("{}/slides/{svs}_files/10/{c}_{r}.jpeg", node.base),
            Some(referrer.clone()),
        )
        .await;
        assert_eq!(resp.status(), 200);
    }
    // The case page links it to the viewer.
    let case_page = get(
        format!("{}/ui/consultations/{case}", node.base),
        Some(referrer.clone()),
    )
    .await
    .text()
    .await
    .unwrap();
    assert!(
        case_page.contains(&format!("/ui/slides/{svs}")),
        "no viewer link on the case page"
    );
    // A truncated SVS is stored as a file but refused as a slide, with the reason.
    let mut cut = fixture("aperio-jpeg.svs");
    cut.truncate(cut.len() / 2);
    let r = upload("cut.svs", "application/octet-stream", cut)
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let cut_id = format!(
        "att-{}",
        r.json::<Value>().await.unwrap()["id"].as_str().unwrap()
    );
    let r = get(
        format!("{}/slides/{cut_id}.dzi", node.base),
        Some(referrer.clone()),
    )
    .await;
    assert_eq!(r.status(), 422);
    let body = r.text().await.unwrap();
    assert!(body.contains("truncated"), "{body}");
    // Attachments of other types are not slides.
    let r = upload("note.txt", "text/plain", b"plain text".to_vec())
        .await
        .unwrap();
    let txt = format!(
        "att-{}",
        r.json::<Value>().await.unwrap()["id"].as_str().unwrap()
    );
    assert_eq!(
        get(
            format!("{}/slides/{txt}.dzi", node.base),
            Some(referrer.clone())
        )
        .await
        .status(),
        404
    );

    // The viewer's script is served from the node.
    let js = get(format!("{}/ui/slides/viewer.js", node.base), None).await;
    assert_eq!(js.status(), 200);
    assert!(js.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));

    // Audit: one event per descriptor, tiles once per user and slide, the SVS with its patient.
    let db = dir.path().join("caravan.sqlite");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=ro", db.display()))
        .await
        .unwrap();
    let rows: Vec<(String, String, String, Option<String>)> = sqlx::query_as(
        "SELECT actor_name, entity_id, detail, patient_id FROM audit_events WHERE entity_type = 'slide' ORDER BY seq",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    let count = |entity: &str, detail: &str| {
        rows.iter()
            .filter(|r| r.1 == entity && r.2 == detail)
            .count()
    };
    assert_eq!(count(&id, "dzi"), 4, "{rows:?}"); // three clinicians + the second consultant read
    assert_eq!(count(&id, "tiles"), 3, "{rows:?}"); // once per clinician despite several tiles
    assert_eq!(count(&svs, "dzi"), 1, "{rows:?}");
    assert_eq!(count(&svs, "tiles"), 1, "{rows:?}");
    assert!(
        rows.iter().filter(|r| r.1 == svs).all(|r| r.3.is_some()),
        "the SVS access names its patient"
    );
    assert!(rows.iter().any(|r| r.2 == "list"));
    drop(node);
    let out = Command::new(BIN)
        .args(["audit", "verify", "--data"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Side of the tiles of [`big_tiff`].
const TILE: u32 = 256;

/// The base colour of tile `k` of [`big_tiff`] (its pixels add noise of 0..=40 to it).
fn tile_colour(k: u32) -> [u8; 3] {
    [
        (k * 37 % 200) as u8,
        (k * 91 % 200) as u8,
        (k * 53 % 200) as u8,
    ]
}

/// A tiled RGB TIFF, uncompressed, `across` × `down` tiles of 256 × 256 written by hand: tile `k` is
/// [`tile_colour`]`(k)` plus pseudo-random noise, so the file is as large as its pixels.
fn big_tiff(across: u32, down: u32) -> Vec<u8> {
    let n = (across * down) as usize;
    let tile_bytes = (TILE * TILE * 3) as usize;
    let entries: u32 = 11;
    let ifd = 8u32;
    let bits = ifd + 2 + entries * 12 + 4;
    let offsets = bits + 6;
    let counts = offsets + 4 * n as u32;
    let first_tile = counts + 4 * n as u32;
    let mut f = Vec::with_capacity(first_tile as usize + n * tile_bytes);
    f.extend_from_slice(b"II*\0");
    f.extend_from_slice(&ifd.to_le_bytes());
    f.extend_from_slice(&(entries as u16).to_le_bytes());
    let mut entry = |tag: u16, kind: u16, count: u32, value: u32| {
        f.extend_from_slice(&tag.to_le_bytes());
        f.extend_from_slice(&kind.to_le_bytes());
        f.extend_from_slice(&count.to_le_bytes());
        f.extend_from_slice(&value.to_le_bytes());
    };
    let (short, long) = (3u16, 4u16);
    entry(256, long, 1, across * TILE); // ImageWidth
    entry(257, long, 1, down * TILE); // ImageLength
    entry(258, short, 3, bits); // BitsPerSample 8,8,8
    entry(259, short, 1, 1); // Compression: none
    entry(262, short, 1, 2); // PhotometricInterpretation: RGB
    entry(277, short, 1, 3); // SamplesPerPixel
    entry(284, short, 1, 1); // PlanarConfiguration: chunky
    entry(322, long, 1, TILE); // TileWidth
    entry(323, long, 1, TILE); // TileLength
    entry(324, long, n as u32, offsets); // TileOffsets
    entry(325, long, n as u32, counts); // TileByteCounts
    f.extend_from_slice(&0u32.to_le_bytes());
    for _ in 0..3 {
        f.extend_from_slice(&8u16.to_le_bytes());
    }
    for k in 0..n {
        f.extend_from_slice(&(first_tile + (k * tile_bytes) as u32).to_le_bytes());
    }
    for _ in 0..n {
        f.extend_from_slice(&(tile_bytes as u32).to_le_bytes());
    }
    assert_eq!(f.len(), first_tile as usize);
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    for k in 0..n as u32 {
        let base = tile_colour(k);
        for i in 0..tile_bytes {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            f.push(base[i % 3] + ((seed >> 33) % 41) as u8);
        }
    }
    f
}

#[tokio::test]
async fn a_tiff_larger_than_the_body_limit_streams_in_through_the_form_and_the_api_and_is_read_by_range(
) {
    let dir = tempfile::tempdir().unwrap();
    // 12 × 11 tiles: a 26 MB file, over the 20 MB body limit; attachments may be up to 30 MB here.
    let limit: u64 = 30_000_000;
    let node = start_with(dir.path(), &["--max-attachment-bytes", &limit.to_string()]);
    let (across, down) = (12u32, 11u32);
    let tiff = big_tiff(across, down);
    assert!(tiff.len() > 20 * 1024 * 1024, "{} bytes", tiff.len());
    let http = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let session: Value = http
        .post(format!("{}/api/v1/session", node.base))
        .json(&serde_json::json!({ "username": "dr.aliyev", "password": caravan_server::demo::DEMO_PASSWORD }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let csrf = session["csrf_token"].as_str().unwrap().to_owned();
    let cases: Value = http
        .get(format!("{}/api/v1/consultations?mine=true", node.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let case = cases[0]["consultation"]["id"].as_str().unwrap().to_owned();
    let part = |bytes: Vec<u8>, name: &str, mime: &str| {
        reqwest::multipart::Part::bytes(bytes)
            .file_name(name.to_owned())
            .mime_str(mime)
            .unwrap()
    };
    let attachments = || async {
        let v: Value = http
            .get(format!("{}/api/v1/consultations/{case}", node.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["attachments"].as_array().unwrap().clone()
    };

    // The case page's form (CSRF token first), as a browser sends an .svs: application/octet-stream.
    let form = reqwest::multipart::Form::new()
        .text("csrf", csrf.clone())
        .part(
            "file",
            part(tiff.clone(), "large.svs", "application/octet-stream"),
        );
    let r = http
        .post(format!("{}/ui/consultations/{case}/attachments", node.base))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    let listed = attachments().await;
    let by_form = listed
        .iter()
        .find(|a| a["filename"] == "large.svs")
        .expect("the form's upload is listed");
    assert_eq!(by_form["content_type"], "image/tiff");
    assert_eq!(by_form["size"], tiff.len() as u64);
    // The JSON API, the same bytes under another name: stored once (content-addressed).
    let form =
        reqwest::multipart::Form::new().part("file", part(tiff.clone(), "large.tif", "image/tiff"));
    let r = http
        .post(format!(
            "{}/api/v1/consultations/{case}/attachments",
            node.base
        ))
        .header("x-csrf-token", &csrf)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let by_api: Value = r.json().await.unwrap();
    assert_eq!(by_api["sha256"], by_form["sha256"]);
    assert_eq!(by_api["size"], tiff.len() as u64);

    // Both open as slides; Deep Zoom tiles show the tiles' own pixels, read by range.
    for a in [
        by_form["id"].as_str().unwrap(),
        by_api["id"].as_str().unwrap(),
    ] {
        let id = format!("att-{a}");
        let r = http
            .get(format!("{}/slides/{id}.dzi", node.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let xml = r.text().await.unwrap();
        assert!(
            xml.contains(&format!(
                "<Size Width=\"{}\" Height=\"{}\"/>",
                across * TILE,
                down * TILE
            )),
            "{xml}"
        );
        // Deep Zoom level 12 is full resolution (3072 wide); its tiles are 254 px plus a 1 px overlap.
        for (c, r) in [(0u32, 0u32), (6, 5), (11, 10)] {
            let resp = http
                .get(format!("{}/slides/{id}_files/12/{c}_{r}.jpeg", node.base))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            let img = image::load_from_memory(&resp.bytes().await.unwrap())
                .unwrap()
                .to_rgb8();
            // The source tile under the Deep Zoom tile's centre, and the mean of the pixels that lie in it
            // (8 px away from its edges, where JPEG blocks mix in the neighbours).
            let (x0, y0) = (c * 254 - u32::from(c > 0), r * 254 - u32::from(r > 0));
            let (cx, cy) = (
                (x0 + img.width() / 2) / TILE,
                (y0 + img.height() / 2) / TILE,
            );
            let k = cy * across + cx;
            let (mut sum, mut n) = ([0u64; 3], 0u64);
            for (x, y, p) in img.enumerate_pixels() {
                let (sx, sy) = (x0 + x, y0 + y);
                let inside = |s: u32, t: u32| s >= t * TILE + 8 && s < (t + 1) * TILE - 8;
                if inside(sx, cx) && inside(sy, cy) {
                    for (s, v) in sum.iter_mut().zip(p.0) {
                        *s += u64::from(v);
                    }
                    n += 1;
                }
            }
            assert!(n > 10_000, "{n} pixels in tile {k}");
            let base = tile_colour(k);
            for ch in 0..3 {
                let mean = sum[ch] as f64 / n as f64;
                let want = f64::from(base[ch]) + 20.0;
                assert!(
                    (mean - want).abs() < 6.0,
                    "Deep Zoom tile ({c}, {r}) channel {ch}: mean {mean:.1}, source tile {k} has {want}"
                );
            }
        }
    }
    // The download streams the bytes back unchanged.
    let r = http
        .get(format!(
            "{}/api/v1/attachments/{}",
            node.base,
            by_api["id"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-length"].to_str().unwrap(),
        tiff.len().to_string()
    );
    assert!(r.bytes().await.unwrap() == tiff, "the download differs");

    // Over the attachment limit: 413, and nothing of it is stored.
    let mut over = tiff.clone();
    over.resize(limit as usize + 1, 0);
    let form = reqwest::multipart::Form::new().part("file", part(over, "over.svs", "image/tiff"));
    let r = http
        .post(format!(
            "{}/api/v1/consultations/{case}/attachments",
            node.base
        ))
        .header("x-csrf-token", &csrf)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(attachments().await.len(), listed.len() + 1);
    let mut files = Vec::new();
    let mut dirs = vec![dir.path().join("blobs")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                dirs.push(e.path());
            } else {
                files.push(e.path());
            }
        }
    }
    let stored: Vec<_> = files
        .iter()
        .filter(|f| std::fs::metadata(f).unwrap().len() >= tiff.len() as u64)
        .collect();
    assert_eq!(
        stored.len(),
        1,
        "one blob for the two uploads, none for the refused one: {files:?}"
    );
    assert!(
        files
            .iter()
            .all(|f| !f.to_string_lossy().contains("incoming")),
        "no staging file is left: {files:?}"
    );
}
