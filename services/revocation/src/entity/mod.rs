//! The revocation service's own tables.

pub mod known_certificate;
pub mod revocation;
