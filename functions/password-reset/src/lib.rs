//! Password reset: request a mail, confirm with its uid and token. The only function that
//! sends mail.

use std::sync::Arc;

use auth::http::app::App;
use auth::http::response::Reply;
use auth::http::routes::Endpoint;
use auth::http::{Call, HandlerFuture};
use auth::Error;

pub fn handler(app: Arc<App>, call: Call) -> HandlerFuture {
    Box::pin(async move {
        match call.endpoint {
            Endpoint::PasswordReset => reset(&app, &call).await,
            Endpoint::PasswordResetConfirm => confirm(&app, &call).await,
            _ => Err(Error::NotFound),
        }
    })
}

async fn reset(app: &App, call: &Call) -> Result<Reply, Error> {
    app.refuse_invalid_credentials(call).await?;
    let body = call.body()?;
    let mut fields = body.fields();
    let email = fields.email("email");
    fields.finish()?;
    let Some(email) = email else {
        return Err(Error::Internal("fields passed without values".into()));
    };
    app.request_password_reset(&email).await?;
    Ok(Reply::NoContent)
}

async fn confirm(app: &App, call: &Call) -> Result<Reply, Error> {
    app.refuse_invalid_credentials(call).await?;
    let body = call.body()?;
    let mut fields = body.fields();
    let uid = fields.string("uid");
    let token = fields.string("token");
    let new_password = fields.password("new_password");
    app.confirm_password_reset(
        uid.as_deref(),
        token.as_deref(),
        new_password.as_ref(),
        fields.into_errors(),
    )
    .await?;
    Ok(Reply::NoContent)
}
