//! Study transfers: DICOM studies that travel with a case to another node (`docs/federation.md`, "Study
//! transfers").
//!
//! - **Sending (home node)**, when the case packet is built: each study linked to the case and marked for
//!   sharing is read from the archive, de-identified unless the patient's consent includes `share_identity`
//!   (`imaging::deid`, PS3.15 Basic Profile, one UID map per transfer), packed into a **bundle** (the magic
//!   line `CARAVAN-STUDY-1\n`, then per instance an 8-byte big-endian length and the Part-10 bytes),
//!   compressed with zlib (deflate with a checksum), and stored as the blob `transfers/<destination>/<id>`
//!   before the packet is committed. The packet carries one **manifest** per study: the transfer id, the study
//!   UID as it will be on the other side, the bundle's size and SHA-256, the chunk size and the SHA-256 of every
//!   chunk.
//! - **Serving**: `GET /federation/v1/transfers/{id}` with an RFC 9421 signature of the destination node and a
//!   `Range: bytes=a-b` header answers `206` with those bytes. Only the node a bundle was made for can fetch it
//!   (the key is looked up under the signer's node id).
//! - **Receiving (expert node)**: the packet links each study to the mirror case as `pending` with its manifest.
//!   A fetcher task requests the chunks it does not have yet, checks each chunk's SHA-256, keeps each verified
//!   chunk as a blob (`incoming/<id>/<n>`), so an interrupted transfer (a dropped connection, a truncated body,
//!   a node restart) resumes at the first missing chunk. The bundle's SHA-256 and structure are checked as the
//!   chunks go by (inflated on the fly, nothing kept); then the kept chunks are inflated again and every
//!   instance is stored into the archive as soon as it is whole (refusing any that is not of the announced
//!   study), and the link is marked `ready`, with an audit event in the mirror patient's log. Memory stays
//!   bounded whatever the study's size: one chunk, the inflater, one instance (see `run`).

use crate::audit::system_event;
use crate::error::{AppError, AppResult};
use crate::federation::Federation;
use crate::AppState;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use caravan_domain::*;
use caravan_federation::httpsig::{
    self, MemoryReplayGuard, ReplayGuard, RequestParts, VerifyPolicy,
};
use caravan_federation::keys::Kid;
use caravan_federation::NodeId;
use caravan_store::{CaseStudy, Change, StudyState};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::sync::Arc;
use uuid::Uuid;

/// The path of a transfer's bytes on the sending node.
pub const TRANSFER_PATH: &str = "/federation/v1/transfers/{id}";
pub const DEFAULT_CHUNK_BYTES: u64 = 1024 * 1024;
const MAGIC: &[u8] = b"CARAVAN-STUDY-1\n";
/// The largest study (uncompressed) that goes with a case; larger ones must be pulled by other means.
const MAX_STUDY_BYTES: u64 = 2 * 1024 * 1024 * 1024;
/// Most chunks a manifest may list (with the chunk size, this bounds what a packet can make a node fetch).
const MAX_CHUNKS: usize = 100_000;
/// Largest chunk a manifest may ask for (a receiver holds one chunk in memory at a time).
pub const MAX_CHUNK_BYTES: u64 = 64 * 1024 * 1024;

/// What the case packet says of one study (see the module documentation).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StudyManifest {
    pub id: Uuid,
    /// The Study Instance UID in the bundle (remapped when de-identified).
    pub study_uid: String,
    pub modalities: String,
    /// Empty when de-identified (the profile removes descriptions and zeroes dates).
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub study_date: String,
    pub instances: u32,
    /// Instances left out (burned-in annotation in a de-identified transfer, unreadable files).
    pub excluded: u32,
    pub deidentified: bool,
    /// `zlib`.
    pub compression: String,
    pub plain_bytes: u64,
    pub size: u64,
    pub sha256: String,
    pub chunk_bytes: u64,
    pub chunks: Vec<String>,
}

impl StudyManifest {
    /// Checks what a received manifest claims before anything is fetched.
    fn check(&self) -> Result<(), String> {
        if !imaging::archive::is_valid_uid(&self.study_uid) {
            return Err("manifest: bad study UID".into());
        }
        if self.compression != "zlib" {
            return Err(format!(
                "manifest: unknown compression {:?}",
                self.compression
            ));
        }
        if self.chunk_bytes == 0
            || self.chunk_bytes > MAX_CHUNK_BYTES
            || self.chunks.is_empty()
            || self.chunks.len() > MAX_CHUNKS
        {
            return Err("manifest: bad chunking".into());
        }
        if self.size.div_ceil(self.chunk_bytes) != self.chunks.len() as u64 {
            return Err("manifest: chunk count does not match the size".into());
        }
        if self.plain_bytes > MAX_STUDY_BYTES {
            return Err("manifest: study too large".into());
        }
        let hex64 = |h: &str| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex64(&self.sha256) || !self.chunks.iter().all(|h| hex64(h)) {
            return Err("manifest: bad digest".into());
        }
        Ok(())
    }

    fn chunk_range(&self, n: usize) -> std::ops::Range<u64> {
        let start = n as u64 * self.chunk_bytes;
        start..(start + self.chunk_bytes).min(self.size)
    }
}

fn sha_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn bundle_key(destination: &str, id: Uuid) -> String {
    format!("transfers/{destination}/{id}")
}

fn chunk_key(id: Uuid, n: usize) -> String {
    format!("incoming/{id}/{n:06}")
}

// ------------------------------------------------------------------------------------------------------------
// Sending

/// Packs the instances: the magic line, then per instance its length (u64, big-endian) and its bytes (what
/// [`Packer`] writes incrementally; kept for the tests of [`unpack`]).
#[cfg(test)]
fn pack(instances: &[Vec<u8>]) -> Vec<u8> {
    let total: usize = instances.iter().map(|i| i.len() + 8).sum();
    let mut out = Vec::with_capacity(MAGIC.len() + total);
    out.extend_from_slice(MAGIC);
    for i in instances {
        out.extend_from_slice(&(i.len() as u64).to_be_bytes());
        out.extend_from_slice(i);
    }
    out
}

/// Builds a bundle one instance at a time: packs, compresses (zlib) and digests (whole and per chunk) as it goes,
/// so a study is never held in memory whole; the compressed bytes are taken out after each instance
/// ([`Packer::take`]) and written to the blob store.
struct Packer {
    z: flate2::write::ZlibEncoder<Vec<u8>>,
    plain: u64,
    count: u32,
    chunk_bytes: u64,
    whole: Sha256,
    chunk: Sha256,
    in_chunk: u64,
    chunks: Vec<String>,
    size: u64,
}

impl Packer {
    fn new(chunk_bytes: u64) -> std::io::Result<Self> {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(6));
        z.write_all(MAGIC)?;
        Ok(Packer {
            z,
            plain: MAGIC.len() as u64,
            count: 0,
            chunk_bytes: chunk_bytes.max(1),
            whole: Sha256::new(),
            chunk: Sha256::new(),
            in_chunk: 0,
            chunks: Vec::new(),
            size: 0,
        })
    }

    fn add(&mut self, instance: &[u8]) -> std::io::Result<()> {
        self.z.write_all(&(instance.len() as u64).to_be_bytes())?;
        self.z.write_all(instance)?;
        self.plain += 8 + instance.len() as u64;
        self.count += 1;
        Ok(())
    }

    /// The compressed bytes produced since the last call, digested.
    fn take(&mut self) -> Vec<u8> {
        let out = std::mem::take(self.z.get_mut());
        self.digest(&out);
        out
    }

    fn digest(&mut self, mut b: &[u8]) {
        self.whole.update(b);
        self.size += b.len() as u64;
        while !b.is_empty() {
            let n = (self.chunk_bytes - self.in_chunk).min(b.len() as u64) as usize;
            self.chunk.update(&b[..n]);
            self.in_chunk += n as u64;
            b = &b[n..];
            if self.in_chunk == self.chunk_bytes {
                let done = std::mem::replace(&mut self.chunk, Sha256::new());
                self.chunks.push(hex::encode(done.finalize()));
                self.in_chunk = 0;
            }
        }
    }

    /// Ends the stream: the last compressed bytes and what the manifest says of the bundle.
    fn finish(mut self) -> std::io::Result<Packed> {
        let rest = self.z.finish()?;
        self.z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(6));
        self.digest(&rest);
        if self.in_chunk > 0 {
            let last = std::mem::replace(&mut self.chunk, Sha256::new());
            self.chunks.push(hex::encode(last.finalize()));
        }
        Ok(Packed {
            rest,
            size: self.size,
            sha256: hex::encode(self.whole.finalize()),
            chunks: self.chunks,
            plain_bytes: self.plain,
            count: self.count,
        })
    }
}

/// A finished bundle: its last compressed bytes, then its size, SHA-256 and chunk digests, its uncompressed size
/// and its instance count.
struct Packed {
    rest: Vec<u8>,
    size: u64,
    sha256: String,
    chunks: Vec<String>,
    plain_bytes: u64,
    count: u32,
}

/// The instances of a bundle (the inverse of [`pack`]), through the streaming [`Unbundler`] fed in one piece.
#[cfg(test)]
fn unpack(plain: &[u8]) -> Result<Vec<Bytes>, String> {
    let mut u = Unbundler::new(plain.len() as u64, true);
    u.push(plain)?;
    u.finish()?;
    Ok(u.done)
}

/// Builds and stores the bundles of the studies of `c` marked for sharing, for `destination`. Called while
/// the case packet is built; the bundles are stored before the packet is committed (a crash in between leaves
/// an unreferenced blob, never a manifest without bytes).
pub(crate) async fn prepare(
    st: &AppState,
    fed: &Federation,
    c: &Consultation,
    destination: &str,
    identity: bool,
    pseudonym: &str,
) -> AppResult<Vec<StudyManifest>> {
    let Some(im) = st.imaging() else {
        return Ok(Vec::new());
    };
    let system = Actor {
        user_id: c.referrer_id,
        institution_id: c.institution_id,
        role: Role::Referrer,
        patient_id: None,
    };
    let studies: Vec<CaseStudy> = st
        .store()
        .list_case_studies(&system, c.id)
        .await?
        .into_iter()
        .filter(|s| s.share && s.state == StudyState::Ready)
        .collect();
    let who = format!("federation:{destination}");
    let chunk_bytes = fed.config().study_chunk_bytes.clamp(1024, MAX_CHUNK_BYTES);
    let mut out = Vec::new();
    for s in studies {
        let records = im
            .archive()
            .instances(&s.study_uid, None, None)
            .await
            .map_err(crate::studies::imaging_error)?;
        let total: u64 = records.iter().map(|r| r.size).sum();
        if total > MAX_STUDY_BYTES {
            return Err(AppError::unprocessable(
                "error-packet-too-large",
                format!(
                    "study {} is larger than {MAX_STUDY_BYTES} bytes",
                    s.study_uid
                ),
            ));
        }
        let mut key = [0u8; 32];
        key[..16].copy_from_slice(Uuid::new_v4().as_bytes());
        key[16..].copy_from_slice(Uuid::new_v4().as_bytes());
        let mut deid = Some(imaging::deid::Deidentifier::new(pseudonym, key));
        let id = Uuid::new_v4();
        let blob = bundle_key(destination, id);
        // One instance at a time: read, de-identify and compress it (off the async threads), write what the
        // compressor produced; a study is never in memory whole.
        let mut packer = Some(Packer::new(chunk_bytes).map_err(AppError::internal)?);
        let mut writer = st.blobs().writer(&blob).await?;
        let mut excluded = 0u32;
        let mut failure = None;
        for r in &records {
            let b = match im
                .archive()
                .read(r, imaging::AccessAction::Retrieve, &who)
                .await
            {
                Ok(b) => b,
                Err(e) => {
                    failure = Some(crate::studies::imaging_error(e));
                    break;
                }
            };
            let (Some(mut p), Some(mut deid_now)) = (packer.take(), deid.take()) else {
                break;
            };
            let step = tokio::task::spawn_blocking(move || -> Result<_, String> {
                    let mut left_out = false;
                    if identity {
                        p.add(&b).map_err(|e| e.to_string())?;
                    } else {
                        match deid_now.apply(&b) {
                            Ok(x) => p.add(&x).map_err(|e| e.to_string())?,
                            Err(e) => {
                                // The reason names an attribute, never a value.
                                tracing::warn!(error = %e, "instance left out of a de-identified transfer");
                                left_out = true;
                            }
                        }
                    }
                    let out = p.take();
                    Ok((p, deid_now, left_out, out))
                })
                .await;
            let (p, d, left_out, out) = match step {
                Ok(Ok(v)) => v,
                Ok(Err(e)) => {
                    failure = Some(AppError::internal(e));
                    break;
                }
                Err(e) => {
                    failure = Some(AppError::internal(e));
                    break;
                }
            };
            deid = Some(d);
            packer = Some(p);
            excluded += u32::from(left_out);
            if let Err(e) = writer.write(&out).await {
                failure = Some(e);
                break;
            }
        }
        let finished = match (failure, packer) {
            (None, Some(p)) => p.finish().map_err(AppError::internal),
            (Some(e), _) => Err(e),
            (None, None) => Err(AppError::internal("study bundle: packer lost")),
        };
        let Packed {
            rest,
            size,
            sha256,
            chunks,
            plain_bytes,
            count,
        } = match finished {
            Ok(v) => v,
            Err(e) => {
                writer.abort().await;
                return Err(e);
            }
        };
        if count == 0 {
            writer.abort().await;
            tracing::warn!(consultation = %c.id, "no instance of a study could be sent");
            continue;
        }
        if let Err(e) = writer.write(&rest).await {
            writer.abort().await;
            return Err(e);
        }
        writer.finish().await?;
        let wire_uid = match (identity, deid.as_mut()) {
            (true, _) => s.study_uid.clone(),
            (false, Some(d)) => d.uid(&s.study_uid),
            (false, None) => return Err(AppError::internal("study bundle: UID map lost")),
        };
        let manifest = StudyManifest {
            id,
            study_uid: wire_uid,
            modalities: s.modalities.clone(),
            description: if identity {
                s.description.clone()
            } else {
                String::new()
            },
            study_date: if identity {
                s.study_date.clone()
            } else {
                String::new()
            },
            instances: count,
            excluded,
            deidentified: !identity,
            compression: "zlib".into(),
            plain_bytes,
            size,
            sha256,
            chunk_bytes,
            chunks,
        };
        tracing::info!(consultation = %c.id, transfer = %id, instances = count, excluded, "study bundle ready");
        out.push(manifest);
    }
    Ok(out)
}

/// Removes this node's bundles (`transfers/…`) last written before `before`, with an audit event each: a bundle
/// no receiver confirmed (see [`confirm_received`]) is kept as long as its packet's mirror case may exist.
pub(crate) async fn expire_bundles(st: &AppState, before: DateTime<Utc>) -> AppResult<usize> {
    let mut n = 0;
    for (key, written) in st.blobs().list("transfers/").await? {
        if written >= before {
            continue;
        }
        let id = key.rsplit('/').next().unwrap_or_default().to_owned();
        st.blobs().delete(&key).await?;
        st.store()
            .append_audit(vec![system_event(
                AuditAction::Delete,
                "study-transfer",
                &id,
                None,
                "bundle expired: kept for the retention period, not confirmed by its receiver",
            )])
            .await?;
        tracing::info!(transfer = %id, "expired study bundle removed");
        n += 1;
    }
    Ok(n)
}

/// Removes a study that came with a mirrored case whose retention ended (the case's link is removed by the purge
/// itself): the chunks of a transfer still running, and the study in the archive if every instance of it was
/// stored by this transfer's sender (`federation:<origin>`). A study also stored by another sender (over DIMSE,
/// STOW-RS or by another node) stays in the archive. Returns the audit detail.
pub(crate) async fn purge_received(st: &AppState, s: &CaseStudy) -> AppResult<String> {
    if let Some(m) = s
        .transfer
        .as_deref()
        .and_then(|t| serde_json::from_str::<StudyManifest>(t).ok())
    {
        for i in 0..m.chunks.len().min(MAX_CHUNKS) {
            st.blobs().delete(&chunk_key(m.id, i)).await?;
        }
    }
    let Some(im) = st.imaging() else {
        return Ok("study link removed (no archive on this node)".into());
    };
    let origin = s.origin_node.as_deref().unwrap_or_default();
    let detail = match im
        .archive()
        .delete_study(
            &s.study_uid,
            Some(&format!("federation:{origin}")),
            "federation:retention",
        )
        .await
        .map_err(crate::studies::imaging_error)?
    {
        imaging::StudyDeletion::Deleted {
            instances,
            files_left,
            ..
        } => {
            if files_left > 0 {
                tracing::warn!(
                    files_left,
                    "files of a purged study left behind (unindexed)"
                );
            }
            format!(
                "removed from the archive at the end of the retention ({instances} instance(s))"
            )
        }
        imaging::StudyDeletion::Kept { other_instances } => format!(
            "kept in the archive: {other_instances} instance(s) of it were stored by other senders"
        ),
        imaging::StudyDeletion::NotFound => {
            "study link removed; the study was not in the archive".into()
        }
    };
    Ok(detail)
}

// ------------------------------------------------------------------------------------------------------------
// Serving

pub fn routes(st: &AppState) -> Router<AppState> {
    let guard = Arc::new(MemoryReplayGuard::new(100_000));
    let _ = st;
    let delete_guard = guard.clone();
    Router::new().route(
        TRANSFER_PATH,
        get(
            move |State(st): State<AppState>, Path(id): Path<String>, headers: HeaderMap| {
                let guard = guard.clone();
                async move {
                    serve(&st, guard.as_ref(), &id, &headers)
                        .await
                        .unwrap_or_else(IntoResponse::into_response)
                }
            },
        )
        .delete(
            move |State(st): State<AppState>, Path(id): Path<String>, headers: HeaderMap| {
                let guard = delete_guard.clone();
                async move {
                    received(&st, guard.as_ref(), &id, &headers)
                        .await
                        .unwrap_or_else(IntoResponse::into_response)
                }
            },
        ),
    )
}

fn refused(status: StatusCode, why: impl Into<String>) -> AppError {
    AppError::new(status, "error-study-transfer", why)
}

/// Parses `bytes=a-b` (one range, both ends given).
fn parse_range(v: &str, size: u64) -> Option<std::ops::Range<u64>> {
    let (a, b) = v.trim().strip_prefix("bytes=")?.split_once('-')?;
    let (a, b): (u64, u64) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
    (a <= b && b < size).then(|| a..b + 1)
}

/// Checks the RFC 9421 signature of a request for transfer `id`; returns the transfer id and the signing node.
async fn verify(
    st: &AppState,
    guard: &MemoryReplayGuard,
    method: &str,
    id: &str,
    headers: &HeaderMap,
) -> AppResult<(Uuid, String)> {
    let Some(fed) = st.federation() else {
        return Err(AppError::not_found("transfer"));
    };
    let id: Uuid = id
        .parse()
        .map_err(|_| AppError::bad_request("the transfer id is not a UUID"))?;
    let base = fed.base_url().unwrap_or_default();
    let target = format!(
        "{}{}",
        base.trim_end_matches('/'),
        TRANSFER_PATH.replace("{id}", &id.to_string())
    );
    let dir = fed.directory();
    let now = Utc::now();
    let parts = RequestParts {
        method,
        target_uri: &target,
        headers,
        body: b"",
    };
    let policy = VerifyPolicy::default();
    let verified = httpsig::verify_request(&parts, &policy, now.timestamp(), |keyid| {
        dir.check_fresh(now)
            .map_err(|reason| httpsig::HttpSigError::Key {
                keyid: keyid.to_string(),
                reason,
            })?;
        dir.key_by_kid(&Kid::from_string(keyid), now)
            .map(|(member, key)| (key, member.node_id.clone()))
            .map_err(|reason| httpsig::HttpSigError::Key {
                keyid: keyid.to_string(),
                reason,
            })
    })
    .map_err(|e| refused(StatusCode::UNAUTHORIZED, format!("signature: {e}")))?;
    if let Some(nonce) = &verified.nonce {
        guard
            .check_and_remember(
                &verified.keyid,
                nonce,
                verified.created + policy.nonce_lifetime_secs(),
                now.timestamp(),
            )
            .await
            .map_err(|e| refused(StatusCode::UNAUTHORIZED, format!("signature: {e}")))?;
    }
    Ok((id, verified.signer.to_string()))
}

/// `DELETE /federation/v1/transfers/{id}`, signed by the node the bundle was made for: it has stored the study,
/// so the bundle is removed (audited). An unknown or already removed bundle is 404.
async fn received(
    st: &AppState,
    guard: &MemoryReplayGuard,
    id: &str,
    headers: &HeaderMap,
) -> AppResult<Response> {
    let (id, node) = verify(st, guard, "DELETE", id, headers).await?;
    let key = bundle_key(&node, id);
    if st.blobs().size(&key).await?.is_none() {
        return Err(AppError::not_found("transfer"));
    }
    st.blobs().delete(&key).await?;
    st.store()
        .append_audit(vec![system_event(
            AuditAction::Delete,
            "study-transfer",
            id,
            None,
            &format!("bundle removed: {node} confirmed it has the study"),
        )])
        .await?;
    tracing::info!(transfer = %id, to = %node, "study bundle removed after the receiver's confirmation");
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn serve(
    st: &AppState,
    guard: &MemoryReplayGuard,
    id: &str,
    headers: &HeaderMap,
) -> AppResult<Response> {
    let (id, node) = verify(st, guard, "GET", id, headers).await?;
    let key = bundle_key(&node, id);
    let size = st
        .blobs()
        .size(&key)
        .await?
        .ok_or_else(|| AppError::not_found("transfer"))?;
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(v) => parse_range(v, size).ok_or_else(|| {
            refused(
                StatusCode::RANGE_NOT_SATISFIABLE,
                format!(
                    "range {v:?} is not one range within 0-{}",
                    size.saturating_sub(1)
                ),
            )
        })?,
        None => 0..size,
    };
    let bytes = st.blobs().get_range(&key, range.clone()).await?;
    tracing::info!(transfer = %id, to = %node, start = range.start, end = range.end, "study transfer chunk served");
    if range.end == size {
        st.store()
            .append_audit(vec![system_event(
                AuditAction::Export,
                "study-transfer",
                id,
                None,
                &format!("last bytes fetched by {node}"),
            )])
            .await?;
    }
    let mut resp = Response::new(Body::from(bytes));
    *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/octet-stream"),
    );
    if let Ok(v) = header::HeaderValue::from_str(&format!(
        "bytes {}-{}/{size}",
        range.start,
        range.end.saturating_sub(1)
    )) {
        h.insert(header::CONTENT_RANGE, v);
    }
    Ok(resp)
}

// ------------------------------------------------------------------------------------------------------------
// Receiving

/// The pending link a received manifest becomes (committed with the mirror case).
pub(crate) fn incoming_link(
    consultation: ConsultationId,
    added_by: UserId,
    from: &str,
    m: &StudyManifest,
    now: DateTime<Utc>,
) -> Result<Change, String> {
    m.check()?;
    Ok(Change::LinkStudy(CaseStudy {
        consultation_id: consultation,
        study_uid: m.study_uid.clone(),
        accession: String::new(),
        description: m.description.chars().take(200).collect(),
        modalities: m.modalities.chars().take(64).collect(),
        study_date: m.study_date.chars().take(8).collect(),
        instances: i64::from(m.instances),
        state: StudyState::Pending,
        share: false,
        origin_node: Some(from.to_owned()),
        transfer: Some(serde_json::to_string(m).map_err(|e| e.to_string())?),
        detail: format!("0/{}", m.chunks.len()),
        added_by,
        created_at: now,
        updated_at: now,
    }))
}

/// Runs the fetcher: every `study_fetch_every`, each pending study transfer goes as far as it can.
pub(crate) fn start_fetcher(st: &AppState) -> tokio::task::JoinHandle<()> {
    let st = st.clone();
    tokio::spawn(async move {
        let Some(fed) = st.federation() else { return };
        let every = fed
            .config()
            .study_fetch_every
            .max(std::time::Duration::from_millis(20));
        let client = match reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .connect_timeout(std::time::Duration::from_secs(10))
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "study transfers: no HTTP client");
                return;
            }
        };
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if st.imaging().is_none() {
                continue;
            }
            match st.store().fed_pending_studies(20).await {
                Ok(pending) => {
                    for s in pending {
                        fetch_one(&st, &client, s).await;
                    }
                }
                Err(e) => tracing::error!(error = %e, "study transfers: cannot list pending"),
            }
        }
    })
}

/// Why a pass over one transfer stopped.
#[derive(Debug)]
enum Stop {
    /// Try again on the next pass (network, the other node down, a chunk that did not verify).
    Retry(String),
    /// Give up: the transfer cannot succeed (bad manifest, bundle digest, refused instance).
    Fail(String),
}

async fn fetch_one(st: &AppState, client: &reqwest::Client, mut s: CaseStudy) {
    let Some(manifest) = s
        .transfer
        .as_deref()
        .and_then(|t| serde_json::from_str::<StudyManifest>(t).ok())
    else {
        finish(st, s, Err(Stop::Fail("manifest unreadable".into()))).await;
        return;
    };
    let result = run(st, client, &s, &manifest).await;
    if let Err(Stop::Retry(_)) = &result {
        s.detail = format!(
            "{}/{}",
            have_chunks(st, &manifest).await,
            manifest.chunks.len()
        );
    }
    let stored = result.is_ok();
    let origin = s.origin_node.clone();
    if finish(st, s, result).await && stored {
        if let Some(origin) = origin {
            confirm_received(st, client, &origin, manifest.id).await;
        }
    }
}

/// Tells the sending node that the study is stored (a signed `DELETE` of the transfer), so it removes its
/// bundle. Best effort: a bundle never confirmed expires on the sender after the packet's retention.
async fn confirm_received(st: &AppState, client: &reqwest::Client, origin: &str, id: Uuid) {
    let Some(fed) = st.federation() else { return };
    let base = match NodeId::new(origin)
        .map_err(|e| e.to_string())
        .and_then(|node| {
            fed.directory()
                .member(&node)
                .map(|m| m.base_url.clone())
                .map_err(|e| e.to_string())
        }) {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(transfer = %id, error = %e, "cannot confirm a study transfer");
            return;
        }
    };
    let url = format!(
        "{}{}",
        base.trim_end_matches('/'),
        TRANSFER_PATH.replace("{id}", &id.to_string())
    );
    let mut headers = HeaderMap::new();
    if let Err(e) = fed
        .signer()
        .sign("DELETE", &url, &mut headers, b"", Utc::now().timestamp())
    {
        tracing::warn!(transfer = %id, error = %e, "cannot sign a study transfer confirmation");
        return;
    }
    match client
        .request(Method::DELETE, &url)
        .headers(headers)
        .send()
        .await
    {
        Ok(r) if r.status() == StatusCode::NO_CONTENT || r.status() == StatusCode::NOT_FOUND => {
            tracing::info!(transfer = %id, "study transfer confirmed to its sender");
        }
        Ok(r) => {
            tracing::warn!(transfer = %id, status = r.status().as_u16(), "study transfer confirmation refused")
        }
        Err(e) => {
            tracing::warn!(transfer = %id, error = %e, "study transfer confirmation not sent")
        }
    }
}

async fn have_chunks(st: &AppState, m: &StudyManifest) -> usize {
    let mut n = 0;
    for i in 0..m.chunks.len() {
        if st
            .blobs()
            .size(&chunk_key(m.id, i))
            .await
            .ok()
            .flatten()
            .is_some()
        {
            n += 1;
        }
    }
    n
}

/// Saves the outcome of a pass; returns whether it was saved.
async fn finish(st: &AppState, mut s: CaseStudy, result: Result<u32, Stop>) -> bool {
    let now = Utc::now();
    s.updated_at = now;
    let mut audit = vec![];
    match result {
        Ok(stored) => {
            s.state = StudyState::Ready;
            s.instances = i64::from(stored);
            s.detail = String::new();
            let manifest = s
                .transfer
                .take()
                .and_then(|t| serde_json::from_str::<StudyManifest>(&t).ok());
            let patient = st
                .store()
                .fed_consultation(s.consultation_id)
                .await
                .ok()
                .map(|c| c.patient_id);
            audit.push(system_event(
                AuditAction::Create,
                "dicom-study",
                &s.study_uid,
                patient,
                &format!(
                    "study received from {} ({} instance(s){})",
                    s.origin_node.as_deref().unwrap_or("?"),
                    stored,
                    if manifest.as_ref().is_some_and(|m| m.deidentified) {
                        ", de-identified"
                    } else {
                        ""
                    }
                ),
            ));
            if let Some(m) = manifest {
                for i in 0..m.chunks.len() {
                    if let Err(e) = st.blobs().delete(&chunk_key(m.id, i)).await {
                        tracing::warn!(transfer = %m.id, error = %e.message, "chunk not removed");
                    }
                }
            }
            tracing::info!(consultation = %s.consultation_id, instances = stored, "study transfer complete");
        }
        Err(Stop::Retry(why)) => {
            tracing::warn!(consultation = %s.consultation_id, reason = %why, progress = %s.detail, "study transfer interrupted; will resume");
        }
        Err(Stop::Fail(why)) => {
            tracing::error!(consultation = %s.consultation_id, reason = %why, "study transfer failed");
            s.state = StudyState::Failed;
            s.detail = why;
        }
    }
    match st.store().apply(vec![Change::LinkStudy(s)], audit).await {
        Ok(_) => true,
        Err(e) => {
            tracing::error!(error = %e, "study transfer state not saved");
            false
        }
    }
}

/// One pass over a transfer, in bounded memory, whatever the study's size. Returns the instances stored.
///
/// 1. **Fetch and check**: chunk by chunk in order, a chunk kept by an earlier pass is used if it still
///    verifies, a missing one is fetched (one signed range request) and kept once its SHA-256 verifies; each is
///    added to the bundle's digest and inflated through [`Unbundler`], which only checks the bundle's structure
///    (magic, instance framing, the uncompressed size and instance count the manifest gives). A network failure
///    or a chunk that does not verify stops the pass: the next one resumes at the first missing chunk.
/// 2. **Store**: with the bundle's digest and structure verified, the kept chunks are read again (each verified
///    again) and inflated a slice at a time; every instance is stored into the archive as soon as it is whole
///    (refused unless it belongs to the announced study).
///
/// So the refusals are today's: no instance is stored from a bundle whose chunk digests, bundle digest, size,
/// structure or instance count do not match its manifest. Memory: one chunk (the manifest's chunk size, at
/// most [`MAX_CHUNK_BYTES`]; 1 MiB by default), the inflater's window and buffer, the instance being
/// assembled, and the instances completed by one [`INFLATE_SLICE`] of compressed input (deflate expands at
/// most ~1032 times: 16.5 MiB). The price is inflating twice.
async fn run(
    st: &AppState,
    client: &reqwest::Client,
    s: &CaseStudy,
    m: &StudyManifest,
) -> Result<u32, Stop> {
    m.check().map_err(Stop::Fail)?;
    let fed = st
        .federation()
        .ok_or_else(|| Stop::Retry("not federated".into()))?;
    let im = st
        .imaging()
        .ok_or_else(|| Stop::Retry("no archive".into()))?;
    let origin = s
        .origin_node
        .clone()
        .ok_or_else(|| Stop::Fail("no origin node".into()))?;
    let base = {
        let dir: Arc<caravan_federation::directory::Directory> = fed.directory();
        let node = NodeId::new(origin.as_str()).map_err(|e| Stop::Fail(e.to_string()))?;
        dir.member(&node)
            .map_err(|e| Stop::Retry(e.to_string()))?
            .base_url
            .clone()
    };
    let url = format!(
        "{}{}",
        base.trim_end_matches('/'),
        TRANSFER_PATH.replace("{id}", &m.id.to_string())
    );
    // 1. Every chunk there and verified; the bundle's digest and structure checked on the way.
    let mut whole = Sha256::new();
    let mut size = 0u64;
    let mut check = Inflater::new(Unbundler::new(m.plain_bytes, false));
    for (n, want) in m.chunks.iter().enumerate() {
        let key = chunk_key(m.id, n);
        // Resume: a chunk kept by an earlier pass is used if it still verifies.
        let chunk = match st.blobs().get(&key).await {
            Ok(b) if sha_hex(&b) == *want => b,
            _ => {
                let body = fetch_chunk(fed, client, &url, m, n).await?;
                st.blobs()
                    .put(&key, body.clone())
                    .await
                    .map_err(|e| Stop::Retry(e.message))?;
                body
            }
        };
        whole.update(&chunk);
        size += chunk.len() as u64;
        check = check.feed_all(chunk).await?;
    }
    if size != m.size || hex::encode(whole.finalize()) != m.sha256 {
        return Err(Stop::Fail("bundle digest mismatch".into()));
    }
    let checked = check.finish().await?;
    if checked.count != m.instances {
        return Err(Stop::Fail(
            "bundle: instance count differs from the manifest".into(),
        ));
    }
    // 2. The verified bundle again, stored instance by instance.
    let who = format!("federation:{origin}");
    let store = async |instances: Vec<Bytes>| -> Result<(), Stop> {
        for b in instances {
            im.archive()
                .store_checked(b, Some(&m.study_uid), &who)
                .await
                .map_err(|e| match e {
                    imaging::Error::Rejected(r) => Stop::Fail(format!("instance refused: {r}")),
                    other => Stop::Retry(other.to_string()),
                })?;
        }
        Ok(())
    };
    let mut inflater = Inflater::new(Unbundler::new(m.plain_bytes, true));
    for (n, want) in m.chunks.iter().enumerate() {
        let chunk = st
            .blobs()
            .get(&chunk_key(m.id, n))
            .await
            .map_err(|e| Stop::Retry(format!("chunk {n}: {}", e.message)))?;
        if sha_hex(&chunk) != *want {
            return Err(Stop::Retry(format!(
                "chunk {n} changed since it was checked"
            )));
        }
        let mut at = 0;
        while at < chunk.len() {
            let (next, used, instances) = inflater.feed_some(chunk.clone(), at).await?;
            inflater = next;
            at = used;
            store(instances).await?;
        }
    }
    let mut last = inflater.finish().await?;
    store(std::mem::take(&mut last.done)).await?;
    Ok(m.instances)
}

/// Fetches chunk `n` (one signed range request), reading no more than the range, and checks its digest.
async fn fetch_chunk(
    fed: &Federation,
    client: &reqwest::Client,
    url: &str,
    m: &StudyManifest,
    n: usize,
) -> Result<Bytes, Stop> {
    let range = m.chunk_range(n);
    let mut headers = HeaderMap::new();
    headers.insert(
        header::RANGE,
        header::HeaderValue::from_str(&format!("bytes={}-{}", range.start, range.end - 1))
            .map_err(|e| Stop::Fail(e.to_string()))?,
    );
    fed.signer()
        .sign("GET", url, &mut headers, b"", Utc::now().timestamp())
        .map_err(|e| Stop::Retry(format!("signing: {e}")))?;
    let mut resp = client
        .request(Method::GET, url)
        .headers(headers)
        .send()
        .await
        .map_err(|e| Stop::Retry(format!("chunk {n}: {e}")))?;
    let status = resp.status();
    if status == StatusCode::NOT_FOUND {
        return Err(Stop::Fail(
            "the sending node no longer has the study".into(),
        ));
    }
    if status != StatusCode::PARTIAL_CONTENT {
        return Err(Stop::Retry(format!("chunk {n}: HTTP {}", status.as_u16())));
    }
    let expected = range.end - range.start;
    let mut body = bytes::BytesMut::with_capacity(usize::try_from(expected).unwrap_or(0));
    while let Some(piece) = resp
        .chunk()
        .await
        .map_err(|e| Stop::Retry(format!("chunk {n}: {e}")))?
    {
        if body.len() as u64 + piece.len() as u64 > expected {
            return Err(Stop::Retry(format!("chunk {n}: longer than its range")));
        }
        body.extend_from_slice(&piece);
    }
    let body = body.freeze();
    if sha_hex(&body) != m.chunks[n] {
        return Err(Stop::Retry(format!(
            "chunk {n}: digest mismatch ({} bytes)",
            body.len()
        )));
    }
    Ok(body)
}

/// Compressed bytes inflated at a time while storing (see [`run`]).
const INFLATE_SLICE: usize = 16 * 1024;

/// The zlib inflater feeding an [`Unbundler`], run off the async threads (it moves into a blocking task and
/// back for every step).
struct Inflater(flate2::write::ZlibDecoder<Unbundler>);

impl Inflater {
    fn new(u: Unbundler) -> Self {
        Inflater(flate2::write::ZlibDecoder::new(u))
    }

    async fn blocking<T: Send + 'static>(
        f: impl FnOnce() -> Result<T, String> + Send + 'static,
    ) -> Result<T, Stop> {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| Stop::Retry(e.to_string()))?
            .map_err(Stop::Fail)
    }

    /// Inflates all of `chunk` (checking only: the unbundler keeps no instance).
    async fn feed_all(self, chunk: Bytes) -> Result<Self, Stop> {
        let mut me = self;
        Self::blocking(move || {
            me.0.write_all(&chunk).map_err(|e| bundle_error(&e))?;
            Ok(me)
        })
        .await
    }

    /// Inflates `chunk` from `at`, a slice at a time, until some instances are whole or the chunk is used up;
    /// returns where it stopped and the whole instances.
    async fn feed_some(self, chunk: Bytes, at: usize) -> Result<(Self, usize, Vec<Bytes>), Stop> {
        let mut me = self;
        Self::blocking(move || {
            let mut at = at;
            while at < chunk.len() && me.0.get_ref().done.is_empty() {
                let end = (at + INFLATE_SLICE).min(chunk.len());
                me.0.write_all(&chunk[at..end])
                    .map_err(|e| bundle_error(&e))?;
                at = end;
            }
            let done = std::mem::take(&mut me.0.get_mut().done);
            Ok((me, at, done))
        })
        .await
    }

    /// Ends the stream: the unbundler, with its last instances, once the bundle proved whole.
    async fn finish(self) -> Result<Unbundler, Stop> {
        Self::blocking(move || {
            let u = self.0.finish().map_err(|e| bundle_error(&e))?;
            u.finish()?;
            Ok(u)
        })
        .await
    }
}

/// The message of an inflater failure: the unbundler's own refusal, or the zlib stream's.
fn bundle_error(e: &std::io::Error) -> String {
    let m = e.to_string();
    if m.starts_with("bundle:") {
        m
    } else {
        format!("bundle: {m}")
    }
}

/// Splits an uncompressed bundle (see [`Packer`]) into its instances as it arrives, in any pieces: the magic
/// line, then per instance its length and bytes. Refuses more bytes than the manifest's `plain_bytes` (a
/// decompression bomb stops there) and an instance longer than what may follow. With `keep`, whole instances
/// collect in `done` for the caller to take; without, they are only counted.
struct Unbundler {
    limit: u64,
    keep: bool,
    plain: u64,
    magic: usize,
    len: [u8; 8],
    len_have: usize,
    /// The instance being read: bytes still to come, bytes so far (with `keep`).
    current: Option<(u64, Vec<u8>)>,
    done: Vec<Bytes>,
    count: u32,
}

impl Unbundler {
    fn new(limit: u64, keep: bool) -> Self {
        Unbundler {
            limit,
            keep,
            plain: 0,
            magic: 0,
            len: [0; 8],
            len_have: 0,
            current: None,
            done: Vec::new(),
            count: 0,
        }
    }

    fn push(&mut self, mut b: &[u8]) -> Result<(), String> {
        let n = b.len() as u64;
        if self.plain + n > self.limit {
            return Err("bundle: size differs from the manifest".into());
        }
        // What may still follow `b`'s first byte.
        let mut left = self.limit - self.plain;
        self.plain += n;
        while !b.is_empty() {
            let used = if self.magic < MAGIC.len() {
                let k = (MAGIC.len() - self.magic).min(b.len());
                if b[..k] != MAGIC[self.magic..self.magic + k] {
                    return Err("bundle: bad magic".into());
                }
                self.magic += k;
                k
            } else if let Some((rest, bytes)) = &mut self.current {
                let k = usize::try_from(*rest).unwrap_or(usize::MAX).min(b.len());
                if self.keep {
                    bytes.extend_from_slice(&b[..k]);
                }
                *rest -= k as u64;
                if *rest == 0 {
                    self.complete();
                }
                k
            } else {
                let k = (8 - self.len_have).min(b.len());
                self.len[self.len_have..self.len_have + k].copy_from_slice(&b[..k]);
                self.len_have += k;
                if self.len_have == 8 {
                    self.len_have = 0;
                    let len = u64::from_be_bytes(self.len);
                    if len > left - k as u64 {
                        return Err("bundle: truncated instance".into());
                    }
                    let bytes = if self.keep {
                        Vec::with_capacity(usize::try_from(len).map_err(|_| "bundle: bad length")?)
                    } else {
                        Vec::new()
                    };
                    self.current = Some((len, bytes));
                    if len == 0 {
                        self.complete();
                    }
                }
                k
            };
            b = &b[used..];
            left -= used as u64;
        }
        Ok(())
    }

    fn complete(&mut self) {
        if let Some((_, bytes)) = self.current.take() {
            self.count += 1;
            if self.keep {
                self.done.push(Bytes::from(bytes));
            }
        }
    }

    /// The end of the bundle: it must end on an instance boundary, at the manifest's size.
    fn finish(&self) -> Result<(), String> {
        if self.magic < MAGIC.len() {
            return Err("bundle: bad magic".into());
        }
        if self.len_have > 0 {
            return Err("bundle: truncated length".into());
        }
        if self.current.is_some() {
            return Err("bundle: truncated instance".into());
        }
        if self.plain != self.limit {
            return Err("bundle: size differs from the manifest".into());
        }
        Ok(())
    }
}

impl Write for Unbundler {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.push(b).map_err(std::io::Error::other)?;
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::io::Read;

    #[test]
    fn bundles_round_trip_and_bad_ones_are_refused() {
        let a = vec![1u8; 10];
        let b = b"DICM".to_vec();
        let packed = pack(&[a.clone(), b.clone()]);
        let back = unpack(&packed).unwrap();
        assert_eq!(back, vec![Bytes::from(a), Bytes::from(b)]);
        assert!(unpack(b"nope").is_err());
        assert!(unpack(&packed[..packed.len() - 1]).is_err());
        let mut huge = MAGIC.to_vec();
        huge.extend_from_slice(&u64::MAX.to_be_bytes());
        assert!(unpack(&huge).is_err());
    }

    #[test]
    fn the_streaming_packer_writes_the_bundle_its_digests_describe() {
        // Instances of varied sizes, some incompressible, so the output spans many chunks of an odd size.
        let mut seed = 7u64;
        let instances: Vec<Vec<u8>> = (0..6)
            .map(|i| {
                (0..(i * 7919 + 13))
                    .map(|_| {
                        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                        if i % 2 == 0 {
                            (seed >> 56) as u8
                        } else {
                            b'a'
                        }
                    })
                    .collect()
            })
            .collect();
        let mut p = Packer::new(1000).unwrap();
        let mut stream = Vec::new();
        for i in &instances {
            p.add(i).unwrap();
            stream.extend(p.take());
        }
        let Packed {
            rest,
            size,
            sha256: sha,
            chunks,
            plain_bytes,
            count,
        } = p.finish().unwrap();
        stream.extend(rest);
        assert_eq!(count, 6);
        assert_eq!(size, stream.len() as u64);
        assert_eq!(sha, sha_hex(&stream));
        let expected: Vec<String> = stream.chunks(1000).map(sha_hex).collect();
        assert!(expected.len() > 3, "{} chunks", expected.len());
        assert_eq!(chunks, expected);
        let mut plain = Vec::new();
        flate2::read::ZlibDecoder::new(stream.as_slice())
            .read_to_end(&mut plain)
            .unwrap();
        assert_eq!(plain_bytes, plain.len() as u64);
        assert_eq!(plain, pack(&instances));
        let back = unpack(&plain).unwrap();
        assert_eq!(back.len(), 6);
        assert_eq!(&back[3][..], &instances[3][..]);
    }

    #[test]
    fn the_unbundler_splits_a_bundle_arriving_in_any_pieces_and_refuses_malformed_ones() {
        let instances: Vec<Vec<u8>> =
            vec![vec![1u8; 10], vec![], b"DICM".to_vec(), vec![7u8; 3000]];
        let packed = pack(&instances);
        let len = packed.len() as u64;
        let want: Vec<Bytes> = instances.iter().cloned().map(Bytes::from).collect();
        for piece in [1, 3, 7, 8, 9, 17, 100, packed.len()] {
            let mut u = Unbundler::new(len, true);
            let mut got = Vec::new();
            for c in packed.chunks(piece) {
                u.push(c).unwrap();
                got.append(&mut u.done);
            }
            u.finish().unwrap();
            assert_eq!(got, want, "pieces of {piece}");
            let mut count = Unbundler::new(len, false);
            for c in packed.chunks(piece) {
                count.push(c).unwrap();
            }
            count.finish().unwrap();
            assert_eq!((count.count, count.done.len()), (4, 0));
        }
        // More than the manifest says: refused as it arrives.
        assert!(Unbundler::new(len - 1, true).push(&packed).is_err());
        // Cut short: in an instance, in a length, in the magic line.
        for cut in [packed.len() - 1, MAGIC.len() + 3, 5] {
            // Where the manifest agrees with the cut bundle (an instance then claims more than may follow), and
            // where it does not (the bundle ends early).
            let mut u = Unbundler::new(cut as u64, true);
            assert!(
                u.push(&packed[..cut]).and_then(|_| u.finish()).is_err(),
                "cut at {cut}"
            );
            let mut u = Unbundler::new(len, true);
            u.push(&packed[..cut]).unwrap();
            assert!(u.finish().is_err(), "cut at {cut}");
        }
        // A length beyond what may follow is refused before anything is allocated for it.
        let mut huge = MAGIC.to_vec();
        huge.extend_from_slice(&u64::MAX.to_be_bytes());
        let mut u = Unbundler::new(huge.len() as u64 + 100, true);
        assert_eq!(
            u.push(&huge).unwrap_err(),
            "bundle: truncated instance".to_string()
        );
        assert!(Unbundler::new(100, true)
            .push(b"CARAVAN-STUDY-2\n")
            .is_err());
    }

    #[tokio::test]
    async fn the_inflater_hands_instances_over_a_slice_at_a_time() {
        // Incompressible instances, several larger than a slice, others small.
        let mut seed = 11u64;
        let instances: Vec<Vec<u8>> = (0..8)
            .map(|i| {
                (0..(i * 9000 + 1))
                    .map(|_| {
                        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                        (seed >> 56) as u8
                    })
                    .collect()
            })
            .collect();
        let mut p = Packer::new(5000).unwrap();
        let mut stream = Vec::new();
        for i in &instances {
            p.add(i).unwrap();
            stream.extend(p.take());
        }
        let packed = p.finish().unwrap();
        stream.extend(packed.rest);
        let mut inflater = Inflater::new(Unbundler::new(packed.plain_bytes, true));
        let mut got = Vec::new();
        let mut steps = 0;
        for chunk in stream.chunks(5000) {
            let chunk = Bytes::copy_from_slice(chunk);
            let mut at = 0;
            while at < chunk.len() {
                let (next, used, mut done) = inflater.feed_some(chunk.clone(), at).await.unwrap();
                assert!(done.len() <= 3, "a slice completes few instances");
                inflater = next;
                at = used;
                got.append(&mut done);
                steps += 1;
            }
        }
        let mut last = inflater.finish().await.unwrap();
        got.append(&mut last.done);
        assert_eq!(got.len(), 8);
        assert!(steps > 8, "{steps} steps");
        for (g, w) in got.iter().zip(&instances) {
            assert_eq!(&g[..], &w[..]);
        }
        // A cut zlib stream is refused at the end.
        let cut = Bytes::copy_from_slice(&stream[..stream.len() - 10]);
        let inflater = Inflater::new(Unbundler::new(packed.plain_bytes, false));
        let inflater = inflater.feed_all(cut).await.unwrap();
        assert!(inflater.finish().await.is_err());
    }

    #[test]
    fn ranges_are_one_closed_range_inside_the_object() {
        assert_eq!(parse_range("bytes=0-9", 10), Some(0..10));
        assert_eq!(parse_range("bytes=5-5", 10), Some(5..6));
        assert_eq!(parse_range("bytes=5-10", 10), None);
        assert_eq!(parse_range("bytes=6-5", 10), None);
        assert_eq!(parse_range("bytes=0-", 10), None);
        assert_eq!(parse_range("items=0-1", 10), None);
    }

    #[test]
    fn manifests_are_checked_before_anything_is_fetched() {
        let m = StudyManifest {
            id: Uuid::new_v4(),
            study_uid: "2.25.1".into(),
            modalities: "CT".into(),
            description: String::new(),
            study_date: String::new(),
            instances: 1,
            excluded: 0,
            deidentified: true,
            compression: "zlib".into(),
            plain_bytes: 100,
            size: 2500,
            sha256: "a".repeat(64),
            chunk_bytes: 1024,
            chunks: vec!["b".repeat(64); 3],
        };
        assert!(m.check().is_ok());
        assert_eq!(m.chunk_range(2), 2048..2500);
        let bad = StudyManifest {
            chunks: vec!["b".repeat(64); 2],
            ..m.clone()
        };
        assert!(bad.check().is_err());
        let bad = StudyManifest {
            study_uid: "x; DROP".into(),
            ..m.clone()
        };
        assert!(bad.check().is_err());
        let bad = StudyManifest {
            compression: "zstd".into(),
            ..m.clone()
        };
        assert!(bad.check().is_err());
        // A chunk larger than a receiver holds at once.
        let bad = StudyManifest {
            chunk_bytes: MAX_CHUNK_BYTES + 1,
            size: MAX_CHUNK_BYTES + 1,
            chunks: vec!["b".repeat(64)],
            ..m
        };
        assert!(bad.check().is_err());
    }
}
