//! Video visits against a real node: booking conflicts, the scope of an invitation token, the waiting room's
//! order, signaling that stays inside one visit, and TURN credentials checked against the HMAC formula.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use base64::Engine;
use common::*;
use futures::{SinkExt, StreamExt};
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn patient_named(c: &Client, family: &str) -> String {
    let (_, list) = c.get("/api/v1/patients").await;
    list.as_array()
        .unwrap()
        .iter()
        .find(|p| p["family_name"] == family)
        .unwrap_or_else(|| panic!("no patient {family}"))["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A schedule for the signed-in clinician with `n` 20-minute slots starting in an hour; the slot ids.
async fn slots(c: &Client, n: i64) -> (String, Vec<String>) {
    let (s, sched) = c
        .post(
            "/api/v1/visits/schedules",
            json!({ "service": "video clinic" }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{sched}");
    let id = sched["id"].as_str().unwrap().to_owned();
    let start = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let (s, created) = c
        .post(
            &format!("/api/v1/visits/schedules/{id}/slots"),
            json!({ "start": start, "minutes": 20, "count": n }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let ids = created
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap().to_owned())
        .collect();
    (id, ids)
}

async fn book(c: &Client, patient: &str, slot: &str) -> String {
    let (s, v) = c
        .post(
            "/api/v1/visits",
            json!({ "patient_id": patient, "slot_id": slot, "reason": "follow-up" }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v["visit"]["id"].as_str().unwrap().to_owned()
}

async fn invite(c: &Client, visit: &str, role: &str, name: &str) -> String {
    let (s, inv) = c
        .post(
            &format!("/api/v1/visits/{visit}/invitations"),
            json!({ "role": role, "display_name": name }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{inv}");
    assert!(
        inv["invitation"].get("token_hash").is_none(),
        "the hash is never shown"
    );
    let token = inv["token"].as_str().unwrap().to_owned();
    assert_eq!(inv["link"], format!("/visit/join/{token}"));
    token
}

/// A request as the holder of an invitation token (no session).
async fn guest(
    node: &Node,
    method: reqwest::Method,
    path: &str,
    token: &str,
) -> (StatusCode, Value) {
    let r = reqwest::Client::new()
        .request(method, format!("{}{path}", node.base))
        .header("x-visit-token", token)
        .send()
        .await
        .unwrap();
    let s = r.status();
    (s, r.json().await.unwrap_or(Value::Null))
}

async fn connect(node: &Node, visit: &str, header: (&'static str, String)) -> Result<Ws, u16> {
    let url = format!(
        "{}/visit/signal/{visit}",
        node.base.replace("http://", "ws://")
    );
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert(header.0, header.1.parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err(r.status().as_u16()),
        Err(e) => panic!("websocket: {e}"),
    }
}

/// Sign in and return the raw `Cookie` header value of the session.
async fn cookie_of(node: &Node, username: &str) -> String {
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/session", node.base))
        .json(&json!({ "username": username, "password": caravan_server::demo::DEMO_PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let set = r.headers()[reqwest::header::SET_COOKIE].to_str().unwrap();
    set.split(';').next().unwrap().to_owned()
}

async fn next_json(ws: &mut Ws) -> Value {
    loop {
        let m = tokio::time::timeout(std::time::Duration::from_secs(5), ws.next())
            .await
            .expect("a message within 5 s")
            .expect("socket open")
            .expect("frame");
        if let Message::Text(t) = m {
            return serde_json::from_str(t.as_str()).unwrap();
        }
    }
}

async fn nothing_within(ws: &mut Ws, ms: u64) -> bool {
    tokio::time::timeout(std::time::Duration::from_millis(ms), ws.next())
        .await
        .is_err()
}

#[tokio::test]
async fn booking_conflicts_are_refused_with_409() {
    let node = start().await;
    let aliyev = Client::login(&node, "dr.aliyev").await;
    let (schedule, ids) = slots(&aliyev, 3).await;
    let abenova = patient_named(&aliyev, "Abenova").await;
    let tokayev = patient_named(&aliyev, "Tokayev").await;
    book(&aliyev, &abenova, &ids[0]).await;
    let (s, e) = aliyev
        .post(
            "/api/v1/visits",
            json!({ "patient_id": tokayev, "slot_id": ids[0] }),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{e}");
    assert_eq!(e["error"], "error-visit-slot-taken");
    // A free-time booking overlapping the booked slot is refused as well.
    let (_, slot_list) = aliyev
        .get(&format!("/api/v1/visits/schedules/{schedule}/slots"))
        .await;
    let first_start = slot_list[0]["start"].as_str().unwrap();
    let start =
        chrono::DateTime::parse_from_rfc3339(first_start).unwrap() + chrono::Duration::minutes(10);
    let (s, e) = aliyev
        .post(
            "/api/v1/visits",
            json!({ "patient_id": tokayev, "practitioner_id": aliyev.id(),
                    "start": start.to_rfc3339(), "end": (start + chrono::Duration::minutes(20)).to_rfc3339() }),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{e}");
    // Overlapping slots are refused; bad input names what was wrong.
    let (s, e) = aliyev
        .post(
            &format!("/api/v1/visits/schedules/{schedule}/slots"),
            json!({ "start": first_start, "minutes": 15, "count": 1 }),
        )
        .await;
    assert_eq!(
        (s, e["error"].as_str()),
        (StatusCode::CONFLICT, Some("error-visit-slot-overlap"))
    );
    let (s, e) = aliyev
        .post(
            "/api/v1/visits",
            json!({ "patient_id": tokayev, "slot_id": "nope" }),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    let (s, e) = aliyev
        .post(
            &format!("/api/v1/visits/schedules/{schedule}/slots"),
            json!({ "start": "tomorrow", "minutes": 15 }),
        )
        .await;
    assert_eq!(
        (s, e["error"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("error-visit-time"))
    );
    // The second slot is still bookable, and the patient of another hospital is not even visible.
    book(&aliyev, &tokayev, &ids[1]).await;
    let wang = Client::login(&node, "dr.wang").await;
    let hua = patient_named(&wang, "Hua").await;
    let (s, _) = aliyev
        .post(
            "/api/v1/visits",
            json!({ "patient_id": hua, "slot_id": ids[2] }),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_invitation_opens_its_visit_and_nothing_else() {
    let node = start().await;
    let aliyev = Client::login(&node, "dr.aliyev").await;
    let (_, ids) = slots(&aliyev, 2).await;
    let abenova = patient_named(&aliyev, "Abenova").await;
    let tokayev = patient_named(&aliyev, "Tokayev").await;
    let a = book(&aliyev, &abenova, &ids[0]).await;
    let b = book(&aliyev, &tokayev, &ids[1]).await;
    let token = invite(&aliyev, &a, "patient", "Aigerim").await;
    let interpreter = invite(&aliyev, &a, "interpreter", "Interpreter (kk)").await;

    let (s, state) = guest(&node, reqwest::Method::GET, "/api/v1/guest/visit", &token).await;
    assert_eq!(s, StatusCode::OK, "{state}");
    assert_eq!(
        (state["visit_id"].as_str(), state["status"].as_str()),
        (Some(a.as_str()), Some("booked"))
    );
    assert!(
        state.get("patient_name").is_none(),
        "a guest is not shown the patient record"
    );
    // The token is no key to anything else on the node.
    for path in [
        "/api/v1/patients".to_owned(),
        format!("/api/v1/visits/{a}"),
        format!("/api/v1/visits/{b}/ice"),
        "/api/v1/consultations".to_owned(),
        "/api/v1/me".to_owned(),
    ] {
        let (s, _) = guest(&node, reqwest::Method::GET, &path, &token).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{path}");
    }
    let (s, e) = guest(
        &node,
        reqwest::Method::GET,
        "/api/v1/guest/visit",
        "forged-token",
    )
    .await;
    assert_eq!(
        (s, e["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("error-visit-token"))
    );
    // The interpreter waits with the visit but does not queue it; the patient does.
    let (s, st) = guest(
        &node,
        reqwest::Method::POST,
        "/api/v1/guest/check-in",
        &interpreter,
    )
    .await;
    assert_eq!((s, st["status"].as_str()), (StatusCode::OK, Some("booked")));
    let (s, st) = guest(
        &node,
        reqwest::Method::POST,
        "/api/v1/guest/check-in",
        &token,
    )
    .await;
    assert_eq!(
        (s, st["status"].as_str(), st["place"].as_u64()),
        (StatusCode::OK, Some("arrived"), Some(1))
    );
    // Only visit `a`'s signaling: visit `b` is not the token's.
    aliyev
        .post(&format!("/api/v1/visits/{a}/admit"), json!({}))
        .await;
    assert_eq!(
        connect(&node, &b, ("x-visit-token", token.clone()))
            .await
            .err(),
        Some(404)
    );
    assert!(connect(&node, &a, ("x-visit-token", token.clone()))
        .await
        .is_ok());
    // A cookie-carried token needs the derived CSRF token to write.
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/guest/check-in", node.base))
        .header("cookie", format!("caravan_visit={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // The guest page: the link sets the cookie and drops the token from the address.
    let http = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = http
        .get(format!("{}/visit/join/{token}", node.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["location"], "/visit/guest");
    let page = http
        .get(format!("{}/visit/guest", node.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("Welcome, \u{2068}Aigerim\u{2069}"), "{html}");
    assert!(!html.contains(&token));
    // The patient's access log shows the guest's reads and the check-in.
    let (_, log) = aliyev
        .get(&format!("/api/v1/patients/{abenova}/access-log"))
        .await;
    let text = log.to_string();
    assert!(
        text.contains("guest (patient)") && text.contains("checked in"),
        "{text}"
    );

    // An invitation for a visit that ended long ago has expired: 410, with a message.
    let past = chrono::Utc::now() - chrono::Duration::hours(6);
    let (s, old) = aliyev
        .post(
            "/api/v1/visits",
            json!({ "patient_id": tokayev, "practitioner_id": aliyev.id(), "start": past.to_rfc3339(),
                    "end": (past + chrono::Duration::minutes(20)).to_rfc3339() }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{old}");
    let expired = invite(
        &aliyev,
        old["visit"]["id"].as_str().unwrap(),
        "family",
        "Son",
    )
    .await;
    let (s, e) = guest(&node, reqwest::Method::GET, "/api/v1/guest/visit", &expired).await;
    assert_eq!(
        (s, e["error"].as_str()),
        (StatusCode::GONE, Some("error-visit-token-expired"))
    );
    let r = http
        .get(format!("{}/visit/join/{expired}", node.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::GONE);
}

#[tokio::test]
async fn the_waiting_room_admits_one_patient_at_a_time_first_come_first_served() {
    let node = start().await;
    let aliyev = Client::login(&node, "dr.aliyev").await;
    let (_, ids) = slots(&aliyev, 3).await;
    let a = book(&aliyev, &patient_named(&aliyev, "Abenova").await, &ids[0]).await;
    let b = book(&aliyev, &patient_named(&aliyev, "Tokayev").await, &ids[1]).await;
    let c = book(
        &aliyev,
        &patient_named(&aliyev, "Serikbayev").await,
        &ids[2],
    )
    .await;
    let ta = invite(&aliyev, &a, "patient", "A").await;
    let tb = invite(&aliyev, &b, "patient", "B").await;
    let tc = invite(&aliyev, &c, "patient", "C").await;
    // Arrivals: B, then C, then A (booked first, arrives last).
    for t in [&tb, &tc, &ta] {
        let (s, _) = guest(&node, reqwest::Method::POST, "/api/v1/guest/check-in", t).await;
        assert_eq!(s, StatusCode::OK);
    }
    let place = |v: Value| (v["place"].as_u64(), v["waiting"].as_u64());
    assert_eq!(
        place(
            guest(&node, reqwest::Method::GET, "/api/v1/guest/visit", &ta)
                .await
                .1
        ),
        (Some(3), Some(3))
    );
    let (_, q) = aliyev.get("/api/v1/visits/waiting-room").await;
    let order: Vec<&str> = q
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["visit_id"].as_str().unwrap())
        .collect();
    assert_eq!(order, [b.as_str(), c.as_str(), a.as_str()]);

    let (s, v) = aliyev
        .post("/api/v1/visits/waiting-room/admit-next", json!({}))
        .await;
    assert_eq!(
        (s, v["id"].as_str(), v["status"].as_str()),
        (StatusCode::OK, Some(b.as_str()), Some("in-progress"))
    );
    // One patient at a time: neither the next in line nor a chosen one enters an occupied room.
    let (s, e) = aliyev
        .post("/api/v1/visits/waiting-room/admit-next", json!({}))
        .await;
    assert_eq!(
        (s, e["error"].as_str()),
        (StatusCode::CONFLICT, Some("error-visit-room-occupied"))
    );
    let (s, _) = aliyev
        .post(&format!("/api/v1/visits/{a}/admit"), json!({}))
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(
        place(
            guest(&node, reqwest::Method::GET, "/api/v1/guest/visit", &ta)
                .await
                .1
        ),
        (Some(2), Some(2))
    );
    // Only the visit's clinician admits and ends.
    let nurlanov = Client::login(&node, "coordinator").await;
    let (s, e) = nurlanov
        .post(&format!("/api/v1/visits/{c}/admit"), json!({}))
        .await;
    assert!(
        s == StatusCode::FORBIDDEN || s == StatusCode::NOT_FOUND,
        "{s} {e}"
    );
    let (s, _) = aliyev
        .post(&format!("/api/v1/visits/{b}/finish"), json!({}))
        .await;
    assert_eq!(s, StatusCode::OK);
    let (_, v) = aliyev
        .post("/api/v1/visits/waiting-room/admit-next", json!({}))
        .await;
    assert_eq!(v["id"].as_str(), Some(c.as_str()));
    let (s, v) = aliyev.get(&format!("/api/v1/visits/{b}")).await;
    assert_eq!(
        (
            s,
            v["encounter_status"].as_str(),
            v["appointment_status"].as_str()
        ),
        (StatusCode::OK, Some("finished"), Some("fulfilled"))
    );
    assert!(v["visit"]["started_at"].is_string() && v["visit"]["ended_at"].is_string());
    // A finished visit's guest sees it is over; the page and the socket refuse it.
    let (_, st) = guest(&node, reqwest::Method::GET, "/api/v1/guest/visit", &tb).await;
    assert_eq!(st["status"], "finished");
    assert_eq!(
        connect(&node, &b, ("x-visit-token", tb.clone()))
            .await
            .err(),
        Some(409)
    );
}

#[tokio::test]
async fn signaling_stays_between_the_participants_of_one_visit() {
    let node = start().await;
    let aliyev = Client::login(&node, "dr.aliyev").await;
    let wang = Client::login(&node, "dr.wang").await;
    let (_, ids) = slots(&aliyev, 1).await;
    let (_, wids) = slots(&wang, 1).await;
    let v1 = book(&aliyev, &patient_named(&aliyev, "Abenova").await, &ids[0]).await;
    let v2 = book(&wang, &patient_named(&wang, "Hua").await, &wids[0]).await;
    let p1 = invite(&aliyev, &v1, "patient", "P1").await;
    let second_patient = invite(&aliyev, &v1, "patient", "Impostor").await;
    let p2 = invite(&wang, &v2, "patient", "P2").await;
    // Not admitted yet: no call.
    assert_eq!(
        connect(&node, &v1, ("x-visit-token", p1.clone()))
            .await
            .err(),
        Some(409)
    );
    for (c, v, t) in [(&aliyev, &v1, &p1), (&wang, &v2, &p2)] {
        guest(&node, reqwest::Method::POST, "/api/v1/guest/check-in", t).await;
        let (s, _) = c
            .post(&format!("/api/v1/visits/{v}/admit"), json!({}))
            .await;
        assert_eq!(s, StatusCode::OK);
    }
    let aliyev_cookie = cookie_of(&node, "dr.aliyev").await;
    let wang_cookie = cookie_of(&node, "dr.wang").await;
    // A clinician who is not a participant of visit 1 (another hospital: not even visible) is refused.
    assert_eq!(
        connect(&node, &v1, ("cookie", wang_cookie.clone()))
            .await
            .err(),
        Some(404)
    );
    // A signed-in user of the same hospital who is not a participant: 403.
    let karimova_like = cookie_of(&node, "coordinator").await;
    let refused = connect(&node, &v1, ("cookie", karimova_like)).await.err();
    assert!(matches!(refused, Some(403 | 404)), "{refused:?}");
    // A cross-site page cannot open the socket with the clinician's cookie.
    {
        let url = format!(
            "{}/visit/signal/{v1}",
            node.base.replace("http://", "ws://")
        );
        let mut req = url.into_client_request().unwrap();
        req.headers_mut()
            .insert("cookie", aliyev_cookie.parse().unwrap());
        req.headers_mut()
            .insert("origin", "https://evil.example".parse().unwrap());
        match tokio_tungstenite::connect_async(req).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
                assert_eq!(r.status().as_u16(), 403)
            }
            other => panic!("cross-origin socket not refused: {:?}", other.is_ok()),
        }
    }

    let mut doc = connect(&node, &v1, ("cookie", aliyev_cookie))
        .await
        .unwrap();
    let w = next_json(&mut doc).await;
    assert_eq!(
        (
            w["type"].as_str(),
            w["role"].as_str(),
            w["peers"].as_array().unwrap().len()
        ),
        (Some("welcome"), Some("clinician"), 0)
    );
    let doc_id = w["id"].as_str().unwrap().to_owned();
    let mut pat = connect(&node, &v1, ("x-visit-token", p1.clone()))
        .await
        .unwrap();
    let w = next_json(&mut pat).await;
    assert_eq!(w["peers"][0]["id"], doc_id.as_str());
    assert_eq!(w["peers"][0]["role"], "clinician");
    let pat_id = w["id"].as_str().unwrap().to_owned();
    let joined = next_json(&mut doc).await;
    assert_eq!(
        (
            joined["type"].as_str(),
            joined["peer"]["id"].as_str(),
            joined["peer"]["name"].as_str()
        ),
        (Some("peer-joined"), Some(pat_id.as_str()), Some("P1"))
    );
    // A second patient is refused from the occupied call.
    assert_eq!(
        connect(&node, &v1, ("x-visit-token", second_patient))
            .await
            .err(),
        Some(409)
    );

    let mut other = connect(&node, &v2, ("cookie", wang_cookie)).await.unwrap();
    let w = next_json(&mut other).await;
    let other_id = w["id"].as_str().unwrap().to_owned();

    // Within the visit: relayed with the sender's id.
    let offer = json!({ "type": "signal", "to": pat_id, "data": { "description": { "type": "offer", "sdp": "v=0" } } });
    doc.send(Message::Text(offer.to_string().into()))
        .await
        .unwrap();
    let got = next_json(&mut pat).await;
    assert_eq!(
        (got["type"].as_str(), got["from"].as_str()),
        (Some("signal"), Some(doc_id.as_str()))
    );
    assert_eq!(got["data"]["description"]["type"], "offer");
    // Across visits: refused, and the other visit hears nothing.
    let stray = json!({ "type": "signal", "to": other_id, "data": { "candidate": "x" } });
    pat.send(Message::Text(stray.to_string().into()))
        .await
        .unwrap();
    let e = next_json(&mut pat).await;
    assert_eq!(
        (e["type"].as_str(), e["code"].as_str()),
        (Some("error"), Some("error-visit-peer"))
    );
    assert!(
        nothing_within(&mut other, 300).await,
        "a message crossed into another visit"
    );
    // Garbage is answered, not fatal.
    pat.send(Message::Text("not json".into())).await.unwrap();
    assert_eq!(next_json(&mut pat).await["code"], "error-visit-signal");
    // The mode switch reaches the others.
    pat.send(Message::Text(
        json!({ "type": "mode", "audioOnly": true })
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    let m = next_json(&mut doc).await;
    assert_eq!(
        (m["type"].as_str(), m["audioOnly"].as_bool()),
        (Some("mode"), Some(true))
    );

    // Leaving is announced; ending the visit closes the call for everyone; participants are kept.
    pat.close(None).await.unwrap();
    let left = next_json(&mut doc).await;
    assert_eq!(
        (left["type"].as_str(), left["id"].as_str()),
        (Some("peer-left"), Some(pat_id.as_str()))
    );
    let (s, _) = aliyev
        .post(&format!("/api/v1/visits/{v1}/finish"), json!({}))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(next_json(&mut doc).await["type"], "ended");
    let (_, v) = aliyev.get(&format!("/api/v1/visits/{v1}")).await;
    let people = v["participants"].as_array().unwrap();
    assert_eq!(people.len(), 2, "{v}");
    assert!(people.iter().all(|p| p["left_at"].is_string()), "{v}");
    assert!(people
        .iter()
        .any(|p| p["role"] == "patient" && p["display_name"] == "P1"));
}

#[tokio::test]
async fn turn_credentials_follow_the_turn_rest_scheme() {
    let secret = "coturn-static-auth-secret";
    let node = start_with(caravan_server::NodeConfig {
        secure_cookies: false,
        visits: caravan_server::visits::VisitsConfig {
            turn_urls: vec![
                "turn:127.0.0.1:3478?transport=udp".into(),
                "stun:127.0.0.1:3478".into(),
            ],
            turn_secret: Some(secret.into()),
            turn_ttl_secs: 900,
            relay_only: true,
            ..Default::default()
        },
        ..caravan_server::NodeConfig::default()
    })
    .await;
    let aliyev = Client::login(&node, "dr.aliyev").await;
    let (_, ids) = slots(&aliyev, 1).await;
    let v = book(&aliyev, &patient_named(&aliyev, "Abenova").await, &ids[0]).await;
    let token = invite(&aliyev, &v, "patient", "P").await;
    let before = chrono::Utc::now().timestamp();
    let (s, user_ice) = aliyev.get(&format!("/api/v1/visits/{v}/ice")).await;
    assert_eq!(s, StatusCode::OK, "{user_ice}");
    let (s, guest_ice) = guest(&node, reqwest::Method::GET, "/api/v1/guest/ice", &token).await;
    assert_eq!(s, StatusCode::OK);
    let after = chrono::Utc::now().timestamp();
    for (ice, who) in [(&user_ice, aliyev.id()), (&guest_ice, String::new())] {
        assert_eq!(ice["iceTransportPolicy"], "relay");
        let turn = ice["iceServers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["urls"][0].as_str().unwrap().starts_with("turn:"))
            .unwrap();
        let username = turn["username"].as_str().unwrap();
        let (expiry, user) = username.split_once(':').unwrap();
        let expiry: i64 = expiry.parse().unwrap();
        assert!(
            (before + 900..=after + 900).contains(&expiry),
            "expiry {expiry}"
        );
        if who.is_empty() {
            assert!(user.starts_with("guest-"), "{user}");
        } else {
            assert_eq!(user, who);
        }
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(username.as_bytes());
        let expected =
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        assert_eq!(turn["credential"], expected.as_str());
        // The STUN server carries no credential.
        assert!(ice["iceServers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["urls"][0] == "stun:127.0.0.1:3478" && s.get("username").is_none()));
    }
    // Someone who may read the visit but is not in it gets no credential.
    let coordinator = Client::login(&node, "coordinator").await;
    let (s, _) = coordinator.get(&format!("/api/v1/visits/{v}/ice")).await;
    assert!(s == StatusCode::FORBIDDEN || s == StatusCode::NOT_FOUND);
}
