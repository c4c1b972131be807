//! Housekeeping of the blob store: attachment content that no row names any more, and uploads a crash cut off.
//!
//! Attachment content is stored before its row is committed (a crash in between leaves content without a row,
//! never a row without content) and is shared by every row with the same bytes (`attachments/ab/<sha256>`), so an
//! upload whose row write fails cannot safely delete what it stored: another upload of the same bytes may have
//! found it and be about to name it. Instead this sweep removes, an hour after they were written, the objects no
//! row names; the attachment gate (see [`crate::Blobs::attachment_gate`]) keeps it from deciding while an upload
//! is between finding content and committing its row.

use crate::error::AppResult;
use crate::AppState;
use chrono::{DateTime, Duration, Utc};
use std::collections::HashSet;

/// How old unnamed content must be before it is removed: longer than any upload takes from storing its content
/// to committing its row, also on another process of the same node (which the gate does not cover).
pub const GRACE: Duration = Duration::hours(1);

/// How long an unfinished upload's part may lie untouched before it is removed (a slow upload of a slide over a
/// poor link writes to it every few seconds).
pub const STALLED_UPLOAD: Duration = Duration::hours(24);

/// The prefixes of content that attachment rows name: local uploads, and content received with a case packet.
const NAMED_BY_ROWS: [&str; 2] = ["attachments/", "federation/"];
/// Finished uploads are staged here before they move to their content address.
const STAGING: &str = "attachments/incoming/";
/// Keys asked about in one query.
const BATCH: usize = 500;

/// What one sweep removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Swept {
    /// Content no attachment row names.
    pub unnamed: usize,
    /// Finished uploads left in staging (the node stopped before moving them).
    pub staged: usize,
    /// Parts of uploads that never finished.
    pub parts: usize,
}

/// Removes what no row names and was written before `now - GRACE`, and parts of uploads untouched since
/// `now - STALLED_UPLOAD`.
pub async fn sweep_blobs(st: &AppState, now: DateTime<Utc>) -> AppResult<Swept> {
    let before = now - GRACE;
    let mut out = Swept::default();
    let mut candidates = vec![];
    for prefix in NAMED_BY_ROWS {
        for (key, written) in st.blobs().list(prefix).await? {
            if written >= before {
                continue;
            }
            if key.starts_with(STAGING) {
                st.blobs().delete(&key).await?;
                out.staged += 1;
            } else {
                candidates.push(key);
            }
        }
    }
    for batch in candidates.chunks(BATCH) {
        let _gate = st.blobs().attachment_gate().write().await;
        let named: HashSet<String> = st
            .store()
            .attachment_blob_keys_in_use(batch)
            .await?
            .into_iter()
            .collect();
        for key in batch.iter().filter(|k| !named.contains(*k)) {
            st.blobs().delete(key).await?;
            out.unnamed += 1;
        }
    }
    out.parts = st
        .blobs()
        .sweep_interrupted_uploads((now - STALLED_UPLOAD).into())
        .await?;
    if out != Swept::default() {
        tracing::info!(
            unnamed = out.unnamed,
            staged = out.staged,
            parts = out.parts,
            "blob sweep removed content no row names"
        );
    }
    Ok(out)
}
