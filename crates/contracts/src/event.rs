//! Events: CloudEvents 1.0 structured-mode JSON envelopes around typed payloads.
//!
//! Any integration in any language can consume them with off-the-shelf CloudEvents
//! tooling: `type` is `io.sigil.<noun>.<verb>.v1`, `subject` names the credential (its
//! serial), and the `traceparent` extension carries the W3C trace context.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use uuid::Uuid;

use crate::issuer::{BundleChangeReason, TrustBundle};
use crate::policy::PolicyOrigin;
use crate::types::{CaKind, CertificateFacts, RevocationReason};

/// The kinds of event Sigil publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    IdentityIssued,
    IdentityRevoked,
    IdentityRenewalDue,
    IdentityExpired,
    CaBundleChanged,
    PolicyChanged,
    PolicyDenied,
    AuditAnchored,
}

impl EventKind {
    pub const ALL: [EventKind; 8] = [
        EventKind::IdentityIssued,
        EventKind::IdentityRevoked,
        EventKind::IdentityRenewalDue,
        EventKind::IdentityExpired,
        EventKind::CaBundleChanged,
        EventKind::PolicyChanged,
        EventKind::PolicyDenied,
        EventKind::AuditAnchored,
    ];

    /// CloudEvents `type`, e.g. `io.sigil.identity.issued.v1`.
    pub fn event_type(self) -> &'static str {
        match self {
            EventKind::IdentityIssued => "io.sigil.identity.issued.v1",
            EventKind::IdentityRevoked => "io.sigil.identity.revoked.v1",
            EventKind::IdentityRenewalDue => "io.sigil.identity.renewal_due.v1",
            EventKind::IdentityExpired => "io.sigil.identity.expired.v1",
            EventKind::CaBundleChanged => "io.sigil.ca.bundle_changed.v1",
            EventKind::PolicyChanged => "io.sigil.policy.changed.v1",
            EventKind::PolicyDenied => "io.sigil.policy.denied.v1",
            EventKind::AuditAnchored => "io.sigil.policy.audit_anchored.v1",
        }
    }

    /// The part of the NATS subject after `sigil.events.v1.`.
    pub fn subject_suffix(self) -> &'static str {
        match self {
            EventKind::IdentityIssued => "identity.issued",
            EventKind::IdentityRevoked => "identity.revoked",
            EventKind::IdentityRenewalDue => "identity.renewal_due",
            EventKind::IdentityExpired => "identity.expired",
            EventKind::CaBundleChanged => "ca.bundle_changed",
            EventKind::PolicyChanged => "policy.changed",
            EventKind::PolicyDenied => "policy.denied",
            EventKind::AuditAnchored => "policy.audit_anchored",
        }
    }

    pub fn from_event_type(t: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.event_type() == t)
    }
}

/// A payload type bound to its event kind.
pub trait EventData: Serialize + DeserializeOwned + JsonSchema {
    const KIND: EventKind;
    /// CloudEvents `subject`: the credential the event is about.
    fn subject(&self) -> String;
}

/// `identity.issued`: a certificate was signed and recorded by the issuer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IdentityIssued {
    pub facts: CertificateFacts,
    /// The certificate, PEM.
    pub certificate_pem: String,
    /// Id of the intermediate that signed; its certificate and root are in the
    /// issuer's trust bundle (`sigil.issuer.v1.trust_bundle`, `ca.bundle_changed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_ca_id: Option<String>,
    /// Deprecated, empty in events of this version: the issuing chain, PEM, root
    /// last. The chain is the same for every certificate of an intermediate (and
    /// with post-quantum keys tens of kilobytes), so events name the intermediate
    /// (`issuer_ca_id`) instead; still accepted in older events.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chain_pem: Vec<String>,
    /// Who asked for it.
    pub requested_by: String,
    /// Kind of the CA that signed (absent in events of older issuers: classical).
    #[serde(default = "CaKind::classical")]
    pub kind: CaKind,
}

impl EventData for IdentityIssued {
    const KIND: EventKind = EventKind::IdentityIssued;
    fn subject(&self) -> String {
        self.facts.serial.clone()
    }
}

/// `identity.revoked`: a certificate was revoked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IdentityRevoked {
    pub serial: String,
    pub reason: RevocationReason,
    /// RFC 5280 CRLReason code of `reason`.
    pub reason_code: u8,
    pub revoked_at: DateTime<Utc>,
    pub revoked_by: String,
}

impl EventData for IdentityRevoked {
    const KIND: EventKind = EventKind::IdentityRevoked;
    fn subject(&self) -> String {
        self.serial.clone()
    }
}

/// `identity.renewal_due`: a live certificate reached its renewal time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IdentityRenewalDue {
    pub serial: String,
    pub renew_at: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
}

impl EventData for IdentityRenewalDue {
    const KIND: EventKind = EventKind::IdentityRenewalDue;
    fn subject(&self) -> String {
        self.serial.clone()
    }
}

/// `identity.expired`: a certificate passed its notAfter without being revoked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IdentityExpired {
    pub serial: String,
    pub not_after: DateTime<Utc>,
}

impl EventData for IdentityExpired {
    const KIND: EventKind = EventKind::IdentityExpired;
    fn subject(&self) -> String {
        self.serial.clone()
    }
}

/// `ca.bundle_changed`: the issuer's trust bundle changed (a hierarchy was created, a
/// next intermediate prepared or activated). Relying parties replace what they trust
/// with `bundle` when its version is newer than theirs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CaBundleChanged {
    pub reason: BundleChangeReason,
    pub bundle: TrustBundle,
}

impl EventData for CaBundleChanged {
    const KIND: EventKind = EventKind::CaBundleChanged;
    /// `trust-bundle/v<version>`.
    fn subject(&self) -> String {
        format!("trust-bundle/v{}", self.bundle.version)
    }
}

/// `policy.changed`: a new policy version became active (seeded, applied or rolled
/// back). Policy replicas reload on it; integrations may audit it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyChanged {
    /// The version now active.
    pub version: u64,
    /// The version active before (absent for the first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<u64>,
    pub origin: PolicyOrigin,
    /// For a rollback: the version whose text was restored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored_from: Option<u64>,
    /// SHA-256 (hex) of the new version's text.
    pub sha256: String,
    pub changed_by: String,
}

impl EventData for PolicyChanged {
    const KIND: EventKind = EventKind::PolicyChanged;
    /// `policy/v<version>`.
    fn subject(&self) -> String {
        format!("policy/v{}", self.version)
    }
}

/// `policy.denied`: a request was denied by policy. Enqueued in the same transaction as
/// the decision's audit-log row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyDenied {
    /// Sequence number of the decision's audit-log row.
    pub audit_seq: u64,
    pub principal: String,
    /// `issue`, `renew`, `revoke`, `read` or `admin`.
    pub action: String,
    pub profile: String,
    /// The requested names.
    pub sans: Vec<String>,
    /// Why it was denied.
    pub reasons: Vec<String>,
    pub policy_version: String,
}

impl EventData for PolicyDenied {
    const KIND: EventKind = EventKind::PolicyDenied;
    /// `audit/<seq>`.
    fn subject(&self) -> String {
        format!("audit/{}", self.audit_seq)
    }
}

/// `policy.audit_anchored`: the newest row of the policy service's hash-chained audit
/// log when it was anchored. The anchor lives in the event stream, outside the policy
/// database, so removing the newest audit rows (which the chain alone cannot reveal) is
/// detected by `audit_verify` against the latest anchor; integrations that archive the
/// events keep the anchors longer still.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditAnchored {
    /// Sequence number of the anchored row.
    pub seq: u64,
    /// Its hash (lowercase hex SHA-256).
    pub hash: String,
    /// When the row was appended.
    pub row_at: DateTime<Utc>,
}

impl EventData for AuditAnchored {
    const KIND: EventKind = EventKind::AuditAnchored;
    /// `audit/<seq>`.
    fn subject(&self) -> String {
        format!("audit/{}", self.seq)
    }
}

/// CloudEvents 1.0 structured-mode JSON envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CloudEvent<T> {
    /// Always `1.0`.
    pub specversion: String,
    /// Unique event id (UUID v7); also the JetStream `Nats-Msg-Id`.
    pub id: String,
    /// URI-reference of the producer, e.g. `/sigil/issuer`.
    pub source: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub subject: String,
    pub time: DateTime<Utc>,
    /// Always `application/json`.
    pub datacontenttype: String,
    /// W3C trace context of the operation that caused the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    pub data: T,
}

impl<T: EventData> CloudEvent<T> {
    /// Wrap a payload in a fresh envelope.
    pub fn new(source: &str, data: T, now: DateTime<Utc>, traceparent: Option<String>) -> Self {
        CloudEvent {
            specversion: "1.0".to_owned(),
            id: Uuid::now_v7().to_string(),
            source: source.to_owned(),
            event_type: T::KIND.event_type().to_owned(),
            subject: data.subject(),
            time: now,
            datacontenttype: "application/json".to_owned(),
            traceparent,
            data,
        }
    }

    /// The NATS subject this event is published on.
    pub fn nats_subject(&self) -> String {
        crate::subjects::event_subject(T::KIND)
    }
}

/// The source attribute for a service's events.
pub fn source_for(service: crate::subjects::Service) -> String {
    format!("/sigil/{}", service.name())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_has_cloudevents_attributes() {
        let ev = CloudEvent::new(
            "/sigil/revocation",
            IdentityRevoked {
                serial: "0a".into(),
                reason: RevocationReason::KeyCompromise,
                reason_code: 1,
                revoked_at: Utc::now(),
                revoked_by: "admin".into(),
            },
            Utc::now(),
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
        );
        let v = serde_json::to_value(&ev).unwrap();
        for key in [
            "specversion",
            "id",
            "source",
            "type",
            "subject",
            "time",
            "datacontenttype",
            "traceparent",
            "data",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        assert_eq!(v["type"], "io.sigil.identity.revoked.v1");
        assert_eq!(v["subject"], "0a");
        assert_eq!(ev.nats_subject(), "sigil.events.v1.identity.revoked");
        for k in EventKind::ALL {
            assert_eq!(EventKind::from_event_type(k.event_type()), Some(k));
        }
    }
}
