//! Replies and the one place where an [`Error`] becomes an HTTP response.

use lambda_http::http::{Response, StatusCode};
use serde_json::{json, Value};

use super::HttpBody;
use crate::settings::Settings;
use crate::Error;

/// What a handler answers on success.
#[derive(Debug)]
pub enum Reply {
    Json(StatusCode, Value),
    NoContent,
    /// An OPTIONS request (CORS preflight).
    Options {
        allow: String,
    },
}

impl Reply {
    pub fn ok(value: Value) -> Self {
        Self::Json(StatusCode::OK, value)
    }

    pub fn created(value: Value) -> Self {
        Self::Json(StatusCode::CREATED, value)
    }
}

pub const REAUTH_REQUIRED: &str = "Log in again to change two-factor settings.";
pub const OTP_REQUIRED: &str =
    "You do not have permission to perform this action until you verify your OTP device.";

struct Rendered {
    status: StatusCode,
    body: Option<Value>,
    headers: Vec<(&'static str, String)>,
}

fn detail(status: StatusCode, message: impl Into<String>) -> Rendered {
    Rendered {
        status,
        body: Some(json!({ "detail": message.into() })),
        headers: Vec::new(),
    }
}

fn error_response(err: Error) -> Rendered {
    match err {
        Error::Fields(errors) => Rendered {
            status: StatusCode::BAD_REQUEST,
            body: Some(serde_json::to_value(errors).expect("field errors serialise")),
            headers: Vec::new(),
        },
        Error::BadRequest(message) => detail(StatusCode::BAD_REQUEST, message),
        Error::CodeRefused => Rendered {
            status: StatusCode::BAD_REQUEST,
            body: None,
            headers: Vec::new(),
        },
        Error::MalformedJson(reason) => detail(
            StatusCode::BAD_REQUEST,
            format!("JSON parse error - {reason}"),
        ),
        Error::Unauthenticated(failure) => {
            let mut r = detail(StatusCode::UNAUTHORIZED, failure.message());
            r.headers
                .push(("www-authenticate", "JWT realm=\"api\"".to_owned()));
            r
        }
        Error::OtpRequired => detail(StatusCode::FORBIDDEN, OTP_REQUIRED),
        Error::ReauthRequired => detail(StatusCode::FORBIDDEN, REAUTH_REQUIRED),
        Error::StaleToken => detail(StatusCode::FORBIDDEN, "Stale token for given user."),
        Error::NotFound => detail(StatusCode::NOT_FOUND, "Not found."),
        Error::MethodNotAllowed { method, allow } => {
            let mut r = detail(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("Method \"{method}\" not allowed."),
            );
            r.headers.push(("allow", allow));
            r
        }
        Error::Conflict(message) => detail(StatusCode::CONFLICT, message),
        Error::PayloadTooLarge { limit } => detail(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Request body is larger than the limit of {limit} bytes."),
        ),
        Error::UnsupportedMediaType(media_type) => detail(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Unsupported media type \"{media_type}\" in request."),
        ),
        Error::Throttled { wait_seconds } => {
            let wait = wait_seconds.max(1);
            let unit = if wait == 1 { "second" } else { "seconds" };
            let mut r = detail(
                StatusCode::TOO_MANY_REQUESTS,
                format!("Request was throttled. Expected available in {wait} {unit}."),
            );
            r.headers.push(("retry-after", wait.to_string()));
            r
        }
        Error::Unavailable(why) => {
            tracing::error!(error = %why, "dependency unavailable");
            let mut r = detail(
                StatusCode::SERVICE_UNAVAILABLE,
                "The service is temporarily unavailable. Try again later.",
            );
            // The SDK's own retries are spent by now: a client may try again shortly.
            r.headers.push(("retry-after", "1".to_owned()));
            r
        }
        Error::Internal(why) => {
            tracing::error!(error = %why, "internal error");
            detail(
                StatusCode::INTERNAL_SERVER_ERROR,
                "A server error occurred.",
            )
        }
    }
}

/// Renders an outcome with the headers every response carries (SPEC §1).
pub fn render(
    outcome: Result<Reply, Error>,
    settings: &Settings,
    origin: Option<&str>,
) -> Response<HttpBody> {
    let mut preflight = false;
    let rendered = match outcome {
        Ok(Reply::Json(status, body)) => Rendered {
            status,
            body: Some(body),
            headers: Vec::new(),
        },
        Ok(Reply::NoContent) => Rendered {
            status: StatusCode::NO_CONTENT,
            body: None,
            headers: Vec::new(),
        },
        Ok(Reply::Options { allow }) => {
            preflight = true;
            Rendered {
                status: StatusCode::NO_CONTENT,
                body: None,
                headers: vec![("allow", allow)],
            }
        }
        Err(err) => error_response(err),
    };
    let mut builder = Response::builder()
        .status(rendered.status)
        .header("cache-control", "no-store")
        .header("x-content-type-options", "nosniff")
        .header("strict-transport-security", "max-age=63072000");
    for (name, value) in rendered.headers {
        builder = builder.header(name, value);
    }
    if let Some(origin) = origin.filter(|o| settings.cors_allowed_origins.iter().any(|a| a == o)) {
        builder = builder
            .header("access-control-allow-origin", origin)
            .header("vary", "Origin");
        if preflight {
            builder = builder
                .header("access-control-allow-methods", "GET, POST, DELETE, OPTIONS")
                .header(
                    "access-control-allow-headers",
                    "authorization, content-type",
                )
                .header("access-control-max-age", "600");
        }
    }
    let body = match rendered.body {
        Some(value) => {
            builder = builder.header("content-type", "application/json");
            HttpBody::Text(value.to_string())
        }
        None => HttpBody::Empty,
    };
    builder.body(body).expect("static headers are valid")
}
