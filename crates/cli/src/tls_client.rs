//! How the CLI's clients trust a gateway port that serves TLS with a private CA (`switchyard
//! ca`), and present a client certificate to one that asks for it (`tls_client_ca`). The
//! system's roots stay trusted too.

use std::path::PathBuf;

use clap::Args;

use crate::error::CliError;

#[derive(Args, Clone, Debug, Default)]
pub struct TlsClientArgs {
    /// A CA certificate (PEM) to trust besides the system's, e.g. the `ca.pem` of
    /// `switchyard ca init`.
    #[arg(long, global = true, env = "SWITCHYARD_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// A client certificate (PEM) to present, for a port with `tls_client_ca`.
    #[arg(
        long,
        global = true,
        env = "SWITCHYARD_CLIENT_CERT",
        requires = "client_key"
    )]
    pub client_cert: Option<PathBuf>,
    /// The client certificate's key (PEM).
    #[arg(
        long,
        global = true,
        env = "SWITCHYARD_CLIENT_KEY",
        requires = "client_cert"
    )]
    pub client_key: Option<PathBuf>,
}

impl TlsClientArgs {
    pub fn apply(
        &self,
        mut builder: reqwest::ClientBuilder,
    ) -> Result<reqwest::ClientBuilder, CliError> {
        let read = |flag: &str, path: &PathBuf| {
            std::fs::read(path)
                .map_err(|e| CliError::Usage(format!("{flag} {}: {e}", path.display())))
        };
        if let Some(path) = &self.ca_cert {
            let pem = read("--ca-cert", path)?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| CliError::Usage(format!("--ca-cert {}: {e}", path.display())))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        if let (Some(cert), Some(key)) = (&self.client_cert, &self.client_key) {
            let mut pem = read("--client-cert", cert)?;
            pem.push(b'\n');
            pem.extend(read("--client-key", key)?);
            let identity = reqwest::Identity::from_pem(&pem)
                .map_err(|e| CliError::Usage(format!("--client-cert/--client-key: {e}")))?;
            builder = builder.identity(identity);
        }
        Ok(builder)
    }
}
