//! DICOM VL Whole Slide Microscopy Image (PS3.3 A.32.8): one instance per pyramid level, each a
//! multi-frame image whose frames are the tiles of its Total Pixel Matrix.
//!
//! - `TILED_FULL`: frames run across the matrix row by row (column fastest), then through focal
//!   planes and optical paths; the first focal plane and optical path are shown.
//! - `TILED_SPARSE`: each frame names its position in the Per-Frame Functional Groups (Plane
//!   Position (Slide) Sequence); frames of the first frame's focal plane (Z offset) and optical path
//!   are shown, positions with no frame are background.
//!
//! Frames are decoded by dicom-pixeldata through [`crate::render::render_pixels`] (JPEG baseline,
//! JPEG 2000, RLE, native; the same codecs as the archive's viewer). `VOLUME` and `THUMBNAIL`
//! images are pyramid levels; `LABEL` and `OVERVIEW` images are not. Concatenations (one level split
//! over several instances) are refused.

use std::collections::HashMap;

use bytes::Bytes;
use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use image::RgbImage;

use super::{to_rgb, LevelInfo, Slide, SlideFormat, TileReader, WsiError, WsiResult};
use crate::render::DicomFile;

/// SOP Class UID of VL Whole Slide Microscopy Image Storage.
pub const WSI_SOP_CLASS: &str = "1.2.840.10008.5.1.4.1.1.77.1.6";

enum Layout {
    /// Frame index = row × columns + column.
    Full,
    /// (column, row) → frame index.
    Sparse(HashMap<(u64, u64), u32>),
}

struct DicomLevel {
    file: DicomFile,
    sop: String,
    layout: Layout,
}

struct DicomReader {
    levels: Vec<DicomLevel>,
    infos: Vec<LevelInfo>,
}

fn text(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    let v = obj.get(tag)?.to_str().ok()?;
    let v = v.trim_matches(|c: char| c == ' ' || c == '\0');
    (!v.is_empty()).then(|| v.to_string())
}

fn int(obj: &InMemDicomObject, tag: Tag) -> Option<i64> {
    obj.get(tag)?.to_int::<i64>().ok()
}

fn first_item(obj: &InMemDicomObject, tag: Tag) -> Option<&InMemDicomObject> {
    obj.get(tag)?.items()?.first()
}

/// Is this Part-10 instance a whole-slide image level (VOLUME or THUMBNAIL)? Used to list slides.
pub fn is_wsi_sop_class(sop_class: &str) -> bool {
    sop_class == WSI_SOP_CLASS
}

/// Opens a slide from the instances of one WSI series.
pub fn open(instances: &[Bytes]) -> WsiResult<Slide> {
    let mut levels = Vec::new();
    for (i, bytes) in instances.iter().enumerate() {
        let (file, _) = crate::archive::checked_open(bytes)
            .map_err(|e| WsiError::Corrupt(format!("instance {}: {e}", i + 1)))?;
        if let Some(level) = level(file, i)? {
            levels.push(level);
        }
    }
    if levels.is_empty() {
        return Err(WsiError::NotASlide(
            "the series has no VL Whole Slide Microscopy VOLUME or THUMBNAIL image".into(),
        ));
    }
    // Largest first; of two images of one size keep the VOLUME one (sorted first by `level`).
    levels.sort_by(|a, b| b.0.width.cmp(&a.0.width).then(a.2.cmp(&b.2)));
    levels.dedup_by(|b, a| a.0.width == b.0.width);
    let base = levels[0].0.width as f64;
    let (infos, levels): (Vec<_>, Vec<_>) = levels
        .into_iter()
        .map(|(mut info, level, _)| {
            info.downsample = base / info.width as f64;
            (info, level)
        })
        .unzip();
    Slide::new(Box::new(DicomReader { levels, infos }), SlideFormat::Dicom)
}

/// Reads one instance; `None` for images that are not pyramid levels. The `u8` orders VOLUME
/// before THUMBNAIL.
fn level(file: DicomFile, index: usize) -> WsiResult<Option<(LevelInfo, DicomLevel, u8)>> {
    let obj: &InMemDicomObject = &file;
    let n = index + 1;
    let sop_class = text(obj, tags::SOP_CLASS_UID).unwrap_or_default();
    if !is_wsi_sop_class(&sop_class) {
        return Ok(None);
    }
    let sop = text(obj, tags::SOP_INSTANCE_UID).unwrap_or_default();
    let image_type = obj
        .get(tags::IMAGE_TYPE)
        .and_then(|e| e.to_multi_str().ok())
        .map(|v| v.iter().map(|s| s.trim().to_string()).collect::<Vec<_>>())
        .unwrap_or_default();
    let flavor = image_type.get(2).map(String::as_str).unwrap_or("VOLUME");
    let rank = match flavor {
        "VOLUME" => 0,
        "THUMBNAIL" => 1,
        _ => return Ok(None),
    };
    if obj.get(tags::CONCATENATION_UID).is_some() {
        return Err(WsiError::Unsupported(format!(
            "instance {n} ({sop}) is part of a concatenation"
        )));
    }
    let need = |tag, name: &str| {
        int(obj, tag).filter(|&v| v > 0).ok_or_else(|| {
            WsiError::Corrupt(format!(
                "instance {n} ({sop}): {name} is missing or not positive"
            ))
        })
    };
    let width = need(tags::TOTAL_PIXEL_MATRIX_COLUMNS, "TotalPixelMatrixColumns")? as u64;
    let height = need(tags::TOTAL_PIXEL_MATRIX_ROWS, "TotalPixelMatrixRows")? as u64;
    let tile_width = need(tags::COLUMNS, "Columns")?;
    let tile_height = need(tags::ROWS, "Rows")?;
    let frames = int(obj, tags::NUMBER_OF_FRAMES).unwrap_or(1).max(1) as u64;
    let info = LevelInfo {
        width,
        height,
        tile_width: u32::try_from(tile_width).unwrap_or(u32::MAX),
        tile_height: u32::try_from(tile_height).unwrap_or(u32::MAX),
        downsample: 1.0,
    };
    if width > super::MAX_SIDE
        || height > super::MAX_SIDE
        || tile_width > 8192
        || tile_height > 8192
    {
        return Err(WsiError::Corrupt(format!(
            "instance {n} ({sop}): a {width}×{height} matrix in {tile_width}×{tile_height} tiles"
        )));
    }
    let organization = text(obj, tags::DIMENSION_ORGANIZATION_TYPE);
    let per_frame = obj
        .get(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE)
        .and_then(|e| e.items());
    let layout = match (organization.as_deref(), per_frame) {
        (Some("TILED_FULL"), _) | (None, None) => {
            let tiles = info.tiles_across() * info.tiles_down();
            if frames < tiles {
                return Err(WsiError::Truncated(format!(
                    "instance {n} ({sop}) is TILED_FULL with {tiles} tiles but has {frames} frames"
                )));
            }
            Layout::Full
        }
        (_, Some(items)) => sparse(items, &info, frames, n, &sop)?,
        (Some(other), None) => {
            return Err(WsiError::Unsupported(format!(
                "instance {n} ({sop}): dimension organization {other} without per-frame positions"
            )))
        }
    };
    Ok(Some((info, DicomLevel { file, sop, layout }, rank)))
}

fn sparse(
    items: &[InMemDicomObject],
    info: &LevelInfo,
    frames: u64,
    n: usize,
    sop: &str,
) -> WsiResult<Layout> {
    if items.len() as u64 != frames {
        return Err(WsiError::Corrupt(format!(
            "instance {n} ({sop}) has {frames} frames but {} per-frame items",
            items.len()
        )));
    }
    let mut map = HashMap::new();
    let mut plane: Option<(Option<String>, Option<String>)> = None;
    for (f, item) in items.iter().enumerate() {
        let pos = first_item(item, tags::PLANE_POSITION_SLIDE_SEQUENCE).ok_or_else(|| {
            WsiError::Corrupt(format!(
                "instance {n} ({sop}): frame {} has no Plane Position (Slide) Sequence",
                f + 1
            ))
        })?;
        let z = text(pos, tags::Z_OFFSET_IN_SLIDE_COORDINATE_SYSTEM);
        let path = first_item(item, tags::OPTICAL_PATH_IDENTIFICATION_SEQUENCE)
            .and_then(|p| text(p, tags::OPTICAL_PATH_IDENTIFIER));
        let key = (z, path);
        match &plane {
            None => plane = Some(key),
            Some(p) if *p != key => continue,
            Some(_) => {}
        }
        let col = int(pos, tags::COLUMN_POSITION_IN_TOTAL_IMAGE_PIXEL_MATRIX);
        let row = int(pos, tags::ROW_POSITION_IN_TOTAL_IMAGE_PIXEL_MATRIX);
        let (Some(col), Some(row)) = (col, row) else {
            return Err(WsiError::Corrupt(format!(
                "instance {n} ({sop}): frame {} has no column/row position",
                f + 1
            )));
        };
        let (tw, th) = (i64::from(info.tile_width), i64::from(info.tile_height));
        if col < 1 || row < 1 || (col - 1) % tw != 0 || (row - 1) % th != 0 {
            return Err(WsiError::Unsupported(format!(
                "instance {n} ({sop}): frame {} at ({col}, {row}) is not on the {tw}×{th} tile grid",
                f + 1
            )));
        }
        let (c, r) = (((col - 1) / tw) as u64, ((row - 1) / th) as u64);
        if c >= info.tiles_across() || r >= info.tiles_down() {
            return Err(WsiError::Corrupt(format!(
                "instance {n} ({sop}): frame {} at ({col}, {row}) lies outside the {}×{} matrix",
                f + 1,
                info.width,
                info.height
            )));
        }
        map.entry((c, r)).or_insert(f as u32);
    }
    Ok(Layout::Sparse(map))
}

impl TileReader for DicomReader {
    fn levels(&self) -> &[LevelInfo] {
        &self.infos
    }

    fn read_tile(&self, level: usize, col: u64, row: u64) -> WsiResult<Option<RgbImage>> {
        let (Some(l), Some(info)) = (self.levels.get(level), self.infos.get(level)) else {
            return Err(WsiError::OutOfRange(format!("level {level}")));
        };
        if col >= info.tiles_across() || row >= info.tiles_down() {
            return Err(WsiError::OutOfRange(format!(
                "tile ({col}, {row}) of level {level}"
            )));
        }
        let frame = match &l.layout {
            Layout::Full => (row * info.tiles_across() + col) as u32,
            Layout::Sparse(map) => match map.get(&(col, row)) {
                Some(&f) => f,
                None => return Ok(None),
            },
        };
        let what = || format!("frame {} of {} (level {level})", frame + 1, l.sop);
        let (w, h, channels, pixels) =
            crate::render::render_pixels(&l.file, frame, None).map_err(|e| {
                let m = e.to_string();
                if m.contains("build with")
                    || m.contains("not supported")
                    || m.contains("Unsupported")
                {
                    WsiError::Unsupported(format!("{}: {m}", what()))
                } else {
                    WsiError::Corrupt(format!("{}: {m}", what()))
                }
            })?;
        to_rgb(pixels, usize::from(channels), w, h, &what).map(Some)
    }
}

/// A DICOM whole-slide series in the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsiSeries {
    pub study_uid: String,
    pub series_uid: String,
    pub patient_id: String,
    pub patient_name: Option<String>,
    pub study_date: Option<String>,
    pub description: Option<String>,
    pub instances: u32,
}

/// The whole-slide series stored in the archive, newest study first (for a slides list; reading
/// their pixels goes through [`crate::Archive::read`], which reports the access).
pub async fn list_series(archive: &crate::Archive) -> crate::Result<Vec<WsiSeries>> {
    use sqlx::Row;
    let rows = sqlx::query(
        "SELECT i.study_uid, i.series_uid, p.patient_id, p.patient_name, st.study_date,
                COALESCE(se.series_description, st.study_description) AS description,
                COUNT(*) AS n
         FROM instances i
         JOIN series se ON se.series_uid = i.series_uid
         JOIN studies st ON st.study_uid = i.study_uid
         JOIN patients p ON p.patient_key = st.patient_key
         WHERE i.sop_class_uid = ?1
         GROUP BY i.study_uid, i.series_uid
         ORDER BY st.study_date DESC, i.study_uid, i.series_uid
         LIMIT 1000",
    )
    .bind(WSI_SOP_CLASS)
    .fetch_all(archive.pool())
    .await?;
    rows.iter()
        .map(|r| {
            let n: i64 = r.try_get("n")?;
            Ok(WsiSeries {
                study_uid: r.try_get("study_uid")?,
                series_uid: r.try_get("series_uid")?,
                patient_id: r.try_get("patient_id")?,
                patient_name: r.try_get("patient_name")?,
                study_date: r.try_get("study_date")?,
                description: r.try_get("description")?,
                instances: u32::try_from(n).unwrap_or(u32::MAX),
            })
        })
        .collect()
}
