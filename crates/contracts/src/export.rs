//! Renders the checked-in `proto/` artifacts from the types in this crate: one JSON
//! Schema per message type and an AsyncAPI 3 document listing every subject.

use std::collections::BTreeMap;

use schemars::{JsonSchema, Schema, schema_for};
use serde_json::{Value, json};

use crate::event::{
    AuditAnchored, CaBundleChanged, CloudEvent, EventData, EventKind, IdentityExpired,
    IdentityIssued, IdentityRenewalDue, IdentityRevoked, PolicyChanged, PolicyDenied,
};
use crate::subjects::{self, OPERATIONS, Operation};
use crate::{auth, error::Reply, inventory, issuer, policy, revocation, types};

/// One schema file: its file name under `proto/schemas/` and its content.
#[derive(Debug)]
pub struct SchemaFile {
    pub name: String,
    pub schema: Schema,
}

fn file<T: JsonSchema>(name: &str) -> SchemaFile {
    SchemaFile {
        name: format!("{name}.json"),
        schema: schema_for!(T),
    }
}

/// Request and reply type names of each operation.
fn operation_messages(op: Operation) -> (&'static str, &'static str) {
    match (op.service, op.name) {
        (subjects::Service::Policy, "evaluate") => {
            ("policy.v1.EvaluateRequest", "policy.v1.EvaluateReply")
        }
        (subjects::Service::Policy, "apply") => ("policy.v1.ApplyRequest", "policy.v1.ApplyReply"),
        (subjects::Service::Policy, "list") => ("policy.v1.ListRequest", "policy.v1.ListReply"),
        (subjects::Service::Policy, "show") => ("policy.v1.ShowRequest", "policy.v1.ShowReply"),
        (subjects::Service::Policy, "rollback") => {
            ("policy.v1.RollbackRequest", "policy.v1.RollbackReply")
        }
        (subjects::Service::Policy, "test") => ("policy.v1.TestRequest", "policy.v1.TestReply"),
        (subjects::Service::Policy, "audit_list") => {
            ("policy.v1.AuditListRequest", "policy.v1.AuditListReply")
        }
        (subjects::Service::Policy, "audit_verify") => {
            ("policy.v1.AuditVerifyRequest", "policy.v1.AuditVerifyReply")
        }
        (subjects::Service::Policy, "token_create") => {
            ("policy.v1.TokenCreateRequest", "policy.v1.TokenCreateReply")
        }
        (subjects::Service::Issuer, "issue") => ("issuer.v1.IssueRequest", "issuer.v1.IssueReply"),
        (subjects::Service::Issuer, "ca_list") => {
            ("issuer.v1.CaListRequest", "issuer.v1.CaListReply")
        }
        (subjects::Service::Issuer, "ca_init") => {
            ("issuer.v1.CaInitRequest", "issuer.v1.CaInitReply")
        }
        (subjects::Service::Issuer, "ca_rotate") => {
            ("issuer.v1.CaRotateRequest", "issuer.v1.CaRotateReply")
        }
        (subjects::Service::Issuer, "trust_bundle") => {
            ("issuer.v1.TrustBundleRequest", "issuer.v1.TrustBundleReply")
        }
        (subjects::Service::Inventory, "query") => {
            ("inventory.v1.QueryRequest", "inventory.v1.QueryReply")
        }
        (subjects::Service::Inventory, "get") => {
            ("inventory.v1.GetRequest", "inventory.v1.GetReply")
        }
        (subjects::Service::Revocation, "revoke") => {
            ("revocation.v1.RevokeRequest", "revocation.v1.RevokeReply")
        }
        (subjects::Service::Revocation, "status") => {
            ("revocation.v1.StatusRequest", "revocation.v1.StatusReply")
        }
        _ => ("unknown", "unknown"),
    }
}

fn event_message(kind: EventKind) -> &'static str {
    match kind {
        EventKind::IdentityIssued => "events.v1.IdentityIssued",
        EventKind::IdentityRevoked => "events.v1.IdentityRevoked",
        EventKind::IdentityRenewalDue => "events.v1.IdentityRenewalDue",
        EventKind::IdentityExpired => "events.v1.IdentityExpired",
        EventKind::CaBundleChanged => "events.v1.CaBundleChanged",
        EventKind::PolicyChanged => "events.v1.PolicyChanged",
        EventKind::PolicyDenied => "events.v1.PolicyDenied",
        EventKind::AuditAnchored => "events.v1.AuditAnchored",
    }
}

fn event_schema<T: EventData>() -> SchemaFile {
    file::<CloudEvent<T>>(event_message(T::KIND))
}

/// Every message schema, named `<area>.v<N>.<Type>.json`.
pub fn schemas() -> Vec<SchemaFile> {
    vec![
        file::<policy::EvaluateRequest>("policy.v1.EvaluateRequest"),
        file::<Reply<policy::Decision>>("policy.v1.EvaluateReply"),
        file::<policy::ApplyRequest>("policy.v1.ApplyRequest"),
        file::<Reply<policy::PolicyVersion>>("policy.v1.ApplyReply"),
        file::<policy::ListRequest>("policy.v1.ListRequest"),
        file::<Reply<policy::ListResponse>>("policy.v1.ListReply"),
        file::<policy::ShowRequest>("policy.v1.ShowRequest"),
        file::<Reply<policy::PolicyDocument>>("policy.v1.ShowReply"),
        file::<policy::RollbackRequest>("policy.v1.RollbackRequest"),
        file::<Reply<policy::PolicyVersion>>("policy.v1.RollbackReply"),
        file::<policy::TestRequest>("policy.v1.TestRequest"),
        file::<Reply<policy::Explanation>>("policy.v1.TestReply"),
        file::<policy::AuditListRequest>("policy.v1.AuditListRequest"),
        file::<Reply<policy::AuditListResponse>>("policy.v1.AuditListReply"),
        file::<policy::AuditVerifyRequest>("policy.v1.AuditVerifyRequest"),
        file::<Reply<policy::AuditVerifyResponse>>("policy.v1.AuditVerifyReply"),
        file::<auth::TokenCreateRequest>("policy.v1.TokenCreateRequest"),
        file::<Reply<auth::TokenCreateResponse>>("policy.v1.TokenCreateReply"),
        file::<issuer::IssueRequest>("issuer.v1.IssueRequest"),
        file::<Reply<issuer::IssueResponse>>("issuer.v1.IssueReply"),
        file::<issuer::CaListRequest>("issuer.v1.CaListRequest"),
        file::<Reply<issuer::CaListResponse>>("issuer.v1.CaListReply"),
        file::<issuer::CaInitRequest>("issuer.v1.CaInitRequest"),
        file::<Reply<issuer::CaListResponse>>("issuer.v1.CaInitReply"),
        file::<issuer::CaRotateRequest>("issuer.v1.CaRotateRequest"),
        file::<Reply<issuer::CaRotateResponse>>("issuer.v1.CaRotateReply"),
        file::<issuer::TrustBundleRequest>("issuer.v1.TrustBundleRequest"),
        file::<Reply<issuer::TrustBundle>>("issuer.v1.TrustBundleReply"),
        file::<inventory::QueryRequest>("inventory.v1.QueryRequest"),
        file::<Reply<inventory::QueryResponse>>("inventory.v1.QueryReply"),
        file::<inventory::GetRequest>("inventory.v1.GetRequest"),
        file::<Reply<types::CredentialRecord>>("inventory.v1.GetReply"),
        file::<revocation::RevokeRequest>("revocation.v1.RevokeRequest"),
        file::<Reply<revocation::RevokeResponse>>("revocation.v1.RevokeReply"),
        file::<revocation::StatusRequest>("revocation.v1.StatusRequest"),
        file::<Reply<revocation::StatusResponse>>("revocation.v1.StatusReply"),
        event_schema::<IdentityIssued>(),
        event_schema::<IdentityRevoked>(),
        event_schema::<IdentityRenewalDue>(),
        event_schema::<IdentityExpired>(),
        event_schema::<CaBundleChanged>(),
        event_schema::<PolicyChanged>(),
        event_schema::<PolicyDenied>(),
        event_schema::<AuditAnchored>(),
    ]
}

/// The AsyncAPI 3.0 document: one channel per subject, payloads by `$ref` to the
/// schema files.
pub fn asyncapi() -> Value {
    let mut channels = BTreeMap::new();
    let mut operations = BTreeMap::new();
    let mut messages = BTreeMap::new();
    let mut add_message = |name: &str| {
        messages.insert(
            name.replace('.', "_"),
            json!({
                "name": name,
                "contentType": "application/json",
                "payload": { "$ref": format!("./schemas/{name}.json") }
            }),
        );
    };
    for op in OPERATIONS {
        let (req, rep) = operation_messages(op);
        add_message(req);
        add_message(rep);
        let id = format!("{}_{}", op.service.name().replace('-', "_"), op.name);
        channels.insert(
            id.clone(),
            json!({
                "address": op.subject(),
                "description": format!("{} endpoint of the {} micro service (queue group `q`).", op.name, op.service.name()),
                "messages": {
                    "request": { "$ref": format!("#/components/messages/{}", req.replace('.', "_")) },
                    "reply": { "$ref": format!("#/components/messages/{}", rep.replace('.', "_")) }
                }
            }),
        );
        operations.insert(
            id.clone(),
            json!({
                "action": "receive",
                "channel": { "$ref": format!("#/channels/{id}") },
                "messages": [{ "$ref": format!("#/channels/{id}/messages/request") }],
                "reply": {
                    "address": { "location": "$message.header#/reply_to" },
                    "messages": [{ "$ref": format!("#/channels/{id}/messages/reply") }]
                }
            }),
        );
    }
    for kind in EventKind::ALL {
        let msg = event_message(kind);
        add_message(msg);
        let id = format!("event_{}", kind.subject_suffix().replace('.', "_"));
        channels.insert(
            id.clone(),
            json!({
                "address": subjects::event_subject(kind),
                "description": format!("CloudEvents 1.0 JSON, type `{}`, on JetStream stream `{}`.", kind.event_type(), subjects::EVENTS_STREAM),
                "messages": { "event": { "$ref": format!("#/components/messages/{}", msg.replace('.', "_")) } }
            }),
        );
        operations.insert(
            id.clone(),
            json!({
                "action": "send",
                "channel": { "$ref": format!("#/channels/{id}") },
                "messages": [{ "$ref": format!("#/channels/{id}/messages/event") }]
            }),
        );
    }
    json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "Sigil",
            "version": "1.0.0",
            "description": "Machine identity platform. Request/reply endpoints are NATS micro services on sigil.<service>.v1.<operation>; replies are {\"ok\": result} or {\"error\": {code, message, details}}. Events are CloudEvents 1.0 structured JSON on the JetStream stream SIGIL_EVENTS (sigil.events.v1.>), published with Nats-Msg-Id = event id."
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": { "host": "127.0.0.1:4222", "protocol": "nats", "description": "nats-server >= 2.10 with JetStream" }
        },
        "channels": channels,
        "operations": operations,
        "components": { "messages": messages }
    })
}

/// Every file under `proto/`, as (relative path, pretty JSON + newline).
pub fn proto_files() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = schemas()
        .into_iter()
        .map(|f| {
            // schemars puts its own keywords first, then the rest in map order.
            let sorted = Schema::try_from(canonical(f.schema.clone().to_value()));
            let text = match sorted {
                Ok(schema) => serde_json::to_string_pretty(&schema),
                Err(_) => serde_json::to_string_pretty(&f.schema),
            }
            .unwrap_or_default();
            (format!("schemas/{}", f.name), text + "\n")
        })
        .collect();
    let api = serde_json::to_string_pretty(&canonical(asyncapi())).unwrap_or_default();
    out.push(("asyncapi.json".to_owned(), api + "\n"));
    out
}

/// `v` with every object's keys in sorted order. serde_json keeps insertion order when
/// its `preserve_order` feature is on (cedar-policy turns it on for every crate built
/// alongside it), sorted order otherwise; sorting here makes `proto/` the same bytes
/// either way.
fn canonical(v: Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, canonical(v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.into_iter().map(canonical).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn proto_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto")
    }

    /// Fails when `proto/` differs from what the code generates. Regenerate with
    /// `SIGIL_BLESS=1 cargo test -p sigil-contracts proto_matches_code`.
    #[test]
    fn proto_matches_code() {
        let dir = proto_dir();
        let bless = std::env::var_os("SIGIL_BLESS").is_some();
        let mut stale = Vec::new();
        for (rel, text) in proto_files() {
            let path = dir.join(&rel);
            if bless {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, &text).unwrap();
            } else if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
                stale.push(rel);
            }
        }
        // No schema file may exist that the code does not generate.
        let expected: std::collections::BTreeSet<String> =
            proto_files().into_iter().map(|(r, _)| r).collect();
        if let Ok(entries) = std::fs::read_dir(dir.join("schemas")) {
            for e in entries.flatten() {
                let rel = format!("schemas/{}", e.file_name().to_string_lossy());
                if !expected.contains(&rel) {
                    if bless {
                        std::fs::remove_file(e.path()).unwrap();
                    } else {
                        stale.push(rel);
                    }
                }
            }
        }
        assert!(
            stale.is_empty(),
            "proto/ drifted from the code: {stale:?}; run SIGIL_BLESS=1 cargo test -p sigil-contracts proto_matches_code"
        );
    }

    #[test]
    fn every_operation_and_event_has_a_schema() {
        let names: Vec<String> = schemas().into_iter().map(|s| s.name).collect();
        for op in OPERATIONS {
            let (req, rep) = operation_messages(op);
            assert!(names.contains(&format!("{req}.json")), "{req}");
            assert!(names.contains(&format!("{rep}.json")), "{rep}");
        }
        for k in EventKind::ALL {
            assert!(names.contains(&format!("{}.json", event_message(k))));
        }
    }
}
