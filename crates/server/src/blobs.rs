//! The blob store for attachments: a local folder by default, any S3-compatible store with an `s3://` URL
//! (object_store).

use crate::error::{AppError, AppResult};
use bytes::Bytes;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload};
use std::sync::Arc;

#[derive(Clone)]
pub struct Blobs {
    inner: Arc<dyn ObjectStore>,
}

impl Blobs {
    /// `file:///abs/dir`, a plain directory path, `s3://bucket/prefix` (credentials from the usual AWS_* variables)
    /// or `memory://`.
    pub fn open(spec: &str) -> Result<Self, String> {
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
            Arc::new(object_store::prefix::PrefixStore::new(store, prefix))
        } else {
            let dir = spec.strip_prefix("file://").unwrap_or(spec);
            std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {dir}: {e}"))?;
            Arc::new(
                object_store::local::LocalFileSystem::new_with_prefix(dir)
                    .map_err(|e| format!("cannot open {dir}: {e}"))?,
            )
        };
        Ok(Self { inner })
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
            .map_err(|e| match e {
                object_store::Error::NotFound { .. } => AppError::not_found("file"),
                other => AppError::internal(other),
            })?;
        r.bytes().await.map_err(AppError::internal)
    }

    /// Bytes `range` of an object (a study transfer's chunk).
    pub async fn get_range(&self, key: &str, range: std::ops::Range<u64>) -> AppResult<Bytes> {
        self.inner
            .get_range(&ObjectPath::from(key), range)
            .await
            .map_err(|e| match e {
                object_store::Error::NotFound { .. } => AppError::not_found("file"),
                other => AppError::internal(other),
            })
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
            inner: object_store::WriteMultipart::new(upload),
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

/// An object being written (see [`Blobs::writer`]). Dropped without [`BlobWriter::finish`], nothing is stored
/// (call [`BlobWriter::abort`] to also free what an S3 upload holds).
pub struct BlobWriter {
    inner: object_store::WriteMultipart,
}

impl BlobWriter {
    /// Appends bytes, waiting while two parts are still uploading (so memory stays at a few parts).
    pub async fn write(&mut self, bytes: &[u8]) -> AppResult<()> {
        self.inner
            .wait_for_capacity(2)
            .await
            .map_err(AppError::internal)?;
        self.inner.write(bytes);
        Ok(())
    }

    pub async fn finish(self) -> AppResult<()> {
        self.inner
            .finish()
            .await
            .map(|_| ())
            .map_err(AppError::internal)
    }

    pub async fn abort(self) {
        if let Err(e) = self.inner.abort().await {
            tracing::warn!(error = %e, "an unfinished blob upload could not be aborted");
        }
    }
}
