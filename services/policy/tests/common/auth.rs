//! What the authentication tests need besides a replica: a CA that issues credentials,
//! fake issuer (`trust_bundle`) and revocation (`status`) responders served on the real
//! bus, credentials recorded through real `identity.issued` events, tokens minted from
//! the replica's database, and the audit log read back.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use sigil_bus::Bus;
use sigil_bus::service::Router;
use sigil_contracts::auth::Proof;
use sigil_contracts::event::{CaBundleChanged, IdentityIssued};
use sigil_contracts::issuer::{BundleChangeReason, TrustBundle, TrustBundleRequest};
use sigil_contracts::normalize_serial;
use sigil_contracts::policy::{AuditEntry, AuditListRequest, AuditListResponse};
use sigil_contracts::revocation::{StatusRequest, StatusResponse};
use sigil_contracts::subjects::{
    ISSUER_TRUST_BUNDLE, POLICY_AUDIT_LIST, REVOCATION_STATUS, Service, event_subject,
};
use sigil_contracts::types::{CaKind, CertificateFacts, KeyAlgorithm, Profile, Sans};
use sigil_contracts::{CloudEvent, EventData, WireError};
use sigil_pki::proof::Credential;
use sigil_pki::{
    CaMaterial, LeafKey, LeafRequest, create_intermediate, create_root, generate_key, issue_leaf,
};
use sigil_telemetry::Metrics;
use sigil_testkit::{TestDb, eventually};
use tokio_util::sync::CancellationToken;

const TIMEOUT: Duration = Duration::from_secs(10);
const WAIT: Duration = Duration::from_secs(20);

/// A root and an intermediate (ECDSA P-256), as the issuer would hold them.
pub struct Pki {
    pub root: CaMaterial,
    pub intermediate: CaMaterial,
}

impl Pki {
    /// A hierarchy valid from a minute before `now` for 30 days.
    pub fn new(name: &str, now: DateTime<Utc>) -> Pki {
        let from = now - chrono::Duration::minutes(1);
        let root = create_root(
            &format!("{name} Root"),
            KeyAlgorithm::EcdsaP256,
            from,
            now + chrono::Duration::days(30),
        )
        .unwrap();
        let intermediate = create_intermediate(
            &root,
            &format!("{name} CA"),
            KeyAlgorithm::EcdsaP256,
            from,
            now + chrono::Duration::days(20),
        )
        .unwrap();
        Pki { root, intermediate }
    }

    /// The trust bundle the issuer would publish for this hierarchy.
    pub fn bundle(&self) -> TrustBundle {
        TrustBundle {
            version: 1,
            kind: CaKind::Classical,
            roots: vec![self.root.cert_pem.clone()],
            intermediates: vec![self.intermediate.cert_pem.clone()],
        }
    }

    /// A tls-client credential for `sans` (`dns:…`, `uri:…`), valid from a minute
    /// before `now` for `days`, with its P-256 key.
    pub fn issue(&self, sans: &[&str], now: DateTime<Utc>, days: i64) -> Issued {
        let mut names = Sans::default();
        for n in sans {
            match n.split_once(':') {
                Some(("dns", v)) => names.dns.push(v.to_owned()),
                Some(("ip", v)) => names.ip.push(v.parse().unwrap()),
                Some(("uri", v)) => names.uri.push(v.to_owned()),
                _ => panic!("bad name {n}"),
            }
        }
        let key = generate_key(KeyAlgorithm::EcdsaP256).unwrap();
        let from = now - chrono::Duration::minutes(1);
        let leaf = issue_leaf(
            &self.intermediate,
            &LeafRequest {
                profile: Profile::TlsClient,
                sans: names,
                common_name: None,
                not_before: from,
                not_after: from + chrono::Duration::days(days),
                key: LeafKey::Generated(key.clone()),
            },
        )
        .unwrap();
        let credential = Credential::from_parts(
            vec![leaf.cert_pem.clone(), self.intermediate.cert_pem.clone()],
            &key.to_pkcs8_pem(),
            None,
        )
        .unwrap();
        Issued {
            credential,
            facts: leaf.facts,
            cert_pem: leaf.cert_pem,
        }
    }
}

/// An issued credential.
pub struct Issued {
    pub credential: Credential,
    pub facts: CertificateFacts,
    pub cert_pem: String,
}

impl Issued {
    /// Its serial as the services write it (lowercase hex).
    pub fn serial(&self) -> String {
        normalize_serial(&self.facts.serial).unwrap()
    }
}

/// The issuer's `trust_bundle` and the revocation service's `status`, scripted: the
/// bundle is the one given (until [`Fakes::set_bundle`]), and a serial is revoked once
/// [`Fakes::revoke`] named it.
pub struct Fakes {
    bundle: Arc<Mutex<TrustBundle>>,
    revoked: Arc<Mutex<HashSet<String>>>,
    stop: CancellationToken,
}

impl Fakes {
    /// Serve both on `bus` until dropped.
    pub async fn serve(bus: &Bus, bundle: TrustBundle) -> Fakes {
        let revoked: Arc<Mutex<HashSet<String>>> = Arc::default();
        let bundle = Arc::new(Mutex::new(bundle));
        let stop = CancellationToken::new();
        let served = bundle.clone();
        let issuer = Router::new(Service::Issuer, "trust bundle for policy tests").route(
            ISSUER_TRUST_BUNDLE,
            move |_: TrustBundleRequest| {
                let bundle = served.lock().unwrap().clone();
                async move { Ok::<_, WireError>(bundle) }
            },
        );
        let seen = revoked.clone();
        let revocation = Router::new(Service::Revocation, "revocation status for policy tests")
            .route(REVOCATION_STATUS, move |req: StatusRequest| {
                let answer = match normalize_serial(&req.serial) {
                    Some(serial) => Ok(StatusResponse {
                        revoked: seen.lock().unwrap().contains(&serial),
                        serial,
                        reason: None,
                        revoked_at: None,
                    }),
                    None => Err(WireError::bad_request("malformed serial")),
                };
                async move { answer }
            });
        for router in [issuer, revocation] {
            let (bus, stop) = (bus.clone(), stop.clone());
            tokio::spawn(async move { router.serve(&bus, Metrics::new(), stop).await });
        }
        // Both answer before the test goes on.
        eventually(WAIT, "fake issuer and revocation answer", || async {
            let bundle = bus
                .request::<_, TrustBundle>(ISSUER_TRUST_BUNDLE, &TrustBundleRequest {}, TIMEOUT)
                .await;
            let status = bus
                .request::<_, StatusResponse>(
                    REVOCATION_STATUS,
                    &StatusRequest {
                        serial: "01".into(),
                    },
                    TIMEOUT,
                )
                .await;
            (bundle.is_ok() && status.is_ok()).then_some(())
        })
        .await;
        Fakes {
            bundle,
            revoked,
            stop,
        }
    }

    /// Serve `bundle` from now on, and announce it with `ca.bundle_changed` as the
    /// issuer does.
    pub async fn set_bundle(&self, bus: &Bus, bundle: TrustBundle) {
        *self.bundle.lock().unwrap() = bundle.clone();
        let event = CloudEvent::new(
            "/sigil/issuer",
            CaBundleChanged {
                reason: BundleChangeReason::Activate,
                bundle,
            },
            Utc::now(),
            None,
        );
        bus.publish_event(
            &event_subject(CaBundleChanged::KIND),
            &event.id,
            Bytes::from(serde_json::to_vec(&event).unwrap()),
            None,
        )
        .await
        .unwrap();
    }

    /// From now on the status of `serial` is revoked.
    pub fn revoke(&self, serial: &str) {
        self.revoked
            .lock()
            .unwrap()
            .insert(normalize_serial(serial).unwrap());
    }
}

impl Drop for Fakes {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A credential for `sans` from `pki` (see [`Pki::issue`]), valid `days`, announced as
/// issued to `principal` and recorded by the policy service.
pub async fn issue_recorded(
    bus: &Bus,
    db: &TestDb,
    pki: &Pki,
    sans: &[&str],
    days: i64,
    principal: &str,
) -> Issued {
    let issued = pki.issue(sans, Utc::now(), days);
    record_issued(bus, db, &issued, principal).await;
    issued
}

/// Announce `issued` as issued to `principal` (an `identity.issued` event on the
/// stream, as the issuer publishes it) and wait until the policy service recorded it.
pub async fn record_issued(bus: &Bus, db: &TestDb, issued: &Issued, principal: &str) {
    bus.ensure_stream().await.unwrap();
    let event = CloudEvent::new(
        "/sigil/issuer",
        IdentityIssued {
            facts: issued.facts.clone(),
            certificate_pem: issued.cert_pem.clone(),
            issuer_ca_id: None,
            chain_pem: vec![],
            requested_by: principal.to_owned(),
            kind: CaKind::Classical,
        },
        Utc::now(),
        None,
    );
    bus.publish_event(
        &event_subject(IdentityIssued::KIND),
        &event.id,
        Bytes::from(serde_json::to_vec(&event).unwrap()),
        None,
    )
    .await
    .unwrap();
    let conn = sigil_store::open::<sigil_policy::Migrator>(db.url(), "policy")
        .await
        .unwrap();
    let serial = issued.serial();
    eventually(WAIT, "the credential is recorded", || async {
        sigil_policy::authn::possession::recorded_principal(&conn, &serial)
            .await
            .unwrap()
            .filter(|(p, _)| p == principal)
    })
    .await;
    conn.close().await.unwrap();
}

/// A token minted from the replica's database (as `sigil up` mints the first one).
pub async fn local_token(
    db: &TestDb,
    principal: &str,
    patterns: &[&str],
    ttl_seconds: i64,
    uses: u32,
    now: DateTime<Utc>,
) -> Proof {
    let names: Vec<String> = patterns.iter().map(|p| (*p).to_owned()).collect();
    let minted = sigil_policy::mint_local_token(
        &super::config(db),
        principal,
        &names,
        ttl_seconds,
        uses,
        now,
    )
    .await
    .unwrap();
    Proof::Token {
        token: minted.token,
    }
}

/// Every audit entry, oldest first.
pub async fn audit(bus: &Bus) -> Vec<AuditEntry> {
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let page: AuditListResponse = bus
            .request(
                POLICY_AUDIT_LIST,
                &AuditListRequest {
                    after_seq: after,
                    limit: Some(200),
                    ..AuditListRequest::default()
                },
                TIMEOUT,
            )
            .await
            .unwrap();
        all.extend(page.entries);
        match page.next_cursor {
            Some(c) => after = Some(c),
            None => return all,
        }
    }
}

/// The audit entries after the first `skip`, as (principal, action, outcome).
pub async fn audit_after(bus: &Bus, skip: usize) -> Vec<AuditEntry> {
    audit(bus).await.into_iter().skip(skip).collect()
}
