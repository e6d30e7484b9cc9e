//! The AWS SDK's HTTP client: HTTP/1.1 over tokio, TLS by rustls with ring, and a small
//! keep-alive pool per endpoint.
//!
//! Not the SDK's default client (`aws-smithy-http-client`): DynamoDB, SES and Secrets Manager
//! answer these functions over HTTP/1.1, and its HTTP/2 stack, proxy layer and generic pool
//! were about 0.4 MB of every binary. What the SDK asks of a client is small: send one request,
//! honour the connect timeout, and say which failures are worth a retry; the attempt and
//! operation timeouts, retries and signing stay the SDK's.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, HOST};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;

type Sender = SendRequest<SdkBody>;

/// Idle connections kept per endpoint: a function serves one request at a time, the local
/// server a few; more would only hold sockets the service closes anyway.
const IDLE_PER_ENDPOINT: usize = 8;

/// The roots that sign AWS service endpoints (Amazon Trust Services; `shared/data/README.md`).
const AWS_ROOT_CAS: &[u8] = include_bytes!("../../data/aws-root-cas.pem");

/// Whom TLS connections trust.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trust {
    /// Only the AWS roots, embedded: loading the system's ~150 roots from disk was 3–6 ms of
    /// every cold start, and no other CA can then impersonate an AWS endpoint to the functions.
    AwsRoots,
    /// The system's roots: an emulator or proxy over https with its own CA.
    System,
}

impl Trust {
    /// An endpoint override over https, or `AWS_TRUST_SYSTEM_ROOTS=true`, trusts the system's
    /// roots; anything else only AWS's.
    pub fn from_env() -> Self {
        let custom_https = std::env::vars().any(|(name, value)| {
            name.starts_with("AWS_ENDPOINT_URL") && value.starts_with("https://")
        });
        let system_roots = std::env::var("AWS_TRUST_SYSTEM_ROOTS").is_ok_and(|v| v == "true");
        match custom_https || system_roots {
            true => Trust::System,
            false => Trust::AwsRoots,
        }
    }

    fn roots(self) -> rustls::RootCertStore {
        use rustls_pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        let certificates: Vec<_> = match self {
            Trust::AwsRoots => rustls_pki_types::CertificateDer::pem_slice_iter(AWS_ROOT_CAS)
                .filter_map(Result::ok)
                .collect(),
            Trust::System => rustls_native_certs::load_native_certs().certs,
        };
        roots.add_parsable_certificates(certificates);
        roots
    }
}

/// The client; cheap to clone (clones share the pool).
#[derive(Clone, Debug)]
pub struct Http1Client {
    pool: Arc<Pool>,
}

impl Http1Client {
    pub fn new(trust: Trust) -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .with_root_certificates(trust.roots())
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Self {
            pool: Arc::new(Pool {
                tls: tokio_rustls::TlsConnector::from(Arc::new(tls)),
                idle: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// A connector over this client's pool: what `http_connector` gives the SDK.
    pub fn connector(&self, connect_timeout: Option<Duration>) -> impl HttpConnector {
        Connector {
            pool: self.pool.clone(),
            connect_timeout,
        }
    }
}

impl HttpClient for Http1Client {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(self.connector(settings.connect_timeout()))
    }
}

#[derive(Debug)]
struct Connector {
    pool: Arc<Pool>,
    connect_timeout: Option<Duration>,
}

impl HttpConnector for Connector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let pool = self.pool.clone();
        let connect_timeout = self.connect_timeout;
        HttpConnectorFuture::new(async move {
            let request = request
                .try_into_http1x()
                .map_err(|e| ConnectorError::user(e.into()))?;
            pool.send(request, connect_timeout).await
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Endpoint {
    https: bool,
    host: String,
    port: u16,
}

impl Endpoint {
    fn of(uri: &hyper::Uri) -> Result<Self, ConnectorError> {
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(user_error(format!("not an http(s) URL: {uri}"))),
        };
        let host = uri
            .host()
            .ok_or_else(|| user_error(format!("no host in {uri}")))?;
        Ok(Self {
            https,
            // An IPv6 literal comes bracketed; the socket address wants it bare.
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port: uri.port_u16().unwrap_or(if https { 443 } else { 80 }),
        })
    }
}

fn user_error(why: String) -> ConnectorError {
    ConnectorError::user(why.into())
}

struct Pool {
    tls: tokio_rustls::TlsConnector,
    idle: Mutex<HashMap<Endpoint, Vec<Sender>>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").finish_non_exhaustive()
    }
}

impl Pool {
    async fn send(
        self: Arc<Self>,
        mut request: hyper::Request<SdkBody>,
        connect_timeout: Option<Duration>,
    ) -> Result<HttpResponse, ConnectorError> {
        let endpoint = Endpoint::of(request.uri())?;
        // On a connection, HTTP/1.1 sends the path and a Host header, not the absolute URL.
        if !request.headers().contains_key(HOST) {
            let authority = request.uri().authority().map(|a| a.as_str().to_owned());
            if let Some(value) = authority.and_then(|a| HeaderValue::from_str(&a).ok()) {
                request.headers_mut().insert(HOST, value);
            }
        }
        let path = request
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .parse()
            .map_err(|e: hyper::http::uri::InvalidUri| ConnectorError::user(e.into()))?;
        *request.uri_mut() = path;

        let (mut sender, pooled) = match self.idle_sender(&endpoint).await {
            Some(sender) => (sender, true),
            None => (self.connect(&endpoint, connect_timeout).await?, false),
        };
        let response = match sender.try_send_request(request).await {
            Ok(response) => response,
            // A pooled connection the service had closed, found out before a byte of the
            // request went out: send it on a new connection, as no attempt was made.
            Err(mut failed) if pooled && failed.message().is_some() => {
                let request = failed.take_message().expect("checked above");
                sender = self.connect(&endpoint, connect_timeout).await?;
                sender
                    .send_request(request)
                    .await
                    .map_err(connector_error)?
            }
            Err(failed) => return Err(connector_error(failed.into_error())),
        };
        let (parts, body) = response.into_parts();
        let body = GivesBackConnection::new(body, self, endpoint, sender);
        let response = hyper::Response::from_parts(parts, SdkBody::from_body_1_x(body));
        HttpResponse::try_from(response).map_err(|e| ConnectorError::other(e.into(), None))
    }

    /// An idle connection to `endpoint` that is still open, most recently used first.
    async fn idle_sender(&self, endpoint: &Endpoint) -> Option<Sender> {
        loop {
            let mut sender = self.idle.lock().ok()?.get_mut(endpoint)?.pop()?;
            // Immediate: the connection is idle (ready) or closed (an error, and it is dropped).
            if sender.ready().await.is_ok() {
                return Some(sender);
            }
        }
    }

    fn give_back(&self, endpoint: Endpoint, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        if let Ok(mut idle) = self.idle.lock() {
            let senders = idle.entry(endpoint).or_default();
            if senders.len() < IDLE_PER_ENDPOINT {
                senders.push(sender);
            }
        }
    }

    async fn connect(
        &self,
        endpoint: &Endpoint,
        timeout: Option<Duration>,
    ) -> Result<Sender, ConnectorError> {
        let connecting = async {
            let tcp = tokio::net::TcpStream::connect((endpoint.host.as_str(), endpoint.port))
                .await
                .map_err(|e| ConnectorError::io(e.into()))?;
            // Requests are small and answered at once: no Nagle delay on them.
            let _ = tcp.set_nodelay(true);
            if !endpoint.https {
                return handshake(tcp).await;
            }
            let name = ServerName::try_from(endpoint.host.clone())
                .map_err(|e| ConnectorError::user(e.into()))?;
            let tls = self
                .tls
                .connect(name, tcp)
                .await
                .map_err(|e| ConnectorError::io(e.into()))?;
            handshake(tls).await
        };
        match timeout {
            Some(timeout) => tokio::time::timeout(timeout, connecting)
                .await
                .map_err(|e| ConnectorError::timeout(e.into()))?,
            None => connecting.await,
        }
    }
}

async fn handshake<S>(stream: S) -> Result<Sender, ConnectorError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(connector_error)?;
    tokio::spawn(async move {
        // Ends when the connection closes; its errors reach the request that saw them.
        let _ = connection.await;
    });
    Ok(sender)
}

/// A hyper failure as the SDK should treat it: I/O and a closed connection are retried, a
/// malformed request is not (the classification of the SDK's own client).
fn connector_error(error: hyper::Error) -> ConnectorError {
    use std::error::Error;
    let mut io = false;
    let mut source: Option<&(dyn Error + 'static)> = Some(&error);
    while let Some(e) = source {
        io |= e.is::<std::io::Error>();
        source = e.source();
    }
    if error.is_user() {
        ConnectorError::user(error.into())
    } else if error.is_closed() || error.is_canceled() || io {
        ConnectorError::io(error.into())
    } else if error.is_incomplete_message() {
        let transient = Some(aws_smithy_types::retry::ErrorKind::TransientError);
        ConnectorError::other(error.into(), transient)
    } else {
        ConnectorError::other(error.into(), None)
    }
}

/// A response body that returns its connection to the pool once read to the end: an HTTP/1.1
/// connection carries the next request only after the whole previous answer.
struct GivesBackConnection {
    body: Incoming,
    give_back: Option<(Arc<Pool>, Endpoint, Sender)>,
}

impl GivesBackConnection {
    fn new(body: Incoming, pool: Arc<Pool>, endpoint: Endpoint, sender: Sender) -> Self {
        let mut this = Self {
            body,
            give_back: Some((pool, endpoint, sender)),
        };
        this.give_back_if_read();
        this
    }

    fn give_back_if_read(&mut self) {
        if self.body.is_end_stream() {
            if let Some((pool, endpoint, sender)) = self.give_back.take() {
                pool.give_back(endpoint, sender);
            }
        }
    }
}

impl Body for GivesBackConnection {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => {
                if let Some((pool, endpoint, sender)) = self.give_back.take() {
                    pool.give_back(endpoint, sender);
                }
            }
            Poll::Ready(Some(Ok(_))) => self.give_back_if_read(),
            // An error (or a body dropped unread) leaves the connection to close with it.
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_aws_roots_are_the_five_amazon_trust_services_certificates() {
        let text = String::from_utf8_lossy(AWS_ROOT_CAS);
        for name in ["Amazon_Root_CA_1", "Amazon_Root_CA_4", "Starfield_Services"] {
            assert!(text.contains(name), "{name}");
        }
        assert_eq!(Trust::AwsRoots.roots().len(), 5);
    }

    #[test]
    fn an_endpoint_is_its_scheme_host_and_port() {
        let endpoint = |url: &str| Endpoint::of(&url.parse().unwrap()).unwrap();
        assert_eq!(
            endpoint("https://dynamodb.eu-west-1.amazonaws.com/"),
            Endpoint {
                https: true,
                host: "dynamodb.eu-west-1.amazonaws.com".into(),
                port: 443
            }
        );
        assert_eq!(
            endpoint("http://[::1]:8000"),
            Endpoint {
                https: false,
                host: "::1".into(),
                port: 8000
            }
        );
        assert!(Endpoint::of(&"ftp://example.com/".parse().unwrap()).is_err());
    }
}
