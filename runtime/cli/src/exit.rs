//! The CLI's error type: every failure is either invalid input (exit 1) or
//! a connection error (exit 2).

use sluice_brokers::ConnectError;
use sluice_config::ConfigError;
use sluice_core::engine::EngineError;
use sluice_wasm::LoadError;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A bad config or plugin: exit 1.
    #[error("{0}")]
    Invalid(String),
    /// A broker (or other endpoint) that cannot be reached: exit 2.
    #[error("{0}")]
    Connection(String),
}

impl CliError {
    /// The same error, its message prefixed with what was being done.
    pub fn context(self, what: &str) -> Self {
        match self {
            CliError::Invalid(m) => CliError::Invalid(format!("{what}: {m}")),
            CliError::Connection(m) => CliError::Connection(format!("{what}: {m}")),
        }
    }

    pub fn code(&self) -> u8 {
        match self {
            CliError::Invalid(_) => 1,
            CliError::Connection(_) => 2,
        }
    }
}

impl From<ConfigError> for CliError {
    fn from(e: ConfigError) -> Self {
        CliError::Invalid(e.to_string())
    }
}

impl From<ConnectError> for CliError {
    fn from(e: ConnectError) -> Self {
        match e {
            ConnectError::Invalid(m) => CliError::Invalid(m),
            ConnectError::Unreachable(m) => CliError::Connection(m),
        }
    }
}

impl From<EngineError> for CliError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Source { .. } => CliError::Connection(e.to_string()),
            EngineError::Chain { .. }
            | EngineError::Thread { .. }
            | EngineError::CannotRepublish { .. }
            // A panic is a bug, not a broker that went away; the one code
            // left for "it failed" is 1.
            | EngineError::Panicked { .. } => CliError::Invalid(e.to_string()),
        }
    }
}

impl From<LoadError> for CliError {
    fn from(e: LoadError) -> Self {
        CliError::Invalid(e.to_string())
    }
}
