//! The delivery engine end to end: a real axum receiver on 127.0.0.1, a real SQLite outbox on the sender,
//! a real SQLite inbox on the receiver. Receiver down then up, receiver answering 500, receiver restarted,
//! sender crashed and restarted mid-run: nothing lost, nothing duplicated, order kept.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use caravan_federation::delivery::{DeliveryConfig, DeliveryEngine, HttpTransport};
use caravan_federation::directory::SharedDirectory;
use caravan_federation::envelope::{Envelope, MessageType};
use caravan_federation::httpsig::{MemoryReplayGuard, RequestSigner};
use caravan_federation::keys::NodeKey;
use caravan_federation::receiver::{Receiver, ReceiverConfig, INBOX_PATH};
use common::sqlite::{SqliteInbox, SqliteOutbox};
use common::*;
use http::{HeaderMap, Method, StatusCode};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

struct Inbound {
    receiver: Receiver<SqliteInbox, MemoryReplayGuard>,
    fail_next: AtomicU32,
}

async fn inbox(
    State(st): State<Arc<Inbound>>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if st
        .fail_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return (StatusCode::INTERNAL_SERVER_ERROR, "injected failure").into_response();
    }
    st.receiver
        .handle(method.as_str(), &headers, &body)
        .await
        .map(axum::body::Body::from)
}

struct Server {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

async fn serve(addr: SocketAddr, state: Arc<Inbound>) -> Server {
    // The port was free a moment ago; retry briefly in case the previous server is still letting go.
    let mut listener = None;
    for _ in 0..50 {
        match TcpListener::bind(addr).await {
            Ok(l) => {
                listener = Some(l);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let listener = listener.expect("rebind receiver port");
    let app = Router::new()
        .route(INBOX_PATH, post(inbox))
        .with_state(state);
    let (stop, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    Server { stop, task }
}

impl Server {
    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }
}

fn fast() -> DeliveryConfig {
    DeliveryConfig {
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(300),
        jitter: 0.5,
        max_attempts: 10_000,
        max_age: chrono::Duration::hours(1),
        poll_interval: Duration::from_millis(50),
    }
}

async fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

async fn wait_until<F, Fut>(what: &str, limit: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !f().await {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn packet(n: usize) -> serde_json::Map<String, serde_json::Value> {
    json!({"n": n, "summary": "pseudonymised case"})
        .as_object()
        .unwrap()
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_lost_nothing_duplicated_through_outage_errors_and_restarts() {
    let tmp = tempfile::tempdir().unwrap();
    let anchor = NodeKey::generate();
    let ka = NodeKey::generate();
    let kc = NodeKey::generate();
    let addr = free_addr().await;
    let base_c = format!("http://{addr}");
    let dir = SharedDirectory::new(directory(
        &anchor,
        1,
        vec![
            member(
                "hospital-a",
                "http://127.0.0.1:9",
                &ka,
                &["consult.packet", "consult.message"],
                "FR",
            ),
            member("center-c", &base_c, &kc, &["consult.report"], "ES"),
        ],
    ));
    let inbound = Arc::new(Inbound {
        receiver: Receiver::new(
            ReceiverConfig::new(id("center-c"), &base_c),
            dir.clone(),
            SqliteInbox::open(&tmp.path().join("c.sqlite")).await,
            MemoryReplayGuard::default(),
        ),
        fail_next: AtomicU32::new(0),
    });

    let outbox_path = tmp.path().join("a.sqlite");
    let outbox = Arc::new(SqliteOutbox::open(&outbox_path).await);
    let mut expected = Vec::new();
    for n in 0..150 {
        let env = Envelope::new(
            id("hospital-a"),
            id("center-c"),
            MessageType::ConsultPacket,
            packet(n),
        )
        .sign(&ka)
        .unwrap();
        outbox.enqueue(&env).await;
        expected.push(env.envelope.id.to_string());
    }
    let transport =
        || Arc::new(HttpTransport::new(RequestSigner::new(ka.clone()), dir.clone()).unwrap());

    // 1. Receiver down: attempts fail and are recorded with backoff.
    let engine = DeliveryEngine::start(outbox.clone(), transport(), fast());
    wait_until(
        "failed attempts while the receiver is down",
        Duration::from_secs(20),
        || async { outbox.max_attempts().await >= 3 },
    )
    .await;
    assert_eq!(outbox.count("delivered").await, 0);

    // 2. Receiver up, but its first answers are 500s.
    inbound.fail_next.store(5, Ordering::SeqCst);
    let server = serve(addr, inbound.clone()).await;
    wait_until("some deliveries", Duration::from_secs(30), || async {
        outbox.count("delivered").await >= 40
    })
    .await;
    assert_eq!(
        inbound.fail_next.load(Ordering::SeqCst),
        0,
        "the injected 500s were met and retried"
    );

    // 3. The sender crashes mid-run; more rows are written while it is down; it starts again.
    engine.abort();
    for n in 150..250 {
        let env = Envelope::new(
            id("hospital-a"),
            id("center-c"),
            MessageType::ConsultMessage,
            packet(n),
        )
        .sign(&ka)
        .unwrap();
        outbox.enqueue(&env).await;
        expected.push(env.envelope.id.to_string());
    }
    let outbox = Arc::new(SqliteOutbox::open(&outbox_path).await);
    let engine = DeliveryEngine::start(outbox.clone(), transport(), fast());
    wait_until("more deliveries", Duration::from_secs(30), || async {
        outbox.count("delivered").await >= 120
    })
    .await;

    // 4. The receiver restarts mid-run.
    server.stop().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let server = serve(addr, inbound.clone()).await;
    engine.wake(&id("center-c"));

    wait_until("all delivered", Duration::from_secs(60), || async {
        outbox.count("pending").await == 0
    })
    .await;
    engine.shutdown().await;
    server.stop().await;

    let inbox = inbound.receiver.store();
    assert_eq!(
        outbox.count("dead").await,
        0,
        "{:?}",
        outbox.dead_letters().await
    );
    assert_eq!(outbox.count("delivered").await, 250);
    // Each envelope stored and processed exactly once, in the order it was written.
    assert_eq!(inbox.ids().await, expected);
    assert_eq!(inbox.counter("processed").await, 250);
    eprintln!(
        "duplicates acknowledged without reprocessing: {}",
        inbox.counter("duplicates").await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_and_undeliverable_messages_are_dead_lettered_without_blocking_the_line() {
    let tmp = tempfile::tempdir().unwrap();
    let anchor = NodeKey::generate();
    let ka = NodeKey::generate();
    let kc = NodeKey::generate();
    let kd = NodeKey::generate();
    let addr = free_addr().await;
    let base_c = format!("http://{addr}");
    // hospital-d's endpoint never answers (nothing listens there).
    let dead_addr = free_addr().await;
    let dir = SharedDirectory::new(directory(
        &anchor,
        1,
        vec![
            member(
                "hospital-a",
                "http://127.0.0.1:9",
                &ka,
                &["consult.packet"],
                "FR",
            ),
            member("center-c", &base_c, &kc, &[], "ES"),
            member("hospital-d", &format!("http://{dead_addr}"), &kd, &[], "PT"),
        ],
    ));
    let inbound = Arc::new(Inbound {
        receiver: Receiver::new(
            ReceiverConfig::new(id("center-c"), &base_c),
            dir.clone(),
            SqliteInbox::open(&tmp.path().join("c.sqlite")).await,
            MemoryReplayGuard::default(),
        ),
        fail_next: AtomicU32::new(0),
    });
    let server = serve(addr, inbound.clone()).await;
    let outbox = Arc::new(SqliteOutbox::open(&tmp.path().join("a.sqlite")).await);
    let good1 = Envelope::new(
        id("hospital-a"),
        id("center-c"),
        MessageType::ConsultPacket,
        packet(1),
    )
    .sign(&ka)
    .unwrap();
    // hospital-a may not send reports: the receiver refuses for good (retryable: false).
    let refused = Envelope::new(
        id("hospital-a"),
        id("center-c"),
        MessageType::ConsultReport,
        packet(2),
    )
    .sign(&ka)
    .unwrap();
    let good2 = Envelope::new(
        id("hospital-a"),
        id("center-c"),
        MessageType::ConsultPacket,
        packet(3),
    )
    .sign(&ka)
    .unwrap();
    let to_d = Envelope::new(
        id("hospital-a"),
        id("hospital-d"),
        MessageType::ConsultPacket,
        packet(4),
    )
    .sign(&ka)
    .unwrap();
    for e in [&good1, &refused, &good2, &to_d] {
        outbox.enqueue(e).await;
    }
    let config = DeliveryConfig {
        max_attempts: 3,
        ..fast()
    };
    let engine = DeliveryEngine::start(
        outbox.clone(),
        Arc::new(HttpTransport::new(RequestSigner::new(ka.clone()), dir.clone()).unwrap()),
        config,
    );
    wait_until("the line to drain", Duration::from_secs(30), || async {
        outbox.count("pending").await == 0
    })
    .await;
    engine.shutdown().await;
    server.stop().await;
    let dead = outbox.dead_letters().await;
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert_eq!(dead[0].0, refused.envelope.id.to_string());
    assert!(dead[0].1.contains("type_not_allowed"), "{}", dead[0].1);
    assert_eq!(dead[1].0, to_d.envelope.id.to_string());
    assert!(dead[1].1.starts_with("3 attempts"), "{}", dead[1].1);
    assert_eq!(
        inbound.receiver.store().ids().await,
        vec![good1.envelope.id.to_string(), good2.envelope.id.to_string()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destinations_are_served_in_parallel_each_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let anchor = NodeKey::generate();
    let ka = NodeKey::generate();
    let (kc, kd) = (NodeKey::generate(), NodeKey::generate());
    let (addr_c, addr_d) = (free_addr().await, free_addr().await);
    let dir = SharedDirectory::new(directory(
        &anchor,
        1,
        vec![
            member(
                "hospital-a",
                "http://127.0.0.1:9",
                &ka,
                &["consult.packet"],
                "FR",
            ),
            member("center-c", &format!("http://{addr_c}"), &kc, &[], "ES"),
            member("hospital-d", &format!("http://{addr_d}"), &kd, &[], "PT"),
        ],
    ));
    let mut servers = Vec::new();
    let mut inbounds = Vec::new();
    for (name, addr) in [("center-c", addr_c), ("hospital-d", addr_d)] {
        let inbound = Arc::new(Inbound {
            receiver: Receiver::new(
                ReceiverConfig::new(id(name), format!("http://{addr}")),
                dir.clone(),
                SqliteInbox::open(&tmp.path().join(format!("{name}.sqlite"))).await,
                MemoryReplayGuard::default(),
            ),
            fail_next: AtomicU32::new(0),
        });
        servers.push(serve(addr, inbound.clone()).await);
        inbounds.push(inbound);
    }
    let outbox = Arc::new(SqliteOutbox::open(&tmp.path().join("a.sqlite")).await);
    let engine = DeliveryEngine::start(
        outbox.clone(),
        Arc::new(HttpTransport::new(RequestSigner::new(ka.clone()), dir.clone()).unwrap()),
        fast(),
    );
    let (mut to_c, mut to_d) = (Vec::new(), Vec::new());
    for n in 0..100 {
        let dest = if n % 3 == 0 { "hospital-d" } else { "center-c" };
        let env = Envelope::new(
            id("hospital-a"),
            id(dest),
            MessageType::ConsultPacket,
            packet(n),
        )
        .sign(&ka)
        .unwrap();
        outbox.enqueue(&env).await;
        engine.wake(&id(dest));
        if n % 3 == 0 { &mut to_d } else { &mut to_c }.push(env.envelope.id.to_string());
    }
    wait_until("all delivered", Duration::from_secs(30), || async {
        outbox.count("pending").await == 0
    })
    .await;
    engine.shutdown().await;
    assert_eq!(inbounds[0].receiver.store().ids().await, to_c);
    assert_eq!(inbounds[1].receiver.store().ids().await, to_d);
    for s in servers {
        s.stop().await;
    }
}

/// Prints the delivery rate over real HTTP and SQLite on both sides (one destination, strictly in order),
/// the figure the soak test builds on. 1,000 messages; checks all arrived in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_rate_one_destination() {
    let tmp = tempfile::tempdir().unwrap();
    let anchor = NodeKey::generate();
    let ka = NodeKey::generate();
    let kc = NodeKey::generate();
    let addr = free_addr().await;
    let base_c = format!("http://{addr}");
    let dir = SharedDirectory::new(directory(
        &anchor,
        1,
        vec![
            member(
                "hospital-a",
                "http://127.0.0.1:9",
                &ka,
                &["consult.message"],
                "FR",
            ),
            member("center-c", &base_c, &kc, &[], "ES"),
        ],
    ));
    let inbound = Arc::new(Inbound {
        receiver: Receiver::new(
            ReceiverConfig::new(id("center-c"), &base_c),
            dir.clone(),
            SqliteInbox::open(&tmp.path().join("c.sqlite")).await,
            MemoryReplayGuard::default(),
        ),
        fail_next: AtomicU32::new(0),
    });
    let server = serve(addr, inbound.clone()).await;
    let outbox = Arc::new(SqliteOutbox::open(&tmp.path().join("a.sqlite")).await);
    let mut expected = Vec::new();
    for n in 0..1000 {
        let env = Envelope::new(
            id("hospital-a"),
            id("center-c"),
            MessageType::ConsultMessage,
            packet(n),
        )
        .sign(&ka)
        .unwrap();
        outbox.enqueue(&env).await;
        expected.push(env.envelope.id.to_string());
    }
    let start = Instant::now();
    let engine = DeliveryEngine::start(
        outbox.clone(),
        Arc::new(HttpTransport::new(RequestSigner::new(ka.clone()), dir.clone()).unwrap()),
        fast(),
    );
    wait_until("all delivered", Duration::from_secs(120), || async {
        outbox.count("pending").await == 0
    })
    .await;
    let secs = start.elapsed().as_secs_f64();
    engine.shutdown().await;
    server.stop().await;
    assert_eq!(inbound.receiver.store().ids().await, expected);
    eprintln!(
        "delivered 1000 envelopes in order over HTTP + SQLite in {secs:.2} s: {:.0} /s",
        1000.0 / secs
    );
}
