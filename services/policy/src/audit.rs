//! The hash-chained audit log: table `audit`.
//!
//! Every decision, issuance and revocation is one row. Row `seq` (1, 2, 3… without
//! gaps) carries `prev_hash`, the `hash` of row `seq - 1` (64 zeros for the first), and
//! its own `hash`: SHA-256 over the length-prefixed encoding of
//! `(seq, at, kind, principal, action, resource, outcome, reasons, policy_version,
//! prev_hash)` — each field as its UTF-8 text (`seq` in decimal, `at` as RFC 3339 UTC
//! with microseconds, `reasons` as the stored JSON array) preceded by its length in
//! bytes as a big-endian `u64`. Altering a field breaks that row's hash; removing a
//! row leaves a gap in `seq`.
//!
//! Appends are serialized: each runs in a transaction that reads the tail and inserts
//! `seq + 1`. On PostgreSQL the transaction first takes an advisory transaction lock,
//! so replicas sharing the database queue; on SQLite it first takes the write lock
//! (a no-op DELETE), so it waits for another writer instead of failing on a stale
//! read snapshot. A unique
//! violation on `seq` (a race the lock did not cover) is retried. Writes go through a
//! [`GroupCommit`] (one writer task per replica), and each write reads its predecessor
//! inside the transaction, so the group commit's one-by-one fallback stays correct.

use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr,
    EntityTrait, QueryFilter, QueryOrder, QuerySelect, SqlErr, Statement,
};
use sea_orm_migration::prelude::*;
use sigil_contracts::CloudEvent;
use sigil_contracts::event::{AuditAnchored, PolicyDenied, source_for};
use sigil_contracts::policy::{
    AnchorCheck, AuditEntry, AuditKind, AuditListRequest, AuditListResponse, AuditVerifyResponse,
    BrokenLink, BrokenReason,
};
use sigil_contracts::subjects::Service;
use sigil_store::group::{self, GroupCommit};
use sigil_store::outbox;

/// `prev_hash` of the first row.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Key of the PostgreSQL advisory lock that serializes appends.
const ADVISORY_KEY: i64 = 0x5349_4741_5544; // "SIGAUD"
/// Attempts at appending when a race on `seq` was lost.
const ATTEMPTS: usize = 8;
/// Rows read per page while verifying.
const VERIFY_PAGE: u64 = 500;
/// Most entries one `audit_list` returns.
const MAX_LIST: u32 = 1000;

/// The `audit` table.
pub mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "audit")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub seq: i64,
        pub at: ChronoDateTimeUtc,
        pub kind: String,
        pub principal: String,
        pub action: String,
        #[sea_orm(column_type = "Text")]
        pub resource: String,
        pub outcome: String,
        /// JSON array of strings.
        #[sea_orm(column_type = "Text")]
        pub reasons: String,
        pub policy_version: String,
        pub prev_hash: String,
        pub hash: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

#[derive(DeriveIden)]
enum Audit {
    Table,
    Seq,
    At,
    Kind,
    Principal,
    Action,
    Resource,
    Outcome,
    Reasons,
    PolicyVersion,
    PrevHash,
    Hash,
}

/// Migration `m0002_audit`.
#[derive(Debug)]
pub struct CreateAudit;

impl MigrationName for CreateAudit {
    fn name(&self) -> &str {
        "m0002_audit"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateAudit {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Audit::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(Audit::Seq)
                            .big_integer()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(Audit::At)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Audit::Kind).string().not_null())
                    .col(ColumnDef::new(Audit::Principal).string().not_null())
                    .col(ColumnDef::new(Audit::Action).string().not_null())
                    .col(ColumnDef::new(Audit::Resource).text().not_null())
                    .col(ColumnDef::new(Audit::Outcome).string().not_null())
                    .col(ColumnDef::new(Audit::Reasons).text().not_null())
                    .col(ColumnDef::new(Audit::PolicyVersion).string().not_null())
                    .col(ColumnDef::new(Audit::PrevHash).string().not_null())
                    .col(ColumnDef::new(Audit::Hash).string().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("audit_principal_seq")
                    .table(Audit::Table)
                    .col(Audit::Principal)
                    .col(Audit::Seq)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Audit::Table).to_owned())
            .await
    }
}

/// An entry to append (everything but `seq`, `prev_hash` and `hash`).
#[derive(Debug, Clone, PartialEq)]
pub struct NewEntry {
    pub at: DateTime<Utc>,
    pub kind: AuditKind,
    pub principal: String,
    pub action: String,
    pub resource: String,
    pub outcome: String,
    pub reasons: Vec<String>,
    pub policy_version: String,
    /// For a denial: the `policy.denied` event to enqueue with the row (its
    /// `audit_seq` is filled in).
    pub denied: Option<PolicyDenied>,
}

impl group::Write for NewEntry {
    fn apply<'a>(&'a self, txn: &'a DatabaseTransaction) -> group::WriteFuture<'a> {
        Box::pin(async move { insert(txn, self).await.map(|_| ()) })
    }

    /// One lock, one read of the tail and one INSERT for the whole batch.
    fn apply_batch<'a>(
        writes: &'a [&'a Self],
        txn: &'a DatabaseTransaction,
    ) -> group::WriteFuture<'a> {
        Box::pin(async move { insert_all(txn, writes).await.map(|_| ()) })
    }
}

/// The `at` text that is hashed: RFC 3339 UTC with microseconds.
fn at_text(at: &DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// SHA-256 (hex) of a row's canonical encoding (see the module docs).
pub fn hash_of(m: &entity::Model) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let seq = m.seq.to_string();
    let at = at_text(&m.at);
    for field in [
        seq.as_str(),
        at.as_str(),
        m.kind.as_str(),
        m.principal.as_str(),
        m.action.as_str(),
        m.resource.as_str(),
        m.outcome.as_str(),
        m.reasons.as_str(),
        m.policy_version.as_str(),
        m.prev_hash.as_str(),
    ] {
        ctx.update(
            &<u64 as TryFrom<_>>::try_from(field.len())
                .unwrap_or(u64::MAX)
                .to_be_bytes(),
        );
        ctx.update(field.as_bytes());
    }
    hex::encode(ctx.finish())
}

/// Append `entry` after the current tail inside `txn`; answers the stored row.
pub async fn insert(txn: &DatabaseTransaction, entry: &NewEntry) -> Result<entity::Model, DbErr> {
    let mut rows = insert_all(txn, &[entry]).await?;
    rows.pop()
        .ok_or_else(|| DbErr::Custom("the audit append stored no row".to_owned()))
}

/// Append `entries`, in order, after the current tail inside `txn`: the log is locked
/// and its tail read once, the rows chained in memory and stored with one multi-row
/// INSERT, and the `policy.denied` events of denials enqueued with one outbox INSERT.
/// Answers the stored rows.
pub async fn insert_all(
    txn: &DatabaseTransaction,
    entries: &[&NewEntry],
) -> Result<Vec<entity::Model>, DbErr> {
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    match txn.get_database_backend() {
        DbBackend::Postgres => {
            txn.execute(Statement::from_string(
                DbBackend::Postgres,
                format!("SELECT pg_advisory_xact_lock({ADVISORY_KEY})"),
            ))
            .await?;
        }
        // Take SQLite's write lock before reading the tail: a transaction that reads
        // first and writes later cannot wait for a concurrent writer (its snapshot is
        // stale, SQLITE_BUSY at once); one that writes first waits in the busy
        // handler like any writer. The statement matches no row.
        backend => {
            txn.execute(Statement::from_string(
                backend,
                "DELETE FROM audit WHERE seq < 0".to_owned(),
            ))
            .await?;
        }
    }
    let tail = entity::Entity::find()
        .order_by_desc(entity::Column::Seq)
        .limit(1)
        .one(txn)
        .await?;
    let (mut seq, mut prev_hash) = match tail {
        Some(t) => (t.seq + 1, t.hash),
        None => (1, GENESIS.to_owned()),
    };
    let mut models = Vec::with_capacity(entries.len());
    let mut denials = Vec::new();
    for entry in entries {
        let reasons = serde_json::to_string(&entry.reasons)
            .map_err(|e| DbErr::Custom(format!("cannot encode reasons: {e}")))?;
        let mut model = entity::Model {
            seq,
            at: entry.at.trunc_subsecs(6),
            kind: entry.kind.as_str().to_owned(),
            principal: entry.principal.clone(),
            action: entry.action.clone(),
            resource: entry.resource.clone(),
            outcome: entry.outcome.clone(),
            reasons,
            policy_version: entry.policy_version.clone(),
            prev_hash,
            hash: String::new(),
        };
        model.hash = hash_of(&model);
        if let Some(denied) = &entry.denied {
            let mut denied = denied.clone();
            denied.audit_seq = <u64 as TryFrom<_>>::try_from(seq).unwrap_or(0);
            denials.push(CloudEvent::new(
                &source_for(Service::Policy),
                denied,
                model.at,
                None,
            ));
        }
        seq += 1;
        prev_hash = model.hash.clone();
        models.push(model);
    }
    let active: Vec<entity::ActiveModel> = models.iter().cloned().map(Into::into).collect();
    entity::Entity::insert_many(active)
        .exec_without_returning(txn)
        .await?;
    let denials: Vec<_> = denials.iter().collect();
    outbox::enqueue_many(txn, &denials).await?;
    Ok(models)
}

/// Append through the group commit, retrying a lost race on `seq`.
pub async fn append(writer: &GroupCommit<NewEntry>, entry: NewEntry) -> Result<(), DbErr> {
    let mut last = None;
    for attempt in 0..ATTEMPTS {
        match writer.write(entry.clone()).await {
            Ok(()) => return Ok(()),
            Err(e) if retryable(&e) => last = Some(e),
            Err(e) => return Err(e),
        }
        tokio::time::sleep(std::time::Duration::from_millis(5 << attempt.min(6))).await;
    }
    Err(last.unwrap_or_else(|| DbErr::Custom("cannot append to the audit log".into())))
}

/// A lost race: another writer took the `seq`, or SQLite's write lock was busy.
fn retryable(e: &DbErr) -> bool {
    if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) {
        return true;
    }
    let text = e.to_string();
    text.contains("database is locked") || text.contains("busy")
}

/// The wire form of a row.
pub fn to_wire(m: &entity::Model) -> AuditEntry {
    AuditEntry {
        seq: <u64 as TryFrom<_>>::try_from(m.seq).unwrap_or(0),
        at: m.at,
        kind: AuditKind::from_name(&m.kind).unwrap_or(AuditKind::Decision),
        principal: m.principal.clone(),
        action: m.action.clone(),
        resource: m.resource.clone(),
        outcome: m.outcome.clone(),
        reasons: serde_json::from_str(&m.reasons).unwrap_or_else(|_| vec![m.reasons.clone()]),
        policy_version: m.policy_version.clone(),
        prev_hash: m.prev_hash.clone(),
        hash: m.hash.clone(),
    }
}

/// Entries in `seq` order matching `req`.
pub async fn list(
    db: &DatabaseConnection,
    req: &AuditListRequest,
) -> Result<AuditListResponse, DbErr> {
    let limit = req.limit.unwrap_or(100).clamp(1, MAX_LIST);
    let mut query = entity::Entity::find().order_by_asc(entity::Column::Seq);
    if let Some(p) = &req.principal {
        query = query.filter(entity::Column::Principal.eq(p.clone()));
    }
    if let Some(since) = req.since {
        query = query.filter(entity::Column::At.gte(since));
    }
    if let Some(after) = req.after_seq {
        let after = <i64 as TryFrom<_>>::try_from(after).unwrap_or(i64::MAX);
        query = query.filter(entity::Column::Seq.gt(after));
    }
    let mut rows = query.limit(u64::from(limit) + 1).all(db).await?;
    let keep = <usize as TryFrom<_>>::try_from(limit).unwrap_or(usize::MAX);
    let more = rows.len() > keep;
    rows.truncate(keep);
    let next_cursor = if more {
        rows.last()
            .and_then(|r| <u64 as TryFrom<_>>::try_from(r.seq).ok())
    } else {
        None
    };
    Ok(AuditListResponse {
        entries: rows.iter().map(to_wire).collect(),
        next_cursor,
    })
}

/// Walk the chain in `seq` order, a page at a time, and report the first broken link;
/// then hold the log against `anchor`, the newest [`AuditAnchored`] from the event
/// stream: the row it names must still be there with the anchored hash. Removing the
/// newest rows keeps the chain intact, so only the anchor reveals it.
pub async fn verify(
    db: &DatabaseConnection,
    anchor: Option<&AuditAnchored>,
) -> Result<AuditVerifyResponse, DbErr> {
    let mut reply = verify_chain(db).await?;
    if let Some(anchor) = anchor {
        let check = check_anchor(db, anchor).await?;
        if !check.ok && reply.broken.is_none() {
            reply.ok = false;
            reply.broken = Some(BrokenLink {
                seq: anchor.seq,
                reason: BrokenReason::AnchorMismatch,
                detail: check.detail.clone().unwrap_or_default(),
            });
        }
        reply.anchor = Some(check);
    }
    Ok(reply)
}

/// The newest row, if any.
pub async fn tail(db: &DatabaseConnection) -> Result<Option<entity::Model>, DbErr> {
    entity::Entity::find()
        .order_by_desc(entity::Column::Seq)
        .one(db)
        .await
}

async fn check_anchor(
    db: &DatabaseConnection,
    anchor: &AuditAnchored,
) -> Result<AnchorCheck, DbErr> {
    let seq = <i64 as TryFrom<u64>>::try_from(anchor.seq).unwrap_or(i64::MAX);
    let row = entity::Entity::find_by_id(seq).one(db).await?;
    let detail = match row {
        Some(row) if row.hash == anchor.hash => None,
        Some(_) => Some(format!(
            "the row at seq {} is not the one anchored at {} (its hash differs): the rows \
             from there on were removed and written again",
            anchor.seq,
            anchor.row_at.to_rfc3339()
        )),
        None => {
            let last = tail(db).await?.map_or(0, |t| t.seq);
            Some(format!(
                "the anchor names seq {} (appended {}) but the log ends at seq {last}: the \
                 newest rows were removed",
                anchor.seq,
                anchor.row_at.to_rfc3339()
            ))
        }
    };
    Ok(AnchorCheck {
        seq: anchor.seq,
        hash: anchor.hash.clone(),
        row_at: anchor.row_at,
        ok: detail.is_none(),
        detail,
    })
}

/// What [`anchor_tail`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnchorOutcome {
    /// No row newer than the previous anchor.
    Nothing,
    /// An anchor of the newest row is in the outbox.
    Anchored(AuditAnchored),
    /// The log no longer holds the previous anchor's row with its hash; nothing was
    /// anchored (anchoring now would bless the removal).
    Mismatch(String),
}

/// Put an [`AuditAnchored`] event for the newest row in the outbox, when that row is
/// newer than `previous` (the newest anchor known) and the log still holds
/// `previous`'s row with its hash.
pub async fn anchor_tail(
    db: &DatabaseConnection,
    previous: Option<&AuditAnchored>,
) -> Result<AnchorOutcome, DbErr> {
    if let Some(prev) = previous {
        let check = check_anchor(db, prev).await?;
        if !check.ok {
            return Ok(AnchorOutcome::Mismatch(check.detail.unwrap_or_default()));
        }
    }
    let Some(row) = tail(db).await? else {
        return Ok(AnchorOutcome::Nothing);
    };
    let seq = <u64 as TryFrom<_>>::try_from(row.seq).unwrap_or(0);
    if previous.is_some_and(|p| p.seq >= seq) {
        return Ok(AnchorOutcome::Nothing);
    }
    let anchor = AuditAnchored {
        seq,
        hash: row.hash.clone(),
        row_at: row.at,
    };
    let event = CloudEvent::new(&source_for(Service::Policy), anchor.clone(), row.at, None);
    outbox::enqueue(db, &event).await?;
    Ok(AnchorOutcome::Anchored(anchor))
}

/// Walk the chain in `seq` order, a page at a time, and report the first broken link.
async fn verify_chain(db: &DatabaseConnection) -> Result<AuditVerifyResponse, DbErr> {
    let mut expected: i64 = 1;
    let mut prev = GENESIS.to_owned();
    let mut checked: u64 = 0;
    loop {
        let page = entity::Entity::find()
            .filter(entity::Column::Seq.gte(expected))
            .order_by_asc(entity::Column::Seq)
            .limit(VERIFY_PAGE)
            .all(db)
            .await?;
        if page.is_empty() {
            return Ok(AuditVerifyResponse {
                ok: true,
                checked,
                broken: None,
                anchor: None,
            });
        }
        for row in &page {
            checked += 1;
            let broken = if row.seq != expected {
                Some(BrokenLink {
                    seq: <u64 as TryFrom<_>>::try_from(expected).unwrap_or(0),
                    reason: BrokenReason::MissingSeq,
                    detail: format!("seq {expected} is missing (next is {})", row.seq),
                })
            } else if row.prev_hash != prev {
                Some(BrokenLink {
                    seq: <u64 as TryFrom<_>>::try_from(row.seq).unwrap_or(0),
                    reason: BrokenReason::PrevHashMismatch,
                    detail: format!(
                        "prev_hash {} is not the previous entry's hash {prev}",
                        row.prev_hash
                    ),
                })
            } else if hash_of(row) != row.hash {
                Some(BrokenLink {
                    seq: <u64 as TryFrom<_>>::try_from(row.seq).unwrap_or(0),
                    reason: BrokenReason::HashMismatch,
                    detail: "the stored hash does not match the entry's content".to_owned(),
                })
            } else {
                None
            };
            if let Some(broken) = broken {
                return Ok(AuditVerifyResponse {
                    ok: false,
                    checked,
                    broken: Some(broken),
                    anchor: None,
                });
            }
            prev = row.hash.clone();
            expected += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_covers_every_field() {
        let m = entity::Model {
            seq: 1,
            at: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            kind: "decision".into(),
            principal: "workload:web".into(),
            action: "issue".into(),
            resource: "{}".into(),
            outcome: "allow".into(),
            reasons: "[]".into(),
            policy_version: "1".into(),
            prev_hash: GENESIS.into(),
            hash: String::new(),
        };
        let h = hash_of(&m);
        assert_eq!(h.len(), 64);
        let mut other = m.clone();
        other.reasons = "[\"x\"]".into();
        assert_ne!(hash_of(&other), h);
        // Length prefixes: moving a byte between fields changes the hash.
        let mut shifted = m.clone();
        shifted.principal = "workload:we".into();
        shifted.action = "bissue".into();
        assert_ne!(hash_of(&shifted), h);
    }
}
