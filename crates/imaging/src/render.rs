//! Pixel decoding and rendering for viewing.
//!
//! Decoding (native, RLE, JPEG baseline/lossless, JPEG 2000, JPEG-LS) is dicom-pixeldata's. The
//! display pipeline on top of it is written here because it is small and must follow PS3.3
//! C.11.2.1.2 exactly: modality LUT (rescale slope/intercept), then the linear VOI window, then
//! MONOCHROME1 inversion, so that a chest radiograph stored inverted shows bones white.

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::{FileDicomObject, InMemDicomObject};
use dicom_pixeldata::{ConvertOptions, ModalityLutOption, PixelDecoder, VoiLutOption};
use image::ImageEncoder;

use crate::archive::error_chain;
use crate::error::{Error, Result};

pub type DicomFile = FileDicomObject<InMemDicomObject>;

/// Parses Part-10 bytes.
pub fn open(bytes: &[u8]) -> Result<DicomFile> {
    // The structure is checked first so corrupt lengths are refused instead of driving huge
    // allocations in the parser.
    crate::archive::checked_open(bytes)
        .map(|(file, _)| file)
        .map_err(|e| Error::Encoding(e.to_string()))
}

/// A VOI window (center and width in modality units, e.g. Hounsfield units for CT).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    pub center: f64,
    pub width: f64,
}

/// Output image format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    Png,
    Jpeg { quality: u8 },
}

/// What to render.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RenderOptions {
    /// Zero-based frame index.
    pub frame: u32,
    /// Window to apply; `None` uses the data set's first window, or the full value range.
    pub window: Option<Window>,
    pub format: ImageFormat,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions {
            frame: 0,
            window: None,
            format: ImageFormat::Png,
        }
    }
}

fn text(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    let e = obj.get(tag)?;
    Some(e.to_str().ok()?.trim().to_string())
}

fn int(obj: &InMemDicomObject, tag: Tag) -> Option<i64> {
    obj.get(tag)?.to_int::<i64>().ok()
}

fn first_float(obj: &InMemDicomObject, tag: Tag) -> Option<f64> {
    let e = obj.get(tag)?;
    let s = e.to_str().ok()?;
    s.split('\\').next()?.trim().parse().ok()
}

/// Basic image geometry, checked before any decoder sees the data (so that corrupt headers give
/// an error instead of a slice panic inside a decoder).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Geometry {
    pub rows: u32,
    pub columns: u32,
    pub samples_per_pixel: u16,
    pub bits_allocated: u16,
    pub frames: u32,
    pub photometric: String,
}

/// Reads and validates the image geometry.
pub fn geometry(obj: &DicomFile) -> Result<Geometry> {
    let get = |tag, name: &str| {
        int(obj, tag).ok_or_else(|| Error::Pixel(format!("{name} is missing or not a number")))
    };
    let rows = get(tags::ROWS, "Rows")?;
    let columns = get(tags::COLUMNS, "Columns")?;
    let spp = int(obj, tags::SAMPLES_PER_PIXEL).unwrap_or(1);
    let bits = get(tags::BITS_ALLOCATED, "BitsAllocated")?;
    let frames = int(obj, tags::NUMBER_OF_FRAMES).unwrap_or(1).max(1);
    if !(1..=65535).contains(&rows) || !(1..=65535).contains(&columns) {
        return Err(Error::Pixel(format!("bad image size {rows}x{columns}")));
    }
    if !matches!(spp, 1 | 3) || !matches!(bits, 1 | 8 | 16 | 32) {
        return Err(Error::Pixel(format!(
            "unsupported SamplesPerPixel {spp} / BitsAllocated {bits}"
        )));
    }
    if obj.get(tags::PIXEL_DATA).is_none() {
        return Err(Error::Pixel("the instance has no pixel data".into()));
    }
    let g = Geometry {
        rows: rows as u32,
        columns: columns as u32,
        samples_per_pixel: spp as u16,
        bits_allocated: bits as u16,
        frames: u32::try_from(frames).map_err(|_| Error::Pixel("too many frames".into()))?,
        photometric: text(obj, tags::PHOTOMETRIC_INTERPRETATION).unwrap_or_default(),
    };
    // Native pixel data must hold every frame it claims.
    let ts = obj.meta().transfer_syntax().trim_end_matches('\0');
    if crate::dimse::message::is_native(ts) && g.bits_allocated >= 8 {
        let expected = u64::from(g.rows)
            * u64::from(g.columns)
            * u64::from(g.samples_per_pixel)
            * u64::from(g.bits_allocated / 8)
            * u64::from(g.frames);
        let actual = obj
            .element(tags::PIXEL_DATA)
            .ok()
            .and_then(|e| e.to_bytes().ok().map(|b| b.len() as u64))
            .unwrap_or(0);
        if actual < expected {
            return Err(Error::Pixel(format!(
                "pixel data holds {actual} bytes, the header promises {expected}"
            )));
        }
    }
    Ok(g)
}

fn check_frame(g: &Geometry, frame: u32) -> Result<()> {
    if frame >= g.frames {
        return Err(Error::NotFound(format!(
            "frame {} (the instance has {})",
            frame + 1,
            g.frames
        )));
    }
    Ok(())
}

/// JPEG-LS lossless and near-lossless transfer syntaxes.
const JPEG_LS: [&str; 2] = ["1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"];

fn decode(obj: &DicomFile, frame: u32) -> Result<dicom_pixeldata::DecodedPixelData<'_>> {
    let ts = obj.meta().transfer_syntax().trim_end_matches('\0');
    if !cfg!(feature = "jpeg-ls") && JPEG_LS.contains(&ts) {
        return Err(Error::Pixel(format!(
            "transfer syntax {ts} is JPEG-LS, which this build cannot decode (build with the `jpeg-ls` feature)"
        )));
    }
    obj.decode_pixel_data_frame(frame)
        .map_err(|e| Error::Pixel(error_chain(&e)))
}

/// The stored pixel values of one frame (samples interleaved), before any LUT. Colour images
/// come out as RGB, as pydicom returns them.
pub fn stored_values(obj: &DicomFile, frame: u32) -> Result<Vec<i64>> {
    let g = geometry(obj)?;
    check_frame(&g, frame)?;
    let decoded = decode(obj, frame)?;
    let options = ConvertOptions::new()
        .with_modality_lut(ModalityLutOption::None)
        .with_voi_lut(VoiLutOption::Identity);
    decoded
        .to_vec_frame_with_options::<i64>(0, &options)
        .map_err(|e| Error::Pixel(error_chain(&e)))
}

/// The frame as native little-endian bytes (WADO-RS frames in `application/octet-stream`).
pub fn frame_bytes(obj: &DicomFile, frame: u32) -> Result<Vec<u8>> {
    let g = geometry(obj)?;
    check_frame(&g, frame)?;
    let decoded = decode(obj, frame)?;
    decoded
        .frame_data(0)
        .map(<[u8]>::to_vec)
        .map_err(|e| Error::Pixel(error_chain(&e)))
}

/// The window the data set recommends, if any (its first Window Center/Width pair).
pub fn dataset_window(obj: &InMemDicomObject) -> Option<Window> {
    let center = first_float(obj, tags::WINDOW_CENTER)?;
    let width = first_float(obj, tags::WINDOW_WIDTH)?;
    (width >= 1.0).then_some(Window { center, width })
}

/// Applies the linear VOI function of PS3.3 C.11.2.1.2.1 to 8-bit output, inverting for
/// MONOCHROME1.
pub fn window_to_u8(values: &[f64], window: Window, invert: bool) -> Vec<u8> {
    let c = window.center;
    let w = window.width.max(1.0);
    let low = c - 0.5 - (w - 1.0) / 2.0;
    let high = c - 0.5 + (w - 1.0) / 2.0;
    values
        .iter()
        .map(|&x| {
            let y = if x <= low {
                0.0
            } else if x > high || w <= 1.0 {
                // A width of 1 is a threshold: everything above the lower bound is white.
                255.0
            } else {
                ((x - (c - 0.5)) / (w - 1.0) + 0.5) * 255.0
            };
            let y = y.round().clamp(0.0, 255.0) as u8;
            if invert {
                255 - y
            } else {
                y
            }
        })
        .collect()
}

/// Modality-LUT output of a monochrome frame, with its window (given, from the data set, or the
/// full range of values).
pub fn monochrome_values(obj: &DicomFile, frame: u32) -> Result<(Vec<f64>, Geometry)> {
    let g = geometry(obj)?;
    check_frame(&g, frame)?;
    let decoded = decode(obj, frame)?;
    let options = ConvertOptions::new()
        .with_modality_lut(ModalityLutOption::Default)
        .with_voi_lut(VoiLutOption::Identity);
    let values = decoded
        .to_vec_frame_with_options::<f64>(0, &options)
        .map_err(|e| Error::Pixel(error_chain(&e)))?;
    Ok((values, g))
}

fn full_range(values: &[f64]) -> Window {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for &v in values {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return Window {
            center: 0.0,
            width: 1.0,
        };
    }
    Window {
        center: (lo + hi + 1.0) / 2.0,
        width: (hi - lo + 1.0).max(1.0),
    }
}

/// Renders one frame to 8-bit grey (monochrome) or RGB pixels: (width, height, channels, pixels).
pub fn render_pixels(
    obj: &DicomFile,
    frame: u32,
    window: Option<Window>,
) -> Result<(u32, u32, u8, Vec<u8>)> {
    let g = geometry(obj)?;
    let mono = g.photometric.starts_with("MONOCHROME");
    if mono {
        let (values, g) = monochrome_values(obj, frame)?;
        let window = window
            .or_else(|| dataset_window(obj))
            .unwrap_or_else(|| full_range(&values));
        let invert = g.photometric == "MONOCHROME1";
        Ok((g.columns, g.rows, 1, window_to_u8(&values, window, invert)))
    } else {
        check_frame(&g, frame)?;
        let decoded = decode(obj, frame)?;
        let img = decoded
            .to_dynamic_image(0)
            .map_err(|e| Error::Pixel(error_chain(&e)))?
            .to_rgb8();
        Ok((img.width(), img.height(), 3, img.into_raw()))
    }
}

/// Renders one frame as PNG or JPEG.
pub fn render(obj: &DicomFile, options: &RenderOptions) -> Result<Vec<u8>> {
    let (w, h, channels, pixels) = render_pixels(obj, options.frame, options.window)?;
    let color = if channels == 1 {
        image::ExtendedColorType::L8
    } else {
        image::ExtendedColorType::Rgb8
    };
    let mut out = Vec::new();
    match options.format {
        ImageFormat::Png => image::codecs::png::PngEncoder::new(&mut out)
            .write_image(&pixels, w, h, color)
            .map_err(|e| Error::Pixel(e.to_string()))?,
        ImageFormat::Jpeg { quality } => {
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality.clamp(1, 100))
                .write_image(&pixels, w, h, color)
                .map_err(|e| Error::Pixel(e.to_string()))?
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_window_follows_the_standard() {
        // Center 40, width 400 (a CT soft-tissue window): -160.5 and below is black, 239.5
        // and above white, the center mid-grey.
        let w = Window {
            center: 40.0,
            width: 400.0,
        };
        let out = window_to_u8(&[-1000.0, -160.0, 40.0, 239.0, 240.0, 3000.0], w, false);
        assert_eq!(out[0], 0);
        assert_eq!(out[5], 255);
        assert_eq!(out[4], 255);
        assert!((127..=129).contains(&out[2]), "{}", out[2]);
        let inverted = window_to_u8(&[-1000.0, 3000.0], w, true);
        assert_eq!(inverted, vec![255, 0]);
    }
}
