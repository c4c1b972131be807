//! The Caravan node's HTTP server: one module per capability (`api`, `ui`), shared middleware in `auth`, `audit`,
//! `error`, `i18n`, and the consultation service in `consult` that both doors call.

pub mod api;
pub mod audit;
pub mod auth;
pub mod blobs;
pub mod certs_web;
pub mod config;
pub mod consult;
pub mod demo;
pub mod error;
pub mod federation;
pub mod housekeeping;
pub mod i18n;
pub mod monitor;
pub mod network;
pub mod rx;
pub mod studies;
pub mod study_transfer;
pub mod surveil;
pub mod teams;
pub mod throttle;
pub mod tls;
pub mod ui;
pub mod upload;
pub mod visits;

use axum::http::{header, HeaderValue};
use axum::routing::get;
use axum::Router;
use caravan_store::Store;
use std::net::SocketAddr;
use std::sync::Arc;
use tower_http::set_header::SetResponseHeaderLayer;

pub use blobs::Blobs;
pub use config::NodeConfig;

struct Inner {
    store: Arc<dyn Store>,
    blobs: Blobs,
    config: NodeConfig,
    i18n: i18n::I18n,
    login_throttle: throttle::LoginThrottle,
    auth_cache: auth::AuthCache,
    federation: Option<Arc<federation::Federation>>,
    certs: certs_web::CertsHub,
    visit_hub: visits::signal::Hub,
    /// The node's DICOM archive, once the binary opened it (`studies::Imaging`).
    imaging: std::sync::OnceLock<studies::Imaging>,
    /// Remote monitoring (`monitor`), once the binary opened its database.
    monitoring: std::sync::OnceLock<Arc<monitor::Monitor>>,
}

/// Shared state of a node, passed explicitly to every handler.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl AppState {
    pub fn new(store: Arc<dyn Store>, blobs: Blobs, config: NodeConfig) -> Self {
        Self::federated(store, blobs, config, None)
    }
    /// A node that is a member of a network (see [`federation`]).
    pub fn federated(
        store: Arc<dyn Store>,
        blobs: Blobs,
        config: NodeConfig,
        federation: Option<Arc<federation::Federation>>,
    ) -> Self {
        let certs = certs_web::CertsHub::new(config.certs_dir.clone(), &config.node_name);
        Self(Arc::new(Inner {
            store,
            blobs,
            config,
            i18n: i18n::I18n::new(),
            login_throttle: throttle::LoginThrottle::default(),
            auth_cache: auth::AuthCache::default(),
            federation,
            certs,
            visit_hub: visits::signal::Hub::default(),
            imaging: std::sync::OnceLock::new(),
            monitoring: std::sync::OnceLock::new(),
        }))
    }
    pub fn federation(&self) -> Option<&federation::Federation> {
        self.0.federation.as_deref()
    }
    pub fn store(&self) -> &dyn Store {
        self.0.store.as_ref()
    }
    pub fn blobs(&self) -> &Blobs {
        &self.0.blobs
    }
    pub fn config(&self) -> &NodeConfig {
        &self.0.config
    }
    pub fn i18n(&self) -> &i18n::I18n {
        &self.0.i18n
    }
    pub fn login_throttle(&self) -> &throttle::LoginThrottle {
        &self.0.login_throttle
    }
    pub fn auth_cache(&self) -> &auth::AuthCache {
        &self.0.auth_cache
    }
    pub fn certs(&self) -> &certs_web::CertsHub {
        &self.0.certs
    }
    /// The signaling rooms of video visits in progress.
    pub fn visit_hub(&self) -> &visits::signal::Hub {
        &self.0.visit_hub
    }
    /// The node's DICOM archive, if one was attached (see [`AppState::attach_imaging`]).
    pub fn imaging(&self) -> Option<&studies::Imaging> {
        self.0.imaging.get()
    }
    /// Attach the node's DICOM archive (once, at start-up): case studies, the case viewer and study transfers
    /// use it. A second call is ignored.
    pub fn attach_imaging(&self, archive: imaging::Archive) {
        let _ = self.0.imaging.set(studies::Imaging::new(archive));
    }
    /// Remote monitoring, if attached (see [`monitor::attach`]).
    pub fn monitoring(&self) -> Option<&Arc<monitor::Monitor>> {
        self.0.monitoring.get()
    }
    /// Attach remote monitoring (once, at start-up); a second call is ignored.
    pub fn attach_monitoring(&self, m: Arc<monitor::Monitor>) {
        let _ = self.0.monitoring.set(m);
    }
}

/// Content Security Policy: nothing but this node's own origin; no inline scripts.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; \
                   frame-ancestors 'none'; form-action 'self'; base-uri 'none'";

pub fn router(state: AppState) -> Router {
    router_with(state, Router::new())
}

/// The node's router plus `extra` routes from capability crates (FHIR, DICOMweb, ...), which get the same
/// state, security headers and body limit.
pub fn router_with(state: AppState, extra: Router<AppState>) -> Router {
    // Every buffering extractor (`Json`, `Form`, `Bytes`, `Multipart`) is held to the node's body limit. The two
    // attachment upload routes read the raw body instead, so the limit is lifted there only; `upload` bounds it
    // (`max_attachment_bytes` for the file, 1 MiB for the rest of the form).
    let limit = state.config().max_upload_bytes + 64 * 1024;
    Router::new()
        .route("/healthz", get(healthz))
        .merge(federation::routes(&state))
        .merge(extra)
        .nest("/api/v1", api::routes())
        .merge(ui::routes())
        .merge(certs_web::routes())
        .merge(surveil::pages::routes())
        .merge(visits::pages::routes())
        .merge(studies::routes())
        .merge(study_transfer::routes(&state))
        .merge(rx::pages::routes())
        .merge(monitor::pages::routes())
        .layer(axum::extract::DefaultBodyLimit::max(limit))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .with_state(state)
}

async fn healthz(
    axum::extract::State(st): axum::extract::State<AppState>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match st.store().list_institutions().await {
        Ok(_) => (axum::http::StatusCode::OK, "ok").into_response(),
        Err(e) => {
            tracing::error!(error = %e, "health check failed");
            (
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "database unavailable",
            )
                .into_response()
        }
    }
}

/// Open the store named by `database`: `postgres://...` for PostgreSQL, otherwise a SQLite file (`sqlite:` optional).
pub async fn open_store(database: &str) -> Result<Arc<dyn Store>, String> {
    if database.starts_with("postgres://") || database.starts_with("postgresql://") {
        // The URL is left out of the message: it may carry a password.
        let store = caravan_store_postgres::PgStore::connect(database)
            .await
            .map_err(|e| format!("cannot open the PostgreSQL database: {e}"))?;
        return Ok(Arc::new(store));
    }
    let path = database
        .strip_prefix("sqlite://")
        .or_else(|| database.strip_prefix("sqlite:"))
        .unwrap_or(database);
    let store = caravan_store_sqlite::SqliteStore::open(std::path::Path::new(path))
        .await
        .map_err(|e| format!("cannot open database {path}: {e}"))?;
    Ok(Arc::new(store))
}

/// Serve until the future `shutdown` completes. Also runs the SLA escalation sweep and the blob sweep.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, state, Router::new(), shutdown).await
}

/// [`serve`] with extra routes (see [`router_with`]).
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    state: AppState,
    extra: Router<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // TLS settings are checked before anything starts.
    let tls = match &state.config().tls {
        Some(t) => Some(
            t.server_config(state.federation().map(|f| f.shared_directory()))
                .map_err(std::io::Error::other)?,
        ),
        None => None,
    };
    let sweep_state = state.clone();
    let sweep = tokio::spawn(async move {
        let mut tick = tokio::time::interval(
            sweep_state
                .config()
                .sweep_every
                .max(std::time::Duration::from_millis(10)),
        );
        loop {
            tick.tick().await;
            if let Err(e) = consult::escalation_sweep(&sweep_state).await {
                tracing::error!(error = %e.message, "escalation sweep failed");
            }
        }
    });
    // The blob sweep: at start (after a crash) and every hour.
    let blob_state = state.clone();
    let blob_sweep = tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
        loop {
            tick.tick().await;
            if let Err(e) = housekeeping::sweep_blobs(&blob_state, chrono::Utc::now()).await {
                tracing::error!(error = %e.message, "blob sweep failed");
            }
        }
    });
    let background = federation::start(&state).map_err(std::io::Error::other)?;
    let app = router_with(state, extra);
    let result = match tls {
        None => {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(shutdown)
            .await
        }
        Some(config) => {
            axum::serve(
                tls::TlsListener::new(listener, config)?,
                app.into_make_service_with_connect_info::<tls::TlsConnInfo>(),
            )
            .with_graceful_shutdown(shutdown)
            .await
        }
    };
    sweep.abort();
    blob_sweep.abort();
    for task in background {
        task.abort();
    }
    result
}
