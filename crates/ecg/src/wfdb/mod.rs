//! WFDB (PhysioNet) records: headers, signal files and MIT-format annotation files.

pub mod annotation;
pub mod header;
pub mod signal;

use std::path::{Path, PathBuf};

pub use annotation::{parse_annotations, Annotation};
pub use header::{parse_header, Header, SignalSpec};
pub use signal::{decode_record, Record};

use crate::error::{EcgError, Result};

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| EcgError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn with_ext(record: &Path, ext: &str) -> PathBuf {
    let mut s = record.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

/// Reads a record given its header path without the `.hea` extension (WFDB's record name convention).
pub fn read_record(record: &Path) -> Result<Record> {
    let hea = with_ext(record, "hea");
    let text = read(&hea)?;
    let header = parse_header(&String::from_utf8_lossy(&text))?;
    let dir = hea.parent().map(Path::to_path_buf).unwrap_or_default();
    decode_record(header, |file| read(&dir.join(file)))
}

/// Reads the annotation file `RECORD.ANNOTATOR` (e.g. `100.atr`).
pub fn read_annotations(record: &Path, annotator: &str) -> Result<Vec<Annotation>> {
    if annotator.is_empty() || annotator.contains(['/', '\\']) {
        return Err(EcgError::InvalidRequest(format!(
            "annotator name {annotator:?} is not a plain file extension"
        )));
    }
    parse_annotations(&read(&with_ext(record, annotator))?)
}

/// True when `RECORD.hea` exists, i.e. the path names a WFDB record.
pub fn is_record(record: &Path) -> bool {
    with_ext(record, "hea").is_file()
}
