//! Self-contained SVG charts (no scripts, fonts or external assets) for the node's dashboards: a forecast fan
//! chart and an R_t plot.
//!
//! Written by hand: the two chart types need a few dozen SVG elements, and a plotting crate (`plotters`) would
//! bring font handling and a large dependency tree into a library that otherwise does numerics only.

use crate::ensemble::Forecast;
use crate::rt::RtWindow;
use std::fmt::Write;

const W: f64 = 720.0;
const H: f64 = 360.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 32.0;
const BOTTOM: f64 = 40.0;

/// Escapes text for inclusion in SVG/XML.
pub fn escape(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '&' => "&amp;".into(),
            '<' => "&lt;".into(),
            '>' => "&gt;".into(),
            '"' => "&quot;".into(),
            '\'' => "&#39;".into(),
            c => c.to_string(),
        })
        .collect()
}

fn nice_step(range: f64) -> f64 {
    if !(range.is_finite() && range > 0.0) {
        return 1.0;
    }
    let raw = range / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    mag * if f < 1.5 {
        1.0
    } else if f < 3.5 {
        2.0
    } else if f < 7.5 {
        5.0
    } else {
        10.0
    }
}

struct Frame {
    x0: f64,
    x1: f64,
    y0: f64,
    y1: f64,
}

impl Frame {
    fn x(&self, v: f64) -> f64 {
        LEFT + (v - self.x0) / (self.x1 - self.x0).max(1e-12) * (W - LEFT - RIGHT)
    }
    fn y(&self, v: f64) -> f64 {
        H - BOTTOM - (v - self.y0) / (self.y1 - self.y0).max(1e-12) * (H - TOP - BOTTOM)
    }
}

fn begin(svg: &mut String, title: &str, frame: &Frame, x_label: &str, y_label: &str) {
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="{t}" font-family="sans-serif" font-size="11">"#,
        t = escape(title)
    );
    let _ = write!(
        svg,
        r#"<title>{}</title><rect width="{W}" height="{H}" fill="white"/>"#,
        escape(title)
    );
    let _ = write!(
        svg,
        r#"<text x="{}" y="20" font-size="14" font-weight="bold">{}</text>"#,
        LEFT,
        escape(title)
    );
    // Axes with ticks.
    let (bx, by) = (frame.y(frame.y0), frame.x(frame.x0));
    let _ = write!(
        svg,
        r##"<g stroke="#333" stroke-width="1"><line x1="{by:.1}" y1="{bx:.1}" x2="{:.1}" y2="{bx:.1}"/><line x1="{by:.1}" y1="{bx:.1}" x2="{by:.1}" y2="{TOP:.1}"/></g>"##,
        W - RIGHT
    );
    let xs = nice_step(frame.x1 - frame.x0);
    let mut v = (frame.x0 / xs).ceil() * xs;
    while v <= frame.x1 + 1e-9 {
        let x = frame.x(v);
        let _ = write!(
            svg,
            r##"<line x1="{x:.1}" y1="{bx:.1}" x2="{x:.1}" y2="{:.1}" stroke="#333"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            bx + 4.0,
            bx + 16.0,
            fmt_num(v)
        );
        v += xs;
    }
    let ys = nice_step(frame.y1 - frame.y0);
    let mut v = (frame.y0 / ys).ceil() * ys;
    while v <= frame.y1 + 1e-9 {
        let y = frame.y(v);
        let _ = write!(
            svg,
            r##"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT,
            W - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            fmt_num(v)
        );
        v += ys;
    }
    let _ = write!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text><text transform="translate(14 {:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
        (LEFT + W - RIGHT) / 2.0,
        H - 6.0,
        escape(x_label),
        (TOP + H - BOTTOM) / 2.0,
        escape(y_label)
    );
}

fn fmt_num(v: f64) -> String {
    if v.abs() >= 1e4 {
        format!("{:.0e}", v)
    } else if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else {
        format!("{v:.2}")
    }
}

fn band(svg: &mut String, f: &Frame, xs: &[f64], lo: &[f64], hi: &[f64], fill: &str, label: &str) {
    let mut pts = String::new();
    for (x, y) in xs.iter().zip(hi) {
        let _ = write!(pts, "{:.1},{:.1} ", f.x(*x), f.y(*y));
    }
    for (x, y) in xs.iter().zip(lo).rev() {
        let _ = write!(pts, "{:.1},{:.1} ", f.x(*x), f.y(*y));
    }
    let _ = write!(
        svg,
        r#"<polygon points="{}" fill="{fill}" stroke="none"><title>{}</title></polygon>"#,
        pts.trim_end(),
        escape(label)
    );
}

fn line(svg: &mut String, f: &Frame, xs: &[f64], ys: &[f64], stroke: &str, label: &str) {
    let mut pts = String::new();
    for (x, y) in xs.iter().zip(ys) {
        let _ = write!(pts, "{:.1},{:.1} ", f.x(*x), f.y(*y));
    }
    let _ = write!(
        svg,
        r#"<polyline points="{}" fill="none" stroke="{stroke}" stroke-width="2"><title>{}</title></polyline>"#,
        pts.trim_end(),
        escape(label)
    );
}

/// A fan chart of an ensemble forecast: 95 % and 50 % bands, the median, the observations, and a marker where
/// the data end.
pub fn fan_chart(fc: &Forecast, title: &str) -> String {
    let xs: Vec<f64> = fc.days.iter().map(|d| d.day as f64).collect();
    let top = fc
        .days
        .iter()
        .map(|d| d.hi95.max(d.observed.unwrap_or(0.0)))
        .fold(1.0, f64::max);
    let frame = Frame {
        x0: 0.0,
        x1: xs.last().copied().unwrap_or(1.0),
        y0: 0.0,
        y1: top * 1.05,
    };
    let mut svg = String::new();
    begin(&mut svg, title, &frame, "day", "reported cases per day");
    let col =
        |g: fn(&crate::ensemble::ForecastDay) -> f64| fc.days.iter().map(g).collect::<Vec<f64>>();
    band(
        &mut svg,
        &frame,
        &xs,
        &col(|d| d.lo95),
        &col(|d| d.hi95),
        "#c6dbef",
        "95% interval",
    );
    band(
        &mut svg,
        &frame,
        &xs,
        &col(|d| d.lo50),
        &col(|d| d.hi50),
        "#6baed6",
        "50% interval",
    );
    line(
        &mut svg,
        &frame,
        &xs,
        &col(|d| d.median),
        "#08519c",
        "median",
    );
    for d in &fc.days {
        if let Some(o) = d.observed {
            let _ = write!(
                svg,
                r##"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="#222"><title>day {}: {}</title></circle>"##,
                frame.x(d.day as f64),
                frame.y(o),
                d.day,
                o
            );
        }
    }
    let xd = frame.x(fc.data_days as f64);
    let _ = write!(
        svg,
        r##"<line x1="{xd:.1}" y1="{TOP}" x2="{xd:.1}" y2="{:.1}" stroke="#999" stroke-dasharray="4 3"/><text x="{:.1}" y="{:.1}" fill="#666">forecast</text></svg>"##,
        H - BOTTOM,
        xd + 4.0,
        TOP + 12.0
    );
    svg
}

/// An R_t plot: posterior mean and 95 % credible band per window (plotted at the window's last day), with R = 1.
/// Uses the first and last of the window's quantiles as the band.
pub fn rt_chart(windows: &[RtWindow], title: &str) -> String {
    let xs: Vec<f64> = windows.iter().map(|w| w.t_end as f64).collect();
    let lo: Vec<f64> = windows
        .iter()
        .map(|w| w.quantiles.first().copied().unwrap_or(w.mean))
        .collect();
    let hi: Vec<f64> = windows
        .iter()
        .map(|w| w.quantiles.last().copied().unwrap_or(w.mean))
        .collect();
    let mean: Vec<f64> = windows.iter().map(|w| w.mean).collect();
    let top = hi.iter().copied().fold(1.5, f64::max);
    let frame = Frame {
        x0: xs.first().copied().unwrap_or(0.0) - 1.0,
        x1: xs.last().copied().unwrap_or(1.0) + 1.0,
        y0: 0.0,
        y1: top * 1.05,
    };
    let mut svg = String::new();
    begin(&mut svg, title, &frame, "day (end of window)", "R_t");
    band(
        &mut svg,
        &frame,
        &xs,
        &lo,
        &hi,
        "#fcbba1",
        "95% credible interval",
    );
    line(&mut svg, &frame, &xs, &mean, "#a50f15", "posterior mean");
    let y1 = frame.y(1.0);
    let _ = write!(
        svg,
        r##"<line x1="{LEFT}" y1="{y1:.1}" x2="{:.1}" y2="{y1:.1}" stroke="#333" stroke-dasharray="5 4"><title>R = 1</title></line></svg>"##,
        W - RIGHT
    );
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ensemble::ForecastDay;

    #[test]
    fn charts_are_well_formed_and_self_contained() {
        let fc = Forecast {
            days: (1..=10)
                .map(|d| ForecastDay {
                    day: d,
                    observed: (d <= 6).then_some(d as f64),
                    mean: d as f64,
                    median: d as f64,
                    lo50: d as f64 - 1.0,
                    hi50: d as f64 + 1.0,
                    lo95: 0.0,
                    hi95: d as f64 + 3.0,
                })
                .collect(),
            data_days: 6,
            redrawn: 0,
            members: 0,
            samples: Vec::new(),
        };
        let s = fan_chart(&fc, "Influenza <A> & \"B\"");
        assert!(s.starts_with("<svg") && s.ends_with("</svg>"));
        assert!(s.contains("Influenza &lt;A&gt; &amp; &quot;B&quot;"));
        assert!(!s.contains("href") && !s.contains("<script"));
        assert_eq!(s.matches("<circle").count(), 6);
        assert_eq!(s.matches("<polygon").count(), 2);
        let rt = rt_chart(
            &[RtWindow {
                t_start: 2,
                t_end: 8,
                shape: 1.0,
                scale: 1.0,
                mean: 1.7,
                sd: 0.4,
                quantiles: vec![1.0, 2.6],
            }],
            "R_t",
        );
        assert!(rt.contains("R = 1") && rt.ends_with("</svg>"));
    }
}
