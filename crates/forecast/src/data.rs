//! Reading a single numeric column of counts from CSV, with every bad-input case turned into a typed error.

use crate::error::{ForecastError, Result};
use std::io::Read;

/// Reads column `column` of a CSV file (with a header row) as non-negative finite numbers.
pub fn read_column_file(path: &std::path::Path, column: &str) -> Result<Vec<f64>> {
    let file = std::fs::File::open(path).map_err(|source| ForecastError::Io {
        path: path.display().to_string(),
        source,
    })?;
    read_column(file, column)
}

/// Reads column `column` of CSV text (with a header row) as non-negative finite numbers.
///
/// Rows are numbered from 1 after the header in error messages, which is how a user counts them in a spreadsheet.
pub fn read_column<R: Read>(reader: R, column: &str) -> Result<Vec<f64>> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_reader(reader);
    let headers = rdr
        .headers()
        .map_err(|e| ForecastError::Csv(e.to_string()))?
        .clone();
    if headers.iter().all(str::is_empty) {
        return Err(ForecastError::Empty);
    }
    let idx =
        headers
            .iter()
            .position(|h| h == column)
            .ok_or_else(|| ForecastError::MissingColumn {
                column: column.to_string(),
                header: headers.iter().collect::<Vec<_>>().join(","),
            })?;
    let mut out = Vec::new();
    for (i, rec) in rdr.records().enumerate() {
        let row = i + 1;
        let rec = rec.map_err(|e| ForecastError::Csv(e.to_string()))?;
        let cell = rec.get(idx).unwrap_or("");
        let value: f64 = cell.parse().map_err(|_| ForecastError::NotNumeric {
            row,
            column: column.to_string(),
            value: cell.to_string(),
        })?;
        validate_count(row, column, value)?;
        out.push(value);
    }
    if out.is_empty() {
        return Err(ForecastError::Empty);
    }
    Ok(out)
}

/// Checks that a value is a usable count: finite and not negative.
pub fn validate_count(row: usize, column: &str, value: f64) -> Result<()> {
    if !value.is_finite() || value < 0.0 {
        return Err(ForecastError::InvalidCount {
            row,
            column: column.to_string(),
            value,
        });
    }
    Ok(())
}

/// Validates an in-memory series the same way as a CSV column.
pub fn validate_series(series: &[f64], column: &str) -> Result<()> {
    if series.is_empty() {
        return Err(ForecastError::Empty);
    }
    for (i, &v) in series.iter().enumerate() {
        validate_count(i + 1, column, v)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_inputs_are_typed_errors() {
        let cases: &[(&str, &str)] = &[
            ("reported\n", "empty"),
            ("", "empty"),
            ("x\n1\n", "not found"),
            ("reported\n1\nabc\n", "not a number"),
            ("reported\n1\n-2\n", "must be a finite"),
            ("reported\n1\nNaN\n", "must be a finite"),
            ("reported\n1\ninf\n", "must be a finite"),
        ];
        for (text, want) in cases {
            let err = read_column(text.as_bytes(), "reported")
                .err()
                .map(|e| e.to_string());
            assert!(
                err.as_deref().is_some_and(|e| e.contains(want)),
                "{text:?} gave {err:?}"
            );
        }
        let ok = read_column("day,reported\n1, 3\n2,4.5\n".as_bytes(), "reported").ok();
        assert_eq!(ok, Some(vec![3.0, 4.5]));
    }
}
