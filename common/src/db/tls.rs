//! TLS to PostgreSQL (rustls), with libpq's `sslmode` and `sslrootcert`.
//! tokio-postgres knows only `disable`, `prefer` and `require`, and refuses
//! `verify-ca`, `verify-full` and `sslrootcert` in a URL: they are read and
//! taken out here, and the rest of the URL is handed over with the nearest
//! mode tokio-postgres knows (`require` for the verifying ones; the
//! verification itself is this module's `ClientConfig`).
//!
//! As libpq: `prefer` (the default) and `require` encrypt without checking
//! the server's certificate, unless `sslrootcert` is given, which makes
//! `require` check it as `verify-ca` does; `verify-ca` checks the chain,
//! `verify-full` the chain and the host name. Roots: the `sslrootcert` file
//! (PEM), or `sslrootcert=system` / nothing for the system's roots (libpq
//! reads `~/.postgresql/root.crt` by default; name the file instead).

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, Error, RootCertStore};

/// libpq's `sslmode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(text: &str) -> Option<SslMode> {
        Some(match text {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    /// What tokio-postgres is told.
    fn for_tokio_postgres(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => "require",
        }
    }
}

/// The TLS settings of a database URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSettings {
    pub mode: SslMode,
    /// `None`: the system's roots.
    pub root_cert: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("sslmode={0:?} is none of disable, prefer, require, verify-ca, verify-full")]
    UnknownMode(String),
    #[error("cannot read sslrootcert {path}: {reason}")]
    RootCert { path: String, reason: String },
    #[error("cannot set up TLS: {0}")]
    Rustls(String),
}

/// Takes `sslmode` and `sslrootcert` out of a URL (`postgres://…?…`) or a
/// key=value string; returns the rest, with the mode tokio-postgres takes.
pub fn split(url: &str) -> Result<(String, TlsSettings), TlsSetupError> {
    let mut settings = TlsSettings {
        mode: SslMode::Prefer,
        root_cert: None,
    };
    let mut take = |key: &str, value: &str| -> Result<bool, TlsSetupError> {
        match key {
            "sslmode" => {
                settings.mode = SslMode::parse(value)
                    .ok_or_else(|| TlsSetupError::UnknownMode(value.to_owned()))?;
                Ok(true)
            }
            "sslrootcert" => {
                settings.root_cert = (value != "system").then(|| PathBuf::from(value));
                Ok(true)
            }
            _ => Ok(false),
        }
    };
    let rest = if url.contains("://") {
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if !take(key, &percent_decode(value))? {
                kept.push(pair.to_owned());
            }
        }
        let mode = settings.mode.for_tokio_postgres();
        kept.push(format!("sslmode={mode}"));
        format!("{base}?{}", kept.join("&"))
    } else {
        let mut kept = Vec::new();
        for part in url.split_whitespace() {
            let (key, value) = part.split_once('=').unwrap_or((part, ""));
            if !take(key, value)? {
                kept.push(part.to_owned());
            }
        }
        kept.push(format!("sslmode={}", settings.mode.for_tokio_postgres()));
        kept.join(" ")
    };
    Ok((rest, settings))
}

/// `%XX` escapes of a URL query value (a path in `sslrootcert`).
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let escaped = (bytes[at] == b'%')
            .then(|| value.get(at + 1..at + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                decoded.push(byte);
                at += 3;
            }
            None => {
                decoded.push(bytes[at]);
                at += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// The rustls configuration `settings` ask for.
pub fn client_config(settings: &TlsSettings) -> Result<ClientConfig, TlsSetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|error| TlsSetupError::Rustls(error.to_string()))?;
    let checks_chain = match settings.mode {
        SslMode::VerifyCa | SslMode::VerifyFull => true,
        SslMode::Require => settings.root_cert.is_some(),
        SslMode::Disable | SslMode::Prefer => false,
    };
    let chain = match checks_chain {
        true => Some(
            WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots(settings.root_cert.as_ref())?),
                provider.clone(),
            )
            .build()
            .map_err(|error| TlsSetupError::Rustls(error.to_string()))?,
        ),
        false => None,
    };
    let verifier = Arc::new(Verifier {
        chain,
        check_name: settings.mode == SslMode::VerifyFull,
        provider,
    });
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

fn roots(root_cert: Option<&PathBuf>) -> Result<RootCertStore, TlsSetupError> {
    match root_cert {
        Some(path) => crate::pem::root_store(path).map_err(|reason| TlsSetupError::RootCert {
            path: path.display().to_string(),
            reason,
        }),
        None => {
            let mut roots = RootCertStore::empty();
            for certificate in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(certificate);
            }
            Ok(roots)
        }
    }
}

/// The server's certificate as `sslmode` asks: taken as it comes (no
/// chain: `prefer`, `require` without a root, libpq's behaviour), checked to
/// a trusted root whatever name it is for (`verify-ca`), or to a root and
/// for the host (`verify-full`). The handshake's signatures are checked
/// against the certificate in every case.
#[derive(Debug)]
struct Verifier {
    chain: Option<Arc<WebPkiServerVerifier>>,
    check_name: bool,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_ok(url: &str) -> (String, TlsSettings) {
        split(url).expect("a valid URL")
    }

    #[test]
    fn the_modes_tokio_postgres_refuses_are_taken_out_of_a_url() {
        let (rest, settings) = split_ok(
            "postgres://intake@db.example:5432/intake?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&application_name=w",
        );
        assert_eq!(
            rest,
            "postgres://intake@db.example:5432/intake?application_name=w&sslmode=require"
        );
        assert_eq!(settings.mode, SslMode::VerifyFull);
        assert_eq!(settings.root_cert, Some(PathBuf::from("/etc/ca.pem")));
    }

    #[test]
    fn prefer_is_the_default_and_system_means_the_system_roots() {
        let (rest, settings) = split_ok("postgres://h/db");
        assert_eq!(rest, "postgres://h/db?sslmode=prefer");
        assert_eq!(settings.mode, SslMode::Prefer);
        let (_, settings) = split_ok("postgres://h/db?sslmode=verify-ca&sslrootcert=system");
        assert_eq!(settings.root_cert, None);
    }

    #[test]
    fn a_key_value_string_works_too_and_an_unknown_mode_is_refused() {
        let (rest, settings) = split_ok("host=h dbname=db sslmode=verify-ca sslrootcert=/ca.pem");
        assert_eq!(rest, "host=h dbname=db sslmode=require");
        assert_eq!(settings.mode, SslMode::VerifyCa);
        assert!(matches!(
            split("postgres://h/db?sslmode=allow-all"),
            Err(TlsSetupError::UnknownMode(_))
        ));
    }
}
