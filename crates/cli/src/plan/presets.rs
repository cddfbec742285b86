//! `switchyard plan presets`: the model architectures, quantization formats and GPUs.

use super::*;
use crate::error::CliError;

pub(super) fn presets(json: bool) -> Result<(), CliError> {
    if json {
        let quants: Vec<Value> = Quant::ALL
            .iter()
            .map(|q| json!({"name": q.name(), "bytes_per_weight": q.bytes_per_weight()}))
            .collect();
        return print_json(&json!({"models": MODELS, "quantizations": quants, "gpus": GPUS}));
    }
    let models: Vec<Vec<String>> = MODELS
        .iter()
        .map(|m| {
            vec![
                m.name.to_string(),
                format!("{:.2}B", m.params as f64 / 1e9),
                m.layers.to_string(),
                m.hidden_size.to_string(),
                m.attention_heads.to_string(),
                m.kv_heads.to_string(),
                m.head_dim.to_string(),
                thousands(m.vocab_size.into()),
                thousands(m.max_context.into()),
                format_bytes(kv_bytes_per_token(
                    m.layers.into(),
                    m.kv_heads.into(),
                    m.head_dim.into(),
                    2,
                )),
            ]
        })
        .collect();
    print_table(
        &[
            "MODEL",
            "PARAMS",
            "LAYERS",
            "HIDDEN",
            "HEADS",
            "KV_HEADS",
            "HEAD_DIM",
            "VOCAB",
            "CONTEXT",
            "KV/TOKEN(FP16)",
        ],
        &models,
    );
    println!();
    let quants: Vec<Vec<String>> = Quant::ALL
        .iter()
        .map(|q| vec![q.name().into(), format!("{}", q.bytes_per_weight())])
        .collect();
    print_table(&["QUANT", "BYTES/WEIGHT"], &quants);
    println!();
    let gpus: Vec<Vec<String>> = GPUS
        .iter()
        .map(|g| {
            vec![
                g.name.into(),
                format!("{:.2} GiB", gib(g.vram_bytes())),
                format!("${:.2}", g.price_per_hour),
            ]
        })
        .collect();
    print_table(&["GPU", "VRAM", "TYPICAL $/H"], &gpus);
    Ok(())
}
