//! `strata`: the command-line client.

fn main() -> std::process::ExitCode {
    strata_client::cli::main()
}
