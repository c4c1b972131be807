//! A printable SVG of an ECG on standard paper: 25 mm/s, 10 mm/mV, 1 mm and 5 mm grid, a 1 mV calibration
//! pulse on every row, the detected beats ticked and the measured wave boundaries marked on the rhythm
//! strip. Twelve-lead recordings get the conventional 3 × 4 layout (2.5 s per lead) with a 10 s lead II
//! rhythm strip; other recordings get one full-width strip per lead. The output uses millimetres as user
//! units, so it prints at true scale.

use std::fmt::Write;

use crate::dsp::{fill_gaps, filtfilt, Pass};
use crate::error::Result;
use crate::measure::Measurements;
use crate::signal::Ecg;

/// Paper speed in millimetres per second.
pub const MM_PER_S: f64 = 25.0;
/// Gain in millimetres per millivolt.
pub const MM_PER_MV: f64 = 10.0;

/// What part of the recording to draw.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderOptions {
    /// First second drawn.
    pub start_s: f64,
    /// Seconds drawn per full-width strip (10 s is the standard page).
    pub duration_s: f64,
    /// An optional title line (never put patient identifiers here unless the page is meant to show them).
    pub title: Option<String>,
}

impl Default for RenderOptions {
    fn default() -> Self {
        Self {
            start_s: 0.0,
            duration_s: 10.0,
            title: None,
        }
    }
}

const MARGIN: f64 = 10.0;
const HEADER: f64 = 18.0;
const ROW: f64 = 35.0;
const CAL: f64 = 5.0; // the calibration pulse is 0.2 s wide at 25 mm/s

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Detects beats, measures, and renders the first ten seconds.
pub fn render_recording(ecg: &Ecg) -> Result<String> {
    let beats = crate::qrs::detect_ecg(ecg)?;
    // A recording too short or too irregular to measure is still drawn, with its beats.
    let m = crate::measure::measure_with_beats(ecg, &beats).ok();
    Ok(render_svg(
        ecg,
        &beats,
        m.as_ref(),
        &RenderOptions::default(),
    ))
}

/// One trace to draw: a lead, the time span it covers, and where it sits on the page.
struct Trace<'a> {
    lead: &'a [f64],
    name: &'a str,
    from: usize,
    to: usize,
    x: f64,
    y: f64,
}

/// Renders the SVG (a pure function of its inputs).
pub fn render_svg(
    ecg: &Ecg,
    beats: &[usize],
    measurements: Option<&Measurements>,
    opts: &RenderOptions,
) -> String {
    let fs = ecg.fs;
    let n = ecg.len();
    let start = ((opts.start_s.max(0.0) * fs) as usize).min(n);
    let span = ((opts.duration_s.max(1.0) * fs) as usize).max(1);
    let end = (start + span).min(n);
    let strip_w = opts.duration_s.max(1.0) * MM_PER_S;
    let width = 2.0 * MARGIN + CAL + 2.0 + strip_w;

    // Baseline wander is removed for display only (0.5 Hz zero-phase high-pass); the analysis has its own.
    let clean: Vec<Vec<f64>> = ecg
        .leads
        .iter()
        .map(|l| {
            let (filled, missing) = fill_gaps(&l.samples);
            let mut y = filtfilt(&filled, Pass::High, fs, 0.5);
            for (v, m) in y.iter_mut().zip(missing) {
                if m {
                    *v = f64::NAN;
                }
            }
            y
        })
        .collect();
    let x0 = MARGIN + CAL + 2.0;
    let mut traces: Vec<Trace> = Vec::new();
    let mut rows = 0usize;
    let twelve = ecg.is_twelve_lead();
    let mut rhythm: Option<(usize, f64)> = None;
    if twelve {
        let layout = [
            ["I", "aVR", "V1", "V4"],
            ["II", "aVL", "V2", "V5"],
            ["III", "aVF", "V3", "V6"],
        ];
        let quarter = span / 4;
        for (r, names) in layout.iter().enumerate() {
            let y = MARGIN + HEADER + ROW * (r as f64 + 0.5);
            for (c, name) in names.iter().enumerate() {
                if let Some(i) = ecg.leads.iter().position(|l| l.name == *name) {
                    let from = (start + c * quarter).min(n);
                    let to = (from + quarter).min(n);
                    traces.push(Trace {
                        lead: &clean[i],
                        name: &ecg.leads[i].name,
                        from,
                        to,
                        x: x0 + c as f64 * strip_w / 4.0,
                        y,
                    });
                }
            }
        }
        rows = 4;
        if let Some(i) = ecg.leads.iter().position(|l| l.name == "II") {
            let y = MARGIN + HEADER + ROW * 3.5;
            rhythm = Some((i, y));
            traces.push(Trace {
                lead: &clean[i],
                name: "II",
                from: start,
                to: end,
                x: x0,
                y,
            });
        }
    } else {
        for (i, l) in ecg.leads.iter().enumerate() {
            let y = MARGIN + HEADER + ROW * (i as f64 + 0.5);
            if rhythm.is_none() {
                rhythm = Some((i, y));
            }
            traces.push(Trace {
                lead: &clean[i],
                name: &l.name,
                from: start,
                to: end,
                x: x0,
                y,
            });
            rows += 1;
        }
    }
    let height = 2.0 * MARGIN + HEADER + ROW * rows as f64;

    let mut s = String::with_capacity(256 * 1024);
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}mm" height="{height}mm" viewBox="0 0 {width} {height}" font-family="Helvetica, Arial, sans-serif"><title>ECG, 25 mm/s, 10 mm/mV</title><rect width="{width}" height="{height}" fill="#ffffff"/>"##
    );
    // Grid: 1 mm minor and 5 mm major lines over the whole trace area.
    let (gx0, gy0) = (MARGIN, MARGIN + HEADER);
    let (gw, gh) = ((width - 2.0 * MARGIN).floor(), (ROW * rows as f64).floor());
    let mut minor = String::new();
    let mut major = String::new();
    for k in 0..=(gw as usize) {
        let x = gx0 + k as f64;
        let d = if k % 5 == 0 { &mut major } else { &mut minor };
        let _ = write!(d, "M{x:.1} {gy0:.1}V{:.1}", gy0 + gh);
    }
    for k in 0..=(gh as usize) {
        let y = gy0 + k as f64;
        let d = if k % 5 == 0 { &mut major } else { &mut minor };
        let _ = write!(d, "M{gx0:.1} {y:.1}H{:.1}", gx0 + gw);
    }
    let _ = write!(
        s,
        r##"<path class="grid-minor" d="{minor}" stroke="#f4c2c2" stroke-width="0.1" fill="none"/><path class="grid-major" d="{major}" stroke="#e07a7a" stroke-width="0.3" fill="none"/>"##
    );

    // Header: scale and measurements.
    let mut header = String::from("25 mm/s   10 mm/mV");
    let _ = write!(header, "   {} Hz   {} beats", fs, beats.len());
    if let Some(title) = &opts.title {
        let _ = write!(
            s,
            r#"<text x="{MARGIN}" y="{:.1}" font-size="4">{}</text>"#,
            MARGIN + 4.0,
            esc(title)
        );
    }
    let _ = write!(
        s,
        r#"<text class="scale" xml:space="preserve" x="{MARGIN}" y="{:.1}" font-size="3">{}</text>"#,
        MARGIN + 9.0,
        esc(&header)
    );
    if let Some(m) = measurements {
        let pr = m
            .pr_interval_ms
            .map_or("–".to_string(), |p| format!("{p:.0}"));
        let line = format!(
            "HR {:.0} bpm   RR {:.0} ms   PR {pr} ms   QRS {:.0} ms   QT {:.0} ms   QTc {:.0} ms (Bazett) / {:.0} ms (Fridericia)",
            m.heart_rate_bpm,
            m.rr_mean_ms,
            m.qrs_duration_ms,
            m.qt_interval_ms,
            m.qtc_bazett_ms,
            m.qtc_fridericia_ms
        );
        let _ = write!(
            s,
            r#"<text class="measurements" xml:space="preserve" x="{MARGIN}" y="{:.1}" font-size="3.2" font-weight="bold">{}</text>"#,
            MARGIN + 14.0,
            esc(&line)
        );
    }

    // Calibration pulses: 1 mV high, 0.2 s wide, at the start of every row.
    let mut row_ys: Vec<f64> = traces.iter().map(|t| t.y).collect();
    row_ys.dedup_by(|a, b| (*a - *b).abs() < 1e-9);
    for y in row_ys {
        let _ = write!(
            s,
            r##"<path class="calibration" d="M{:.2} {y:.2}h1v-{MM_PER_MV}h{:.2}v{MM_PER_MV}h1" stroke="#000" stroke-width="0.3" fill="none"/>"##,
            MARGIN,
            CAL - 2.0
        );
    }

    // Traces, decimated to the minimum and maximum of every 0.1 mm column so that peaks survive.
    let bucket = ((fs / (MM_PER_S * 10.0)).floor() as usize).max(1);
    for t in &traces {
        let mut d = String::new();
        let mut pen_up = true;
        let mut k = t.from;
        while k < t.to {
            let hi = (k + bucket).min(t.to);
            let chunk = &t.lead[k..hi];
            if chunk.iter().any(|v| !v.is_finite()) {
                pen_up = true;
                k = hi;
                continue;
            }
            let (mut imin, mut imax) = (k, k);
            for (j, v) in chunk.iter().enumerate() {
                if *v < t.lead[imin] {
                    imin = k + j;
                }
                if *v > t.lead[imax] {
                    imax = k + j;
                }
            }
            let order = if imin <= imax {
                [imin, imax]
            } else {
                [imax, imin]
            };
            for (q, &i) in order.iter().enumerate() {
                if q == 1 && i == order[0] {
                    continue;
                }
                let x = t.x + (i - t.from) as f64 / fs * MM_PER_S;
                // Extreme values (lead-off rails) are clipped at ±5 mV so that a trace never leaves the page.
                let y = t.y - t.lead[i].clamp(-5.0, 5.0) * MM_PER_MV;
                let _ = write!(d, "{}{x:.2} {y:.2}", if pen_up { "M" } else { "L" });
                pen_up = false;
            }
            k = hi;
        }
        let _ = write!(
            s,
            r##"<path class="trace" data-lead="{}" d="{d}" stroke="#000" stroke-width="0.25" fill="none" stroke-linejoin="round"/><text class="lead-label" x="{:.2}" y="{:.2}" font-size="3.5">{}</text>"##,
            esc(t.name),
            t.x + 1.0,
            t.y - ROW * 0.5 + 5.0,
            esc(t.name)
        );
    }

    // Beat ticks on every row, and wave boundaries on the rhythm strip.
    let visible: Vec<usize> = beats
        .iter()
        .copied()
        .filter(|&b| b >= start && b < end)
        .collect();
    let mut ticks = String::new();
    for t in &traces {
        for &b in visible.iter().filter(|&&b| b >= t.from && b < t.to) {
            let x = t.x + (b - t.from) as f64 / fs * MM_PER_S;
            let top = t.y - ROW * 0.5 + 0.5;
            let _ = write!(ticks, "M{x:.2} {top:.2}l-0.8 -0 0.8 2 0.8 -2z");
        }
    }
    let _ = write!(
        s,
        r##"<path class="beats" d="{ticks}" fill="#1f5fbf" stroke="none"/>"##
    );
    if let (Some(m), Some((_, ry))) = (measurements, rhythm) {
        let f = &m.fiducials;
        let rel = |p: usize| p as i64 - f.r as i64;
        let marks: [(&str, Option<i64>, &str); 4] = [
            ("P onset", f.p_onset.map(rel), "#2e9d4a"),
            ("QRS onset", Some(rel(f.qrs_onset)), "#1f5fbf"),
            ("QRS offset", Some(rel(f.qrs_offset)), "#1f5fbf"),
            ("T end", Some(rel(f.t_end)), "#8e44ad"),
        ];
        for (name, off, color) in marks {
            let Some(off) = off else { continue };
            let mut d = String::new();
            for &b in &visible {
                let p = b as i64 + off;
                if p < start as i64 || p >= end as i64 {
                    continue;
                }
                let x = x0 + (p as usize - start) as f64 / fs * MM_PER_S;
                let _ = write!(d, "M{x:.2} {:.2}V{:.2}", ry - 12.0, ry + 12.0);
            }
            let _ = write!(
                s,
                r##"<path class="fiducial" data-mark="{name}" d="{d}" stroke="{color}" stroke-width="0.25" stroke-dasharray="1 0.6" fill="none"/>"##
            );
        }
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::Lead;

    fn synthetic(names: &[&str], fs: f64, secs: f64) -> Ecg {
        let n = (fs * secs) as usize;
        let leads = names
            .iter()
            .map(|name| Lead {
                name: name.to_string(),
                samples: (0..n)
                    .map(|i| {
                        // A 1 mV spike every second.
                        let t = i as f64 / fs;
                        let d = t - t.floor() - 0.5;
                        (-(d * d) / (2.0 * 0.01f64.powi(2))).exp()
                    })
                    .collect(),
            })
            .collect();
        Ecg::new(fs, leads).unwrap()
    }

    #[test]
    fn paper_scale_and_grid_are_standard() {
        let ecg = synthetic(&["MLII", "V5"], 360.0, 12.0);
        let svg = render_svg(&ecg, &[180, 540], None, &RenderOptions::default());
        // 10 s at 25 mm/s is 250 mm of trace; two strips of 35 mm.
        let width = 2.0 * MARGIN + CAL + 2.0 + 250.0;
        assert!(
            svg.contains(&format!(r#"width="{width}mm""#)),
            "{}",
            &svg[..200]
        );
        assert!(svg.contains("25 mm/s   10 mm/mV"));
        assert_eq!(svg.matches(r#"class="trace""#).count(), 2);
        assert_eq!(svg.matches(r#"class="calibration""#).count(), 2);
        // The calibration pulse is 10 mm (1 mV) high.
        assert!(svg.contains("v-10h3.00v10"));
        // Minor lines every 1 mm, major every 5 mm.
        let major = svg.split(r#"class="grid-major" d=""#).nth(1).unwrap();
        let major = &major[..major.find('"').unwrap()];
        assert!(major.contains("M15.0 ") && major.contains("M20.0 "));
        assert!(!major.contains("M11.0 "));
        // Two beats inside the window get two ticks per row.
        let ticks = svg.split(r#"class="beats" d=""#).nth(1).unwrap();
        assert_eq!(ticks[..ticks.find('"').unwrap()].matches('z').count(), 4);
    }

    #[test]
    fn twelve_leads_use_the_standard_layout() {
        let names = crate::signal::STANDARD_LEADS;
        let ecg = synthetic(&names, 500.0, 10.0);
        let svg = render_svg(&ecg, &[], None, &RenderOptions::default());
        // 12 segments of 2.5 s and a 10 s rhythm strip.
        assert_eq!(svg.matches(r#"class="trace""#).count(), 13);
        assert_eq!(svg.matches(r#"class="calibration""#).count(), 4);
        assert!(svg.contains(r#"data-lead="V6""#));
    }

    #[test]
    fn a_1_mv_spike_is_10_mm_tall() {
        let ecg = synthetic(&["II"], 500.0, 3.0);
        let svg = render_svg(
            &ecg,
            &[],
            None,
            &RenderOptions {
                duration_s: 3.0,
                ..Default::default()
            },
        );
        let d = svg.split(r#"data-lead="II" d=""#).nth(1).unwrap();
        let d = &d[..d.find('"').unwrap()];
        let ys: Vec<f64> = d
            .split(['M', 'L'])
            .filter(|p| !p.is_empty())
            .map(|p| p.split(' ').nth(1).unwrap().parse().unwrap())
            .collect();
        let (lo, hi) = ys
            .iter()
            .fold((f64::MAX, f64::MIN), |(a, b), &y| (a.min(y), b.max(y)));
        // The high-pass for display shaves a little off the spike's baseline; it stays 10 mm within 0.5 mm.
        assert!((hi - lo - 10.0).abs() < 0.5, "{}", hi - lo);
    }

    #[test]
    fn text_is_escaped_and_gaps_lift_the_pen() {
        let mut ecg = synthetic(&["<b>&"], 250.0, 4.0);
        for v in &mut ecg.leads[0].samples[300..400] {
            *v = f64::NAN;
        }
        let svg = render_svg(&ecg, &[], None, &RenderOptions::default());
        assert!(svg.contains("&lt;b&gt;&amp;"));
        assert!(!svg.contains("<b>"));
        let d = svg
            .split(r#"class="trace" data-lead="&lt;b&gt;&amp;" d=""#)
            .nth(1)
            .unwrap();
        let d = &d[..d.find('"').unwrap()];
        assert_eq!(d.matches('M').count(), 2);
        assert!(!d.contains("NaN"));
    }
}
