//! TLS and SASL for the Kafka connectors, as librdkafka settings:
//! `tls = { ca_file, cert_file, key_file }` (the shared [`TlsFiles`]) and
//! `sasl = { mechanism, username, password_env }`, the password read from
//! the environment when the connector starts, never from the TOML.
//!
//! | keys | `security.protocol` |
//! |---|---|
//! | neither | `plaintext` |
//! | `tls` | `ssl` |
//! | `sasl` | `sasl_plaintext` |
//! | both | `sasl_ssl` |
//!
//! `properties` are applied after these, so librdkafka's own `ssl.*` and
//! `sasl.*` settings still work for what these keys do not cover.

use crate::tls::{self, TlsFiles};
use crate::{ConnectError, Invalid};
use rdkafka::ClientConfig;
use serde::Deserialize;
use std::path::Path;

/// `sasl = { mechanism = "SCRAM-SHA-512", username = "sluice", password_env = "KAFKA_PASSWORD" }`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sasl {
    pub mechanism: Mechanism,
    pub username: String,
    /// The environment variable holding the password.
    pub password_env: String,
}

/// `sasl.mechanism`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Mechanism {
    #[serde(rename = "PLAIN")]
    Plain,
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl Mechanism {
    fn as_str(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// What a Kafka table says about its connection's security.
#[derive(Debug, Clone, Copy)]
pub(super) struct Security<'a> {
    pub tls: Option<&'a TlsFiles>,
    pub sasl: Option<&'a Sasl>,
}

impl<'a> Security<'a> {
    /// The security of a Kafka table with these keys.
    pub(super) fn of(tls: &'a Option<TlsFiles>, sasl: &'a Option<Sasl>) -> Self {
        Security {
            tls: tls.as_ref(),
            sasl: sasl.as_ref(),
        }
    }

    /// Set `config`'s security settings; `what` names the connector in
    /// errors.
    ///
    /// # Errors
    /// The `password_env` variable is not set (exit 1).
    pub(super) fn apply(&self, what: &str, config: &mut ClientConfig) -> Result<(), ConnectError> {
        let protocol = match (self.tls.is_some(), self.sasl.is_some()) {
            (false, false) => return Ok(()),
            (true, false) => "ssl",
            (false, true) => "sasl_plaintext",
            (true, true) => "sasl_ssl",
        };
        config.set("security.protocol", protocol);
        if let Some(files) = self.tls {
            let path = |p: &Path| p.display().to_string();
            if let Some(ca) = &files.ca_file {
                config.set("ssl.ca.location", path(ca));
            }
            if let (Some(cert), Some(key)) = (&files.cert_file, &files.key_file) {
                config
                    .set("ssl.certificate.location", path(cert))
                    .set("ssl.key.location", path(key));
            }
        }
        if let Some(sasl) = self.sasl {
            let password = tls::password(&sasl.password_env)
                .map_err(|e| ConnectError::Invalid(format!("{what}: {e}")))?;
            config
                .set("sasl.mechanism", sasl.mechanism.as_str())
                .set("sasl.username", &sasl.username)
                .set("sasl.password", password);
        }
        Ok(())
    }
}

/// Make the `tls` paths of a Kafka table absolute against `base` and
/// check them.
///
/// # Errors
/// See [`TlsFiles::resolve`].
pub(crate) fn resolve_files(tls: &mut Option<TlsFiles>, base: &Path) -> Result<(), Invalid> {
    match tls {
        Some(files) => files.resolve(base),
        None => Ok(()),
    }
}
