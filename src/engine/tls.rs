//! TLS for the HTTP engine: one rustls `ClientConfig` per set of options for
//! the whole process (so that session tickets are shared and handshakes
//! resume across users), the options in the conventions of `requests` and
//! Locust, and handshake failures in words that name the fix.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

/// How the server's certificate is checked (`requests`' `verify=`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum Verify {
    /// Against the platform's trust store, or the bundle that
    /// `REQUESTS_CA_BUNDLE` or `SSL_CERT_FILE` names (in that order, as
    /// `requests` reads them).
    #[default]
    Platform,
    /// Not at all (`verify=False`, `--insecure`, FastHttpUser's
    /// `insecure = True`).
    Off,
    /// Against the PEM certificates in this file only (`verify="ca.pem"`).
    CaFile(String),
}

/// A request's or a session's TLS options.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TlsOptions {
    /// How the server's certificate is checked.
    pub verify: Verify,
    /// A client certificate for mutual TLS: the PEM chain's file and the
    /// PEM private key's (the same file when it holds both).
    pub client_cert: Option<(String, String)>,
    /// Offer `h2` before `http/1.1` by ALPN, as browsers and k6 do (false:
    /// HTTP/1.1 only).
    pub offer_h2: bool,
}

impl Default for TlsOptions {
    fn default() -> Self {
        Self {
            verify: Verify::default(),
            client_cert: None,
            offer_h2: true,
        }
    }
}

/// The configs built so far, by options: a handful per process.
static CONFIGS: OnceLock<Mutex<HashMap<TlsOptions, Arc<ClientConfig>>>> = OnceLock::new();

/// The process's config for `options`, built on first use.
///
/// # Errors
/// A failure text naming the file and the problem (a CA bundle or client
/// certificate that cannot be read).
pub fn client_config(options: &TlsOptions) -> Result<Arc<ClientConfig>, String> {
    let configs = CONFIGS.get_or_init(Mutex::default);
    if let Some(found) = configs
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(options)
    {
        return Ok(found.clone());
    }
    let built = Arc::new(build(options)?);
    let mut map = configs.lock().unwrap_or_else(|p| p.into_inner());
    Ok(map.entry(options.clone()).or_insert(built).clone())
}

/// The crypto of every TLS config of the process, client and server:
/// rustls on ring.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Why a certificate and key pair could not be loaded.
#[derive(Debug)]
pub(crate) enum IdentityError {
    /// The certificate file cannot be read as PEM.
    Chain(rustls::pki_types::pem::Error),
    /// It holds no CERTIFICATE block.
    NoCertificate,
    /// The key file cannot be read as a PEM private key.
    Key(rustls::pki_types::pem::Error),
}

/// A PEM certificate chain and its PEM private key, from their files (one
/// file may hold both): a client certificate here, the web UI's server
/// certificate in `web/tls.rs`. Callers word the errors for their option.
///
/// # Errors
/// [`IdentityError`], naming which part failed.
pub(crate) fn load_identity(
    cert: &str,
    key: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), IdentityError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(Iterator::collect)
        .map_err(IdentityError::Chain)?;
    if chain.is_empty() {
        return Err(IdentityError::NoCertificate);
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(IdentityError::Key)?;
    Ok((chain, key))
}

fn build(options: &TlsOptions) -> Result<ClientConfig, String> {
    use rustls_platform_verifier::BuilderVerifierExt;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLSError: TLS setup: {e}"))?;
    let verify = match &options.verify {
        Verify::Platform => bundle_from_env().map_or(Verify::Platform, Verify::CaFile),
        other => other.clone(),
    };
    let builder = match verify {
        Verify::Platform => builder
            .with_platform_verifier()
            .map_err(|e| format!("TLSError: the platform's trust store: {e}"))?,
        Verify::CaFile(path) => builder.with_root_certificates(roots_from(&path)?),
        Verify::Off => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider()))),
    };
    let mut config = match &options.client_cert {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let (chain, private_key) = client_identity(cert, key)?;
            builder.with_client_auth_cert(chain, private_key).map_err(|e| {
                format!("TLSError: cert=({cert:?}, {key:?}): the key does not fit the certificate: {e}")
            })?
        }
    };
    config.alpn_protocols = if options.offer_h2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(config)
}

/// The CA bundle the environment names: `REQUESTS_CA_BUNDLE`, else
/// `SSL_CERT_FILE` (what `requests` and OpenSSL read).
fn bundle_from_env() -> Option<String> {
    ["REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
}

fn roots_from(path: &str) -> Result<RootCertStore, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect)
        .map_err(|e| format!("TLSError: verify={path:?}: cannot read PEM certificates: {e}"))?;
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!(
            "TLSError: verify={path:?}: no CA certificate found: give a PEM file of CERTIFICATE blocks"
        ));
    }
    Ok(roots)
}

fn client_identity(
    cert: &str,
    key: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    load_identity(cert, key).map_err(|e| match e {
        IdentityError::Chain(e) => {
            format!("TLSError: cert={cert:?}: cannot read a PEM certificate: {e}")
        }
        IdentityError::NoCertificate => {
            format!("TLSError: cert={cert:?}: no CERTIFICATE block found")
        }
        IdentityError::Key(e) => {
            format!("TLSError: cert key {key:?}: cannot read a PEM private key: {e}")
        }
    })
}

/// The failure text of a handshake error, naming the fix when there is one.
pub fn describe_handshake_error(host: &str, e: &std::io::Error) -> String {
    let tls = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    let fix = "pass --insecure (or verify=False), or verify='ca.pem' with the CA that signed it";
    match tls {
        Some(rustls::Error::InvalidCertificate(cert)) => match cert {
            CertificateError::UnknownIssuer => {
                format!("SSLError: certificate signed by an unknown authority: {fix}")
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                format!("SSLError: the certificate is not valid for {host}: {fix}")
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                format!("SSLError: the certificate has expired: {fix}")
            }
            other => format!("SSLError: invalid certificate ({other:?}): {fix}"),
        },
        Some(rustls::Error::AlertReceived(alert)) => format!(
            "SSLError: the server refused the handshake ({alert:?}); if it asks for a client \
             certificate, give cert=('client.pem', 'client.key')"
        ),
        Some(other) => format!("SSLError: {other}"),
        None => format!("SSLError: {e}"),
    }
}

/// The verifier of `verify=False`: any certificate is accepted; the
/// handshake's signatures are still checked, so the connection is still
/// encrypted to whoever holds the presented key.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
