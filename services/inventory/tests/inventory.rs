//! Inventory end to end over a real nats-server: identity events published to the
//! `SIGIL_EVENTS` stream are recorded, and `query` / `get` answer over request/reply.
//!
//! Each test proves one behaviour:
//! - `records_events_idempotently`: issued then revoked is reflected; redelivering the
//!   same events (same event id, new `Nats-Msg-Id` so JetStream keeps the copy) and a
//!   second issued event for the same serial change nothing;
//! - `revoked_before_issued_resolves`: a revocation that overtakes its issuance is
//!   retried until the issuance lands;
//! - `pagination_walks_every_record_once`: 250 records in pages of 100, no duplicates
//!   or gaps, and the last page has no cursor;
//! - `search_by_san_status_and_expiry`: exact and `*.` SAN search, status derived at
//!   read time, and the "expires within" window;
//! - `bad_input_is_rejected`: limit 0, bad cursor, unknown field, bad serial.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, DurationRound, Utc};
use sigil_bus::{Bus, ClientError, Runtime};
use sigil_contracts::event::{EventData, IdentityIssued, IdentityRevoked};
use sigil_contracts::inventory::{GetRequest, QueryRequest, QueryResponse};
use sigil_contracts::subjects::{INVENTORY_GET, INVENTORY_QUERY};
use sigil_contracts::types::{
    CertificateFacts, CredentialRecord, CredentialStatus, Profile, RevocationReason, Sans,
};
use sigil_contracts::{CloudEvent, ErrorCode, Reply};
use sigil_telemetry::{Health, Metrics};
use sigil_testkit::{NatsServer, TestDb, eventually};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(20);
const TIMEOUT: Duration = Duration::from_secs(5);

struct Harness {
    _nats: NatsServer,
    _db: TestDb,
    bus: Bus,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), sigil_inventory::Error>>,
}

impl Harness {
    async fn start() -> Harness {
        let nats = NatsServer::start().await;
        let db = TestDb::from_env_or_sqlite().await;
        let bus = Bus::connect(&nats.url(), "inventory-test").await.unwrap();
        let rt = Runtime::new(bus.clone(), Metrics::new(), Health::new());
        let shutdown = CancellationToken::new();
        let config = sigil_inventory::Config {
            database_url: db.url().to_owned(),
        };
        let task = tokio::spawn(sigil_inventory::run(config, rt.clone(), shutdown.clone()));
        eventually(WAIT, "inventory ready", || {
            let health = rt.health.clone();
            // Not `is_ready()`: that is true before the service registers itself.
            async move { (health.report().components.get("inventory") == Some(&true)).then_some(()) }
        })
        .await;
        Harness {
            _nats: nats,
            _db: db,
            bus,
            shutdown,
            task,
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(WAIT, self.task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }

    /// Publish `event` with its own id as `Nats-Msg-Id`.
    async fn publish<T: EventData>(&self, event: &CloudEvent<T>) {
        self.publish_as(event, &event.id).await;
    }

    /// Publish `event` under another `Nats-Msg-Id`, so JetStream stores a second copy:
    /// a redelivery as the consumer sees it.
    async fn publish_as<T: EventData>(&self, event: &CloudEvent<T>, msg_id: &str) {
        let payload = Bytes::from(serde_json::to_vec(event).unwrap());
        self.bus
            .publish_event(&event.nats_subject(), msg_id, payload, None)
            .await
            .unwrap();
    }

    async fn get(&self, serial: &str) -> Result<CredentialRecord, ClientError> {
        self.bus
            .request(
                INVENTORY_GET,
                &GetRequest {
                    serial: serial.to_owned(),
                },
                TIMEOUT,
            )
            .await
    }

    async fn query(&self, req: &QueryRequest) -> Result<QueryResponse, ClientError> {
        self.bus.request(INVENTORY_QUERY, req, TIMEOUT).await
    }

    /// Wait until `serial` reads back satisfying `ok`.
    async fn wait_for(
        &self,
        serial: &str,
        what: &str,
        ok: impl Fn(&CredentialRecord) -> bool,
    ) -> CredentialRecord {
        eventually(WAIT, what, || async {
            self.get(serial).await.ok().filter(|r| ok(r))
        })
        .await
    }
}

/// Certificate times have whole seconds (X.509), and PostgreSQL keeps microseconds.
fn whole_seconds(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(chrono::Duration::seconds(1)).unwrap()
}

fn issued(serial: &str, dns: &[&str], not_after: DateTime<Utc>) -> CloudEvent<IdentityIssued> {
    let now = whole_seconds(Utc::now());
    let not_after = whole_seconds(not_after);
    CloudEvent::new(
        "/sigil/issuer",
        IdentityIssued {
            facts: CertificateFacts {
                serial: serial.to_owned(),
                subject: format!("CN={}", dns.first().unwrap_or(&"test")),
                sans: Sans {
                    dns: dns.iter().map(|d| (*d).to_owned()).collect(),
                    ..Sans::default()
                },
                issuer: "CN=Sigil Test CA".to_owned(),
                not_before: now - chrono::Duration::minutes(1),
                not_after,
                key_algorithm: "ecdsa-p256".to_owned(),
                signature_algorithm: "ecdsa-with-SHA256".to_owned(),
                profile: Profile::TlsServer,
                fingerprint_sha256: "ab".repeat(32),
            },
            certificate_pem: format!(
                "-----BEGIN CERTIFICATE-----\n{serial}\n-----END CERTIFICATE-----\n"
            ),
            issuer_ca_id: None,
            chain_pem: vec![],
            requested_by: "test".to_owned(),
            kind: sigil_contracts::types::CaKind::Classical,
        },
        now,
        None,
    )
}

fn revoked(serial: &str, reason: RevocationReason) -> CloudEvent<IdentityRevoked> {
    CloudEvent::new(
        "/sigil/revocation",
        IdentityRevoked {
            serial: serial.to_owned(),
            reason,
            reason_code: reason.code(),
            revoked_at: Utc::now(),
            revoked_by: "admin".to_owned(),
        },
        Utc::now(),
        None,
    )
}

fn in_a_day() -> DateTime<Utc> {
    Utc::now() + chrono::Duration::days(1)
}

fn serials(resp: &QueryResponse) -> Vec<String> {
    resp.items.iter().map(|r| r.facts.serial.clone()).collect()
}

fn code(err: ClientError) -> ErrorCode {
    match err {
        ClientError::Wire(e) => e.code,
        other => panic!("expected a wire error, got {other}"),
    }
}

#[tokio::test]
async fn records_events_idempotently() {
    let h = Harness::start().await;
    let issue = issued("0a01", &["api.example.com"], in_a_day());
    h.publish(&issue).await;
    let rec = h.wait_for("0A:01", "0a01 recorded", |_| true).await;
    assert_eq!(rec.status, CredentialStatus::Active);
    assert_eq!(rec.facts, issue.data.facts);
    assert_eq!(rec.certificate_pem, issue.data.certificate_pem);

    let revoke = revoked("0a01", RevocationReason::KeyCompromise);
    h.publish(&revoke).await;
    let rec = h
        .wait_for("0a01", "0a01 revoked", |r| {
            r.status == CredentialStatus::Revoked
        })
        .await;
    assert_eq!(rec.revocation_reason, Some(RevocationReason::KeyCompromise));
    let revoked_at = rec.revoked_at.unwrap();

    // Redeliveries of both events, a second issued event for the same serial (new
    // event id, different facts) and a second revocation with another reason.
    h.publish_as(&issue, "redelivery-1").await;
    h.publish_as(&revoke, "redelivery-2").await;
    let mut reissue = issued("0a01", &["other.example.com"], in_a_day());
    reissue.data.facts.subject = "CN=changed".to_owned();
    h.publish(&reissue).await;
    h.publish(&revoked("0a01", RevocationReason::Superseded))
        .await;
    // Events are applied in order, so once a later marker is visible, all of the above
    // have been processed.
    h.publish(&issued("0a02", &["marker.example.com"], in_a_day()))
        .await;
    h.wait_for("0a02", "marker recorded", |_| true).await;

    let after = h.get("0a01").await.unwrap();
    assert_eq!(after.facts, issue.data.facts);
    assert_eq!(after.status, CredentialStatus::Revoked);
    assert_eq!(
        after.revocation_reason,
        Some(RevocationReason::KeyCompromise)
    );
    assert_eq!(after.revoked_at, Some(revoked_at));
    let by_old_san = h
        .query(&QueryRequest {
            san: Some("api.example.com".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(serials(&by_old_san), vec!["0a01"]);
    let by_new_san = h
        .query(&QueryRequest {
            san: Some("other.example.com".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(by_new_san.items.is_empty());
    h.stop().await;
}

#[tokio::test]
async fn revoked_before_issued_resolves() {
    let h = Harness::start().await;
    h.publish(&revoked("0b01", RevocationReason::CessationOfOperation))
        .await;
    // The revocation waits (retried) until the issuance arrives.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(code(h.get("0b01").await.unwrap_err()), ErrorCode::NotFound);
    h.publish(&issued("0b01", &["late.example.com"], in_a_day()))
        .await;
    let rec = h
        .wait_for("0b01", "0b01 revoked", |r| {
            r.status == CredentialStatus::Revoked
        })
        .await;
    assert_eq!(
        rec.revocation_reason,
        Some(RevocationReason::CessationOfOperation)
    );
    h.stop().await;
}

#[tokio::test]
async fn pagination_walks_every_record_once() {
    let h = Harness::start().await;
    let expected: BTreeSet<String> = (0..250).map(|i| format!("{:04x}", 0x1000 + i)).collect();
    for serial in &expected {
        h.publish(&issued(
            serial,
            &[&format!("n{serial}.page.test")],
            in_a_day(),
        ))
        .await;
    }
    let all = QueryRequest {
        san: Some("*.page.test".into()),
        limit: Some(500),
        ..Default::default()
    };
    eventually(WAIT, "250 records", || async {
        h.query(&all).await.ok().filter(|r| r.items.len() == 250)
    })
    .await;

    let mut seen = Vec::new();
    let mut cursor = None;
    let mut pages = Vec::new();
    loop {
        let page = h
            .query(&QueryRequest {
                limit: Some(100),
                cursor: cursor.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        pages.push(page.items.len());
        seen.extend(serials(&page));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(pages, vec![100, 100, 50]);
    let unique: BTreeSet<String> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "duplicates across pages");
    assert_eq!(unique, expected);
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted, "pages are in serial order");
    h.stop().await;
}

#[tokio::test]
async fn search_by_san_status_and_expiry() {
    let h = Harness::start().await;
    let now = Utc::now();
    h.publish(&issued(
        "0c01",
        &["api.example.com"],
        now + chrono::Duration::days(2),
    ))
    .await;
    h.publish(&issued(
        "0c02",
        &["deep.x.example.com"],
        now + chrono::Duration::minutes(30),
    ))
    .await;
    h.publish(&issued(
        "0c03",
        &["example.com"],
        now + chrono::Duration::days(2),
    ))
    .await;
    h.publish(&issued(
        "0c04",
        &["*.example.com"],
        now + chrono::Duration::days(2),
    ))
    .await;
    h.publish(&issued(
        "0c05",
        &["other.org"],
        now - chrono::Duration::seconds(5),
    ))
    .await;
    let mut with_ip = issued("0c06", &[], now + chrono::Duration::days(2));
    with_ip.data.facts.sans.ip = vec!["10.0.0.1".parse().unwrap()];
    with_ip.data.facts.sans.uri = vec!["spiffe://example.org/ns/prod/sa/web".into()];
    h.publish(&with_ip).await;
    h.wait_for("0c06", "all recorded", |_| true).await;

    let san = |s: &str| QueryRequest {
        san: Some(s.to_owned()),
        ..Default::default()
    };
    let cases: [(&str, &[&str]); 8] = [
        ("api.example.com", &["0c01"]),
        ("API.Example.COM.", &["0c01"]),
        ("*.example.com", &["0c01", "0c02", "0c04"]),
        ("*.x.example.com", &["0c02"]),
        ("example.com", &["0c03"]),
        ("10.0.0.1", &["0c06"]),
        ("spiffe://example.org/ns/prod/sa/web", &["0c06"]),
        ("nothing.example.net", &[]),
    ];
    for (query, want) in cases {
        let got = h.query(&san(query)).await.unwrap();
        assert_eq!(serials(&got), want, "san {query}");
    }

    // 0c05 is past its notAfter: expired at read time, before any expired event.
    let rec = h.get("0c05").await.unwrap();
    assert_eq!(rec.status, CredentialStatus::Expired);
    let by_status = |s| QueryRequest {
        status: Some(s),
        ..Default::default()
    };
    let expired = h
        .query(&by_status(CredentialStatus::Expired))
        .await
        .unwrap();
    assert_eq!(serials(&expired), vec!["0c05"]);
    let active = h.query(&by_status(CredentialStatus::Active)).await.unwrap();
    assert_eq!(
        serials(&active),
        vec!["0c01", "0c02", "0c03", "0c04", "0c06"]
    );

    let expiring = QueryRequest {
        expiring_within_seconds: Some(3600),
        ..Default::default()
    };
    assert_eq!(serials(&h.query(&expiring).await.unwrap()), vec!["0c02"]);
    let combined = QueryRequest {
        expiring_within_seconds: Some(3 * 86_400),
        san: Some("*.example.com".into()),
        status: Some(CredentialStatus::Active),
        limit: Some(2),
        ..Default::default()
    };
    let first = h.query(&combined).await.unwrap();
    assert_eq!(serials(&first), vec!["0c01", "0c02"]);
    let second = h
        .query(&QueryRequest {
            cursor: first.next_cursor.clone(),
            ..combined.clone()
        })
        .await
        .unwrap();
    assert_eq!(serials(&second), vec!["0c04"]);
    assert_eq!(second.next_cursor, None);
    h.stop().await;
}

#[tokio::test]
async fn bad_input_is_rejected() {
    let h = Harness::start().await;
    let raw = |op, body: &'static str| {
        let bus = h.bus.clone();
        async move {
            let bytes = bus
                .request_raw(op, Bytes::from_static(body.as_bytes()), TIMEOUT)
                .await
                .unwrap();
            match serde_json::from_slice::<Reply<serde_json::Value>>(&bytes).unwrap() {
                Reply::Ok(v) => panic!("{body}: expected an error, got {v}"),
                Reply::Error(e) => e.code,
            }
        }
    };
    assert_eq!(
        raw(INVENTORY_QUERY, r#"{"limit":0}"#).await,
        ErrorCode::BadRequest
    );
    assert_eq!(
        raw(INVENTORY_QUERY, r#"{"limit":501}"#).await,
        ErrorCode::BadRequest
    );
    assert_eq!(
        raw(INVENTORY_QUERY, r#"{"cursor":"not a cursor!"}"#).await,
        ErrorCode::BadRequest
    );
    assert_eq!(
        raw(INVENTORY_QUERY, r#"{"bogus":true}"#).await,
        ErrorCode::BadRequest
    );
    assert_eq!(
        raw(INVENTORY_QUERY, r#"{"status":"lost"}"#).await,
        ErrorCode::BadRequest
    );
    assert_eq!(
        raw(INVENTORY_QUERY, "not json").await,
        ErrorCode::BadRequest
    );
    assert_eq!(
        raw(INVENTORY_GET, r#"{"serial":"xyz"}"#).await,
        ErrorCode::BadRequest
    );
    assert_eq!(
        raw(INVENTORY_GET, r#"{"serial":"0a","extra":1}"#).await,
        ErrorCode::BadRequest
    );
    assert_eq!(
        raw(INVENTORY_GET, r#"{"serial":"0bad"}"#).await,
        ErrorCode::NotFound
    );
    // A good empty query still answers.
    let empty = h.query(&QueryRequest::default()).await.unwrap();
    assert!(empty.items.is_empty() && empty.next_cursor.is_none());
    h.stop().await;
}
