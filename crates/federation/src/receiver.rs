//! The inbound side: check an incoming request completely, store the envelope, and only then acknowledge.
//!
//! Order of checks: body size, directory freshness, RFC 9421 signature (key from the directory, digest,
//! time window), nonce replay, envelope (signature, sender, key at `created`, type, addressee), envelope
//! sender = request signer. Then the [`InboxStore`] stores the envelope durably, de-duplicating on its id,
//! and the HTTP 200 acknowledgment is sent. A duplicate is acknowledged the same way without being processed
//! again, so a sender that lost an acknowledgment can safely send again.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::directory::SharedDirectory;
use crate::envelope::{self, EnvelopeError, EnvelopeLimits, MessageType, SignedEnvelope};
use crate::httpsig::{self, HttpSigError, ReplayGuard, RequestParts, VerifyPolicy};
use crate::keys::Kid;
use crate::problem::{Problem, CONTENT_TYPE};
use crate::NodeId;

/// The path of the inbox endpoint, under a node's `base_url`.
pub const INBOX_PATH: &str = "/federation/v1/inbox";

/// What the store did with an envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreOutcome {
    /// New: stored durably, to be processed.
    Stored,
    /// Its id was already stored: nothing done.
    Duplicate,
}

/// A store failure (database down, disk full...): the sender will retry.
pub type InboxStoreError = Box<dyn std::error::Error + Send + Sync>;

/// Where verified envelopes go. The node implements this on its database.
#[async_trait]
pub trait InboxStore: Send + Sync {
    /// Stores the envelope if its id is new (e.g. `INSERT ... ON CONFLICT (id) DO NOTHING`), durably, before
    /// returning [`StoreOutcome::Stored`]; returns [`StoreOutcome::Duplicate`] if the id was already there.
    async fn store(&self, envelope: &SignedEnvelope) -> Result<StoreOutcome, InboxStoreError>;
}

/// Why an incoming request was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    /// The body is larger than the limit.
    #[error("body of {size} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Size.
        size: usize,
        /// Limit.
        max: usize,
    },
    /// The request signature was refused.
    #[error("request signature: {0}")]
    Signature(#[from] HttpSigError),
    /// The envelope was refused.
    #[error("envelope: {0}")]
    Envelope(#[from] EnvelopeError),
    /// The store failed.
    #[error("store: {0}")]
    Store(String),
}

impl ReceiveError {
    /// The problem object to answer with.
    pub fn problem(&self) -> Problem {
        match self {
            ReceiveError::TooLarge { .. } => Problem::new(
                "too_large",
                413,
                false,
                "Body too large",
                Some(self.to_string()),
            ),
            ReceiveError::Signature(e) => Problem::from(e),
            ReceiveError::Envelope(e) => Problem::from(e),
            // The cause stays in the log; the client only learns to retry.
            ReceiveError::Store(_) => Problem::new(
                "store_unavailable",
                503,
                true,
                "Receiver cannot store now",
                None,
            ),
        }
    }
}

/// An accepted envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// Envelope id.
    pub id: Uuid,
    /// Sender.
    pub from: NodeId,
    /// Type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Stored or duplicate.
    pub status: StoreOutcome,
}

/// Configuration of a node's inbox.
#[derive(Debug, Clone)]
pub struct ReceiverConfig {
    /// This node's id.
    pub me: NodeId,
    /// This node's `base_url` as the directory publishes it (senders sign `base_url + INBOX_PATH`).
    pub base_url: String,
    /// Request signature policy.
    pub policy: VerifyPolicy,
    /// Envelope limits (also the body size limit).
    pub limits: EnvelopeLimits,
}

impl ReceiverConfig {
    /// Defaults for node `me` reachable at `base_url`.
    pub fn new(me: NodeId, base_url: impl Into<String>) -> ReceiverConfig {
        ReceiverConfig {
            me,
            base_url: base_url.into(),
            policy: VerifyPolicy::default(),
            limits: EnvelopeLimits::default(),
        }
    }

    /// The target URI senders sign.
    pub fn target_uri(&self) -> String {
        format!("{}{INBOX_PATH}", self.base_url.trim_end_matches('/'))
    }
}

/// The inbox: verification, replay protection, store.
pub struct Receiver<S, R> {
    config: ReceiverConfig,
    target_uri: String,
    directory: SharedDirectory,
    store: S,
    replay: R,
}

impl<S: InboxStore, R: ReplayGuard> Receiver<S, R> {
    /// A receiver.
    pub fn new(config: ReceiverConfig, directory: SharedDirectory, store: S, replay: R) -> Self {
        let target_uri = config.target_uri();
        Receiver {
            config,
            target_uri,
            directory,
            store,
            replay,
        }
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Checks and stores one request at the current time.
    pub async fn receive(
        &self,
        method: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Receipt, ReceiveError> {
        self.receive_at(method, headers, body, Utc::now()).await
    }

    /// Checks and stores one request at time `now`.
    pub async fn receive_at(
        &self,
        method: &str,
        headers: &HeaderMap,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Receipt, ReceiveError> {
        let max = self.config.limits.max_bytes;
        if body.len() > max {
            return Err(ReceiveError::TooLarge {
                size: body.len(),
                max,
            });
        }
        let dir = self.directory.get();
        let parts = RequestParts {
            method,
            target_uri: &self.target_uri,
            headers,
            body,
        };
        let ts = now.timestamp();
        let verified = httpsig::verify_request(&parts, &self.config.policy, ts, |keyid| {
            dir.check_fresh(now).map_err(|reason| HttpSigError::Key {
                keyid: keyid.to_string(),
                reason,
            })?;
            let kid = Kid::from_string(keyid);
            dir.key_by_kid(&kid, now)
                .map(|(member, key)| (key, member.node_id.clone()))
                .map_err(|reason| HttpSigError::Key {
                    keyid: keyid.to_string(),
                    reason,
                })
        })?;
        if let Some(nonce) = &verified.nonce {
            self.replay
                .check_and_remember(
                    &verified.keyid,
                    nonce,
                    verified.created + self.config.policy.nonce_lifetime_secs(),
                    ts,
                )
                .await?;
        }
        let env = envelope::verify(body, &dir, &self.config.me, now, &self.config.limits)?;
        if env.envelope.from != verified.signer {
            return Err(EnvelopeError::SenderMismatch {
                envelope_from: env.envelope.from.to_string(),
                transport_sender: verified.signer.to_string(),
            }
            .into());
        }
        let status = self
            .store
            .store(&env)
            .await
            .map_err(|e| ReceiveError::Store(e.to_string()))?;
        Ok(Receipt {
            id: env.envelope.id,
            from: env.envelope.from.clone(),
            kind: env.envelope.kind.name().to_string(),
            status,
        })
    }

    /// Handles one request and builds the HTTP response: 200 with the receipt, or a problem object.
    /// Refusals are logged with their code and the sender's key id, never with body content.
    pub async fn handle(
        &self,
        method: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> http::Response<String> {
        match self.receive(method, headers, body).await {
            Ok(receipt) => {
                tracing::debug!(envelope_id = %receipt.id, from = %receipt.from, kind = %receipt.kind, status = ?receipt.status, "envelope accepted");
                let json = serde_json::to_string(&receipt).unwrap_or_else(|_| "{}".into());
                response(StatusCode::OK, "application/json", json)
            }
            Err(e) => {
                let problem = e.problem();
                if let ReceiveError::Store(cause) = &e {
                    tracing::error!(code = %problem.code, cause = %cause, "inbox store failed");
                } else {
                    let keyid = httpsig::parse_signature(headers, &self.config.policy.label)
                        .ok()
                        .and_then(|(p, _)| p.keyid().map(str::to_string))
                        .unwrap_or_default();
                    tracing::warn!(code = %problem.code, keyid = %keyid, detail = problem.detail.as_deref().unwrap_or(""), "federation request refused");
                }
                let status =
                    StatusCode::from_u16(problem.status).unwrap_or(StatusCode::BAD_REQUEST);
                response(status, CONTENT_TYPE, problem.to_json())
            }
        }
    }
}

fn response(
    status: StatusCode,
    content_type: &'static str,
    body: String,
) -> http::Response<String> {
    let mut resp = http::Response::new(body);
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    resp
}

/// Everything the envelope module registers, for documentation and `caravan directory` checks.
pub fn known_types() -> impl Iterator<Item = &'static str> {
    MessageType::ALL.into_iter().map(MessageType::name)
}
