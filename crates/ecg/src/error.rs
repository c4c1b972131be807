//! The crate's typed errors: every rejection says what was wrong and where.

use std::path::PathBuf;

/// Everything that can go wrong while reading or analysing an ECG.
#[derive(Debug, thiserror::Error)]
pub enum EcgError {
    /// A file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Results could not be written (e.g. standard output closed).
    #[error("cannot write output: {0}")]
    Output(#[source] std::io::Error),

    /// The WFDB header has no record line (only comments or nothing at all).
    #[error("WFDB header is empty: no record line found")]
    EmptyHeader,

    /// The record line of a WFDB header is malformed.
    #[error("WFDB header line {line}: bad {field} {value:?} in the record line")]
    BadRecordLine {
        line: usize,
        field: &'static str,
        value: String,
    },

    /// A signal specification line of a WFDB header is malformed.
    #[error("WFDB header line {line} (signal {signal}): bad {field} {value:?}")]
    BadSignalLine {
        line: usize,
        signal: usize,
        field: &'static str,
        value: String,
    },

    /// The header declares more signals than it specifies.
    #[error("WFDB header declares {declared} signals but specifies {found}")]
    MissingSignalLines { declared: usize, found: usize },

    /// A WFDB storage format this reader does not decode.
    #[error("WFDB signal {signal}: storage format {format} is not supported (supported: 16, 61, 80, 160, 212)")]
    UnsupportedFormat { signal: usize, format: u16 },

    /// A WFDB feature this reader deliberately does not implement.
    #[error("unsupported WFDB feature: {0}")]
    UnsupportedWfdb(String),

    /// Signals sharing one file disagree on how that file is laid out.
    #[error("WFDB signals {first} and {second} share {file:?} but declare different {what}")]
    InconsistentGroup {
        file: String,
        first: usize,
        second: usize,
        what: &'static str,
    },

    /// A signal file holds fewer bytes than the header's sample count requires.
    #[error("signal file {file:?} is too short: {expected} bytes needed for {samples} samples per signal, {actual} present")]
    ShortSignalFile {
        file: String,
        samples: usize,
        expected: usize,
        actual: usize,
    },

    /// The samples read do not add up to the header's checksum.
    #[error("WFDB signal {signal}: checksum mismatch (header {expected}, computed {computed})")]
    ChecksumMismatch {
        signal: usize,
        expected: i16,
        computed: i16,
    },

    /// An annotation file ends in the middle of an annotation.
    #[error("annotation file truncated at byte {offset}: {what}")]
    TruncatedAnnotation { offset: usize, what: &'static str },

    /// An annotation file's times run backwards or overflow.
    #[error("annotation file invalid at byte {offset}: {what}")]
    BadAnnotation { offset: usize, what: &'static str },

    /// A DICOM file could not be parsed.
    #[error("DICOM: {0}")]
    Dicom(String),

    /// A DICOM object is readable but is not a usable ECG waveform.
    #[error("DICOM waveform: {0}")]
    DicomWaveform(String),

    /// An HL7 aECG document is malformed or incomplete.
    #[error("HL7 aECG: {0}")]
    Aecg(String),

    /// An SCP-ECG file is malformed or uses an unsupported encoding.
    #[error("SCP-ECG: {0}")]
    Scp(String),

    /// The file type could not be recognised.
    #[error("unrecognised ECG file {0:?}: expected a WFDB record (header path without .hea), DICOM, HL7 aECG XML or SCP-ECG")]
    UnknownFormat(PathBuf),

    /// The request does not fit the recording (e.g. a channel that does not exist).
    #[error("{0}")]
    InvalidRequest(String),

    /// The recording cannot be analysed (too short, no beats, bad sampling rate).
    #[error("analysis impossible: {0}")]
    Analysis(String),
}

/// The crate's result type.
pub type Result<T, E = EcgError> = std::result::Result<T, E>;
