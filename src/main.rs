//! The `fstore` binary: the command line ([`cli`]) and the load generators
//! ([`bench`]) over the server library.

mod bench;
mod cli;
mod typed_arg;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of glibc's malloc: under lookup load, glibc spent up to a
/// quarter of server CPU in `_int_malloc` and `malloc_consolidate` (perf).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
