//! `known_certificates`: every serial this Sigil issued, learnt from `identity.issued`.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "known_certificates")]
pub struct Model {
    /// Normalised serial (lowercase hex, see `sigil_contracts::normalize_serial`).
    #[sea_orm(primary_key, auto_increment = false)]
    pub serial: String,
    /// Issuer distinguished name (RFC 4514), so CRLs can be cut per issuing CA.
    pub issuer: String,
    /// After this instant an entry may leave the CRL (RFC 5280 §5.1.2.6).
    pub not_after: ChronoDateTimeUtc,
    /// When the `identity.issued` event was applied.
    pub recorded_at: ChronoDateTimeUtc,
    /// Profile (`tls-server`, …): with the names below, what policy is told about the
    /// certificate when someone asks to revoke it. `None` in rows recorded before
    /// migration m0002, as are the next three.
    pub profile: Option<String>,
    /// Subject alternative names ([`sigil_contracts::types::Sans`] as JSON).
    pub sans: Option<Json>,
    /// Subject key algorithm as named on the wire (`ecdsa-p256`, …).
    pub key_algorithm: Option<String>,
    /// Kind of the CA that signed (`classical`, `hybrid`, …).
    pub ca_kind: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
