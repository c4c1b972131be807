//! MQTT integration tests against a real Mosquitto. Opt-in: `CARAVAN_TEST_MQTT=1`. Each test starts a private
//! `mosquitto` on a free port; without the binary they use the shared broker on 127.0.0.1:1883 where they can
//! (tests that need their own broker configuration then say so and return). `CARAVAN_TEST_MQTT_URL` forces a
//! given anonymous broker.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::Utc;
use monitoring::broker::{self, find_program, MosquittoConfig, MosquittoProcess, INGEST_USER};
use monitoring::ingest::{run_service, BrokerAddr, ServiceConfig};
use monitoring::model::{topic_for, Device, DeviceId, DeviceKind, Message, PatientRef, Reading};
use monitoring::news2::{Acvpu, Spo2Scale};
use monitoring::store::{Counts, Durability, Store};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

fn enabled() -> bool {
    if std::env::var("CARAVAN_TEST_MQTT").as_deref() == Ok("1") {
        true
    } else {
        eprintln!("CARAVAN_TEST_MQTT not set; skipping MQTT test");
        false
    }
}

fn have_mosquitto() -> bool {
    find_program("mosquitto").is_some()
}

/// A broker for one test: private when possible, else the shared one (anonymous).
struct TestBroker {
    _process: Option<MosquittoProcess>,
    addr: BrokerAddr,
}

fn anonymous_broker(dir: &Path, max_queued: Option<u64>) -> Option<TestBroker> {
    // CARAVAN_TEST_MQTT_URL forces a given (anonymous) broker, e.g. the shared one, for tests that can use it.
    if let Ok(url) = std::env::var("CARAVAN_TEST_MQTT_URL") {
        if max_queued.is_some() {
            eprintln!(
                "this test needs its own broker configuration; skipping with CARAVAN_TEST_MQTT_URL"
            );
            return None;
        }
        return Some(TestBroker {
            _process: None,
            addr: BrokerAddr::parse(&url).unwrap(),
        });
    }
    if have_mosquitto() {
        let mut cfg = MosquittoConfig::new(broker::free_port().unwrap());
        cfg.log_file = Some(dir.join("mosquitto.log"));
        if let Some(q) = max_queued {
            cfg.max_queued_messages = q;
        }
        let p = MosquittoProcess::start(dir, &cfg).unwrap();
        let addr = BrokerAddr::parse(&p.url()).unwrap();
        Some(TestBroker {
            _process: Some(p),
            addr,
        })
    } else if max_queued.is_none() {
        eprintln!("mosquitto binary missing: using the shared broker on 127.0.0.1:1883");
        Some(TestBroker {
            _process: None,
            addr: BrokerAddr::parse("mqtt://127.0.0.1:1883").unwrap(),
        })
    } else {
        eprintln!(
            "mosquitto binary missing: this test needs its own broker configuration; skipping"
        );
        None
    }
}

fn dev(s: &str) -> DeviceId {
    DeviceId::new(s).unwrap()
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        Utc::now().timestamp_micros()
    )
}

async fn register(store: &Store, device: &DeviceId, patient: Option<&str>) {
    let patient = patient.map(|p| PatientRef::new(p).unwrap());
    if let Some(p) = &patient {
        store.upsert_patient(p, Spo2Scale::Scale1).await.unwrap();
    }
    store
        .register_device(
            &Device {
                id: device.clone(),
                kind: DeviceKind::PulseOximeter,
                patient,
            },
            None,
        )
        .await
        .unwrap();
}

/// The ingest service in this process, stopped by the returned sender.
struct Node {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

async fn start_node(cfg: ServiceConfig) -> Node {
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let (ready_tx, ready_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        run_service(
            cfg,
            async {
                let _ = stop_rx.await;
            },
            move || {
                let _ = ready_tx.send(());
            },
        )
        .await
        .unwrap();
    });
    tokio::time::timeout(Duration::from_secs(20), ready_rx)
        .await
        .unwrap()
        .unwrap();
    Node {
        stop: Some(stop_tx),
        task,
    }
}

impl Node {
    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = self.task.await;
    }
}

/// A plain MQTT client that publishes QoS 1 and waits for the broker's PUBACKs.
struct Publisher {
    client: AsyncClient,
    task: tokio::task::JoinHandle<()>,
    acked: std::sync::Arc<std::sync::atomic::AtomicU64>,
    sent: u64,
}

async fn publisher(
    addr: &BrokerAddr,
    client_id: &str,
    creds: Option<(&str, &str)>,
) -> Result<Publisher, String> {
    let mut o = MqttOptions::new(client_id, addr.host.clone(), addr.port);
    o.set_keep_alive(Duration::from_secs(30));
    if let Some((u, p)) = creds {
        o.set_credentials(u, p);
    }
    let (client, mut ev) = AsyncClient::new(o, 1000);
    let first = tokio::time::timeout(Duration::from_secs(10), ev.poll())
        .await
        .map_err(|e| e.to_string())?;
    match first {
        Ok(Event::Incoming(Packet::ConnAck(_))) => {}
        other => return Err(format!("{other:?}")),
    }
    let acked = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let a = acked.clone();
    let task = tokio::spawn(async move {
        while let Ok(e) = ev.poll().await {
            if let Event::Incoming(Packet::PubAck(_)) = e {
                a.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
    });
    Ok(Publisher {
        client,
        task,
        acked,
        sent: 0,
    })
}

impl Publisher {
    async fn publish(&mut self, topic: String, payload: Vec<u8>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .unwrap();
        self.sent += 1;
    }

    async fn flush(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.acked.load(std::sync::atomic::Ordering::SeqCst) < self.sent {
            assert!(Instant::now() < deadline, "broker did not acknowledge");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn close(self) {
        self.flush().await;
        let _ = self.client.disconnect().await;
        let _ = tokio::time::timeout(Duration::from_secs(1), self.task).await;
    }
}

fn msg(device: &str, seq: u64) -> Message {
    Message {
        device_id: dev(device),
        message_id: format!("{device}-{seq}"),
        seq,
        timestamp: Utc::now(),
        readings: vec![
            Reading::Spo2(96.0),
            Reading::HeartRate(72.0),
            Reading::Consciousness(Acvpu::Alert),
        ],
    }
}

/// Wait until `cond` holds on the database counts (or fail after 20 s).
async fn wait_for(store: &Store, what: &str, cond: impl Fn(&Counts) -> bool) -> Counts {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let c = store.counts().await.unwrap();
        if cond(&c) {
            return c;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {c:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn node_config(addr: &BrokerAddr, db: &Path) -> ServiceConfig {
    let mut cfg = ServiceConfig::new(addr.clone(), db.to_path_buf());
    cfg.client_id = unique("ingest");
    cfg.durability = Durability::Normal;
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_wrong_topic_unknown_unbound_and_gaps_over_mqtt() {
    if !enabled() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(b) = anonymous_broker(dir.path(), None) else {
        return;
    };
    let db = dir.path().join("m.db");
    let store = Store::open(&db, Durability::Normal).await.unwrap();
    // Unique device ids: the shared broker may carry other tests' traffic.
    let a = unique("ox");
    let other = unique("cuff");
    let unbound = unique("unbound");
    register(&store, &dev(&a), Some("pat-a")).await;
    register(&store, &dev(&other), Some("pat-b")).await;
    register(&store, &dev(&unbound), None).await;
    let node = start_node(node_config(&b.addr, &db)).await;

    let mut p = publisher(&b.addr, &unique("pub"), None).await.unwrap();
    let t = topic_for(&dev(&a));
    p.publish(t.clone(), msg(&a, 1).to_json()).await;
    p.publish(t.clone(), msg(&a, 1).to_json()).await; // the device retries: duplicate
    p.publish(t.clone(), msg(&a, 2).to_json()).await;
    p.publish(t.clone(), msg(&a, 6).to_json()).await; // 3, 4, 5 lost upstream
    p.publish(t.clone(), msg(&other, 1).to_json()).await; // another device's payload on a's topic
    p.publish(
        topic_for(&dev("ghost-device")),
        msg("ghost-device", 1).to_json(),
    )
    .await;
    p.publish(topic_for(&dev(&unbound)), msg(&unbound, 1).to_json())
        .await;
    p.publish(t.clone(), b"\x00\x01 not json".to_vec()).await;
    let mut implausible = String::from_utf8(msg(&a, 7).to_json()).unwrap();
    implausible = implausible.replace("\"value\":96", "\"value\":140");
    p.publish(t.clone(), implausible.into_bytes()).await;
    p.close().await;

    let c = wait_for(&store, "3 stored and 5 quarantined", |c| {
        c.messages >= 3 && c.quarantined >= 5
    })
    .await;
    assert_eq!(
        (c.messages, c.observations, c.distinct_observations),
        (3, 9, 9)
    );
    assert_eq!((c.gaps, c.missing), (1, 3));
    let reasons: Vec<String> = store
        .quarantine_reasons()
        .await
        .unwrap()
        .into_iter()
        .map(|(r, _)| r)
        .collect();
    assert_eq!(
        reasons,
        [
            "implausible",
            "malformed",
            "topic_mismatch",
            "unbound_device",
            "unknown_device"
        ]
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_acl_refuses_another_devices_topic_and_bad_passwords() {
    if !enabled() {
        return;
    }
    if !have_mosquitto() || find_program("mosquitto_passwd").is_none() {
        eprintln!(
            "mosquitto / mosquitto_passwd missing: the ACL test needs its own broker; skipping"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ids = [dev("ox-1"), dev("ox-2")];
    let (creds, hashes) = broker::device_credentials(&ids).unwrap();
    let node_pw = broker::new_password();
    let (_, cfg) = broker::write_config(
        dir.path(),
        &hashes,
        &node_pw,
        MosquittoConfig::new(broker::free_port().unwrap()),
    )
    .unwrap();
    let proc = MosquittoProcess::start(dir.path(), &cfg).unwrap();
    let addr = BrokerAddr::parse(&proc.url()).unwrap();
    let db = dir.path().join("m.db");
    let store = Store::open(&db, Durability::Normal).await.unwrap();
    register(&store, &ids[0], Some("pat-1")).await;
    register(&store, &ids[1], Some("pat-2")).await;
    let mut ncfg = node_config(&addr, &db);
    ncfg.username = Some(INGEST_USER.into());
    ncfg.password = Some(node_pw.clone());
    let node = start_node(ncfg).await;

    // Wrong password and unknown user: refused at CONNECT.
    assert!(publisher(&addr, "ox-1", Some(("ox-1", "wrong")))
        .await
        .is_err());
    assert!(publisher(&addr, "nobody", None).await.is_err());

    // ox-1 publishes on ox-2's topic (with ox-2's id in the payload, to impersonate it), then on its own.
    let mut p = publisher(&addr, "ox-1", Some(("ox-1", &creds[0].password)))
        .await
        .unwrap();
    p.publish(topic_for(&ids[1]), msg("ox-2", 1).to_json())
        .await;
    p.publish(topic_for(&ids[0]), msg("ox-1", 1).to_json())
        .await;
    p.close().await;
    let c = wait_for(&store, "ox-1's own message", |c| c.messages >= 1).await;
    // Give a stray message time to arrive before asserting it did not.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let c2 = store.counts().await.unwrap();
    assert_eq!(
        (c.messages, c2.messages, c2.quarantined),
        (1, 1, 0),
        "the broker dropped the impersonation"
    );
    let devices: Vec<String> = sqlx::query_scalar("SELECT device_id FROM messages")
        .fetch_all(store.pool())
        .await
        .unwrap();
    assert_eq!(devices, ["ox-1"]);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_queued_while_the_node_is_down_are_delivered_once() {
    if !enabled() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(b) = anonymous_broker(dir.path(), None) else {
        return;
    };
    let db = dir.path().join("m.db");
    let store = Store::open(&db, Durability::Normal).await.unwrap();
    let a = unique("ox");
    register(&store, &dev(&a), Some("pat-q")).await;
    let cfg = node_config(&b.addr, &db);
    let node = start_node(cfg.clone()).await;
    let mut p = publisher(&b.addr, &unique("pub"), None).await.unwrap();
    for seq in 1..=100 {
        p.publish(topic_for(&dev(&a)), msg(&a, seq).to_json()).await;
    }
    p.flush().await;
    wait_for(&store, "first 100", |c| c.messages >= 100).await;
    node.stop().await;

    // Node down: the persistent session queues these at the broker (500 < the shared broker's 1000 too).
    for seq in 101..=600 {
        p.publish(topic_for(&dev(&a)), msg(&a, seq).to_json()).await;
    }
    p.close().await;
    let node = start_node(cfg).await;
    let c = wait_for(&store, "all 600", |c| c.messages >= 600).await;
    assert_eq!(
        (c.messages, c.observations, c.distinct_observations),
        (600, 1800, 1800)
    );
    assert_eq!((c.gaps, c.missing), (0, 0));
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_queue_limit_loss_is_reported_as_a_gap() {
    if !enabled() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Mosquitto's trap at a small scale: 50 queued messages at most for an offline subscriber.
    let Some(b) = anonymous_broker(dir.path(), Some(50)) else {
        return;
    };
    let db = dir.path().join("m.db");
    let store = Store::open(&db, Durability::Normal).await.unwrap();
    register(&store, &dev("ox-1"), Some("pat-1")).await;
    let cfg = node_config(&b.addr, &db);
    start_node(cfg.clone()).await.stop().await; // creates the persistent session
    let mut p = publisher(&b.addr, "pub", None).await.unwrap();
    for seq in 1..=300 {
        p.publish(topic_for(&dev("ox-1")), msg("ox-1", seq).to_json())
            .await;
    }
    p.flush().await; // the broker acknowledged all 300 to the device
    let node = start_node(cfg).await;
    wait_for(&store, "the queued messages", |c| c.messages >= 50).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The tail loss becomes visible with the device's next message.
    p.publish(topic_for(&dev("ox-1")), msg("ox-1", 301).to_json())
        .await;
    p.close().await;
    let c = wait_for(&store, "message 301", |c| c.gaps >= 1).await;
    assert!(c.messages < 301, "the broker dropped messages: {c:?}");
    assert_eq!(
        c.messages + c.missing,
        301,
        "every lost message is counted in gaps: {c:?}"
    );
    node.stop().await;
}

#[test]
fn soak_with_a_node_kill_loses_and_duplicates_nothing() {
    if !enabled() {
        return;
    }
    if !have_mosquitto() || find_program("mosquitto_passwd").is_none() {
        eprintln!("mosquitto / mosquitto_passwd missing: the soak needs its own broker; skipping");
        return;
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_caravan-monitor"))
        .args([
            "soak",
            "--devices",
            "50",
            "--seconds",
            "6",
            "--rate",
            "5",
            "--kill-node",
            "--down-seconds",
            "1",
        ])
        .args(["--durability", "normal"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "soak failed: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(v["lost"], 0);
    assert_eq!(v["duplicated"], 0);
    assert_eq!(v["kills"], 1);
    assert!(v["published"].as_u64().unwrap() > 5000, "{v}");
    assert_eq!(v["published"], v["stored"]);
}
