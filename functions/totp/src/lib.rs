//! TOTP devices: create (otpauth URL), verify a code for an OTP-verified token, delete, and
//! recover a lost one (request a link, start the wait).

use std::sync::Arc;

use auth::http::response::Reply;
use auth::http::routes::Endpoint;
use auth::http::{Call, HandlerFuture, Handlers};
use auth::App;
use serde_json::json;

pub const HANDLERS: Handlers = &[
    (Endpoint::TotpCreate, create),
    (Endpoint::TotpLogin, login),
    (Endpoint::TotpDelete, delete),
    (Endpoint::TotpRecoveryRequest, request_recovery),
    (Endpoint::TotpRecovery, start_recovery),
];

fn create(app: Arc<App>, call: Call) -> HandlerFuture {
    Box::pin(async move {
        let url = app.service.create_totp_device(call.principal()?).await?;
        Ok(Reply::created(json!(url)))
    })
}

fn login(app: Arc<App>, call: Call) -> HandlerFuture {
    Box::pin(async move {
        let tokens = app
            .service
            .verify_totp(call.principal()?, call.param(), &call.origin)
            .await?;
        Ok(Reply::created(tokens.to_json()))
    })
}

fn request_recovery(app: Arc<App>, call: Call) -> HandlerFuture {
    Box::pin(async move {
        app.service
            .request_recovery(&call.principal()?.user, &call.origin)
            .await?;
        Ok(Reply::NoContent)
    })
}

fn start_recovery(app: Arc<App>, call: Call) -> HandlerFuture {
    Box::pin(async move {
        app.service
            .start_recovery(call.parse()?, &call.origin)
            .await?;
        Ok(Reply::NoContent)
    })
}

fn delete(app: Arc<App>, call: Call) -> HandlerFuture {
    Box::pin(async move {
        let tokens = app
            .service
            .delete_totp_device(call.principal()?, &call.origin)
            .await?;
        Ok(Reply::ok(tokens.to_json()))
    })
}
