//! Password reset: request a mail (queued; the mailer function sends it), confirm with its
//! uid and token.

use std::sync::Arc;

use auth::http::response::Reply;
use auth::http::routes::Endpoint;
use auth::http::{Call, HandlerFuture, Handlers};
use auth::App;

pub const HANDLERS: Handlers = &[
    (Endpoint::PasswordReset, reset),
    (Endpoint::PasswordResetConfirm, confirm),
];

fn reset(app: Arc<App>, call: Call) -> HandlerFuture {
    Box::pin(async move {
        app.service
            .request_password_reset(call.parse()?, &call.origin)
            .await?;
        Ok(Reply::NoContent)
    })
}

fn confirm(app: Arc<App>, call: Call) -> HandlerFuture {
    Box::pin(async move {
        app.service
            .confirm_password_reset(call.parse()?, &call.origin)
            .await?;
        Ok(Reply::NoContent)
    })
}
