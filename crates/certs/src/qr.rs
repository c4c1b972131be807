//! QR rendering (PNG, SVG) with the `qrcode` crate and decoding (PNG and other raster images) with `rqrr`.
//!
//! HC1 texts use Alphanumeric mode and error correction level Q as the hcert spec recommends; `shc:/` texts use
//! Numeric mode for the digits (the `qrcode` crate picks the densest mode per segment by itself).

use crate::error::{Error, Result};
use qrcode::{EcLevel, QrCode};

fn code(text: &str) -> Result<QrCode> {
    let level = if text.starts_with("shc:/") {
        EcLevel::L
    } else {
        EcLevel::Q
    };
    QrCode::with_error_correction_level(text.as_bytes(), level)
        .map_err(|e| Error::Qr(format!("cannot encode: {e}")))
}

/// Renders `text` as a PNG (black on white, 4-module quiet zone, `scale` pixels per module).
pub fn render_png(text: &str, scale: u32) -> Result<Vec<u8>> {
    let code = code(text)?;
    let scale = scale.clamp(1, 32);
    let img = code
        .render::<image::Luma<u8>>()
        .module_dimensions(scale, scale)
        .quiet_zone(true)
        .build();
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .map_err(|e| Error::Qr(format!("PNG encoding: {e}")))?;
    Ok(out.into_inner())
}

/// Renders `text` as an SVG document.
pub fn render_svg(text: &str) -> Result<String> {
    let code = code(text)?;
    Ok(code
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(300, 300)
        .quiet_zone(true)
        .build())
}

/// Decodes the first QR code in an image (PNG, or any format the `image` build supports).
pub fn decode_image(bytes: &[u8]) -> Result<String> {
    let img =
        image::load_from_memory(bytes).map_err(|e| Error::Qr(format!("cannot read image: {e}")))?;
    let luma = img.to_luma8();
    let mut prepared = rqrr::PreparedImage::prepare(luma);
    let grids = prepared.detect_grids();
    let grid = grids
        .first()
        .ok_or_else(|| Error::Qr("no QR code found in the image".into()))?;
    let (_meta, content) = grid
        .decode()
        .map_err(|e| Error::Qr(format!("cannot decode the QR code: {e}")))?;
    Ok(content)
}
