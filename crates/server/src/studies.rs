//! DICOM studies in consultations and the viewers of the case page.
//!
//! - A study of the node's archive (`imaging`) is linked to a case (`case_studies`, [`Change::LinkStudy`]):
//!   picked by accession number or patient id from the archive, or uploaded on the case page (a DICOM file or a
//!   zip of them), which stores into the archive and links what was stored. Linking is a write on the case
//!   (same rules as attachments) and an audit event in the patient's log.
//! - Whoever can see the case can view its studies: `/ui/consultations/{id}/dicomweb/studies/{uid}/...` is the
//!   archive's DICOMweb (WADO-RS and QIDO-RS, read-only) behind the case's scope, so a patient sees the images
//!   of their own case and nobody reaches a study through a case it is not linked to. Every archive access is
//!   audited by the archive's observer; opening the viewer is an event in the patient's log.
//! - The viewer page lists the series with rendered thumbnails (works without JavaScript); `viewer.js` (served
//!   here, CSP `script-src 'self'`) adds the interactive viewer on raw frames: window/level with presets,
//!   zoom/pan, slices, MONOCHROME1 inverted, length in mm from Pixel Spacing.
//! - An ECG attachment (DICOM 12-lead waveform, HL7 aECG, SCP-ECG) is drawn on standard paper with its beats
//!   and measurements (`ecg::render`), inline on the case page and as a printable page.

use crate::api::parse_id;
use crate::audit::event;
use crate::auth::{Principal, UiPrincipal};
use crate::error::{AppError, AppResult};
use crate::ui::{ctx, done, read_upload_form, render, Ctx};
use crate::AppState;
use askama::Template;
use axum::body::Body;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use bytes::Bytes;
use caravan_domain::*;
use caravan_store::{Attachment, CaseStudy, Change, StudyState};
use chrono::Utc;
use dicom_dictionary_std::tags;
use serde::Deserialize;
use std::collections::BTreeSet;
use tower::ServiceExt;

const CLINICAL: &[Role] = &[Role::Referrer, Role::Consultant, Role::Coordinator];
/// Files in one uploaded zip.
const MAX_ZIP_ENTRIES: usize = 5_000;
/// Uncompressed bytes of one zip entry (a zip bomb stops here).
const MAX_ZIP_ENTRY_BYTES: u64 = 512 * 1024 * 1024;
/// Attachments larger than this are not looked at for an ECG on the case page.
const MAX_ECG_BYTES: i64 = 32 * 1024 * 1024;

/// The node's DICOM archive as the case pages use it: the archive and its DICOMweb router.
#[derive(Clone)]
pub struct Imaging {
    archive: imaging::Archive,
    dicomweb: axum::Router,
}

impl Imaging {
    pub fn new(archive: imaging::Archive) -> Self {
        let dicomweb =
            imaging::dicomweb::router(imaging::dicomweb::DicomWebState::new(archive.clone()));
        Imaging { archive, dicomweb }
    }
    pub fn archive(&self) -> &imaging::Archive {
        &self.archive
    }
}

pub(crate) fn imaging_of(st: &AppState) -> AppResult<&Imaging> {
    st.imaging().ok_or_else(|| {
        AppError::new(
            StatusCode::NOT_FOUND,
            "error-imaging-off",
            "this node keeps no DICOM archive",
        )
    })
}

/// How the archive's observer names a user (the DICOMweb principal: id, then name).
pub(crate) fn principal_name(p: &Principal) -> String {
    format!("{} {}", p.user.id, p.user.display_name)
}

pub(crate) fn imaging_error(e: imaging::Error) -> AppError {
    match e {
        imaging::Error::Rejected(r) => {
            AppError::unprocessable("error-dicom-rejected", r.to_string())
        }
        imaging::Error::NotFound(_) => AppError::not_found("study"),
        imaging::Error::InvalidQuery(m) => AppError::bad_request(m),
        imaging::Error::Encoding(m) | imaging::Error::Pixel(m) => {
            AppError::unprocessable("error-dicom-rejected", m)
        }
        other => AppError::internal(other),
    }
}

/// What the archive's index says of a study.
#[derive(Clone, Debug, Default)]
pub(crate) struct StudySummary {
    pub uid: String,
    pub accession: String,
    pub description: String,
    pub modalities: String,
    pub date: String,
    pub instances: i64,
    pub patient_id: String,
    pub patient_name: String,
}

fn text(obj: &dicom_object::InMemDicomObject, tag: dicom_core::Tag) -> String {
    obj.get(tag)
        .and_then(|e| {
            e.to_str()
                .ok()
                .map(|s| s.trim_end_matches(['\0', ' ']).to_string())
        })
        .unwrap_or_default()
}

/// Studies of the archive matching `filter` (an attribute and a value in DICOM matching syntax).
pub(crate) async fn find_studies(
    im: &Imaging,
    filter: (dicom_core::Tag, &str),
    who: &str,
) -> AppResult<Vec<StudySummary>> {
    let mut q = imaging::Query::new(imaging::Level::Study).filter(filter.0, filter.1);
    q.limit = Some(50);
    let found = im.archive.query(&q, who).await.map_err(imaging_error)?;
    Ok(found
        .iter()
        .map(|m| {
            let a = &m.attributes;
            StudySummary {
                uid: text(a, tags::STUDY_INSTANCE_UID),
                accession: text(a, tags::ACCESSION_NUMBER),
                description: text(a, tags::STUDY_DESCRIPTION),
                modalities: text(a, tags::MODALITIES_IN_STUDY),
                date: text(a, tags::STUDY_DATE),
                instances: text(a, tags::NUMBER_OF_STUDY_RELATED_INSTANCES)
                    .trim()
                    .parse()
                    .unwrap_or(0),
                patient_id: text(a, tags::PATIENT_ID),
                patient_name: text(a, tags::PATIENT_NAME).replace('^', " "),
            }
        })
        .collect())
}

pub(crate) async fn study_summary(
    im: &Imaging,
    uid: &str,
    who: &str,
) -> AppResult<Option<StudySummary>> {
    if !imaging::archive::is_valid_uid(uid) {
        return Err(AppError::bad_request(format!("{uid:?} is not a DICOM UID")));
    }
    Ok(find_studies(im, (tags::STUDY_INSTANCE_UID, uid), who)
        .await?
        .into_iter()
        .next())
}

/// Link a study of the archive to a case: the case must be visible and writable by `p`.
pub async fn link_study(
    st: &AppState,
    p: &Principal,
    id: ConsultationId,
    uid: &str,
    share: bool,
) -> AppResult<CaseStudy> {
    p.require(CLINICAL)?;
    let im = imaging_of(st)?;
    let c = st.store().get_consultation(&p.actor(), id).await?;
    crate::consult::may_write(p, &c, true)?;
    let s = study_summary(im, uid.trim(), &principal_name(p))
        .await?
        .ok_or_else(|| AppError::not_found("study"))?;
    let now = Utc::now();
    let link = CaseStudy {
        consultation_id: id,
        study_uid: s.uid.clone(),
        accession: s.accession,
        description: s.description,
        modalities: s.modalities,
        study_date: s.date,
        instances: s.instances,
        state: StudyState::Ready,
        share,
        origin_node: None,
        transfer: None,
        detail: String::new(),
        added_by: p.user.id,
        created_at: now,
        updated_at: now,
    };
    let audit = vec![event(
        p,
        AuditAction::Update,
        "consultation",
        id,
        Some(c.patient_id),
        &format!("study linked: {}", s.uid),
    )];
    crate::federation::commit(st, vec![Change::LinkStudy(link.clone())], audit).await?;
    tracing::info!(consultation = %id, "study linked to a case");
    Ok(link)
}

/// Store an uploaded DICOM file, or a zip of DICOM files, into the archive and link the studies stored.
pub async fn upload_studies(
    st: &AppState,
    p: &Principal,
    id: ConsultationId,
    bytes: Bytes,
    share: bool,
) -> AppResult<Vec<CaseStudy>> {
    p.require(CLINICAL)?;
    let im = imaging_of(st)?;
    let c = st.store().get_consultation(&p.actor(), id).await?;
    crate::consult::may_write(p, &c, true)?;
    let who = principal_name(p);
    let files = dicom_files(bytes)?;
    let mut studies = BTreeSet::new();
    for (name, data) in files {
        let stored = im.archive.store(data, &who).await.map_err(|e| match e {
            imaging::Error::Rejected(r) => {
                AppError::unprocessable("error-dicom-rejected", format!("{name}: {r}"))
            }
            other => imaging_error(other),
        })?;
        studies.insert(stored.record().study_uid.clone());
    }
    let mut out = Vec::new();
    for uid in studies {
        out.push(link_study(st, p, id, &uid, share).await?);
    }
    Ok(out)
}

/// The DICOM files of an upload: the file itself, or the DICOM entries of a zip (other entries, such as a
/// DICOMDIR's companions or a README, are skipped; a zip without any DICOM file is refused).
fn dicom_files(bytes: Bytes) -> AppResult<Vec<(String, Bytes)>> {
    let is_dicom = |b: &[u8]| b.get(128..132) == Some(b"DICM");
    if is_dicom(&bytes) {
        return Ok(vec![("upload".into(), bytes)]);
    }
    if !bytes.starts_with(b"PK\x03\x04") {
        return Err(AppError::unprocessable(
            "error-dicom-upload",
            "the file is neither DICOM (Part 10) nor a zip of DICOM files",
        ));
    }
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| AppError::unprocessable("error-dicom-upload", format!("bad zip: {e}")))?;
    if zip.len() > MAX_ZIP_ENTRIES {
        return Err(AppError::unprocessable(
            "error-dicom-upload",
            format!(
                "the zip holds {} files; at most {MAX_ZIP_ENTRIES}",
                zip.len()
            ),
        ));
    }
    let mut out = Vec::new();
    for i in 0..zip.len() {
        let mut f = zip
            .by_index(i)
            .map_err(|e| AppError::unprocessable("error-dicom-upload", format!("bad zip: {e}")))?;
        if f.is_dir() {
            continue;
        }
        let name = f.name().to_owned();
        if f.size() > MAX_ZIP_ENTRY_BYTES {
            return Err(AppError::unprocessable(
                "error-dicom-upload",
                format!("{name}: larger than {MAX_ZIP_ENTRY_BYTES} bytes"),
            ));
        }
        let mut data = Vec::with_capacity(f.size() as usize);
        use std::io::Read;
        f.by_ref()
            .take(MAX_ZIP_ENTRY_BYTES)
            .read_to_end(&mut data)
            .map_err(|e| AppError::unprocessable("error-dicom-upload", format!("{name}: {e}")))?;
        if is_dicom(&data) {
            out.push((name, Bytes::from(data)));
        }
    }
    if out.is_empty() {
        return Err(AppError::unprocessable(
            "error-dicom-upload",
            "the zip holds no DICOM (Part 10) file",
        ));
    }
    Ok(out)
}

// ------------------------------------------------------------------------------------------------------------
// Routes

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/ui/consultations/{id}/studies",
            get(studies_page).post(link_submit),
        )
        .route("/ui/consultations/{id}/studies/upload", post(upload_submit))
        .route("/ui/consultations/{id}/studies/{uid}", get(viewer_page))
        .route(
            "/ui/consultations/{id}/dicomweb/{*rest}",
            get(case_dicomweb),
        )
        .route("/ui/attachments/{id}/ecg", get(ecg_page))
        .route("/ui/attachments/{id}/ecg.svg", get(ecg_svg))
        .route("/static/viewer.js", get(viewer_js))
        .route("/static/viewer.css", get(viewer_css))
}

async fn viewer_js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("../static/viewer.js"),
    )
        .into_response()
}

async fn viewer_css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("../static/viewer.css"),
    )
        .into_response()
}

// ---------- the case page's section ----------

pub(crate) struct StudyRow {
    pub uid: String,
    pub title: String,
    pub meta: String,
    pub ready: bool,
    pub status: String,
}

pub(crate) struct EcgRow {
    pub id: String,
    pub name: String,
}

/// What the case page shows of studies and ECGs.
pub(crate) struct CaseImaging {
    pub case_id: String,
    pub studies: Vec<StudyRow>,
    pub ecgs: Vec<EcgRow>,
    pub can_add: bool,
    pub imaging_on: bool,
}

fn study_title(s: &CaseStudy) -> String {
    let mut parts = vec![];
    if !s.modalities.is_empty() {
        parts.push(s.modalities.replace('\\', "/"));
    }
    if !s.description.is_empty() {
        parts.push(s.description.clone());
    }
    if parts.is_empty() {
        parts.push(s.study_uid.clone());
    }
    parts.join(" · ")
}

fn study_meta(tr: &crate::i18n::Tr, s: &CaseStudy) -> String {
    let mut parts = vec![];
    if s.study_date.len() == 8 {
        parts.push(format!(
            "{}-{}-{}",
            &s.study_date[..4],
            &s.study_date[4..6],
            &s.study_date[6..]
        ));
    }
    if !s.accession.is_empty() {
        parts.push(tr.t1("studies-accession", "accession", &s.accession));
    }
    parts.push(tr.t1("studies-instances", "count", s.instances));
    if let Some(n) = &s.origin_node {
        parts.push(tr.t1("studies-from-node", "node", n));
    }
    parts.join(" · ")
}

fn study_status(tr: &crate::i18n::Tr, s: &CaseStudy) -> String {
    match s.state {
        StudyState::Ready => String::new(),
        StudyState::Pending => tr.t1("studies-pending", "progress", &s.detail),
        StudyState::Failed => tr.t1("studies-failed", "reason", &s.detail),
    }
}

/// Whether an attachment is an ECG the viewer draws (by content: a DICOM waveform SOP class, an HL7 aECG
/// document or an SCP-ECG record).
fn looks_like_ecg(bytes: &[u8]) -> bool {
    if bytes.get(128..132) == Some(b"DICM") {
        let head = &bytes[..bytes.len().min(4096)];
        // Waveform storage SOP classes are 1.2.840.10008.5.1.4.1.1.9.x.
        let class = b"1.2.840.10008.5.1.4.1.1.9.";
        return head.windows(class.len()).any(|w| w == class);
    }
    if ecg::scp::is_scp(bytes) {
        return true;
    }
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min(4096)]);
    ecg::aecg::is_aecg(&head)
}

pub(crate) async fn case_section(
    st: &AppState,
    p: &Principal,
    c: &Consultation,
    attachments: &[Attachment],
    tr: &crate::i18n::Tr<'_>,
) -> AppResult<CaseImaging> {
    let studies = st
        .store()
        .list_case_studies(&p.actor(), c.id)
        .await?
        .iter()
        .map(|s| StudyRow {
            uid: s.study_uid.clone(),
            title: study_title(s),
            meta: study_meta(tr, s),
            ready: s.state == StudyState::Ready,
            status: study_status(tr, s),
        })
        .collect();
    let mut ecgs = vec![];
    if p.role().is_clinical() {
        for a in attachments {
            let candidate = matches!(
                a.content_type.as_str(),
                "application/dicom" | "text/plain" | "application/xml" | "text/xml"
            ) || a.filename.to_ascii_lowercase().ends_with(".scp");
            if !candidate || a.size > MAX_ECG_BYTES {
                continue;
            }
            match st.blobs().get(&a.blob_key).await {
                Ok(bytes) if looks_like_ecg(&bytes) => ecgs.push(EcgRow {
                    id: a.id.to_string(),
                    name: a.filename.clone(),
                }),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(attachment = %a.id, error = %e.message, "attachment unreadable")
                }
            }
        }
    }
    let can_add = st.imaging().is_some()
        && p.role().is_clinical()
        && crate::consult::may_write(p, c, true).is_ok();
    Ok(CaseImaging {
        case_id: c.id.to_string(),
        studies,
        ecgs,
        can_add,
        imaging_on: st.imaging().is_some(),
    })
}

// ---------- studies page: find in the archive, link, upload ----------

#[derive(Deserialize)]
struct FindQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    by: String,
}

struct FoundRow {
    uid: String,
    title: String,
    meta: String,
    patient: String,
    linked: bool,
}

#[derive(Template)]
#[template(path = "studies.html")]
struct StudiesPage<'a> {
    ctx: Ctx<'a>,
    case_id: String,
    question: String,
    q: String,
    by: String,
    searched: bool,
    found: Vec<FoundRow>,
    linked: Vec<StudyRow>,
}

async fn studies_page(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(f): Query<FindQuery>,
) -> Response {
    let r = async {
        p.require(CLINICAL)?;
        let id: ConsultationId = parse_id("consultation", &id)?;
        let im = imaging_of(&st)?;
        let c = st.store().get_consultation(&p.actor(), id).await?;
        crate::consult::may_write(&p, &c, true)?;
        let path = format!("/ui/consultations/{id}/studies");
        let cx = ctx(&st, Some(&p), &headers, "studies-title", &path);
        let tr = cx.tr;
        let linked_studies = st.store().list_case_studies(&p.actor(), id).await?;
        let q = f.q.trim().to_owned();
        let by = if f.by == "patient" { "patient" } else { "accession" };
        let mut found = vec![];
        if !q.is_empty() {
            if q.len() > 64 || q.contains(['*', '?', '\\']) {
                return Err(AppError::bad_request(
                    "search for one exact accession number or patient id (at most 64 characters, no wildcards)",
                ));
            }
            let tag = if by == "patient" {
                tags::PATIENT_ID
            } else {
                tags::ACCESSION_NUMBER
            };
            for s in find_studies(im, (tag, &q), &principal_name(&p)).await? {
                let as_link = CaseStudy {
                    consultation_id: id,
                    study_uid: s.uid.clone(),
                    accession: s.accession.clone(),
                    description: s.description.clone(),
                    modalities: s.modalities.clone(),
                    study_date: s.date.clone(),
                    instances: s.instances,
                    state: StudyState::Ready,
                    share: true,
                    origin_node: None,
                    transfer: None,
                    detail: String::new(),
                    added_by: p.user.id,
                    created_at: Utc::now(),
                    updated_at: Utc::now(),
                };
                found.push(FoundRow {
                    linked: linked_studies.iter().any(|l| l.study_uid == s.uid),
                    title: study_title(&as_link),
                    meta: study_meta(&tr, &as_link),
                    patient: format!("{} ({})", s.patient_name, s.patient_id),
                    uid: s.uid,
                });
            }
        }
        let linked = linked_studies
            .iter()
            .map(|s| StudyRow {
                uid: s.study_uid.clone(),
                title: study_title(s),
                meta: study_meta(&tr, s),
                ready: s.state == StudyState::Ready,
                status: study_status(&tr, s),
            })
            .collect();
        Ok(render(&StudiesPage {
            ctx: cx,
            case_id: id.to_string(),
            question: c.question.clone(),
            searched: !q.is_empty(),
            q,
            by: by.to_owned(),
            found,
            linked,
        }))
    }
    .await;
    done(&st, &p, &headers, r)
}

#[derive(Deserialize)]
struct LinkForm {
    csrf: String,
    study_uid: String,
    #[serde(default)]
    share: Option<String>,
}

async fn link_submit(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<LinkForm>,
) -> Response {
    let r = async {
        p.check_csrf(Some(&f.csrf))?;
        let id: ConsultationId = parse_id("consultation", &id)?;
        link_study(&st, &p, id, &f.study_uid, f.share.is_some()).await?;
        Ok(Redirect::to(&format!("/ui/consultations/{id}#studies")).into_response())
    }
    .await;
    done(&st, &p, &headers, r)
}

async fn upload_submit(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
    Path(id): Path<String>,
    mp: Multipart,
) -> Response {
    let r = async {
        let id: ConsultationId = parse_id("consultation", &id)?;
        let form = read_upload_form(&p, mp).await?;
        let share = form.fields.contains_key("share");
        let f = form
            .file
            .ok_or_else(|| AppError::bad_request("the upload has no file"))?;
        upload_studies(&st, &p, id, f.bytes, share).await?;
        Ok(Redirect::to(&format!("/ui/consultations/{id}#studies")).into_response())
    }
    .await;
    done(&st, &p, &headers, r)
}

// ---------- the viewer ----------

/// The case and its study, if `p` may see the case and the study is linked to it and here.
async fn case_study(
    st: &AppState,
    p: &Principal,
    id: ConsultationId,
    uid: &str,
) -> AppResult<(Consultation, CaseStudy)> {
    let c = st.store().get_consultation(&p.actor(), id).await?;
    let s = st
        .store()
        .list_case_studies(&p.actor(), id)
        .await?
        .into_iter()
        .find(|s| s.study_uid == uid && s.state == StudyState::Ready)
        .ok_or_else(|| AppError::not_found("study"))?;
    Ok((c, s))
}

struct SeriesView {
    uid: String,
    title: String,
    count: usize,
    /// The instance whose rendering is the thumbnail (the middle one).
    thumb_sop: String,
}

#[derive(Template)]
#[template(path = "study_viewer.html")]
struct ViewerPage<'a> {
    ctx: Ctx<'a>,
    case_id: String,
    study_uid: String,
    title: String,
    meta: String,
    base: String,
    series: Vec<SeriesView>,
}

async fn viewer_page(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
    Path((id, uid)): Path<(String, String)>,
) -> Response {
    let r = async {
        let id: ConsultationId = parse_id("consultation", &id)?;
        let im = imaging_of(&st)?;
        let (c, s) = case_study(&st, &p, id, &uid).await?;
        let who = principal_name(&p);
        let mut q = imaging::Query::new(imaging::Level::Series)
            .filter(tags::STUDY_INSTANCE_UID, uid.as_str());
        q.limit = Some(500);
        let series_attrs = im.archive.query(&q, &who).await.map_err(imaging_error)?;
        let records = im
            .archive
            .instances(&uid, None, None)
            .await
            .map_err(imaging_error)?;
        let mut series = vec![];
        for m in &series_attrs {
            let a = &m.attributes;
            let se = text(a, tags::SERIES_INSTANCE_UID);
            let members: Vec<_> = records.iter().filter(|r| r.series_uid == se).collect();
            let Some(mid) = members.get(members.len() / 2) else {
                continue;
            };
            let number = text(a, tags::SERIES_NUMBER);
            let desc = text(a, tags::SERIES_DESCRIPTION);
            let modality = text(a, tags::MODALITY);
            let title = [number.as_str(), modality.as_str(), desc.as_str()]
                .iter()
                .filter(|x| !x.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join(" · ");
            series.push(SeriesView {
                uid: se.clone(),
                title,
                count: members.iter().map(|r| r.number_of_frames as usize).sum(),
                thumb_sop: mid.sop_instance_uid.clone(),
            });
        }
        st.store()
            .append_audit(vec![event(
                &p,
                AuditAction::Read,
                "dicom-study",
                &uid,
                Some(c.patient_id),
                "viewer",
            )])
            .await?;
        let path = format!("/ui/consultations/{id}/studies/{uid}");
        let mut cx = ctx(&st, Some(&p), &headers, "viewer-title", &path);
        let tr = cx.tr;
        cx.title = study_title(&s);
        Ok(render(&ViewerPage {
            title: study_title(&s),
            meta: study_meta(&tr, &s),
            ctx: cx,
            case_id: id.to_string(),
            base: format!("/ui/consultations/{id}/dicomweb/studies/{uid}"),
            study_uid: uid,
            series,
        }))
    }
    .await;
    done(&st, &p, &headers, r)
}

/// The archive's DICOMweb, read-only, for the studies linked to a case the caller can see.
async fn case_dicomweb(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    Path((id, rest)): Path<(String, String)>,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let r: AppResult<Response> = async {
        let id: ConsultationId = parse_id("consultation", &id)?;
        let im = imaging_of(&st)?;
        let mut segments = rest.split('/');
        let (Some("studies"), Some(uid)) = (segments.next(), segments.next()) else {
            return Err(AppError::not_found("study"));
        };
        case_study(&st, &p, id, uid).await?;
        if method != Method::GET {
            return Err(AppError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "error-read-only",
                "studies of a case are read-only here",
            ));
        }
        let target = match uri.query() {
            Some(q) => format!("/{rest}?{q}"),
            None => format!("/{rest}"),
        };
        let mut inner = axum::http::Request::builder()
            .method(Method::GET)
            .uri(target)
            .body(Body::empty())
            .map_err(AppError::internal)?;
        for name in [header::ACCEPT, header::ACCEPT_ENCODING] {
            if let Some(v) = headers.get(&name) {
                inner.headers_mut().insert(name, v.clone());
            }
        }
        inner
            .extensions_mut()
            .insert(imaging::dicomweb::Principal(principal_name(&p)));
        let mut resp = im
            .dicomweb
            .clone()
            .oneshot(inner)
            .await
            .map_err(AppError::internal)?;
        resp.headers_mut().insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("private, max-age=300"),
        );
        Ok(resp)
    }
    .await;
    r.unwrap_or_else(IntoResponse::into_response)
}

// ---------- ECG ----------

/// Reads an ECG from an attachment's bytes: a DICOM waveform, SCP-ECG or HL7 aECG.
fn read_ecg(bytes: &[u8]) -> Result<ecg::Ecg, String> {
    if ecg::dicom::is_dicom(bytes) {
        return ecg::dicom::read_dicom_bytes(bytes)
            .map_err(|e| e.to_string())?
            .rhythm()
            .cloned()
            .ok_or_else(|| "the DICOM file holds no rhythm waveform".to_string());
    }
    if ecg::scp::is_scp(bytes) {
        return ecg::scp::read_scp(bytes).map_err(|e| e.to_string());
    }
    let text = std::str::from_utf8(bytes).map_err(|_| "not an ECG file".to_string())?;
    if ecg::aecg::is_aecg(text) {
        return ecg::aecg::read_aecg(text).map_err(|e| e.to_string());
    }
    Err("not an ECG file (DICOM waveform, HL7 aECG or SCP-ECG)".into())
}

struct EcgDrawing {
    svg: String,
    rows: Vec<(String, String)>,
    leads: String,
}

async fn ecg_drawing(
    st: &AppState,
    p: &Principal,
    id: &str,
    tr: Option<&crate::i18n::Tr<'_>>,
) -> AppResult<(Attachment, EcgDrawing)> {
    p.require(CLINICAL)?;
    let (a, bytes) = crate::consult::attachment_content(st, p, parse_id("attachment", id)?).await?;
    let (svg, m, leads) = tokio::task::spawn_blocking(move || -> Result<_, String> {
        let ecg = read_ecg(&bytes)?;
        let beats = ecg::qrs::detect_ecg(&ecg).map_err(|e| e.to_string())?;
        let m = ecg::measure::measure_with_beats(&ecg, &beats).ok();
        let svg = ecg::render::render_svg(
            &ecg,
            &beats,
            m.as_ref(),
            &ecg::render::RenderOptions::default(),
        );
        let leads = ecg.summary();
        Ok((svg, m, leads))
    })
    .await
    .map_err(AppError::internal)?
    .map_err(|reason| AppError::unprocessable("error-ecg-unreadable", reason))?;
    let mut rows = vec![];
    if let (Some(tr), Some(m)) = (tr, m.as_ref()) {
        let ms = |v: f64| format!("{v:.0} ms");
        rows.push((
            tr.t("ecg-heart-rate"),
            format!("{:.0} /min", m.heart_rate_bpm),
        ));
        rows.push((
            tr.t("ecg-rr"),
            format!(
                "{} ({}–{})",
                ms(m.rr_mean_ms),
                ms(m.rr_min_ms),
                ms(m.rr_max_ms)
            ),
        ));
        if let Some(pr) = m.pr_interval_ms {
            rows.push((tr.t("ecg-pr"), ms(pr)));
        }
        rows.push((tr.t("ecg-qrs"), ms(m.qrs_duration_ms)));
        rows.push((tr.t("ecg-qt"), ms(m.qt_interval_ms)));
        rows.push((tr.t("ecg-qtc-bazett"), ms(m.qtc_bazett_ms)));
        rows.push((tr.t("ecg-qtc-fridericia"), ms(m.qtc_fridericia_ms)));
        rows.push((tr.t("ecg-beats"), m.beats.to_string()));
    }
    let leads = format!(
        "{} · {:.0} Hz · {:.1} s",
        leads.leads.join(", "),
        leads.fs,
        leads.seconds
    );
    Ok((a, EcgDrawing { svg, rows, leads }))
}

#[derive(Template)]
#[template(path = "ecg.html")]
struct EcgPage<'a> {
    ctx: Ctx<'a>,
    name: String,
    case_id: String,
    svg: String,
    rows: Vec<(String, String)>,
    leads: String,
    unmeasured: bool,
}

async fn ecg_page(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let r = async {
        let path = format!("/ui/attachments/{id}/ecg");
        let mut cx = ctx(&st, Some(&p), &headers, "ecg-title", &path);
        let tr = cx.tr;
        let (a, d) = ecg_drawing(&st, &p, &id, Some(&tr)).await?;
        cx.title = format!("{} · {}", tr.t("ecg-title"), a.filename);
        Ok(render(&EcgPage {
            ctx: cx,
            name: a.filename.clone(),
            case_id: a.consultation_id.to_string(),
            unmeasured: d.rows.is_empty(),
            svg: d.svg,
            rows: d.rows,
            leads: d.leads,
        }))
    }
    .await;
    done(&st, &p, &headers, r)
}

async fn ecg_svg(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    Path(id): Path<String>,
) -> Response {
    match ecg_drawing(&st, &p, &id, None).await {
        Ok((_, d)) => (
            [
                (header::CONTENT_TYPE, "image/svg+xml"),
                (header::CACHE_CONTROL, "private, no-store"),
            ],
            d.svg,
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}
