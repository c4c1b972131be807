//! Tiled pyramidal TIFF and Aperio SVS.
//!
//! The `tiff` crate reads the structure (IFD chain, tags) and decodes tiles of the compressions
//! it knows (none, LZW, Deflate, PackBits). JPEG tiles (compression 7) are cut out of the file and
//! decoded here instead, with the IFD's shared `JPEGTables` spliced in front: the `tiff` crate
//! forces an RGB colour transform whenever `PhotometricInterpretation` is RGB, but Aperio writes
//! YCbCr-coded JPEG tiles under that tag (libtiff and OpenSlide let libjpeg follow the stream's own
//! markers, which is what [`super::decode_jpeg`] does). Aperio's JPEG 2000 tiles (compression 33003,
//! YCbCr, and 33005, RGB) are cut out the same way and decoded by [`super::jp2k`].
//!
//! Pyramid levels are the tiled IFDs with the first one's aspect ratio, largest first; stripped
//! IFDs (Aperio's thumbnail, label and macro images) are skipped.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use image::RgbImage;
use tiff::decoder::{Decoder, DecodingResult, Limits};
use tiff::tags::Tag;

use super::jp2k::{self, Components};
use super::source::{RandomAccess, SourceCursor};
use super::{decode_jpeg, to_rgb, LevelInfo, Slide, SlideFormat, TileReader, WsiError, WsiResult};

/// Most IFDs followed (a guard against long chains in corrupt files; the `tiff` crate already
/// refuses cycles).
const MAX_IFDS: usize = 256;

struct TiffLevel {
    ifd: usize,
    info: LevelInfo,
    compression: u16,
    samples: usize,
    offsets: Vec<u64>,
    counts: Vec<u64>,
    jpeg_tables: Option<Vec<u8>>,
}

struct TiffReader {
    source: Arc<dyn RandomAccess>,
    levels: Vec<TiffLevel>,
    infos: Vec<LevelInfo>,
    decoder: Mutex<Decoder<SourceCursor>>,
}

fn tiff_error(e: tiff::TiffError, context: &str) -> WsiError {
    match e {
        tiff::TiffError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            WsiError::Truncated(format!("{context}: the file ends early"))
        }
        tiff::TiffError::UnsupportedError(u) => WsiError::Unsupported(format!("{context}: {u}")),
        tiff::TiffError::LimitsExceeded => WsiError::Unsupported(format!(
            "{context}: a structure exceeds the reader's limits"
        )),
        other => WsiError::Corrupt(format!("{context}: {other}")),
    }
}

fn tag_u64(d: &mut Decoder<SourceCursor>, tag: Tag, ifd: usize) -> WsiResult<Option<u64>> {
    d.find_tag_unsigned::<u64>(tag)
        .map_err(|e| tiff_error(e, &format!("IFD {ifd} tag {tag:?}")))
}

/// Opens a tiled TIFF / SVS held in memory.
pub fn open(bytes: Bytes) -> WsiResult<Slide> {
    open_source(Arc::new(bytes))
}

/// Opens a tiled TIFF / SVS read by range from `source` (a file, a blob): only its structure is read now,
/// each tile when it is asked for. Blocks on the source's reads.
pub fn open_source(source: Arc<dyn RandomAccess>) -> WsiResult<Slide> {
    let head = source
        .read_at(0, 8)
        .map_err(|e| WsiError::Truncated(format!("TIFF header: {e}")))?;
    if head.len() < 8 || !(head.starts_with(b"II") || head.starts_with(b"MM")) {
        return Err(WsiError::NotASlide(
            "no TIFF byte-order mark (II or MM) at the start".into(),
        ));
    }
    let mut limits = Limits::default();
    // A 200,000-pixel-wide level in 256-pixel tiles has ~600,000 tile offsets (BigTIFF: 8 bytes).
    limits.ifd_value_size = 64 << 20;
    let mut d = Decoder::new(SourceCursor::new(source.clone()))
        .map_err(|e| tiff_error(e, "TIFF header or first IFD"))?
        .with_limits(limits);
    let mut found = Vec::new();
    let mut description = String::new();
    let mut ifd = 0usize;
    loop {
        if ifd == 0 {
            if let Ok(Some(v)) = d.find_tag(Tag::ImageDescription) {
                description = v.into_string().unwrap_or_default();
            }
        }
        if let Some(level) = inspect(&mut d, ifd, source.size())? {
            found.push(level);
        }
        if !d.more_images() {
            break;
        }
        ifd += 1;
        if ifd >= MAX_IFDS {
            return Err(WsiError::Unsupported(format!(
                "more than {MAX_IFDS} images in one TIFF"
            )));
        }
        d.next_image()
            .map_err(|e| tiff_error(e, &format!("IFD {ifd}")))?;
    }
    let levels = pyramid(found)?;
    let infos = levels.iter().map(|l| l.info.clone()).collect();
    let format = if description.starts_with("Aperio") {
        SlideFormat::Svs
    } else {
        SlideFormat::Tiff
    };
    Slide::new(
        Box::new(TiffReader {
            source,
            levels,
            infos,
            decoder: Mutex::new(d),
        }),
        format,
    )
}

/// Reads the current IFD; `None` when it is not a tiled image (strips: thumbnails, labels).
fn inspect(
    d: &mut Decoder<SourceCursor>,
    ifd: usize,
    file_len: u64,
) -> WsiResult<Option<TiffLevel>> {
    let Some(tile_width) = tag_u64(d, Tag::TileWidth, ifd)? else {
        return Ok(None);
    };
    let tile_height = tag_u64(d, Tag::TileLength, ifd)?
        .ok_or_else(|| WsiError::Corrupt(format!("IFD {ifd} has TileWidth but no TileLength")))?;
    let width = tag_u64(d, Tag::ImageWidth, ifd)?.unwrap_or(0);
    let height = tag_u64(d, Tag::ImageLength, ifd)?.unwrap_or(0);
    let compression = tag_u64(d, Tag::Compression, ifd)?.unwrap_or(1) as u16;
    let samples = tag_u64(d, Tag::SamplesPerPixel, ifd)?.unwrap_or(1) as usize;
    let planar = tag_u64(d, Tag::PlanarConfiguration, ifd)?.unwrap_or(1);
    let bits = d
        .find_tag(Tag::BitsPerSample)
        .map_err(|e| tiff_error(e, &format!("IFD {ifd} BitsPerSample")))?
        .map(|v| v.into_u16_vec())
        .transpose()
        .map_err(|e| tiff_error(e, &format!("IFD {ifd} BitsPerSample")))?
        .unwrap_or_else(|| vec![1]);
    if bits.iter().any(|&b| b != 8) {
        return Err(WsiError::Unsupported(format!(
            "IFD {ifd} has {bits:?} bits per sample (8 supported)"
        )));
    }
    if planar != 1 {
        return Err(WsiError::Unsupported(format!(
            "IFD {ifd} stores colour planes separately (PlanarConfiguration {planar})"
        )));
    }
    let read_vec = |d: &mut Decoder<SourceCursor>, tag: Tag| {
        d.get_tag_u64_vec(tag)
            .map_err(|e| tiff_error(e, &format!("IFD {ifd} {tag:?}")))
    };
    let offsets = read_vec(d, Tag::TileOffsets)?;
    let counts = read_vec(d, Tag::TileByteCounts)?;
    let jpeg_tables = if compression == 7 {
        d.find_tag(Tag::JPEGTables)
            .map_err(|e| tiff_error(e, &format!("IFD {ifd} JPEGTables")))?
            .map(|v| v.into_u8_vec())
            .transpose()
            .map_err(|e| tiff_error(e, &format!("IFD {ifd} JPEGTables")))?
    } else {
        None
    };
    let info = LevelInfo {
        width,
        height,
        tile_width: u32::try_from(tile_width).unwrap_or(u32::MAX),
        tile_height: u32::try_from(tile_height).unwrap_or(u32::MAX),
        downsample: 1.0,
    };
    if width == 0 || height == 0 || tile_width == 0 || tile_height == 0 {
        return Err(WsiError::Corrupt(format!(
            "IFD {ifd} declares a {width}×{height} image in {tile_width}×{tile_height} tiles"
        )));
    }
    let expected = info.tiles_across() * info.tiles_down();
    if offsets.len() as u64 != expected || counts.len() as u64 != expected {
        return Err(WsiError::Corrupt(format!(
            "IFD {ifd} has {} tile offsets and {} byte counts for {expected} tiles",
            offsets.len(),
            counts.len()
        )));
    }
    // Every tile must lie inside the file: a truncated slide is refused when opened, not when a
    // viewer happens to reach the missing tile.
    for (i, (&o, &c)) in offsets.iter().zip(&counts).enumerate() {
        if o.checked_add(c).is_none_or(|end| end > file_len) {
            return Err(WsiError::Truncated(format!(
                "tile {i} of IFD {ifd} lies at bytes {o}..{} of a {file_len}-byte file",
                o.saturating_add(c)
            )));
        }
    }
    match compression {
        1 | 5 | 8 | 32946 | 32773 | 7 => {}
        6 => {
            return Err(WsiError::Unsupported(format!(
                "IFD {ifd} uses old-style JPEG (compression 6)"
            )))
        }
        // Aperio's JPEG 2000 tiles: YCbCr (33003) or RGB (33005) codestreams.
        33003 | 33005 => {}
        c => {
            return Err(WsiError::Unsupported(format!(
                "IFD {ifd} uses TIFF compression {c}"
            )))
        }
    }
    Ok(Some(TiffLevel {
        ifd,
        info,
        compression,
        samples,
        offsets,
        counts,
        jpeg_tables,
    }))
}

/// Keeps the tiled images that form a pyramid with the largest one: same aspect ratio (within
/// rounding), strictly smaller, largest first.
fn pyramid(mut found: Vec<TiffLevel>) -> WsiResult<Vec<TiffLevel>> {
    found.sort_by_key(|l| std::cmp::Reverse(l.info.width));
    let mut levels: Vec<TiffLevel> = Vec::new();
    for mut l in found {
        let Some(base) = levels.first() else {
            levels.push(l);
            continue;
        };
        let (bw, bh) = (base.info.width as f64, base.info.height as f64);
        let (w, h) = (l.info.width as f64, l.info.height as f64);
        let ds = bw / w;
        // Same shape: the height scales by the same factor, within a pixel of rounding.
        let same_shape = (bh / ds - h).abs() <= 1.0 + ds.recip();
        let smaller = levels
            .last()
            .is_some_and(|last| l.info.width < last.info.width);
        if same_shape && smaller {
            l.info.downsample = ds;
            levels.push(l);
        }
    }
    if levels.is_empty() {
        return Err(WsiError::NotASlide(
            "the TIFF has no tiled image (a whole-slide TIFF stores its levels in tiles)".into(),
        ));
    }
    Ok(levels)
}

impl TileReader for TiffReader {
    fn levels(&self) -> &[LevelInfo] {
        &self.infos
    }

    fn read_tile(&self, level: usize, col: u64, row: u64) -> WsiResult<Option<RgbImage>> {
        let l = self
            .levels
            .get(level)
            .ok_or_else(|| WsiError::OutOfRange(format!("level {level}")))?;
        if col >= l.info.tiles_across() || row >= l.info.tiles_down() {
            return Err(WsiError::OutOfRange(format!(
                "tile ({col}, {row}) of level {level}"
            )));
        }
        let index = (row * l.info.tiles_across() + col) as usize;
        let what = || format!("tile ({col}, {row}) of level {level} (IFD {})", l.ifd);
        // Offsets were checked against the file length when the slide was opened.
        let (o, c) = (l.offsets[index] as usize, l.counts[index] as usize);
        if c == 0 {
            return Ok(None);
        }
        let data = self
            .source
            .read_at(o as u64, c)
            .map_err(|e| e.to_string())
            .and_then(|d| {
                if d.len() == c {
                    Ok(d)
                } else {
                    Err("the file ends early".into())
                }
            })
            .map_err(|e| WsiError::Truncated(format!("{}: bytes {o}..{}: {e}", what(), o + c)))?;
        let data = &data[..];
        let (tw, th) = (l.info.tile_width, l.info.tile_height);
        if l.compression == 7 {
            let img = match &l.jpeg_tables {
                Some(tables) if tables.len() >= 4 => {
                    if !tables.starts_with(&[0xFF, 0xD8]) || !data.starts_with(&[0xFF, 0xD8]) {
                        return Err(WsiError::Corrupt(format!(
                            "{}: JPEG tables or tile do not start with an SOI marker",
                            what()
                        )));
                    }
                    // Tables end with EOI, the tile starts with SOI: drop both to make one stream.
                    let end = if tables.ends_with(&[0xFF, 0xD9]) {
                        tables.len() - 2
                    } else {
                        tables.len()
                    };
                    let mut stream = Vec::with_capacity(end + data.len());
                    stream.extend_from_slice(&tables[..end]);
                    stream.extend_from_slice(&data[2..]);
                    decode_jpeg(&stream, &what)?
                }
                _ => decode_jpeg(data, &what)?,
            };
            return Ok(Some(pad(img, tw, th)));
        }
        if l.compression == 33003 || l.compression == 33005 {
            let components = if l.compression == 33003 {
                Components::YCbCr
            } else {
                Components::Rgb
            };
            let img = jp2k::decode_tile(data, components, tw, th, &what)?;
            return Ok(Some(pad(img, tw, th)));
        }
        let mut d = self.decoder.lock().map_err(|_| {
            WsiError::Corrupt(format!("{}: reader poisoned by an earlier failure", what()))
        })?;
        d.seek_to_image(l.ifd).map_err(|e| tiff_error(e, &what()))?;
        let (cw, ch) = d.chunk_data_dimensions(index as u32);
        let decoded = d
            .read_chunk(index as u32)
            .map_err(|e| tiff_error(e, &what()))?;
        drop(d);
        let DecodingResult::U8(samples) = decoded else {
            return Err(WsiError::Unsupported(format!(
                "{}: not 8-bit samples",
                what()
            )));
        };
        // The tiff crate returns edge tiles cropped to the image, or whole.
        let (w, h) = if samples.len() >= tw as usize * th as usize * l.samples {
            (tw, th)
        } else {
            (cw, ch)
        };
        let img = to_rgb(samples, l.samples, w, h, &what)?;
        Ok(Some(pad(img, tw, th)))
    }
}

/// Places a decoded tile in a full tile (edge tiles can come out smaller).
fn pad(img: RgbImage, tw: u32, th: u32) -> RgbImage {
    if img.dimensions() == (tw, th) || img.width() > tw || img.height() > th {
        // A larger tile is left alone: the caller reports the size mismatch.
        return img;
    }
    let mut full = RgbImage::from_pixel(tw, th, image::Rgb(super::BACKGROUND));
    image::imageops::replace(&mut full, &img, 0, 0);
    full
}
