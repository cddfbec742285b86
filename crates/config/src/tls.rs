//! TLS settings shared by the listeners (`[server]` and `[admin]`): which certificate and key
//! files a listener serves, and which CA its clients' certificates must chain to, if any. The
//! files are read when the gateway starts (a missing or broken file fails the start) and again
//! when they change or on SIGHUP.

use std::path::{Path, PathBuf};

/// One listener's TLS files, resolved from a section's `tls_cert`, `tls_key`, `tls_client_ca`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM: the certificate first, then its chain.
    pub cert: PathBuf,
    /// PEM: PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
    pub key: PathBuf,
    /// PEM: the CAs a client certificate must chain to; set, every client must present one.
    pub client_ca: Option<PathBuf>,
}

impl TlsFiles {
    /// `section` names the keys in errors (`server`, `admin`).
    pub fn from_section(
        section: &str,
        cert: Option<&Path>,
        key: Option<&Path>,
        client_ca: Option<&Path>,
    ) -> Result<Option<TlsFiles>, String> {
        match (cert, key) {
            (Some(cert), Some(key)) => Ok(Some(TlsFiles {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
                client_ca: client_ca.map(Path::to_path_buf),
            })),
            (None, None) if client_ca.is_some() => Err(format!(
                "{section}.tls_client_ca needs {section}.tls_cert and {section}.tls_key: client \
                 certificates are asked for during a TLS handshake"
            )),
            (None, None) => Ok(None),
            (Some(_), None) => Err(format!(
                "{section}.tls_cert is set without {section}.tls_key"
            )),
            (None, Some(_)) => Err(format!(
                "{section}.tls_key is set without {section}.tls_cert"
            )),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn both_files_or_neither_and_a_client_ca_only_with_them() {
        let (c, k) = (Path::new("c.pem"), Path::new("k.pem"));
        assert_eq!(TlsFiles::from_section("server", None, None, None), Ok(None));
        let both = TlsFiles::from_section("server", Some(c), Some(k), None).unwrap();
        assert_eq!(both.unwrap().cert, c);
        let err = TlsFiles::from_section("server", Some(c), None, None).unwrap_err();
        assert!(err.contains("server.tls_key"), "{err}");
        let err = TlsFiles::from_section("admin", None, None, Some(c)).unwrap_err();
        assert!(err.contains("admin.tls_client_ca"), "{err}");
    }
}
