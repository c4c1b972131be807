//! The blob store for attachments: a local folder by default, any S3-compatible store with an `s3://` URL
//! (object_store).

use crate::error::{AppError, AppResult};
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload};
use std::sync::Arc;

#[derive(Clone)]
pub struct Blobs {
    inner: Arc<dyn ObjectStore>,
    /// The same store when it is a local folder: its objects are files that can be opened directly.
    local: Option<Arc<LocalFileSystem>>,
    /// The folder, when the store is one (for the sweep of interrupted uploads, which object_store cannot list).
    root: Option<std::path::PathBuf>,
    /// Attachment content is shared by every row with the same bytes: an upload holds this for reading from the
    /// moment it looks for existing content until its row is committed, the sweep of unreferenced content holds
    /// it for writing, so the sweep never removes content an upload is about to name.
    attachment_gate: Arc<tokio::sync::RwLock<()>>,
    /// The largest object [`Blobs::rename`] can move, where the store bounds it.
    largest_move: Option<u64>,
}

/// S3's CopyObject moves at most 5 GB in one request (larger ones need a multipart copy, which object_store's
/// `rename` does not do).
pub const S3_LARGEST_COPY: u64 = 5_000_000_000;

fn not_found_or_internal(e: object_store::Error) -> AppError {
    match e {
        object_store::Error::NotFound { .. } => AppError::not_found("file"),
        other => AppError::internal(other),
    }
}

impl Blobs {
    /// `file:///abs/dir`, a plain directory path, `s3://bucket/prefix` (credentials from the usual AWS_* variables)
    /// or `memory://`.
    pub fn open(spec: &str) -> Result<Self, String> {
        let mut local = None;
        let mut root = None;
        let mut largest_move = None;
        let inner: Arc<dyn ObjectStore> = if spec == "memory://" {
            Arc::new(object_store::memory::InMemory::new())
        } else if spec.starts_with("s3://") {
            // `from_env` reads the AWS_* variables (credentials, region, AWS_ENDPOINT for S3-compatible stores,
            // AWS_ALLOW_HTTP); the URL gives the bucket and the key prefix.
            let url = url::Url::parse(spec).map_err(|e| format!("bad blob store URL: {e}"))?;
            let bucket = url
                .host_str()
                .filter(|b| !b.is_empty())
                .ok_or_else(|| format!("bad blob store URL {spec}: no bucket"))?;
            let store = object_store::aws::AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .build()
                .map_err(|e| format!("cannot open {spec}: {e}"))?;
            let prefix = url.path().trim_matches('/');
            largest_move = Some(S3_LARGEST_COPY);
            Arc::new(object_store::prefix::PrefixStore::new(store, prefix))
        } else {
            let dir = spec.strip_prefix("file://").unwrap_or(spec);
            std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {dir}: {e}"))?;
            let fs = Arc::new(
                LocalFileSystem::new_with_prefix(dir)
                    .map_err(|e| format!("cannot open {dir}: {e}"))?,
            );
            local = Some(fs.clone());
            root = Some(std::path::PathBuf::from(dir));
            fs
        };
        Ok(Self {
            inner,
            local,
            root,
            attachment_gate: Arc::default(),
            largest_move,
        })
    }

    /// Refuses an attachment bound this store cannot honour: an upload is stored under a temporary key and then
    /// moved to its content address, and on S3 a move is one copy of at most 5 GB.
    pub fn check_attachment_bound(&self, max_attachment_bytes: u64) -> Result<(), String> {
        match self.largest_move {
            Some(most) if max_attachment_bytes > most => Err(format!(
                "the largest attachment ({max_attachment_bytes} bytes) is more than this blob store can move \
                 in one copy ({most} bytes on S3): lower --max-attachment-bytes"
            )),
            _ => Ok(()),
        }
    }

    /// See the field `attachment_gate`.
    pub fn attachment_gate(&self) -> &tokio::sync::RwLock<()> {
        &self.attachment_gate
    }

    /// Removes the parts of uploads interrupted before they finished (a crash, a kill) last written before
    /// `before`: on a folder, object_store writes an upload to `NAME#N` beside its destination and renames it at
    /// the end, and hides such files from listings, so they are found here by walking the folder. (On S3 an
    /// unfinished multipart upload is removed by the bucket's lifecycle rule `AbortIncompleteMultipartUpload`.)
    /// Returns how many were removed.
    pub async fn sweep_interrupted_uploads(
        &self,
        before: std::time::SystemTime,
    ) -> AppResult<usize> {
        let Some(root) = self.root.clone() else {
            return Ok(0);
        };
        tokio::task::spawn_blocking(move || {
            let mut removed = 0;
            let mut dirs = vec![root];
            while let Some(dir) = dirs.pop() {
                let entries = match std::fs::read_dir(&dir) {
                    Ok(e) => e,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(AppError::internal(e)),
                };
                for entry in entries {
                    let entry = entry.map_err(AppError::internal)?;
                    let meta = entry.metadata().map_err(AppError::internal)?;
                    if meta.is_dir() {
                        dirs.push(entry.path());
                    } else if is_upload_part(&entry.file_name().to_string_lossy())
                        && meta.modified().map_err(AppError::internal)? < before
                    {
                        match std::fs::remove_file(entry.path()) {
                            Ok(()) => removed += 1,
                            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                            Err(e) => return Err(AppError::internal(e)),
                        }
                    }
                }
            }
            Ok(removed)
        })
        .await
        .map_err(AppError::internal)?
    }

    pub async fn put(&self, key: &str, bytes: Bytes) -> AppResult<()> {
        self.inner
            .put(&ObjectPath::from(key), PutPayload::from(bytes))
            .await
            .map(|_| ())
            .map_err(AppError::internal)
    }

    pub async fn get(&self, key: &str) -> AppResult<Bytes> {
        let r = self
            .inner
            .get(&ObjectPath::from(key))
            .await
            .map_err(not_found_or_internal)?;
        r.bytes().await.map_err(AppError::internal)
    }

    /// An object as a stream of pieces (a download of any size in bounded memory), with its size.
    pub async fn get_stream(
        &self,
        key: &str,
    ) -> AppResult<(u64, BoxStream<'static, Result<Bytes, object_store::Error>>)> {
        let r = self
            .inner
            .get(&ObjectPath::from(key))
            .await
            .map_err(not_found_or_internal)?;
        Ok((r.meta.size, r.into_stream()))
    }

    /// Bytes `range` of an object (a study transfer's chunk).
    pub async fn get_range(&self, key: &str, range: std::ops::Range<u64>) -> AppResult<Bytes> {
        self.inner
            .get_range(&ObjectPath::from(key), range)
            .await
            .map_err(not_found_or_internal)
    }

    /// An object opened for reads by range, off the async threads (a slide: its structure, then tile by tile):
    /// a folder store's file is read directly, another store's object with one range request per read. Its
    /// reads block: call them from blocking threads (`spawn_blocking`), inside the node's runtime.
    pub async fn random_access(
        &self,
        key: &str,
    ) -> AppResult<Arc<dyn imaging::wsi::source::RandomAccess>> {
        let location = ObjectPath::from(key);
        if let Some(fs) = &self.local {
            let path = fs
                .path_to_filesystem(&location)
                .map_err(AppError::internal)?;
            let file =
                tokio::task::spawn_blocking(move || imaging::wsi::source::FileSource::open(&path))
                    .await
                    .map_err(AppError::internal)?
                    .map_err(|e| match e.kind() {
                        std::io::ErrorKind::NotFound => AppError::not_found("file"),
                        _ => AppError::internal(e),
                    })?;
            return Ok(Arc::new(file));
        }
        let size = self
            .inner
            .head(&location)
            .await
            .map_err(not_found_or_internal)?
            .size;
        Ok(Arc::new(RangedObject {
            store: self.inner.clone(),
            location,
            size,
            runtime: tokio::runtime::Handle::current(),
        }))
    }

    /// Moves an object to another key (a file rename on a folder, a copy and a delete on S3, where one copy
    /// takes at most 5 GB).
    pub async fn rename(&self, from: &str, to: &str) -> AppResult<()> {
        self.inner
            .rename(&ObjectPath::from(from), &ObjectPath::from(to))
            .await
            .map_err(AppError::internal)
    }

    /// The size of an object, or `None` when there is no such object.
    pub async fn size(&self, key: &str) -> AppResult<Option<u64>> {
        match self.inner.head(&ObjectPath::from(key)).await {
            Ok(m) => Ok(Some(m.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(AppError::internal(e)),
        }
    }

    /// A writer that stores an object written piece by piece (object_store's multipart upload: a staging file
    /// renamed into place on a folder, a multipart upload on S3); the object exists only once
    /// [`BlobWriter::finish`] returns.
    pub async fn writer(&self, key: &str) -> AppResult<BlobWriter> {
        let upload = self
            .inner
            .put_multipart(&ObjectPath::from(key))
            .await
            .map_err(AppError::internal)?;
        Ok(BlobWriter {
            inner: Some(object_store::WriteMultipart::new(upload)),
        })
    }

    /// The objects under `prefix` (a folder, e.g. `transfers/`) with their last write time.
    pub async fn list(
        &self,
        prefix: &str,
    ) -> AppResult<Vec<(String, chrono::DateTime<chrono::Utc>)>> {
        use futures::TryStreamExt;
        let prefix = ObjectPath::from(prefix);
        self.inner
            .list(Some(&prefix))
            .map_ok(|m| (m.location.to_string(), m.last_modified))
            .try_collect()
            .await
            .map_err(AppError::internal)
    }

    /// Delete an object; deleting what is not there is not an error.
    pub async fn delete(&self, key: &str) -> AppResult<()> {
        match self.inner.delete(&ObjectPath::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(AppError::internal(e)),
        }
    }
}

/// Whether a file name is that of object_store's staging file for an upload into a folder (`NAME#DIGITS`).
fn is_upload_part(name: &str) -> bool {
    name.split_once('#')
        .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// An object being written (see [`Blobs::writer`]). Dropped without [`BlobWriter::finish`] (an error, a
/// request cancelled by its client), nothing is stored: the upload is aborted, in the background if it was
/// not by [`BlobWriter::abort`].
pub struct BlobWriter {
    /// `None` once finished or aborted.
    inner: Option<object_store::WriteMultipart>,
}

impl BlobWriter {
    fn upload(&mut self) -> AppResult<&mut object_store::WriteMultipart> {
        self.inner
            .as_mut()
            .ok_or_else(|| AppError::internal("blob upload already ended"))
    }

    /// Appends bytes, waiting while two parts are still uploading (so memory stays at a few parts).
    pub async fn write(&mut self, bytes: &[u8]) -> AppResult<()> {
        let upload = self.upload()?;
        upload
            .wait_for_capacity(2)
            .await
            .map_err(AppError::internal)?;
        upload.write(bytes);
        Ok(())
    }

    pub async fn finish(mut self) -> AppResult<()> {
        let upload = self
            .inner
            .take()
            .ok_or_else(|| AppError::internal("blob upload already ended"))?;
        upload
            .finish()
            .await
            .map(|_| ())
            .map_err(AppError::internal)
    }

    pub async fn abort(mut self) {
        if let Some(upload) = self.inner.take() {
            if let Err(e) = upload.abort().await {
                tracing::warn!(error = %e, "an unfinished blob upload could not be aborted");
            }
        }
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if let (Some(upload), Ok(rt)) = (self.inner.take(), tokio::runtime::Handle::try_current()) {
            rt.spawn(async move {
                if let Err(e) = upload.abort().await {
                    tracing::warn!(error = %e, "an abandoned blob upload could not be aborted");
                }
            });
        }
    }
}

/// An object of a remote store read by range (see [`Blobs::random_access`]).
struct RangedObject {
    store: Arc<dyn ObjectStore>,
    location: ObjectPath,
    size: u64,
    runtime: tokio::runtime::Handle,
}

impl imaging::wsi::source::RandomAccess for RangedObject {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, offset: u64, len: usize) -> std::io::Result<Bytes> {
        let end = offset.saturating_add(len as u64).min(self.size);
        if offset >= end {
            return Ok(Bytes::new());
        }
        self.runtime
            .block_on(self.store.get_range(&self.location, offset..end))
            .map_err(std::io::Error::other)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn slide_file(name: &str) -> Bytes {
        Bytes::from(
            std::fs::read(format!(
                "{}/../imaging/tests/data/wsi/{name}",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap(),
        )
    }

    #[test]
    fn an_attachment_bound_past_what_s3_can_move_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let folder = Blobs::open(dir.path().to_str().unwrap()).unwrap();
        assert!(folder.check_attachment_bound(20 << 30).is_ok());
        // Opening an S3 store reaches no server: the builder only checks the URL and the settings.
        let s3 = Blobs::open("s3://caravan-test/attachments").unwrap();
        assert!(s3.check_attachment_bound(S3_LARGEST_COPY).is_ok());
        assert!(s3
            .check_attachment_bound(crate::config::DEFAULT_MAX_ATTACHMENT_BYTES)
            .is_ok());
        let refused = s3.check_attachment_bound(S3_LARGEST_COPY + 1).unwrap_err();
        assert!(refused.contains("--max-attachment-bytes"), "{refused}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn slides_open_by_range_from_a_folder_and_from_an_object_store() {
        let dir = tempfile::tempdir().unwrap();
        let folder = Blobs::open(dir.path().to_str().unwrap()).unwrap();
        let memory = Blobs::open("memory://").unwrap();
        for name in ["aperio-jpeg.svs", "pyramid-deflate.tiff"] {
            let bytes = slide_file(name);
            let whole = imaging::wsi::Slide::open_tiff(bytes.clone()).unwrap();
            let want = whole.read_region(0, 100, 50, 300, 200).unwrap();
            let shape = (whole.dimensions(), whole.levels().len());
            for blobs in [&folder, &memory] {
                blobs.put("attachments/s", bytes.clone()).await.unwrap();
                let source = blobs.random_access("attachments/s").await.unwrap();
                assert_eq!(source.size(), bytes.len() as u64);
                let got = tokio::task::spawn_blocking(move || {
                    let slide = imaging::wsi::tiff::open_source(source).unwrap();
                    assert_eq!((slide.dimensions(), slide.levels().len()), shape);
                    slide.read_region(0, 100, 50, 300, 200).unwrap()
                })
                .await
                .unwrap();
                assert!(got == want, "{name}: the region read by range differs");
                blobs.delete("attachments/s").await.unwrap();
                let missing = blobs.random_access("attachments/s").await.err().unwrap();
                assert_eq!(missing.status, axum::http::StatusCode::NOT_FOUND);
            }
        }
    }

    #[tokio::test]
    async fn an_unfinished_writer_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::open(dir.path().to_str().unwrap()).unwrap();
        let mut w = blobs.writer("attachments/incoming/a").await.unwrap();
        w.write(&[1u8; 100_000]).await.unwrap();
        w.abort().await;
        let mut w = blobs.writer("attachments/incoming/b").await.unwrap();
        w.write(&[1u8; 100_000]).await.unwrap();
        drop(w);
        // The dropped one is aborted in the background.
        for _ in 0..100 {
            if blobs.list("attachments/").await.unwrap().is_empty()
                && std::fs::read_dir(dir.path().join("attachments/incoming"))
                    .map(|d| d.count() == 0)
                    .unwrap_or(true)
            {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("a staging file was left behind");
    }

    #[tokio::test]
    async fn the_parts_of_interrupted_uploads_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::open(dir.path().to_str().unwrap()).unwrap();
        blobs
            .put("attachments/ab/kept", Bytes::from_static(b"stored"))
            .await
            .unwrap();
        std::fs::write(dir.path().join("attachments/ab/notes#draft"), b"x").unwrap();
        // An upload in progress, as a crash would leave it: object_store's part file beside its destination.
        let mut w = blobs.writer("attachments/incoming/c").await.unwrap();
        w.write(&[7u8; 1000]).await.unwrap();
        let parts = |d: &std::path::Path| {
            std::fs::read_dir(d.join("attachments/incoming"))
                .unwrap()
                .filter(|e| is_upload_part(&e.as_ref().unwrap().file_name().to_string_lossy()))
                .count()
        };
        assert_eq!(parts(dir.path()), 1, "object_store's part naming changed");
        let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        assert_eq!(blobs.sweep_interrupted_uploads(hour_ago).await.unwrap(), 0);
        assert_eq!(parts(dir.path()), 1);
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(1);
        assert_eq!(blobs.sweep_interrupted_uploads(later).await.unwrap(), 1);
        assert_eq!(parts(dir.path()), 0);
        w.abort().await;
        assert_eq!(
            blobs.get("attachments/ab/kept").await.unwrap(),
            &b"stored"[..]
        );
        assert!(dir.path().join("attachments/ab/notes#draft").exists());
        let memory = Blobs::open("memory://").unwrap();
        assert_eq!(memory.sweep_interrupted_uploads(later).await.unwrap(), 0);
    }
}
