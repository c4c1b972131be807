//! HL7 v3 annotated ECG (aECG, the FDA's submission format) read with roxmltree: the rhythm `series`, its
//! `sequenceSet` with a time sequence (`GLIST_TS` or `GLIST_PQ` increment) and one `SLIST_PQ` sequence per
//! lead (value = origin + scale × digit).

use std::path::Path;

use crate::error::{EcgError, Result};
use crate::signal::{normalise_lead_name, Ecg, Lead};

const HL7: &str = "urn:hl7-org:v3";
const XSI: &str = "http://www.w3.org/2001/XMLSchema-instance";

fn err(msg: impl Into<String>) -> EcgError {
    EcgError::Aecg(msg.into())
}

/// True when the text looks like an HL7 aECG document.
pub fn is_aecg(text: &str) -> bool {
    let head: String = text.chars().take(4096).collect();
    head.contains("AnnotatedECG")
}

/// Reads an aECG file from disk.
pub fn read_aecg_file(path: &Path) -> Result<Ecg> {
    let bytes = std::fs::read(path).map_err(|source| EcgError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let text = std::str::from_utf8(&bytes).map_err(|e| err(format!("not UTF-8: {e}")))?;
    read_aecg(text)
}

type Node<'a, 'i> = roxmltree::Node<'a, 'i>;

fn child<'a, 'i>(n: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    n.children().find(|c| c.has_tag_name((HL7, name)))
}

fn children<'a, 'i>(n: Node<'a, 'i>, name: &'static str) -> impl Iterator<Item = Node<'a, 'i>> {
    n.children().filter(move |c| c.has_tag_name((HL7, name)))
}

fn code_of<'a>(n: Node<'a, '_>) -> Option<&'a str> {
    child(n, "code").and_then(|c| c.attribute("code"))
}

fn to_mv(unit: &str) -> Result<f64> {
    match unit {
        "uV" => Ok(1e-3),
        "mV" => Ok(1.0),
        "V" => Ok(1e3),
        other => Err(err(format!("unit {other:?} is not a voltage"))),
    }
}

fn pq(n: Node, what: &str) -> Result<(f64, String)> {
    let v = n
        .attribute("value")
        .ok_or_else(|| err(format!("{what} has no value attribute")))?;
    let value: f64 = v
        .trim()
        .parse()
        .ok()
        .filter(|x: &f64| x.is_finite())
        .ok_or_else(|| err(format!("{what} value {v:?} is not a number")))?;
    Ok((value, n.attribute("unit").unwrap_or("1").to_string()))
}

/// Parses an aECG document held in memory.
pub fn read_aecg(text: &str) -> Result<Ecg> {
    let doc = roxmltree::Document::parse(text).map_err(|e| err(format!("XML: {e}")))?;
    let root = doc.root_element();
    if !root.has_tag_name((HL7, "AnnotatedECG")) {
        return Err(err(format!(
            "root element is {:?}, not AnnotatedECG in the {HL7} namespace",
            root.tag_name().name()
        )));
    }
    // The rhythm series sits at AnnotatedECG/component/series; derived (median) series live deeper.
    let series: Vec<Node> = children(root, "component")
        .filter_map(|c| child(c, "series"))
        .collect();
    let series = series
        .iter()
        .find(|s| code_of(**s) == Some("RHYTHM"))
        .or_else(|| series.first())
        .copied()
        .ok_or_else(|| err("no component/series element"))?;
    let set = children(series, "component")
        .find_map(|c| child(c, "sequenceSet"))
        .ok_or_else(|| err("series has no sequenceSet"))?;
    let mut fs: Option<f64> = None;
    let mut leads = Vec::new();
    for seq in children(set, "component").filter_map(|c| child(c, "sequence")) {
        let code = code_of(seq).ok_or_else(|| err("sequence without a code"))?;
        let value =
            child(seq, "value").ok_or_else(|| err(format!("sequence {code} has no value")))?;
        let xtype = value.attribute((XSI, "type")).unwrap_or("");
        if code.starts_with("TIME_") {
            let inc = child(value, "increment")
                .ok_or_else(|| err(format!("time sequence {code} ({xtype}) has no increment")))?;
            let (v, unit) = pq(inc, "time increment")?;
            let seconds = match unit.as_str() {
                "s" => v,
                "ms" => v / 1000.0,
                "us" => v / 1e6,
                other => return Err(err(format!("time increment unit {other:?} is not a time"))),
            };
            if seconds.is_nan() || seconds <= 0.0 {
                return Err(err(format!("time increment {v} {unit} is not positive")));
            }
            let mut rate = 1.0 / seconds;
            // Increments such as 1/360 s are written as rounded decimals; snap to the intended integer rate.
            if (rate - rate.round()).abs() < 1e-3 * rate.max(1.0) {
                rate = rate.round();
            }
            fs = Some(rate);
            continue;
        }
        if xtype != "SLIST_PQ" && xtype != "SLIST_INT" {
            return Err(err(format!(
                "lead {code}: value type {xtype:?} is not supported (SLIST_PQ)"
            )));
        }
        let (origin, o_unit) = match child(value, "origin") {
            Some(o) => pq(o, "origin")?,
            None => (0.0, "uV".to_string()),
        };
        let (scale, s_unit) = match child(value, "scale") {
            Some(s) => pq(s, "scale")?,
            None => (1.0, "uV".to_string()),
        };
        let digits = child(value, "digits")
            .and_then(|d| d.text())
            .ok_or_else(|| err(format!("lead {code} has no digits")))?;
        let (o_mv, s_mv) = (origin * to_mv(&o_unit)?, scale * to_mv(&s_unit)?);
        let samples = digits
            .split_ascii_whitespace()
            .map(|d| {
                d.parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .map(|v| o_mv + s_mv * v)
                    .ok_or_else(|| err(format!("lead {code}: digit {d:?} is not a number")))
            })
            .collect::<Result<Vec<f64>>>()?;
        leads.push(Lead {
            name: normalise_lead_name(code),
            samples,
        });
    }
    let fs = fs
        .ok_or_else(|| err("no TIME_ABSOLUTE or TIME_RELATIVE sequence gives the sampling rate"))?;
    if leads.is_empty() {
        return Err(err("sequenceSet holds no lead"));
    }
    Ecg::new(fs, leads)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(time: &str, leads: &str) -> String {
        format!(
            r#"<?xml version="1.0"?><AnnotatedECG xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><component><series><code code="RHYTHM"/><component><sequenceSet>{time}{leads}</sequenceSet></component></series></component></AnnotatedECG>"#
        )
    }
    const TIME: &str = r#"<component><sequence><code code="TIME_RELATIVE"/><value xsi:type="GLIST_PQ"><head value="0" unit="ms"/><increment value="2" unit="ms"/></value></sequence></component>"#;

    fn lead(code: &str, body: &str) -> String {
        format!(
            r#"<component><sequence><code code="{code}"/><value xsi:type="SLIST_PQ">{body}</value></sequence></component>"#
        )
    }

    #[test]
    fn reads_relative_time_and_scales() {
        let l = lead(
            "MDC_ECG_LEAD_V2",
            r#"<origin value="0.1" unit="mV"/><scale value="2.5" unit="uV"/><digits>0 400 -400</digits>"#,
        );
        let ecg = read_aecg(&doc(TIME, &l)).unwrap();
        assert_eq!(ecg.fs, 500.0);
        assert_eq!(ecg.leads[0].name, "V2");
        let want = [0.1, 1.1, -0.9];
        for (a, b) in ecg.leads[0].samples.iter().zip(want) {
            assert!((a - b).abs() < 1e-12);
        }
    }

    #[test]
    fn malformed_documents_are_rejected_with_reasons() {
        let ok_lead = lead("MDC_ECG_LEAD_I", r#"<digits>1 2</digits>"#);
        let table: Vec<(String, &str)> = vec![
            ("<a>".to_string(), "XML"),
            (
                "<x xmlns=\"urn:hl7-org:v3\"/>".to_string(),
                "not AnnotatedECG",
            ),
            (doc("", &ok_lead), "sampling rate"),
            (doc(TIME, ""), "no lead"),
            (
                doc(TIME, &lead("MDC_ECG_LEAD_I", "<digits>1 x 2</digits>")),
                "\"x\" is not a number",
            ),
            (
                doc(
                    TIME,
                    &lead(
                        "MDC_ECG_LEAD_I",
                        r#"<scale value="1" unit="kg"/><digits>1</digits>"#,
                    ),
                ),
                "not a voltage",
            ),
            (
                doc(
                    TIME,
                    &format!("{ok_lead}{}", lead("MDC_ECG_LEAD_II", "<digits>1</digits>")),
                ),
                "samples",
            ),
            (
                doc(&TIME.replace("value=\"2\"", "value=\"0\""), &ok_lead),
                "not positive",
            ),
            (
                "<!DOCTYPE x [<!ENTITY a \"b\">]><AnnotatedECG xmlns=\"urn:hl7-org:v3\"/>"
                    .to_string(),
                "XML",
            ),
        ];
        for (text, want) in table {
            let e = read_aecg(&text).unwrap_err().to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
    }
}
