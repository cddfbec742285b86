//! `[admin]`: where the control plane listens. The admin API (`/admin/v1`, `/admin/status`)
//! and the fleet registration API (`/fleet/v1`) get a listener of their own, on loopback by
//! default, so that the port customers reach never serves them.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use crate::tls::TlsFiles;

/// What `[admin] listen = "public"` means: no port of its own.
pub const ON_PUBLIC_PORT: &str = "public";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// An address (`127.0.0.1:8081`), or `"public"` to serve the admin and fleet APIs on
    /// `[server] listen` beside the request path (one port, as before this setting existed).
    pub listen: String,
    /// TLS on the admin port, as `[server]`'s: both or neither. Agents on other machines reach
    /// this port, so beyond loopback it should serve TLS. With `listen = "public"` the public
    /// port's TLS applies and these must be unset.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_client_ca: Option<PathBuf>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8081".into(),
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
        }
    }
}

/// Where the control plane is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminListen {
    /// A listener of its own.
    Own(SocketAddr),
    /// The public listener, beside the request path.
    Public,
}

impl AdminConfig {
    pub fn listen(&self) -> Result<AdminListen, String> {
        if self.listen.eq_ignore_ascii_case(ON_PUBLIC_PORT) {
            return Ok(AdminListen::Public);
        }
        self.listen.parse().map(AdminListen::Own).map_err(|e| {
            format!(
                "admin.listen '{}' is neither an address like 127.0.0.1:8081 nor \"public\": {e}",
                self.listen
            )
        })
    }

    /// The admin port's TLS files, if it serves TLS.
    pub fn tls(&self) -> Result<Option<TlsFiles>, String> {
        TlsFiles::from_section(
            "admin",
            self.tls_cert.as_deref(),
            self.tls_key.as_deref(),
            self.tls_client_ca.as_deref(),
        )
    }

    /// `public` is the public listener's address, to refuse the same address twice.
    pub fn validate(&self, public: Option<SocketAddr>) -> Result<(), String> {
        if self.tls()?.is_some() && self.listen()? == AdminListen::Public {
            return Err(
                "admin.tls_cert is set but admin.listen = \"public\": the public port's TLS \
                 ([server] tls_cert) applies there"
                    .into(),
            );
        }
        if let (AdminListen::Own(own), Some(public)) = (self.listen()?, public) {
            if own == public && own.port() != 0 {
                return Err(format!(
                    "admin.listen {own} is server.listen's address: give the admin port its own, \
                     or write admin.listen = \"public\" to serve both on one port"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn admin(listen: &str) -> AdminConfig {
        AdminConfig {
            listen: listen.into(),
            ..AdminConfig::default()
        }
    }

    #[test]
    fn the_default_is_a_loopback_port_of_its_own() {
        match AdminConfig::default().listen().unwrap() {
            AdminListen::Own(addr) => assert!(addr.ip().is_loopback()),
            AdminListen::Public => panic!("the default must not be the public port"),
        }
    }

    #[test]
    fn public_shares_the_public_listener() {
        assert_eq!(admin("public").listen().unwrap(), AdminListen::Public);
    }

    #[test]
    fn a_bad_address_and_the_public_address_are_refused() {
        let err = admin("localhost").validate(None).unwrap_err();
        assert!(err.contains("admin.listen"), "{err}");
        let public: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        let err = admin("0.0.0.0:8080").validate(Some(public)).unwrap_err();
        assert!(err.contains("\"public\""), "{err}");
        admin("0.0.0.0:8081").validate(Some(public)).unwrap();
    }
}
