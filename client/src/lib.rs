//! strata-client: the `strata` command-line client and the `strata-client` desktop app.

pub mod app;
pub mod cli;
