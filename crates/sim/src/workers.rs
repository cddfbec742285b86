//! Starting a gateway config's `[[sim_workers]]` on loopback. The caller (the CLI's `serve`, a
//! test) does this before starting the gateway, which only ever sees `[[workers]]` entries:
//! each started sim becomes one, labelled `gpu = "simulated"`.

use switchyard_config::Config;

use crate::SimHandle;

#[derive(Debug, thiserror::Error)]
#[error("cannot start simulated worker '{name}': {source}")]
pub struct SimStartError {
    pub name: String,
    pub source: std::io::Error,
}

/// Starts every `[[sim_workers]]` entry of `config` on 127.0.0.1 and moves it to
/// `config.workers` with the sim's URL. The handles are the caller's to keep (for fault
/// injection) and to shut down after the gateway.
pub async fn start_sim_workers(config: &mut Config) -> Result<Vec<SimHandle>, SimStartError> {
    let mut handles = Vec::with_capacity(config.sim_workers.len());
    for sim in std::mem::take(&mut config.sim_workers) {
        match crate::spawn_on("127.0.0.1:0", sim.sim.clone()).await {
            Ok(handle) => {
                config.workers.push(sim.to_worker_spec(handle.url()));
                handles.push(handle);
            }
            Err(source) => {
                for started in handles {
                    started.shutdown().await;
                }
                return Err(SimStartError {
                    name: sim.name,
                    source,
                });
            }
        }
    }
    Ok(handles)
}
