//! Server-side SVG for the surveillance dashboards: a weekly time series (observed counts as bars, the
//! detection method's upper bound as a line, alarms as red markers) and a schematic map of the regions coloured
//! by risk. The forecast fan chart is `forecast::svg::fan_chart`.
//!
//! Written by hand like `forecast::svg` (whose helpers are private to that crate): a few dozen elements, no
//! scripts, fonts or external assets, so the node's CSP holds. Every text passes through `forecast::svg::escape`.

use super::SeriesWeek;
use forecast::svg::escape;
use std::fmt::Write;

const W: f64 = 760.0;
const H: f64 = 300.0;
const LEFT: f64 = 52.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 34.0;
const BOTTOM: f64 = 44.0;

fn nice_max(v: f64) -> (f64, f64) {
    let v = v.max(1.0);
    let raw = v / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let step = mag
        * if f <= 1.0 {
            1.0
        } else if f <= 2.0 {
            2.0
        } else if f <= 5.0 {
            5.0
        } else {
            10.0
        };
    ((v / step).ceil() * step, step)
}

/// Labels of the chart, translated by the caller.
pub struct SeriesLabels<'a> {
    pub title: &'a str,
    pub observed: &'a str,
    pub upperbound: &'a str,
    pub alarm: &'a str,
    pub week: &'a str,
}

/// The weekly series with bounds and alarms (the last `max_weeks` weeks).
pub fn series_chart(rows: &[SeriesWeek], labels: &SeriesLabels<'_>, max_weeks: usize) -> String {
    let rows = &rows[rows.len().saturating_sub(max_weeks)..];
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="100%" role="img" aria-label="{t}" font-family="sans-serif" font-size="11"><title>{t}</title><rect width="{W}" height="{H}" fill="white"/><text x="{LEFT}" y="20" font-size="14" font-weight="bold">{t}</text>"#,
        t = escape(labels.title)
    );
    let n = rows.len().max(1) as f64;
    let ymax_data = rows
        .iter()
        .map(|r| (r.count as f64).max(r.upperbound.unwrap_or(0.0)))
        .fold(0.0, f64::max);
    let (ymax, step) = nice_max(ymax_data);
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let x = |i: f64| LEFT + (i + 0.5) / n * pw;
    let y = |v: f64| TOP + ph - v / ymax * ph;
    // Grid and y axis.
    let mut v = 0.0;
    while v <= ymax + 1e-9 {
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" y1="{yy:.1}" x2="{x2:.1}" y2="{yy:.1}" stroke="#e3e8ec"/><text x="{tx:.1}" y="{ty:.1}" text-anchor="end">{v}</text>"##,
            yy = y(v),
            x2 = W - RIGHT,
            tx = LEFT - 6.0,
            ty = y(v) + 4.0,
        );
        v += step;
    }
    // Bars.
    let bw = (pw / n * 0.8).max(1.0);
    for (i, r) in rows.iter().enumerate() {
        let top = y(r.count as f64);
        let _ = write!(
            svg,
            r##"<rect x="{:.1}" y="{top:.1}" width="{bw:.1}" height="{:.1}" fill="{}"><title>{}-W{:02}: {}</title></rect>"##,
            x(i as f64) - bw / 2.0,
            (TOP + ph - top).max(0.0),
            if r.alarm { "#e07a5f" } else { "#8fb8c9" },
            r.iso_year,
            r.iso_week,
            r.count
        );
    }
    // Upper bound, in pieces where it is defined.
    let mut path = String::new();
    let mut pen_down = false;
    for (i, r) in rows.iter().enumerate() {
        match r.upperbound {
            Some(u) if u.is_finite() => {
                let _ = write!(
                    path,
                    "{}{:.1},{:.1} ",
                    if pen_down { "L" } else { "M" },
                    x(i as f64),
                    y(u.min(ymax))
                );
                pen_down = true;
            }
            _ => pen_down = false,
        }
    }
    if !path.is_empty() {
        let _ = write!(
            svg,
            r##"<path d="{}" fill="none" stroke="#1d4e89" stroke-width="2" stroke-dasharray="5 3"><title>{}</title></path>"##,
            path.trim_end(),
            escape(labels.upperbound)
        );
    }
    // Alarms.
    for (i, r) in rows.iter().enumerate().filter(|(_, r)| r.alarm) {
        let _ = write!(
            svg,
            r##"<path d="M{:.1},{:.1} l6,-10 l-12,0 z" fill="#b3001b" class="alarm"><title>{}: {}-W{:02}</title></path>"##,
            x(i as f64),
            y(r.count as f64) - 2.0,
            escape(labels.alarm),
            r.iso_year,
            r.iso_week
        );
    }
    // X labels: about eight.
    let every = (rows.len() / 8).max(1);
    for (i, r) in rows.iter().enumerate().filter(|(i, _)| i % every == 0) {
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}-W{:02}</text>"#,
            x(i as f64),
            TOP + ph + 16.0,
            r.iso_year,
            r.iso_week
        );
    }
    // Legend.
    let ly = H - 8.0;
    let _ = write!(
        svg,
        r##"<rect x="{LEFT}" y="{:.1}" width="12" height="10" fill="#8fb8c9"/><text x="{:.1}" y="{ly:.1}">{}</text><line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#1d4e89" stroke-width="2" stroke-dasharray="5 3"/><text x="{:.1}" y="{ly:.1}">{}</text><path d="M{:.1},{:.1} l6,-10 l-12,0 z" fill="#b3001b"/><text x="{:.1}" y="{ly:.1}">{}</text><text x="{:.1}" y="{ly:.1}" text-anchor="end">{}</text>"##,
        ly - 9.0,
        LEFT + 16.0,
        escape(labels.observed),
        LEFT + 150.0,
        ly - 4.0,
        LEFT + 175.0,
        ly - 4.0,
        LEFT + 180.0,
        escape(labels.upperbound),
        LEFT + 340.0,
        ly,
        LEFT + 350.0,
        escape(labels.alarm),
        W - RIGHT,
        escape(labels.week),
    );
    svg.push_str("</svg>");
    svg
}

/// One region on the map.
pub struct MapRegion {
    pub code: String,
    pub name: String,
    /// `alarm`, `high`, `elevated`, `low`, `none`.
    pub level: &'static str,
    /// Short text under the name (e.g. the risk figure).
    pub note: String,
    /// Another node's region (drawn dashed, in its own column).
    pub foreign: bool,
    pub href: Option<String>,
}

pub fn level_colour(level: &str) -> &'static str {
    match level {
        "alarm" => "#d62828",
        "high" => "#f77f00",
        "elevated" => "#fcbf49",
        "low" => "#8ac926",
        _ => "#dde3e8",
    }
}

/// A schematic map: this node's regions in a grid, the neighbouring countries' border regions in a column to
/// the side, lines between neighbours; each box coloured by its risk level. Labels are translated by the caller
/// (`legend`: level → text).
pub fn region_map(
    title: &str,
    regions: &[MapRegion],
    links: &[(String, String)],
    legend: &[(&'static str, String)],
) -> String {
    let local: Vec<&MapRegion> = regions.iter().filter(|r| !r.foreign).collect();
    let foreign: Vec<&MapRegion> = regions.iter().filter(|r| r.foreign).collect();
    let cols = 3usize;
    let (bw, bh, gap) = (210.0, 62.0, 18.0);
    let rows = local
        .len()
        .div_ceil(cols)
        .max(foreign.len().div_ceil(1))
        .max(1);
    let width = 40.0 + cols as f64 * (bw + gap) + 80.0 + bw + 20.0;
    let height = 60.0 + rows as f64 * (bh + gap) + 40.0;
    let mut pos = std::collections::BTreeMap::new();
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" role="img" aria-label="{t}" font-family="sans-serif" font-size="12"><title>{t}</title><rect width="{width}" height="{height}" fill="white"/><text x="20" y="24" font-size="14" font-weight="bold">{t}</text>"#,
        t = escape(title)
    );
    for (i, r) in local.iter().enumerate() {
        let x = 20.0 + (i % cols) as f64 * (bw + gap);
        let y = 44.0 + (i / cols) as f64 * (bh + gap);
        pos.insert(r.code.clone(), (x, y));
    }
    let fx = 20.0 + cols as f64 * (bw + gap) + 80.0;
    for (i, r) in foreign.iter().enumerate() {
        pos.insert(r.code.clone(), (fx, 44.0 + i as f64 * (bh + gap)));
    }
    for (a, b) in links {
        if let (Some(&(x1, y1)), Some(&(x2, y2))) = (pos.get(a), pos.get(b)) {
            let _ = write!(
                svg,
                r##"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#7a8792" stroke-width="1.5" stroke-dasharray="4 3"/>"##,
                x1 + bw,
                y1 + bh / 2.0,
                x2,
                y2 + bh / 2.0
            );
        }
    }
    for r in regions {
        let Some(&(x, y)) = pos.get(&r.code) else {
            continue;
        };
        let open = r
            .href
            .as_ref()
            .map(|h| format!(r#"<a href="{}">"#, escape(h)));
        if let Some(o) = &open {
            svg.push_str(o);
        }
        let _ = write!(
            svg,
            r##"<rect x="{x:.1}" y="{y:.1}" width="{bw}" height="{bh}" rx="8" fill="{}" stroke="#33414d" stroke-width="1.2"{} data-region="{}" data-level="{}"><title>{}: {}</title></rect><text x="{:.1}" y="{:.1}" font-weight="bold">{}</text><text x="{:.1}" y="{:.1}">{}</text><text x="{:.1}" y="{:.1}" fill="#33414d">{}</text>"##,
            level_colour(r.level),
            if r.foreign {
                r#" stroke-dasharray="6 3""#
            } else {
                ""
            },
            escape(&r.code),
            r.level,
            escape(&r.name),
            escape(&r.note),
            x + 8.0,
            y + 18.0,
            escape(&r.name.chars().take(28).collect::<String>()),
            x + 8.0,
            y + 34.0,
            escape(&r.code),
            x + 8.0,
            y + 52.0,
            escape(&r.note.chars().take(34).collect::<String>()),
        );
        if open.is_some() {
            svg.push_str("</a>");
        }
    }
    let ly = height - 14.0;
    let mut lx = 20.0;
    for (level, text) in legend {
        let _ = write!(
            svg,
            r##"<rect x="{lx:.1}" y="{:.1}" width="14" height="12" fill="{}" stroke="#33414d"/><text x="{:.1}" y="{ly:.1}">{}</text>"##,
            ly - 10.0,
            level_colour(level),
            lx + 18.0,
            escape(text)
        );
        lx += 30.0 + text.chars().count() as f64 * 7.0;
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn week(i: u32, count: i64, ub: Option<f64>, alarm: bool) -> SeriesWeek {
        SeriesWeek {
            iso_year: 2026,
            iso_week: i,
            week_start: NaiveDate::from_isoywd_opt(2026, i, chrono::Weekday::Mon)
                .unwrap_or_default(),
            count,
            upperbound: ub,
            alarm,
            method: "ears-c2".into(),
        }
    }

    #[test]
    fn the_series_chart_marks_alarms_and_escapes_labels() {
        let rows = vec![
            week(1, 2, None, false),
            week(2, 3, Some(5.0), false),
            week(3, 12, Some(6.0), true),
        ];
        let labels = SeriesLabels {
            title: "A09 <Almaty>",
            observed: "observed",
            upperbound: "upper bound",
            alarm: "alarm",
            week: "week",
        };
        let svg = series_chart(&rows, &labels, 104);
        assert_eq!(svg.matches(r#"class="alarm""#).count(), 1);
        assert!(svg.contains("A09 &lt;Almaty&gt;"));
        assert!(!svg.contains("<Almaty>"));
        assert_eq!(svg.matches("<rect").count(), 1 + 3 + 1);
    }

    #[test]
    fn the_map_colours_each_region_by_level() {
        let r = |code: &str, level, foreign| MapRegion {
            code: code.into(),
            name: code.into(),
            level,
            note: String::new(),
            foreign,
            href: None,
        };
        let svg = region_map(
            "map",
            &[r("KZ-ALM", "alarm", false), r("CN-XJ-KS", "low", true)],
            &[("KZ-ALM".into(), "CN-XJ-KS".into())],
            &[("alarm", "alarm".into())],
        );
        assert!(svg.contains(r#"data-region="KZ-ALM" data-level="alarm""#));
        assert!(svg.contains(level_colour("alarm")));
        assert!(svg.contains("stroke-dasharray=\"6 3\""));
        assert_eq!(svg.matches("<line").count(), 1);
    }
}
