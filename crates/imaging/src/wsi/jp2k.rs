//! JPEG 2000 tiles of Aperio SVS files (TIFF compression 33003 and 33005).
//!
//! Aperio stores each tile as a bare JPEG 2000 codestream (SOC `FF4F`, then SIZ `FF51`). Under 33005 the
//! codestream's own multiple-component transform is on, so the decoder hands back R, G, B; under 33003
//! the components are Y, Cb, Cr (full range, BT.601 coefficients as in JFIF) with that transform off, and
//! the reader converts them, as OpenSlide does; chroma may be subsampled (SIZ `XRsiz`/`YRsiz`).
//!
//! Decoding is done by the `jpeg2k` crate over `openjp2` (a Rust port of OpenJPEG), the decoder dicom-rs
//! already uses for JPEG 2000 frames. Before it runs, the SIZ segment is read here and the tile refused
//! unless it is at most the TIFF tile's size, 8-bit, unsigned, with 1 or 3 components and a sane
//! codestream tiling, so a hostile header cannot make the decoder allocate for a huge image.

use image::RgbImage;

use super::{WsiError, WsiResult};

/// Codestream tiles allowed in one TIFF tile (Aperio writes one).
const MAX_CODESTREAM_TILES: u64 = 1024;

/// How the components of a tile are to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Components {
    /// Compression 33005: R, G, B (or a single grey component).
    Rgb,
    /// Compression 33003: Y, Cb, Cr.
    YCbCr,
}

/// What the SIZ segment says.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Siz {
    width: u32,
    height: u32,
    /// (XRsiz, YRsiz) of each component.
    subsampling: Vec<(u32, u32)>,
}

fn be16(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from(u16::from_be_bytes(
        b.get(at..at + 2)?.try_into().ok()?,
    )))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Reads and checks the SIZ segment against the TIFF tile size.
fn read_siz(data: &[u8], tile_w: u32, tile_h: u32, what: &dyn Fn() -> String) -> WsiResult<Siz> {
    let corrupt = |m: String| WsiError::Corrupt(format!("{}: JPEG 2000: {m}", what()));
    if !data.starts_with(&[0xFF, 0x4F, 0xFF, 0x51]) {
        return Err(corrupt(
            "not a JPEG 2000 codestream (no SOC and SIZ markers at the start)".into(),
        ));
    }
    let field = |at: usize, four: bool| {
        if four {
            be32(data, 4 + at)
        } else {
            be16(data, 4 + at)
        }
        .ok_or_else(|| corrupt("the SIZ segment is cut short".into()))
    };
    let lsiz = field(0, false)?;
    let (xsiz, ysiz, xosiz, yosiz) = (
        field(4, true)?,
        field(8, true)?,
        field(12, true)?,
        field(16, true)?,
    );
    let (xtsiz, ytsiz, xtosiz, ytosiz) = (
        field(20, true)?,
        field(24, true)?,
        field(28, true)?,
        field(32, true)?,
    );
    let csiz = field(36, false)?;
    if lsiz != 38 + 3 * csiz {
        return Err(corrupt(format!(
            "SIZ length {lsiz} does not match {csiz} components"
        )));
    }
    if xosiz >= xsiz || yosiz >= ysiz {
        return Err(corrupt(format!(
            "image offset {xosiz},{yosiz} outside the {xsiz}×{ysiz} grid"
        )));
    }
    let (width, height) = (xsiz - xosiz, ysiz - yosiz);
    if width > tile_w || height > tile_h {
        return Err(corrupt(format!(
            "a {width}×{height} image in a {tile_w}×{tile_h} tile"
        )));
    }
    if xtsiz == 0 || ytsiz == 0 || xtosiz > xosiz || ytosiz > yosiz {
        return Err(corrupt(format!(
            "codestream tiles of {xtsiz}×{ytsiz} at {xtosiz},{ytosiz}"
        )));
    }
    let tiles = u64::from(xsiz - xtosiz).div_ceil(u64::from(xtsiz))
        * u64::from(ysiz - ytosiz).div_ceil(u64::from(ytsiz));
    if tiles > MAX_CODESTREAM_TILES {
        return Err(corrupt(format!(
            "{tiles} codestream tiles in one tile (at most {MAX_CODESTREAM_TILES})"
        )));
    }
    if csiz != 1 && csiz != 3 {
        return Err(WsiError::Unsupported(format!(
            "{}: JPEG 2000 tile with {csiz} components (1 or 3 supported)",
            what()
        )));
    }
    let mut subsampling = Vec::new();
    for c in 0..csiz as usize {
        let at = 4 + 38 + 3 * c;
        let (ssiz, dx, dy) = match data.get(at..at + 3) {
            Some(&[s, x, y]) => (s, u32::from(x), u32::from(y)),
            _ => return Err(corrupt("the SIZ segment is cut short".into())),
        };
        if ssiz != 7 {
            return Err(WsiError::Unsupported(format!(
                "{}: JPEG 2000 component {c} has {} {} bits (8-bit unsigned supported)",
                what(),
                if ssiz & 0x80 != 0 {
                    "signed"
                } else {
                    "unsigned"
                },
                (ssiz & 0x7F) + 1
            )));
        }
        if !(1..=4).contains(&dx) || !(1..=4).contains(&dy) || (c == 0 && (dx, dy) != (1, 1)) {
            return Err(corrupt(format!("component {c} subsampled {dx}×{dy}")));
        }
        subsampling.push((dx, dy));
    }
    Ok(Siz {
        width,
        height,
        subsampling,
    })
}

/// JFIF's YCbCr → RGB, rounded to the nearest value.
fn ycbcr_to_rgb(y: f32, cb: f32, cr: f32) -> [u8; 3] {
    let (cb, cr) = (cb - 128.0, cr - 128.0);
    let q = |v: f32| v.round().clamp(0.0, 255.0) as u8;
    [
        q(y + 1.402 * cr),
        q(y - 0.344_136 * cb - 0.714_136 * cr),
        q(y + 1.772 * cb),
    ]
}

/// Decodes one Aperio JPEG 2000 tile (a bare codestream) of at most `tile_w`×`tile_h` pixels to RGB.
pub(crate) fn decode_tile(
    data: &[u8],
    components: Components,
    tile_w: u32,
    tile_h: u32,
    what: &dyn Fn() -> String,
) -> WsiResult<RgbImage> {
    let siz = read_siz(data, tile_w, tile_h, what)?;
    // The decoder is a port of a C library; a malformed codestream that trips one of its checks as a
    // panic is refused like any other corrupt tile instead of taking the request down.
    let decoded = std::panic::catch_unwind(|| jpeg2k::Image::from_bytes(data))
        .map_err(|_| WsiError::Corrupt(format!("{}: JPEG 2000: the decoder failed", what())))?
        .map_err(|e| WsiError::Corrupt(format!("{}: JPEG 2000: {e}", what())))?;
    let comps = decoded.components();
    let (w, h) = (siz.width, siz.height);
    if comps.len() != siz.subsampling.len() {
        return Err(WsiError::Corrupt(format!(
            "{}: JPEG 2000: {} components decoded, SIZ declares {}",
            what(),
            comps.len(),
            siz.subsampling.len()
        )));
    }
    // Each component's samples, with its size and subsampling; sizes checked against SIZ.
    let mut planes = Vec::with_capacity(comps.len());
    for (c, (comp, &(dx, dy))) in comps.iter().zip(&siz.subsampling).enumerate() {
        let (cw, ch) = (comp.width(), comp.height());
        let data = comp.data();
        if cw == 0 || ch == 0 || cw > w || ch > h || data.len() < cw as usize * ch as usize {
            return Err(WsiError::Corrupt(format!(
                "{}: JPEG 2000 component {c} decodes to {cw}×{ch} for a {w}×{h} image",
                what()
            )));
        }
        planes.push((data, cw, ch, dx, dy));
    }
    let sample = |plane: usize, x: u32, y: u32| -> f32 {
        let (data, cw, ch, dx, dy) = planes[plane];
        let (sx, sy) = ((x / dx).min(cw - 1), (y / dy).min(ch - 1));
        data[(sy * cw + sx) as usize].clamp(0, 255) as f32
    };
    let img = RgbImage::from_fn(w, h, |x, y| {
        let px = if planes.len() == 1 {
            let v = sample(0, x, y) as u8;
            [v, v, v]
        } else {
            let (a, b, c) = (sample(0, x, y), sample(1, x, y), sample(2, x, y));
            match components {
                Components::Rgb => [a as u8, b as u8, c as u8],
                Components::YCbCr => ycbcr_to_rgb(a, b, c),
            }
        };
        image::Rgb(px)
    });
    Ok(img)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn what() -> String {
        "tile".into()
    }

    /// A SIZ segment for a `w`×`h` image, one codestream tile, components (Ssiz, XRsiz, YRsiz).
    fn siz(w: u32, h: u32, comps: &[(u8, u8, u8)]) -> Vec<u8> {
        let mut b = vec![0xFF, 0x4F, 0xFF, 0x51];
        b.extend_from_slice(&(38 + 3 * comps.len() as u16).to_be_bytes());
        b.extend_from_slice(&[0, 0]);
        for v in [w, h, 0, 0, w, h, 0, 0] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        b.extend_from_slice(&(comps.len() as u16).to_be_bytes());
        for &(s, x, y) in comps {
            b.extend_from_slice(&[s, x, y]);
        }
        b
    }

    #[test]
    fn the_siz_segment_is_checked_before_decoding() {
        let ok = siz(240, 240, &[(7, 1, 1), (7, 2, 2), (7, 2, 2)]);
        let s = read_siz(&ok, 240, 240, &what).unwrap();
        assert_eq!((s.width, s.height), (240, 240));
        assert_eq!(s.subsampling, vec![(1, 1), (2, 2), (2, 2)]);
        // Larger than the TIFF tile: refused before the decoder allocates for it.
        let big = siz(60_000, 60_000, &[(7, 1, 1), (7, 1, 1), (7, 1, 1)]);
        let e = read_siz(&big, 240, 240, &what).unwrap_err().to_string();
        assert!(e.contains("60000×60000 image in a 240×240 tile"), "{e}");
        // 16-bit and signed samples are named.
        let e = read_siz(&siz(240, 240, &[(15, 1, 1)]), 240, 240, &what)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unsigned 16 bits"), "{e}");
        // Cut short, or not a codestream at all.
        assert!(read_siz(&ok[..20], 240, 240, &what).is_err());
        assert!(read_siz(b"\xFF\xD8\xFF\xE0", 240, 240, &what).is_err());
        // A luma component cannot be subsampled; four components are not a colour tile.
        assert!(read_siz(&siz(240, 240, &[(7, 2, 2)]), 240, 240, &what).is_err());
        assert!(read_siz(&siz(8, 8, &[(7, 1, 1); 4]), 240, 240, &what).is_err());
    }

    #[test]
    fn ycbcr_conversion_matches_jfif() {
        // Grey stays grey; the primaries come back from their JFIF YCbCr values.
        assert_eq!(ycbcr_to_rgb(128.0, 128.0, 128.0), [128, 128, 128]);
        assert_eq!(ycbcr_to_rgb(76.245, 84.972, 255.5), [255, 0, 0]);
        assert_eq!(ycbcr_to_rgb(149.685, 43.528, 21.235), [0, 255, 0]);
        assert_eq!(ycbcr_to_rgb(29.07, 255.5, 107.265), [0, 0, 255]);
    }
}
