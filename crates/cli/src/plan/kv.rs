//! `switchyard plan kv`: the KV-cache size of a model, context and batch.

use super::*;
use crate::error::CliError;

#[derive(Args)]
pub(super) struct KvArgs {
    /// Take layers, KV heads and head dim from a model preset.
    #[arg(long, conflicts_with_all = ["layers", "kv_heads", "head_dim"])]
    model: Option<String>,
    #[arg(long)]
    layers: Option<u64>,
    /// KV heads (= attention heads without grouped-query attention).
    #[arg(long)]
    kv_heads: Option<u64>,
    #[arg(long)]
    head_dim: Option<u64>,
    /// Bytes per element (2 for FP16/BF16, 1 for FP8).
    #[arg(long, default_value_t = 2)]
    dtype_bytes: u64,
    /// Tokens per sequence (prompt + generated).
    #[arg(long)]
    tokens: u64,
    /// Sequences held at once.
    #[arg(long, default_value_t = 1)]
    sequences: u64,
    /// Print the result as JSON instead of tables.
    #[arg(long)]
    json: bool,
}

pub(super) fn kv(a: KvArgs) -> Result<(), CliError> {
    let (layers, kv_heads, head_dim, what) = match &a.model {
        Some(name) => {
            let m = model_by_name(name).map_err(err)?;
            (
                m.layers.into(),
                m.kv_heads.into(),
                m.head_dim.into(),
                m.name.to_string(),
            )
        }
        None => match (a.layers, a.kv_heads, a.head_dim) {
            (Some(l), Some(k), Some(h)) => (l, k, h, "custom".to_string()),
            _ => {
                return Err(
                    "give --model, or all of --layers, --kv-heads and --head-dim"
                        .to_string()
                        .into(),
                )
            }
        },
    };
    if [
        layers,
        kv_heads,
        head_dim,
        a.dtype_bytes,
        a.tokens,
        a.sequences,
    ]
    .contains(&0)
    {
        return Err(
            "layers, KV heads, head dim, dtype bytes, tokens and sequences must all be > 0".into(),
        );
    }
    let per_token = kv_bytes_per_token(layers, kv_heads, head_dim, a.dtype_bytes);
    let per_seq = kv_cache_bytes(per_token, a.tokens, 1).map_err(err)?;
    let total = kv_cache_bytes(per_token, a.tokens, a.sequences).map_err(err)?;
    if a.json {
        return print_json(&json!({
            "model": what, "layers": layers, "kv_heads": kv_heads, "head_dim": head_dim,
            "dtype_bytes": a.dtype_bytes, "tokens": a.tokens, "sequences": a.sequences,
            "bytes_per_token": per_token, "bytes_per_sequence": per_seq, "bytes": total,
            "gib": gib(total),
        }));
    }
    println!(
        "{what}: {layers} layers × {kv_heads} KV heads × 2 (K,V) × {head_dim} head dim × {} bytes",
        a.dtype_bytes
    );
    print_table(
        &["", "BYTES", "SIZE"],
        &[
            vec![
                "per token".into(),
                thousands(per_token),
                format_bytes(per_token),
            ],
            vec![
                format!("per sequence ({} tokens)", thousands(a.tokens)),
                thousands(per_seq),
                format_bytes(per_seq),
            ],
            vec![
                format!("{} sequences", a.sequences),
                thousands(total),
                format_bytes(total),
            ],
        ],
    );
    Ok(())
}
