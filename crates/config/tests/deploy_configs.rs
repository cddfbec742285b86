//! The configs shipped under `deploy/` parse and validate as they are written, through the same
//! loader `switchyard serve --config` uses: deploy/compose/switchyard.toml as a file, and the
//! TOML embedded in deploy/k8s/configmap.yaml (its `switchyard.toml: |` block). Their secrets
//! come from the environment, which this does not need. tests/python/test_deploy.py checks the
//! rest (the binary starting with them, and the manifests around them).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use switchyard_config::Config;

const COMPOSE_TOML: &str = "../../deploy/compose/switchyard.toml";
const K8S_CONFIGMAP: &str = "../../deploy/k8s/configmap.yaml";

fn repo_file(relative: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// The value of the ConfigMap's `switchyard.toml: |` literal block: the lines after that key
/// that are indented deeper than it (or blank), with the block's indentation removed.
fn configmap_toml(yaml: &str) -> String {
    let mut lines = yaml.lines();
    let key_indent = lines
        .by_ref()
        .find_map(|l| {
            let trimmed = l.trim_start();
            (trimmed.trim_end() == "switchyard.toml: |").then(|| l.len() - trimmed.len())
        })
        .expect("configmap.yaml has a `switchyard.toml: |` block");
    let block: Vec<&str> = lines
        .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > key_indent)
        .collect();
    let indent = block
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .expect("the block is not empty");
    block
        .iter()
        .map(|l| l.get(indent..).unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_compose_config_is_valid() {
    let config = Config::load(&repo_file(COMPOSE_TOML)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.listen_addr().unwrap().port(), 8080);
    assert!(config.server.shutdown_delay_ms > 0, "replicas drain first");
}

#[test]
fn the_kubernetes_configmap_config_is_valid() {
    let yaml = std::fs::read_to_string(repo_file(K8S_CONFIGMAP)).unwrap();
    let toml = configmap_toml(&yaml);
    assert!(toml.contains("[server]"), "extracted:\n{toml}");
    let config = Config::from_toml(&toml).unwrap_or_else(|e| panic!("{e}\n{toml}"));
    assert_eq!(config.listen_addr().unwrap().port(), 8080);
    assert!(config.server.shutdown_delay_ms > 0, "replicas drain first");
}

#[test]
fn the_block_extraction_stops_at_the_next_key() {
    let yaml =
        "data:\n  switchyard.toml: |\n    [server]\n\n    listen = \"0.0.0.0:1\"\n  other: x\n";
    assert_eq!(configmap_toml(yaml), "[server]\n\nlisten = \"0.0.0.0:1\"");
}
