//! QRS detection in the Pan–Tompkins family (Pan & Tompkins, IEEE TBME 32(3), 1985; thresholds and
//! search-back as refined by Hamilton & Tompkins, IEEE TBME 33(12), 1986), run offline over the whole
//! recording:
//!
//! 1. gaps (invalid samples) are bridged by interpolation and masked;
//! 2. a 5–15 Hz band-pass keeps the QRS energy and removes baseline wander, mains and most EMG;
//! 3. the five-point derivative is squared and integrated over a 150 ms centred window (summed over leads
//!    when several are given, which makes a lead-independent detection function for 12-lead records);
//! 4. the integrator's peaks, at least 200 ms apart (the physiological refractory period), are classified by
//!    two adaptive thresholds tracking running signal and noise peak levels; a peak within 360 ms of the
//!    previous beat whose maximal slope is under half that beat's is taken as a T wave;
//! 5. when no beat was found for 1.66 mean RR intervals, the largest peak over half the threshold in that
//!    interval is taken (search-back), so beats after a sudden amplitude drop or an ectopic pause are kept;
//! 6. each beat is placed on the R wave: the band-passed energy maximum near the integrator peak, then the
//!    largest deflection from the local mean of the signal close to it.

use std::borrow::Cow;

use crate::dsp::{bandpass_causal, fill_gaps, median, moving_average};
use crate::error::{EcgError, Result};
use crate::signal::Ecg;

/// Tunable parameters; the defaults are the published ones.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectorConfig {
    pub band_low_hz: f64,
    pub band_high_hz: f64,
    pub integration_s: f64,
    pub refractory_s: f64,
    pub t_wave_window_s: f64,
    pub search_back_factor: f64,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            band_low_hz: 5.0,
            band_high_hz: 15.0,
            integration_s: 0.150,
            refractory_s: 0.200,
            t_wave_window_s: 0.360,
            search_back_factor: 1.66,
        }
    }
}

/// Detects R peaks in one lead (millivolts, NaN for invalid samples); returns sample indices in ascending order.
pub fn detect(x: &[f64], fs: f64) -> Result<Vec<usize>> {
    detect_leads(&[x], fs, &DetectorConfig::default())
}

/// Detects beats using every lead of a recording together.
pub fn detect_ecg(ecg: &Ecg) -> Result<Vec<usize>> {
    let leads: Vec<&[f64]> = ecg.leads.iter().map(|l| l.samples.as_slice()).collect();
    detect_leads(&leads, ecg.fs, &DetectorConfig::default())
}

/// Detects beats on one or more synchronous leads.
pub fn detect_leads(leads: &[&[f64]], fs: f64, cfg: &DetectorConfig) -> Result<Vec<usize>> {
    if !(fs.is_finite() && fs >= 50.0) {
        return Err(EcgError::Analysis(format!(
            "sampling frequency {fs} Hz is too low for QRS detection (50 Hz minimum)"
        )));
    }
    let Some(first) = leads.first() else {
        return Err(EcgError::Analysis("no lead to detect on".into()));
    };
    let n = first.len();
    if leads.iter().any(|l| l.len() != n) {
        return Err(EcgError::Analysis("leads differ in length".into()));
    }
    if (n as f64) < fs {
        // Less than a second cannot hold the two beats an RR interval needs; report none rather than guess.
        return Ok(Vec::new());
    }
    let high = cfg.band_high_hz.min(0.45 * fs);
    let mut missing: Option<Vec<bool>> = None;
    let mut energy = vec![0.0; n];
    let mut band_energy = vec![0.0; n];
    let mut band = Vec::with_capacity(n);
    let mut filled_leads: Vec<Cow<[f64]>> = Vec::with_capacity(leads.len());
    let k = fs / 8.0;
    for lead in leads {
        // Gaps are bridged only when there are any, so that clean recordings are not copied.
        let filled: Cow<[f64]> = if lead.iter().all(|v| v.is_finite()) {
            Cow::Borrowed(lead)
        } else {
            let (f, m) = fill_gaps(lead);
            match missing.as_mut() {
                Some(all) => all.iter_mut().zip(&m).for_each(|(a, b)| *a |= *b),
                None => missing = Some(m),
            }
            Cow::Owned(f)
        };
        // A causal band-pass is enough here: its few milliseconds of delay are absorbed by the R-peak search
        // below, and it costs half of a zero-phase one (the detector's speed is one of its goals).
        if !bandpass_causal(&filled, fs, cfg.band_low_hz, high, &mut band) {
            return Err(EcgError::Analysis(format!(
                "band-pass {}–{high} Hz impossible at {fs} Hz",
                cfg.band_low_hz
            )));
        }
        // Five-point derivative (Pan & Tompkins 1985), squared and accumulated over leads.
        for (i, w) in band.windows(5).enumerate() {
            let d = (w[4] + 2.0 * w[3] - 2.0 * w[1] - w[0]) * k;
            energy[i + 2] += d * d;
            band_energy[i + 2] += w[2] * w[2];
        }
        filled_leads.push(filled);
    }
    let win = ((cfg.integration_s * fs).round() as usize).max(1);
    let mwi = moving_average(&energy, win);
    let refractory = (cfg.refractory_s * fs).round() as usize;
    let candidates = peaks(&mwi, refractory.max(1));
    let beats = classify(&candidates, &mwi, &energy, fs, cfg);

    let search = (0.100 * fs).round() as usize;
    let early = (0.060 * fs).round() as usize;
    let late = (0.040 * fs).round() as usize;
    let half_base = (0.250 * fs).round() as usize;
    let mut out: Vec<usize> = Vec::with_capacity(beats.len());
    let mut local_base = vec![0.0; filled_leads.len()];
    for b in beats {
        let coarse = argmax(
            &band_energy,
            b.saturating_sub(search),
            (b + search).min(n - 1),
        );
        // The R wave is the largest deflection from each lead's local mean (over ±250 ms) near the band-pass
        // maximum; the window reaches further back because the causal band-pass lags by ~10 ms.
        let (ba, bz) = (
            coarse.saturating_sub(half_base),
            (coarse + half_base).min(n),
        );
        for (base, l) in local_base.iter_mut().zip(&filled_leads) {
            *base = l[ba..bz].iter().sum::<f64>() / (bz - ba).max(1) as f64;
        }
        let (a, z) = (coarse.saturating_sub(early), (coarse + late).min(n - 1));
        let mut r = a;
        let mut best = f64::NEG_INFINITY;
        for t in a..=z {
            let e: f64 = filled_leads
                .iter()
                .zip(&local_base)
                .map(|(l, base)| (l[t] - base).powi(2))
                .sum();
            if e > best {
                best = e;
                r = t;
            }
        }
        // A beat inside a gap is an artefact of the interpolation.
        if missing.as_ref().is_some_and(|m| m[r]) {
            continue;
        }
        match out.last() {
            Some(&last) if r < last + refractory => {}
            _ => out.push(r),
        }
    }
    tracing::debug!(
        beats = out.len(),
        samples = n,
        leads = leads.len(),
        "QRS detection done"
    );
    Ok(out)
}

fn argmax(x: &[f64], a: usize, b: usize) -> usize {
    let mut best = a;
    for i in a..=b.min(x.len().saturating_sub(1)) {
        if x[i] > x[best] {
            best = i;
        }
    }
    best
}

/// Local maxima at least `min_dist` apart, keeping the larger of two close ones.
fn peaks(x: &[f64], min_dist: usize) -> Vec<usize> {
    let mut out: Vec<usize> = Vec::new();
    for i in 1..x.len().saturating_sub(1) {
        if x[i] > x[i - 1] && x[i] >= x[i + 1] {
            match out.last_mut() {
                Some(last) if i - *last < min_dist => {
                    if x[i] > x[*last] {
                        *last = i;
                    }
                }
                _ => out.push(i),
            }
        }
    }
    out
}

/// Pan–Tompkins decision rules over the integrator's peaks.
fn classify(
    cands: &[usize],
    mwi: &[f64],
    energy: &[f64],
    fs: f64,
    cfg: &DetectorConfig,
) -> Vec<usize> {
    let n = mwi.len();
    // Learning phase: signal level from the largest peaks of the first seconds, noise from their median.
    let learn = ((2.0 * fs) as usize).min(n);
    let mut window_max = Vec::new();
    let mut start = 0;
    while start < n.min((10.0 * fs) as usize) {
        let end = (start + learn).min(n);
        window_max.push(mwi[start..end].iter().copied().fold(0.0, f64::max));
        start = end;
    }
    let first_peaks: Vec<f64> = cands
        .iter()
        .take_while(|&&c| c < (10.0 * fs) as usize)
        .map(|&c| mwi[c])
        .collect();
    let mut spki = 0.5 * median(&window_max).unwrap_or(0.0);
    let mut npki = 0.5 * median(&first_peaks).unwrap_or(0.0).min(spki);
    let t_window = (cfg.t_wave_window_s * fs) as usize;
    let refractory = (cfg.refractory_s * fs) as usize;
    let half_qrs = (0.075 * fs) as usize;
    // The steepest slope near a candidate: the root of the largest squared derivative (summed over leads).
    let max_slope = |c: usize| -> f64 {
        let a = c.saturating_sub(half_qrs);
        let b = (c + half_qrs).min(n - 1);
        energy[a..=b].iter().copied().fold(0.0, f64::max).sqrt()
    };

    let mut beats: Vec<usize> = Vec::new();
    let mut beat_slope = 0.0;
    let mut rr: Vec<usize> = Vec::new();
    let mut idx = 0;
    while idx < cands.len() {
        let c = cands[idx];
        let v = mwi[c];
        let th1 = npki + 0.25 * (spki - npki);
        let th2 = 0.5 * th1;
        // Search-back over the candidates skipped since the last beat.
        if let Some(&last) = beats.last() {
            let rr_mean = if rr.is_empty() {
                fs
            } else {
                rr.iter().sum::<usize>() as f64 / rr.len() as f64
            };
            let limit = (cfg.search_back_factor * rr_mean) as usize;
            if c - last > limit {
                let best = cands[..idx]
                    .iter()
                    .rev()
                    .take_while(|&&p| p > last)
                    .filter(|&&p| p >= last + refractory && p + refractory <= c)
                    .max_by(|a, b| mwi[**a].total_cmp(&mwi[**b]))
                    .copied();
                if let Some(p) = best.filter(|&p| mwi[p] > th2) {
                    spki = 0.25 * mwi[p] + 0.75 * spki;
                    push_rr(&mut rr, p - last);
                    beats.push(p);
                    beat_slope = max_slope(p);
                    // Re-examine the current candidate against the new beat.
                    continue;
                }
            }
        }
        if v > th1 {
            let s = max_slope(c);
            let is_t_wave = match beats.last() {
                Some(&last) => c - last < t_window && s < 0.5 * beat_slope,
                None => false,
            };
            if is_t_wave {
                npki = 0.125 * v + 0.875 * npki;
            } else {
                if let Some(&last) = beats.last() {
                    push_rr(&mut rr, c - last);
                }
                spki = 0.125 * v + 0.875 * spki;
                beats.push(c);
                beat_slope = s;
            }
        } else {
            npki = 0.125 * v + 0.875 * npki;
        }
        idx += 1;
    }
    beats
}

/// Keeps the eight most recent RR intervals (Pan–Tompkins' RR AVERAGE1).
fn push_rr(rr: &mut Vec<usize>, v: usize) {
    rr.push(v);
    if rr.len() > 8 {
        rr.remove(0);
    }
}
