//! MIT-format annotations written by wfdb-python's own writer (`scripts/make_annotation_fixture.py`) with
//! SKIP, SUB, CHN, NUM and AUX pseudo-codes, parsed here and compared with what wfdb-python reads back.

use std::path::Path;

use ecg::wfdb::annotation::{parse_annotations, write_annotations};

#[test]
fn matches_wfdb_python_on_every_pseudo_code() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/wfdb");
    let bytes = std::fs::read(dir.join("pseudo.tst")).unwrap();
    let ours = parse_annotations(&bytes).unwrap();
    let theirs: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("pseudo.json")).unwrap()).unwrap();
    let theirs = theirs.as_array().unwrap();
    assert_eq!(ours.len(), theirs.len());
    for (a, t) in ours.iter().zip(theirs) {
        assert_eq!(a.sample, t["sample"].as_i64().unwrap(), "{a:?}");
        assert_eq!(a.symbol(), t["symbol"].as_str().unwrap(), "{a:?}");
        assert_eq!(
            i64::from(a.subtype),
            t["subtype"].as_i64().unwrap(),
            "{a:?}"
        );
        assert_eq!(i64::from(a.chan), t["chan"].as_i64().unwrap(), "{a:?}");
        assert_eq!(i64::from(a.num), t["num"].as_i64().unwrap(), "{a:?}");
        assert_eq!(
            a.aux.as_deref().unwrap_or(""),
            t["aux"].as_str().unwrap(),
            "{a:?}"
        );
    }
    // Our writer's output reads back to the same annotations.
    assert_eq!(parse_annotations(&write_annotations(&ours)).unwrap(), ours);
    // Every truncation of the file is an error or a shorter list, never a panic.
    for cut in 0..bytes.len() {
        if let Ok(part) = parse_annotations(&bytes[..cut]) {
            assert!(part.len() <= ours.len());
        }
    }
}
