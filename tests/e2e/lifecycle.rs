//! Issue → inventory lists it → revoke → inventory shows it revoked; the chain verifies
//! with OpenSSL; CSRs keep the key with the requester; policy denials carry reasons;
//! one issuance is one trace across services. Every request is signed with the
//! harness's admin credential, or (for the denial) carries a workload's token.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use sigil_bus::ClientError;
use sigil_contracts::ErrorCode;
use sigil_contracts::auth::Proof;
use sigil_contracts::inventory::{GetRequest, QueryRequest};
use sigil_contracts::issuer::IssueResponse;
use sigil_contracts::revocation::{RevokeRequest, RevokeResponse};
use sigil_contracts::subjects::{INVENTORY_GET, ISSUER_ISSUE, REVOCATION_REVOKE};
use sigil_contracts::types::{CredentialRecord, CredentialStatus, RevocationReason};
use sigil_e2e::{Cluster, WAIT, issue_request};
use sigil_testkit::eventually;
use tracing::Instrument;

fn openssl_verify(resp: &IssueResponse) {
    let dir = tempfile::tempdir().unwrap();
    let leaf = dir.path().join("leaf.pem");
    let inter = dir.path().join("inter.pem");
    let root = dir.path().join("root.pem");
    std::fs::write(&leaf, &resp.certificate_pem).unwrap();
    assert_eq!(resp.chain_pem.len(), 2, "chain is intermediate then root");
    std::fs::write(&inter, &resp.chain_pem[0]).unwrap();
    std::fs::write(&root, &resp.chain_pem[1]).unwrap();
    let out = Command::new("openssl")
        .args(["verify", "-x509_strict", "-purpose", "sslserver", "-CAfile"])
        .arg(&root)
        .arg("-untrusted")
        .arg(&inter)
        .arg(&leaf)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn get(c: &Cluster, serial: &str) -> Option<CredentialRecord> {
    c.bus
        .request(
            INVENTORY_GET,
            &GetRequest {
                serial: serial.to_owned(),
            },
            WAIT,
        )
        .await
        .ok()
}

#[tokio::test]
async fn issue_list_revoke() {
    let c = Cluster::start().await;
    let issued = c.issue("web.example.com", 3600).await;
    assert!(issued.private_key_pem.is_some());
    openssl_verify(&issued);

    let rec = eventually(WAIT, "inventory lists the certificate", || {
        get(&c, &issued.serial)
    })
    .await;
    assert_eq!(rec.status, CredentialStatus::Active);
    assert_eq!(rec.facts.sans.dns, vec!["web.example.com".to_owned()]);
    let listed = c
        .inventory_all(QueryRequest {
            status: Some(CredentialStatus::Active),
            ..Default::default()
        })
        .await;
    assert_eq!(listed.len(), 1);

    // Revocation learns serials from identity.issued; wait until it has. Each attempt
    // carries a fresh proof (a proof's nonce is accepted once).
    let req = RevokeRequest {
        serial: issued.serial.clone(),
        reason: RevocationReason::KeyCompromise,
        proof: None,
    };
    let revoked: RevokeResponse = eventually(WAIT, "revoke accepted", || async {
        let mut req = req.clone();
        c.prove(REVOCATION_REVOKE, &mut req);
        c.bus.request(REVOCATION_REVOKE, &req, WAIT).await.ok()
    })
    .await;
    assert!(!revoked.already_revoked);
    let mut req = req.clone();
    c.prove(REVOCATION_REVOKE, &mut req);
    let again: RevokeResponse = c.bus.request(REVOCATION_REVOKE, &req, WAIT).await.unwrap();
    assert!(again.already_revoked);
    assert_eq!(again.revoked_at, revoked.revoked_at);

    let rec = eventually(WAIT, "inventory shows it revoked", || async {
        get(&c, &issued.serial)
            .await
            .filter(|r| r.status == CredentialStatus::Revoked)
    })
    .await;
    assert_eq!(rec.revocation_reason, Some(RevocationReason::KeyCompromise));

    let events = c.events(None).await;
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types
            .iter()
            .filter(|t| **t == "io.sigil.identity.issued.v1")
            .count(),
        1
    );
    assert_eq!(
        types
            .iter()
            .filter(|t| **t == "io.sigil.identity.revoked.v1")
            .count(),
        1,
        "second revoke emits nothing"
    );
    let revoked_ev = events
        .iter()
        .find(|e| e["type"] == "io.sigil.identity.revoked.v1")
        .unwrap();
    assert_eq!(revoked_ev["subject"], issued.serial.as_str());
    assert_eq!(revoked_ev["data"]["reason_code"], 1);
    c.stop().await;
}

#[tokio::test]
async fn csr_issuance_keeps_the_key_with_the_requester() {
    let c = Cluster::start().await;
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["api.internal".to_owned()]).unwrap();
    let csr = params.serialize_request(&key).unwrap().pem().unwrap();
    let mut req = issue_request("api.internal", 600);
    req.sans.dns.clear();
    req.csr_pem = Some(csr);
    c.prove(ISSUER_ISSUE, &mut req);
    let resp: IssueResponse = c.bus.request(ISSUER_ISSUE, &req, WAIT).await.unwrap();
    assert!(resp.private_key_pem.is_none());
    openssl_verify(&resp);
    // The certificate carries the CSR's public key.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.pem"), &resp.certificate_pem).unwrap();
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-pubkey", "-in"])
        .arg(dir.path().join("c.pem"))
        .output()
        .unwrap();
    let cert_pub = String::from_utf8(out.stdout).unwrap();
    assert_eq!(cert_pub.trim(), key.public_key_pem().trim());
    c.stop().await;
}

#[tokio::test]
async fn policy_denial_is_typed_with_reasons_and_stores_nothing() {
    let c = Cluster::start().await;
    // A workload proven by a token that allows the name: policy decides by its own
    // rules (the admin, who may have any name, would be allowed).
    let token = c.token("workload:web", &["*.attacker.test"], 1).await;
    let mut req = issue_request("evil.attacker.test", 600);
    req.proof = Some(Proof::Token { token });
    let err = c
        .bus
        .request::<_, IssueResponse>(ISSUER_ISSUE, &req, WAIT)
        .await
        .unwrap_err();
    let ClientError::Wire(e) = err else {
        panic!("expected a wire error, got {err:?}")
    };
    assert_eq!(e.code, ErrorCode::Denied);
    let reasons = e.reasons();
    assert!(
        reasons.iter().any(|r| r.contains("evil.attacker.test")),
        "{reasons:?}"
    );
    // Nothing was issued: a later, allowed issuance is the only event.
    c.issue("ok.example.com", 600).await;
    eventually(WAIT, "one issued event", || async {
        (c.events(Some("sigil.events.v1.identity.>")).await.len() == 1).then_some(())
    })
    .await;
    c.stop().await;
}

#[tokio::test]
async fn one_issuance_is_one_trace() {
    let c = Cluster::start().await;
    let span = tracing::info_span!("e2e-client");
    let (resp, traceparent) = async {
        let tp = sigil_telemetry::current_traceparent();
        let mut req = issue_request("traced.example.com", 600);
        c.prove(ISSUER_ISSUE, &mut req);
        let resp: IssueResponse = c.bus.request(ISSUER_ISSUE, &req, WAIT).await.unwrap();
        (resp, tp)
    }
    .instrument(span)
    .await;
    let traceparent = traceparent.expect("telemetry gives spans a trace id");
    let trace_id = traceparent.split('-').nth(1).unwrap().to_owned();
    let ev = eventually(WAIT, "issued event published", || async {
        c.events(None)
            .await
            .into_iter()
            .find(|e| e["subject"] == resp.serial.as_str())
    })
    .await;
    let ev_tp = ev["traceparent"]
        .as_str()
        .expect("event carries traceparent");
    assert_eq!(
        ev_tp.split('-').nth(1).unwrap(),
        trace_id,
        "event continues the caller's trace"
    );
    c.stop().await;
}
