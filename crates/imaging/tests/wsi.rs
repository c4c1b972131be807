//! Whole-slide images: Deep Zoom tiles from TIFF, SVS and DICOM WSI compared with pixels decoded
//! another way (Pillow / imagecodecs / tifffile, see tests/data/wsi/make_wsi_fixtures.py), the
//! OpenSlide test slides, and truncated / corrupted slides.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use image::RgbImage;
use imaging::wsi::dzi::DeepZoom;
use imaging::wsi::{Slide, SlideFormat, WsiError, BACKGROUND};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/wsi");

fn read(name: &str) -> Bytes {
    Bytes::from(std::fs::read(format!("{DATA}/{name}")).unwrap())
}

fn png(name: &str) -> RgbImage {
    image::open(format!("{DATA}/{name}")).unwrap().to_rgb8()
}

/// (max abs difference, mean abs difference) between a tile and the same place of a reference.
fn compare(tile: &RgbImage, reference: &RgbImage, x: u64, y: u64) -> (u8, f64) {
    let mut max = 0u8;
    let mut sum = 0u64;
    for (tx, ty, p) in tile.enumerate_pixels() {
        let r = reference.get_pixel(x as u32 + tx, y as u32 + ty);
        for c in 0..3 {
            let d = p.0[c].abs_diff(r.0[c]);
            max = max.max(d);
            sum += u64::from(d);
        }
    }
    (max, sum as f64 / (tile.len() as f64))
}

/// Every tile of a Deep Zoom level against a reference image of that level's size.
fn check_level(slide: &Slide, level: usize, reference: &RgbImage, max_tol: u8, mean_tol: f64) {
    let dz = DeepZoom::for_slide(slide).unwrap();
    assert_eq!(
        dz.level_dimensions(level).unwrap(),
        (u64::from(reference.width()), u64::from(reference.height()))
    );
    let (cols, rows) = dz.tile_count(level).unwrap();
    for row in 0..rows {
        for col in 0..cols {
            let rect = dz.tile_rect(level, col, row).unwrap();
            let tile = dz.tile_pixels(slide, level, col, row).unwrap();
            assert_eq!(tile.dimensions(), (rect.width, rect.height));
            let (max, mean) = compare(&tile, reference, rect.x, rect.y);
            assert!(
                max <= max_tol && mean <= mean_tol,
                "level {level} tile {col}_{row}: max {max}, mean {mean:.3}"
            );
        }
    }
}

/// A 2×2 box average, as the fixtures' lower levels are made.
fn halve(img: &RgbImage) -> RgbImage {
    RgbImage::from_fn(img.width() / 2, img.height() / 2, |x, y| {
        let mut out = [0u8; 3];
        for (c, o) in out.iter_mut().enumerate() {
            let s: u32 = [(0, 0), (1, 0), (0, 1), (1, 1)]
                .iter()
                .map(|(dx, dy)| u32::from(img.get_pixel(2 * x + dx, 2 * y + dy).0[c]))
                .sum();
            *o = ((s + 2) / 4) as u8;
        }
        image::Rgb(out)
    })
}

#[test]
fn deflate_tiff_tiles_are_the_reference_pixels() {
    let slide = Slide::open_tiff(read("pyramid-deflate.tiff")).unwrap();
    assert_eq!(slide.format(), SlideFormat::Tiff);
    let ds: Vec<f64> = slide.levels().iter().map(|l| l.downsample).collect();
    assert_eq!(ds, vec![1.0, 2.0, 4.0]);
    let dz = DeepZoom::for_slide(&slide).unwrap();
    let max = dz.max_level();
    assert_eq!(max, 10); // ceil(log2(600))
                         // Full size and the two stored levels: read as stored, pixel for pixel.
    check_level(&slide, max, &png("reference.png"), 0, 0.0);
    check_level(&slide, max - 1, &png("level1.png"), 0, 0.0);
    check_level(&slide, max - 2, &png("level2.png"), 0, 0.0);
    // Below the smallest stored level the tiles are shrunk from it (an exact 2×2 box average).
    check_level(&slide, max - 3, &halve(&png("level2.png")), 0, 0.0);
    // One tile through the JPEG encoder and back.
    let jpeg = dz.tile_jpeg(&slide, max, 1, 0, 90).unwrap();
    let back = image::load_from_memory(&jpeg).unwrap().to_rgb8();
    let rect = dz.tile_rect(max, 1, 0).unwrap();
    let (_, mean) = compare(&back, &png("reference.png"), rect.x, rect.y);
    assert!(mean < 2.0, "JPEG round trip mean error {mean}");
}

#[test]
fn aperio_jpeg_tiles_with_shared_tables_decode_in_the_right_colours() {
    let slide = Slide::open_tiff(read("aperio-jpeg.svs")).unwrap();
    assert_eq!(slide.format(), SlideFormat::Svs);
    assert_eq!(slide.levels().len(), 3);
    let dz = DeepZoom::for_slide(&slide).unwrap();
    // Pillow (libjpeg) and jpeg-decoder round their IDCTs differently: a few levels at most. A
    // missed YCbCr → RGB conversion would be off by ~100.
    check_level(&slide, dz.max_level(), &png("jpeg-level0.png"), 6, 0.6);
    check_level(&slide, dz.max_level() - 1, &png("level1.png"), 90, 2.5);
}

/// Aperio JPEG 2000 tiles (compression 33005 RGB, 33003 YCbCr), made by make_jp2k_svs.py; level 0 is
/// compared with the OpenJPEG C library's decoding (through imagecodecs), the YCbCr one converted to RGB
/// there in floating point.
#[test]
fn aperio_jpeg2000_tiles_match_an_independent_decoder() {
    for (name, reference, max_tol, mean_tol) in [
        ("aperio-jp2k-33005.svs", "jp2k-33005-level0.png", 0, 0.0),
        // Rounding f32 here against f64 there can differ by one level.
        ("aperio-jp2k-33003.svs", "jp2k-33003-level0.png", 1, 0.01),
    ] {
        let slide = Slide::open_tiff(read(name)).unwrap();
        assert_eq!(slide.format(), SlideFormat::Svs);
        // Level 0, then the two lower levels; the stripped thumbnail (IFD 1) is not a level.
        let ds: Vec<f64> = slide.levels().iter().map(|l| l.downsample).collect();
        assert_eq!(ds, vec![1.0, 2.0, 4.0], "{name}");
        let dz = DeepZoom::for_slide(&slide).unwrap();
        check_level(&slide, dz.max_level(), &png(reference), max_tol, mean_tol);
        // The lower levels are lossy codings of the drawing's box averages; a missing YCbCr → RGB
        // conversion or swapped components would be off by far more on average.
        check_level(&slide, dz.max_level() - 1, &png("level1.png"), 90, 4.0);
        check_level(&slide, dz.max_level() - 2, &png("level2.png"), 90, 6.0);
    }
}

fn dicom_series() -> Vec<Bytes> {
    [
        "wsi-full-label.dcm",
        "wsi-full-2.dcm",
        "wsi-full-0.dcm",
        "wsi-full-1.dcm",
    ]
    .iter()
    .map(|n| read(n))
    .collect()
}

#[test]
fn dicom_tiled_full_levels_jpeg_jpeg2000_and_native() {
    let slide = Slide::open_dicom(&dicom_series()).unwrap();
    assert_eq!(slide.format(), SlideFormat::Dicom);
    // The label is not a level; the three volumes are, largest first, whatever the order given.
    let sizes: Vec<(u64, u64)> = slide.levels().iter().map(|l| (l.width, l.height)).collect();
    assert_eq!(sizes, vec![(600, 400), (300, 200), (150, 100)]);
    let dz = DeepZoom::for_slide(&slide).unwrap();
    let max = dz.max_level();
    check_level(&slide, max, &png("jpeg-level0.png"), 6, 0.6); // JPEG baseline, YBR_FULL_422
    check_level(&slide, max - 1, &png("level1.png"), 0, 0.0); // JPEG 2000 lossless
    check_level(&slide, max - 2, &png("level2.png"), 0, 0.0); // native
}

#[test]
fn dicom_tiled_sparse_places_frames_by_position_and_leaves_gaps_white() {
    let slide = Slide::open_dicom(&[read("wsi-sparse.dcm")]).unwrap();
    let reference = png("jpeg-level0.png");
    let region = slide.read_region(0, 0, 0, 600, 400).unwrap();
    for (x, y, p) in region.enumerate_pixels() {
        let (col, row) = (x / 128, y / 128);
        if (col, row) == (1, 0) || (col, row) == (2, 2) {
            assert_eq!(p.0, BACKGROUND, "missing tile at {x},{y}");
        } else {
            let r = reference.get_pixel(x, y);
            for c in 0..3 {
                assert!(p.0[c].abs_diff(r.0[c]) <= 6, "at {x},{y}: {p:?} vs {r:?}");
            }
        }
    }
}

#[test]
fn openslide_test_slides() {
    // boxes.tiff: OpenSlide's "generic tiled TIFF"; its level 0 is boxes.png.
    let slide = Slide::open_tiff(read("openslide/boxes.tiff")).unwrap();
    let sizes: Vec<(u64, u64)> = slide.levels().iter().map(|l| (l.width, l.height)).collect();
    assert_eq!(sizes, vec![(300, 250), (150, 125), (75, 62), (37, 31)]);
    check_level(
        &slide,
        DeepZoom::for_slide(&slide).unwrap().max_level(),
        &png("openslide/boxes.png"),
        0,
        0.0,
    );
    // small.svs: a 16×16 Aperio slide with JPEG tables.
    let svs = Slide::open_tiff(read("openslide/small.svs")).unwrap();
    assert_eq!(svs.format(), SlideFormat::Svs);
    assert_eq!(svs.dimensions(), (16, 16));
    let dz = DeepZoom::for_slide(&svs).unwrap();
    dz.tile_jpeg(&svs, dz.max_level(), 0, 0, 80).unwrap();
    // boxes_0.dcm + boxes_1.dcm: a DICOM WSI (JPEG volume and a native thumbnail of one size).
    let dcm =
        Slide::open_dicom(&[read("openslide/boxes_0.dcm"), read("openslide/boxes_1.dcm")]).unwrap();
    assert_eq!(dcm.levels().len(), 1);
    assert_eq!(dcm.dimensions(), (16, 16));
    let dz = DeepZoom::for_slide(&dcm).unwrap();
    dz.tile_jpeg(&dcm, dz.max_level(), 0, 0, 80).unwrap();
    // unreadable.svs opens (its structure is fine) but its tile is corrupt JPEG.
    let bad = Slide::open_tiff(read("openslide/unreadable.svs")).unwrap();
    let dz = DeepZoom::for_slide(&bad).unwrap();
    let err = dz.tile_jpeg(&bad, dz.max_level(), 0, 0, 80).unwrap_err();
    assert!(matches!(err, WsiError::Corrupt(_)), "{err}");
    assert!(err.to_string().contains("tile (0, 0) of level 0"), "{err}");
    // unopenable.tiff uses a compression nobody knows.
    let err = Slide::open_tiff(read("openslide/unopenable.tiff")).unwrap_err();
    assert!(matches!(err, WsiError::Unsupported(_)), "{err}");
    assert!(err.to_string().contains("compression"), "{err}");
}

#[test]
fn wrong_kinds_of_input_are_named() {
    assert!(matches!(
        Slide::open_tiff(Bytes::from_static(b"GIF89a not a tiff")).unwrap_err(),
        WsiError::NotASlide(_)
    ));
    // A DICOM series without WSI images.
    let ct = Bytes::from(
        std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/CT_small.dcm"
        ))
        .unwrap(),
    );
    assert!(matches!(
        Slide::open_dicom(&[ct]).unwrap_err(),
        WsiError::NotASlide(_)
    ));
    // Deep Zoom coordinates outside the pyramid.
    let slide = Slide::open_tiff(read("pyramid-deflate.tiff")).unwrap();
    let dz = DeepZoom::for_slide(&slide).unwrap();
    assert!(matches!(
        dz.tile_jpeg(&slide, 11, 0, 0, 80),
        Err(WsiError::OutOfRange(_))
    ));
    assert!(matches!(
        dz.tile_jpeg(&slide, 10, 3, 0, 80),
        Err(WsiError::OutOfRange(_))
    ));
}

/// Opens a slide and renders every Deep Zoom tile of its top three levels; any error is fine,
/// a panic is not.
fn exercise(kind: &str, bytes: Bytes) -> Result<(), WsiError> {
    let slide = if kind == "dicom" {
        Slide::open_dicom(&[bytes])?
    } else {
        Slide::open_tiff(bytes)?
    };
    let dz = DeepZoom::for_slide(&slide)?;
    for level in dz.max_level().saturating_sub(2)..=dz.max_level() {
        let (cols, rows) = dz.tile_count(level)?;
        for row in 0..rows {
            for col in 0..cols {
                dz.tile_jpeg(&slide, level, col, row, 70)?;
            }
        }
    }
    Ok(())
}

#[test]
fn truncated_slides_are_refused_with_a_reason() {
    for (kind, name) in [
        ("tiff", "pyramid-deflate.tiff"),
        ("tiff", "aperio-jpeg.svs"),
        ("tiff", "aperio-jp2k-33003.svs"),
        ("dicom", "wsi-full-0.dcm"),
        ("dicom", "wsi-sparse.dcm"),
    ] {
        let full = read(name);
        exercise(kind, full.clone()).unwrap();
        let mut cuts: Vec<usize> = (1..40).map(|i| full.len() * i / 40).collect();
        cuts.extend([0, 1, 7, 8, 16, 200, full.len() - 1]);
        for cut in cuts {
            let err = exercise(kind, full.slice(..cut)).expect_err(&format!(
                "{name} cut at {cut} of {} bytes was accepted",
                full.len()
            ));
            let text = err.to_string();
            assert!(!text.is_empty());
            if kind == "tiff" && cut > 1000 {
                // Past the header, a cut TIFF is reported as truncated (a tile or an IFD past
                // the end) or as a corrupt structure, never as something else.
                assert!(
                    matches!(err, WsiError::Truncated(_) | WsiError::Corrupt(_)),
                    "{name} cut at {cut}: {err}"
                );
            }
        }
    }
}

#[test]
fn mutated_slides_never_panic() {
    // A deterministic mutation fuzzer (xorshift): bit flips, byte runs and splices.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut outcomes = (0, 0);
    for (kind, name) in [
        ("tiff", "aperio-jpeg.svs"),
        ("tiff", "aperio-jp2k-33005.svs"),
        ("tiff", "aperio-jp2k-33003.svs"),
        ("tiff", "openslide/boxes.tiff"),
        ("tiff", "openslide/small.svs"),
        ("dicom", "wsi-sparse.dcm"),
    ] {
        let full = read(name).to_vec();
        for _ in 0..30 {
            let mut m = full.clone();
            for _ in 0..(1 + next() % 8) {
                let i = (next() % m.len() as u64) as usize;
                match next() % 3 {
                    0 => m[i] ^= 1 << (next() % 8),
                    1 => m[i] = 0xFF,
                    _ => {
                        let j = (next() % m.len() as u64) as usize;
                        m[i] = m[j];
                    }
                }
            }
            match exercise(kind, Bytes::from(m)) {
                Ok(()) => outcomes.0 += 1,
                Err(_) => outcomes.1 += 1,
            }
        }
    }
    // Both outcomes occur: mutations that hit pixels only still render.
    assert!(outcomes.0 > 0 && outcomes.1 > 0, "{outcomes:?}");
}
