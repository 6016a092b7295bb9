//! What every connector's TLS and login share: the `tls = { ca_file,
//! cert_file, key_file }` table (PEM files, relative to the config file,
//! checked when the config loads), the password taken from an environment
//! variable (`password_env`), and the process's rustls provider.

use crate::Invalid;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// `tls = { ca_file = "certs/ca.pem" }`: PEM files, relative to the config
/// file.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The CA certificate(s) to trust instead of the system's roots.
    pub ca_file: Option<PathBuf>,
    /// A client certificate for mutual TLS, with `key_file`.
    pub cert_file: Option<PathBuf>,
    /// The client certificate's private key.
    pub key_file: Option<PathBuf>,
}

impl TlsFiles {
    /// Make the paths absolute against `base` and check each file is there
    /// and holds PEM.
    ///
    /// # Errors
    /// A file missing, unreadable or not PEM; a certificate without its key.
    pub(crate) fn resolve(&mut self, base: &Path) -> Result<(), Invalid> {
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err(Invalid::new(
                "`tls.cert_file` and `tls.key_file` go together (mutual TLS)",
                "set both, or neither",
            ));
        }
        for (key, file) in [
            ("ca_file", &mut self.ca_file),
            ("cert_file", &mut self.cert_file),
            ("key_file", &mut self.key_file),
        ] {
            let Some(path) = file else { continue };
            *path = base.join(&*path);
            let text = std::fs::read(&*path).map_err(|e| {
                Invalid::new(
                    format!("`tls.{key}`: cannot read {}: {e}", path.display()),
                    "name a PEM file (relative to the config file)",
                )
            })?;
            if let Err(problem) = parse(key, &text) {
                return Err(Invalid::new(
                    format!("`tls.{key}`: {} {problem}", path.display()),
                    "name a PEM file (-----BEGIN ...-----) of what the key says",
                ));
            }
        }
        Ok(())
    }
}

/// Check that a `tls` file holds what its key names: certificates for
/// `ca_file` and `cert_file`, a private key for `key_file`.
fn parse(key: &str, pem: &[u8]) -> Result<(), String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    if key == "key_file" {
        return PrivateKeyDer::from_pem_slice(pem)
            .map(drop)
            .map_err(|e| format!("holds no PEM private key ({e})"));
    }
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("is not a valid PEM file ({e})"))?;
    if certificates.is_empty() {
        return Err("holds no PEM certificate".into());
    }
    Ok(())
}

/// A file named in `tls`, read.
pub(crate) fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// The password in the environment variable `var` (`password_env`); the
/// error names the variable, never a value.
pub(crate) fn password(var: &str) -> Result<String, String> {
    std::env::var(var)
        .map_err(|_| format!("the environment variable `{var}` (`password_env`) is not set"))
}

/// rustls needs one process-wide crypto provider, and cannot pick one when
/// crates in the tree enable both ring and aws-lc-rs: install ring (what
/// lapin uses). One installed before is kept.
pub(crate) fn provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    use super::*;

    const CERT: &[u8] = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    const KEY: &[u8] = b"-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n";

    #[test]
    fn each_file_must_hold_what_its_key_names() {
        assert_eq!(parse("ca_file", CERT), Ok(()));
        assert_eq!(parse("cert_file", CERT), Ok(()));
        assert_eq!(parse("key_file", KEY), Ok(()));
        assert_eq!(
            parse("ca_file", KEY),
            Err("holds no PEM certificate".into())
        );
        assert!(parse("key_file", CERT)
            .unwrap_err()
            .starts_with("holds no PEM private key"));
        assert!(parse("ca_file", b"not pem at all").is_err());
    }

    #[test]
    fn a_key_in_place_of_the_ca_is_refused_naming_key_and_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), KEY).unwrap();
        let mut files = TlsFiles {
            ca_file: Some("ca.pem".into()),
            ..TlsFiles::default()
        };
        let err = files.resolve(dir.path()).unwrap_err();
        let text = format!("{err:?}");
        assert!(
            text.contains("tls.ca_file") && text.contains("ca.pem"),
            "{text}"
        );
    }
}
