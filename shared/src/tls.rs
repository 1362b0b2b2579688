//! TLS for both daemons and the client: a self-signed identity kept in the data dir, and
//! certificate pinning by SHA-256 thumbprint (the way operators trust a new host).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::Digest;

/// TLS setup errors.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Reading or writing the certificate files failed.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The PEM files could not be parsed.
    #[error("{path}: not a valid PEM {what}")]
    Pem {
        /// File.
        path: PathBuf,
        /// "certificate" or "private key".
        what: &'static str,
    },
    /// Certificate generation failed.
    #[error("generating the certificate failed: {0}")]
    Generate(String),
    /// rustls refused the configuration.
    #[error("TLS configuration refused: {0}")]
    Config(#[from] rustls::Error),
    /// A thumbprint string is malformed.
    #[error("{0:?} is not a SHA-256 thumbprint (64 hex digits, colons optional)")]
    BadThumbprint(String),
}

/// The crypto provider every Strata TLS config uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A daemon's certificate and key.
pub struct Identity {
    /// Certificate (DER).
    pub cert: CertificateDer<'static>,
    /// Private key (DER).
    pub key: PrivateKeyDer<'static>,
    /// SHA-256 thumbprint of `cert`.
    pub thumbprint: String,
    /// True when this start created it.
    pub created: bool,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("thumbprint", &self.thumbprint)
            .finish_non_exhaustive()
    }
}

/// SHA-256 of a DER certificate as `AB:CD:...` (the form operators compare).
pub fn thumbprint(der: &[u8]) -> String {
    let digest = sha2::Sha256::digest(der);
    digest
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Normalises a thumbprint typed by a person: case, colons and spaces do not matter.
pub fn normalize_thumbprint(s: &str) -> Result<String, TlsError> {
    let hexdigits: String = s
        .chars()
        .filter(|c| !matches!(c, ':' | ' ' | '-'))
        .collect();
    if hexdigits.len() != 64 || !hexdigits.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(TlsError::BadThumbprint(s.to_string()));
    }
    let upper = hexdigits.to_ascii_uppercase();
    let pairs: Vec<&str> = (0..32).map(|i| &upper[2 * i..2 * i + 2]).collect();
    Ok(pairs.join(":"))
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Loads `dir/cert.pem` + `dir/key.pem`, or creates a self-signed pair for `names` on first start.
pub fn load_or_create_identity(dir: &Path, names: &[String]) -> Result<Identity, TlsError> {
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    let mut created = false;
    if !cert_path.exists() || !key_path.exists() {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let ck = rcgen::generate_simple_self_signed(names.to_vec())
            .map_err(|e| TlsError::Generate(e.to_string()))?;
        write_private(&key_path, ck.key_pair.serialize_pem().as_bytes())?;
        std::fs::write(&cert_path, ck.cert.pem()).map_err(io_err(&cert_path))?;
        created = true;
    }
    let cert = CertificateDer::from_pem_file(&cert_path).map_err(|_| TlsError::Pem {
        path: cert_path.clone(),
        what: "certificate",
    })?;
    let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|_| TlsError::Pem {
        path: key_path.clone(),
        what: "private key",
    })?;
    let thumbprint = thumbprint(&cert);
    Ok(Identity {
        cert,
        key,
        thumbprint,
        created,
    })
}

fn write_private(path: &Path, data: &[u8]) -> Result<(), TlsError> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts.open(path).map_err(io_err(path))?;
    f.write_all(data).map_err(io_err(path))
}

/// A rustls server config serving `identity`.
pub fn server_config(identity: &Identity) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![identity.cert.clone()], identity.key.clone_key())?;
    Ok(Arc::new(cfg))
}

/// Accepts exactly one certificate, by thumbprint (or any, when `expected` is None, which is
/// only for fetching a thumbprint to show a person). Records what it saw.
#[derive(Debug)]
pub struct PinnedVerifier {
    expected: Option<String>,
    seen: Mutex<Option<String>>,
    provider: Arc<CryptoProvider>,
}

impl PinnedVerifier {
    /// Pins `expected` (normalised), or accepts anything when None.
    pub fn new(expected: Option<String>) -> Arc<Self> {
        Arc::new(Self {
            expected,
            seen: Mutex::new(None),
            provider: provider(),
        })
    }
    /// Thumbprint of the certificate the peer presented, once a handshake got that far.
    pub fn seen(&self) -> Option<String> {
        self.seen.lock().ok().and_then(|s| s.clone())
    }
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got = thumbprint(end_entity);
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some(got.clone());
        }
        match &self.expected {
            None => Ok(ServerCertVerified::assertion()),
            Some(want) if *want == got => Ok(ServerCertVerified::assertion()),
            Some(_) => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
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
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A rustls client config that trusts what `verifier` trusts.
pub fn client_config(verifier: Arc<PinnedVerifier>) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_created_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create_identity(dir.path(), &["localhost".into()]).unwrap();
        assert!(a.created);
        let b = load_or_create_identity(dir.path(), &["localhost".into()]).unwrap();
        assert!(!b.created);
        assert_eq!(a.thumbprint, b.thumbprint);
        assert_eq!(a.thumbprint.len(), 95);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("key.pem"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "key must not be readable by others");
        }
    }

    #[test]
    fn thumbprints_normalise() {
        let t = "ab".repeat(32);
        let n = normalize_thumbprint(&t).unwrap();
        assert_eq!(n.len(), 95);
        assert!(n.starts_with("AB:AB"));
        assert_eq!(normalize_thumbprint(&n).unwrap(), n);
        assert!(normalize_thumbprint("abc").is_err());
        assert!(normalize_thumbprint(&"zz".repeat(32)).is_err());
    }
}
