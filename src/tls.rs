//! The TLS client side, one home for the three places herald speaks TLS:
//! the mail relay (SMTP, implicit TLS; STARTTLS goes through lettre with
//! the same CA file), the bounce mailbox (IMAP) and the database
//! (PostgreSQL). A leaf module: it uses only `limits` and `InputError`.
//!
//! Each trusts the public authorities (webpki-roots, built in, so a machine
//! without a CA bundle works) plus, when given, a private authority from a
//! PEM file (`smtp_ca_file`, `--imap-ca-file`, `database_ca_file`), read
//! here through the size cap and checked here for at least one
//! certificate, the same way for all three.
//!
//! The crypto provider is the process default that rustls resolves from
//! its crate features: *ring* is the only one rustls is built with (DKIM
//! signs through aws-lc-rs, a separate crate here). (rustls 0.23.48
//! deprecated naming *ring*'s provider directly; the
//! `the_client_configuration_is_made` test fails if the features ever
//! become ambiguous.)

use std::path::Path;
use std::sync::Arc;

use crate::InputError;

/// Why TLS cannot be set up, before any connection.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The CA file cannot be read, or is over its cap.
    #[error(transparent)]
    File(#[from] InputError),
    /// `what` ("the database CA file (`database_ca_file`)", a path) holds
    /// no certificate in PEM.
    #[error("{what} holds no PEM certificate")]
    NoCertificate { what: String },
    /// A certificate in the CA file that rustls refuses.
    #[error("{what} cannot be used ({source})")]
    Unusable { what: String, source: rustls::Error },
    /// The server's name is not one a certificate can be checked against.
    #[error("`{0}` is not a name TLS can check")]
    Name(String),
}

/// The certificates of a CA file (PEM), read through
/// [`crate::limits::MAX_CA_BYTES`]; `what` names it in the error
/// ("CA file", "database CA file"). A file with no certificate is refused
/// with `missing` (what to call it then): trusting nothing more than the
/// public authorities when a private one was meant would fail later, at
/// the connection, with a less clear message.
pub fn read_ca_file(path: &Path, what: &str, missing: &str) -> Result<Vec<u8>, TlsError> {
    let pem = read_ca_pem(path, what)?;
    if certificates(&pem).is_empty() {
        return Err(TlsError::NoCertificate {
            what: missing.to_string(),
        });
    }
    Ok(pem)
}

/// A CA file's bytes, read through [`crate::limits::MAX_CA_BYTES`] (a
/// bundle of every public authority is about 200 KB; `/dev/zero` named by
/// mistake grew to 1 GB): the one reader of CA files. Where the check for
/// a certificate comes later (the database's, in its target), or not at
/// all (IMAP's: rustls then trusts the public authorities only).
pub fn read_ca_pem(path: &Path, what: &str) -> Result<Vec<u8>, InputError> {
    crate::limits::read_capped(path, crate::limits::MAX_CA_BYTES, what)
}

/// Whether `pem` holds at least one certificate.
pub fn holds_certificate(pem: &[u8]) -> bool {
    !certificates(pem).is_empty()
}

/// The PEM certificates in `pem` (other PEM sections and text between
/// them are passed over).
fn certificates(pem: &[u8]) -> Vec<rustls_pki_types::CertificateDer<'static>> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::pem_slice_iter(pem)
        .flatten()
        .collect()
}

/// The client configuration: TLS 1.2 and 1.3, the public authorities and
/// those of `ca_pem` (`what` names its file in an error).
pub fn client_config(ca_pem: Option<&[u8]>, what: &str) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for cert in ca_pem.map(certificates).unwrap_or_default() {
        roots.add(cert).map_err(|source| TlsError::Unusable {
            what: what.to_string(),
            source,
        })?;
    }
    Ok(rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// [`client_config`] as a connector for tokio streams.
pub fn connector(
    ca_pem: Option<&[u8]>,
    what: &str,
) -> Result<tokio_rustls::TlsConnector, TlsError> {
    Ok(tokio_rustls::TlsConnector::from(Arc::new(client_config(
        ca_pem, what,
    )?)))
}

/// `host` as the name the server's certificate must carry.
pub fn server_name(host: &str) -> Result<rustls_pki_types::ServerName<'static>, TlsError> {
    rustls_pki_types::ServerName::try_from(host.to_string())
        .map_err(|_| TlsError::Name(host.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_configuration_is_made() {
        assert!(client_config(None, "the CA file").is_ok());
        assert!(server_name("mail.example.org").is_ok());
        assert!(matches!(server_name("not a name"), Err(TlsError::Name(_))));
    }

    #[test]
    fn ca_files_are_capped_and_must_hold_a_certificate() {
        let e = read_ca_file(Path::new("/dev/zero"), "CA file", "x").unwrap_err();
        assert!(e.to_string().contains("larger than 1 MB"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("ca.pem");
        std::fs::write(&empty, "no certificate here\n").unwrap();
        let e = read_ca_file(&empty, "CA file", "ca.pem").unwrap_err();
        assert_eq!(e.to_string(), "ca.pem holds no PEM certificate");
    }
}
