//! The HTTP edge, shared by every Lambda function and the local server: route, bound the body,
//! authenticate, call the function's handler, map the result (or error) to a response.

pub mod client_ip;
pub mod fields;
pub mod lambda;
pub mod requests;
pub mod response;
pub mod routes;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use lambda_http::http::{HeaderMap, Method, Request, Response};
use tracing::Instrument;

use crate::domain::events::Origin;
use crate::error::AuthFailure;
use crate::service::requests::Parsed;
use crate::service::{Gate, Principal, Service};
use crate::wiring::app::App;
use crate::Error;
use fields::Body;
use response::Reply;
use routes::{Endpoint, Policy};

pub type HttpBody = lambda_http::Body;
pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<Reply, Error>> + Send>>;
/// One endpoint's handler: parse the call, ask the service, shape the reply.
pub type Handler = fn(Arc<App>, Call) -> HandlerFuture;
/// What a function crate exports: a handler for each endpoint it serves.
pub type Handlers = &'static [(Endpoint, Handler)];

/// A routed and authenticated request, as a function's handler sees it.
pub struct Call {
    pub endpoint: Endpoint,
    /// Who sent it (the client IP as the abuse limits count it, user agent, request id).
    pub origin: Origin,
    param: Option<String>,
    query: Option<String>,
    headers: HeaderMap,
    body: Vec<u8>,
    principal: Option<Principal>,
}

impl Call {
    /// The path parameter (already checked against the route's shape).
    pub fn param(&self) -> &str {
        self.param.as_deref().unwrap_or_default()
    }

    /// Parses the body (lazily, as DRF: only endpoints that read it can fail on it).
    pub fn body(&self) -> Result<Body, Error> {
        let content_type = self
            .headers
            .get("content-type")
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        Body::parse(content_type.as_deref(), &self.body)
    }

    /// The query string's parameters (`?a=1&b=2`), decoded.
    pub fn query(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(self.query.as_deref().unwrap_or("").as_bytes())
            .into_owned()
            .collect()
    }

    /// The body as an endpoint's typed request.
    pub fn parse<T: requests::FromBody>(&self) -> Result<Parsed<T, T::Partial>, Error> {
        Ok(T::from_body(&self.body()?))
    }

    /// The authenticated user. Present on every route whose policy needs a token: dispatch
    /// refused the request otherwise.
    pub fn principal(&self) -> Result<&Principal, Error> {
        self.principal.as_ref().ok_or_else(|| {
            Error::Internal("handler of a route without a token asked for one".into())
        })
    }
}

/// The token of an `Authorization: JWT <token>` (or `Bearer`) header. `None` when there is no
/// such header, or it names another scheme (as drf-jwt).
fn credentials(headers: &HeaderMap) -> Result<Option<String>, Error> {
    let Some(value) = headers.get("authorization") else {
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

/// Enforces a route's policy: the principal for routes that need a token, 401 or 403 otherwise.
async fn authorize(
    service: &Service,
    policy: Policy,
    headers: &HeaderMap,
    origin: &Origin,
) -> Result<Option<Principal>, Error> {
    let gate = match policy {
        Policy::Anonymous => return Ok(None),
        Policy::Public => {
            // Public endpoints refuse an invalid Authorization header all the same.
            if let Some(token) = credentials(headers)? {
                service.authenticate(&token, Gate::Open, origin).await?;
            }
            return Ok(None);
        }
        Policy::Token | Policy::RecentPassword => Gate::Open,
        Policy::OtpVerified | Policy::OtpVerifiedRecentPassword => Gate::OtpVerified,
    };
    let token = credentials(headers)?.ok_or(Error::Unauthenticated(AuthFailure::NotProvided))?;
    let principal = service.authenticate(&token, gate, origin).await?;
    // Checked after the OTP gate: 401, then 403 (gate), then 403 (re-authentication).
    let recent_needed = matches!(
        policy,
        Policy::RecentPassword | Policy::OtpVerifiedRecentPassword
    );
    if recent_needed && !service.password_is_recent(&principal) {
        return Err(Error::ReauthRequired);
    }
    Ok(Some(principal))
}

/// Serves one request with the handlers this process has (a Lambda function its own; the local
/// server all): route, bound the body, enforce the route's policy, run the handler, render.
pub async fn dispatch(
    app: &Arc<App>,
    request: Request<HttpBody>,
    request_id: &str,
    handlers: &[(Endpoint, Handler)],
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
    let template = match &matched {
        Ok(matched) => matched.route.template,
        Err(_) => {
            routes::route_for_path(parts.uri.path()).map_or("(unrouted)", |(r, _)| r.template)
        }
    };
    let span = tracing::info_span!("request", request_id, method = %parts.method, route = template);
    let outcome = async {
        let matched = matched?;
        // A route of another function: never reached behind the deployed routes.
        let handler = handlers
            .iter()
            .find(|(endpoint, _)| *endpoint == matched.route.endpoint)
            .map(|(_, handler)| *handler)
            .ok_or(Error::NotFound)?;
        if parts.method == Method::OPTIONS {
            return Ok(Reply::Options {
                allow: matched.route.allow_header(),
            });
        }
        let limit = app.service.settings.max_body_bytes;
        if body.len() > limit {
            return Err(Error::PayloadTooLarge { limit });
        }
        let client = client_ip::resolve(
            parts.extensions.get::<client_ip::Peer>().copied(),
            &parts.headers,
            &app.service.settings.trusted_proxies,
        );
        let user_agent = parts
            .headers
            .get("user-agent")
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default();
        let origin = Origin::new(client, &user_agent, request_id);
        let principal =
            authorize(&app.service, matched.route.policy, &parts.headers, &origin).await?;
        let call = Call {
            endpoint: matched.route.endpoint,
            origin,
            param: matched.param,
            query: parts.uri.query().map(str::to_owned),
            headers: parts.headers,
            body: body.to_vec(),
            principal,
        };
        handler(app.clone(), call).await
    }
    .instrument(span.clone())
    .await;
    let response = response::render(outcome, &app.service.settings, origin.as_deref());
    span.in_scope(|| {
        tracing::info!(
            status = response.status().as_u16(),
            elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
            "answered"
        )
    });
    response
}
