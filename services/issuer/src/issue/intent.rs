//! `issuer_intent`: what the issuer is about to sign, recorded before it signs.
//!
//! Boulder-style audit trail (STYLE.md "PKI habits"): after the leaf has been built and
//! linted, and before it is signed, a row with its serial, the request's SHA-256, the
//! profile and the CA kind is committed in its own transaction with state
//! [`PREPARED`]. The transaction that records the issuance and its event also moves the
//! row to [`ISSUED`]. A signing failure moves it to [`FAILED`], a certificate signed and
//! then discarded (lost idempotency race, failed commit) to [`DISCARDED`], both best
//! effort. A row left `prepared` means the process stopped (or the database was
//! unreachable) between recording the intent and recording the issuance: that
//! certificate may have been signed and never handed out. Such rows are kept for audit
//! and never reused (serials are random).

use sea_orm::DbErr;
use sea_orm_migration::prelude::*;

/// Recorded, not (yet) known to be signed.
pub const PREPARED: &str = "prepared";
/// Signed and recorded in `issuer_issuance`.
pub const ISSUED: &str = "issued";
/// Signing (or the validation after it) failed: nothing was handed out.
pub const FAILED: &str = "failed";
/// Signed, then thrown away unseen (the issuance could not be recorded).
pub const DISCARDED: &str = "discarded";

/// The `issuer_intent` table.
pub mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "issuer_intent")]
    pub struct Model {
        /// Lowercase hex, as the certificate will carry it.
        #[sea_orm(primary_key, auto_increment = false)]
        pub serial: String,
        /// SHA-256 of the request JSON (as `issuer_issuance.request_sha256`).
        pub request_sha256: String,
        pub profile: String,
        /// Kind of the CA that is to sign.
        pub ca_kind: String,
        /// The intermediate that is to sign.
        pub issuer_ca_id: String,
        /// `prepared`, `issued`, `failed` or `discarded`.
        pub state: String,
        pub created_at: ChronoDateTimeUtc,
        pub updated_at: ChronoDateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Migration `m0005_issuer_intent`: creates `issuer_intent`.
#[derive(Debug)]
pub struct CreateIntent;

impl MigrationName for CreateIntent {
    fn name(&self) -> &str {
        "m0005_issuer_intent"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateIntent {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let col = |name: &str| {
            ColumnDef::new(Alias::new(name))
                .string()
                .not_null()
                .to_owned()
        };
        let time = |name: &str| {
            ColumnDef::new(Alias::new(name))
                .timestamp_with_time_zone()
                .not_null()
                .to_owned()
        };
        manager
            .create_table(
                Table::create()
                    .table(Alias::new("issuer_intent"))
                    .if_not_exists()
                    .col(col("serial").primary_key())
                    .col(col("request_sha256"))
                    .col(col("profile"))
                    .col(col("ca_kind"))
                    .col(col("issuer_ca_id"))
                    .col(col("state"))
                    .col(time("created_at"))
                    .col(time("updated_at"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Alias::new("issuer_intent")).to_owned())
            .await
    }
}
