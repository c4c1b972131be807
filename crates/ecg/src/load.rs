//! Opening any supported ECG file by looking at what it is, not at its name.

use std::path::{Path, PathBuf};

use crate::error::{EcgError, Result};
use crate::signal::Ecg;

/// Which reader a file needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Wfdb,
    Dicom,
    Aecg,
    Scp,
}

/// Decides the format: a WFDB record is named by its header path without `.hea` (a path ending in `.hea`
/// is accepted too); other files are recognised by their content.
pub fn sniff(path: &Path) -> Result<(Format, PathBuf)> {
    if path.extension().is_some_and(|e| e == "hea") {
        return Ok((Format::Wfdb, path.with_extension("")));
    }
    if crate::wfdb::is_record(path) {
        return Ok((Format::Wfdb, path.to_path_buf()));
    }
    let bytes = std::fs::read(path).map_err(|source| EcgError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if crate::dicom::is_dicom(&bytes) || bytes.starts_with(b"DICM") {
        return Ok((Format::Dicom, path.to_path_buf()));
    }
    if crate::scp::is_scp(&bytes) {
        return Ok((Format::Scp, path.to_path_buf()));
    }
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min(4096)]);
    if crate::aecg::is_aecg(&head) {
        return Ok((Format::Aecg, path.to_path_buf()));
    }
    Err(EcgError::UnknownFormat(path.to_path_buf()))
}

/// Loads the recording to analyse: the WFDB signals, the DICOM rhythm group, the aECG rhythm series or
/// the SCP-ECG rhythm data.
pub fn load(path: &Path) -> Result<(Format, Ecg)> {
    let (format, path) = sniff(path)?;
    let ecg = match format {
        Format::Wfdb => crate::wfdb::read_record(&path)?.to_ecg()?,
        Format::Dicom => crate::dicom::read_dicom_file(&path)?
            .rhythm()
            .cloned()
            .ok_or_else(|| EcgError::DicomWaveform("no multiplex group".into()))?,
        Format::Aecg => crate::aecg::read_aecg_file(&path)?,
        Format::Scp => crate::scp::read_scp_file(&path)?,
    };
    tracing::info!(format = ?format, summary = ?ecg.summary(), "ECG loaded");
    Ok((format, ecg))
}
