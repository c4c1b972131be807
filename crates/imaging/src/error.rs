//! Typed errors of the imaging crate.

/// Why an instance was refused by the archive. Each variant names exactly what was wrong so a peer
/// (DIMSE status comment, HTTP 4xx body) can be told a precise reason.
#[derive(Debug, thiserror::Error)]
pub enum RejectReason {
    #[error("not a DICOM instance: {0}")]
    Unparseable(String),
    #[error("required attribute {0} is missing or empty")]
    Missing(&'static str),
    #[error("attribute {name} holds an invalid UID {value:?}")]
    InvalidUid { name: &'static str, value: String },
    #[error("transfer syntax {0} is not supported")]
    UnsupportedTransferSyntax(String),
    #[error(
        "SOP instance {sop} belongs to study {actual}, not to the study {expected} it was sent to"
    )]
    WrongStudy {
        sop: String,
        expected: String,
        actual: String,
    },
    #[error("SOP instance {sop} is already stored in series {stored_series}, not {series}")]
    ConflictingHierarchy {
        sop: String,
        series: String,
        stored_series: String,
    },
}

/// Errors of the imaging crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("instance rejected: {0}")]
    Rejected(#[from] RejectReason),
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    #[error("index database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("index migration: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("invalid archive location {0:?}: {1}")]
    Location(String, String),
    #[error("DICOM encoding: {0}")]
    Encoding(String),
    #[error("pixel data: {0}")]
    Pixel(String),
    #[error("DICOM network: {0}")]
    Network(String),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("configuration: {0}")]
    Config(String),
    #[error("cannot de-identify: {0}")]
    Deidentification(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
