//! The simulated worker's configuration types live in the config leaf (`switchyard-config`),
//! so that reading a gateway config needs no simulator.

pub use switchyard_config::sim::{FaultConfig, SimConfig, UsageInStream};
