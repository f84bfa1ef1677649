//! Test-only support for Sigil's integration and fault tests.
//!
//! - [`NatsServer`]: a real `nats-server` with JetStream on a free port and a temporary
//!   store directory, killed on drop; [`NatsServer::stop`] and
//!   [`NatsServer::start_again`] restart it in place (same port, same store) so fault
//!   tests can kill the bus mid-work and check that nothing was lost or doubled.
//! - [`nats_server_binary`]: finds a nats-server >= 2.10 (see `scripts/ensure-nats.sh`).
//! - [`TestDb`]: a throwaway SQLite database, or a fresh PostgreSQL database when
//!   `SIGIL_TEST_DATABASE_URL` is set.
//! - [`eventually`] / [`eventually_ok`]: poll until a condition holds instead of sleeping.
//! - [`pki`]: root → intermediate → leaf chains of every certificate kind sigil-pki
//!   issues, and PEM files of them.
//!
//! Environment:
//! - `SIGIL_NATS_SERVER`: path of the nats-server binary to use.
//! - `SIGIL_TEST_DATABASE_URL`: a PostgreSQL server URL, e.g.
//!   `postgres://postgres@127.0.0.1:5432/test`; each [`TestDb`] creates its own database
//!   on that server and drops it afterwards.
#![forbid(unsafe_code)]
// This crate only ever runs inside tests: failing loudly (unwrap/expect/panic) with a
// clear message is the right way to report a broken test environment.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod db;
mod eventually;
mod nats;
pub mod pki;

pub use db::TestDb;
pub use eventually::{eventually, eventually_ok};
pub use nats::{NatsServer, nats_server_binary};
