//! Reading the JSON files that rules, value sets and test suites come in.

use crate::LoadError;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Reads and parses one JSON file, tolerating a UTF-8 byte-order mark (some exported files start with one, which
/// JSON does not allow).
pub(crate) fn read_json(path: &Path) -> Result<Value, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_str(text.trim_start_matches('\u{feff}')).map_err(|source| LoadError::Json {
        path: path.to_owned(),
        source,
    })
}

/// The entries of a directory, sorted by path so that every run sees files in the same order.
pub(crate) fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let io = |source| LoadError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut entries = std::fs::read_dir(dir)
        .map_err(io)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(io)?;
    entries.sort();
    Ok(entries)
}

/// Every `.json` file under `dir`, recursively, in sorted order; `dir` itself if it is a file.
pub(crate) fn json_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), LoadError> {
    if dir.is_file() {
        out.push(dir.to_owned());
        return Ok(());
    }
    for path in sorted_entries(dir)? {
        if path.is_dir() {
            json_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
    Ok(())
}
