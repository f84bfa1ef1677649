//! `sigil-revocation`: runs the revocation service on its own until Ctrl-C or SIGTERM.
//!
//! Environment: `SIGIL_DATABASE_URL` (default SQLite `revocation.db` under
//! `SIGIL_DATA_DIR`, default `./.sigil`), plus the common `SIGIL_NATS_URL` and
//! `SIGIL_HTTP_ADDR` (see [`sigil_bus::launch`]).
#![forbid(unsafe_code)]

use std::process::ExitCode;

use sigil_bus::launch;
use sigil_revocation::Config;

fn main() -> ExitCode {
    let config = Config {
        database_url: launch::database_url("revocation"),
    };
    launch::main("sigil-revocation", move |rt, shutdown| {
        sigil_revocation::run(config, rt, shutdown)
    })
}
