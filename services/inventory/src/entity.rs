//! Inventory's own tables (sea-orm entities). No other service reads them.
//!
//! Timestamps are `timestamptz` on PostgreSQL; on SQLite sqlx stores them as RFC 3339
//! UTC text (`…T12:00:00[.fff]+00:00`), whose byte order is time order, so range
//! conditions and indexes on them work on both engines.

/// `credentials`: one row per certificate serial.
pub mod credential {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "credentials")]
    pub struct Model {
        /// Normalised lowercase hex (see `sigil_contracts::normalize_serial`).
        #[sea_orm(primary_key, auto_increment = false)]
        pub serial: String,
        pub subject: String,
        /// `sigil_contracts::types::Sans` as JSON.
        pub sans: Json,
        pub issuer: String,
        pub not_before: ChronoDateTimeUtc,
        pub not_after: ChronoDateTimeUtc,
        pub key_algorithm: String,
        pub signature_algorithm: String,
        /// `Profile::as_str()`.
        pub profile: String,
        /// SHA-256 of the DER, lowercase hex.
        pub fingerprint: String,
        /// `active`, `revoked` or `expired` as recorded from events; readers also
        /// derive `expired` for active rows past `not_after` (see `crate::query`).
        pub status: String,
        pub revoked_at: Option<ChronoDateTimeUtc>,
        /// `RevocationReason::as_str()`.
        pub revocation_reason: Option<String>,
        /// String → string map as JSON.
        pub labels: Json,
        #[sea_orm(column_type = "Text")]
        pub certificate_pem: String,
        pub updated_at: ChronoDateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        /// The credential's SAN search keys.
        #[sea_orm(has_many = "super::credential_san::Entity")]
        Sans,
    }

    impl Related<super::credential_san::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::Sans.def()
        }
    }

    impl ActiveModelBehavior for ActiveModel {}
}

/// `credential_sans`: one row per (serial, searchable SAN key); see
/// [`crate::query::san_index_values`] for what the keys are and why.
pub mod credential_san {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "credential_sans")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub serial: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub value: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        #[sea_orm(
            belongs_to = "super::credential::Entity",
            from = "Column::Serial",
            to = "super::credential::Column::Serial"
        )]
        Credential,
    }

    impl Related<super::credential::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::Credential.def()
        }
    }

    impl ActiveModelBehavior for ActiveModel {}
}
