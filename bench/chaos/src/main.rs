//! `chaos`: the reporting half of `bench/chaos/run.sh` (the script starts the simulated fleet
//! and the gateway, runs the fault schedule, and drives the load with `switchyard bench`).
//!
//! The load is `switchyard bench --rate R --arrivals poisson --seed N --max-tokens LO-HI
//! --start-at T0 --records FILE`: open-loop streamed chat completions from a seeded Poisson
//! schedule (the same seed gives the same arrival times and max_tokens in every phase), with
//! latencies measured from each request's SCHEDULED start (no coordinated omission) and one
//! JSON line per request. `chaos report` reads those records, the fault events and the
//! gateway logs of each phase, prints the side-by-side table, and writes it all as JSON.
//!
//! See `bench/chaos/README.md`.

mod report;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "chaos",
    about = "Switchyard chaos benchmark: the report (the load comes from `switchyard bench`)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The side-by-side table and JSON from the phases' records.
    Report(report::ReportArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
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
