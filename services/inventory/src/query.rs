//! Reading the inventory: request validation (pure), SAN search keys (pure), cursor
//! encoding (pure), and the indexed queries behind `query` and `get`.
//!
//! ## Status at read time
//!
//! The stored `status` follows events: `identity.expired` (from the rotation
//! scheduler) turns an active row expired. That event may lag, so readers also treat
//! an `active` row whose `not_after` is at or before now as `expired`, both in the
//! returned records and in the `status` filter. A listing is therefore right even
//! before the expired event arrives; revoked always wins over expired.
//!
//! ## SAN search
//!
//! `credential_sans` holds, per credential, the exact normalised SANs *and* one
//! wildcard key per parent domain of each DNS name: `a.b.example.com` is stored as
//! `a.b.example.com`, `*.b.example.com`, `*.example.com` and `*.com`. Both an exact
//! query and a `*.example.com` query are then a single equality lookup on the
//! `(value, serial)` index. We chose this over the alternatives because:
//! - a reversed value with `LIKE 'moc.elpmaxe.%'` only uses an index on SQLite with
//!   `case_sensitive_like`/NOCASE tricks and on PostgreSQL with `text_pattern_ops`;
//! - a reversed value with a `>= … <` range scan is wrong under PostgreSQL's default
//!   (non-C) collations, which ignore punctuation at the first comparison level;
//! - the cost is a few extra small rows per DNS name (one per label).
//!
//! `*.example.com` therefore matches any name below `example.com` (at any depth, as
//! a suffix pattern) and a certificate that literally carries `*.example.com`; it
//! never matches `example.com` itself.

use std::collections::BTreeSet;
use std::net::IpAddr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use sea_orm::sea_query::{Expr, Func};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, JoinType, QueryFilter, QueryOrder,
    QuerySelect, RelationTrait, Select,
};
use sigil_contracts::inventory::{DEFAULT_PAGE, MAX_PAGE, QueryRequest, QueryResponse};
use sigil_contracts::types::{
    CertificateFacts, CredentialRecord, CredentialStatus, Profile, RevocationReason, Sans,
};
use sigil_contracts::{WireError, normalize_serial};

use crate::entity::{credential, credential_san};

/// Longest SAN a query may name.
const MAX_SAN_LEN: usize = 1024;
/// Largest expiry window a query may ask for (100 years), so `now + s` never overflows.
const MAX_WINDOW_SECONDS: i64 = 100 * 365 * 24 * 60 * 60;

/// A validated `query` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedQuery {
    pub status: Option<CredentialStatus>,
    pub expiring_within: Option<Duration>,
    /// Normalised search key (see [`normalize_san`]).
    pub san: Option<String>,
    pub limit: u64,
    /// Last serial of the previous page.
    pub after: Option<String>,
}

impl ParsedQuery {
    /// Validate a request: limit 1..=500, a non-negative window, a sane SAN and a
    /// cursor this service issued.
    pub fn parse(req: &QueryRequest) -> Result<ParsedQuery, WireError> {
        let limit = req.limit.unwrap_or(DEFAULT_PAGE);
        if limit == 0 || limit > MAX_PAGE {
            return Err(WireError::bad_request(format!(
                "limit must be between 1 and {MAX_PAGE}, got {limit}"
            )));
        }
        let expiring_within = match req.expiring_within_seconds {
            None => None,
            Some(s) if (0..=MAX_WINDOW_SECONDS).contains(&s) => Some(Duration::seconds(s)),
            Some(s) => {
                return Err(WireError::bad_request(format!(
                    "expiring_within_seconds must be between 0 and {MAX_WINDOW_SECONDS}, got {s}"
                )));
            }
        };
        let san = match req.san.as_deref() {
            None => None,
            Some(s) => Some(normalize_san(s).ok_or_else(|| {
                WireError::bad_request(format!(
                    "san must be a non-empty value of at most {MAX_SAN_LEN} characters"
                ))
            })?),
        };
        let after = req.cursor.as_deref().map(decode_cursor).transpose()?;
        Ok(ParsedQuery {
            status: req.status,
            expiring_within,
            san,
            limit: u64::from(limit),
            after,
        })
    }
}

/// The opaque cursor after `serial`: URL-safe base64 of the serial.
pub fn encode_cursor(serial: &str) -> String {
    URL_SAFE_NO_PAD.encode(serial.as_bytes())
}

/// Decode a cursor; it must hold a normalised serial.
pub fn decode_cursor(cursor: &str) -> Result<String, WireError> {
    let bad = || WireError::bad_request("malformed cursor: pass next_cursor from a previous page");
    let bytes = URL_SAFE_NO_PAD
        .decode(cursor.as_bytes())
        .map_err(|_| bad())?;
    let serial = String::from_utf8(bytes).map_err(|_| bad())?;
    match normalize_serial(&serial) {
        Some(n) if n == serial => Ok(serial),
        _ => Err(bad()),
    }
}

/// Normalise a SAN for storage and search: IP addresses in canonical form, URIs (and
/// anything else with a `:`) as given, DNS names lowercased without a trailing dot.
pub fn normalize_san(value: &str) -> Option<String> {
    let v = value.trim();
    if v.is_empty() || v.len() > MAX_SAN_LEN {
        return None;
    }
    if let Ok(ip) = v.parse::<IpAddr>() {
        return Some(ip.to_string());
    }
    if v.contains(':') {
        return Some(v.to_owned());
    }
    let dns = v.trim_end_matches('.').to_ascii_lowercase();
    (!dns.is_empty()).then_some(dns)
}

/// The `credential_sans` keys of a certificate: every normalised SAN, plus
/// `*.<parent>` for every parent domain of every DNS name (see the module docs).
pub fn san_index_values(sans: &Sans) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for value in sans.values() {
        let Some(v) = normalize_san(&value) else {
            continue;
        };
        if !v.contains(':') && v.parse::<IpAddr>().is_err() {
            let mut rest = v.as_str();
            while let Some((_, parent)) = rest.split_once('.') {
                if parent.is_empty() {
                    break;
                }
                keys.insert(format!("*.{parent}"));
                rest = parent;
            }
        }
        keys.insert(v);
    }
    keys
}

/// The status a reader sees: stored status, with active-but-past-notAfter as expired.
pub fn effective_status(
    stored: CredentialStatus,
    not_after: DateTime<Utc>,
    now: DateTime<Utc>,
) -> CredentialStatus {
    match stored {
        CredentialStatus::Active if not_after <= now => CredentialStatus::Expired,
        s => s,
    }
}

/// Largest reply a page aims for, in bytes of JSON items: NATS refuses messages over
/// its max_payload (1 MiB by default), and a page of 500 PQ certificates would exceed it.
pub const PAGE_BYTE_BUDGET: usize = 768 * 1024;

/// Run a validated query. A page holds at most `limit` items and stops early (with a
/// cursor) once [`PAGE_BYTE_BUDGET`] is reached; it always holds at least one item.
pub async fn run_query<C: ConnectionTrait>(
    db: &C,
    q: &ParsedQuery,
    now: DateTime<Utc>,
) -> Result<QueryResponse, WireError> {
    // One extra row tells us whether another page follows.
    let mut rows = select(q, now).all(db).await.map_err(db_error)?;
    let mut more = rows.len() as u64 > q.limit;
    rows.truncate(usize::try_from(q.limit).unwrap_or(usize::MAX));
    // Stop early when the reply would grow past the byte budget (hybrid and ML-DSA
    // certificates are several KiB each); the cursor then resumes after the last item.
    let mut items = Vec::with_capacity(rows.len());
    let mut last_serial = None;
    let mut bytes = 0usize;
    for row in rows {
        let serial = row.serial.clone();
        let record = to_record(row, now)?;
        let size = serde_json::to_vec(&record).map_or(0, |v| v.len());
        if !items.is_empty() && bytes + size > PAGE_BYTE_BUDGET {
            more = true;
            break;
        }
        bytes += size;
        items.push(record);
        last_serial = Some(serial);
    }
    let next_cursor = if more {
        last_serial.map(|s| encode_cursor(&s))
    } else {
        None
    };
    Ok(QueryResponse { items, next_cursor })
}

/// The page query: filters ANDed, serial order, `limit + 1` rows.
pub fn select(q: &ParsedQuery, now: DateTime<Utc>) -> Select<credential::Entity> {
    let active = credential::Column::Status.eq(CredentialStatus::Active.as_str());
    let mut cond = Condition::all();
    match q.status {
        None => {}
        Some(CredentialStatus::Active) if q.expiring_within.is_none() => {
            // Most active rows are unexpired, so the cheap plan walks (status, serial,
            // not_after) in serial order and stops after a page. Planners prefer the
            // not_after range instead and then sort every active row (≈0.2 s at a
            // million); wrapping the column in COALESCE (a no-op: it is NOT NULL)
            // takes that range off the table, portably on SQLite and PostgreSQL.
            let not_after = Expr::col((credential::Entity, credential::Column::NotAfter));
            cond = cond.add(active.clone()).add(
                Expr::expr(Func::coalesce([not_after.clone().into(), not_after.into()])).gt(now),
            );
        }
        Some(CredentialStatus::Active) => {
            // With an expiry window the not_after range is the selective part.
            cond = cond
                .add(active.clone())
                .add(credential::Column::NotAfter.gt(now));
        }
        Some(CredentialStatus::Revoked) => {
            cond = cond.add(credential::Column::Status.eq(CredentialStatus::Revoked.as_str()));
        }
        Some(CredentialStatus::Expired) => {
            cond = cond.add(
                Condition::any()
                    .add(credential::Column::Status.eq(CredentialStatus::Expired.as_str()))
                    .add(
                        Condition::all()
                            .add(active)
                            .add(credential::Column::NotAfter.lte(now)),
                    ),
            );
        }
    }
    if let Some(window) = q.expiring_within {
        cond = cond
            .add(credential::Column::NotAfter.gt(now))
            .add(credential::Column::NotAfter.lte(now + window));
    }
    let select = match &q.san {
        // Join from the SAN index and page on *its* serial: `(value, serial)` is then
        // walked in order and the page stops after `limit` rows, even when a wildcard
        // such as `*.com` matches most of the inventory.
        Some(san) => {
            cond = cond.add(credential_san::Column::Value.eq(san.as_str()));
            if let Some(after) = &q.after {
                cond = cond.add(credential_san::Column::Serial.gt(after.as_str()));
            }
            credential::Entity::find()
                .join(JoinType::InnerJoin, credential::Relation::Sans.def())
                .order_by_asc(credential_san::Column::Serial)
        }
        None => {
            if let Some(after) = &q.after {
                cond = cond.add(credential::Column::Serial.gt(after.as_str()));
            }
            credential::Entity::find().order_by_asc(credential::Column::Serial)
        }
    };
    select.filter(cond).limit(q.limit + 1)
}

/// One credential by serial (any spelling `normalize_serial` accepts).
pub async fn get<C: ConnectionTrait>(
    db: &C,
    serial: &str,
    now: DateTime<Utc>,
) -> Result<CredentialRecord, WireError> {
    let serial = normalize_serial(serial).ok_or_else(|| {
        WireError::bad_request("serial must be non-empty hex of at most 20 octets")
    })?;
    let row = credential::Entity::find_by_id(serial.clone())
        .one(db)
        .await
        .map_err(db_error)?
        .ok_or_else(|| WireError::not_found(format!("no credential with serial {serial}")))?;
    to_record(row, now)
}

/// A database failure as the caller sees it.
pub fn db_error(e: sea_orm::DbErr) -> WireError {
    tracing::warn!(error = %e, "inventory database error");
    WireError::unavailable("inventory database unavailable; retry later")
}

/// Turn a stored row into the wire record, deriving the status at `now`.
pub fn to_record(
    row: credential::Model,
    now: DateTime<Utc>,
) -> Result<CredentialRecord, WireError> {
    let corrupt = |what: &str| {
        tracing::error!(serial = %row.serial, what, "corrupt inventory row");
        WireError::internal(format!("stored credential {} has a bad {what}", row.serial))
    };
    let stored = CredentialStatus::from_name(&row.status).ok_or_else(|| corrupt("status"))?;
    let sans: Sans = serde_json::from_value(row.sans.clone()).map_err(|_| corrupt("sans"))?;
    let profile: Profile = serde_json::from_value(serde_json::Value::String(row.profile.clone()))
        .map_err(|_| corrupt("profile"))?;
    let revocation_reason = match row.revocation_reason.as_deref() {
        None => None,
        Some(r) => {
            Some(RevocationReason::from_name(r).ok_or_else(|| corrupt("revocation reason"))?)
        }
    };
    let labels = serde_json::from_value(row.labels.clone()).map_err(|_| corrupt("labels"))?;
    Ok(CredentialRecord {
        status: effective_status(stored, row.not_after, now),
        revoked_at: row.revoked_at,
        revocation_reason,
        labels,
        facts: CertificateFacts {
            serial: row.serial,
            subject: row.subject,
            sans,
            issuer: row.issuer,
            not_before: row.not_before,
            not_after: row.not_after,
            key_algorithm: row.key_algorithm,
            signature_algorithm: row.signature_algorithm,
            profile,
            fingerprint_sha256: row.fingerprint,
        },
        certificate_pem: row.certificate_pem,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sigil_contracts::ErrorCode;

    #[test]
    fn limits_and_windows_are_validated() {
        let ok = ParsedQuery::parse(&QueryRequest::default()).unwrap();
        assert_eq!(ok.limit, 100);
        for limit in [0, 501] {
            let req = QueryRequest {
                limit: Some(limit),
                ..Default::default()
            };
            assert_eq!(
                ParsedQuery::parse(&req).unwrap_err().code,
                ErrorCode::BadRequest
            );
        }
        let req = QueryRequest {
            limit: Some(500),
            ..Default::default()
        };
        assert_eq!(ParsedQuery::parse(&req).unwrap().limit, 500);
        let req = QueryRequest {
            expiring_within_seconds: Some(-1),
            ..Default::default()
        };
        assert_eq!(
            ParsedQuery::parse(&req).unwrap_err().code,
            ErrorCode::BadRequest
        );
        let req = QueryRequest {
            san: Some("  ".into()),
            ..Default::default()
        };
        assert_eq!(
            ParsedQuery::parse(&req).unwrap_err().code,
            ErrorCode::BadRequest
        );
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let c = encode_cursor("0abc01");
        assert_eq!(decode_cursor(&c).unwrap(), "0abc01");
        for bad in [
            "!!!",
            "",
            &URL_SAFE_NO_PAD.encode("xyz"),
            &URL_SAFE_NO_PAD.encode("00ff"),
        ] {
            assert_eq!(
                decode_cursor(bad).unwrap_err().code,
                ErrorCode::BadRequest,
                "{bad}"
            );
        }
    }

    #[test]
    fn san_keys_cover_exact_and_parent_wildcards() {
        let sans = Sans {
            dns: vec!["API.Example.com.".into(), "*.svc.example.com".into()],
            ip: vec!["10.0.0.1".parse().unwrap()],
            uri: vec!["spiffe://example.org/ns/Prod/sa/web".into()],
        };
        let keys: Vec<String> = san_index_values(&sans).into_iter().collect();
        assert_eq!(
            keys,
            vec![
                "*.com",
                "*.example.com",
                "*.svc.example.com",
                "10.0.0.1",
                "api.example.com",
                "spiffe://example.org/ns/Prod/sa/web",
            ]
        );
        assert_eq!(
            normalize_san("::FFFF:10.0.0.1").as_deref(),
            Some("::ffff:10.0.0.1")
        );
        assert_eq!(
            normalize_san("*.Example.COM").as_deref(),
            Some("*.example.com")
        );
    }

    #[test]
    fn active_past_not_after_reads_as_expired() {
        let now = Utc::now();
        let past = now - Duration::seconds(1);
        assert_eq!(
            effective_status(CredentialStatus::Active, past, now),
            CredentialStatus::Expired
        );
        assert_eq!(
            effective_status(CredentialStatus::Active, now + Duration::seconds(1), now),
            CredentialStatus::Active
        );
        assert_eq!(
            effective_status(CredentialStatus::Revoked, past, now),
            CredentialStatus::Revoked
        );
    }
}
