//! Video visits and e-prescriptions through FHIR R4, against a real demo node: a visit booked and a prescription
//! written through the JSON API are read and searched as Schedule / Slot / Appointment / Encounter /
//! MedicationRequest / MedicationDispense / Medication; references resolve, codes are the formulary's, a user of
//! another hospital sees nothing, reads are audited, bad search parameters are 400 OperationOutcomes, and
//! `POST /fhir/Appointment` books with the JSON API's rules.

#![allow(clippy::unwrap_used)]

mod common;

use caravan_server::{demo, AppState, Blobs, NodeConfig};
use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// A demo node with the FHIR routes and a data directory for the prescription signing key.
async fn start_node() -> Node {
    let dir = tempfile::tempdir().unwrap();
    let config = NodeConfig {
        secure_cookies: false,
        certs_dir: Some(dir.path().join("certs")),
        ..NodeConfig::default()
    };
    let store = caravan_server::open_store(dir.path().join("caravan.sqlite").to_str().unwrap())
        .await
        .unwrap();
    demo::seed(store.as_ref(), &config.sla).await.unwrap();
    let blobs = Blobs::open(dir.path().join("blobs").to_str().unwrap()).unwrap();
    let state = AppState::new(store, blobs, config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(caravan_server::serve_with(
        listener,
        state,
        caravan_fhir::routes(),
        std::future::pending(),
    ));
    Node { base, dir }
}

async fn patient_id(c: &Client, name: &str) -> String {
    let (s, v) = c
        .api(Method::GET, &format!("/api/v1/patients?name={name}"), None)
        .await;
    assert_eq!(s, 200, "{v}");
    v[0]["id"].as_str().unwrap().to_owned()
}

/// A resource read through FHIR, checked as valid R4 of the expected type.
async fn read(c: &Client, reference: &str) -> Value {
    let r = c.get(&format!("/fhir/{reference}")).await;
    assert_eq!(r.status, StatusCode::OK, "{reference}: {:#}", r.body);
    assert!(r.content_type.starts_with("application/fhir+json"));
    assert_r4(&r.body);
    let rtype = reference.split('/').next().unwrap();
    assert_eq!(r.body["resourceType"], rtype, "{:#}", r.body);
    assert_eq!(
        format!("{rtype}/{}", r.body["id"].as_str().unwrap()),
        reference
    );
    r.body
}

async fn search(c: &Client, rtype: &str, query: &str) -> Vec<Value> {
    entries(&c.get(&format!("/fhir/{rtype}?{query}")).await, rtype)
}

fn ids(list: &[Value]) -> Vec<String> {
    list.iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

/// How many audit events of this kind the patient's access log holds (read as the patient's home referrer).
async fn audited(c: &Client, pid: &str, entity_type: &str, entity_id: &str) -> usize {
    let (s, log) = c
        .api(
            Method::GET,
            &format!("/api/v1/patients/{pid}/access-log"),
            None,
        )
        .await;
    assert_eq!(s, 200, "{log}");
    log.as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            r["event"]["entity_type"] == entity_type
                && r["event"]["entity_id"] == entity_id
                && r["event"]["action"] == "read"
        })
        .count()
}

#[tokio::test]
async fn visits_and_prescriptions_are_fhir_resources() {
    let node = start_node().await;
    let doc = Client::login(&node, "dr.aliyev").await;
    let wang = Client::login(&node, "dr.wang").await;
    let aigerim = patient_id(&doc, "Aigerim").await;
    let other = {
        let (_, list) = doc.api(Method::GET, "/api/v1/patients", None).await;
        list.as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_str().unwrap().to_owned())
            .find(|id| *id != aigerim)
            .unwrap()
    };

    // Capability statement: every new type with its search parameters.
    let meta = doc.get("/fhir/metadata").await.body;
    for (t, params) in [
        ("Schedule", vec!["actor"]),
        ("Slot", vec!["schedule", "start", "status"]),
        (
            "Appointment",
            vec!["patient", "practitioner", "date", "status"],
        ),
        ("Encounter", vec!["patient", "appointment", "status"]),
        ("MedicationRequest", vec!["patient", "encounter", "status"]),
        ("MedicationDispense", vec!["prescription", "patient"]),
        ("Medication", vec!["code"]),
    ] {
        let r = meta["rest"][0]["resource"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["type"] == t)
            .unwrap_or_else(|| panic!("{t} missing from metadata"));
        for p in params {
            assert!(
                r["searchParam"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|x| x["name"] == p),
                "{t}.{p}"
            );
        }
    }

    // A schedule with three 20-minute slots tomorrow, the first one booked: all through the JSON API.
    let (s, sched) = doc
        .api(
            Method::POST,
            "/api/v1/visits/schedules",
            Some(json!({ "service": "video follow-up" })),
        )
        .await;
    assert_eq!(s, 201, "{sched}");
    let sched_id = sched["id"].as_str().unwrap().to_owned();
    let start = (chrono::Utc::now() + chrono::Duration::days(1))
        .date_naive()
        .and_hms_opt(9, 0, 0)
        .unwrap()
        .and_utc();
    let (s, slots) = doc
        .api(
            Method::POST,
            &format!("/api/v1/visits/schedules/{sched_id}/slots"),
            Some(json!({ "start": start.to_rfc3339(), "minutes": 20, "count": 3 })),
        )
        .await;
    assert_eq!(s, 201, "{slots}");
    let slot_ids: Vec<String> = slots
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap().to_owned())
        .collect();
    let (s, booked) = doc
        .api(
            Method::POST,
            "/api/v1/visits",
            Some(json!({ "patient_id": aigerim, "slot_id": slot_ids[0], "reason": "blood pressure review" })),
        )
        .await;
    assert_eq!(s, 201, "{booked}");
    let vid = booked["visit"]["id"].as_str().unwrap().to_owned();

    // Schedule and Slot.
    let found = search(
        &doc,
        "Schedule",
        &format!("actor=Practitioner/{}", doc.id()),
    )
    .await;
    assert_eq!(ids(&found), [sched_id.as_str()]);
    let sc = read(&doc, &format!("Schedule/{sched_id}")).await;
    assert_eq!(sc["serviceType"][0]["text"], "video follow-up");
    for a in sc["actor"].as_array().unwrap() {
        read(&doc, a["reference"].as_str().unwrap()).await;
    }
    let all = search(&doc, "Slot", &format!("schedule=Schedule/{sched_id}")).await;
    assert_eq!(ids(&all), slot_ids, "in time order");
    let busy = search(&doc, "Slot", &format!("schedule={sched_id}&status=busy")).await;
    assert_eq!(ids(&busy), [slot_ids[0].clone()]);
    let free = search(&doc, "Slot", &format!("schedule={sched_id}&status=free")).await;
    assert_eq!(ids(&free), slot_ids[1..]);
    let second = (start + chrono::Duration::minutes(20)).to_rfc3339();
    let later = search(
        &doc,
        "Slot",
        &format!("schedule={sched_id}&start=ge{}", url_encode(&second)),
    )
    .await;
    assert_eq!(ids(&later), slot_ids[1..]);
    let window = search(
        &doc,
        "Slot",
        &format!(
            "schedule={sched_id}&start=ge{}&start=lt{}",
            url_encode(&second),
            url_encode(&(start + chrono::Duration::minutes(40)).to_rfc3339())
        ),
    )
    .await;
    assert_eq!(ids(&window), [slot_ids[1].clone()]);
    let sl = read(&doc, &format!("Slot/{}", slot_ids[0])).await;
    assert_eq!(sl["status"], "busy");
    assert_eq!(sl["schedule"]["reference"], format!("Schedule/{sched_id}"));

    // Appointment: search by patient, practitioner, date and status; the references resolve.
    let day = start.format("%Y-%m-%d").to_string();
    let appts = search(
        &doc,
        "Appointment",
        &format!(
            "patient=Patient/{aigerim}&practitioner={}&date={day}",
            doc.id()
        ),
    )
    .await;
    assert_eq!(ids(&appts), [vid.as_str()]);
    let appt = read(&doc, &format!("Appointment/{vid}")).await;
    assert_eq!(appt, appts[0]);
    assert_eq!(appt["status"], "booked");
    assert_eq!(appt["description"], "blood pressure review");
    assert_eq!(appt["minutesDuration"], 20);
    assert_eq!(
        appt["slot"][0]["reference"],
        format!("Slot/{}", slot_ids[0])
    );
    let actors: Vec<&str> = appt["participant"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["actor"]["reference"].as_str().unwrap())
        .collect();
    assert_eq!(
        actors,
        [
            format!("Patient/{aigerim}"),
            format!("Practitioner/{}", doc.id())
        ]
    );
    for a in &actors {
        read(&doc, a).await;
    }
    assert!(search(
        &doc,
        "Appointment",
        &format!("patient={aigerim}&date=lt2000")
    )
    .await
    .is_empty());
    assert!(search(
        &doc,
        "Appointment",
        &format!("patient={aigerim}&status=fulfilled")
    )
    .await
    .is_empty());
    // The Encounter of a booked visit is planned, with no period yet.
    let enc = read(&doc, &format!("Encounter/{vid}")).await;
    assert_eq!(enc["status"], "planned");
    assert!(enc.get("period").is_none());

    // The visit takes place (waiting room, admitted, finished), then a prescription is written after it.
    for step in ["check-in", "admit", "finish"] {
        let (s, v) = doc
            .api(
                Method::POST,
                &format!("/api/v1/visits/{vid}/{step}"),
                Some(json!({})),
            )
            .await;
        assert_eq!(s, 200, "{step}: {v}");
    }
    let enc = read(&doc, &format!("Encounter/{vid}")).await;
    assert_eq!(enc["status"], "finished");
    assert_eq!(enc["class"]["code"], "VR");
    assert!(enc["period"]["start"].is_string() && enc["period"]["end"].is_string());
    assert_eq!(enc["subject"]["reference"], format!("Patient/{aigerim}"));
    assert_eq!(
        enc["appointment"][0]["reference"],
        format!("Appointment/{vid}")
    );
    assert_eq!(
        read(&doc, &format!("Appointment/{vid}")).await["status"],
        "fulfilled"
    );
    assert_eq!(
        ids(&search(&doc, "Encounter", &format!("appointment=Appointment/{vid}")).await),
        [vid.as_str()]
    );
    assert_eq!(
        ids(&search(
            &doc,
            "Encounter",
            &format!("patient={aigerim}&status=finished")
        )
        .await),
        [vid.as_str()]
    );

    let (s, e) = doc
        .api(
            Method::POST,
            "/api/v1/rx/prescriptions",
            Some(
                json!({ "patient_id": other, "visit_id": vid, "medication": "198440",
                         "dose": "500", "times_per_day": 3, "duration_days": 5 }),
            ),
        )
        .await;
    assert_eq!(s, 422, "a visit of another patient: {e}");
    assert_eq!(e["error"], "error-rx-visit");
    let (s, e) = doc
        .api(
            Method::POST,
            "/api/v1/rx/prescriptions",
            Some(json!({ "patient_id": aigerim, "visit_id": uuid::Uuid::now_v7(), "medication": "198440",
                         "dose": "500", "times_per_day": 3, "duration_days": 5 })),
        )
        .await;
    assert_eq!(s, 404, "an unknown visit: {e}");
    let (s, written) = doc
        .api(
            Method::POST,
            "/api/v1/rx/prescriptions",
            Some(
                json!({ "patient_id": aigerim, "visit_id": vid, "medication": "198440",
                         "dose": "500", "times_per_day": 3, "duration_days": 5,
                         "instructions": "after meals" }),
            ),
        )
        .await;
    assert_eq!(s, 201, "{written}");
    assert_eq!(written["visit_id"], vid.as_str());
    let rxid = written["id"].as_str().unwrap().to_owned();
    // The JSON API's own FHIR bundle names the encounter too.
    let (_, bundle) = doc
        .api(
            Method::GET,
            &format!("/api/v1/rx/prescriptions/{rxid}/fhir"),
            None,
        )
        .await;
    assert_eq!(
        bundle["entry"][0]["resource"]["encounter"]["reference"],
        format!("Encounter/{vid}")
    );

    // MedicationRequest: by encounter and by patient; a FHIR Dosage; the medication resolves to the formulary.
    let before = audited(&doc, &aigerim, "prescription", &rxid).await;
    let by_enc = search(
        &doc,
        "MedicationRequest",
        &format!("encounter=Encounter/{vid}"),
    )
    .await;
    assert_eq!(ids(&by_enc), [rxid.as_str()]);
    let mr = read(&doc, &format!("MedicationRequest/{rxid}")).await;
    assert_eq!(
        audited(&doc, &aigerim, "prescription", &rxid).await,
        before + 1,
        "the read is an audit event of the prescription"
    );
    assert_eq!(mr, by_enc[0]);
    assert_eq!(mr["status"], "active");
    assert_eq!(mr["intent"], "order");
    assert_eq!(mr["encounter"]["reference"], format!("Encounter/{vid}"));
    assert_eq!(mr["subject"]["reference"], format!("Patient/{aigerim}"));
    assert_eq!(
        mr["requester"]["reference"],
        format!("Practitioner/{}", doc.id())
    );
    let dosage = &mr["dosageInstruction"][0];
    assert_eq!(dosage["timing"]["repeat"]["frequency"], 3);
    assert_eq!(dosage["timing"]["repeat"]["periodUnit"], "d");
    assert_eq!(dosage["timing"]["repeat"]["boundsDuration"]["value"], 5);
    assert_eq!(dosage["doseAndRate"][0]["doseQuantity"]["value"], 500);
    assert_eq!(
        dosage["doseAndRate"][0]["doseQuantity"]["system"],
        "http://unitsofmeasure.org"
    );
    assert_eq!(
        dosage["route"]["coding"][0]["system"],
        "http://snomed.info/sct"
    );
    assert_eq!(dosage["patientInstruction"], "after meals");
    assert_eq!(mr["dispenseRequest"]["quantity"]["value"], 15);
    for r in [
        mr["encounter"]["reference"].as_str().unwrap(),
        mr["subject"]["reference"].as_str().unwrap(),
        mr["requester"]["reference"].as_str().unwrap(),
    ] {
        read(&doc, r).await;
    }
    assert_eq!(mr["medicationReference"]["reference"], "Medication/198440");
    let med = read(&doc, "Medication/198440").await;
    assert_eq!(
        med["code"]["coding"][0]["system"],
        "http://www.nlm.nih.gov/research/umls/rxnorm"
    );
    assert_eq!(med["code"]["coding"][0]["code"], "198440");
    assert_eq!(
        ids(&search(&doc, "Medication", "code=198440").await),
        ["198440"]
    );
    assert_eq!(
        ids(&search(
            &doc,
            "MedicationRequest",
            &format!("patient=Patient/{aigerim}&status=active")
        )
        .await),
        [rxid.as_str()]
    );
    assert!(search(
        &doc,
        "MedicationRequest",
        &format!("patient={aigerim}&status=completed")
    )
    .await
    .is_empty());

    // Dispensed by the pharmacy (a clinician may not): MedicationDispense, and the request is completed.
    let (s, refused) = doc
        .api(
            Method::POST,
            &format!("/api/v1/rx/prescriptions/{rxid}/dispense"),
            Some(json!({ "performer": "Dr Aliyev" })),
        )
        .await;
    assert_eq!(s, 403, "{refused}");
    let pharmacist = Client::login(&node, "pharmacist").await;
    // The pharmacy is shown the prescription: it reads it by id, never by its patient or visit.
    assert_eq!(
        read(&pharmacist, &format!("MedicationRequest/{rxid}")).await["id"],
        rxid.as_str()
    );
    for q in [
        format!("MedicationRequest?patient=Patient/{aigerim}"),
        format!("MedicationRequest?encounter=Encounter/{vid}"),
        format!("MedicationDispense?patient=Patient/{aigerim}"),
        format!("Patient/{aigerim}"),
        "Patient".to_owned(),
        format!("Encounter/{vid}"),
        format!("Appointment?patient={aigerim}"),
        "Practitioner".to_owned(),
        format!("Observation?patient=Patient/{aigerim}"),
        format!("Device?patient=Patient/{aigerim}"),
        "ServiceRequest".to_owned(),
    ] {
        assert_outcome(&pharmacist.get(&format!("/fhir/{q}")).await, 403, &q);
    }
    assert_eq!(
        ids(&search(&pharmacist, "Medication", "code=198440").await),
        ["198440"]
    );
    let (s, disp) = pharmacist
        .api(
            Method::POST,
            &format!("/api/v1/rx/prescriptions/{rxid}/dispense"),
            Some(json!({ "performer": "Pharmacy 7", "note": "generic" })),
        )
        .await;
    assert_eq!(s, 201, "{disp}");
    let did = disp["id"].as_str().unwrap().to_owned();
    let disps = search(
        &doc,
        "MedicationDispense",
        &format!("prescription=MedicationRequest/{rxid}"),
    )
    .await;
    assert_eq!(ids(&disps), [did.as_str()]);
    assert_eq!(
        search(
            &pharmacist,
            "MedicationDispense",
            &format!("prescription=MedicationRequest/{rxid}"),
        )
        .await,
        disps
    );
    assert_eq!(
        read(&pharmacist, &format!("MedicationDispense/{did}")).await,
        disps[0]
    );
    let md = read(&doc, &format!("MedicationDispense/{did}")).await;
    assert_eq!(md, disps[0]);
    assert_eq!(md["status"], "completed");
    assert_eq!(md["quantity"]["value"], 15);
    assert_eq!(md["performer"][0]["actor"]["display"], "Pharmacy 7");
    assert_eq!(
        md["authorizingPrescription"][0]["reference"],
        format!("MedicationRequest/{rxid}")
    );
    assert_eq!(md["context"]["reference"], format!("Encounter/{vid}"));
    // Read once by the prescriber and once by the pharmacy, each in the patient's access log.
    assert_eq!(audited(&doc, &aigerim, "dispense", &did).await, 2);
    assert_eq!(
        read(&doc, &format!("MedicationRequest/{rxid}")).await["status"],
        "completed"
    );

    // A clinician of another hospital gets nothing: every read is 404, every search empty.
    for r in [
        format!("Appointment/{vid}"),
        format!("Encounter/{vid}"),
        format!("MedicationRequest/{rxid}"),
        format!("MedicationDispense/{did}"),
    ] {
        assert_outcome(&wang.get(&format!("/fhir/{r}")).await, 404, &r);
    }
    for (t, q) in [
        ("Appointment", format!("patient={aigerim}")),
        ("Appointment", format!("date={day}")),
        ("Encounter", format!("appointment={vid}")),
        ("MedicationRequest", format!("encounter={vid}")),
        ("MedicationDispense", format!("prescription={rxid}")),
    ] {
        assert!(search(&wang, t, &q).await.is_empty(), "{t}?{q}");
    }
    assert_outcome(
        &wang
            .get(&format!("/fhir/MedicationRequest?patient={aigerim}"))
            .await,
        404,
        "another hospital's patient",
    );

    // The patient sees their own visit and prescription, but not the clinicians' calendars.
    let me = Client::login(&node, "patient").await;
    read(&me, &format!("Appointment/{vid}")).await;
    read(&me, &format!("MedicationRequest/{rxid}")).await;
    assert_outcome(
        &me.get(&format!("/fhir/Slot?schedule={sched_id}")).await,
        403,
        "patient slots",
    );

    // Bad search parameters: 400 OperationOutcome.
    for q in [
        "Appointment?date=tomorrow",
        "Appointment?date=ne2030-01-01",
        "Appointment?status=noshow",
        "Appointment?color=blue",
        "Slot?status=maybe",
        "Encounter?appointment=Patient/1",
        "MedicationRequest?status=active",
        "MedicationRequest?patient=not-an-id",
        "MedicationDispense",
    ] {
        assert_outcome(&doc.get(&format!("/fhir/{q}")).await, 400, q);
    }
    for r in [
        "Appointment/nope",
        "Slot/nope",
        "Medication/000000",
        "Encounter/0193e0f0-0000-7000-8000-000000000000",
    ] {
        assert_outcome(&doc.get(&format!("/fhir/{r}")).await, 404, r);
    }
}

#[tokio::test]
async fn appointments_are_booked_through_fhir() {
    let node = start_node().await;
    let doc = Client::login(&node, "dr.aliyev").await;
    let wang_id = Client::login(&node, "dr.wang").await.id();
    let aigerim = patient_id(&doc, "Aigerim").await;
    let (_, sched) = doc
        .api(
            Method::POST,
            "/api/v1/visits/schedules",
            Some(json!({ "service": "video clinic" })),
        )
        .await;
    let sched_id = sched["id"].as_str().unwrap();
    let start = (chrono::Utc::now() + chrono::Duration::hours(3)).to_rfc3339();
    let (_, slots) = doc
        .api(
            Method::POST,
            &format!("/api/v1/visits/schedules/{sched_id}/slots"),
            Some(json!({ "start": start, "minutes": 30, "count": 1 })),
        )
        .await;
    let slot = slots[0]["id"].as_str().unwrap();
    let body = json!({
        "resourceType": "Appointment",
        "status": "booked",
        "description": "first video visit",
        "slot": [{ "reference": format!("Slot/{slot}") }],
        "participant": [{ "actor": { "reference": format!("Patient/{aigerim}") }, "status": "accepted" }]
    });
    let r = doc.post_fhir("/fhir/Appointment", &body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:#}", r.body);
    assert_r4(&r.body);
    let id = r.body["id"].as_str().unwrap().to_owned();
    assert!(r
        .location
        .unwrap()
        .ends_with(&format!("/fhir/Appointment/{id}")));
    assert_eq!(r.body["status"], "booked");
    // The same visit through the JSON API, and the slot is now busy.
    let (s, v) = doc
        .api(Method::GET, &format!("/api/v1/visits/{id}"), None)
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["visit"]["reason"], "first video visit");
    assert_eq!(read(&doc, &format!("Slot/{slot}")).await["status"], "busy");

    // The slot is taken now: 409 with an OperationOutcome, nothing booked twice.
    let again = doc.post_fhir("/fhir/Appointment", &body).await;
    assert_outcome(&again, 409, "taken slot");
    assert_eq!(
        search(&doc, "Appointment", &format!("patient={aigerim}"))
            .await
            .len(),
        1
    );
    // Bad input: no patient, an unknown slot, a wrong status, not an Appointment.
    let mut no_patient = body.clone();
    no_patient["participant"] = json!([{ "actor": { "reference": format!("Practitioner/{}", doc.id()) }, "status": "accepted" }]);
    assert_outcome(
        &doc.post_fhir("/fhir/Appointment", &no_patient).await,
        422,
        "no patient",
    );
    let mut unknown_slot = body.clone();
    unknown_slot["slot"] = json!([{ "reference": format!("Slot/{}", uuid::Uuid::now_v7()) }]);
    assert_outcome(
        &doc.post_fhir("/fhir/Appointment", &unknown_slot).await,
        404,
        "unknown slot",
    );
    let mut someone_else = unknown_slot.clone();
    someone_else["slot"] = body["slot"].clone();
    someone_else["participant"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "actor": { "reference": format!("Practitioner/{}", wang_id) }, "status": "accepted" }));
    assert_outcome(
        &doc.post_fhir("/fhir/Appointment", &someone_else).await,
        422,
        "another practitioner's slot",
    );
    let mut cancelled = body.clone();
    cancelled["status"] = json!("cancelled");
    assert_outcome(
        &doc.post_fhir("/fhir/Appointment", &cancelled).await,
        422,
        "status",
    );
    assert_outcome(
        &doc.post_fhir("/fhir/Appointment", &json!({ "resourceType": "Patient" }))
            .await,
        400,
        "wrong type",
    );
    // A patient does not book through FHIR (as in the JSON API).
    let me = Client::login(&node, "patient").await;
    assert_outcome(
        &me.post_fhir("/fhir/Appointment", &body).await,
        403,
        "patient books",
    );

    // The visit page offers the prescribing form, which carries the visit.
    let page = doc.get(&format!("/ui/visits/{id}")).await;
    let html = String::from_utf8(page.bytes).unwrap();
    let link = format!("/ui/patients/{aigerim}/rx?visit={id}");
    assert!(html.contains(&link), "{html}");
    let form = String::from_utf8(doc.get(&link).await.bytes).unwrap();
    assert!(
        form.contains(&format!("name=\"visit\" value=\"{id}\"")),
        "{form}"
    );
}

fn url_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
