//! `sigil-inventory`: runs the inventory service until Ctrl-C or SIGTERM.
//!
//! Environment: `SIGIL_DATABASE_URL` (default SQLite `inventory.db` under
//! `SIGIL_DATA_DIR`, default `./.sigil`), plus the common `SIGIL_NATS_URL` and
//! `SIGIL_HTTP_ADDR` (see [`sigil_bus::launch`]).
#![forbid(unsafe_code)]

use std::process::ExitCode;

use sigil_bus::launch;

fn main() -> ExitCode {
    let config = sigil_inventory::Config {
        database_url: launch::database_url("inventory"),
    };
    launch::main("sigil-inventory", move |rt, shutdown| {
        sigil_inventory::run(config, rt, shutdown)
    })
}
