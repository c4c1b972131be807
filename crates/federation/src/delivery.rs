//! The outbox delivery engine: every envelope the node writes to its outbox reaches its destination, in
//! order, exactly once as far as the receiver's processing is concerned.
//!
//! - One worker per destination, strictly in order (head of line): the next message is sent only after the
//!   previous one was acknowledged or dead-lettered.
//! - Failed attempts are retried with capped exponential backoff and jitter; after `max_attempts` attempts or
//!   `max_age` since enqueueing, or a refusal the receiver marks as not retryable, the message is
//!   dead-lettered (kept for the admin's retry button, no longer blocking the line).
//! - All state lives behind [`OutboxStore`], which the node implements on its database (the outbox row is
//!   written in the same transaction as the change that causes it). Killing the process at any point and
//!   starting again resumes where it stopped: a message whose acknowledgment was lost is sent again and the
//!   receiver, which de-duplicates on the envelope id, acknowledges it as a duplicate.
//!
//! Pattern from Lemmy's `crates/apub/send` (per-destination workers with persisted progress) rather than an
//! in-memory retry queue, which loses messages on restart.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::{HeaderMap, HeaderValue};
use rand::Rng;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::directory::SharedDirectory;
use crate::httpsig::RequestSigner;
use crate::problem::Problem;
use crate::receiver::INBOX_PATH;
use crate::NodeId;

/// A store failure; the engine logs it and tries again after the poll interval.
pub type OutboxStoreError = Box<dyn std::error::Error + Send + Sync>;

/// One pending outbox row.
#[derive(Debug, Clone)]
pub struct OutboxItem {
    /// The envelope id (the row's key).
    pub envelope_id: Uuid,
    /// Destination node.
    pub destination: NodeId,
    /// The signed envelope bytes, sent as the request body.
    pub envelope: Bytes,
    /// Failed attempts so far.
    pub attempts: u32,
    /// When the row was written.
    pub enqueued_at: DateTime<Utc>,
    /// Not to be sent before this instant.
    pub next_attempt_at: DateTime<Utc>,
}

/// The outbox, as the delivery engine sees it. The node implements this on its database.
#[async_trait]
pub trait OutboxStore: Send + Sync + 'static {
    /// Destinations that have at least one pending row.
    async fn destinations_with_pending(&self) -> Result<Vec<NodeId>, OutboxStoreError>;
    /// The oldest pending row for the destination (in enqueue order), whatever its `next_attempt_at`.
    async fn next_pending(
        &self,
        destination: &NodeId,
    ) -> Result<Option<OutboxItem>, OutboxStoreError>;
    /// The row was acknowledged by the receiver.
    async fn mark_delivered(
        &self,
        envelope_id: Uuid,
        at: DateTime<Utc>,
    ) -> Result<(), OutboxStoreError>;
    /// An attempt failed; the row stays pending with this attempt count and next attempt time.
    async fn record_failure(
        &self,
        envelope_id: Uuid,
        attempts: u32,
        next_attempt_at: DateTime<Utc>,
        error: &str,
    ) -> Result<(), OutboxStoreError>;
    /// The row is given up: out of the pending line, kept for inspection and manual retry.
    async fn dead_letter(
        &self,
        envelope_id: Uuid,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<(), OutboxStoreError>;
}

/// What one delivery attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// Acknowledged (2xx).
    Delivered,
    /// Failed in a way that another attempt may fix.
    Retry(String),
    /// Refused for good by the receiver (a problem with `retryable: false`).
    Reject {
        /// The problem code.
        code: String,
        /// Details.
        detail: String,
    },
}

/// How envelopes are carried to a destination.
#[async_trait]
pub trait Transport: Send + Sync + 'static {
    /// Attempts delivery of one outbox item.
    async fn deliver(&self, item: &OutboxItem) -> DeliveryOutcome;
}

/// Delivers envelopes by HTTP POST to `base_url + /federation/v1/inbox`, signed with RFC 9421.
pub struct HttpTransport {
    client: reqwest::Client,
    signer: RequestSigner,
    directory: SharedDirectory,
}

impl HttpTransport {
    /// A transport with its own client (30 s timeout).
    pub fn new(signer: RequestSigner, directory: SharedDirectory) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(10))
            .build()?;
        Ok(HttpTransport::with_client(client, signer, directory))
    }

    /// A transport using the node's client (with its TLS setup, mutual TLS, proxies...).
    pub fn with_client(
        client: reqwest::Client,
        signer: RequestSigner,
        directory: SharedDirectory,
    ) -> Self {
        HttpTransport {
            client,
            signer,
            directory,
        }
    }
}

#[async_trait]
impl Transport for HttpTransport {
    async fn deliver(&self, item: &OutboxItem) -> DeliveryOutcome {
        let base = match self.directory.get().member(&item.destination) {
            Ok(m) => m.base_url.clone(),
            // Perhaps not yet in the directory we hold: a refresh may fix it.
            Err(e) => return DeliveryOutcome::Retry(e.to_string()),
        };
        let url = format!("{}{INBOX_PATH}", base.trim_end_matches('/'));
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Err(e) = self.signer.sign(
            "POST",
            &url,
            &mut headers,
            &item.envelope,
            Utc::now().timestamp(),
        ) {
            return DeliveryOutcome::Retry(format!("signing: {e}"));
        }
        let resp = match self
            .client
            .post(&url)
            .headers(headers)
            .body(item.envelope.clone())
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => return DeliveryOutcome::Retry(format!("request: {e}")),
        };
        let status = resp.status();
        if status.is_success() {
            return DeliveryOutcome::Delivered;
        }
        let body = resp.bytes().await.unwrap_or_default();
        match serde_json::from_slice::<Problem>(&body) {
            Ok(p) if !p.retryable => DeliveryOutcome::Reject {
                code: p.code,
                detail: p.detail.unwrap_or_default(),
            },
            Ok(p) => DeliveryOutcome::Retry(format!("{} {}", status.as_u16(), p.code)),
            Err(_) => DeliveryOutcome::Retry(format!("HTTP {}", status.as_u16())),
        }
    }
}

/// Engine settings.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// First retry delay (default 1 s).
    pub base_delay: Duration,
    /// Cap on the retry delay (default 1 hour).
    pub max_delay: Duration,
    /// Fraction of each delay that is randomised away (0 = none, 0.5 default: delay in [d/2, d]).
    pub jitter: f64,
    /// Attempts before dead-lettering (default 30; with the defaults that is about 1 day of trying).
    pub max_attempts: u32,
    /// Age after which a still-undelivered message is dead-lettered (default 7 days).
    pub max_age: chrono::Duration,
    /// How often the engine looks for new destinations and idle workers re-check their queue (default 5 s).
    /// [`DeliveryEngine::wake`] makes it immediate.
    pub poll_interval: Duration,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(3600),
            jitter: 0.5,
            max_attempts: 30,
            max_age: chrono::Duration::days(7),
            poll_interval: Duration::from_secs(5),
        }
    }
}

impl DeliveryConfig {
    /// The delay before the next attempt after `attempts` failed attempts: `base * 2^(attempts-1)` capped
    /// at `max_delay`, then reduced by a random fraction up to `jitter`.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let exp = attempts.saturating_sub(1).min(40);
        let raw = self.base_delay.as_secs_f64() * 2f64.powi(exp as i32);
        let capped = raw.min(self.max_delay.as_secs_f64());
        let jitter = self.jitter.clamp(0.0, 1.0);
        let factor = if jitter > 0.0 {
            1.0 - rand::thread_rng().gen_range(0.0..=jitter)
        } else {
            1.0
        };
        Duration::from_secs_f64((capped * factor).max(0.0))
    }
}

/// Counters since the engine started.
#[derive(Debug, Default)]
pub struct DeliveryStats {
    /// Acknowledged messages.
    pub delivered: AtomicU64,
    /// Failed attempts that will be retried.
    pub retried: AtomicU64,
    /// Dead-lettered messages.
    pub dead_lettered: AtomicU64,
}

/// A running destination worker: its wake-up signal and its task.
type Worker = (Arc<Notify>, JoinHandle<()>);

struct Inner {
    store: Arc<dyn OutboxStore>,
    transport: Arc<dyn Transport>,
    config: DeliveryConfig,
    cancel: CancellationToken,
    workers: Mutex<HashMap<NodeId, Worker>>,
    wake_supervisor: Notify,
    stats: DeliveryStats,
}

/// The running engine. Dropping it does not stop the workers: call [`DeliveryEngine::shutdown`].
pub struct DeliveryEngine {
    inner: Arc<Inner>,
    supervisor: JoinHandle<()>,
}

impl DeliveryEngine {
    /// Starts the engine on the current Tokio runtime.
    pub fn start(
        store: Arc<dyn OutboxStore>,
        transport: Arc<dyn Transport>,
        config: DeliveryConfig,
    ) -> DeliveryEngine {
        let inner = Arc::new(Inner {
            store,
            transport,
            config,
            cancel: CancellationToken::new(),
            workers: Mutex::new(HashMap::new()),
            wake_supervisor: Notify::new(),
            stats: DeliveryStats::default(),
        });
        let supervisor = tokio::spawn(supervise(inner.clone()));
        DeliveryEngine { inner, supervisor }
    }

    /// Tells the engine a row for `destination` was written (or made due again): its worker looks now
    /// instead of at the next poll.
    pub fn wake(&self, destination: &NodeId) {
        let notify = lock(&self.inner.workers)
            .get(destination)
            .map(|(n, _)| n.clone());
        match notify {
            Some(n) => n.notify_one(),
            None => self.inner.wake_supervisor.notify_one(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> &DeliveryStats {
        &self.inner.stats
    }

    /// Stops the workers (an attempt in flight is abandoned: it will be made again after a restart) and
    /// waits for them.
    pub async fn shutdown(self) {
        self.inner.cancel.cancel();
        let _ = self.supervisor.await;
        let handles: Vec<_> = lock(&self.inner.workers)
            .drain()
            .map(|(_, (_, h))| h)
            .collect();
        for h in handles {
            let _ = h.await;
        }
    }

    /// Kills the workers at once, as a crash would (for tests of restart behaviour).
    pub fn abort(self) {
        self.inner.cancel.cancel();
        self.supervisor.abort();
        for (_, (_, h)) in lock(&self.inner.workers).drain() {
            h.abort();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

async fn supervise(inner: Arc<Inner>) {
    loop {
        match inner.store.destinations_with_pending().await {
            Ok(dests) => {
                let mut workers = lock(&inner.workers);
                for d in dests {
                    if let std::collections::hash_map::Entry::Vacant(slot) = workers.entry(d) {
                        let d = slot.key().clone();
                        let notify = Arc::new(Notify::new());
                        let handle = tokio::spawn(work(inner.clone(), d.clone(), notify.clone()));
                        tracing::debug!(destination = %d, "delivery worker started");
                        slot.insert((notify, handle));
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "outbox: listing destinations failed"),
        }
        tokio::select! {
            _ = inner.cancel.cancelled() => return,
            _ = inner.wake_supervisor.notified() => {}
            _ = tokio::time::sleep(inner.config.poll_interval) => {}
        }
    }
}

/// Waits for `d`, a wake-up or cancellation; returns false if cancelled.
async fn pause(inner: &Inner, notify: &Notify, d: Duration) -> bool {
    tokio::select! {
        _ = inner.cancel.cancelled() => false,
        _ = notify.notified() => true,
        _ = tokio::time::sleep(d) => true,
    }
}

async fn work(inner: Arc<Inner>, dest: NodeId, notify: Arc<Notify>) {
    let poll = inner.config.poll_interval;
    loop {
        if inner.cancel.is_cancelled() {
            return;
        }
        let item = match inner.store.next_pending(&dest).await {
            Ok(Some(item)) => item,
            Ok(None) => {
                if !pause(&inner, &notify, poll).await {
                    return;
                }
                continue;
            }
            Err(e) => {
                tracing::warn!(destination = %dest, error = %e, "outbox: reading next row failed");
                if !pause(&inner, &notify, poll).await {
                    return;
                }
                continue;
            }
        };
        let now = Utc::now();
        if item.next_attempt_at > now {
            // Head of line waits for its backoff; a wake-up re-reads the row (an admin may have made it due).
            let wait = (item.next_attempt_at - now)
                .to_std()
                .unwrap_or(Duration::ZERO);
            if !pause(
                &inner,
                &notify,
                wait.min(poll.max(Duration::from_millis(1)) * 12),
            )
            .await
            {
                return;
            }
            continue;
        }
        if now - item.enqueued_at > inner.config.max_age {
            let reason = format!(
                "undelivered after {} attempts since {}",
                item.attempts, item.enqueued_at
            );
            dead_letter(&inner, &item, &reason).await;
            continue;
        }
        let outcome = tokio::select! {
            _ = inner.cancel.cancelled() => return,
            o = inner.transport.deliver(&item) => o,
        };
        let done = Utc::now();
        let result = match outcome {
            DeliveryOutcome::Delivered => {
                let r = inner.store.mark_delivered(item.envelope_id, done).await;
                if r.is_ok() {
                    inner.stats.delivered.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(destination = %dest, envelope_id = %item.envelope_id, "delivered");
                }
                r
            }
            DeliveryOutcome::Reject { code, detail } => {
                dead_letter(&inner, &item, &format!("refused: {code}: {detail}")).await;
                Ok(())
            }
            DeliveryOutcome::Retry(reason) => {
                let attempts = item.attempts.saturating_add(1);
                if attempts >= inner.config.max_attempts {
                    dead_letter(
                        &inner,
                        &item,
                        &format!("{attempts} attempts, last: {reason}"),
                    )
                    .await;
                    Ok(())
                } else {
                    let delay = inner.config.backoff(attempts);
                    let next = done
                        + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::hours(1));
                    inner.stats.retried.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(destination = %dest, envelope_id = %item.envelope_id, attempts, delay_ms = delay.as_millis() as u64, reason = %reason, "delivery failed, will retry");
                    inner
                        .store
                        .record_failure(item.envelope_id, attempts, next, &reason)
                        .await
                }
            }
        };
        if let Err(e) = result {
            // The row is unchanged: it will be sent again, and the receiver will say "duplicate" if it
            // already has it.
            tracing::warn!(destination = %dest, envelope_id = %item.envelope_id, error = %e, "outbox: update failed");
            if !pause(&inner, &notify, poll).await {
                return;
            }
        }
    }
}

async fn dead_letter(inner: &Inner, item: &OutboxItem, reason: &str) {
    match inner
        .store
        .dead_letter(item.envelope_id, reason, Utc::now())
        .await
    {
        Ok(()) => {
            inner.stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(destination = %item.destination, envelope_id = %item.envelope_id, reason = %reason, "dead-lettered");
        }
        Err(e) => {
            tracing::warn!(envelope_id = %item.envelope_id, error = %e, "outbox: dead-letter failed");
            tokio::time::sleep(inner.config.poll_interval).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_exponential_capped_and_jittered() {
        let cfg = DeliveryConfig {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
            jitter: 0.0,
            ..DeliveryConfig::default()
        };
        assert_eq!(cfg.backoff(1), Duration::from_millis(100));
        assert_eq!(cfg.backoff(2), Duration::from_millis(200));
        assert_eq!(cfg.backoff(4), Duration::from_millis(800));
        assert_eq!(cfg.backoff(10), Duration::from_secs(2));
        assert_eq!(cfg.backoff(1000), Duration::from_secs(2));
        let jittered = DeliveryConfig { jitter: 0.5, ..cfg };
        let mut distinct = std::collections::BTreeSet::new();
        for _ in 0..50 {
            let d = jittered.backoff(3);
            assert!(
                d >= Duration::from_millis(200) && d <= Duration::from_millis(400),
                "{d:?}"
            );
            distinct.insert(d);
        }
        assert!(distinct.len() > 1, "jitter should vary the delay");
    }
}
