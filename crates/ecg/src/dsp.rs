//! Small signal-processing building blocks: zero-phase Butterworth sections (on the `biquad` crate), gap
//! filling, derivatives, moving averages and medians.

use biquad::{Biquad, Coefficients, DirectForm2Transposed, Type, Q_BUTTERWORTH_F64};

/// Which way a second-order section filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    Low,
    High,
}

/// Second-order Butterworth coefficients for a cut-off `fc` at sampling rate `fs`.
///
/// `biquad` 0.5's `from_params` divides the cut-off by `2·fs` where the RBJ formulas need `fs/2`, so the
/// normalised frequency (cut-off over Nyquist) is computed here and passed to `from_normalized_params`; the
/// test `cutoff_is_minus_3_db` guards this.
fn coefficients(pass: Pass, fs: f64, fc: f64) -> Option<Coefficients<f64>> {
    let normalised = fc / (fs / 2.0);
    let t = match pass {
        Pass::Low => Type::LowPass,
        Pass::High => Type::HighPass,
    };
    Coefficients::<f64>::from_normalized_params(t, normalised, Q_BUTTERWORTH_F64).ok()
}

/// Causal band-pass in one pass over the data: a second-order Butterworth high-pass and low-pass run in
/// cascade sample by sample (their two recursions interleave, which keeps the CPU busy), primed with the
/// first value so that no step transient appears. Returns false when a cut-off is not below Nyquist.
pub fn bandpass_causal(x: &[f64], fs: f64, low: f64, high: f64, out: &mut Vec<f64>) -> bool {
    let (Some(h), Some(l)) = (
        coefficients(Pass::High, fs, low),
        coefficients(Pass::Low, fs, high),
    ) else {
        return false;
    };
    let mut hp = DirectForm2Transposed::<f64>::new(h);
    let mut lp = DirectForm2Transposed::<f64>::new(l);
    if let Some(&first) = x.first() {
        for _ in 0..(fs as usize).max(16) {
            lp.run(hp.run(first));
        }
    }
    out.clear();
    out.extend(x.iter().map(|&v| lp.run(hp.run(v))));
    true
}

/// Runs one second-order Butterworth section forward, in place. Returns false when the cut-off is not below
/// Nyquist (the signal is then left unchanged).
pub fn filter_forward(x: &mut [f64], pass: Pass, fs: f64, fc: f64) -> bool {
    let Some(c) = coefficients(pass, fs, fc) else {
        return false;
    };
    let mut f = DirectForm2Transposed::<f64>::new(c);
    for v in x.iter_mut() {
        *v = f.run(*v);
    }
    true
}

/// Zero-phase filtering (forward then backward, like `filtfilt`), with odd-reflection padding of up to one
/// second at each end so that the edges do not ring.
pub fn filtfilt(x: &[f64], pass: Pass, fs: f64, fc: f64) -> Vec<f64> {
    let n = x.len();
    if n < 3 {
        return x.to_vec();
    }
    let pad = (fs.round() as usize).min(n - 1);
    let mut buf = Vec::with_capacity(n + 2 * pad);
    let (first, last) = (x[0], x[n - 1]);
    buf.extend((1..=pad).rev().map(|i| 2.0 * first - x[i]));
    buf.extend_from_slice(x);
    buf.extend((1..=pad).map(|i| 2.0 * last - x[n - 1 - i]));
    let Some(c) = coefficients(pass, fs, fc) else {
        return x.to_vec();
    };
    let mut f = DirectForm2Transposed::<f64>::new(c);
    // Prime each pass with the steady state for a constant input equal to its first value, so that the
    // filter starts without a step transient (for a constant input both sections settle exactly).
    let prime = |f: &mut DirectForm2Transposed<f64>, v: f64| {
        for _ in 0..pad.max(16) {
            f.run(v);
        }
    };
    prime(&mut f, buf[0]);
    for v in buf.iter_mut() {
        *v = f.run(*v);
    }
    f.reset_state();
    prime(&mut f, buf[buf.len() - 1]);
    for v in buf.iter_mut().rev() {
        *v = f.run(*v);
    }
    buf.drain(..pad);
    buf.truncate(n);
    buf
}

/// Band-pass as a zero-phase high-pass followed by a zero-phase low-pass.
pub fn bandpass(x: &[f64], fs: f64, low: f64, high: f64) -> Vec<f64> {
    let hp = filtfilt(x, Pass::High, fs, low);
    filtfilt(&hp, Pass::Low, fs, high)
}

/// Replaces NaN runs by linear interpolation between the valid neighbours (or the nearest valid value at the
/// ends) and returns the filled signal with a mask of which samples were missing. An all-NaN signal becomes
/// zeros.
pub fn fill_gaps(x: &[f64]) -> (Vec<f64>, Vec<bool>) {
    let missing: Vec<bool> = x.iter().map(|v| !v.is_finite()).collect();
    let mut out = x.to_vec();
    if !missing.iter().any(|&m| m) {
        return (out, missing);
    }
    let n = x.len();
    let mut i = 0;
    let mut prev: Option<(usize, f64)> = None;
    while i < n {
        if !missing[i] {
            prev = Some((i, x[i]));
            i += 1;
            continue;
        }
        let start = i;
        while i < n && missing[i] {
            i += 1;
        }
        let next = (i < n).then(|| (i, x[i]));
        for (k, v) in out.iter_mut().enumerate().take(i).skip(start) {
            *v = match (prev, next) {
                (Some((a, va)), Some((b, vb))) => va + (vb - va) * (k - a) as f64 / (b - a) as f64,
                (Some((_, va)), None) => va,
                (None, Some((_, vb))) => vb,
                (None, None) => 0.0,
            };
        }
    }
    (out, missing)
}

/// Centred five-point derivative (Pan & Tompkins 1985), in signal units per second.
pub fn derivative(x: &[f64], fs: f64) -> Vec<f64> {
    let n = x.len();
    let mut d = vec![0.0; n];
    if n < 5 {
        return d;
    }
    let k = fs / 8.0;
    for i in 2..n - 2 {
        d[i] = (x[i + 2] + 2.0 * x[i + 1] - 2.0 * x[i - 1] - x[i - 2]) * k;
    }
    d
}

/// Centred moving average over `w` samples (computed with a running sum; near the ends the window shrinks).
pub fn moving_average(x: &[f64], w: usize) -> Vec<f64> {
    let n = x.len();
    let w = w.max(1);
    let half = w / 2;
    let mut out = Vec::with_capacity(n);
    // Window for output i is [i - half, i + w - half), clipped to the data.
    let mut sum: f64 = x[..(w - half).min(n)].iter().sum();
    for i in 0..n {
        let a = i.saturating_sub(half);
        let b = (i + w - half).min(n);
        out.push(sum / (b - a) as f64);
        // Slide: add the sample entering at b, drop the one leaving at a.
        if i + w - half < n {
            sum += x[i + w - half];
        }
        if i >= half {
            sum -= x[i - half];
        }
    }
    out
}

/// Median of a slice (NaN-free input expected); `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    let mid = v.len() / 2;
    v.select_nth_unstable_by(mid, |a, b| a.total_cmp(b));
    let hi = v[mid];
    if v.len() % 2 == 1 {
        return Some(hi);
    }
    let lo = v[..mid].iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Some((lo + hi) / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(f: f64, fs: f64, n: usize) -> Vec<f64> {
        (0..n)
            .map(|i| (2.0 * std::f64::consts::PI * f * i as f64 / fs).sin())
            .collect()
    }

    fn amplitude(x: &[f64]) -> f64 {
        let mid = &x[x.len() / 4..3 * x.len() / 4];
        mid.iter().fold(0.0f64, |a, v| a.max(v.abs()))
    }

    #[test]
    fn cutoff_is_minus_3_db() {
        // A single forward pass of a second-order Butterworth attenuates its cut-off by 1/sqrt(2).
        let fs = 360.0;
        for (pass, fc) in [(Pass::Low, 15.0), (Pass::High, 5.0), (Pass::Low, 40.0)] {
            let mut x = sine(fc, fs, 20_000);
            assert!(filter_forward(&mut x, pass, fs, fc));
            let a = amplitude(&x);
            assert!(
                (a - std::f64::consts::FRAC_1_SQRT_2).abs() < 0.01,
                "{pass:?} {fc}: {a}"
            );
        }
    }

    #[test]
    fn bandpass_keeps_qrs_band_and_rejects_wander_and_mains() {
        let fs = 500.0;
        let n = 10_000;
        let pass = bandpass(&sine(10.0, fs, n), fs, 5.0, 15.0);
        let wander = bandpass(&sine(0.3, fs, n), fs, 5.0, 15.0);
        let mains = bandpass(&sine(50.0, fs, n), fs, 5.0, 15.0);
        assert!(amplitude(&pass) > 0.7, "{}", amplitude(&pass));
        assert!(amplitude(&wander) < 0.01, "{}", amplitude(&wander));
        assert!(amplitude(&mains) < 0.02, "{}", amplitude(&mains));
    }

    #[test]
    fn zero_phase_does_not_shift_a_peak() {
        let fs = 360.0;
        let mut x = vec![0.0; 2000];
        for (i, v) in x.iter_mut().enumerate() {
            let t = (i as f64 - 1000.0) / 5.0;
            *v = (-t * t).exp();
        }
        let y = filtfilt(&x, Pass::Low, fs, 30.0);
        let peak = y
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i);
        assert_eq!(peak, Some(1000));
    }

    #[test]
    fn gaps_are_interpolated() {
        let (f, m) = fill_gaps(&[f64::NAN, 1.0, f64::NAN, f64::NAN, 4.0, f64::NAN]);
        assert_eq!(f, vec![1.0, 1.0, 2.0, 3.0, 4.0, 4.0]);
        assert_eq!(m, vec![true, false, true, true, false, true]);
        assert_eq!(fill_gaps(&[f64::NAN; 3]).0, vec![0.0; 3]);
    }

    #[test]
    fn running_moving_average_equals_the_direct_one() {
        let x: Vec<f64> = (0..97).map(|i| ((i * 37) % 11) as f64 - 5.0).collect();
        for w in [1, 2, 3, 8, 54, 96, 97, 200] {
            let fast = moving_average(&x, w);
            let half = w / 2;
            for (i, v) in fast.iter().enumerate() {
                let a = i.saturating_sub(half);
                let b = (i + w - half).min(x.len());
                let direct = x[a..b].iter().sum::<f64>() / (b - a) as f64;
                assert!((v - direct).abs() < 1e-9, "w {w} i {i}");
            }
        }
    }

    #[test]
    fn moving_average_and_median() {
        assert_eq!(moving_average(&[3.0, 3.0, 3.0, 3.0], 3), vec![3.0; 4]);
        assert_eq!(moving_average(&[0.0, 3.0, 0.0], 3)[1], 1.0);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        let d = derivative(&(0..10).map(f64::from).collect::<Vec<_>>(), 100.0);
        assert!((d[5] - 100.0).abs() < 1e-9);
    }
}
