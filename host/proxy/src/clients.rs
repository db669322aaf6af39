//! The backend clients. Plain HTTP/1.1 (most routes, the fast path) goes through the
//! per-thread connections of [`super::pool`], driven by the requests themselves; an upgrade
//! (WebSocket, ...) to a plain backend goes through a hyper-util client per worker
//! ([`crate::server::workers`]), which hands the connection over once switched; every distinct
//! TLS / HTTP/2 setting ([`BackendConnection`]) has a hyper-util client, built when a route
//! first uses it and kept, with its pool, across route reloads that keep the setting.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use http::{Request, Response};
use http_body_util::BodyExt;
use hyper_rustls::{FixedServerNameResolver, HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::ClientConfig;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use super::body::RequestBody;
use super::pool::{self, ConnectOptions, PoolError};
use super::upstream::{UpstreamClient, UpstreamOptions, client};
use routerd_base::ResponseBody;
use routerd_routing::Target;
use routerd_routing::backend::{BackendConnection, BackendTls};

/// A client for backends reached with TLS or HTTP/2.
type TlsClient = Client<HttpsConnector<HttpConnector>, RequestBody>;

/// Every backend client.
pub struct UpstreamClients {
    plain: Box<[UpstreamClient]>,
    options: UpstreamOptions,
    by_setting: RwLock<HashMap<Box<str>, TlsClient>>,
}

impl std::fmt::Debug for UpstreamClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamClients")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl UpstreamClients {
    /// The clients for `options`, with a plain client for each of `workers`.
    pub fn new(options: &UpstreamOptions, workers: usize) -> UpstreamClients {
        UpstreamClients {
            plain: (0..workers.max(1)).map(|_| client(options)).collect(),
            options: *options,
            by_setting: RwLock::new(HashMap::new()),
        }
    }

    /// What the clients were built with.
    pub fn options(&self) -> UpstreamOptions {
        self.options
    }

    /// Sends `req` to `target` with the client its settings call for; `upgrade` says the
    /// request asks to switch protocols.
    pub async fn send(
        &self,
        target: &Target,
        req: Request<RequestBody>,
        upgrade: bool,
    ) -> Result<Response<ResponseBody>, UpstreamError> {
        match &target.connection {
            None if !upgrade => {
                let options = ConnectOptions {
                    timeout: self.options.connect,
                    max_headers: self.options.max_response_headers,
                };
                let resp = pool::send(&target.authority, &target.host, req, options).await?;
                Ok(resp.map(BodyExt::boxed))
            }
            None => {
                let worker = crate::server::workers::current() % self.plain.len();
                let resp = self.plain[worker].request(req).await?;
                Ok(resp.map(BodyExt::boxed))
            }
            Some(setting) => {
                let client = self.client_for(setting)?;
                let resp = client.request(req).await?;
                Ok(resp.map(BodyExt::boxed))
            }
        }
    }

    fn client_for(&self, setting: &BackendConnection) -> Result<TlsClient, rustls::Error> {
        if let Some(c) = self
            .by_setting
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&*setting.key)
        {
            return Ok(c.clone());
        }
        let built = tls_client(setting, &self.options)?;
        let mut clients = self
            .by_setting
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        Ok(clients.entry(setting.key.clone()).or_insert(built).clone())
    }
}

impl UpstreamError {
    /// Whether the connection could not be made (refused, unreachable, connect timeout):
    /// nothing reached the backend.
    pub fn is_connect(&self) -> bool {
        match self {
            UpstreamError::Pool(PoolError::Connect { .. } | PoolError::ConnectTimeout { .. }) => {
                true
            }
            UpstreamError::Client(e) => e.is_connect(),
            _ => false,
        }
    }
}

/// Why a backend request failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The TLS client for the route's backend settings could not be built.
    #[error("cannot set up TLS to the backend: {0}")]
    Tls(#[from] rustls::Error),
    /// A plain HTTP/1.1 exchange failed.
    #[error("{0}")]
    Pool(#[from] PoolError),
    /// An exchange through a hyper-util client failed.
    #[error("{0}")]
    Client(#[from] hyper_util::client::legacy::Error),
}

fn tls_client(
    setting: &BackendConnection,
    options: &UpstreamOptions,
) -> Result<TlsClient, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = tls_config(setting.tls.as_ref(), provider)?;
    let builder = HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http();
    let builder = match setting.tls.as_ref().and_then(|t| t.server_name.clone()) {
        Some(name) => builder.with_server_name_resolver(FixedServerNameResolver::new(name)),
        None => builder,
    };
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.set_connect_timeout(Some(options.connect));
    // TLS runs over the TCP connection: the TCP connector must hand over https URIs.
    http.enforce_http(false);
    let connector = if setting.h2 {
        builder.enable_http2().wrap_connector(http)
    } else {
        builder.enable_http1().wrap_connector(http)
    };
    let mut client = Client::builder(TokioExecutor::new());
    client
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(256)
        .http1_max_headers(options.max_response_headers.max(1))
        .http2_only(setting.h2);
    Ok(client.build(connector))
}

pub(crate) fn tls_config(
    tls: Option<&BackendTls>,
    provider: Arc<CryptoProvider>,
) -> Result<ClientConfig, rustls::Error> {
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    if tls.is_some_and(|t| t.insecure_skip_verify) {
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth());
    }
    let mut roots = rustls::RootCertStore::empty();
    match tls.and_then(|t| t.ca.as_ref()) {
        // Checked when the route was compiled: every certificate is a usable anchor.
        Some(ca) => {
            roots.add_parsable_certificates(ca.iter().cloned());
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// `tls_insecure_skip_verify`: any certificate for any name is taken. The handshake's
/// signatures are still checked, so the peer holds the key of the certificate it showed.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
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
        rustls::crypto::verify_tls12_signature(
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
        rustls::crypto::verify_tls13_signature(
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
