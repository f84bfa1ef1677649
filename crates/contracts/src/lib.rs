//! Sigil's wire contracts.
//!
//! Every message that crosses a service boundary is defined here and nowhere else:
//! request and reply types for the NATS micro-service endpoints, the event payloads
//! carried in CloudEvents 1.0 envelopes on the `SIGIL_EVENTS` JetStream stream, the
//! subjects they travel on, and the one typed error shape every reply can carry.
//!
//! The crate does no I/O. [`export`] renders JSON Schemas and an AsyncAPI 3 document
//! from these types; they are checked into `proto/` and a test fails when they drift.
#![forbid(unsafe_code)]

pub mod auth;
pub mod error;
pub mod event;
pub mod export;
pub mod inventory;
pub mod issuer;
pub mod policy;
pub mod revocation;
pub mod subjects;
pub mod types;

pub use error::{ErrorCode, Reply, WireError};
pub use event::{CloudEvent, EventData, EventKind};
pub use revocation::normalize_serial;

/// Largest request body any Sigil endpoint accepts, in bytes.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
