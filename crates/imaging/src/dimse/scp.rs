//! The DICOM SCP: C-ECHO, C-STORE, C-FIND and C-MOVE over dicom-ul, one tokio task per
//! association.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dicom_dictionary_std::{tags, uids};
use dicom_ul::association::server::ServerAssociationOptions;
use dicom_ul::association::AsyncServerAssociation;
use dicom_ul::pdu::PresentationContextResultReason;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::message::*;
use super::scu;
use crate::archive::{error_chain, part10_from_dataset, AccessAction, Archive, StoreOutcome};
use crate::error::{Error, Result};
use crate::query::{Level, Query, ReturnKeys};

/// Query/Retrieve SOP classes the SCP serves.
pub const PATIENT_ROOT_FIND: &str = "1.2.840.10008.5.1.4.1.2.1.1";
pub const PATIENT_ROOT_MOVE: &str = "1.2.840.10008.5.1.4.1.2.1.2";
pub const STUDY_ROOT_FIND: &str = "1.2.840.10008.5.1.4.1.2.2.1";
pub const STUDY_ROOT_MOVE: &str = "1.2.840.10008.5.1.4.1.2.2.2";

/// Whether `uid` is a standard storage SOP class (retired ones included, since old modalities
/// still send them), by its name in dicom-rs's SOP class dictionary.
pub fn is_storage_sop_class(uid: &str) -> bool {
    use dicom_core::dictionary::UidDictionary;
    let uid = uid.trim_end_matches('\0');
    dicom_dictionary_std::StandardSopClassDictionary
        .by_uid(uid)
        .is_some_and(|e| {
            uid.starts_with("1.2.840.10008.5.1.4.")
                && e.name.contains("Storage")
                && !e.name.contains("Commitment")
        })
}

/// Configuration of the SCP.
#[derive(Debug, Clone)]
pub struct ScpConfig {
    /// Our AE title (default `CARAVAN`).
    pub ae_title: String,
    /// Refuse associations whose called AE title is not ours.
    pub require_called_ae_title: bool,
    /// Known C-MOVE destinations: AE title → `host:port`.
    pub move_destinations: HashMap<String, String>,
    /// Largest PDU we accept.
    pub max_pdu_length: u32,
    /// Idle time after which an association is dropped.
    pub timeout: Duration,
}

impl Default for ScpConfig {
    fn default() -> Self {
        ScpConfig {
            ae_title: "CARAVAN".into(),
            require_called_ae_title: false,
            move_destinations: HashMap::new(),
            max_pdu_length: 262_144,
            timeout: Duration::from_secs(120),
        }
    }
}

/// A running SCP.
#[derive(Debug)]
pub struct ScpHandle {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl ScpHandle {
    /// The address the SCP listens on (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting associations and waits for the accept loop to end. Associations in
    /// progress finish on their own.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }

    /// Waits until the SCP stops (it stops only when [`ScpHandle::stop`] is called elsewhere or
    /// the runtime shuts down).
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

/// The DICOM SCP.
pub struct Scp;

impl Scp {
    /// Binds `addr` and starts serving on the current tokio runtime.
    pub async fn bind(addr: SocketAddr, archive: Archive, config: ScpConfig) -> Result<ScpHandle> {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let (stop_tx, mut stop_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            options: server_options(&config),
            archive,
            config,
        });
        tracing::info!(addr = %local, ae = %shared.config.ae_title, "DICOM SCP listening");
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop_rx.changed() => break,
                    accepted = listener.accept() => match accepted {
                        Ok((stream, peer)) => {
                            let shared = shared.clone();
                            tokio::spawn(async move {
                                if let Err(e) = serve_association(shared, stream, peer).await {
                                    tracing::warn!(%peer, error = %e, "association ended with an error");
                                }
                            });
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
            }
        });
        Ok(ScpHandle {
            addr: local,
            stop: stop_tx,
            task,
        })
    }
}

type Options = ServerAssociationOptions<
    'static,
    dicom_ul::association::server::AcceptAny,
    dicom_ul::association::server::DefaultNegotiation,
>;

struct Shared {
    options: Options,
    archive: Archive,
    config: ScpConfig,
}

fn server_options(config: &ScpConfig) -> Options {
    let options = ServerAssociationOptions::new()
        .ae_title(config.ae_title.clone())
        .max_pdu_length(config.max_pdu_length)
        .read_timeout(config.timeout)
        .write_timeout(config.timeout)
        .with_abstract_syntax(uids::VERIFICATION)
        .with_abstract_syntax(PATIENT_ROOT_FIND)
        .with_abstract_syntax(PATIENT_ROOT_MOVE)
        .with_abstract_syntax(STUDY_ROOT_FIND)
        .with_abstract_syntax(STUDY_ROOT_MOVE)
        // dicom-rs's dictionary cannot list its storage SOP classes, so presentation contexts
        // are accepted for any abstract syntax and each message is checked against the SOP
        // classes we serve (`is_storage_sop_class`, the Q/R models, Verification).
        .promiscuous(true);
    options
}

/// Checks the called AE title here rather than with dicom-ul's access control type, so the
/// choice stays a runtime setting.
fn called_ae_ok(config: &ScpConfig, called: &str) -> bool {
    !config.require_called_ae_title || called.trim() == config.ae_title
}

async fn serve_association(shared: Arc<Shared>, stream: TcpStream, peer: SocketAddr) -> Result<()> {
    // Without TCP_NODELAY every small C-STORE response waits on Nagle's algorithm and delayed
    // ACKs: measured here, 92 s instead of ~3 s for 1,000 instances.
    stream.set_nodelay(true)?;
    let mut assoc = shared
        .options
        .establish_async(stream)
        .await
        .map_err(|e| Error::Network(error_chain(&e)))?;
    if !called_ae_ok(&shared.config, assoc.called_ae_title()) {
        tracing::warn!(%peer, "association refused: wrong called AE title");
        let _ = assoc.abort().await;
        return Ok(());
    }
    let calling = dicom_ul::association::Association::peer_ae_title(&assoc)
        .trim()
        .to_string();
    let principal = format!("dicom:{calling}");
    tracing::debug!(%peer, calling = %calling, "association established");
    loop {
        let incoming = match receive_message(&mut assoc).await {
            Ok(i) => i,
            Err(e) => {
                let _ = assoc.abort().await;
                return Err(e);
            }
        };
        let msg = match incoming {
            Incoming::Message(m) => m,
            Incoming::Release => {
                let _ = assoc.send(&dicom_ul::Pdu::ReleaseRP).await;
                return Ok(());
            }
            Incoming::Abort => return Ok(()),
        };
        let Some(pc) = assoc
            .presentation_contexts()
            .iter()
            .find(|pc| pc.id == msg.presentation_context_id)
            .filter(|pc| pc.reason == PresentationContextResultReason::Acceptance)
            .map(|pc| (pc.abstract_syntax.clone(), pc.transfer_syntax.clone()))
        else {
            let _ = assoc.abort().await;
            return Err(Error::Network(format!(
                "message on unknown presentation context {}",
                msg.presentation_context_id
            )));
        };
        let (abstract_syntax, ts) = pc;
        match msg.command_field() {
            Some(C_ECHO_RQ) => {
                let rsp = response(
                    C_ECHO_RSP,
                    &msg,
                    uids::VERIFICATION,
                    None,
                    STATUS_SUCCESS,
                    None,
                );
                send_message(&mut assoc, msg.presentation_context_id, &rsp, None).await?;
            }
            Some(C_STORE_RQ) if !is_storage_sop_class(&abstract_syntax) => {
                let sop_class = msg.text(tags::AFFECTED_SOP_CLASS_UID).unwrap_or_default();
                let rsp = response(
                    C_STORE_RSP,
                    &msg,
                    &sop_class,
                    msg.text(tags::AFFECTED_SOP_INSTANCE_UID).as_deref(),
                    STATUS_SOP_CLASS_NOT_SUPPORTED,
                    Some("not a storage SOP class"),
                );
                send_message(&mut assoc, msg.presentation_context_id, &rsp, None).await?;
            }
            Some(C_STORE_RQ) => {
                handle_store(&shared, &mut assoc, msg, &ts, &calling, &principal).await?;
            }
            Some(C_FIND_RQ | C_MOVE_RQ)
                if ![
                    PATIENT_ROOT_FIND,
                    STUDY_ROOT_FIND,
                    PATIENT_ROOT_MOVE,
                    STUDY_ROOT_MOVE,
                ]
                .contains(&abstract_syntax.as_str()) =>
            {
                let field = msg.command_field().unwrap_or(0) | 0x8000;
                let rsp = response(
                    field,
                    &msg,
                    &abstract_syntax,
                    None,
                    STATUS_SOP_CLASS_NOT_SUPPORTED,
                    Some("unsupported query/retrieve model"),
                );
                send_message(&mut assoc, msg.presentation_context_id, &rsp, None).await?;
            }
            Some(C_FIND_RQ) => {
                handle_find(&shared, &mut assoc, msg, &abstract_syntax, &ts, &principal).await?;
            }
            Some(C_MOVE_RQ) => {
                handle_move(
                    &shared,
                    &mut assoc,
                    msg,
                    &abstract_syntax,
                    &ts,
                    &calling,
                    &principal,
                )
                .await?;
            }
            // Our C-FIND and C-MOVE run to completion before the next message is read, so a
            // cancel arrives after the operation it names and there is nothing left to stop.
            Some(C_CANCEL_RQ) => {}
            other => {
                tracing::warn!(%peer, command = ?other, "unsupported DIMSE command");
                let rsp = command(vec![
                    us(tags::COMMAND_FIELD, other.unwrap_or(0) | 0x8000),
                    us(tags::MESSAGE_ID_BEING_RESPONDED_TO, msg.message_id()),
                    us(tags::COMMAND_DATA_SET_TYPE, NO_DATA_SET),
                    us(tags::STATUS, STATUS_UNRECOGNIZED_OPERATION),
                ]);
                send_message(&mut assoc, msg.presentation_context_id, &rsp, None).await?;
            }
        }
    }
}

/// Builds a response command.
fn response(
    field: u16,
    rq: &Message,
    sop_class: &str,
    sop_instance: Option<&str>,
    status: u16,
    comment: Option<&str>,
) -> dicom_object::InMemDicomObject {
    let mut elements = vec![
        ui(tags::AFFECTED_SOP_CLASS_UID, sop_class),
        us(tags::COMMAND_FIELD, field),
        us(tags::MESSAGE_ID_BEING_RESPONDED_TO, rq.message_id()),
        us(tags::COMMAND_DATA_SET_TYPE, NO_DATA_SET),
        us(tags::STATUS, status),
    ];
    if let Some(sop) = sop_instance {
        elements.push(ui(tags::AFFECTED_SOP_INSTANCE_UID, sop));
    }
    if let Some(c) = comment {
        elements.push(lo(tags::ERROR_COMMENT, c));
    }
    command(elements)
}

async fn handle_store(
    shared: &Shared,
    assoc: &mut AsyncServerAssociation<TcpStream>,
    msg: Message,
    ts: &str,
    calling: &str,
    principal: &str,
) -> Result<()> {
    let sop_class = msg.text(tags::AFFECTED_SOP_CLASS_UID).unwrap_or_default();
    let sop_instance = msg
        .text(tags::AFFECTED_SOP_INSTANCE_UID)
        .unwrap_or_default();
    let (status, comment) = match &msg.data {
        None => (
            STATUS_CANNOT_UNDERSTAND,
            Some("C-STORE without a data set".to_string()),
        ),
        Some(data) => match part10_from_dataset(ts, &sop_class, &sop_instance, calling, data) {
            Err(e) => (STATUS_CANNOT_UNDERSTAND, Some(e.to_string())),
            Ok(bytes) => match shared.archive.store(Bytes::from(bytes), principal).await {
                Ok(StoreOutcome::Stored(_)) | Ok(StoreOutcome::AlreadyStored(_)) => {
                    (STATUS_SUCCESS, None)
                }
                Err(Error::Rejected(reason)) => {
                    tracing::info!(reason = %reason, "C-STORE rejected");
                    (STATUS_CANNOT_UNDERSTAND, Some(reason.to_string()))
                }
                Err(e) => {
                    tracing::error!(error = %e, "C-STORE failed");
                    (STATUS_OUT_OF_RESOURCES, Some(e.to_string()))
                }
            },
        },
    };
    let rsp = response(
        C_STORE_RSP,
        &msg,
        &sop_class,
        Some(&sop_instance),
        status,
        comment.as_deref(),
    );
    send_message(assoc, msg.presentation_context_id, &rsp, None).await
}

fn root_allows(abstract_syntax: &str, level: Level) -> bool {
    // The Study Root model has no patient level (PS3.4 C.6.2).
    !(level == Level::Patient
        && (abstract_syntax == STUDY_ROOT_FIND || abstract_syntax == STUDY_ROOT_MOVE))
}

async fn handle_find(
    shared: &Shared,
    assoc: &mut AsyncServerAssociation<TcpStream>,
    msg: Message,
    abstract_syntax: &str,
    ts: &str,
    principal: &str,
) -> Result<()> {
    let pc = msg.presentation_context_id;
    let failure = |status: u16, comment: String| {
        response(
            C_FIND_RSP,
            &msg,
            abstract_syntax,
            None,
            status,
            Some(&comment),
        )
    };
    let identifier = match msg.data.as_deref().map(|d| decode_dataset(d, ts)) {
        Some(Ok(obj)) => obj,
        Some(Err(e)) => {
            let rsp = failure(STATUS_IDENTIFIER_MISMATCH, e.to_string());
            return send_message(assoc, pc, &rsp, None).await;
        }
        None => {
            let rsp = failure(
                STATUS_IDENTIFIER_MISMATCH,
                "C-FIND without identifier".into(),
            );
            return send_message(assoc, pc, &rsp, None).await;
        }
    };
    let query = match Query::from_identifier(&identifier) {
        Ok(q) if root_allows(abstract_syntax, q.level) => q,
        Ok(_) => {
            let rsp = failure(
                STATUS_IDENTIFIER_MISMATCH,
                "PATIENT level is not part of the Study Root model".into(),
            );
            return send_message(assoc, pc, &rsp, None).await;
        }
        Err(e) => {
            let rsp = failure(STATUS_IDENTIFIER_MISMATCH, e.to_string());
            return send_message(assoc, pc, &rsp, None).await;
        }
    };
    let matches = match shared.archive.query(&query, principal).await {
        Ok(m) => m,
        Err(e @ Error::InvalidQuery(_)) => {
            let rsp = failure(STATUS_IDENTIFIER_MISMATCH, e.to_string());
            return send_message(assoc, pc, &rsp, None).await;
        }
        Err(e) => {
            let rsp = failure(STATUS_UNABLE_TO_PROCESS, e.to_string());
            return send_message(assoc, pc, &rsp, None).await;
        }
    };
    for m in matches {
        let mut obj = m.attributes;
        obj.put(dicom_core::DataElement::new(
            tags::QUERY_RETRIEVE_LEVEL,
            dicom_core::VR::CS,
            dicom_core::PrimitiveValue::from(query.level.as_str()),
        ));
        // The index holds decoded text; UTF-8 says so to the peer.
        obj.put(dicom_core::DataElement::new(
            tags::SPECIFIC_CHARACTER_SET,
            dicom_core::VR::CS,
            dicom_core::PrimitiveValue::from("ISO_IR 192"),
        ));
        let data = encode_dataset(&obj, ts)?;
        let rsp = command(vec![
            ui(tags::AFFECTED_SOP_CLASS_UID, abstract_syntax),
            us(tags::COMMAND_FIELD, C_FIND_RSP),
            us(tags::MESSAGE_ID_BEING_RESPONDED_TO, msg.message_id()),
            us(tags::COMMAND_DATA_SET_TYPE, DATA_SET_PRESENT),
            us(tags::STATUS, STATUS_PENDING),
        ]);
        send_message(assoc, pc, &rsp, Some(&data)).await?;
    }
    let rsp = response(
        C_FIND_RSP,
        &msg,
        abstract_syntax,
        None,
        STATUS_SUCCESS,
        None,
    );
    send_message(assoc, pc, &rsp, None).await
}

#[allow(clippy::too_many_arguments)]
fn move_response(
    rq: &Message,
    abstract_syntax: &str,
    status: u16,
    remaining: Option<u16>,
    completed: u16,
    failed: u16,
    warning: u16,
    comment: Option<&str>,
) -> dicom_object::InMemDicomObject {
    let mut elements = vec![
        ui(tags::AFFECTED_SOP_CLASS_UID, abstract_syntax),
        us(tags::COMMAND_FIELD, C_MOVE_RSP),
        us(tags::MESSAGE_ID_BEING_RESPONDED_TO, rq.message_id()),
        us(tags::COMMAND_DATA_SET_TYPE, NO_DATA_SET),
        us(tags::STATUS, status),
        us(tags::NUMBER_OF_COMPLETED_SUBOPERATIONS, completed),
        us(tags::NUMBER_OF_FAILED_SUBOPERATIONS, failed),
        us(tags::NUMBER_OF_WARNING_SUBOPERATIONS, warning),
    ];
    if let Some(r) = remaining {
        elements.push(us(tags::NUMBER_OF_REMAINING_SUBOPERATIONS, r));
    }
    if let Some(c) = comment {
        elements.push(lo(tags::ERROR_COMMENT, c));
    }
    command(elements)
}

async fn handle_move(
    shared: &Shared,
    assoc: &mut AsyncServerAssociation<TcpStream>,
    msg: Message,
    abstract_syntax: &str,
    ts: &str,
    calling: &str,
    principal: &str,
) -> Result<()> {
    let pc = msg.presentation_context_id;
    let fail = |status: u16, comment: &str| {
        move_response(&msg, abstract_syntax, status, None, 0, 0, 0, Some(comment))
    };
    let destination = msg.text(tags::MOVE_DESTINATION).unwrap_or_default();
    let Some(address) = shared.config.move_destinations.get(&destination).cloned() else {
        let rsp = fail(
            STATUS_MOVE_DESTINATION_UNKNOWN,
            &format!("unknown move destination {destination:?}"),
        );
        return send_message(assoc, pc, &rsp, None).await;
    };
    let identifier = match msg.data.as_deref().map(|d| decode_dataset(d, ts)) {
        Some(Ok(obj)) => obj,
        Some(Err(e)) => {
            let rsp = fail(STATUS_IDENTIFIER_MISMATCH, &e.to_string());
            return send_message(assoc, pc, &rsp, None).await;
        }
        None => {
            let rsp = fail(STATUS_IDENTIFIER_MISMATCH, "C-MOVE without identifier");
            return send_message(assoc, pc, &rsp, None).await;
        }
    };
    let records =
        match move_selection(&shared.archive, &identifier, abstract_syntax, principal).await {
            Ok(r) => r,
            Err(e) => {
                let rsp = fail(STATUS_IDENTIFIER_MISMATCH, &e.to_string());
                return send_message(assoc, pc, &rsp, None).await;
            }
        };
    let total = records.len();
    let mut completed = 0u16;
    let mut failed = 0u16;
    if total > 0 {
        let mut sender = match scu::StoreSession::open(
            &address,
            &shared.config.ae_title,
            &destination,
            records
                .iter()
                .map(|r| (r.sop_class_uid.as_str(), r.transfer_syntax.as_str())),
        )
        .await
        {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(destination = %destination, error = %e, "C-MOVE destination unreachable");
                let rsp = move_response(
                    &msg,
                    abstract_syntax,
                    STATUS_UNABLE_TO_PROCESS,
                    None,
                    0,
                    total.min(u16::MAX as usize) as u16,
                    0,
                    Some(&format!("cannot reach {destination}: {e}")),
                );
                return send_message(assoc, pc, &rsp, None).await;
            }
        };
        for (n, record) in records.iter().enumerate() {
            let ok = match shared
                .archive
                .read(record, AccessAction::Retrieve, principal)
                .await
            {
                Ok(bytes) => sender
                    .store_part10(record, &bytes, Some((calling, msg.message_id())))
                    .await
                    .map(|status| status == STATUS_SUCCESS || (status & 0xF000) == 0xB000)
                    .unwrap_or(false),
                Err(_) => false,
            };
            if ok {
                completed = completed.saturating_add(1);
            } else {
                failed = failed.saturating_add(1);
            }
            let remaining = (total - n - 1).min(u16::MAX as usize) as u16;
            if remaining > 0 {
                let rsp = move_response(
                    &msg,
                    abstract_syntax,
                    STATUS_PENDING,
                    Some(remaining),
                    completed,
                    failed,
                    0,
                    None,
                );
                send_message(assoc, pc, &rsp, None).await?;
            }
        }
        sender.release().await;
    }
    let status = if failed == 0 {
        STATUS_SUCCESS
    } else {
        STATUS_WARNING_SUBOPS
    };
    let rsp = move_response(
        &msg,
        abstract_syntax,
        status,
        None,
        completed,
        failed,
        0,
        None,
    );
    send_message(assoc, pc, &rsp, None).await
}

/// The instances a C-MOVE identifier selects.
async fn move_selection(
    archive: &Archive,
    identifier: &dicom_object::InMemDicomObject,
    abstract_syntax: &str,
    principal: &str,
) -> Result<Vec<crate::archive::InstanceRecord>> {
    let base = Query::from_identifier(identifier)?;
    if !root_allows(abstract_syntax, base.level) {
        return Err(Error::InvalidQuery(
            "PATIENT level is not part of the Study Root model".into(),
        ));
    }
    let mut query = Query::new(Level::Image);
    query.filters = base.filters;
    query.returns = ReturnKeys::Exactly(vec![tags::SOP_INSTANCE_UID]);
    let matches = archive.query(&query, principal).await?;
    let mut records = Vec::with_capacity(matches.len());
    for m in matches {
        if let Some(sop) = text(&m.attributes, tags::SOP_INSTANCE_UID) {
            if let Some(r) = archive.instance(&sop).await? {
                records.push(r);
            }
        }
    }
    Ok(records)
}
