//! Trend charts of a patient's vital signs as inline SVG, drawn on the server (no script): one small panel per
//! numeric parameter, time on the x axis, with the NEWS2 score-0 band shaded.

use monitoring::model::Reading;
use monitoring::store::ObservationRecord;
use std::fmt::Write as _;

/// One panel: the parameter, its values over time and the band where it scores 0.
struct Series {
    kind: &'static str,
    label: String,
    unit: &'static str,
    band: (f64, f64),
    points: Vec<(i64, f64)>,
    /// Second line (diastolic).
    points2: Vec<(i64, f64)>,
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The SVG of the observations (any order). `label` translates a reading kind. Empty when there is nothing to draw.
pub fn trend_svg(obs: &[ObservationRecord], label: impl Fn(&str) -> String) -> String {
    let kinds: [(&str, (f64, f64)); 5] = [
        ("respiratory_rate", (12.0, 20.0)),
        ("spo2", (96.0, 100.0)),
        ("blood_pressure", (111.0, 219.0)),
        ("heart_rate", (51.0, 90.0)),
        ("temperature", (36.1, 38.0)),
    ];
    let mut series: Vec<Series> = kinds
        .iter()
        .map(|(k, band)| Series {
            kind: k,
            label: label(k),
            unit: "",
            band: *band,
            points: Vec::new(),
            points2: Vec::new(),
        })
        .collect();
    for o in obs {
        let t = o.effective.timestamp_millis();
        let kind = o.reading.kind();
        let Some(s) = series.iter_mut().find(|s| s.kind == kind.as_str()) else {
            continue;
        };
        s.unit = kind.ucum();
        match o.reading {
            Reading::BloodPressure {
                systolic,
                diastolic,
            } => {
                s.points.push((t, systolic));
                s.points2.push((t, diastolic));
            }
            _ => {
                if let Some(v) = o.reading.value() {
                    s.points.push((t, v));
                }
            }
        }
    }
    series.retain(|s| !s.points.is_empty());
    if series.is_empty() {
        return String::new();
    }
    let t0 = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .min()
        .unwrap_or(0);
    let t1 = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .max()
        .unwrap_or(0)
        .max(t0 + 60_000);
    let (w, ph, left, right) = (640.0_f64, 90.0_f64, 110.0_f64, 10.0_f64);
    let h = ph * series.len() as f64 + 24.0;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="100%" role="img" class="trend" font-size="11" font-family="system-ui,sans-serif">"#
    );
    let x = |t: i64| left + (w - left - right) * ((t - t0) as f64 / (t1 - t0) as f64);
    for (i, se) in series.iter_mut().enumerate() {
        se.points.sort_by_key(|p| p.0);
        se.points2.sort_by_key(|p| p.0);
        let top = 8.0 + ph * i as f64;
        let inner = ph - 20.0;
        let all = se.points.iter().chain(se.points2.iter()).map(|p| p.1);
        let (mut lo, mut hi) = all.fold((se.band.0, se.band.1), |(a, b), v| (a.min(v), b.max(v)));
        let pad = ((hi - lo) * 0.1).max(1.0);
        lo -= pad;
        hi += pad;
        let y = |v: f64| top + inner * (1.0 - (v - lo) / (hi - lo));
        let _ = write!(
            s,
            r##"<rect x="{left}" y="{:.1}" width="{:.1}" height="{:.1}" fill="#e6f4ea"/>"##,
            y(se.band.1),
            w - left - right,
            (y(se.band.0) - y(se.band.1)).max(0.0)
        );
        let _ = write!(
            s,
            r##"<rect x="{left}" y="{top:.1}" width="{:.1}" height="{inner:.1}" fill="none" stroke="#d5dde4"/>"##,
            w - left - right
        );
        let _ = write!(
            s,
            r##"<text x="4" y="{:.1}" font-weight="600">{}</text><text x="4" y="{:.1}" fill="#5b6875">{}</text>"##,
            top + 12.0,
            escape(&se.label),
            top + 26.0,
            escape(se.unit)
        );
        let _ = write!(
            s,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="end" fill="#5b6875">{hi:.0}</text><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#5b6875">{lo:.0}</text>"##,
            left - 4.0,
            top + 10.0,
            left - 4.0,
            top + inner
        );
        for (pts, colour) in [(&se.points, "#0b6e74"), (&se.points2, "#a8460b")] {
            if pts.is_empty() {
                continue;
            }
            let line: Vec<String> = pts
                .iter()
                .map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v)))
                .collect();
            let _ = write!(
                s,
                r#"<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{}"/>"#,
                line.join(" ")
            );
            if let Some((t, v)) = pts.last() {
                let _ = write!(
                    s,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="{colour}"><title>{}</title></circle>"#,
                    x(*t),
                    y(*v),
                    super::value_text(&Reading::HeartRate(*v))
                );
            }
        }
    }
    let fmt = |t: i64| {
        monitoring::store::from_ms(t)
            .format("%m-%d %H:%M")
            .to_string()
    };
    let _ = write!(
        s,
        r##"<text x="{left}" y="{:.1}" fill="#5b6875">{}</text><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#5b6875">{} UTC</text></svg>"##,
        h - 6.0,
        fmt(t0),
        w - right,
        h - 6.0,
        fmt(t1)
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, Utc};

    fn obs(id: i64, minutes: i64, r: Reading) -> ObservationRecord {
        ObservationRecord {
            id,
            device_id: "d".into(),
            patient: "p".into(),
            reading: r,
            effective: Utc::now() + Duration::minutes(minutes),
            received: Utc::now(),
            resource: "{}".into(),
        }
    }

    #[test]
    fn draws_one_panel_per_parameter_with_points_in_time_order() {
        let svg = trend_svg(
            &[
                obs(1, 10, Reading::HeartRate(120.0)),
                obs(2, 0, Reading::HeartRate(70.0)),
                obs(
                    3,
                    5,
                    Reading::BloodPressure {
                        systolic: 120.0,
                        diastolic: 80.0,
                    },
                ),
                obs(
                    4,
                    5,
                    Reading::Consciousness(monitoring::news2::Acvpu::Alert),
                ),
            ],
            |k| format!("<{k}>"),
        );
        assert!(svg.starts_with("<svg"));
        assert_eq!(svg.matches("<polyline").count(), 3, "{svg}"); // pulse, systolic, diastolic
        assert!(svg.contains("&lt;heart_rate&gt;"), "labels are escaped");
        assert!(!svg.contains("consciousness"));
        // The pulse panel is drawn last; its line goes left to right: 70 (early) lower than 120 (late).
        let line = svg.split("<polyline").last().unwrap();
        let points: Vec<(f64, f64)> = line
            .split("points=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .split(' ')
            .map(|p| {
                let (x, y) = p.split_once(',').unwrap();
                (x.parse().unwrap(), y.parse().unwrap())
            })
            .collect();
        assert_eq!(points.len(), 2);
        assert!(points[0].0 < points[1].0, "{points:?}");
        assert!(
            points[0].1 > points[1].1,
            "SVG y grows downwards: {points:?}"
        );
        assert!(trend_svg(&[], |k| k.to_owned()).is_empty());
    }
}
