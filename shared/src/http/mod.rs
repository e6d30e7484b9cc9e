//! The HTTP edge, shared by every Lambda function and the local server: route, bound the body,
//! authenticate, call the function's handler, map the result (or error) to a response.

pub mod app;
pub mod lambda;
pub mod response;
pub mod routes;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use lambda_http::http::{HeaderMap, Method, Request, Response};
use tracing::Instrument;

use crate::error::AuthFailure;
use crate::fields::Body;
use crate::service::{Gate, Principal};
use crate::Error;
use app::App;
use response::Reply;
use routes::{Endpoint, Function};

pub type HttpBody = lambda_http::Body;
pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<Reply, Error>> + Send>>;
/// What a function crate exports: its endpoints, parsed and answered.
pub type Handler = fn(Arc<App>, Call) -> HandlerFuture;

/// A routed request, as a function's handler sees it.
pub struct Call {
    pub endpoint: Endpoint,
    param: Option<String>,
    method: Method,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Call {
    /// The path parameter (already checked against the route's shape).
    pub fn param(&self) -> &str {
        self.param.as_deref().unwrap_or_default()
    }

    pub fn method(&self) -> &Method {
        &self.method
    }

    /// Parses the body (lazily, as DRF: only endpoints that read it can fail on it).
    pub fn body(&self) -> Result<Body, Error> {
        let content_type = self
            .headers
            .get("content-type")
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        Body::parse(content_type.as_deref(), &self.body)
    }

    /// The token of an `Authorization: JWT <token>` (or `Bearer`) header. `None` when there is
    /// no such header, or it names another scheme (as drf-jwt).
    pub fn credentials(&self) -> Result<Option<String>, Error> {
        let Some(value) = self.headers.get("authorization") else {
            return Ok(None);
        };
        let value = String::from_utf8_lossy(value.as_bytes());
        let mut words = value.split_ascii_whitespace();
        let Some(scheme) = words.next() else {
            return Ok(None);
        };
        if !scheme.eq_ignore_ascii_case("jwt") && !scheme.eq_ignore_ascii_case("bearer") {
            return Ok(None);
        }
        let token = words
            .next()
            .ok_or(Error::Unauthenticated(AuthFailure::NoCredentials))?;
        if words.next().is_some() {
            return Err(Error::Unauthenticated(
                AuthFailure::CredentialsContainSpaces,
            ));
        }
        Ok(Some(token.to_owned()))
    }
}

impl App {
    /// The authenticated user of a protected endpoint.
    pub async fn principal(&self, call: &Call, gate: Gate) -> Result<Principal, Error> {
        let token = call
            .credentials()?
            .ok_or(Error::Unauthenticated(AuthFailure::NotProvided))?;
        self.authenticate(&token, gate).await
    }

    /// Public endpoints refuse an invalid Authorization header all the same (as the original).
    pub async fn refuse_invalid_credentials(&self, call: &Call) -> Result<(), Error> {
        match call.credentials()? {
            Some(token) => self.authenticate(&token, Gate::Open).await.map(|_| ()),
            None => Ok(()),
        }
    }
}

/// Serves one request. `handler_for` answers the handler of a function this process serves
/// (a Lambda function serves one; the local server all).
pub async fn dispatch(
    app: &Arc<App>,
    request: Request<HttpBody>,
    request_id: &str,
    handler_for: &(dyn Fn(Function) -> Option<Handler> + Sync),
) -> Response<HttpBody> {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let origin = parts
        .headers
        .get("origin")
        .and_then(|o| o.to_str().ok())
        .map(str::to_owned);
    let matched = routes::resolve(parts.method.as_str(), parts.uri.path());
    // Logs name the template, never the raw path: codes travel in paths.
    let template =
        routes::route_for_path(parts.uri.path()).map_or("(unrouted)", |(r, _)| r.template);
    let span = tracing::info_span!("request", request_id, method = %parts.method, route = template);
    let outcome = async {
        let matched = matched?;
        let handler = handler_for(matched.route.function).ok_or(Error::NotFound)?;
        if parts.method == Method::OPTIONS {
            return Ok(Reply::Options {
                allow: matched.route.allow_header(),
            });
        }
        let limit = app.settings.max_body_bytes;
        if body.len() > limit {
            return Err(Error::PayloadTooLarge { limit });
        }
        let call = Call {
            endpoint: matched.route.endpoint,
            param: matched.param,
            method: parts.method.clone(),
            headers: parts.headers,
            body: body.to_vec(),
        };
        handler(app.clone(), call).await
    }
    .instrument(span.clone())
    .await;
    let response = response::render(outcome, &app.settings, origin.as_deref());
    span.in_scope(|| {
        tracing::info!(
            status = response.status().as_u16(),
            elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
            "answered"
        )
    });
    response
}
