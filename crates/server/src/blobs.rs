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
            let url = url::Url::parse(spec).map_err(|e| format!("bad blob store URL: {e}"))?;
            let (store, prefix) = object_store::parse_url_opts(&url, std::env::vars())
                .map_err(|e| format!("cannot open {spec}: {e}"))?;
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
}
