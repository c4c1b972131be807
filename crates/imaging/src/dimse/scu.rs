//! A small DICOM SCU on dicom-ul: used for C-MOVE sub-operations, and by the node (and tests) to
//! echo, store to, query and move from remote PACS.

use std::time::Duration;

use dicom_dictionary_std::{tags, uids};
use dicom_object::InMemDicomObject;
use dicom_ul::association::client::ClientAssociationOptions;
use dicom_ul::association::AsyncClientAssociation;
use dicom_ul::pdu::PresentationContextResultReason;
use tokio::net::TcpStream;

use super::message::*;
use crate::archive::{error_chain, InstanceRecord};
use crate::error::{Error, Result};

const TIMEOUT: Duration = Duration::from_secs(60);

type Assoc = AsyncClientAssociation<TcpStream>;

async fn connect(
    address: &str,
    calling: &str,
    called: &str,
    contexts: Vec<(String, Vec<String>)>,
) -> Result<Assoc> {
    let mut options = ClientAssociationOptions::new()
        .calling_ae_title(calling.to_string())
        .called_ae_title(called.to_string())
        .max_pdu_length(262_144)
        .read_timeout(TIMEOUT)
        .write_timeout(TIMEOUT)
        .connection_timeout(Duration::from_secs(10));
    for (abstract_syntax, tss) in contexts {
        options = options.with_presentation_context(abstract_syntax, tss);
    }
    let mut assoc = options
        .establish_async(address)
        .await
        .map_err(|e| Error::Network(error_chain(&e)))?;
    // See the SCP: small DIMSE messages must not wait for Nagle's algorithm.
    assoc.inner_stream().set_nodelay(true)?;
    Ok(assoc)
}

fn accepted(assoc: &Assoc, abstract_syntax: &str) -> Option<(u8, String)> {
    assoc
        .presentation_contexts()
        .iter()
        .find(|pc| {
            pc.abstract_syntax == abstract_syntax
                && pc.reason == PresentationContextResultReason::Acceptance
        })
        .map(|pc| (pc.id, pc.transfer_syntax.clone()))
}

fn accepted_ts(assoc: &Assoc, abstract_syntax: &str, ts: &str) -> Option<(u8, String)> {
    assoc
        .presentation_contexts()
        .iter()
        .find(|pc| {
            pc.abstract_syntax == abstract_syntax
                && pc.transfer_syntax == ts
                && pc.reason == PresentationContextResultReason::Acceptance
        })
        .map(|pc| (pc.id, pc.transfer_syntax.clone()))
}

/// C-ECHO: returns the status the peer answered.
pub async fn echo(address: &str, calling: &str, called: &str) -> Result<u16> {
    let mut assoc = connect(
        address,
        calling,
        called,
        vec![(uids::VERIFICATION.into(), vec![IMPLICIT_VR_LE.into()])],
    )
    .await?;
    let (pc, _) = accepted(&assoc, uids::VERIFICATION)
        .ok_or_else(|| Error::Network("peer refused the Verification SOP class".into()))?;
    let rq = command(vec![
        ui(tags::AFFECTED_SOP_CLASS_UID, uids::VERIFICATION),
        us(tags::COMMAND_FIELD, C_ECHO_RQ),
        us(tags::MESSAGE_ID, 1),
        us(tags::COMMAND_DATA_SET_TYPE, NO_DATA_SET),
    ]);
    send_message(&mut assoc, pc, &rq, None).await?;
    let status = match receive_message(&mut assoc).await? {
        Incoming::Message(m) => uint(&m.command, tags::STATUS).unwrap_or(0xFFFF),
        _ => {
            return Err(Error::Network(
                "association ended before the C-ECHO response".into(),
            ))
        }
    };
    let _ = assoc.release().await;
    Ok(status)
}

/// An open association for sending instances (C-STORE).
pub struct StoreSession {
    assoc: Assoc,
    next_id: u16,
}

impl StoreSession {
    /// Opens an association proposing, for each SOP class, the stored transfer syntax and the
    /// two uncompressed little-endian ones (so the peer can pick one it supports).
    pub async fn open<'a>(
        address: &str,
        calling: &str,
        called: &str,
        kinds: impl Iterator<Item = (&'a str, &'a str)>,
    ) -> Result<StoreSession> {
        let mut contexts: Vec<(String, Vec<String>)> = Vec::new();
        for (class, ts) in kinds {
            // One context per (class, stored syntax): a peer accepts one syntax per context,
            // so instances stored compressed and uncompressed each get their own.
            if contexts.iter().any(|(c, t)| c == class && t[0] == ts) {
                continue;
            }
            let mut tss = vec![ts.to_string()];
            for native in [EXPLICIT_VR_LE, IMPLICIT_VR_LE] {
                if native != ts {
                    tss.push(native.to_string());
                }
            }
            contexts.push((class.to_string(), tss));
        }
        if contexts.len() > 128 {
            return Err(Error::Network(format!(
                "{} presentation contexts needed, at most 128 fit in one association",
                contexts.len()
            )));
        }
        let assoc = connect(address, calling, called, contexts).await?;
        Ok(StoreSession { assoc, next_id: 1 })
    }

    /// Sends one stored instance; returns the peer's status. The data set goes as stored when the
    /// peer accepted its transfer syntax, and is re-encoded when both are uncompressed.
    pub async fn store_part10(
        &mut self,
        record: &InstanceRecord,
        part10: &[u8],
        move_originator: Option<(&str, u16)>,
    ) -> Result<u16> {
        let offset = usize::try_from(record.data_offset)
            .ok()
            .filter(|o| *o <= part10.len())
            .ok_or_else(|| Error::Encoding("stored data offset out of range".into()))?;
        let dataset = &part10[offset..];
        let (pc, ts) = accepted_ts(&self.assoc, &record.sop_class_uid, &record.transfer_syntax)
            .or_else(|| accepted(&self.assoc, &record.sop_class_uid))
            .ok_or_else(|| {
                Error::Network(format!(
                    "peer accepted no presentation context for {}",
                    record.sop_class_uid
                ))
            })?;
        let reencoded;
        let data: &[u8] = if ts == record.transfer_syntax {
            dataset
        } else if is_native(&ts) && is_native(&record.transfer_syntax) {
            let obj = decode_dataset(dataset, &record.transfer_syntax)?;
            reencoded = encode_dataset(&obj, &ts)?;
            &reencoded
        } else {
            return Err(Error::Network(format!(
                "peer accepts {} only in {ts}; transcoding from {} is not supported",
                record.sop_class_uid, record.transfer_syntax
            )));
        };
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        let mut elements = vec![
            ui(tags::AFFECTED_SOP_CLASS_UID, &record.sop_class_uid),
            us(tags::COMMAND_FIELD, C_STORE_RQ),
            us(tags::MESSAGE_ID, id),
            us(tags::PRIORITY, 0),
            us(tags::COMMAND_DATA_SET_TYPE, DATA_SET_PRESENT),
            ui(tags::AFFECTED_SOP_INSTANCE_UID, &record.sop_instance_uid),
        ];
        if let Some((ae_title, message_id)) = move_originator {
            elements.push(ae(tags::MOVE_ORIGINATOR_APPLICATION_ENTITY_TITLE, ae_title));
            elements.push(us(tags::MOVE_ORIGINATOR_MESSAGE_ID, message_id));
        }
        send_message(&mut self.assoc, pc, &command(elements), Some(data)).await?;
        match receive_message(&mut self.assoc).await? {
            Incoming::Message(m) => Ok(uint(&m.command, tags::STATUS).unwrap_or(0xFFFF)),
            _ => Err(Error::Network(
                "association ended before the C-STORE response".into(),
            )),
        }
    }

    /// Releases the association.
    pub async fn release(self) {
        let _ = self.assoc.release().await;
    }
}

/// Stores Part-10 files; returns one status per file, in order.
pub async fn store_files(
    address: &str,
    calling: &str,
    called: &str,
    files: &[Vec<u8>],
) -> Result<Vec<u16>> {
    let mut records = Vec::with_capacity(files.len());
    for f in files {
        let parsed = crate::archive::parse_instance(bytes::Bytes::from(f.clone()))?;
        records.push(InstanceRecord {
            study_uid: parsed.attrs.study_uid,
            series_uid: parsed.attrs.series_uid,
            sop_instance_uid: parsed.attrs.sop_uid,
            sop_class_uid: parsed.attrs.sop_class_uid,
            transfer_syntax: parsed.attrs.transfer_syntax,
            object_key: String::new(),
            size: f.len() as u64,
            data_offset: parsed.data_offset,
            number_of_frames: 1,
        });
    }
    let mut session = StoreSession::open(
        address,
        calling,
        called,
        records
            .iter()
            .map(|r| (r.sop_class_uid.as_str(), r.transfer_syntax.as_str())),
    )
    .await?;
    let mut statuses = Vec::with_capacity(files.len());
    for (record, bytes) in records.iter().zip(files) {
        statuses.push(session.store_part10(record, bytes, None).await?);
    }
    session.release().await;
    Ok(statuses)
}

/// C-FIND (Study Root, or Patient Root for PATIENT level): returns the matches and the final
/// status.
pub async fn find(
    address: &str,
    calling: &str,
    called: &str,
    identifier: &InMemDicomObject,
) -> Result<(Vec<InMemDicomObject>, u16)> {
    let level = text(identifier, tags::QUERY_RETRIEVE_LEVEL).unwrap_or_default();
    let model = if level == "PATIENT" {
        super::scp::PATIENT_ROOT_FIND
    } else {
        super::scp::STUDY_ROOT_FIND
    };
    let mut assoc = connect(
        address,
        calling,
        called,
        vec![(
            model.into(),
            vec![EXPLICIT_VR_LE.into(), IMPLICIT_VR_LE.into()],
        )],
    )
    .await?;
    let (pc, ts) = accepted(&assoc, model)
        .ok_or_else(|| Error::Network("peer refused the C-FIND SOP class".into()))?;
    let rq = command(vec![
        ui(tags::AFFECTED_SOP_CLASS_UID, model),
        us(tags::COMMAND_FIELD, C_FIND_RQ),
        us(tags::MESSAGE_ID, 1),
        us(tags::PRIORITY, 0),
        us(tags::COMMAND_DATA_SET_TYPE, DATA_SET_PRESENT),
    ]);
    let data = encode_dataset(identifier, &ts)?;
    send_message(&mut assoc, pc, &rq, Some(&data)).await?;
    let mut results = Vec::new();
    loop {
        match receive_message(&mut assoc).await? {
            Incoming::Message(m) => {
                let status = uint(&m.command, tags::STATUS).unwrap_or(0xFFFF);
                if status == STATUS_PENDING || status == 0xFF01 {
                    if let Some(d) = &m.data {
                        results.push(decode_dataset(d, &ts)?);
                    }
                } else {
                    let _ = assoc.release().await;
                    return Ok((results, status));
                }
            }
            _ => return Err(Error::Network("association ended during C-FIND".into())),
        }
    }
}

/// The outcome of a C-MOVE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MoveOutcome {
    pub status: u16,
    pub completed: u16,
    pub failed: u16,
    pub warning: u16,
}

/// C-MOVE (Study Root): asks `called` to send what `identifier` selects to `destination`.
pub async fn move_to(
    address: &str,
    calling: &str,
    called: &str,
    destination: &str,
    identifier: &InMemDicomObject,
) -> Result<MoveOutcome> {
    let model = super::scp::STUDY_ROOT_MOVE;
    let mut assoc = connect(
        address,
        calling,
        called,
        vec![(
            model.into(),
            vec![EXPLICIT_VR_LE.into(), IMPLICIT_VR_LE.into()],
        )],
    )
    .await?;
    let (pc, ts) = accepted(&assoc, model)
        .ok_or_else(|| Error::Network("peer refused the C-MOVE SOP class".into()))?;
    let rq = command(vec![
        ui(tags::AFFECTED_SOP_CLASS_UID, model),
        us(tags::COMMAND_FIELD, C_MOVE_RQ),
        us(tags::MESSAGE_ID, 1),
        us(tags::PRIORITY, 0),
        us(tags::COMMAND_DATA_SET_TYPE, DATA_SET_PRESENT),
        ae(tags::MOVE_DESTINATION, destination),
    ]);
    let data = encode_dataset(identifier, &ts)?;
    send_message(&mut assoc, pc, &rq, Some(&data)).await?;
    loop {
        match receive_message(&mut assoc).await? {
            Incoming::Message(m) => {
                let status = uint(&m.command, tags::STATUS).unwrap_or(0xFFFF);
                if status != STATUS_PENDING {
                    let count = |t| uint(&m.command, t).unwrap_or(0);
                    let outcome = MoveOutcome {
                        status,
                        completed: count(tags::NUMBER_OF_COMPLETED_SUBOPERATIONS),
                        failed: count(tags::NUMBER_OF_FAILED_SUBOPERATIONS),
                        warning: count(tags::NUMBER_OF_WARNING_SUBOPERATIONS),
                    };
                    let _ = assoc.release().await;
                    return Ok(outcome);
                }
            }
            _ => return Err(Error::Network("association ended during C-MOVE".into())),
        }
    }
}
