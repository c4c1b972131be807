//! DICOMweb (PS3.18): STOW-RS, QIDO-RS and WADO-RS as an axum router.
//!
//! The node nests [`router`] at `/dicomweb` behind its authentication and puts the caller's
//! identity in a [`Principal`] request extension; the router passes it to the archive's
//! [`AccessObserver`](crate::AccessObserver) on every read and write.

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_core::Tag;
use dicom_dictionary_std::{tags, StandardDataDictionary};
use serde_json::{json, Map, Value};

use crate::archive::{AccessAction, Archive, InstanceRecord, StoreOutcome};
use crate::error::Error;
use crate::query::{Level, Query, ReturnKeys};
use crate::render::{self, ImageFormat, RenderOptions, Window};

/// The authenticated caller, set by the embedding node's middleware.
#[derive(Debug, Clone)]
pub struct Principal(pub String);

/// Router state.
#[derive(Debug, Clone)]
pub struct DicomWebState {
    pub archive: Archive,
    /// Largest STOW-RS request body accepted.
    pub max_upload_bytes: usize,
}

impl DicomWebState {
    pub fn new(archive: Archive) -> Self {
        DicomWebState {
            archive,
            max_upload_bytes: 512 * 1024 * 1024,
        }
    }
}

/// The DICOMweb routes, relative to the service root (the node mounts them at `/dicomweb`).
pub fn router(state: DicomWebState) -> Router {
    let limit = state.max_upload_bytes;
    Router::new()
        .route("/studies", get(search_studies).post(stow_any))
        .route("/studies/{study}", get(retrieve_study).post(stow_study))
        .route("/studies/{study}/metadata", get(study_metadata))
        .route("/studies/{study}/series", get(search_series_in_study))
        .route("/studies/{study}/instances", get(search_instances_in_study))
        .route("/studies/{study}/series/{series}", get(retrieve_series))
        .route(
            "/studies/{study}/series/{series}/metadata",
            get(series_metadata),
        )
        .route(
            "/studies/{study}/series/{series}/instances",
            get(search_instances_in_series),
        )
        .route(
            "/studies/{study}/series/{series}/instances/{sop}",
            get(retrieve_instance),
        )
        .route(
            "/studies/{study}/series/{series}/instances/{sop}/metadata",
            get(instance_metadata),
        )
        .route(
            "/studies/{study}/series/{series}/instances/{sop}/rendered",
            get(rendered_instance),
        )
        .route(
            "/studies/{study}/series/{series}/instances/{sop}/frames/{frames}",
            get(frames),
        )
        .route(
            "/studies/{study}/series/{series}/instances/{sop}/frames/{frames}/rendered",
            get(rendered_frame),
        )
        .route("/series", get(search_series))
        .route("/instances", get(search_instances))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// An error as an HTTP response: client mistakes are 4xx with the precise reason, server faults
/// are 500 with the detail only in the log.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = match &self.0 {
            Error::Rejected(r) => (StatusCode::BAD_REQUEST, r.to_string()),
            Error::InvalidQuery(m) => (StatusCode::BAD_REQUEST, m.clone()),
            Error::NotFound(m) => (StatusCode::NOT_FOUND, format!("not found: {m}")),
            Error::Pixel(m) => (StatusCode::UNPROCESSABLE_ENTITY, m.clone()),
            Error::Encoding(m) => (StatusCode::UNPROCESSABLE_ENTITY, m.clone()),
            other => {
                tracing::error!(error = %other, "DICOMweb request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error".to_string(),
                )
            }
        };
        (
            status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            message,
        )
            .into_response()
    }
}

type ApiResult<T> = Result<T, ApiError>;

fn principal(p: &Option<Extension<Principal>>) -> String {
    p.as_ref()
        .map(|Extension(p)| p.0.clone())
        .unwrap_or_else(|| "anonymous".to_string())
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(Error::InvalidQuery(msg.into()))
}

/// Resolves a QIDO attribute name: a keyword (`PatientName`) or eight hex digits (`00100010`).
fn resolve_tag(name: &str) -> Option<Tag> {
    if name.len() == 8 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
        let group = u16::from_str_radix(&name[0..4], 16).ok()?;
        let element = u16::from_str_radix(&name[4..8], 16).ok()?;
        return Some(Tag(group, element));
    }
    StandardDataDictionary.by_name(name).map(|e| e.tag())
}

/// Builds a query from QIDO-RS parameters.
fn parse_qido(level: Level, raw: Option<&str>, fixed: &[(Tag, &str)]) -> ApiResult<Query> {
    let mut query = Query::new(level);
    let mut include: Vec<Tag> = Vec::new();
    let mut all = false;
    for (key, value) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        match key.as_ref() {
            "limit" => {
                query.limit = Some(
                    value
                        .parse()
                        .map_err(|_| bad(format!("limit must be a number, got {value:?}")))?,
                )
            }
            "offset" => {
                query.offset = value
                    .parse()
                    .map_err(|_| bad(format!("offset must be a number, got {value:?}")))?
            }
            "includefield" => {
                for name in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    if name == "all" {
                        all = true;
                    } else {
                        include.push(
                            resolve_tag(name)
                                .ok_or_else(|| bad(format!("unknown attribute {name:?}")))?,
                        );
                    }
                }
            }
            // Fuzzy matching is optional (PS3.18 8.3.4.5); names already match case-insensitively.
            "fuzzymatching" => {}
            name => {
                let tag =
                    resolve_tag(name).ok_or_else(|| bad(format!("unknown attribute {name:?}")))?;
                query.filters.push((tag, value.into_owned()));
            }
        }
    }
    for (tag, value) in fixed {
        query.filters.push((*tag, (*value).to_string()));
    }
    // Matching keys are returned too (PS3.18 8.3.4.4).
    let mut extra: Vec<Tag> = query.filters.iter().map(|(t, _)| *t).collect();
    extra.extend(include);
    query.returns = if all {
        ReturnKeys::All
    } else {
        ReturnKeys::Plus(extra)
    };
    Ok(query)
}

async fn run_qido(state: &DicomWebState, query: Query, who: &str) -> ApiResult<Response> {
    let matches = state.archive.query(&query, who).await?;
    let mut out = Vec::with_capacity(matches.len());
    for m in matches {
        out.push(
            dicom_json::to_value(&m.attributes)
                .map_err(|e| ApiError(Error::Encoding(e.to_string())))?,
        );
    }
    Ok(dicom_json_response(Value::Array(out)))
}

fn dicom_json_response(value: Value) -> Response {
    (
        [(header::CONTENT_TYPE, "application/dicom+json")],
        value.to_string(),
    )
        .into_response()
}

async fn search_studies(
    State(s): State<DicomWebState>,
    p: Option<Extension<Principal>>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let query = parse_qido(Level::Study, q.as_deref(), &[])?;
    run_qido(&s, query, &principal(&p)).await
}

async fn search_series(
    State(s): State<DicomWebState>,
    p: Option<Extension<Principal>>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let query = parse_qido(Level::Series, q.as_deref(), &[])?;
    run_qido(&s, query, &principal(&p)).await
}

async fn search_instances(
    State(s): State<DicomWebState>,
    p: Option<Extension<Principal>>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let query = parse_qido(Level::Image, q.as_deref(), &[])?;
    run_qido(&s, query, &principal(&p)).await
}

async fn search_series_in_study(
    State(s): State<DicomWebState>,
    p: Option<Extension<Principal>>,
    Path(study): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let query = parse_qido(
        Level::Series,
        q.as_deref(),
        &[(tags::STUDY_INSTANCE_UID, &study)],
    )?;
    run_qido(&s, query, &principal(&p)).await
}

async fn search_instances_in_study(
    State(s): State<DicomWebState>,
    p: Option<Extension<Principal>>,
    Path(study): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let query = parse_qido(
        Level::Image,
        q.as_deref(),
        &[(tags::STUDY_INSTANCE_UID, &study)],
    )?;
    run_qido(&s, query, &principal(&p)).await
}

async fn search_instances_in_series(
    State(s): State<DicomWebState>,
    p: Option<Extension<Principal>>,
    Path((study, series)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let query = parse_qido(
        Level::Image,
        q.as_deref(),
        &[
            (tags::STUDY_INSTANCE_UID, &study),
            (tags::SERIES_INSTANCE_UID, &series),
        ],
    )?;
    run_qido(&s, query, &principal(&p)).await
}

fn boundary() -> String {
    format!(
        "caravan-{}",
        crate::uid::new_uid().trim_start_matches("2.25.")
    )
}

/// Builds a `multipart/related` body. Written by hand: axum has no multipart writer, and the
/// format (RFC 2387 parts separated by a boundary) is a few lines.
fn multipart_response(media_type: &str, parts: Vec<(String, Bytes)>) -> Response {
    let b = boundary();
    let total: usize = parts.iter().map(|(_, d)| d.len() + 128).sum();
    let mut body = Vec::with_capacity(total + 64);
    for (content_type, data) in parts {
        body.extend_from_slice(format!("--{b}\r\nContent-Type: {content_type}\r\n\r\n").as_bytes());
        body.extend_from_slice(&data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{b}--\r\n").as_bytes());
    let ct = format!("multipart/related; type=\"{media_type}\"; boundary={b}");
    let mut response = Response::new(Body::from(body));
    if let Ok(v) = HeaderValue::from_str(&ct) {
        response.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    response
}

async fn records(
    s: &DicomWebState,
    study: &str,
    series: Option<&str>,
    sop: Option<&str>,
) -> ApiResult<Vec<InstanceRecord>> {
    let records = s.archive.instances(study, series, sop).await?;
    if records.is_empty() {
        let what = match (series, sop) {
            (_, Some(sop)) => format!("instance {sop}"),
            (Some(series), None) => format!("series {series}"),
            _ => format!("study {study}"),
        };
        return Err(ApiError(Error::NotFound(what)));
    }
    Ok(records)
}

async fn retrieve(
    s: &DicomWebState,
    who: &str,
    records: Vec<InstanceRecord>,
) -> ApiResult<Response> {
    let mut parts = Vec::with_capacity(records.len());
    for r in &records {
        let bytes = s.archive.read(r, AccessAction::Retrieve, who).await?;
        parts.push((
            format!("application/dicom; transfer-syntax={}", r.transfer_syntax),
            bytes,
        ));
    }
    Ok(multipart_response("application/dicom", parts))
}

async fn retrieve_study(
    State(s): State<DicomWebState>,
    p: Option<Extension<Principal>>,
    Path(study): Path<String>,
) -> ApiResult<Response> {
    let r = records(&s, &study, None, None).await?;
    retrieve(&s, &principal(&p), r).await
}

async fn retrieve_series(
    State(s): State<DicomWebState>,
    p: Option<Extension<Principal>>,
    Path((study, series)): Path<(String, String)>,
) -> ApiResult<Response> {
    let r = records(&s, &study, Some(&series), None).await?;
    retrieve(&s, &principal(&p), r).await
}

async fn retrieve_instance(
    State(s): State<DicomWebState>,
    p: Option<Extension<Principal>>,
    Path((study, series, sop)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    let r = records(&s, &study, Some(&series), Some(&sop)).await?;
    retrieve(&s, &principal(&p), r).await
}

/// DICOM JSON metadata of one instance: every attribute but the pixel data, whose place is taken
/// by a BulkDataURI pointing at the frames resource.
fn metadata_json(bytes: &[u8], record: &InstanceRecord) -> ApiResult<Value> {
    let mut obj = render::open(bytes)?.into_inner();
    let had_pixels = obj.remove_element(tags::PIXEL_DATA);
    let mut value =
        dicom_json::to_value(&obj).map_err(|e| ApiError(Error::Encoding(e.to_string())))?;
    if let Value::Object(map) = &mut value {
        map.insert(
            "00020010".into(),
            json!({"vr": "UI", "Value": [record.transfer_syntax]}),
        );
        if had_pixels {
            let frames: Vec<String> = (1..=record.number_of_frames)
                .map(|n| n.to_string())
                .collect();
            map.insert(
                "7FE00010".into(),
                json!({"vr": "OB", "BulkDataURI": format!(
                    "studies/{}/series/{}/instances/{}/frames/{}",
                    record.study_uid, record.series_uid, record.sop_instance_uid, frames.join(",")
                )}),
            );
        }
    }
    Ok(value)
}

async fn metadata(
    s: &DicomWebState,
    who: &str,
    records: Vec<InstanceRecord>,
) -> ApiResult<Response> {
    let mut out = Vec::with_capacity(records.len());
    for r in &records {
        let bytes = s.archive.read(r, AccessAction::Metadata, who).await?;
        out.push(metadata_json(&bytes, r)?);
    }
    Ok(dicom_json_response(Value::Array(out)))
}

async fn study_metadata(
    State(s): State<DicomWebState>,
    p: Option<Extension<Principal>>,
    Path(study): Path<String>,
) -> ApiResult<Response> {
    let r = records(&s, &study, None, None).await?;
    metadata(&s, &principal(&p), r).await
}

async fn series_metadata(
    State(s): State<DicomWebState>,
    p: Option<Extension<Principal>>,
    Path((study, series)): Path<(String, String)>,
) -> ApiResult<Response> {
    let r = records(&s, &study, Some(&series), None).await?;
    metadata(&s, &principal(&p), r).await
}

async fn instance_metadata(
    State(s): State<DicomWebState>,
    p: Option<Extension<Principal>>,
    Path((study, series, sop)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    let r = records(&s, &study, Some(&series), Some(&sop)).await?;
    metadata(&s, &principal(&p), r).await
}

/// Parses a 1-based frame list such as `1,3,4`.
fn parse_frames(list: &str) -> ApiResult<Vec<u32>> {
    list.split(',')
        .map(|f| {
            f.trim()
                .parse::<u32>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| bad(format!("bad frame number {f:?} (frames count from 1)")))
        })
        .collect()
}

async fn frames(
    State(s): State<DicomWebState>,
    p: Option<Extension<Principal>>,
    Path((study, series, sop, list)): Path<(String, String, String, String)>,
) -> ApiResult<Response> {
    let numbers = parse_frames(&list)?;
    let record = records(&s, &study, Some(&series), Some(&sop))
        .await?
        .remove(0);
    let bytes = s
        .archive
        .read(&record, AccessAction::Pixels, &principal(&p))
        .await?;
    // Decoding is CPU work: keep it off the async executor.
    let parts = tokio::task::spawn_blocking(move || -> Result<Vec<(String, Bytes)>, Error> {
        let obj = render::open(&bytes)?;
        numbers
            .iter()
            .map(|n| {
                render::frame_bytes(&obj, n - 1)
                    .map(|d| ("application/octet-stream".to_string(), Bytes::from(d)))
            })
            .collect()
    })
    .await
    .map_err(|e| ApiError(Error::Pixel(e.to_string())))??;
    Ok(multipart_response("application/octet-stream", parts))
}

fn render_options(headers: &HeaderMap, raw: Option<&str>, frame: u32) -> ApiResult<RenderOptions> {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mut options = RenderOptions {
        frame,
        window: None,
        format: if accept.contains("image/png") && !accept.contains("image/jpeg") {
            ImageFormat::Png
        } else {
            ImageFormat::Jpeg { quality: 90 }
        },
    };
    for (key, value) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        match key.as_ref() {
            "window" => {
                let parts: Vec<&str> = value.split(',').collect();
                let (c, w) = match parts.as_slice() {
                    [c, w] | [c, w, _] => (c.trim().parse::<f64>(), w.trim().parse::<f64>()),
                    _ => {
                        return Err(bad(format!(
                            "window must be center,width[,function], got {value:?}"
                        )))
                    }
                };
                match (c, w) {
                    (Ok(center), Ok(width)) if width >= 1.0 && center.is_finite() => {
                        options.window = Some(Window { center, width })
                    }
                    _ => return Err(bad(format!("bad window {value:?}"))),
                }
            }
            "quality" => {
                let q: u8 = value
                    .parse()
                    .ok()
                    .filter(|q| (1..=100).contains(q))
                    .ok_or_else(|| bad(format!("quality must be 1..100, got {value:?}")))?;
                if let ImageFormat::Jpeg { .. } = options.format {
                    options.format = ImageFormat::Jpeg { quality: q };
                }
            }
            _ => {}
        }
    }
    Ok(options)
}

async fn rendered(
    s: DicomWebState,
    who: String,
    study: String,
    series: String,
    sop: String,
    options: RenderOptions,
) -> ApiResult<Response> {
    let record = records(&s, &study, Some(&series), Some(&sop))
        .await?
        .remove(0);
    let bytes = s.archive.read(&record, AccessAction::Pixels, &who).await?;
    let image = tokio::task::spawn_blocking(move || {
        let obj = render::open(&bytes)?;
        render::render(&obj, &options)
    })
    .await
    .map_err(|e| ApiError(Error::Pixel(e.to_string())))??;
    let ct = match options.format {
        ImageFormat::Png => "image/png",
        ImageFormat::Jpeg { .. } => "image/jpeg",
    };
    Ok(([(header::CONTENT_TYPE, ct)], image).into_response())
}

async fn rendered_instance(
    State(s): State<DicomWebState>,
    p: Option<Extension<Principal>>,
    headers: HeaderMap,
    Path((study, series, sop)): Path<(String, String, String)>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let options = render_options(&headers, q.as_deref(), 0)?;
    rendered(s, principal(&p), study, series, sop, options).await
}

async fn rendered_frame(
    State(s): State<DicomWebState>,
    p: Option<Extension<Principal>>,
    headers: HeaderMap,
    Path((study, series, sop, list)): Path<(String, String, String, String)>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let frames = parse_frames(&list)?;
    let [frame] = frames.as_slice() else {
        return Err(bad("a rendered frame request names exactly one frame"));
    };
    let options = render_options(&headers, q.as_deref(), frame - 1)?;
    rendered(s, principal(&p), study, series, sop, options).await
}

/// One part of a multipart body.
struct Part<'a> {
    content_type: Option<String>,
    body: &'a [u8],
}

/// Extracts the boundary (and checks the media type) of a `multipart/related` request.
fn multipart_boundary(headers: &HeaderMap) -> ApiResult<String> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| bad("STOW-RS needs a Content-Type header"))?;
    let mut params = ct.split(';').map(str::trim);
    let media = params.next().unwrap_or("").to_ascii_lowercase();
    if media != "multipart/related" {
        return Err(bad(format!(
            "STOW-RS takes multipart/related; type=\"application/dicom\", got {media:?}"
        )));
    }
    for p in params {
        if let Some((k, v)) = p.split_once('=') {
            let k = k.trim().to_ascii_lowercase();
            let v = v.trim().trim_matches('"');
            if k == "type" && !v.eq_ignore_ascii_case("application/dicom") {
                return Err(bad(format!(
                    "only type=\"application/dicom\" is supported, got {v:?}"
                )));
            }
            if k == "boundary" && !v.is_empty() {
                return Ok(v.to_string());
            }
        }
    }
    Err(bad("multipart/related without a boundary"))
}

/// Splits a multipart body (RFC 2046 5.1.1). Written by hand because axum's multipart extractor
/// accepts only multipart/form-data.
fn split_multipart<'a>(body: &'a [u8], boundary: &str) -> ApiResult<Vec<Part<'a>>> {
    let delimiter = format!("--{boundary}");
    let finder = memchr::memmem::Finder::new(delimiter.as_bytes());
    let next_delimiter = format!("\r\n--{boundary}");
    let next_finder = memchr::memmem::Finder::new(next_delimiter.as_bytes());
    let start = finder
        .find(body)
        .ok_or_else(|| bad("multipart body does not contain its boundary"))?;
    let mut pos = start + delimiter.len();
    let mut parts = Vec::new();
    loop {
        if body[pos..].starts_with(b"--") {
            return Ok(parts);
        }
        // Skip transport padding and the CRLF after the delimiter.
        while pos < body.len() && (body[pos] == b' ' || body[pos] == b'\t') {
            pos += 1;
        }
        if !body[pos..].starts_with(b"\r\n") {
            return Err(bad("malformed multipart delimiter line"));
        }
        pos += 2;
        let header_end = memchr::memmem::find(&body[pos..], b"\r\n\r\n");
        let (headers, content_start) = match header_end {
            Some(0) => ("", pos + 4),
            Some(n) => (
                std::str::from_utf8(&body[pos..pos + n])
                    .map_err(|_| bad("multipart part headers are not text"))?,
                pos + n + 4,
            ),
            None if body[pos..].starts_with(b"\r\n") => ("", pos + 2),
            None => return Err(bad("multipart part without a blank line after its headers")),
        };
        let content_type = headers.lines().find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_string())
        });
        let end = next_finder
            .find(&body[content_start..])
            .ok_or_else(|| bad("multipart body ends without its closing boundary"))?;
        parts.push(Part {
            content_type,
            body: &body[content_start..content_start + end],
        });
        pos = content_start + end + next_delimiter.len();
        if pos > body.len() {
            return Err(bad("multipart body is truncated"));
        }
    }
}

/// Failure reasons of PS3.18 table 10.5.3-2 / PS3.4 C-STORE statuses.
const FAILURE_CANNOT_UNDERSTAND: u16 = 0xC000;
const FAILURE_PROCESSING: u16 = 0x0110;
const FAILURE_NOT_APPLICATION_DICOM: u16 = 0xC122;

async fn stow(
    s: DicomWebState,
    who: String,
    study: Option<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let b = multipart_boundary(&headers)?;
    let parts = split_multipart(&body, &b)?;
    if parts.is_empty() {
        return Err(bad("the multipart body holds no instance"));
    }
    let mut stored = Vec::new();
    let mut failed = Vec::new();
    for part in parts {
        if let Some(ct) = &part.content_type {
            let media = ct.split(';').next().unwrap_or("").trim();
            if !media.eq_ignore_ascii_case("application/dicom") {
                failed.push(failure_item(
                    None,
                    FAILURE_NOT_APPLICATION_DICOM,
                    &format!("part has media type {media:?}, expected application/dicom"),
                ));
                continue;
            }
        }
        // Slicing the request body shares its buffer instead of copying the instance.
        let offset = part.body.as_ptr() as usize - body.as_ptr() as usize;
        let bytes = body.slice(offset..offset + part.body.len());
        match s.archive.store_checked(bytes, study.as_deref(), &who).await {
            Ok(StoreOutcome::Stored(r)) | Ok(StoreOutcome::AlreadyStored(r)) => {
                stored.push(json!({
                    "00081150": {"vr": "UI", "Value": [r.sop_class_uid]},
                    "00081155": {"vr": "UI", "Value": [r.sop_instance_uid]},
                    "00081190": {"vr": "UR", "Value": [format!(
                        "studies/{}/series/{}/instances/{}",
                        r.study_uid, r.series_uid, r.sop_instance_uid
                    )]},
                }));
            }
            Err(Error::Rejected(reason)) => {
                tracing::info!(reason = %reason, "STOW-RS instance rejected");
                failed.push(failure_item(
                    None,
                    FAILURE_CANNOT_UNDERSTAND,
                    &reason.to_string(),
                ));
            }
            Err(e) => {
                tracing::error!(error = %e, "STOW-RS store failed");
                failed.push(failure_item(
                    None,
                    FAILURE_PROCESSING,
                    "the archive could not store the instance",
                ));
            }
        }
    }
    let mut response = Map::new();
    let status = match (stored.is_empty(), failed.is_empty()) {
        (false, true) => StatusCode::OK,
        (false, false) => StatusCode::ACCEPTED,
        _ => StatusCode::CONFLICT,
    };
    if !stored.is_empty() {
        response.insert("00081199".into(), json!({"vr": "SQ", "Value": stored}));
    }
    if !failed.is_empty() {
        response.insert("00081198".into(), json!({"vr": "SQ", "Value": failed}));
    }
    Ok((
        status,
        [(header::CONTENT_TYPE, "application/dicom+json")],
        Value::Object(response).to_string(),
    )
        .into_response())
}

/// A Failed SOP Sequence item. The precise reason travels in Error Comment (0000,0902), which
/// PS3.18 does not define for STOW-RS but which clients ignore if they do not know it.
fn failure_item(sop: Option<&str>, reason: u16, comment: &str) -> Value {
    let mut item = Map::new();
    if let Some(sop) = sop {
        item.insert("00081155".into(), json!({"vr": "UI", "Value": [sop]}));
    }
    item.insert("00081197".into(), json!({"vr": "US", "Value": [reason]}));
    item.insert("00000902".into(), json!({"vr": "LO", "Value": [comment]}));
    Value::Object(item)
}

async fn stow_any(
    State(s): State<DicomWebState>,
    p: Option<Extension<Principal>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    stow(s, principal(&p), None, headers, body).await
}

async fn stow_study(
    State(s): State<DicomWebState>,
    p: Option<Extension<Principal>>,
    Path(study): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    stow(s, principal(&p), Some(study), headers, body).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_splits_parts_with_binary_content() {
        let body = b"preamble\r\n--XyZ\r\nContent-Type: application/dicom\r\n\r\n\x00\x01\r\n--\x02\r\n--XyZ\r\n\r\nsecond\r\n--XyZ--\r\n";
        let parts = split_multipart(body, "XyZ").expect("parts");
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].body, b"\x00\x01\r\n--\x02");
        assert_eq!(parts[0].content_type.as_deref(), Some("application/dicom"));
        assert_eq!(parts[1].body, b"second");
        assert!(split_multipart(b"--XyZ\r\n\r\nunterminated", "XyZ").is_err());
        assert!(split_multipart(b"no boundary", "XyZ").is_err());
    }

    #[test]
    fn qido_parameters_resolve_keywords_and_tags() {
        let q = parse_qido(
            Level::Study,
            Some("PatientName=Doe*&00100020=123&limit=5&offset=2&includefield=StudyDescription"),
            &[],
        )
        .expect("query");
        assert_eq!(q.limit, Some(5));
        assert_eq!(q.offset, 2);
        assert_eq!(q.filters.len(), 2);
        assert_eq!(q.filters[1].0, tags::PATIENT_ID);
        assert!(parse_qido(Level::Study, Some("NoSuchKeyword=1"), &[]).is_err());
        assert!(parse_qido(Level::Study, Some("limit=x"), &[]).is_err());
    }
}
