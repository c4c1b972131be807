//! Beat-by-beat comparison in the style of ANSI/AAMI EC57 (WFDB's `bxb`): a detection matches a reference
//! beat when it lies within the match window (150 ms), each beat matches at most once, and the first five
//! minutes are excluded as the detector's learning period.

use serde::Serialize;

use crate::wfdb::Annotation;

/// Scoring conventions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreOptions {
    /// Match window in seconds (EC57: 0.15).
    pub window_s: f64,
    /// Start of the scored period in seconds (EC57: 300).
    pub skip_s: f64,
}

impl Default for ScoreOptions {
    fn default() -> Self {
        Self {
            window_s: 0.150,
            skip_s: 300.0,
        }
    }
}

/// Result of a comparison.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Score {
    pub true_positives: usize,
    pub false_negatives: usize,
    pub false_positives: usize,
    /// Sensitivity TP/(TP+FN) in percent (100 when there is no reference beat).
    pub sensitivity: f64,
    /// Positive predictivity TP/(TP+FP) in percent (100 when nothing was detected).
    pub positive_predictivity: f64,
}

impl Score {
    fn from_counts(tp: usize, fn_: usize, fp: usize) -> Self {
        let pct = |a: usize, b: usize| {
            if a + b == 0 {
                100.0
            } else {
                100.0 * a as f64 / (a + b) as f64
            }
        };
        Self {
            true_positives: tp,
            false_negatives: fn_,
            false_positives: fp,
            sensitivity: pct(tp, fn_),
            positive_predictivity: pct(tp, fp),
        }
    }

    /// Adds the counts of another comparison (gross statistics over several records).
    pub fn combine(&self, other: &Score) -> Score {
        Score::from_counts(
            self.true_positives + other.true_positives,
            self.false_negatives + other.false_negatives,
            self.false_positives + other.false_positives,
        )
    }
}

/// The reference beats (WFDB `isqrs` codes only) of an annotation list, as sample indices.
pub fn reference_beats(anns: &[Annotation]) -> Vec<i64> {
    anns.iter()
        .filter(|a| a.is_beat())
        .map(|a| a.sample)
        .collect()
}

/// Intervals (in samples) excluded from scoring, e.g. gaps where the signal is missing: reference beats and
/// detections inside them count neither way.
pub type Excluded = [(i64, i64)];

/// Compares detections with reference beats (both sample indices) at sampling rate `fs`.
pub fn score(reference: &[i64], detections: &[i64], fs: f64, opts: &ScoreOptions) -> Score {
    score_excluding(reference, detections, fs, opts, &[])
}

/// [`score`] with intervals left out of the comparison.
pub fn score_excluding(
    reference: &[i64],
    detections: &[i64],
    fs: f64,
    opts: &ScoreOptions,
    excluded: &Excluded,
) -> Score {
    let mut r: Vec<i64> = reference.to_vec();
    let mut d: Vec<i64> = detections.to_vec();
    r.sort_unstable();
    d.sort_unstable();
    let window = (opts.window_s * fs).round() as i64;
    let start = (opts.skip_s * fs).round() as i64;
    let counted = |t: i64| t >= start && !excluded.iter().any(|&(a, b)| t >= a && t <= b);

    // Candidate pairs within the window are matched closest first, each beat at most once; in one dimension
    // this never lets an early detection steal a match that a nearer pair would make.
    let mut pairs: Vec<(i64, usize, usize)> = Vec::new();
    let mut j = 0usize;
    for (k, &rt) in r.iter().enumerate() {
        while j < d.len() && d[j] < rt - window {
            j += 1;
        }
        let mut m = j;
        while m < d.len() && d[m] <= rt + window {
            pairs.push(((d[m] - rt).abs(), k, m));
            m += 1;
        }
    }
    pairs.sort_unstable();
    let mut used = vec![false; d.len()];
    let mut matched = vec![false; r.len()];
    for (_, k, m) in pairs {
        if !matched[k] && !used[m] {
            matched[k] = true;
            used[m] = true;
        }
    }
    let tp = r
        .iter()
        .zip(&matched)
        .filter(|(t, ok)| **ok && counted(**t))
        .count();
    let fn_ = r
        .iter()
        .zip(&matched)
        .filter(|(t, ok)| !**ok && counted(**t))
        .count();
    let fp = d
        .iter()
        .zip(&used)
        .filter(|(t, u)| !**u && counted(**t))
        .count();
    Score::from_counts(tp, fn_, fp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scoring_table() {
        let fs = 100.0; // window 15 samples, skip 300 s = 30000 samples
        let o = ScoreOptions::default();
        // (reference, detections, tp, fn, fp)
        type Row<'a> = (&'a [i64], &'a [i64], usize, usize, usize);
        let table: &[Row] = &[
            (&[30_000, 30_100], &[30_000, 30_100], 2, 0, 0),
            (&[30_000, 30_100], &[30_015, 30_085], 2, 0, 0),
            (&[30_000, 30_100], &[30_016], 0, 2, 1),
            (&[30_000, 30_100], &[30_005, 30_006], 1, 1, 1),
            // Beats and detections in the first five minutes do not count.
            (&[10, 29_990, 30_050], &[500, 29_995, 30_050], 1, 0, 0),
            // One detection between two beats matches only one of them.
            (&[30_000, 30_020], &[30_010], 1, 1, 0),
            // Closest pairs match first: both beats are found.
            (&[30_000, 30_020], &[30_014, 30_020], 2, 0, 0),
            (&[30_000, 30_020], &[30_014, 30_019], 2, 0, 0),
            (&[30_000, 30_020], &[30_019, 30_021], 1, 1, 1),
            (&[], &[30_000], 0, 0, 1),
        ];
        for (r, d, tp, fn_, fp) in table {
            let s = score(r, d, fs, &o);
            assert_eq!(
                (s.true_positives, s.false_negatives, s.false_positives),
                (*tp, *fn_, *fp),
                "ref {r:?} det {d:?}"
            );
        }
    }

    #[test]
    fn percentages_and_exclusions() {
        let o = ScoreOptions {
            window_s: 0.15,
            skip_s: 0.0,
        };
        let s = score(&[100, 200, 300, 400], &[100, 200, 300, 600], 100.0, &o);
        assert_eq!(s.sensitivity, 75.0);
        assert_eq!(s.positive_predictivity, 75.0);
        let s = score_excluding(
            &[100, 200, 300, 400],
            &[100, 200, 300, 600],
            100.0,
            &o,
            &[(350, 700)],
        );
        assert_eq!((s.sensitivity, s.positive_predictivity), (100.0, 100.0));
        let total = s.combine(&score(&[1], &[], 100.0, &o));
        assert_eq!(total.false_negatives, 1);
        assert_eq!(total.true_positives, 3);
    }
}
