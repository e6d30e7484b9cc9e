//! The whole API on one local port: every function's handler behind the same dispatch the
//! Lambda functions use, so local runs and tests exercise the deployed code paths.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};

use auth::http::client_ip::Peer;
use auth::http::routes::{Endpoint, Function};
use auth::http::{dispatch, Handler, Handlers, HttpBody};
use auth::App;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Past this, an oversized body is not even drained: the connection is dropped.
const DRAIN_LIMIT: usize = 16 * 1024 * 1024;

/// The handlers a function's binary serves.
pub fn handlers_of(function: Function) -> Handlers {
    match function {
        Function::Accounts => accounts::HANDLERS,
        Function::Login => login::HANDLERS,
        Function::PasswordReset => password_reset::HANDLERS,
        Function::Totp => totp::HANDLERS,
        Function::StaticCodes => static_codes::HANDLERS,
    }
}

/// Every function's handlers: the local server serves them all.
pub static HANDLERS: LazyLock<Vec<(Endpoint, Handler)>> =
    LazyLock::new(|| Function::ALL.map(handlers_of).concat());

/// Delivers queued mail in the background, as the mailer function does in AWS: at once when
/// a request queues one, and every second for what an earlier round left (a failed send).
pub async fn deliver_forever(app: Arc<App>) {
    loop {
        if let Err(err) = app.service.deliver_queued().await {
            tracing::warn!(error = %err, "mail queue not readable");
        }
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(1),
            app.service.queue_signal.notified(),
        )
        .await;
    }
}

/// Accepts connections until the listener fails; delivers queued mail meanwhile.
pub async fn serve(listener: TcpListener, app: Arc<App>) -> std::io::Result<()> {
    tokio::spawn(deliver_forever(app.clone()));
    serve_requests(listener, app).await
}

/// Accepts connections until the listener fails, without delivering mail (tests that count
/// a request's storage calls).
pub async fn serve_requests(listener: TcpListener, app: Arc<App>) -> std::io::Result<()> {
    loop {
        let (stream, peer) = listener.accept().await?;
        let app = app.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(handle(app, peer, request).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Reads at most `limit + 1` bytes of the body into memory (enough for dispatch to answer 413),
/// draining the rest so the client can read the answer.
async fn read_body(mut body: Incoming, limit: usize) -> Option<Vec<u8>> {
    let mut kept = Vec::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.ok()?.into_data() else {
            continue;
        };
        seen += data.len();
        if seen > DRAIN_LIMIT {
            return None;
        }
        let room = (limit + 1).saturating_sub(kept.len());
        kept.extend_from_slice(&data[..data.len().min(room)]);
    }
    Some(kept)
}

async fn handle(
    app: Arc<App>,
    peer: SocketAddr,
    request: hyper::Request<Incoming>,
) -> hyper::Response<Full<Bytes>> {
    let (mut parts, body) = request.into_parts();
    let limit = app.service.settings.max_body_bytes;
    let bytes = read_body(body, limit)
        .await
        .unwrap_or_else(|| vec![0; limit + 1]);
    // The TCP peer is the client (X-Forwarded-For counts only from TRUSTED_PROXIES).
    parts.extensions.insert(Peer(peer.ip()));
    let request = hyper::Request::from_parts(parts, HttpBody::from(bytes));
    let request_id = auth::service::request_id();
    let response = dispatch(&app, request, &request_id, &HANDLERS).await;
    let (parts, body) = response.into_parts();
    let bytes = match body {
        HttpBody::Empty => Bytes::new(),
        HttpBody::Text(text) => Bytes::from(text),
        HttpBody::Binary(binary) => Bytes::from(binary),
        _ => Bytes::new(),
    };
    hyper::Response::from_parts(parts, Full::new(bytes))
}
