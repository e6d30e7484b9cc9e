//! TOTP devices: create (otpauth URL), verify a code for an OTP-verified token, delete.

use std::sync::Arc;

use auth::http::app::App;
use auth::http::response::Reply;
use auth::http::routes::Endpoint;
use auth::http::{Call, HandlerFuture};
use auth::service::Gate;
use auth::Error;
use serde_json::json;

pub fn handler(app: Arc<App>, call: Call) -> HandlerFuture {
    Box::pin(async move {
        match call.endpoint {
            Endpoint::TotpCreate => {
                let principal = app.principal(&call, Gate::Open).await?;
                let url = app.create_totp_device(&principal).await?;
                Ok(Reply::created(json!(url)))
            }
            Endpoint::TotpLogin => {
                let principal = app.principal(&call, Gate::Open).await?;
                let token = app.verify_totp(&principal, call.param()).await?;
                Ok(Reply::created(json!({ "token": token })))
            }
            Endpoint::TotpDelete => {
                let principal = app.principal(&call, Gate::OtpVerified).await?;
                let token = app.delete_totp_device(&principal).await?;
                Ok(Reply::ok(json!({ "token": token })))
            }
            _ => Err(Error::NotFound),
        }
    })
}
