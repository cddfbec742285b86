//! Worker identity: a registering worker must meet its model's `[models.NAME]` requirements
//! (VRAM, compute capability, quantization, the weights' sha256), each refusal naming the
//! field; and a worker whose identity changes under a live lease is taken out of the fleet.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use switchyard_config::{FleetConfig, ModelRequirements};
use switchyard_server::{RunningGateway, Secrets};
use switchyard_sim::SimConfig;
use switchyard_testkit::*;

const FLEET: &str = "sy-fleet-test-0123456789abcdef";

async fn register(gw: &RunningGateway, body: &Value) -> (u16, Value) {
    let resp = client()
        .post(format!("{}/fleet/v1/workers", gw.admin_url()))
        .bearer_auth(FLEET)
        .json(body)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_must_match_their_models_identity_and_keep_it() {
    let sim = switchyard_sim::spawn_on("127.0.0.1:0", SimConfig::default())
        .await
        .unwrap();
    let digest = "5a".repeat(32);
    let mut c = config(vec![]);
    c.fleet = Some(FleetConfig {
        lease_ms: 15_000,
        heartbeat_ms: 5_000,
    });
    c.models.insert(
        "sim-small".into(),
        ModelRequirements {
            min_vram_gb: Some(24.0),
            min_compute_capability: Some("8.0".into()),
            quantizations: vec!["fp16".into()],
            weights_sha256: Some(digest.clone()),
        },
    );
    let secrets = Secrets {
        dev_key: Some(KEY.into()),
        admin_token: Some(ADMIN.into()),
        fleet_token: Some(FLEET.into()),
    };
    let gw = start_with(c, secrets).await;
    let body = json!({
        "name": "gpu-1", "url": sim.url(), "runtime": "vllm", "model": "sim-small",
        "provider": "p", "region": "eu", "gpu": "rtx4090", "price_per_hour": 0.4,
        "max_concurrency": 8, "vram_gb": 24, "compute_capability": "8.9",
        "quantization": "fp16", "weights_sha256": digest,
    });
    for (field, value, says) in [
        ("vram_gb", json!(16), "at least 24 GB"),
        ("compute_capability", json!("7.5"), "8.0 or later"),
        ("quantization", json!("int4"), "served only as fp16"),
        ("weights_sha256", json!("00".repeat(32)), "Re-pull"),
    ] {
        let mut bad = body.clone();
        bad[field] = value;
        let (status, v) = register(&gw, &bad).await;
        assert_eq!(status, 400, "{field}: {v}");
        assert_eq!(v["error"]["param"], field);
        assert!(
            v["error"]["message"].as_str().unwrap().contains(says),
            "{v}"
        );
    }
    let mut unreported = body.clone();
    unreported.as_object_mut().unwrap().remove("weights_sha256");
    assert_eq!(
        register(&gw, &unreported).await.0,
        400,
        "no digest, no entry"
    );
    assert!(gw.state.fleet.worker("gpu-1").is_none());

    let (status, v) = register(&gw, &body).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        register(&gw, &body).await.0,
        200,
        "the same identity renews"
    );

    // Another card under the same name during the lease: out, and told to register again.
    let mut swapped = body.clone();
    swapped["vram_gb"] = json!(48);
    let (status, v) = register(&gw, &swapped).await;
    assert_eq!(status, 409, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("vram_gb"),
        "{v}"
    );
    assert!(
        gw.state.fleet.worker("gpu-1").is_none(),
        "taken out of the fleet"
    );
    let (status, v) = register(&gw, &swapped).await;
    assert_eq!((status, v["new"].as_bool()), (200, Some(true)), "{v}");
    gw.shutdown().await;
    sim.shutdown().await;
}
