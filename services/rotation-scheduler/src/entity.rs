//! The scheduler's own tables (sea-orm entities). No other service reads them.

/// `tracked`: one row per credential the scheduler has heard of.
pub mod tracked {
    use sea_orm::entity::prelude::*;

    /// Where a credential is in its life, as the scheduler sees it.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
    #[sea_orm(rs_type = "String", db_type = "String(StringLen::N(20))")]
    pub enum State {
        /// Live; `identity.renewal_due` not yet announced.
        #[sea_orm(string_value = "tracking")]
        Tracking,
        /// `identity.renewal_due` announced; waiting for expiry.
        #[sea_orm(string_value = "renewal_announced")]
        RenewalAnnounced,
        /// `identity.expired` announced. Final.
        #[sea_orm(string_value = "expired")]
        Expired,
        /// Revoked: no further events. Final.
        #[sea_orm(string_value = "revoked")]
        Revoked,
    }

    impl State {
        /// States still watched for expiry.
        pub const LIVE: [State; 2] = [State::Tracking, State::RenewalAnnounced];
    }

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "tracked")]
    pub struct Model {
        /// Normalised lowercase hex.
        #[sea_orm(primary_key, auto_increment = false)]
        pub serial: String,
        pub not_before: ChronoDateTimeUtc,
        pub not_after: ChronoDateTimeUtc,
        /// From [`crate::schedule::renew_at`].
        pub renew_at: ChronoDateTimeUtc,
        pub state: State,
        pub updated_at: ChronoDateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
