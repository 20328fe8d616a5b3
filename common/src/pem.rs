//! PEM files named by settings (CA bundles, client certificates and keys),
//! read and checked once at start so a wrong path or an empty file is a
//! start-up error that names the setting, never a failed handshake later.

use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The certificates in a PEM file (at least one).
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|error| error.to_string())?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| error.to_string())?;
    if certificates.is_empty() {
        return Err("holds no PEM certificate".into());
    }
    Ok(certificates)
}

/// A PEM file's certificates as trust anchors: each must be one rustls
/// can use as a root (a wrong file is refused at start, not at the first
/// handshake).
pub fn root_store(path: &Path) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in certificates(path)? {
        roots
            .add(certificate)
            .map_err(|_| "holds a certificate that is not a usable CA".to_owned())?;
    }
    Ok(roots)
}

/// The private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|error| match error {
        rustls::pki_types::pem::Error::Io(error) => error.to_string(),
        _ => "holds no PEM private key (PKCS#8, PKCS#1 or SEC1)".into(),
    })
}

/// A PEM file's text, after checking it holds what `check` looks for.
pub fn text_checked<T>(
    path: &Path,
    check: impl FnOnce(&Path) -> Result<T, String>,
) -> Result<String, String> {
    check(path)?;
    std::fs::read_to_string(path).map_err(|error| error.to_string())
}
