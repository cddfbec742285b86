//! Two environment variables name the gateway: `SWITCHYARD_URL` its public port (`bench`,
//! `probe`), `SWITCHYARD_ADMIN_URL` its admin port (the admin commands, `agent`, and where
//! `probe` pushes its minutes). The names
//! earlier releases read (`SWITCHYARD_GATEWAY_URL` for `agent`, `SWITCHYARD_BENCH_URL` for
//! `bench`, `SWITCHYARD_PROBE_URL` for `probe`) still work when neither the flag nor
//! `SWITCHYARD_URL` is given, with a warning on stderr.

/// The variable every command reads (through clap's `env`).
pub const URL_ENV: &str = "SWITCHYARD_URL";

/// A gateway on this machine, as `switchyard serve` listens by default.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";

/// The admin port's variable: the admin API and the registration API listen there.
pub const ADMIN_URL_ENV: &str = "SWITCHYARD_ADMIN_URL";

/// The admin port of a gateway on this machine, as `switchyard serve` listens by default.
pub const DEFAULT_ADMIN_URL: &str = "http://127.0.0.1:8081";

/// The flag or its variable if given, else the deprecated variable `old`, else `None`.
/// `new` is the variable to name in the deprecation warning.
pub fn resolve(given: Option<String>, old: &str, new: &str) -> Option<String> {
    given.or_else(|| {
        let value = std::env::var(old).ok().filter(|v| !v.is_empty())?;
        eprintln!("switchyard: {old} is deprecated; set {new} instead");
        Some(value)
    })
}
