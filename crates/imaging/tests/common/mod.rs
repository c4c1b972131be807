//! Helpers shared by the integration tests: real fixture files with chosen attributes.
#![allow(dead_code, clippy::expect_used)]

use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::meta::FileMetaTableBuilder;

pub const CT_SMALL: &[u8] = include_bytes!("../data/CT_small.dcm");
pub const MR_SMALL: &[u8] = include_bytes!("../data/pixels/MR_small.dcm");

/// Attributes to set on a copy of a fixture.
#[derive(Debug, Clone, Default)]
pub struct Spec<'a> {
    pub patient_name: &'a str,
    pub patient_id: &'a str,
    pub study_uid: &'a str,
    pub study_date: &'a str,
    pub study_time: &'a str,
    pub accession: &'a str,
    pub series_uid: &'a str,
    pub modality: &'a str,
    pub sop_uid: &'a str,
    pub instance_number: u32,
}

/// A copy of `base` (Part-10 bytes) with the attributes of `spec`.
pub fn instance(base: &[u8], spec: &Spec<'_>) -> Vec<u8> {
    let file = dicom_object::OpenFileOptions::new()
        .from_reader(base)
        .expect("fixture parses");
    let ts = file
        .meta()
        .transfer_syntax()
        .trim_end_matches('\0')
        .to_string();
    let mut obj = file.into_inner();
    let mut put = |tag: Tag, vr: VR, value: &str| {
        obj.put(DataElement::new(
            tag,
            vr,
            PrimitiveValue::from(value.to_string()),
        ));
    };
    put(tags::PATIENT_NAME, VR::PN, spec.patient_name);
    put(tags::PATIENT_ID, VR::LO, spec.patient_id);
    put(tags::STUDY_INSTANCE_UID, VR::UI, spec.study_uid);
    put(tags::STUDY_DATE, VR::DA, spec.study_date);
    put(tags::STUDY_TIME, VR::TM, spec.study_time);
    put(tags::ACCESSION_NUMBER, VR::SH, spec.accession);
    put(tags::SERIES_INSTANCE_UID, VR::UI, spec.series_uid);
    put(tags::MODALITY, VR::CS, spec.modality);
    put(tags::SOP_INSTANCE_UID, VR::UI, spec.sop_uid);
    put(
        tags::INSTANCE_NUMBER,
        VR::IS,
        &spec.instance_number.to_string(),
    );
    let file = obj
        .with_meta(FileMetaTableBuilder::new().transfer_syntax(ts))
        .expect("meta");
    let mut out = Vec::new();
    file.write_all(&mut out).expect("write");
    out
}

/// The query fixture: three patients, three studies, four series, five instances.
pub fn corpus() -> Vec<Vec<u8>> {
    let specs = [
        (
            CT_SMALL,
            Spec {
                patient_name: "Doe^John",
                patient_id: "P001",
                study_uid: "1.2.826.0.1.1",
                study_date: "20200115",
                study_time: "083000",
                accession: "A1",
                series_uid: "1.2.826.0.1.1.1",
                modality: "CT",
                sop_uid: "1.2.826.0.1.1.1.1",
                instance_number: 1,
            },
        ),
        (
            CT_SMALL,
            Spec {
                patient_name: "Doe^John",
                patient_id: "P001",
                study_uid: "1.2.826.0.1.1",
                study_date: "20200115",
                study_time: "083000",
                accession: "A1",
                series_uid: "1.2.826.0.1.1.1",
                modality: "CT",
                sop_uid: "1.2.826.0.1.1.1.2",
                instance_number: 2,
            },
        ),
        (
            MR_SMALL,
            Spec {
                patient_name: "Doe^John",
                patient_id: "P001",
                study_uid: "1.2.826.0.1.1",
                study_date: "20200115",
                study_time: "083000",
                accession: "A1",
                series_uid: "1.2.826.0.1.1.2",
                modality: "MR",
                sop_uid: "1.2.826.0.1.1.2.1",
                instance_number: 1,
            },
        ),
        (
            CT_SMALL,
            Spec {
                patient_name: "Smith^Jane",
                patient_id: "P002",
                study_uid: "1.2.826.0.1.2",
                study_date: "20210620",
                study_time: "170000",
                accession: "A2",
                series_uid: "1.2.826.0.1.2.1",
                modality: "CT",
                sop_uid: "1.2.826.0.1.2.1.1",
                instance_number: 1,
            },
        ),
        (
            MR_SMALL,
            Spec {
                patient_name: "Doe^Jane",
                patient_id: "P003",
                study_uid: "1.2.826.0.1.3",
                study_date: "20191231",
                study_time: "120000",
                accession: "A3",
                series_uid: "1.2.826.0.1.3.1",
                modality: "MR",
                sop_uid: "1.2.826.0.1.3.1.1",
                instance_number: 1,
            },
        ),
    ];
    specs
        .iter()
        .map(|(base, spec)| instance(base, spec))
        .collect()
}

/// A copy of `part10` (explicit VR little endian) with a Digital Signatures Sequence appended whose one item,
/// of defined length, holds an element declaring 2 GB: 32 bytes more than the valid instance. dicom-rs alone
/// reserves and zero-fills the 2 GB before it finds the input short; the guard refuses it at the header.
pub fn with_hostile_length(part10: &[u8]) -> Vec<u8> {
    let mut out = part10.to_vec();
    out.extend_from_slice(&[0xFA, 0xFF, 0xFA, 0xFF, b'S', b'Q', 0, 0]);
    out.extend_from_slice(&20u32.to_le_bytes());
    out.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0]);
    out.extend_from_slice(&12u32.to_le_bytes());
    out.extend_from_slice(&[0x09, 0x00, 0x10, 0x10, b'U', b'N', 0, 0]);
    out.extend_from_slice(&0x8000_0000u32.to_le_bytes());
    out
}

/// What the guard says about [`with_hostile_length`]'s element.
pub const HOSTILE_REASON: &str = "element (0009,1010) UN";
