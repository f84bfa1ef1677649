//! A certificate with a 5-second lifetime is announced `renewal_due` (once) and then
//! `expired` (once); inventory then shows it expired. A revoked one gets neither.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use sigil_contracts::inventory::GetRequest;
use sigil_contracts::revocation::{RevokeRequest, RevokeResponse};
use sigil_contracts::subjects::{INVENTORY_GET, REVOCATION_REVOKE};
use sigil_contracts::types::{CredentialRecord, CredentialStatus, RevocationReason};
use sigil_e2e::{Cluster, WAIT};
use sigil_testkit::eventually;

#[tokio::test]
async fn short_lived_certificate_is_renewal_due_then_expired() {
    let c = Cluster::start().await;
    let short = c.issue("short.example.com", 5).await;
    // The issuer backdates notBefore by 60 s, so a 40 s TTL puts this one's renew_at
    // 1.7–6.7 s from now: due inside the test window, after the revocation lands.
    let started = std::time::Instant::now();
    let revoked = c.issue("gone.example.com", 40).await;
    let req = RevokeRequest {
        serial: revoked.serial.clone(),
        reason: RevocationReason::Superseded,
        proof: None,
    };
    let _: RevokeResponse = eventually(WAIT, "revoke", || async {
        let mut req = req.clone();
        c.prove(REVOCATION_REVOKE, &mut req);
        c.bus.request(REVOCATION_REVOKE, &req, WAIT).await.ok()
    })
    .await;

    let kinds_for = |events: &[serde_json::Value], serial: &str| -> Vec<String> {
        events
            .iter()
            .filter(|e| e["subject"] == serial)
            .map(|e| e["type"].as_str().unwrap().to_owned())
            .collect()
    };
    let events = eventually(
        Duration::from_secs(30),
        "renewal_due then expired",
        || async {
            let ev = c.events(None).await;
            kinds_for(&ev, &short.serial)
                .contains(&"io.sigil.identity.expired.v1".to_owned())
                .then_some(ev)
        },
    )
    .await;
    // Past the revoked one's renewal time, and a few more ticks: nothing repeats.
    let until = Duration::from_secs(8);
    if let Some(rest) = until.checked_sub(started.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    let events_later = c.events(None).await;
    assert_eq!(
        events.len(),
        events_later.len(),
        "no repeated announcements"
    );
    assert_eq!(
        kinds_for(&events_later, &short.serial),
        vec![
            "io.sigil.identity.issued.v1",
            "io.sigil.identity.renewal_due.v1",
            "io.sigil.identity.expired.v1"
        ]
    );
    let rev_kinds = kinds_for(&events_later, &revoked.serial);
    assert!(
        !rev_kinds
            .iter()
            .any(|k| k.contains("renewal_due") || k.contains("expired")),
        "{rev_kinds:?}"
    );

    let rec: CredentialRecord = eventually(WAIT, "inventory shows expired", || async {
        let r: Option<CredentialRecord> = c
            .bus
            .request(
                INVENTORY_GET,
                &GetRequest {
                    serial: short.serial.clone(),
                },
                WAIT,
            )
            .await
            .ok();
        r.filter(|r| r.status == CredentialStatus::Expired)
    })
    .await;
    assert_eq!(rec.facts.serial, short.serial);
    c.stop().await;
}
