//! `switchyard plan fit`: whether a model fits on a GPU, and how many sequences run at once.

use super::*;
use crate::error::CliError;

#[derive(Args)]
pub(super) struct FitArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// One GPU preset (default: every preset).
    #[arg(long)]
    gpu: Option<String>,
    /// GPUs per replica (tensor parallel): 1, 2, 4 or 8.
    #[arg(long, default_value_t = 1)]
    gpus: u32,
    /// Print the result as JSON instead of tables.
    #[arg(long)]
    json: bool,
}

pub(super) fn fit_row(f: &Fit) -> Vec<String> {
    vec![
        f.gpu.into(),
        f.gpus.to_string(),
        format!("{:.2} GiB", gib(f.vram_bytes)),
        format!("{:.2} GiB", gib(f.usable_bytes)),
        format!("{:.2} GiB", gib(f.kv_budget_bytes)),
        f.max_sequences.to_string(),
        if f.fits {
            "yes".into()
        } else {
            format!("no, short by {}", format_bytes(f.shortfall_bytes))
        },
    ]
}

pub(super) fn fit_cmd(a: FitArgs) -> Result<(), CliError> {
    let choice = a
        .model
        .resolve()?
        .ok_or("--model is required (see `switchyard plan presets`)")?;
    let fits = match &a.gpu {
        Some(name) => {
            let gpu = gpu_by_name(name).map_err(err)?;
            vec![require_fit(&choice.request(gpu, a.gpus)).map_err(err)?]
        }
        None => {
            // `fit_each_gpu` replaces the request's GPU with each preset in turn.
            let any = GPUS.first().ok_or("no GPU presets")?;
            fit_each_gpu(&choice.request(any, a.gpus), GPUS).map_err(err)?
        }
    };
    if a.json {
        return print_json(&json!({ "fits": fits }));
    }
    if let Some(f) = fits.first() {
        println!(
            "{} at {}: {} of weights; KV cache ({}) {} a token, {} per {}-token sequence; {:.0}% of GPU memory usable",
            f.model,
            f.quant,
            format_bytes(f.weights_bytes),
            f.kv_dtype,
            format_bytes(f.kv_bytes_per_token),
            format_bytes(f.kv_bytes_per_sequence),
            thousands(f.context_tokens.into()),
            choice.memory_utilization * 100.0,
        );
        println!();
    }
    let rows: Vec<Vec<String>> = fits.iter().map(fit_row).collect();
    print_table(
        &[
            "GPU",
            "GPUS",
            "VRAM",
            "USABLE",
            "KV_BUDGET",
            "MAX_SEQS",
            "FITS",
        ],
        &rows,
    );
    Ok(())
}
