//! Deep Zoom geometry and tiles.
//!
//! Deep Zoom (the format OpenSeadragon and Seadragon read) halves the image from level to level
//! down to 1×1: level `max` is the full image, `max = ceil(log2(max(width, height)))`, level `l`
//! is `ceil(width / 2^(max-l))` wide. Each level is cut in `tile_size` squares; a tile also
//! carries `overlap` pixels of its neighbours on every side that has one. This is the geometry of
//! OpenSlide's `DeepZoomGenerator` and of the `.dzi` schema
//! (`http://schemas.microsoft.com/deepzoom/2008`).

use image::RgbImage;

use super::{Slide, WsiError, WsiResult};

/// The usual Deep Zoom tile side (254 + 2 × 1 overlap = 256 for inner tiles).
pub const DEFAULT_TILE_SIZE: u32 = 254;
pub const DEFAULT_OVERLAP: u32 = 1;
/// JPEG quality of served tiles.
pub const DEFAULT_QUALITY: u8 = 80;

/// Most source pixels read for one tile (4096², 48 MB of RGB): a slide without lower-resolution
/// levels cannot be shown zoomed far out, rather than reading the whole slide per tile.
pub const MAX_REGION_PIXELS: u64 = 4096 * 4096;

/// Deep Zoom geometry of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeepZoom {
    pub width: u64,
    pub height: u64,
    pub tile_size: u32,
    pub overlap: u32,
    /// (width, height) of every level, level 0 (1×1) first.
    levels: Vec<(u64, u64)>,
}

/// A tile's place in its level: top-left corner and size, overlap included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TileRect {
    pub x: u64,
    pub y: u64,
    pub width: u32,
    pub height: u32,
}

impl DeepZoom {
    /// Geometry for an image of `width` × `height` (both ≥ 1).
    pub fn new(width: u64, height: u64, tile_size: u32, overlap: u32) -> WsiResult<Self> {
        if width == 0 || height == 0 {
            return Err(WsiError::Corrupt("the image has no pixels".into()));
        }
        if tile_size == 0 || tile_size > 4096 || overlap > tile_size / 2 {
            return Err(WsiError::Unsupported(format!(
                "Deep Zoom tiles of {tile_size} with overlap {overlap}"
            )));
        }
        let mut levels = vec![(width, height)];
        let (mut w, mut h) = (width, height);
        while w > 1 || h > 1 {
            w = w.div_ceil(2);
            h = h.div_ceil(2);
            levels.push((w, h));
        }
        levels.reverse();
        Ok(DeepZoom {
            width,
            height,
            tile_size,
            overlap,
            levels,
        })
    }

    /// Geometry of a slide's level 0 with the usual tile size and overlap.
    pub fn for_slide(slide: &Slide) -> WsiResult<Self> {
        let (w, h) = slide.dimensions();
        Self::new(w, h, DEFAULT_TILE_SIZE, DEFAULT_OVERLAP)
    }

    pub fn level_count(&self) -> usize {
        self.levels.len()
    }

    pub fn max_level(&self) -> usize {
        self.levels.len() - 1
    }

    pub fn level_dimensions(&self, level: usize) -> WsiResult<(u64, u64)> {
        self.levels.get(level).copied().ok_or_else(|| {
            WsiError::OutOfRange(format!(
                "Deep Zoom level {level} (the image has levels 0 to {})",
                self.max_level()
            ))
        })
    }

    /// Columns and rows of tiles at a level.
    pub fn tile_count(&self, level: usize) -> WsiResult<(u64, u64)> {
        let (w, h) = self.level_dimensions(level)?;
        let t = u64::from(self.tile_size);
        Ok((w.div_ceil(t), h.div_ceil(t)))
    }

    /// Level-0 pixels per pixel of `level`.
    pub fn downsample(&self, level: usize) -> WsiResult<f64> {
        self.level_dimensions(level)?;
        Ok(2f64.powi((self.max_level() - level) as i32))
    }

    /// Where tile (`col`, `row`) of `level` lies in that level, overlap included.
    pub fn tile_rect(&self, level: usize, col: u64, row: u64) -> WsiResult<TileRect> {
        let (w, h) = self.level_dimensions(level)?;
        let (cols, rows) = self.tile_count(level)?;
        if col >= cols || row >= rows {
            return Err(WsiError::OutOfRange(format!(
                "tile {col}_{row} of Deep Zoom level {level} (it has {cols}×{rows} tiles)"
            )));
        }
        let (t, o) = (u64::from(self.tile_size), u64::from(self.overlap));
        let span = |i: u64, size: u64| {
            let start = (i * t).saturating_sub(if i > 0 { o } else { 0 });
            let end = ((i + 1) * t + o).min(size);
            (start, end - start)
        };
        let (x, width) = span(col, w);
        let (y, height) = span(row, h);
        Ok(TileRect {
            x,
            y,
            width: width as u32,
            height: height as u32,
        })
    }

    /// The `.dzi` descriptor.
    pub fn descriptor(&self, format: &str) -> String {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <Image xmlns=\"http://schemas.microsoft.com/deepzoom/2008\" Format=\"{format}\" Overlap=\"{}\" TileSize=\"{}\">\
             <Size Width=\"{}\" Height=\"{}\"/></Image>\n",
            self.overlap, self.tile_size, self.width, self.height
        )
    }

    /// The pixels of one tile, read from the slide's best level and resampled.
    pub fn tile_pixels(
        &self,
        slide: &Slide,
        level: usize,
        col: u64,
        row: u64,
    ) -> WsiResult<RgbImage> {
        let rect = self.tile_rect(level, col, row)?;
        let scale = self.downsample(level)?;
        let (w0, h0) = (self.width as f64, self.height as f64);
        // The tile in level-0 coordinates (clipped: the last Deep Zoom pixel may cover less).
        let x0 = rect.x as f64 * scale;
        let y0 = rect.y as f64 * scale;
        let x1 = ((rect.x + u64::from(rect.width)) as f64 * scale).min(w0);
        let y1 = ((rect.y + u64::from(rect.height)) as f64 * scale).min(h0);
        let source = slide.best_level_for_downsample(scale);
        let info = &slide.levels()[source];
        // The source level's own scale on each axis (levels are rounded, not exact halves).
        let sx = w0 / info.width as f64;
        let sy = h0 / info.height as f64;
        let rx0 = (x0 / sx).floor() as u64;
        let ry0 = (y0 / sy).floor() as u64;
        let rx1 = ((x1 / sx).ceil() as u64).clamp(rx0 + 1, info.width.max(rx0 + 1));
        let ry1 = ((y1 / sy).ceil() as u64).clamp(ry0 + 1, info.height.max(ry0 + 1));
        if (rx1 - rx0) * (ry1 - ry0) > MAX_REGION_PIXELS {
            return Err(WsiError::Unsupported(format!(
                "Deep Zoom level {level} would resample {}×{} pixels of slide level {source}: the \
                 slide lacks the lower-resolution levels this zoom needs",
                rx1 - rx0,
                ry1 - ry0
            )));
        }
        let (rw, rh) = ((rx1 - rx0) as u32, (ry1 - ry0) as u32);
        let region = slide.read_region(source, rx0, ry0, rw, rh)?;
        if (rw, rh) == (rect.width, rect.height) {
            return Ok(region);
        }
        // Power-of-two pyramids usually need an exact k×k shrink: a box average, several times
        // faster than the general filter.
        for k in [2u32, 4, 8, 16] {
            if rw == rect.width * k && rh == rect.height * k {
                return Ok(box_shrink(&region, k));
            }
        }
        // Triangle scales its support with the ratio, so shrinking averages every source pixel.
        Ok(image::imageops::resize(
            &region,
            rect.width,
            rect.height,
            image::imageops::FilterType::Triangle,
        ))
    }

    /// One tile as JPEG.
    pub fn tile_jpeg(
        &self,
        slide: &Slide,
        level: usize,
        col: u64,
        row: u64,
        quality: u8,
    ) -> WsiResult<Vec<u8>> {
        let pixels = self.tile_pixels(slide, level, col, row)?;
        encode_jpeg(&pixels, quality)
    }
}

/// Shrinks by an integer factor `k`, each output pixel the rounded mean of a k×k block (written
/// here because `image`'s filters have no integer box path).
fn box_shrink(src: &RgbImage, k: u32) -> RgbImage {
    let (w, h) = (src.width() / k, src.height() / k);
    let stride = src.width() as usize * 3;
    let raw = src.as_raw();
    let k = k as usize;
    let n = (k * k) as u32;
    let mut out = Vec::with_capacity(w as usize * h as usize * 3);
    let mut row_sums = vec![0u32; w as usize * 3];
    for y in 0..h as usize {
        row_sums.iter_mut().for_each(|v| *v = 0);
        for line in raw[y * k * stride..(y * k + k) * stride].chunks_exact(stride) {
            for (x, sum) in row_sums.chunks_exact_mut(3).enumerate() {
                for px in line[x * k * 3..(x * k + k) * 3].chunks_exact(3) {
                    sum[0] += u32::from(px[0]);
                    sum[1] += u32::from(px[1]);
                    sum[2] += u32::from(px[2]);
                }
            }
        }
        out.extend(row_sums.iter().map(|&v| ((v + n / 2) / n) as u8));
    }
    RgbImage::from_raw(w, h, out).unwrap_or_else(|| RgbImage::new(w, h))
}

/// Encodes RGB pixels as baseline JPEG (jpeg-encoder, already in the tree through dicom-rs).
pub fn encode_jpeg(pixels: &RgbImage, quality: u8) -> WsiResult<Vec<u8>> {
    let (w, h) = pixels.dimensions();
    let (w16, h16) = match (u16::try_from(w), u16::try_from(h)) {
        (Ok(a), Ok(b)) => (a, b),
        _ => {
            return Err(WsiError::Unsupported(format!(
                "a {w}×{h} tile is too large for JPEG"
            )))
        }
    };
    let mut out = Vec::with_capacity(w as usize * h as usize / 4);
    jpeg_encoder::Encoder::new(&mut out, quality.clamp(1, 100))
        .encode(pixels.as_raw(), w16, h16, jpeg_encoder::ColorType::Rgb)
        .map_err(|e| WsiError::Unsupported(format!("JPEG encoding: {e}")))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_halve_down_to_one_pixel() {
        // OpenSlide's DeepZoomGenerator on a 300×250 image: 10 levels (9 = full size).
        let dz = DeepZoom::new(300, 250, 254, 1).unwrap();
        assert_eq!(dz.level_count(), 10);
        assert_eq!(dz.level_dimensions(9).unwrap(), (300, 250));
        assert_eq!(dz.level_dimensions(8).unwrap(), (150, 125));
        assert_eq!(dz.level_dimensions(7).unwrap(), (75, 63));
        assert_eq!(dz.level_dimensions(0).unwrap(), (1, 1));
        assert_eq!(dz.tile_count(9).unwrap(), (2, 1));
        assert_eq!(dz.tile_count(8).unwrap(), (1, 1));
        assert!(dz.level_dimensions(10).is_err());
        // A 1×1 image has one level.
        assert_eq!(DeepZoom::new(1, 1, 254, 1).unwrap().level_count(), 1);
        // 46000×32914 (an Aperio slide): ceil(log2(46000)) = 16 → 17 levels.
        assert_eq!(
            DeepZoom::new(46000, 32914, 254, 1).unwrap().level_count(),
            17
        );
    }

    #[test]
    fn tiles_carry_overlap_on_inner_edges_only() {
        let dz = DeepZoom::new(600, 400, 254, 1).unwrap();
        let max = dz.max_level();
        assert_eq!(dz.tile_count(max).unwrap(), (3, 2));
        let r = |c, rw| dz.tile_rect(max, c, rw).unwrap();
        assert_eq!(
            r(0, 0),
            TileRect {
                x: 0,
                y: 0,
                width: 255,
                height: 255
            }
        );
        assert_eq!(
            r(1, 0),
            TileRect {
                x: 253,
                y: 0,
                width: 256,
                height: 255
            }
        );
        assert_eq!(
            r(2, 1),
            TileRect {
                x: 507,
                y: 253,
                width: 93,
                height: 147
            }
        );
        assert!(matches!(
            dz.tile_rect(max, 3, 0),
            Err(WsiError::OutOfRange(_))
        ));
        assert!(matches!(
            dz.tile_rect(max, 0, 2),
            Err(WsiError::OutOfRange(_))
        ));
        // Overlap 0: tiles abut exactly.
        let dz0 = DeepZoom::new(600, 400, 256, 0).unwrap();
        assert_eq!(
            dz0.tile_rect(dz0.max_level(), 1, 1).unwrap(),
            TileRect {
                x: 256,
                y: 256,
                width: 256,
                height: 144
            }
        );
    }

    #[test]
    fn descriptor_names_the_geometry() {
        let dz = DeepZoom::new(600, 400, 254, 1).unwrap();
        let xml = dz.descriptor("jpeg");
        assert!(xml.contains("Format=\"jpeg\" Overlap=\"1\" TileSize=\"254\""));
        assert!(xml.contains("<Size Width=\"600\" Height=\"400\"/>"));
    }

    #[test]
    fn box_shrink_averages_blocks() {
        let src = RgbImage::from_fn(4, 2, |x, y| {
            image::Rgb([(x * 10 + y) as u8, 7, (x / 2 * 100) as u8])
        });
        let out = box_shrink(&src, 2);
        assert_eq!(out.dimensions(), (2, 1));
        // Block (0..2, 0..2): 0, 10, 1, 11 → 5.5 → 6.
        assert_eq!(out.get_pixel(0, 0).0, [6, 7, 0]);
        assert_eq!(out.get_pixel(1, 0).0, [26, 7, 100]);
    }

    #[test]
    fn bad_geometry_is_refused() {
        assert!(DeepZoom::new(0, 5, 254, 1).is_err());
        assert!(DeepZoom::new(5, 5, 0, 0).is_err());
        assert!(DeepZoom::new(5, 5, 4, 3).is_err());
    }
}
