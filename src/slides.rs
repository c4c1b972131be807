//! Pathology slides in the node (crate `imaging`, module `wsi`): whole-slide images served as Deep Zoom to a
//! pan-and-zoom viewer, behind the node's sign-in and audit.
//!
//! Where slides come from:
//! - DICOM WSI (VL Whole Slide Microscopy) arrives like any image, through the archive (STOW-RS, C-STORE); a
//!   slide is one series (`dcm-{study}-{series}`), listed on `/ui/slides`.
//! - A tiled TIFF / Aperio SVS is a case attachment (`image/tiff`, sniffed, within the node's attachment limit,
//!   4 GiB by default) in the blob store, read by range (never whole); the case page links it to the viewer
//!   (`att-{attachment id}`), and the case's access rules apply.
//!
//! Routes: `/ui/slides` (list), `/ui/slides/{id}` (viewer page), `/ui/slides/viewer.js` (the viewer, ~200 lines,
//! `script-src 'self'`), `/slides/{id}.dzi` (descriptor) and `/slides/{id}_files/{level}/{col}_{row}.jpeg` (tiles).
//! Clinical roles only, as for DICOMweb.
//!
//! Audit: opening a slide (its descriptor) is one `Read` event on `slide {id}` (with the patient for a case
//! attachment); tiles are recorded once per user, slide and 10 minutes, not once per tile (a viewer fetches
//! hundreds). Reading DICOM instances also goes through the archive, whose own events name the study.
//!
//! Caches: opened slides (bounded by the bytes they hold) and encoded tiles (64 MB), both LRU, keyed by slide id;
//! a slide's content never changes under its id (attachments and DICOM instances are immutable).

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use bytes::Bytes;
use caravan_domain::audit::AuditAction;
use caravan_domain::{AttachmentId, PatientId, Role};
use caravan_server::auth::{Principal, UiPrincipal};
use caravan_server::error::{AppError, AppResult};
use caravan_server::ui::{ctx, done, render, Ctx};
use caravan_server::AppState;
use imaging::wsi::cache::{
    SlideCache, TileCache, DEFAULT_OPEN_SLIDE_BYTES, DEFAULT_TILE_CACHE_BYTES,
};
use imaging::wsi::dzi::{DeepZoom, DEFAULT_QUALITY};
use imaging::wsi::{Slide, WsiError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Who may view slides: the clinical roles (as for DICOMweb).
const SLIDE_ROLES: &[Role] = &[Role::Referrer, Role::Consultant, Role::Coordinator];

/// What an open TIFF/SVS read by range counts for in the open-slide cache: its structure (tile offset tables)
/// and a read block, not its file.
const RANGE_READ_SLIDE_BYTES: usize = 8 << 20;

/// Tile reads by one user of one slide are audited at most this often.
const TILE_AUDIT_EVERY: Duration = Duration::from_secs(600);

const VIEWER_JS: &str = include_str!("slides_viewer.js");

pub struct Slides {
    archive: imaging::Archive,
    open: SlideCache,
    tiles: TileCache,
    audited: Mutex<HashMap<(String, String), Instant>>,
}

/// The slide routes, reading DICOM slides from `archive`.
pub fn routes(archive: imaging::Archive) -> Router<AppState> {
    let slides = Arc::new(Slides {
        archive,
        open: SlideCache::new(DEFAULT_OPEN_SLIDE_BYTES),
        tiles: TileCache::new(DEFAULT_TILE_CACHE_BYTES),
        audited: Mutex::new(HashMap::new()),
    });
    Router::new()
        .route("/ui/slides", get(list_page))
        .route("/ui/slides/viewer.js", get(viewer_js))
        .route("/ui/slides/{id}", get(view_page))
        .route("/slides/{file}", get(descriptor))
        .route("/slides/{dir}/{level}/{tile}", get(tile))
        .layer(Extension(slides))
}

/// A slide's identity, parsed from its id.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SlideId {
    Dicom { study: String, series: String },
    Attachment(AttachmentId),
}

impl SlideId {
    fn parse(s: &str) -> AppResult<Self> {
        let bad = || AppError::bad_request(format!("{s:?} is not a slide id"));
        match s.split_once('-') {
            Some(("dcm", rest)) => {
                let (study, series) = rest.split_once('-').ok_or_else(bad)?;
                if !imaging::archive::is_valid_uid(study) || !imaging::archive::is_valid_uid(series)
                {
                    return Err(bad());
                }
                Ok(SlideId::Dicom {
                    study: study.to_owned(),
                    series: series.to_owned(),
                })
            }
            Some(("att", rest)) => Ok(SlideId::Attachment(rest.parse().map_err(|_| bad())?)),
            _ => Err(bad()),
        }
    }

    fn key(&self) -> String {
        match self {
            SlideId::Dicom { study, series } => format!("dcm-{study}-{series}"),
            SlideId::Attachment(id) => format!("att-{id}"),
        }
    }
}

fn wsi_error(e: WsiError) -> AppError {
    match e {
        WsiError::OutOfRange(m) => AppError::new(StatusCode::NOT_FOUND, "error-not-found", m),
        WsiError::Unsupported(m) => AppError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "error-slide-unsupported",
            format!("unsupported slide: {m}"),
        ),
        other => AppError::unprocessable("error-slide-invalid", other.to_string()),
    }
}

/// What an access check found: the slide's patient in the node's registry, if known, and a title.
struct Access {
    patient: Option<PatientId>,
    title: String,
}

impl Slides {
    /// Checks that `p` may see the slide (role; for attachments the case's scope) without reading pixels.
    async fn check(&self, st: &AppState, p: &Principal, id: &SlideId) -> AppResult<Access> {
        p.require(SLIDE_ROLES)?;
        match id {
            SlideId::Attachment(a) => {
                let a = st.store().get_attachment(&p.actor(), *a).await?;
                let c = st
                    .store()
                    .get_consultation(&p.actor(), a.consultation_id)
                    .await
                    .map_err(|_| AppError::not_found("slide"))?;
                if a.content_type != "image/tiff" {
                    return Err(AppError::not_found("slide"));
                }
                Ok(Access {
                    patient: Some(c.patient_id),
                    title: a.filename,
                })
            }
            SlideId::Dicom { study, series } => {
                let records = self
                    .archive
                    .instances(study, Some(series), None)
                    .await
                    .map_err(AppError::internal)?;
                if !records
                    .iter()
                    .any(|r| imaging::wsi::dicom::is_wsi_sop_class(&r.sop_class_uid))
                {
                    return Err(AppError::not_found("slide"));
                }
                Ok(Access {
                    patient: None,
                    title: format!("DICOM {series}"),
                })
            }
        }
    }

    /// The opened slide, from the cache or read and parsed now.
    async fn slide(&self, st: &AppState, p: &Principal, id: &SlideId) -> AppResult<Arc<Slide>> {
        let key = id.key();
        if let Some(s) = self.open.get(&key) {
            return Ok(s);
        }
        let principal = format!("{} {}", p.user.id, p.user.display_name);
        // A TIFF/SVS is read by range from the blob store (a file of the folder store, range requests on S3):
        // its structure now, each tile when asked for, so a slide of gigabytes is never in memory whole.
        let mut file = None;
        let (sources, size): (Vec<Bytes>, usize) = match id {
            SlideId::Attachment(a) => {
                let a = st.store().get_attachment(&p.actor(), *a).await?;
                file = Some(st.blobs().random_access(&a.blob_key).await?);
                (Vec::new(), RANGE_READ_SLIDE_BYTES)
            }
            SlideId::Dicom { study, series } => {
                let records = self
                    .archive
                    .instances(study, Some(series), None)
                    .await
                    .map_err(AppError::internal)?;
                let mut out = Vec::new();
                for r in records
                    .iter()
                    .filter(|r| imaging::wsi::dicom::is_wsi_sop_class(&r.sop_class_uid))
                {
                    out.push(
                        self.archive
                            .read(r, imaging::AccessAction::Pixels, &principal)
                            .await
                            .map_err(AppError::internal)?,
                    );
                }
                let n = out.iter().map(Bytes::len).sum();
                (out, n)
            }
        };
        let slide = tokio::task::spawn_blocking(move || match file {
            Some(file) => imaging::wsi::tiff::open_source(file),
            None => Slide::open_dicom(&sources),
        })
        .await
        .map_err(AppError::internal)?
        .map_err(|e| {
            tracing::warn!(slide = %key, error = %e, "slide could not be opened");
            wsi_error(e)
        })?;
        let slide = Arc::new(slide);
        self.open.put(key, slide.clone(), size);
        Ok(slide)
    }

    async fn audit(
        &self,
        st: &AppState,
        p: &Principal,
        id: &SlideId,
        access: &Access,
        detail: &str,
    ) -> AppResult<()> {
        let event = caravan_server::audit::event(
            p,
            AuditAction::Read,
            "slide",
            id.key(),
            access.patient,
            detail,
        );
        st.store().append_audit(vec![event]).await?;
        Ok(())
    }

    /// Audits tile reads once per user, slide and [`TILE_AUDIT_EVERY`].
    async fn audit_tiles(
        &self,
        st: &AppState,
        p: &Principal,
        id: &SlideId,
        access: &Access,
    ) -> AppResult<()> {
        let k = (p.user.id.to_string(), id.key());
        let now = Instant::now();
        let due = match self.audited.lock() {
            Ok(mut m) => {
                if m.len() > 10_000 {
                    m.retain(|_, t| now.duration_since(*t) < TILE_AUDIT_EVERY);
                }
                match m.get(&k) {
                    Some(t) if now.duration_since(*t) < TILE_AUDIT_EVERY => false,
                    _ => {
                        m.insert(k, now);
                        true
                    }
                }
            }
            Err(_) => true,
        };
        if due {
            self.audit(st, p, id, access, "tiles").await?;
        }
        Ok(())
    }
}

async fn api_principal(st: &AppState, headers: &HeaderMap) -> AppResult<Principal> {
    caravan_server::auth::authenticate(headers, st).await
}

/// `GET /slides/{id}.dzi`
async fn descriptor(
    State(st): State<AppState>,
    Extension(slides): Extension<Arc<Slides>>,
    headers: HeaderMap,
    Path(file): Path<String>,
) -> Response {
    let r: AppResult<Response> = async {
        let p = api_principal(&st, &headers).await?;
        let id = file
            .strip_suffix(".dzi")
            .ok_or_else(|| AppError::not_found("slide descriptor"))?;
        let id = SlideId::parse(id)?;
        let access = slides.check(&st, &p, &id).await?;
        let slide = slides.slide(&st, &p, &id).await?;
        let dz = DeepZoom::for_slide(&slide).map_err(wsi_error)?;
        slides.audit(&st, &p, &id, &access, "dzi").await?;
        tracing::info!(slide = %id.key(), user = %p.user.id, "slide opened");
        Ok((
            [
                (header::CONTENT_TYPE, "application/xml"),
                (header::CACHE_CONTROL, "private, no-store"),
            ],
            dz.descriptor("jpeg"),
        )
            .into_response())
    }
    .await;
    r.unwrap_or_else(IntoResponse::into_response)
}

/// Parses `{col}_{row}.jpeg`.
fn tile_name(s: &str) -> AppResult<(u64, u64)> {
    let bad = || AppError::not_found("tile");
    let stem = s
        .strip_suffix(".jpeg")
        .or_else(|| s.strip_suffix(".jpg"))
        .ok_or_else(bad)?;
    let (c, r) = stem.split_once('_').ok_or_else(bad)?;
    Ok((c.parse().map_err(|_| bad())?, r.parse().map_err(|_| bad())?))
}

/// `GET /slides/{id}_files/{level}/{col}_{row}.jpeg`
async fn tile(
    State(st): State<AppState>,
    Extension(slides): Extension<Arc<Slides>>,
    headers: HeaderMap,
    Path((dir, level, name)): Path<(String, String, String)>,
) -> Response {
    let r: AppResult<Response> = async {
        let p = api_principal(&st, &headers).await?;
        let id = dir
            .strip_suffix("_files")
            .ok_or_else(|| AppError::not_found("tile"))?;
        let id = SlideId::parse(id)?;
        let level: u32 = level.parse().map_err(|_| AppError::not_found("tile"))?;
        let (col, row) = tile_name(&name)?;
        let access = slides.check(&st, &p, &id).await?;
        let key = (id.key(), level, col, row);
        let jpeg = match slides.tiles.get(&key) {
            Some(hit) => hit,
            None => {
                let slide = slides.slide(&st, &p, &id).await?;
                let jpeg = tokio::task::spawn_blocking(move || {
                    let dz = DeepZoom::for_slide(&slide)?;
                    dz.tile_jpeg(&slide, level as usize, col, row, DEFAULT_QUALITY)
                })
                .await
                .map_err(AppError::internal)?
                .map_err(wsi_error)?;
                let jpeg = Bytes::from(jpeg);
                slides.tiles.put(key, jpeg.clone(), jpeg.len());
                jpeg
            }
        };
        slides.audit_tiles(&st, &p, &id, &access).await?;
        Ok((
            [
                (header::CONTENT_TYPE, "image/jpeg"),
                (header::CACHE_CONTROL, "private, max-age=3600"),
            ],
            jpeg,
        )
            .into_response())
    }
    .await;
    r.unwrap_or_else(IntoResponse::into_response)
}

async fn viewer_js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        VIEWER_JS,
    )
        .into_response()
}

struct SlideRow {
    id: String,
    patient: String,
    date: String,
    description: String,
    instances: u32,
}

#[derive(Template)]
#[template(path = "slides_list.html")]
struct ListPage<'a> {
    ctx: Ctx<'a>,
    slides: Vec<SlideRow>,
}

/// `GET /ui/slides`: the DICOM whole-slide series in the archive (TIFF/SVS slides are listed on their case).
async fn list_page(
    State(st): State<AppState>,
    Extension(slides): Extension<Arc<Slides>>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
) -> Response {
    let r: AppResult<Response> = async {
        p.require(SLIDE_ROLES)?;
        let series = imaging::wsi::dicom::list_series(&slides.archive)
            .await
            .map_err(AppError::internal)?;
        // The list shows patient names from the archive: one search event.
        let event =
            caravan_server::audit::event(&p, AuditAction::Search, "slide", "", None, "list");
        st.store().append_audit(vec![event]).await?;
        let rows = series
            .into_iter()
            .map(|s| SlideRow {
                id: format!("dcm-{}-{}", s.study_uid, s.series_uid),
                patient: match s.patient_name {
                    Some(n) => format!("{} ({})", n.replace('^', " "), s.patient_id),
                    None => s.patient_id,
                },
                date: s.study_date.unwrap_or_default(),
                description: s.description.unwrap_or_default(),
                instances: s.instances,
            })
            .collect();
        Ok(render(&ListPage {
            ctx: ctx(&st, Some(&p), &headers, "slides-title", "/ui/slides"),
            slides: rows,
        }))
    }
    .await;
    done(&st, &p, &headers, r)
}

#[derive(Template)]
#[template(path = "slides_view.html")]
struct ViewPage<'a> {
    ctx: Ctx<'a>,
    id: String,
    name: String,
}

/// `GET /ui/slides/{id}`: the viewer.
async fn view_page(
    State(st): State<AppState>,
    Extension(slides): Extension<Arc<Slides>>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let r: AppResult<Response> = async {
        let id = SlideId::parse(&id)?;
        let access = slides.check(&st, &p, &id).await?;
        let key = id.key();
        Ok(render(&ViewPage {
            ctx: ctx(
                &st,
                Some(&p),
                &headers,
                "slides-viewer-title",
                &format!("/ui/slides/{key}"),
            ),
            id: key,
            name: access.title,
        }))
    }
    .await;
    done(&st, &p, &headers, r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slide_ids_round_trip_and_bad_ones_are_refused() {
        let d = SlideId::parse("dcm-1.2.3-1.2.3.4").unwrap();
        assert_eq!(
            d,
            SlideId::Dicom {
                study: "1.2.3".into(),
                series: "1.2.3.4".into()
            }
        );
        assert_eq!(d.key(), "dcm-1.2.3-1.2.3.4");
        for bad in [
            "",
            "dcm-1.2.3",
            "dcm-1..2-3",
            "att-nope",
            "x-1",
            "dcm-1.2-3/../x",
        ] {
            assert!(SlideId::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(tile_name("3_14.jpeg").unwrap(), (3, 14));
        assert!(tile_name("3_14.png").is_err());
        assert!(tile_name("3-14.jpeg").is_err());
    }
}
