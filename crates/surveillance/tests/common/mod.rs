//! Helpers shared by the conformance tests.

/// Whether our upper bound matches the reference's: both NA, or within `rel` relative plus `abs` absolute.
pub fn bound_matches(ours: Option<f64>, reference: Option<f64>, rel: f64, abs: f64) -> bool {
    match (ours, reference) {
        (None, None) => true,
        (Some(a), Some(b)) => {
            (a - b).abs() <= rel * b.abs().max(1e-12) + abs || (a == 0.0 && b == 0.0)
        }
        _ => false,
    }
}
