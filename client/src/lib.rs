//! strata-client: the `strata` command-line client (and, later, the desktop app).

pub mod cli;
