//! `revocations`: one row per revoked serial; the first revocation stands.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "revocations")]
pub struct Model {
    /// Normalised serial; the primary key makes a double revocation impossible.
    #[sea_orm(primary_key, auto_increment = false)]
    pub serial: String,
    /// Issuer distinguished name (RFC 4514) of the revoked certificate, for CRLs.
    pub issuer: String,
    /// Reason as named on the wire (`key-compromise`, …).
    pub reason: String,
    /// RFC 5280 CRLReason code of `reason`.
    pub reason_code: i16,
    /// Revocation date, as put in CRL entries and OCSP responses.
    pub revoked_at: ChronoDateTimeUtc,
    /// Principal that asked for the revocation.
    pub revoked_by: String,
    /// notAfter of the revoked certificate (entries may leave the CRL after it).
    pub not_after: ChronoDateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
