//! Attachment uploads of any size (whole-slide images run to gigabytes): the multipart form of the UI and of the
//! JSON API read from the raw request body, so the file is handed on piece by piece
//! ([`crate::consult::add_attachment_stream`] writes it to the blob store as it arrives) and never buffered.
//!
//! The node's default body limit applies only to extractors that buffer (`Bytes`, `Json`, `Form`, `Multipart`),
//! so it is not in force on these two routes; their bounds are kept here instead: the body before the file (the
//! form's other fields and every part's headers, with what the server reads ahead) is at most [`FORM_BYTES`],
//! the file is at most [`crate::NodeConfig::max_attachment_bytes`] (counted exactly where it is stored), and
//! what may follow it at most [`FORM_BYTES`] again. A UI form's CSRF token is its first field and is checked
//! before anything else is read, so a forged request never gets its file read.

use crate::auth::Principal;
use crate::error::{AppError, AppResult};
use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use bytes::Bytes;
use futures::Stream;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

/// Most bytes of an upload's body before its file starts (and after it ends).
pub const FORM_BYTES: u64 = 1 << 20;

/// Where an upload's CSRF token is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Csrf {
    /// A UI form: the token is the form's first field (`csrf`); without it only a bearer-token caller goes on.
    FirstField,
    /// Already checked (the JSON API's `X-CSRF-Token` header).
    Checked,
}

/// The `file` field of an upload, as a stream of its pieces; its errors are a 413 when the body went over its
/// bounds, a 400 when it was malformed or cut.
pub struct FileUpload {
    pub filename: String,
    pub content_type: String,
    field: multer::Field<'static>,
    /// The form the field belongs to (kept alive while the field is read).
    _form: multer::Multipart<'static>,
    meter: Arc<Meter>,
}

/// What the body has delivered so far, against a limit that grows once the file starts.
#[derive(Default)]
struct Meter {
    read: AtomicU64,
    limit: AtomicU64,
    exceeded: AtomicBool,
}

impl Meter {
    fn error(&self, e: multer::Error) -> AppError {
        if self.exceeded.load(Ordering::SeqCst) {
            AppError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "error-too-large",
                "the upload is too large",
            )
        } else {
            AppError::bad_request(format!("upload interrupted or malformed: {e}"))
        }
    }
}

/// The request body, counted against the [`Meter`].
struct Metered {
    body: axum::body::BodyDataStream,
    meter: Arc<Meter>,
}

impl Stream for Metered {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match Pin::new(&mut self.body).poll_next(cx) {
            Poll::Ready(Some(Ok(b))) => {
                let read =
                    self.meter.read.fetch_add(b.len() as u64, Ordering::SeqCst) + b.len() as u64;
                if read > self.meter.limit.load(Ordering::SeqCst) {
                    self.meter.exceeded.store(true, Ordering::SeqCst);
                    Poll::Ready(Some(Err(std::io::Error::other("the upload is too large"))))
                } else {
                    Poll::Ready(Some(Ok(b)))
                }
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(std::io::Error::other(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Stream for FileUpload {
    type Item = AppResult<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match Pin::new(&mut self.field).poll_next(cx) {
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(self.meter.error(e)))),
            Poll::Ready(Some(Ok(b))) => Poll::Ready(Some(Ok(b))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Reads a multipart upload up to its `file` field (checking the CSRF token first, see [`Csrf`]) and returns
/// that field unread; `max_file` is the largest file the caller accepts.
pub async fn file(
    p: &Principal,
    csrf: Csrf,
    headers: &HeaderMap,
    body: Body,
    max_file: u64,
) -> AppResult<FileUpload> {
    let boundary = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| multer::parse_boundary(v).ok())
        .ok_or_else(|| AppError::bad_request("the upload is not a multipart/form-data body"))?;
    let meter = Arc::new(Meter::default());
    meter.limit.store(FORM_BYTES, Ordering::SeqCst);
    let stream = Metered {
        body: body.into_data_stream(),
        meter: meter.clone(),
    };
    let mut form = multer::Multipart::new(stream, boundary);
    let mut checked = csrf == Csrf::Checked;
    while let Some(mut field) = form.next_field().await.map_err(|e| meter.error(e))? {
        let name = field.name().unwrap_or_default().to_owned();
        if !checked {
            checked = true;
            if name == "csrf" {
                let token = field.text().await.map_err(|e| meter.error(e))?;
                p.check_csrf(Some(&token))?;
                continue;
            }
            // No token first: only a bearer-token caller (no CSRF) goes on.
            p.check_csrf(None)?;
        }
        if name == "file" {
            let read = meter.read.load(Ordering::SeqCst);
            meter.limit.store(
                read.saturating_add(max_file).saturating_add(FORM_BYTES),
                Ordering::SeqCst,
            );
            return Ok(FileUpload {
                filename: field.file_name().unwrap_or("upload").to_owned(),
                content_type: field
                    .content_type()
                    .map(|m| m.as_ref().to_owned())
                    .unwrap_or_else(|| "application/octet-stream".to_owned()),
                field,
                _form: form,
                meter,
            });
        }
        // Another field: read and dropped (within the form's bound).
        while field.chunk().await.map_err(|e| meter.error(e))?.is_some() {}
    }
    if !checked {
        p.check_csrf(None)?;
    }
    Err(AppError::bad_request(
        "the multipart body has no `file` field",
    ))
}
