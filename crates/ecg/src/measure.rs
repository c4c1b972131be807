//! Global interval measurements on a median beat, the way resting-ECG programs report them: beats are
//! detected on all leads together, each lead's beats are aligned on the R fiducial and their sample-wise
//! median forms a noise-free representative beat, and the wave boundaries are found once for all leads on
//! spatial (all-lead) curves:
//!
//! - QRS onset and offset where the spatial velocity (root sum of squared lead derivatives) leaves and
//!   returns to its isoelectric level;
//! - T end by the tangent method (the steepest descent after the T peak, extended to the baseline) on the
//!   root-mean-square T-wave curve, the usual automated QT method (Lepeschkin & Surawicz 1952);
//! - P onset by the same tangent method on the rising limb of the low-passed P-wave curve.
//!
//! QTc follows Bazett (QT/√RR) and Fridericia (QT/∛RR), RR in seconds.

use serde::Serialize;

use crate::dsp::{derivative, fill_gaps, filtfilt, median, Pass};
use crate::error::{EcgError, Result};
use crate::qrs::detect_ecg;
use crate::signal::Ecg;

/// Wave boundaries on the median beat, as sample offsets from its start.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Fiducials {
    pub p_onset: Option<usize>,
    pub p_peak: Option<usize>,
    pub qrs_onset: usize,
    pub r: usize,
    pub qrs_offset: usize,
    pub t_peak: usize,
    pub t_end: usize,
}

/// The representative beat of every lead.
#[derive(Debug, Clone, PartialEq)]
pub struct MedianBeat {
    /// Samples before the R fiducial included in the window.
    pub pre: usize,
    /// One median beat per lead (millivolts, baseline-corrected), in the recording's lead order.
    pub leads: Vec<Vec<f64>>,
    /// Number of beats that went into the median.
    pub beats: usize,
}

/// Everything `measure` reports, in milliseconds and beats per minute.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Measurements {
    pub heart_rate_bpm: f64,
    pub rr_mean_ms: f64,
    pub rr_min_ms: f64,
    pub rr_max_ms: f64,
    /// Standard deviation of the RR intervals (a simple variability index).
    pub rr_sd_ms: f64,
    pub qrs_duration_ms: f64,
    /// `None` when no P wave is found (e.g. atrial fibrillation or a noisy baseline).
    pub pr_interval_ms: Option<f64>,
    pub qt_interval_ms: f64,
    pub qtc_bazett_ms: f64,
    pub qtc_fridericia_ms: f64,
    pub beats: usize,
    /// Beat positions (sample indices in the recording).
    pub r_peaks: Vec<usize>,
    /// RR intervals in milliseconds.
    pub rr_ms: Vec<f64>,
    /// Wave boundaries on the median beat.
    pub fiducials: Fiducials,
    /// Sample index of the median beat's first sample relative to each R peak (negative: before it).
    pub median_beat_start_offset: i64,
    pub sampling_frequency_hz: f64,
}

/// Measures a recording (any number of leads; twelve gives the most robust boundaries).
pub fn measure(ecg: &Ecg) -> Result<Measurements> {
    let beats = detect_ecg(ecg)?;
    measure_with_beats(ecg, &beats)
}

/// Measures a recording given its beat positions.
pub fn measure_with_beats(ecg: &Ecg, beats: &[usize]) -> Result<Measurements> {
    let fs = ecg.fs;
    if beats.len() < 3 {
        return Err(EcgError::Analysis(format!(
            "{} beat(s) detected; at least 3 are needed for intervals",
            beats.len()
        )));
    }
    let ms = |samples: f64| samples * 1000.0 / fs;
    let rr_ms: Vec<f64> = beats.windows(2).map(|w| ms((w[1] - w[0]) as f64)).collect();
    let rr_mean = rr_ms.iter().sum::<f64>() / rr_ms.len() as f64;
    let rr_sd =
        (rr_ms.iter().map(|r| (r - rr_mean).powi(2)).sum::<f64>() / rr_ms.len() as f64).sqrt();
    let rr_min = rr_ms.iter().copied().fold(f64::INFINITY, f64::min);
    let rr_max = rr_ms.iter().copied().fold(0.0, f64::max);
    let rr_median = median(&rr_ms).unwrap_or(rr_mean);

    let mb = median_beat(ecg, beats, rr_median / 1000.0)?;
    let f = delineate(&mb, fs)?;
    let qrs = ms(f.qrs_offset as f64 - f.qrs_onset as f64);
    let qt = ms(f.t_end as f64 - f.qrs_onset as f64);
    let pr = f.p_onset.map(|p| ms(f.qrs_onset as f64 - p as f64));
    // QTc uses the mean RR of the recording, as the resting-ECG convention does.
    let rr_s = rr_mean / 1000.0;
    Ok(Measurements {
        heart_rate_bpm: 60_000.0 / rr_mean,
        rr_mean_ms: rr_mean,
        rr_min_ms: rr_min,
        rr_max_ms: rr_max,
        rr_sd_ms: rr_sd,
        qrs_duration_ms: qrs,
        pr_interval_ms: pr,
        qt_interval_ms: qt,
        qtc_bazett_ms: qt / rr_s.sqrt(),
        qtc_fridericia_ms: qt / rr_s.cbrt(),
        beats: beats.len(),
        r_peaks: beats.to_vec(),
        rr_ms,
        fiducials: f,
        median_beat_start_offset: -(mb.pre as i64),
        sampling_frequency_hz: fs,
    })
}

/// Builds the median beat of every lead: baseline wander removed (0.5 Hz zero-phase high-pass), beats cut
/// around the fiducial, and the sample-wise median taken over the beats that fit entirely in the recording.
pub fn median_beat(ecg: &Ecg, beats: &[usize], rr_s: f64) -> Result<MedianBeat> {
    let fs = ecg.fs;
    // The window spans the P wave before and the T wave after the R peak; it shrinks with fast rates so
    // that it does not reach far into the neighbouring beats.
    let pre = (fs * (0.40f64).min(0.5 * rr_s).max(0.25)).round() as usize;
    let post = (fs * (0.65f64).min(0.9 * rr_s).max(0.40)).round() as usize;
    let n = ecg.len();
    let usable: Vec<usize> = beats
        .iter()
        .copied()
        .filter(|&b| b >= pre && b + post < n)
        .collect();
    if usable.is_empty() {
        return Err(EcgError::Analysis(
            "no beat lies far enough from the recording's ends to build a median beat".into(),
        ));
    }
    let width = pre + post;
    let mut leads = Vec::with_capacity(ecg.leads.len());
    let mut column = Vec::with_capacity(usable.len());
    for lead in &ecg.leads {
        let (filled, _) = fill_gaps(&lead.samples);
        let clean = filtfilt(&filled, Pass::High, fs, 0.5);
        let mut beat = Vec::with_capacity(width);
        for k in 0..width {
            column.clear();
            column.extend(usable.iter().map(|&b| clean[b - pre + k]));
            beat.push(median(&column).unwrap_or(0.0));
        }
        leads.push(beat);
    }
    Ok(MedianBeat {
        pre,
        leads,
        beats: usable.len(),
    })
}

fn argmax(x: &[f64], a: usize, b: usize) -> usize {
    let mut best = a;
    for i in a..b.min(x.len()) {
        if x[i] > x[best] {
            best = i;
        }
    }
    best
}

/// Finds the wave boundaries on a median beat.
pub fn delineate(mb: &MedianBeat, fs: f64) -> Result<Fiducials> {
    let width = mb.leads.first().map_or(0, Vec::len);
    let ms = |v: f64| (v * fs / 1000.0).round() as usize;
    if width < ms(500.0) || mb.pre < ms(200.0) {
        return Err(EcgError::Analysis(
            "median beat too short to delineate".into(),
        ));
    }
    // Spatial velocity of a 40 Hz low-passed beat: high over the QRS, low on the isoelectric segments.
    let smooth: Vec<Vec<f64>> = mb
        .leads
        .iter()
        .map(|l| filtfilt(l, Pass::Low, fs, 40.0_f64.min(0.4 * fs)))
        .collect();
    let mut vel = vec![0.0; width];
    for l in &smooth {
        for (v, d) in vel.iter_mut().zip(derivative(l, fs)) {
            *v += d * d;
        }
    }
    for v in &mut vel {
        *v = v.sqrt();
    }
    let r = mb.pre;
    let peak_vel = vel[r.saturating_sub(ms(60.0))..(r + ms(60.0)).min(width)]
        .iter()
        .copied()
        .fold(0.0, f64::max);
    if peak_vel <= 0.0 {
        return Err(EcgError::Analysis(
            "flat median beat: no QRS complex".into(),
        ));
    }
    // Isoelectric level of the velocity: its low percentile over the whole beat.
    let mut sorted = vel.clone();
    sorted.sort_by(f64::total_cmp);
    let floor = sorted[sorted.len() / 10];
    let threshold = floor + 0.05 * (peak_vel - floor);
    // QRS onset: walking back from R, the first point of a 10 ms run under the threshold.
    let run = ms(10.0).max(1);
    let lo = r.saturating_sub(ms(150.0));
    let mut qrs_onset = lo;
    let mut k = r;
    while k > lo + run {
        if vel[k - run..k].iter().all(|&v| v < threshold) {
            qrs_onset = k;
            break;
        }
        k -= 1;
    }
    let hi = (r + ms(200.0)).min(width - 1);
    let mut qrs_offset = hi;
    let mut k = r;
    while k + run < hi {
        if vel[k..k + run].iter().all(|&v| v < threshold) {
            qrs_offset = k;
            break;
        }
        k += 1;
    }

    // Isoelectric level of each lead: the PR segment just before the QRS onset.
    let iso_a = qrs_onset.saturating_sub(ms(20.0));
    let iso: Vec<f64> = smooth
        .iter()
        .map(|l| {
            let seg = &l[iso_a..qrs_onset.max(iso_a + 1)];
            seg.iter().sum::<f64>() / seg.len() as f64
        })
        .collect();
    let rms_curve = |from: &[Vec<f64>]| -> Vec<f64> {
        (0..width)
            .map(|t| {
                let s: f64 = from.iter().zip(&iso).map(|(l, b)| (l[t] - b).powi(2)).sum();
                (s / from.len() as f64).sqrt()
            })
            .collect()
    };

    // T wave: the largest RMS deflection after the ST segment, then the tangent at its steepest descent.
    let t_smooth: Vec<Vec<f64>> = mb
        .leads
        .iter()
        .map(|l| filtfilt(l, Pass::Low, fs, 15.0_f64.min(0.4 * fs)))
        .collect();
    let t_rms = rms_curve(&t_smooth);
    let t_from = (qrs_offset + ms(60.0)).min(width - 1);
    let t_to = width - ms(20.0);
    if t_from + 2 >= t_to {
        return Err(EcgError::Analysis(
            "no room for a T wave in the median beat".into(),
        ));
    }
    let t_peak = argmax(&t_rms, t_from, t_to);
    let t_end = tangent_end(&t_rms, t_peak, t_to, fs);

    // P wave: the largest RMS deflection in the 300 ms before the QRS onset, and the tangent to its rise.
    let p_to = qrs_onset.saturating_sub(ms(30.0));
    let p_from = qrs_onset.saturating_sub(ms(300.0));
    let (p_onset, p_peak) = if p_to > p_from + ms(40.0) {
        let p_rms = rms_curve(&t_smooth);
        let p_peak = argmax(&p_rms, p_from, p_to);
        let amp = p_rms[p_peak];
        // A P wave under 30 µV RMS is indistinguishable from baseline noise.
        if amp >= 0.03 && p_peak > p_from {
            (tangent_start(&p_rms, p_from, p_peak, fs), Some(p_peak))
        } else {
            (None, None)
        }
    } else {
        (None, None)
    };
    Ok(Fiducials {
        p_onset,
        p_peak,
        qrs_onset,
        r,
        qrs_offset,
        t_peak,
        t_end,
    })
}

/// Tangent method for a wave's end: the line through the point of steepest descent after the peak, with
/// that slope, meets the curve's minimum level after the peak.
fn tangent_end(curve: &[f64], peak: usize, limit: usize, fs: f64) -> usize {
    let d = derivative(curve, fs);
    let mut steepest = peak;
    for i in peak..limit {
        if d[i] < d[steepest] {
            steepest = i;
        }
    }
    let base = curve[peak..limit]
        .iter()
        .copied()
        .fold(f64::INFINITY, f64::min);
    let slope = d[steepest] / fs; // per sample
    if slope >= 0.0 {
        return limit.saturating_sub(1);
    }
    let t = steepest as f64 + (base - curve[steepest]) / slope;
    (t.round().max(peak as f64) as usize).min(limit.saturating_sub(1))
}

/// Tangent method for a wave's start: the line through the point of steepest rise before the peak meets the
/// curve's minimum level before the peak; `None` when the curve does not rise.
fn tangent_start(curve: &[f64], from: usize, peak: usize, fs: f64) -> Option<usize> {
    let d = derivative(curve, fs);
    let mut steepest = peak;
    for i in from..peak {
        if d[i] > d[steepest] {
            steepest = i;
        }
    }
    let base = curve[from..=peak]
        .iter()
        .copied()
        .fold(f64::INFINITY, f64::min);
    let slope = d[steepest] / fs;
    if slope <= 0.0 {
        return None;
    }
    let t = steepest as f64 - (curve[steepest] - base) / slope;
    Some((t.round().max(from as f64) as usize).min(peak))
}
