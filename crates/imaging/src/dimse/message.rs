//! DIMSE messages over a dicom-ul association: command sets (always Implicit VR Little Endian,
//! PS3.7 6.3.1) and their optional data sets, assembled from and split into P-DATA values.
//!
//! dicom-ul provides the Upper Layer (PDUs, P-DATA fragmentation) but not the DIMSE message layer,
//! so this module holds the small amount of glue the standard defines on top of it.

use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use dicom_ul::association::AsyncAssociation;
use dicom_ul::pdu::{PDataValue, PDataValueType};
use dicom_ul::Pdu;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::archive::error_chain;
use crate::error::{Error, Result};

pub const C_STORE_RQ: u16 = 0x0001;
pub const C_STORE_RSP: u16 = 0x8001;
pub const C_FIND_RQ: u16 = 0x0020;
pub const C_FIND_RSP: u16 = 0x8020;
pub const C_MOVE_RQ: u16 = 0x0021;
pub const C_MOVE_RSP: u16 = 0x8021;
pub const C_ECHO_RQ: u16 = 0x0030;
pub const C_ECHO_RSP: u16 = 0x8030;
pub const C_CANCEL_RQ: u16 = 0x0FFF;

/// CommandDataSetType value meaning "no data set follows".
pub const NO_DATA_SET: u16 = 0x0101;
/// CommandDataSetType value meaning "a data set follows".
pub const DATA_SET_PRESENT: u16 = 0x0000;

pub const STATUS_SUCCESS: u16 = 0x0000;
pub const STATUS_PENDING: u16 = 0xFF00;
pub const STATUS_WARNING_SUBOPS: u16 = 0xB000;
pub const STATUS_CANNOT_UNDERSTAND: u16 = 0xC000;
pub const STATUS_IDENTIFIER_MISMATCH: u16 = 0xA900;
pub const STATUS_OUT_OF_RESOURCES: u16 = 0xA700;
pub const STATUS_MOVE_DESTINATION_UNKNOWN: u16 = 0xA801;
pub const STATUS_UNABLE_TO_PROCESS: u16 = 0xC001;
pub const STATUS_SOP_CLASS_NOT_SUPPORTED: u16 = 0x0122;
pub const STATUS_UNRECOGNIZED_OPERATION: u16 = 0x0211;

pub const IMPLICIT_VR_LE: &str = "1.2.840.10008.1.2";
pub const EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1";
pub const EXPLICIT_VR_BE: &str = "1.2.840.10008.1.2.2";
pub const DEFLATED_EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1.99";

/// True for the uncompressed transfer syntaxes, between which data sets can be re-encoded.
pub fn is_native(ts: &str) -> bool {
    matches!(ts, IMPLICIT_VR_LE | EXPLICIT_VR_LE | EXPLICIT_VR_BE)
}

/// One received DIMSE message.
#[derive(Debug)]
pub struct Message {
    pub presentation_context_id: u8,
    pub command: InMemDicomObject,
    pub data: Option<Vec<u8>>,
}

impl Message {
    pub fn command_field(&self) -> Option<u16> {
        uint(&self.command, tags::COMMAND_FIELD)
    }
    pub fn message_id(&self) -> u16 {
        uint(&self.command, tags::MESSAGE_ID).unwrap_or(0)
    }
    pub fn text(&self, tag: Tag) -> Option<String> {
        text(&self.command, tag)
    }
}

pub fn uint(obj: &InMemDicomObject, tag: Tag) -> Option<u16> {
    obj.get(tag)?.to_int::<u16>().ok()
}

pub fn text(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    let e = obj.get(tag)?;
    let s = e.to_str().ok()?;
    let s = s.trim_matches(|c: char| c == ' ' || c == '\0');
    (!s.is_empty()).then(|| s.to_string())
}

/// Builds a command set; the group length is computed by dicom-object.
pub fn command(elements: Vec<DataElement<InMemDicomObject>>) -> InMemDicomObject {
    InMemDicomObject::command_from_element_iter(elements)
}

pub fn us(tag: Tag, value: u16) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, VR::US, PrimitiveValue::from(value))
}

pub fn ui(tag: Tag, value: &str) -> DataElement<InMemDicomObject> {
    // UIDs are padded to even length with NUL, as PS3.5 6.2 requires.
    let mut v = value.to_string();
    if v.len() % 2 == 1 {
        v.push('\0');
    }
    DataElement::new(tag, VR::UI, PrimitiveValue::from(v))
}

pub fn ae(tag: Tag, value: &str) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, VR::AE, PrimitiveValue::from(value.to_string()))
}

pub fn lo(tag: Tag, value: &str) -> DataElement<InMemDicomObject> {
    // ErrorComment is LO: at most 64 characters.
    let v: String = value.chars().take(64).collect();
    DataElement::new(tag, VR::LO, PrimitiveValue::from(v))
}

pub fn encode_command(cmd: &InMemDicomObject) -> Result<Vec<u8>> {
    encode_dataset(cmd, IMPLICIT_VR_LE)
}

pub fn encode_dataset(obj: &InMemDicomObject, ts: &str) -> Result<Vec<u8>> {
    let ts = TransferSyntaxRegistry
        .get(ts)
        .ok_or_else(|| Error::Encoding(format!("unknown transfer syntax {ts}")))?;
    let mut out = Vec::new();
    obj.write_dataset_with_ts(&mut out, ts)
        .map_err(|e| Error::Encoding(error_chain(&e)))?;
    Ok(out)
}

pub fn decode_dataset(bytes: &[u8], ts: &str) -> Result<InMemDicomObject> {
    let ts = TransferSyntaxRegistry
        .get(ts)
        .ok_or_else(|| Error::Encoding(format!("unknown transfer syntax {ts}")))?;
    // Through the guard: a peer's command set or identifier declares its own lengths.
    caravan_dicom_guard::read_dataset(bytes, ts).map_err(|e| Error::Encoding(e.to_string()))
}

/// Sends a command and, if given, its data set. Data sets are split into P-DATA PDUs no larger
/// than the peer accepts by dicom-ul's P-DATA writer.
pub async fn send_message<A>(
    assoc: &mut A,
    presentation_context_id: u8,
    cmd: &InMemDicomObject,
    data: Option<&[u8]>,
) -> Result<()>
where
    A: AsyncAssociation<TcpStream> + Send,
{
    let cmd_bytes = encode_command(cmd)?;
    let max = assoc.peer_max_pdu_length();
    // Small messages (C-FIND identifiers, responses) travel in one PDU with the command, which
    // halves the number of writes on the hot path.
    let fits = |n: usize| max == 0 || n + 12 + 12 <= max as usize;
    match data {
        Some(d) if fits(cmd_bytes.len() + d.len()) => {
            AsyncAssociation::send(
                assoc,
                &Pdu::PData {
                    data: vec![
                        PDataValue {
                            presentation_context_id,
                            value_type: PDataValueType::Command,
                            is_last: true,
                            data: cmd_bytes,
                        },
                        PDataValue {
                            presentation_context_id,
                            value_type: PDataValueType::Data,
                            is_last: true,
                            data: d.to_vec(),
                        },
                    ],
                },
            )
            .await
            .map_err(|e| Error::Network(error_chain(&e)))?;
        }
        _ => {
            AsyncAssociation::send(
                assoc,
                &Pdu::PData {
                    data: vec![PDataValue {
                        presentation_context_id,
                        value_type: PDataValueType::Command,
                        is_last: true,
                        data: cmd_bytes,
                    }],
                },
            )
            .await
            .map_err(|e| Error::Network(error_chain(&e)))?;
            if let Some(d) = data {
                let mut writer = assoc.send_pdata(presentation_context_id);
                writer.write_all(d).await?;
                writer.finish().await?;
            }
        }
    }
    Ok(())
}

/// What arrived on an association.
#[derive(Debug)]
pub enum Incoming {
    Message(Message),
    Release,
    Abort,
}

/// Receives PDUs until one whole DIMSE message (command plus data set, if announced) has
/// arrived, or the peer releases or aborts.
/// A command set is a few hundred bytes; more is not a DIMSE peer.
pub const MAX_COMMAND_BYTES: usize = 1 << 20;
/// A data set is held in memory until it is decoded and stored: a peer may not send more than this in one
/// message (512 MiB, the default bound of a STOW-RS body, which is held in memory too).
pub const MAX_DATA_BYTES: usize = 512 * 1024 * 1024;

/// Appends the fragments of a message's command or data set, refusing once they would pass `limit` (a peer that
/// never sets the last-fragment bit would otherwise grow the buffer until the node runs out of memory).
fn append_bounded(buf: &mut Vec<u8>, piece: &[u8], limit: usize, what: &str) -> Result<()> {
    if buf.len().saturating_add(piece.len()) > limit {
        return Err(Error::Network(format!(
            "{what} larger than {limit} bytes; association aborted"
        )));
    }
    buf.extend_from_slice(piece);
    Ok(())
}

pub async fn receive_message<A>(assoc: &mut A) -> Result<Incoming>
where
    A: AsyncAssociation<TcpStream> + Send,
{
    let mut cmd_bytes: Vec<u8> = Vec::new();
    let mut command: Option<(u8, InMemDicomObject)> = None;
    let mut data: Vec<u8> = Vec::new();
    loop {
        let pdu = AsyncAssociation::receive(assoc)
            .await
            .map_err(|e| Error::Network(error_chain(&e)))?;
        match pdu {
            Pdu::PData { data: values } => {
                for pdv in values {
                    match pdv.value_type {
                        PDataValueType::Command => {
                            append_bounded(
                                &mut cmd_bytes,
                                &pdv.data,
                                MAX_COMMAND_BYTES,
                                "command set",
                            )?;
                            if pdv.is_last {
                                let cmd = decode_dataset(&cmd_bytes, IMPLICIT_VR_LE)?;
                                let has_data = uint(&cmd, tags::COMMAND_DATA_SET_TYPE)
                                    .is_some_and(|t| t != NO_DATA_SET);
                                if !has_data {
                                    return Ok(Incoming::Message(Message {
                                        presentation_context_id: pdv.presentation_context_id,
                                        command: cmd,
                                        data: None,
                                    }));
                                }
                                command = Some((pdv.presentation_context_id, cmd));
                            }
                        }
                        PDataValueType::Data => {
                            if data.is_empty() && pdv.data.len() <= MAX_DATA_BYTES {
                                data = pdv.data;
                            } else {
                                append_bounded(&mut data, &pdv.data, MAX_DATA_BYTES, "data set")?;
                            }
                            if pdv.is_last {
                                let Some((pc, cmd)) = command.take() else {
                                    return Err(Error::Network(
                                        "data set received before its command".into(),
                                    ));
                                };
                                return Ok(Incoming::Message(Message {
                                    presentation_context_id: pc,
                                    command: cmd,
                                    data: Some(std::mem::take(&mut data)),
                                }));
                            }
                        }
                    }
                }
            }
            Pdu::ReleaseRQ => return Ok(Incoming::Release),
            Pdu::AbortRQ { .. } => return Ok(Incoming::Abort),
            other => {
                return Err(Error::Network(format!(
                    "unexpected PDU during association: {}",
                    pdu_name(&other)
                )))
            }
        }
    }
}

fn pdu_name(pdu: &Pdu) -> &'static str {
    match pdu {
        Pdu::Unknown { .. } => "unknown",
        Pdu::AssociationRQ(_) => "A-ASSOCIATE-RQ",
        Pdu::AssociationAC(_) => "A-ASSOCIATE-AC",
        Pdu::AssociationRJ(_) => "A-ASSOCIATE-RJ",
        Pdu::PData { .. } => "P-DATA",
        Pdu::ReleaseRQ => "A-RELEASE-RQ",
        Pdu::ReleaseRP => "A-RELEASE-RP",
        Pdu::AbortRQ { .. } => "A-ABORT",
    }
}

#[cfg(test)]
mod bound_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn fragments_are_refused_past_the_limit() {
        let mut buf = Vec::new();
        append_bounded(&mut buf, &[1; 6], 10, "data set").unwrap();
        append_bounded(&mut buf, &[2; 4], 10, "data set").unwrap();
        assert_eq!(buf.len(), 10);
        let e = append_bounded(&mut buf, &[3], 10, "data set").unwrap_err();
        assert!(
            e.to_string().contains("data set larger than 10 bytes"),
            "{e}"
        );
        assert_eq!(buf.len(), 10, "nothing of the refused fragment is kept");
    }
}
