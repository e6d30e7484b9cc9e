//! The Lambda entry point every function binary calls: init once, then serve events.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use lambda_http::http::Response;
use lambda_http::request::RequestContext;
use lambda_http::{service_fn, Request, RequestExt, Service};

use super::client_ip::Peer;
use super::routes::Function;
use super::{dispatch, Handlers, HttpBody};
use crate::settings::Mode;
use crate::wiring::app::App;
use crate::wiring::telemetry;

/// Builds the app (clients, keys, warmed connections) at init, then serves `function`'s routes.
/// A configuration error stops the function at init rather than answering requests.
pub async fn run(function: Function, handlers: Handlers) -> Result<(), lambda_http::Error> {
    telemetry::init(Mode::Lambda);
    let app = match App::from_env(Mode::Lambda).await {
        Ok(app) => Arc::new(app),
        Err(err) => {
            tracing::error!(error = %err, function = function.crate_name(), "start-up failed");
            return Err(err.into());
        }
    };
    lambda_http::run(service(app, handlers)).await
}

/// A response as `dispatch` made it, handed to `lambda_http` unchanged. Its own `IntoResponse`
/// for a `Response<B>` collects the body again and re-decodes it by the charset of its
/// `Content-Type` (`encoding_rs`, 150 KB of tables in every binary); these bodies are already
/// text or empty.
pub struct Answer(pub Response<HttpBody>);

impl lambda_http::IntoResponse for Answer {
    fn into_response(self) -> Pin<Box<dyn Future<Output = Response<HttpBody>> + Send>> {
        Box::pin(std::future::ready(self.0))
    }
}

/// The request service `run` hands to `lambda_http`: also what the `events/` tests drive through
/// `lambda_http::Adapter`, so they exercise exactly what a deployed function runs.
pub fn service(
    app: Arc<App>,
    handlers: Handlers,
) -> impl Service<
    Request,
    Response = Answer,
    Error = Infallible,
    Future = impl Future<Output = Result<Answer, Infallible>> + Send,
> + Clone {
    service_fn(move |mut request: Request| {
        let app = app.clone();
        // API Gateway's `sourceIp` is the client as the abuse limits count it.
        if let Some(RequestContext::ApiGatewayV2(context)) = request.request_context_ref() {
            if let Some(ip) = context
                .http
                .source_ip
                .as_deref()
                .and_then(|ip| ip.parse().ok())
            {
                request.extensions_mut().insert(Peer(ip));
            }
        }
        async move {
            let request_id = request
                .lambda_context_ref()
                .map(|c| c.request_id.clone())
                .unwrap_or_default();
            Ok::<_, Infallible>(Answer(dispatch(&app, request, &request_id, handlers).await))
        }
    })
}
