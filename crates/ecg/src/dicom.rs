//! DICOM waveform objects (12-lead ECG, General ECG, Ambulatory ECG storage) read with dicom-rs: the
//! Waveform Sequence's multiplex groups, each channel's sensitivity, correction factor, baseline and units.

use std::path::Path;

use dicom_core::value::PrimitiveValue;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use serde::Serialize;

use crate::error::{EcgError, Result};
use crate::signal::{normalise_lead_name, Ecg, Lead};

/// A measurement the acquiring device stored in the Waveform Annotation Sequence (e.g. "PR Interval").
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceMeasurement {
    pub name: String,
    pub value: f64,
    pub unit: String,
}

/// One multiplex group of a waveform object.
#[derive(Debug, Clone, PartialEq)]
pub struct MultiplexGroup {
    /// Multiplex Group Label, e.g. "RHYTHM" or "MEDIAN BEAT".
    pub label: String,
    pub ecg: Ecg,
}

/// The ECG content of a DICOM waveform object.
#[derive(Debug, Clone, PartialEq)]
pub struct DicomEcg {
    pub groups: Vec<MultiplexGroup>,
    pub device_measurements: Vec<DeviceMeasurement>,
}

impl DicomEcg {
    /// The rhythm group (label "RHYTHM", else the first original group, else the first group).
    pub fn rhythm(&self) -> Option<&Ecg> {
        self.groups
            .iter()
            .find(|g| g.label.eq_ignore_ascii_case("RHYTHM"))
            .or_else(|| self.groups.first())
            .map(|g| &g.ecg)
    }

    /// The device's measurement with this name (case-insensitive), if it stored one.
    pub fn device_measurement(&self, name: &str) -> Option<f64> {
        self.device_measurements
            .iter()
            .find(|m| m.name.eq_ignore_ascii_case(name))
            .map(|m| m.value)
    }
}

fn dicom_err(e: impl std::fmt::Display) -> EcgError {
    EcgError::Dicom(e.to_string())
}

fn wf(msg: impl Into<String>) -> EcgError {
    EcgError::DicomWaveform(msg.into())
}

/// True when the bytes look like a DICOM Part 10 file (preamble + "DICM").
pub fn is_dicom(bytes: &[u8]) -> bool {
    bytes.get(128..132) == Some(b"DICM")
}

/// Reads a DICOM waveform file from disk.
pub fn read_dicom_file(path: &Path) -> Result<DicomEcg> {
    let bytes = std::fs::read(path).map_err(|source| EcgError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    read_dicom_bytes(&bytes)
}

/// Reads a DICOM Part 10 file held in memory (with or without the 128-byte preamble). The bytes go
/// through the shared guard (crate `caravan-dicom-guard`): every declared length is checked against what
/// remains before dicom-rs reads (and allocates) it.
pub fn read_dicom_bytes(bytes: &[u8]) -> Result<DicomEcg> {
    let part10 = caravan_dicom_guard::open_part10(bytes).map_err(|e| match e {
        caravan_dicom_guard::GuardError::NotPart10(_) => {
            EcgError::Dicom("not a DICOM Part 10 file (no \"DICM\" magic)".into())
        }
        other => dicom_err(other),
    })?;
    parse_object(&part10.object)
}

fn str_of(obj: &InMemDicomObject, tag: dicom_core::Tag) -> Option<String> {
    obj.get(tag)
        .and_then(|e| e.to_str().ok())
        .map(|s| s.trim().trim_end_matches('\0').to_string())
}

fn f64_of(obj: &InMemDicomObject, tag: dicom_core::Tag) -> Result<Option<f64>> {
    match obj.get(tag) {
        None => Ok(None),
        Some(e) if e.value().primitive().is_some_and(|p| p.multiplicity() == 0) => Ok(None),
        Some(e) => e
            .to_float64()
            .map(Some)
            .map_err(|err| wf(format!("element {tag} is not a number: {err}"))),
    }
}

fn first_item(obj: &InMemDicomObject, tag: dicom_core::Tag) -> Option<&InMemDicomObject> {
    obj.get(tag).and_then(|e| e.items()).and_then(|i| i.first())
}

/// Extracts the waveform groups and device measurements from a parsed object.
pub fn parse_object(obj: &InMemDicomObject) -> Result<DicomEcg> {
    let seq = obj
        .get(tags::WAVEFORM_SEQUENCE)
        .ok_or_else(|| wf("no Waveform Sequence (5400,0100): not a waveform object"))?;
    let items = seq
        .items()
        .ok_or_else(|| wf("Waveform Sequence (5400,0100) is not a sequence"))?;
    if items.is_empty() {
        return Err(wf("Waveform Sequence (5400,0100) is empty"));
    }
    let groups = items
        .iter()
        .enumerate()
        .map(|(i, item)| parse_group(i, item))
        .collect::<Result<Vec<_>>>()?;
    let mut device_measurements = Vec::new();
    if let Some(anns) = obj
        .get(tags::WAVEFORM_ANNOTATION_SEQUENCE)
        .and_then(|e| e.items())
    {
        for a in anns {
            let (Some(value), Some(name)) = (
                f64_of(a, tags::NUMERIC_VALUE).ok().flatten(),
                first_item(a, tags::CONCEPT_NAME_CODE_SEQUENCE)
                    .and_then(|c| str_of(c, tags::CODE_MEANING)),
            ) else {
                continue;
            };
            let unit = first_item(a, tags::MEASUREMENT_UNITS_CODE_SEQUENCE)
                .and_then(|c| str_of(c, tags::CODE_VALUE))
                .unwrap_or_default();
            device_measurements.push(DeviceMeasurement { name, value, unit });
        }
    }
    Ok(DicomEcg {
        groups,
        device_measurements,
    })
}

fn parse_group(index: usize, item: &InMemDicomObject) -> Result<MultiplexGroup> {
    let need = |tag: dicom_core::Tag, name: &str| -> Result<f64> {
        f64_of(item, tag)?
            .ok_or_else(|| wf(format!("multiplex group {index}: {name} {tag} missing")))
    };
    let channels = need(
        tags::NUMBER_OF_WAVEFORM_CHANNELS,
        "Number of Waveform Channels",
    )?;
    let samples = need(
        tags::NUMBER_OF_WAVEFORM_SAMPLES,
        "Number of Waveform Samples",
    )?;
    let fs = need(tags::SAMPLING_FREQUENCY, "Sampling Frequency")?;
    let bits = need(tags::WAVEFORM_BITS_ALLOCATED, "Waveform Bits Allocated")?;
    if !((1.0..=4096.0).contains(&channels) && (1.0..=1e9).contains(&samples)) {
        return Err(wf(format!(
            "multiplex group {index}: implausible size ({channels} channels, {samples} samples)"
        )));
    }
    let (channels, samples) = (channels as usize, samples as usize);
    let interp = str_of(item, tags::WAVEFORM_SAMPLE_INTERPRETATION).unwrap_or_default();
    let signed = match (bits as u32, interp.as_str()) {
        (16, "SS") | (8, "SB") => true,
        (16, "US") | (8, "UB") => false,
        (b, i) => {
            return Err(wf(format!(
                "multiplex group {index}: {b}-bit samples with interpretation {i:?} are not supported (SS, US, SB, UB)"
            )))
        }
    };
    let data = item.get(tags::WAVEFORM_DATA).ok_or_else(|| {
        wf(format!(
            "multiplex group {index}: Waveform Data (5400,1010) missing"
        ))
    })?;
    let prim = data.value().primitive().ok_or_else(|| {
        wf(format!(
            "multiplex group {index}: Waveform Data is not a primitive value"
        ))
    })?;
    let raw: Vec<i32> = match (prim, bits as u32) {
        (PrimitiveValue::U16(v), 16) => v
            .iter()
            .map(|&x| {
                if signed {
                    i32::from(x as i16)
                } else {
                    i32::from(x)
                }
            })
            .collect(),
        (PrimitiveValue::I16(v), 16) => v
            .iter()
            .map(|&x| {
                if signed {
                    i32::from(x)
                } else {
                    i32::from(x as u16)
                }
            })
            .collect(),
        (PrimitiveValue::U8(v), 16) => v
            .chunks_exact(2)
            .map(|c| {
                let u = u16::from_le_bytes([c[0], c[1]]);
                if signed {
                    i32::from(u as i16)
                } else {
                    i32::from(u)
                }
            })
            .collect(),
        (PrimitiveValue::U8(v), 8) => v
            .iter()
            .map(|&x| {
                if signed {
                    i32::from(x as i8)
                } else {
                    i32::from(x)
                }
            })
            .collect(),
        _ => {
            return Err(wf(format!(
                "multiplex group {index}: Waveform Data has an unexpected value representation"
            )))
        }
    };
    let needed = channels.saturating_mul(samples);
    if raw.len() < needed {
        return Err(wf(format!(
            "multiplex group {index}: Waveform Data holds {} samples, {channels} channels x {samples} samples need {needed}",
            raw.len()
        )));
    }
    let padding = item
        .get(tags::WAVEFORM_PADDING_VALUE)
        .and_then(|e| e.value().primitive())
        .and_then(|p| match p {
            PrimitiveValue::U16(v) => v.first().map(|&x| {
                if signed {
                    i32::from(x as i16)
                } else {
                    i32::from(x)
                }
            }),
            PrimitiveValue::I16(v) => v.first().map(|&x| i32::from(x)),
            PrimitiveValue::U8(v) if v.len() >= 2 => {
                let u = u16::from_le_bytes([v[0], v[1]]);
                Some(if signed {
                    i32::from(u as i16)
                } else {
                    i32::from(u)
                })
            }
            _ => None,
        });
    let defs = item
        .get(tags::CHANNEL_DEFINITION_SEQUENCE)
        .and_then(|e| e.items())
        .ok_or_else(|| {
            wf(format!(
                "multiplex group {index}: Channel Definition Sequence missing"
            ))
        })?;
    if defs.len() != channels {
        return Err(wf(format!(
            "multiplex group {index}: {} channel definitions for {channels} channels",
            defs.len()
        )));
    }
    let mut leads = Vec::with_capacity(channels);
    for (c, def) in defs.iter().enumerate() {
        let name = first_item(def, tags::CHANNEL_SOURCE_SEQUENCE)
            .and_then(|s| str_of(s, tags::CODE_MEANING))
            .or_else(|| str_of(def, tags::CHANNEL_LABEL))
            .map(|n| normalise_lead_name(&n))
            .unwrap_or_else(|| format!("channel {c}"));
        let sensitivity = f64_of(def, tags::CHANNEL_SENSITIVITY)?.unwrap_or(1.0);
        let correction = f64_of(def, tags::CHANNEL_SENSITIVITY_CORRECTION_FACTOR)?.unwrap_or(1.0);
        let baseline = f64_of(def, tags::CHANNEL_BASELINE)?.unwrap_or(0.0);
        let unit = first_item(def, tags::CHANNEL_SENSITIVITY_UNITS_SEQUENCE)
            .and_then(|u| str_of(u, tags::CODE_VALUE))
            .unwrap_or_else(|| "uV".to_string());
        let to_mv = match unit.as_str() {
            "uV" => 1e-3,
            "mV" => 1.0,
            "V" => 1e3,
            other => {
                return Err(wf(format!(
                "multiplex group {index}, channel {c}: sensitivity unit {other:?} is not a voltage"
            )))
            }
        };
        if !(sensitivity.is_finite() && correction.is_finite() && baseline.is_finite()) {
            return Err(wf(format!(
                "multiplex group {index}, channel {c}: non-finite sensitivity, correction or baseline"
            )));
        }
        // PS3.3 C.10.9.1.4: value = stored sample × sensitivity × correction factor + baseline (same as pydicom).
        let samples_mv = (0..samples)
            .map(|s| {
                let v = raw[s * channels + c];
                if Some(v) == padding {
                    f64::NAN
                } else {
                    (f64::from(v) * sensitivity * correction + baseline) * to_mv
                }
            })
            .collect();
        leads.push(Lead {
            name,
            samples: samples_mv,
        });
    }
    let label = str_of(item, tags::MULTIPLEX_GROUP_LABEL).unwrap_or_default();
    Ok(MultiplexGroup {
        label,
        ecg: Ecg::new(fs, leads)?,
    })
}
