//! `chaos`: the measuring half of `bench/chaos/run.sh` (the script starts the simulated fleet
//! and the gateway, and runs the fault schedule).
//!
//! - `chaos load`: open-loop load against a gateway. Streamed chat completions arrive as a
//!   Poisson process at `--rate` per second for `--duration` seconds, from a seeded schedule
//!   (the same seed gives the same arrival times and `max_tokens` in every phase), and each
//!   request is recorded as one JSON line: scheduled start (ms after the phase's `--t0-ms`),
//!   outcome, error kind, TTFT, TTLT, tokens. Latencies are measured from the SCHEDULED start,
//!   so a generator that falls behind charges the wait to the server (no coordinated
//!   omission); how late each request actually left is recorded too, and a generator that
//!   could not keep its schedule makes the run invalid.
//! - `chaos report`: reads the phases' request records, fault events and gateway logs and
//!   prints the side-by-side table, and writes it all as JSON.
//!
//! See `bench/chaos/README.md`.

mod load;
mod report;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "chaos",
    about = "Switchyard chaos benchmark: open-loop load driver and report"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Open-loop streamed load; one JSON line per request.
    Load(load::LoadArgs),
    /// The side-by-side table and JSON from the phases' records.
    Report(report::ReportArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Load(args) => match tokio::runtime::Runtime::new() {
            Ok(rt) => rt.block_on(load::run(args)),
            Err(e) => Err(format!("cannot start the runtime: {e}")),
        },
        Command::Report(args) => report::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("chaos: {e}");
            ExitCode::from(2)
        }
    }
}
