//! Whole-slide images (pathology) served as Deep Zoom.
//!
//! A [`Slide`] is a pyramid of tiled levels read from one of two sources:
//!
//! - [`dicom`]: a DICOM VL Whole Slide Microscopy Image series (one instance per pyramid level,
//!   `TILED_FULL` or `TILED_SPARSE`, frames encapsulated as JPEG / JPEG 2000 or native), as the
//!   archive stores it;
//! - [`tiff`]: a tiled pyramidal TIFF or Aperio SVS (one IFD per level, JPEG tiles with shared
//!   `JPEGTables`, Aperio JPEG 2000 tiles (compression 33003 YCbCr / 33005 RGB, see `jp2k.rs`), or
//!   any compression the `tiff` crate decodes).
//!
//! [`dzi`] turns a slide into the Deep Zoom tiles a pan-and-zoom viewer asks for: the `.dzi`
//! descriptor and `{level}/{col}_{row}.jpeg` tiles, each read from the best source level and
//! resampled. Decoded source tiles are kept in a small per-slide LRU so neighbouring Deep Zoom tiles
//! do not decode them again; [`cache::TileCache`] keeps encoded Deep Zoom tiles.
//!
//! Nothing here panics on bad input: a truncated, corrupt or unsupported slide is a [`WsiError`]
//! naming the problem (the level, the tile, the byte range).

pub mod bench;
pub mod cache;
pub mod dicom;
pub mod dzi;
mod jp2k;
pub mod source;
pub mod tiff;

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use image::RgbImage;

/// Why a slide or a tile could not be read.
#[derive(Debug, thiserror::Error)]
pub enum WsiError {
    /// The bytes are not a slide of the expected kind at all.
    #[error("not a whole-slide image: {0}")]
    NotASlide(String),
    /// A structure or tile points past the end of the data.
    #[error("slide is truncated: {0}")]
    Truncated(String),
    /// The structure is present but inconsistent.
    #[error("slide is corrupt: {0}")]
    Corrupt(String),
    /// A valid slide using something this reader does not handle.
    #[error("unsupported slide: {0}")]
    Unsupported(String),
    /// A tile or level outside the pyramid was asked for.
    #[error("no such tile: {0}")]
    OutOfRange(String),
}

pub type WsiResult<T> = std::result::Result<T, WsiError>;

/// The white a slide's background is filled with where it has no tile (sparse DICOM, or the
/// area outside the image that edge tiles cover).
pub const BACKGROUND: [u8; 3] = [255, 255, 255];

/// Largest level side accepted (pixels); a bound on corrupt headers, far above real slides
/// (~200,000 pixels).
pub const MAX_SIDE: u64 = 1 << 24;

/// One pyramid level of a source slide.
#[derive(Debug, Clone, PartialEq)]
pub struct LevelInfo {
    pub width: u64,
    pub height: u64,
    pub tile_width: u32,
    pub tile_height: u32,
    /// Level 0 width over this level's width.
    pub downsample: f64,
}

impl LevelInfo {
    pub fn tiles_across(&self) -> u64 {
        self.width.div_ceil(u64::from(self.tile_width))
    }
    pub fn tiles_down(&self) -> u64 {
        self.height.div_ceil(u64::from(self.tile_height))
    }
}

/// Reads decoded source tiles. Implemented by the DICOM and TIFF readers.
pub(crate) trait TileReader: Send + Sync {
    fn levels(&self) -> &[LevelInfo];
    /// The decoded tile (`tile_width` × `tile_height` RGB) at a level, or `None` where the slide
    /// has no tile (sparse DICOM).
    fn read_tile(&self, level: usize, col: u64, row: u64) -> WsiResult<Option<RgbImage>>;
}

/// What a slide was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlideFormat {
    Dicom,
    Tiff,
    Svs,
}

impl SlideFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            SlideFormat::Dicom => "dicom",
            SlideFormat::Tiff => "tiff",
            SlideFormat::Svs => "svs",
        }
    }
}

type TileKey = (usize, u64, u64);

/// An opened whole-slide image.
pub struct Slide {
    reader: Box<dyn TileReader>,
    format: SlideFormat,
    tiles: Mutex<lru::LruCache<TileKey, Option<Arc<RgbImage>>>>,
}

impl std::fmt::Debug for Slide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slide")
            .field("format", &self.format)
            .field("levels", &self.levels())
            .finish()
    }
}

/// Decoded source tiles kept per slide (at 512×512 RGB, 64 tiles are 48 MB at most).
const SOURCE_TILE_CACHE: usize = 64;

impl Slide {
    pub(crate) fn new(reader: Box<dyn TileReader>, format: SlideFormat) -> WsiResult<Self> {
        validate_levels(reader.levels())?;
        let cap = NonZeroUsize::new(SOURCE_TILE_CACHE).unwrap_or(NonZeroUsize::MIN);
        Ok(Slide {
            reader,
            format,
            tiles: Mutex::new(lru::LruCache::new(cap)),
        })
    }

    /// Opens a tiled TIFF or SVS held in memory.
    pub fn open_tiff(bytes: bytes::Bytes) -> WsiResult<Self> {
        tiff::open(bytes)
    }

    /// Opens a DICOM WSI from the Part-10 bytes of its instances (any order; each instance is a
    /// level; label, overview and thumbnail-only images are skipped).
    pub fn open_dicom(instances: &[bytes::Bytes]) -> WsiResult<Self> {
        dicom::open(instances)
    }

    pub fn format(&self) -> SlideFormat {
        self.format
    }

    /// Source levels, largest first.
    pub fn levels(&self) -> &[LevelInfo] {
        self.reader.levels()
    }

    /// Level 0 dimensions (width, height).
    pub fn dimensions(&self) -> (u64, u64) {
        let l = &self.levels()[0];
        (l.width, l.height)
    }

    /// The level to read for a wanted downsample: the smallest level that still has at least the
    /// resolution asked for (so resampling only ever shrinks).
    pub fn best_level_for_downsample(&self, downsample: f64) -> usize {
        let mut best = 0;
        for (i, l) in self.levels().iter().enumerate() {
            // A little slack: Aperio levels are 4.0003× rather than 4×.
            if l.downsample <= downsample * 1.01 {
                best = i;
            }
        }
        best
    }

    fn tile(&self, level: usize, col: u64, row: u64) -> WsiResult<Option<Arc<RgbImage>>> {
        let key = (level, col, row);
        if let Ok(mut cache) = self.tiles.lock() {
            if let Some(t) = cache.get(&key) {
                return Ok(t.clone());
            }
        }
        let info = &self.levels()[level];
        let tile = self.reader.read_tile(level, col, row)?;
        if let Some(t) = &tile {
            if t.width() != info.tile_width || t.height() != info.tile_height {
                return Err(WsiError::Corrupt(format!(
                    "tile ({col}, {row}) of level {level} decodes to {}×{} pixels, the level declares {}×{} tiles",
                    t.width(),
                    t.height(),
                    info.tile_width,
                    info.tile_height
                )));
            }
        }
        let tile = tile.map(Arc::new);
        if let Ok(mut cache) = self.tiles.lock() {
            cache.put(key, tile.clone());
        }
        Ok(tile)
    }

    /// Reads a region of a level (coordinates in that level's pixels) as RGB; what lies outside
    /// the level or in a missing tile is [`BACKGROUND`].
    pub fn read_region(
        &self,
        level: usize,
        x: u64,
        y: u64,
        width: u32,
        height: u32,
    ) -> WsiResult<RgbImage> {
        let info = self
            .levels()
            .get(level)
            .ok_or_else(|| WsiError::OutOfRange(format!("level {level}")))?
            .clone();
        let mut out = RgbImage::from_pixel(width, height, image::Rgb(BACKGROUND));
        if width == 0 || height == 0 || x >= info.width || y >= info.height {
            return Ok(out);
        }
        let x_end = (x + u64::from(width)).min(info.width);
        let y_end = (y + u64::from(height)).min(info.height);
        let (tw, th) = (u64::from(info.tile_width), u64::from(info.tile_height));
        for row in y / th..y_end.div_ceil(th) {
            for col in x / tw..x_end.div_ceil(tw) {
                let Some(tile) = self.tile(level, col, row)? else {
                    continue;
                };
                // The part of this tile inside the region, in level coordinates.
                let (tx0, ty0) = (col * tw, row * th);
                let sx0 = x.max(tx0);
                let sy0 = y.max(ty0);
                let sx1 = x_end.min(tx0 + tw);
                let sy1 = y_end.min(ty0 + th);
                let run = ((sx1 - sx0) * 3) as usize;
                let src = tile.as_raw();
                let dst_stride = width as usize * 3;
                let src_stride = tw as usize * 3;
                let dst = &mut *out;
                for sy in sy0..sy1 {
                    let s = (sy - ty0) as usize * src_stride + (sx0 - tx0) as usize * 3;
                    let d = (sy - y) as usize * dst_stride + (sx0 - x) as usize * 3;
                    dst[d..d + run].copy_from_slice(&src[s..s + run]);
                }
            }
        }
        Ok(out)
    }
}

fn validate_levels(levels: &[LevelInfo]) -> WsiResult<()> {
    if levels.is_empty() {
        return Err(WsiError::NotASlide("no tiled pyramid level".into()));
    }
    for (i, l) in levels.iter().enumerate() {
        if l.width == 0 || l.height == 0 || l.width > MAX_SIDE || l.height > MAX_SIDE {
            return Err(WsiError::Corrupt(format!(
                "level {i} has an impossible size {}×{}",
                l.width, l.height
            )));
        }
        if l.tile_width == 0 || l.tile_height == 0 || l.tile_width > 8192 || l.tile_height > 8192 {
            return Err(WsiError::Unsupported(format!(
                "level {i} has tiles of {}×{} pixels (1 to 8192 supported)",
                l.tile_width, l.tile_height
            )));
        }
        if i > 0 && l.width > levels[i - 1].width {
            return Err(WsiError::Corrupt(format!(
                "level {i} is wider than level {}",
                i - 1
            )));
        }
    }
    Ok(())
}

/// Converts decoded 8-bit samples (grey, grey+alpha, RGB, RGBA) to an RGB image.
pub(crate) fn to_rgb(
    samples: Vec<u8>,
    channels: usize,
    width: u32,
    height: u32,
    what: &dyn Fn() -> String,
) -> WsiResult<RgbImage> {
    let n = width as usize * height as usize;
    if samples.len() < n * channels {
        return Err(WsiError::Corrupt(format!(
            "{} decodes to {} bytes, {}×{}×{channels} expected",
            what(),
            samples.len(),
            width,
            height
        )));
    }
    let rgb = match channels {
        3 => {
            let mut s = samples;
            s.truncate(n * 3);
            s
        }
        1 => samples[..n].iter().flat_map(|&v| [v, v, v]).collect(),
        2 => samples[..n * 2]
            .chunks_exact(2)
            .flat_map(|p| [p[0], p[0], p[0]])
            .collect(),
        4 => samples[..n * 4]
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect(),
        c => {
            return Err(WsiError::Unsupported(format!(
                "{} has {c} samples per pixel",
                what()
            )))
        }
    };
    RgbImage::from_raw(width, height, rgb)
        .ok_or_else(|| WsiError::Corrupt(format!("{} has a bad pixel buffer", what())))
}

/// Decodes one JPEG stream (a TIFF tile with its tables already spliced in, or a DICOM frame) to
/// RGB. The colour transform follows the stream's own markers (JFIF, Adobe, component ids), like
/// libjpeg: Aperio writes YCbCr-coded tiles under `PhotometricInterpretation = RGB`.
pub(crate) fn decode_jpeg(data: &[u8], what: &dyn Fn() -> String) -> WsiResult<RgbImage> {
    let mut decoder = jpeg_decoder::Decoder::new(data);
    decoder.set_max_decoding_buffer_size(8192 * 8192 * 4);
    let pixels = decoder
        .decode()
        .map_err(|e| WsiError::Corrupt(format!("{}: JPEG: {e}", what())))?;
    let info = decoder
        .info()
        .ok_or_else(|| WsiError::Corrupt(format!("{}: JPEG without a frame header", what())))?;
    let channels = match info.pixel_format {
        jpeg_decoder::PixelFormat::L8 => 1,
        jpeg_decoder::PixelFormat::RGB24 => 3,
        other => {
            return Err(WsiError::Unsupported(format!(
                "{}: JPEG pixel format {other:?}",
                what()
            )))
        }
    };
    to_rgb(
        pixels,
        channels,
        u32::from(info.width),
        u32::from(info.height),
        what,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A synthetic reader: level 0 is 10×7 with 4×3 tiles whose pixels encode their position.
    struct Grid {
        levels: Vec<LevelInfo>,
        sparse: bool,
    }

    impl TileReader for Grid {
        fn levels(&self) -> &[LevelInfo] {
            &self.levels
        }
        fn read_tile(&self, level: usize, col: u64, row: u64) -> WsiResult<Option<RgbImage>> {
            let l = &self.levels[level];
            if self.sparse && (col + row) % 2 == 1 {
                return Ok(None);
            }
            Ok(Some(RgbImage::from_fn(
                l.tile_width,
                l.tile_height,
                |x, y| {
                    let gx = col * u64::from(l.tile_width) + u64::from(x);
                    let gy = row * u64::from(l.tile_height) + u64::from(y);
                    image::Rgb([gx as u8, gy as u8, level as u8])
                },
            )))
        }
    }

    fn grid(sparse: bool) -> Slide {
        Slide::new(
            Box::new(Grid {
                levels: vec![LevelInfo {
                    width: 10,
                    height: 7,
                    tile_width: 4,
                    tile_height: 3,
                    downsample: 1.0,
                }],
                sparse,
            }),
            SlideFormat::Tiff,
        )
        .unwrap()
    }

    #[test]
    fn regions_are_assembled_across_tiles_and_clipped() {
        let s = grid(false);
        let r = s.read_region(0, 2, 1, 7, 8).unwrap();
        for y in 0..8u32 {
            for x in 0..7u32 {
                let (gx, gy) = (2 + x, 1 + y);
                let expected = if gx < 10 && gy < 7 {
                    [gx as u8, gy as u8, 0]
                } else {
                    BACKGROUND
                };
                assert_eq!(r.get_pixel(x, y).0, expected, "at {x},{y}");
            }
        }
        assert!(s.read_region(1, 0, 0, 1, 1).is_err());
        assert_eq!(
            s.read_region(0, 50, 50, 2, 2).unwrap().get_pixel(0, 0).0,
            BACKGROUND
        );
    }

    #[test]
    fn missing_tiles_are_background() {
        let s = grid(true);
        let r = s.read_region(0, 0, 0, 10, 7).unwrap();
        assert_eq!(r.get_pixel(1, 1).0, [1, 1, 0]);
        // Tile (1, 0) is absent.
        assert_eq!(r.get_pixel(5, 1).0, BACKGROUND);
    }

    #[test]
    fn bad_pyramids_are_refused() {
        let bad = |w, tw| {
            Slide::new(
                Box::new(Grid {
                    levels: vec![LevelInfo {
                        width: w,
                        height: 5,
                        tile_width: tw,
                        tile_height: 4,
                        downsample: 1.0,
                    }],
                    sparse: false,
                }),
                SlideFormat::Tiff,
            )
            .unwrap_err()
        };
        assert!(matches!(bad(0, 4), WsiError::Corrupt(_)));
        assert!(matches!(bad(10, 0), WsiError::Unsupported(_)));
        assert!(matches!(
            Slide::new(
                Box::new(Grid {
                    levels: vec![],
                    sparse: false
                }),
                SlideFormat::Tiff
            )
            .unwrap_err(),
            WsiError::NotASlide(_)
        ));
    }
}
