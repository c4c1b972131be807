//! The guard against hand-made hostile inputs (each one a way dicom-rs 0.10 would reserve far more memory
//! than the input holds), the fuzz finds kept in the ECG crate, and every DICOM file of the repository's
//! test data (nothing dicom-rs opens may be refused).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use caravan_dicom_guard::{check_part10, open_part10, read_dataset, GuardError, MAX_DEPTH};
use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";
const IMPLICIT_LE: &str = "1.2.840.10008.1.2";

/// "DICM" and a file meta group naming `ts` (no preamble).
fn meta(ts: &str) -> Vec<u8> {
    let mut ts = ts.as_bytes().to_vec();
    if ts.len() % 2 == 1 {
        ts.push(0);
    }
    let mut group = vec![0x02, 0x00, 0x10, 0x00, b'U', b'I'];
    group.extend_from_slice(&(ts.len() as u16).to_le_bytes());
    group.extend_from_slice(&ts);
    let mut b = b"DICM".to_vec();
    b.extend_from_slice(&[0x02, 0x00, 0x00, 0x00, b'U', b'L', 4, 0]);
    b.extend_from_slice(&(group.len() as u32).to_le_bytes());
    b.extend_from_slice(&group);
    b
}

/// An explicit VR little endian element header with a 32-bit length.
fn long_header(group: u16, element: u16, vr: &[u8; 2], len: u32) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&group.to_le_bytes());
    h.extend_from_slice(&element.to_le_bytes());
    h.extend_from_slice(vr);
    h.extend_from_slice(&[0, 0]);
    h.extend_from_slice(&len.to_le_bytes());
    h
}

fn short_header(group: u16, element: u16, vr: &[u8; 2], len: u16) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&group.to_le_bytes());
    h.extend_from_slice(&element.to_le_bytes());
    h.extend_from_slice(vr);
    h.extend_from_slice(&len.to_le_bytes());
    h
}

/// An item (or delimiter) header: tag FFFE,xxxx and a 32-bit length.
fn item(element: u16, len: u32) -> Vec<u8> {
    let mut h = vec![0xFE, 0xFF];
    h.extend_from_slice(&element.to_le_bytes());
    h.extend_from_slice(&len.to_le_bytes());
    h
}

fn refusal(bytes: &[u8]) -> String {
    let e = check_part10(bytes).unwrap_err();
    assert!(
        matches!(
            e,
            GuardError::DeclaredLength { .. } | GuardError::TooDeep { .. }
        ),
        "{e:?}"
    );
    e.to_string()
}

#[test]
fn a_huge_value_is_refused_with_the_element_and_what_remains() {
    let mut b = meta(EXPLICIT_LE);
    b.extend(long_header(0x0009, 0x0010, b"OB", 0xFFFF_FFF0));
    b.extend_from_slice(&[1, 2, 3, 4]);
    let e = refusal(&b);
    assert!(
        e.contains("element (0009,0010) OB")
            && e.contains("declares 4294967280 bytes but only 4 remain"),
        "{e}"
    );
    // The byte counts in the data set: the value would start after the 12-byte header.
    assert!(e.contains("at byte 12 of the data set"), "{e}");
}

#[test]
fn the_transfer_syntax_is_read_as_dicom_rs_reads_it() {
    // The ECG fuzz find's trick: "1.2.840.10008.1.2" (implicit VR) padded with NULs and a TAB. dicom-rs trims
    // all whitespace, so the data set is implicit VR; a walk that took it for explicit VR would not see the
    // 2.4 GB group length that dicom-parser reserves for.
    let mut b = meta("1.2.840.10008.1.2\0\0\0\t");
    b.extend_from_slice(&[0, 0, 0, 0]);
    b.extend_from_slice(&0x9000_0000u32.to_le_bytes());
    b.extend_from_slice(&[0; 40]);
    let e = refusal(&b);
    assert!(e.contains("element (0000,0000) UL"), "{e}");
}

#[test]
fn an_offset_table_of_600_mb_is_refused() {
    // Encapsulated pixel data whose first item (the basic offset table) declares 600 MB: dicom-parser's
    // DataSetReader reserves a Vec<u32> of that many *entries* (2.4 GB) before reading any of it.
    let mut b = meta("1.2.840.10008.1.2.4.50");
    b.extend(long_header(0x7FE0, 0x0010, b"OB", 0xFFFF_FFFF));
    b.extend(item(0xE000, 600_000_000));
    b.extend_from_slice(&[0; 16]);
    let e = refusal(&b);
    assert!(
        e.contains("item of (7FE0,0010)") && e.contains("only 16 remain"),
        "{e}"
    );
    // A later fragment the same.
    let mut b = meta("1.2.840.10008.1.2.4.50");
    b.extend(long_header(0x7FE0, 0x0010, b"OB", 0xFFFF_FFFF));
    b.extend(item(0xE000, 0));
    b.extend(item(0xE000, 0x7000_0000));
    b.extend_from_slice(&[0; 8]);
    assert!(refusal(&b).contains("item of (7FE0,0010)"));
    // Pixel data with the VR of a sequence in implicit VR: still encapsulated for dicom-parser.
    let mut b = meta(IMPLICIT_LE);
    b.extend_from_slice(&[0xE0, 0x7F, 0x10, 0x00, 0xFF, 0xFF, 0xFF, 0xFF]);
    b.extend(item(0xE000, 0x4000_0000));
    assert!(refusal(&b).contains("item of (7FE0,0010)"));
}

#[test]
fn lengths_inside_items_of_defined_length_are_checked() {
    // A sequence item of defined length (which a walk that skips items whole would not enter) holding a
    // 2 GB value.
    let inner = long_header(0x0009, 0x1010, b"UN", 0x8000_0000);
    let mut b = meta(EXPLICIT_LE);
    b.extend(long_header(0x0008, 0x1115, b"SQ", (8 + inner.len()) as u32));
    b.extend(item(0xE000, inner.len() as u32));
    b.extend(inner);
    assert!(refusal(&b).contains("element (0009,1010) UN"));
}

#[test]
fn an_undefined_length_ob_that_is_not_pixel_data_is_a_sequence_to_the_parser() {
    // dicom-parser reads any undefined-length element but pixel data as a sequence of data sets, so the
    // items here are parsed as data sets, not skipped as fragments.
    let inner = long_header(0x0009, 0x1011, b"OB", 0x7FFF_FFF0);
    let mut b = meta(EXPLICIT_LE);
    b.extend(long_header(0x0009, 0x1010, b"OB", 0xFFFF_FFFF));
    b.extend(item(0xE000, inner.len() as u32));
    b.extend(inner);
    b.extend(item(0xE0DD, 0));
    assert!(refusal(&b).contains("element (0009,1011) OB"));
}

#[test]
fn the_walk_keeps_step_where_the_parser_reads_whole_values_only() {
    // dicom-parser reads a US value of odd length 3 as one 16-bit number and goes on one byte early; a
    // walk that stepped over all 3 bytes would read a different (harmless) header than the parser does.
    // Parser's view: US (0028,0010) len 3 reads 2 bytes, then a header starting at the third byte.
    let mut b = meta(EXPLICIT_LE);
    b.extend(short_header(0x0028, 0x0010, b"US", 3));
    b.extend_from_slice(&[1, 0]);
    // From here the parser reads (0009,0009) OB with a 2 GB length; a 3-byte step would instead see a
    // short text element starting one byte later.
    b.extend(long_header(0x0009, 0x0009, b"OB", 0x8000_0000));
    b.extend_from_slice(&[0; 8]);
    let e = refusal(&b);
    assert!(e.contains("(0009,0009) OB"), "{e}");
}

#[test]
fn deep_nesting_is_refused_rather_than_recursed_into() {
    let mut b = meta(EXPLICIT_LE);
    for _ in 0..(MAX_DEPTH + 10) {
        b.extend(long_header(0x0040, 0xA730, b"SQ", 0xFFFF_FFFF));
        b.extend(item(0xE000, 0xFFFF_FFFF));
    }
    assert!(refusal(&b).contains("nested deeper"));
    // Up to the limit is fine (delimited properly).
    let mut b = meta(EXPLICIT_LE);
    for _ in 0..MAX_DEPTH {
        b.extend(long_header(0x0040, 0xA730, b"SQ", 0xFFFF_FFFF));
        b.extend(item(0xE000, 0xFFFF_FFFF));
    }
    for _ in 0..MAX_DEPTH {
        b.extend(item(0xE00D, 0));
        b.extend(item(0xE0DD, 0));
    }
    check_part10(&b).unwrap();
}

#[test]
fn the_file_meta_group_is_checked_as_dicom_object_reads_it() {
    // The transfer syntax UID with a long-form VR: dicom-object's meta reader matches on the tag and
    // reserves the declared 4 GB for a "UID".
    let mut b = b"DICM".to_vec();
    let el = long_header(0x0002, 0x0010, b"UN", 0xFFFF_FF00);
    b.extend_from_slice(&[0x02, 0x00, 0x00, 0x00, b'U', b'L', 4, 0]);
    b.extend_from_slice(&((el.len() + 4) as u32).to_le_bytes());
    b.extend(el);
    b.extend_from_slice(b"1.2\0");
    let e = refusal(&b);
    assert!(e.contains("file meta element (0002,0010)"), "{e}");
    // Private Information (0002,0102): dicom-object allows up to 64 MB and zero-fills it first.
    let mut b = meta(EXPLICIT_LE);
    let group_len = u32::from_le_bytes(b[12..16].try_into().unwrap());
    let el = long_header(0x0002, 0x0102, b"OB", 60 << 20);
    b[12..16].copy_from_slice(&(group_len + el.len() as u32 + 8).to_le_bytes());
    b.extend(el);
    b.extend_from_slice(&[0; 8]);
    assert!(refusal(&b).contains("file meta element (0002,0102)"));
    // A group length that ends the group early: the rest of group 0002 is read as data set.
    let mut b = b"DICM".to_vec();
    b.extend_from_slice(&[0x02, 0x00, 0x00, 0x00, b'U', b'L', 4, 0, 0, 0, 0, 0]);
    b.extend(long_header(0x0002, 0x0010, b"OB", 0x7FFF_FFF0));
    assert!(check_part10(&b).is_err());
}

#[test]
fn the_data_set_starts_where_the_meta_reader_stops() {
    // The group length says 10 bytes, but the only element (the transfer syntax) is longer: dicom-object
    // reads whole elements, so the data set starts after it, not 10 bytes in.
    let mut b = meta(EXPLICIT_LE);
    b[12..16].copy_from_slice(&10u32.to_le_bytes());
    let end = b.len();
    b.extend(short_header(0x0008, 0x0060, b"CS", 2));
    b.extend_from_slice(b"OT");
    assert_eq!(check_part10(&b).unwrap(), end);
    // With a preamble, the offset counts it.
    let mut p = vec![0u8; 128];
    p.extend_from_slice(&b);
    let part10 = open_part10(&p).unwrap();
    assert_eq!(part10.data_set_offset, end + 128);
}

#[test]
fn well_formed_data_sets_pass_and_parse() {
    let mut b = meta(EXPLICIT_LE);
    b.extend(short_header(0x0008, 0x0060, b"CS", 2));
    b.extend_from_slice(b"EC");
    let p = open_part10(&b).unwrap();
    assert_eq!(
        p.object
            .element(dicom_core::Tag(0x0008, 0x0060))
            .unwrap()
            .to_str()
            .unwrap(),
        "EC"
    );
    // A bare data set, implicit VR, through read_dataset.
    let ts = TransferSyntaxRegistry.get(IMPLICIT_LE).unwrap();
    let mut d = vec![0x08, 0x00, 0x60, 0x00, 2, 0, 0, 0];
    d.extend_from_slice(b"CT");
    assert_eq!(
        read_dataset(&d, ts)
            .unwrap()
            .element(dicom_core::Tag(0x0008, 0x0060))
            .unwrap()
            .to_str()
            .unwrap(),
        "CT"
    );
    // And a hostile one is refused there too.
    let mut d = vec![0x09, 0x00, 0x10, 0x00];
    d.extend_from_slice(&0xF000_0000u32.to_le_bytes());
    assert!(matches!(
        read_dataset(&d, ts).unwrap_err(),
        GuardError::DeclaredLength { .. }
    ));
}

#[test]
fn a_data_set_cut_between_fragments_or_inside_a_header_is_cut_short() {
    // Encapsulated pixel data with two fragments and its delimiter, then cut after the first fragment:
    // dicom-parser ends the data set there without a word.
    let mut b = meta("1.2.840.10008.1.2.4.50");
    b.extend(long_header(0x7FE0, 0x0010, b"OB", 0xFFFF_FFFF));
    b.extend(item(0xE000, 0));
    b.extend(item(0xE000, 4));
    b.extend_from_slice(&[1, 2, 3, 4]);
    let cut = b.len();
    b.extend(item(0xE000, 4));
    b.extend_from_slice(&[5, 6, 7, 8]);
    b.extend(item(0xE0DD, 0));
    check_part10(&b).unwrap();
    assert!(dicom_object::OpenFileOptions::new()
        .from_reader(&b[..cut])
        .is_ok());
    let e = check_part10(&b[..cut]).unwrap_err();
    assert!(matches!(e, GuardError::CutShort { .. }), "{e:?}");
    assert!(
        e.to_string().contains("sequence (7FE0,0010) is not closed"),
        "{e}"
    );
    // Cut inside the delimiter, or three bytes into a new element header.
    assert!(check_part10(&b[..b.len() - 1]).is_err());
    let mut c = meta(EXPLICIT_LE);
    c.extend(short_header(0x0008, 0x0060, b"CS", 2));
    c.extend_from_slice(b"EC");
    c.extend_from_slice(&[0x08, 0x00, 0x70]);
    let e = check_part10(&c).unwrap_err().to_string();
    assert!(e.contains("3 bytes follow the last whole element"), "{e}");
}

#[test]
fn megabytes_of_backslashes_are_refused_for_what_they_would_cost() {
    // One UC value of 4 MiB of backslashes: dicom-parser makes one String per (empty) value, about 58
    // bytes each once collected — some 240 MB for a 4 MB input.
    let n = 4 << 20;
    let mut b = meta(EXPLICIT_LE);
    b.extend(long_header(0x0009, 0x1010, b"UC", n as u32));
    b.extend(std::iter::repeat_n(b'\\', n));
    let e = check_part10(&b).unwrap_err();
    assert!(
        matches!(e, GuardError::TooCostly { values, .. } if values == n + 1),
        "{e:?}"
    );
    // The same bytes as binary weigh what they are.
    let mut b = meta(EXPLICIT_LE);
    b.extend(long_header(0x0009, 0x1010, b"OB", n as u32));
    b.extend(std::iter::repeat_n(b'\\', n));
    check_part10(&b).unwrap();
    // Contour-like decimal strings ("-123.45\" per value) of the same size pass.
    // Contour Data (3006,0050) is DS: one String per value here too.
    let text: Vec<u8> = std::iter::repeat_n(*b"-123.45\\", n / 8)
        .flatten()
        .collect();
    let mut implicit = meta(IMPLICIT_LE);
    implicit.extend_from_slice(&[0x06, 0x30, 0x50, 0x00]);
    implicit.extend_from_slice(&(text.len() as u32).to_le_bytes());
    implicit.extend_from_slice(&text);
    check_part10(&implicit).unwrap();
}

fn deflate(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(bytes).unwrap();
    z.finish().unwrap()
}

#[test]
fn deflated_data_sets_are_walked_after_inflation_within_a_cap() {
    const DEFLATED: &str = "1.2.840.10008.1.2.1.99";
    // A well-formed deflated data set parses.
    let mut ds = short_header(0x0008, 0x0060, b"CS", 2);
    ds.extend_from_slice(b"EC");
    let mut b = meta(DEFLATED);
    b.extend(deflate(&ds));
    let p = open_part10(&b).unwrap();
    assert_eq!(
        p.object
            .element(dicom_core::Tag(0x0008, 0x0060))
            .unwrap()
            .to_str()
            .unwrap(),
        "EC"
    );
    // A hostile length inside the compressed stream is found in the inflated bytes.
    let mut ds = long_header(0x0009, 0x0010, b"OB", 0xFFFF_FFF0);
    ds.extend_from_slice(&[1, 2, 3, 4]);
    let mut b = meta(DEFLATED);
    b.extend(deflate(&ds));
    let e = refusal(&b);
    assert!(
        e.contains("of the inflated data set") && e.contains("only 4 remain"),
        "{e}"
    );
    // 80 MiB of zeros (one honest OB value) compress to ~80 KB: past the inflation cap (64 MiB here).
    let n = 80 << 20;
    let mut ds = long_header(0x0009, 0x0010, b"OB", n as u32);
    ds.resize(ds.len() + n, 0);
    let mut b = meta(DEFLATED);
    b.extend(deflate(&ds));
    drop(ds);
    assert!(b.len() < 200_000);
    assert!(matches!(
        check_part10(&b).unwrap_err(),
        GuardError::InflatesTooFar { .. }
    ));
}

#[test]
fn not_part10_is_named() {
    assert!(matches!(
        check_part10(b"hello").unwrap_err(),
        GuardError::NotPart10(_)
    ));
}

fn dicom_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            dicom_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "dcm") {
            out.push(p);
        }
    }
}

/// Every DICOM file in the repository's test data: what dicom-rs opens, the guard lets through (and
/// gives the same object); the ECG crate's fuzz finds are refused.
#[test]
fn repository_dicom_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = Vec::new();
    for dir in [
        "crates/ecg/tests/data",
        "crates/imaging/tests/data",
        "tests/data",
    ] {
        dicom_files(&root.join(dir), &mut files);
    }
    let (mut opened, mut refused) = (0, 0);
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        let name = f.display().to_string();
        if name.contains("/fuzz") {
            let e = check_part10(&bytes).unwrap_err();
            assert!(
                matches!(e, GuardError::DeclaredLength { .. }),
                "{name}: {e}"
            );
            refused += 1;
            continue;
        }
        let direct = dicom_object::OpenFileOptions::new().from_reader(bytes.as_slice());
        match (direct, open_part10(&bytes)) {
            (Ok(a), Ok(b)) => {
                assert_eq!(
                    a.meta().transfer_syntax(),
                    b.object.meta().transfer_syntax()
                );
                assert_eq!(
                    a.iter().count(),
                    b.object.iter().count(),
                    "{name}: same elements"
                );
                opened += 1;
            }
            (Ok(_), Err(e)) => panic!("{name}: dicom-rs opens it but the guard refused: {e}"),
            (Err(_), _) => {}
        }
    }
    assert!(opened >= 25, "{opened} files opened");
    assert_eq!(refused, 13);
}
