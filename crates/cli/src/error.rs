//! What can make a command fail, and the exit status each gives, so a script can tell a
//! mistake in its own arguments from a gateway that is down or one that said no.

use std::process::ExitCode;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The arguments, the environment or an input file are wrong; nothing was sent. Exit 2.
    #[error("{0}")]
    Usage(String),
    /// The gateway (or a worker, for `agent`) could not be reached. Exit 3.
    #[error(
        "cannot reach the gateway at {url}: {source} (is `switchyard serve` running there? see --url)"
    )]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The gateway answered with an error: its message, HTTP status and code. Exit 4.
    #[error("{message} [HTTP {status}{code}]{hint}")]
    Api {
        status: u16,
        /// ", code", or empty.
        code: String,
        message: String,
        hint: &'static str,
    },
    /// Anything else that went wrong while the command ran. Exit 1.
    #[error("{0}")]
    Failed(String),
}

impl CliError {
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            CliError::Failed(_) => 1,
            CliError::Usage(_) => 2,
            CliError::Unreachable { .. } => 3,
            CliError::Api { .. } => 4,
        })
    }
}

/// Most failures are described where they happen; they are `Failed` unless said otherwise.
impl From<String> for CliError {
    fn from(message: String) -> Self {
        CliError::Failed(message)
    }
}

impl From<&str> for CliError {
    fn from(message: &str) -> Self {
        CliError::Failed(message.to_string())
    }
}
