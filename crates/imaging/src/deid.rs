//! De-identification of DICOM instances for sending a study to another node without the patient's identity
//! (DICOM PS3.15 Annex E, the Basic Application Level Confidentiality Profile with the Retain Patient
//! Characteristics Option: sex, age, size and weight stay, since the case packet shares sex and birth year
//! anyway and doses and SUVs need them).
//!
//! Written here because no maintained Rust crate implements the profile on dicom-rs objects; the action table
//! below follows PS3.15 Table E.1-1 for the attributes that occur in the storage SOP classes a consultation
//! carries:
//! - **D** (replace with a dummy): Patient's Name and Patient ID become the case's pseudonym.
//! - **Z** (zero length): birth date, accession number, study id, referring physician, study and content dates
//!   and times.
//! - **X** (remove): other identifiers and names, addresses, institution and device details, descriptions,
//!   free-text comments, request attributes, other dates and times, and every private attribute.
//! - **U** (replace UIDs): instance, series, study, frame-of-reference and referenced-instance UIDs are mapped
//!   to new `2.25.` UIDs through a keyed hash, so references stay consistent within one transfer (the same old
//!   UID always gets the same new one) while two transfers of one study cannot be linked.
//! - Patient Identity Removed = YES, De-identification Method and its code sequence (DCM 113100, 113108) added.
//!
//! An instance that says its pixels carry burned-in text (Burned In Annotation = YES) is refused: the profile's
//! Clean Pixel Data Option is not implemented, so such pixels cannot go without the patient's consent.

use std::collections::HashMap;

use dicom_core::value::{DataSetSequence, Value};
use dicom_core::{DataElement, Length, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use sha2::{Digest, Sha256};

use crate::archive::error_chain;
use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    /// Replace with the pseudonym.
    Dummy,
    /// Keep the attribute, empty.
    Zero,
    Remove,
    /// Replace the UID(s) through the transfer's map.
    Uid,
}

/// PS3.15 Table E.1-1 (Basic Profile; Retain Patient Characteristics Option), for the attributes handled.
/// Retired attributes are listed too: old files still carry them.
#[allow(deprecated)]
const ACTIONS: &[(Tag, Action)] = &[
    (tags::PATIENT_NAME, Action::Dummy),
    (tags::PATIENT_ID, Action::Dummy),
    (tags::PATIENT_BIRTH_DATE, Action::Zero),
    (tags::ACCESSION_NUMBER, Action::Zero),
    (tags::STUDY_ID, Action::Zero),
    (tags::REFERRING_PHYSICIAN_NAME, Action::Zero),
    (tags::STUDY_DATE, Action::Zero),
    (tags::STUDY_TIME, Action::Zero),
    (tags::CONTENT_DATE, Action::Zero),
    (tags::CONTENT_TIME, Action::Zero),
    (tags::ISSUER_OF_PATIENT_ID, Action::Remove),
    (tags::OTHER_PATIENT_I_DS, Action::Remove),
    (tags::OTHER_PATIENT_NAMES, Action::Remove),
    (tags::OTHER_PATIENT_I_DS_SEQUENCE, Action::Remove),
    (tags::PATIENT_BIRTH_NAME, Action::Remove),
    (tags::PATIENT_BIRTH_TIME, Action::Remove),
    (tags::PATIENT_ADDRESS, Action::Remove),
    (tags::PATIENT_MOTHER_BIRTH_NAME, Action::Remove),
    (tags::PATIENT_TELEPHONE_NUMBERS, Action::Remove),
    (tags::PATIENT_RELIGIOUS_PREFERENCE, Action::Remove),
    (tags::PATIENT_INSURANCE_PLAN_CODE_SEQUENCE, Action::Remove),
    (tags::COUNTRY_OF_RESIDENCE, Action::Remove),
    (tags::REGION_OF_RESIDENCE, Action::Remove),
    (tags::MILITARY_RANK, Action::Remove),
    (tags::BRANCH_OF_SERVICE, Action::Remove),
    (tags::MEDICAL_RECORD_LOCATOR, Action::Remove),
    (tags::ETHNIC_GROUP, Action::Remove),
    (tags::OCCUPATION, Action::Remove),
    (tags::ADDITIONAL_PATIENT_HISTORY, Action::Remove),
    (tags::PATIENT_COMMENTS, Action::Remove),
    (tags::PATIENT_STATE, Action::Remove),
    (tags::PREGNANCY_STATUS, Action::Remove),
    (tags::LAST_MENSTRUAL_DATE, Action::Remove),
    (tags::ALLERGIES, Action::Remove),
    (tags::SMOKING_STATUS, Action::Remove),
    (tags::MEDICAL_ALERTS, Action::Remove),
    (tags::RESPONSIBLE_PERSON, Action::Remove),
    (tags::RESPONSIBLE_ORGANIZATION, Action::Remove),
    (tags::CURRENT_PATIENT_LOCATION, Action::Remove),
    (tags::INSTITUTION_NAME, Action::Remove),
    (tags::INSTITUTION_ADDRESS, Action::Remove),
    (tags::INSTITUTION_CODE_SEQUENCE, Action::Remove),
    (tags::INSTITUTIONAL_DEPARTMENT_NAME, Action::Remove),
    (tags::REFERRING_PHYSICIAN_ADDRESS, Action::Remove),
    (tags::REFERRING_PHYSICIAN_TELEPHONE_NUMBERS, Action::Remove),
    (
        tags::REFERRING_PHYSICIAN_IDENTIFICATION_SEQUENCE,
        Action::Remove,
    ),
    (tags::STATION_NAME, Action::Remove),
    (tags::PHYSICIANS_OF_RECORD, Action::Remove),
    (
        tags::PHYSICIANS_OF_RECORD_IDENTIFICATION_SEQUENCE,
        Action::Remove,
    ),
    (tags::PERFORMING_PHYSICIAN_NAME, Action::Remove),
    (
        tags::PERFORMING_PHYSICIAN_IDENTIFICATION_SEQUENCE,
        Action::Remove,
    ),
    (tags::NAME_OF_PHYSICIANS_READING_STUDY, Action::Remove),
    (tags::OPERATORS_NAME, Action::Remove),
    (tags::OPERATOR_IDENTIFICATION_SEQUENCE, Action::Remove),
    (tags::REQUESTING_PHYSICIAN, Action::Remove),
    (tags::REQUESTING_SERVICE, Action::Remove),
    (tags::ORDER_ENTERED_BY, Action::Remove),
    (tags::ORDER_ENTERER_LOCATION, Action::Remove),
    (tags::ADMITTING_DIAGNOSES_DESCRIPTION, Action::Remove),
    (tags::DERIVATION_DESCRIPTION, Action::Remove),
    (tags::DEVICE_SERIAL_NUMBER, Action::Remove),
    (tags::STUDY_DESCRIPTION, Action::Remove),
    (tags::SERIES_DESCRIPTION, Action::Remove),
    (tags::PROTOCOL_NAME, Action::Remove),
    (tags::IMAGE_COMMENTS, Action::Remove),
    (tags::TEXT_COMMENTS, Action::Remove),
    (tags::PERSON_NAME, Action::Remove),
    (tags::CONTENT_SEQUENCE, Action::Remove),
    (tags::REQUEST_ATTRIBUTES_SEQUENCE, Action::Remove),
    (tags::REFERENCED_PATIENT_SEQUENCE, Action::Remove),
    (tags::REFERENCED_STUDY_SEQUENCE, Action::Remove),
    (tags::PERFORMED_PROCEDURE_STEP_ID, Action::Remove),
    (tags::PERFORMED_PROCEDURE_STEP_DESCRIPTION, Action::Remove),
    (tags::PERFORMED_PROCEDURE_STEP_START_DATE, Action::Remove),
    (tags::PERFORMED_PROCEDURE_STEP_START_TIME, Action::Remove),
    (tags::SERIES_DATE, Action::Remove),
    (tags::SERIES_TIME, Action::Remove),
    (tags::ACQUISITION_DATE, Action::Remove),
    (tags::ACQUISITION_TIME, Action::Remove),
    (tags::ACQUISITION_DATE_TIME, Action::Remove),
    (tags::TIMEZONE_OFFSET_FROM_UTC, Action::Remove),
    (tags::STUDY_INSTANCE_UID, Action::Uid),
    (tags::SERIES_INSTANCE_UID, Action::Uid),
    (tags::SOP_INSTANCE_UID, Action::Uid),
    (tags::FRAME_OF_REFERENCE_UID, Action::Uid),
    (tags::REFERENCED_SOP_INSTANCE_UID, Action::Uid),
    (tags::REFERENCED_FRAME_OF_REFERENCE_UID, Action::Uid),
    (tags::RELATED_FRAME_OF_REFERENCE_UID, Action::Uid),
    (tags::SYNCHRONIZATION_FRAME_OF_REFERENCE_UID, Action::Uid),
    (tags::DIMENSION_ORGANIZATION_UID, Action::Uid),
    (tags::CONCATENATION_UID, Action::Uid),
    (tags::IRRADIATION_EVENT_UID, Action::Uid),
    (tags::STORAGE_MEDIA_FILE_SET_UID, Action::Uid),
    (tags::UID, Action::Uid),
    (tags::TARGET_UID, Action::Uid),
    (tags::DEVICE_UID, Action::Uid),
    (tags::INSTANCE_CREATOR_UID, Action::Uid),
];

fn action(tag: Tag) -> Option<Action> {
    ACTIONS.iter().find(|(t, _)| *t == tag).map(|(_, a)| *a)
}

/// De-identifies the instances of one transfer: one pseudonym, one UID map.
pub struct Deidentifier {
    pseudonym: String,
    key: [u8; 32],
    uids: HashMap<String, String>,
}

impl Deidentifier {
    /// `pseudonym` replaces the patient's name and id; `key` (random, per transfer, never sent) keys the UID
    /// map.
    pub fn new(pseudonym: &str, key: [u8; 32]) -> Self {
        Deidentifier {
            pseudonym: pseudonym.chars().take(64).collect(),
            key,
            uids: HashMap::new(),
        }
    }

    /// The new UID for `old` (the same for every instance of this transfer).
    pub fn uid(&mut self, old: &str) -> String {
        let old = old.trim_end_matches(['\0', ' ']);
        if let Some(new) = self.uids.get(old) {
            return new.clone();
        }
        let mut h = Sha256::new();
        h.update(self.key);
        h.update(old.as_bytes());
        let d = h.finalize();
        let mut n = [0u8; 16];
        n.copy_from_slice(&d[..16]);
        // A UUID-derived UID (PS3.5 B.2): 2.25 followed by a 128-bit integer.
        let new = format!("2.25.{}", u128::from_be_bytes(n));
        self.uids.insert(old.to_owned(), new.clone());
        new
    }

    /// De-identifies Part-10 bytes and returns new Part-10 bytes in the same transfer syntax.
    pub fn apply(&mut self, bytes: &[u8]) -> Result<Vec<u8>> {
        let mut file = crate::render::open(bytes)?;
        let burned = file
            .element_opt(tags::BURNED_IN_ANNOTATION)
            .ok()
            .flatten()
            .and_then(|e| e.to_str().ok().map(|s| s.trim().to_ascii_uppercase()));
        if burned.as_deref() == Some("YES") {
            return Err(Error::Deidentification(
                "the pixels carry burned-in annotation (Burned In Annotation = YES)".into(),
            ));
        }
        self.clean(&mut file);
        file.put(DataElement::new(
            tags::PATIENT_IDENTITY_REMOVED,
            VR::CS,
            PrimitiveValue::from("YES"),
        ));
        file.put(DataElement::new(
            tags::DEIDENTIFICATION_METHOD,
            VR::LO,
            PrimitiveValue::from("DICOM PS3.15 E.1 Basic Profile; Retain Pat Chars"),
        ));
        let code = |value: &str, meaning: &str| {
            InMemDicomObject::from_element_iter([
                DataElement::new(tags::CODE_VALUE, VR::SH, PrimitiveValue::from(value)),
                DataElement::new(
                    tags::CODING_SCHEME_DESIGNATOR,
                    VR::SH,
                    PrimitiveValue::from("DCM"),
                ),
                DataElement::new(tags::CODE_MEANING, VR::LO, PrimitiveValue::from(meaning)),
            ])
        };
        file.put(DataElement::new(
            tags::DEIDENTIFICATION_METHOD_CODE_SEQUENCE,
            VR::SQ,
            DataSetSequence::new(
                vec![
                    code("113100", "Basic Application Confidentiality Profile"),
                    code("113108", "Retain Patient Characteristics Option"),
                ],
                Length::UNDEFINED,
            ),
        ));
        let sop = file
            .element_opt(tags::SOP_INSTANCE_UID)
            .ok()
            .flatten()
            .and_then(|e| {
                e.to_str()
                    .ok()
                    .map(|s| s.trim_end_matches(['\0', ' ']).to_string())
            })
            .ok_or_else(|| Error::Deidentification("no SOP Instance UID".into()))?;
        file.update_meta(|m| {
            m.media_storage_sop_instance_uid = sop.clone();
            m.source_application_entity_title = None;
            m.sending_application_entity_title = None;
            m.receiving_application_entity_title = None;
            m.private_information_creator_uid = None;
            m.private_information = None;
        });
        let mut out = Vec::with_capacity(bytes.len());
        file.write_all(&mut out)
            .map_err(|e| Error::Encoding(error_chain(&e)))?;
        Ok(out)
    }

    fn clean(&mut self, obj: &mut InMemDicomObject) {
        let tags: Vec<Tag> = obj.tags().collect();
        for tag in tags {
            // Private attributes and (retired) group lengths go; the profile keeps no private data by default.
            if tag.group() % 2 == 1 || tag.element() == 0 {
                obj.remove_element(tag);
                continue;
            }
            match action(tag) {
                Some(Action::Remove) => {
                    obj.remove_element(tag);
                }
                Some(Action::Zero) => {
                    let vr = obj.get(tag).map(|e| e.vr()).unwrap_or(VR::LO);
                    obj.put(DataElement::empty(tag, vr));
                }
                Some(Action::Dummy) => {
                    let vr = obj.get(tag).map(|e| e.vr()).unwrap_or(VR::LO);
                    obj.put(DataElement::new(
                        tag,
                        vr,
                        PrimitiveValue::from(self.pseudonym.as_str()),
                    ));
                }
                Some(Action::Uid) => {
                    let old = obj
                        .get(tag)
                        .and_then(|e| e.to_str().ok().map(|s| s.to_string()))
                        .unwrap_or_default();
                    if !old.trim().is_empty() {
                        let new: Vec<String> =
                            old.split('\\').map(|u| self.uid(u.trim())).collect();
                        obj.put(DataElement::new(
                            tag,
                            VR::UI,
                            PrimitiveValue::from(new.join("\\")),
                        ));
                    }
                }
                None => {
                    obj.update_value(tag, |v| {
                        if let Value::Sequence(seq) = v {
                            let mut items: Vec<InMemDicomObject> =
                                std::mem::take(seq.items_mut()).into_iter().collect();
                            for item in &mut items {
                                self.clean(item);
                            }
                            *v = Value::Sequence(DataSetSequence::new(items, Length::UNDEFINED));
                        }
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/tests/data/pixels/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    fn text(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
        obj.get(tag).and_then(|e| {
            e.to_str()
                .ok()
                .map(|s| s.trim_end_matches(['\0', ' ']).to_string())
        })
    }

    #[test]
    fn identity_goes_pixels_and_references_stay() {
        let before = fixture("MR_small.dcm");
        let orig = crate::render::open(&before).unwrap();
        let mut d = Deidentifier::new("p-0123456789", [7; 32]);
        let after = d.apply(&before).unwrap();
        let obj = crate::render::open(&after).unwrap();
        assert_eq!(
            text(&obj, tags::PATIENT_NAME).as_deref(),
            Some("p-0123456789")
        );
        assert_eq!(
            text(&obj, tags::PATIENT_ID).as_deref(),
            Some("p-0123456789")
        );
        assert_eq!(text(&obj, tags::PATIENT_BIRTH_DATE).as_deref(), Some(""));
        assert_eq!(text(&obj, tags::STUDY_DATE).as_deref(), Some(""));
        assert_eq!(
            text(&obj, tags::PATIENT_IDENTITY_REMOVED).as_deref(),
            Some("YES")
        );
        assert!(obj.get(tags::INSTITUTION_NAME).is_none());
        assert!(
            obj.tags().all(|t| t.group() % 2 == 0),
            "no private attributes remain"
        );
        // Patient characteristics are retained (the option).
        assert_eq!(
            text(&obj, tags::PATIENT_SEX),
            text(&orig, tags::PATIENT_SEX)
        );
        let old_study = text(&orig, tags::STUDY_INSTANCE_UID).unwrap();
        let new_study = text(&obj, tags::STUDY_INSTANCE_UID).unwrap();
        assert_ne!(old_study, new_study);
        assert!(new_study.starts_with("2.25.") && new_study.len() <= 64);
        assert_eq!(
            d.uid(&old_study),
            new_study,
            "the map is consistent within the transfer"
        );
        assert_eq!(
            obj.meta()
                .media_storage_sop_instance_uid
                .trim_end_matches('\0'),
            text(&obj, tags::SOP_INSTANCE_UID).unwrap()
        );
        // The pixels are untouched.
        assert_eq!(
            crate::render::stored_values(&orig, 0).unwrap(),
            crate::render::stored_values(&obj, 0).unwrap()
        );
        // Another transfer maps the same study elsewhere: two transfers cannot be linked by UID.
        let mut other = Deidentifier::new("p-x", [8; 32]);
        assert_ne!(other.uid(&old_study), new_study);
        // The original name is nowhere in the output bytes.
        let name = text(&orig, tags::PATIENT_NAME).unwrap();
        assert!(!name.is_empty());
        assert!(!after.windows(name.len()).any(|w| w == name.as_bytes()));
    }

    #[test]
    fn burned_in_annotation_is_refused() {
        let mut file = crate::render::open(&fixture("MR_small.dcm")).unwrap();
        file.put(DataElement::new(
            tags::BURNED_IN_ANNOTATION,
            VR::CS,
            PrimitiveValue::from("YES"),
        ));
        let mut bytes = Vec::new();
        file.write_all(&mut bytes).unwrap();
        let err = Deidentifier::new("p", [0; 32]).apply(&bytes).unwrap_err();
        assert!(err.to_string().contains("burned-in"), "{err}");
    }
}
