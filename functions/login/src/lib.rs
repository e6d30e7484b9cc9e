//! Login: email and password to a JWT. Ignores any Authorization header (as the original).

use std::sync::Arc;

use auth::http::app::App;
use auth::http::response::Reply;
use auth::http::routes::Endpoint;
use auth::http::{Call, HandlerFuture};
use auth::Error;
use serde_json::json;

pub fn handler(app: Arc<App>, call: Call) -> HandlerFuture {
    Box::pin(async move {
        match call.endpoint {
            Endpoint::Login => login(&app, &call).await,
            _ => Err(Error::NotFound),
        }
    })
}

async fn login(app: &App, call: &Call) -> Result<Reply, Error> {
    let body = call.body()?;
    let mut fields = body.fields();
    let email = fields.email_text("email");
    let password = fields.password("password");
    fields.finish()?;
    let (Some(email), Some(password)) = (email, password) else {
        return Err(Error::Internal("fields passed without values".into()));
    };
    let token = app.login(&email, &password).await?;
    Ok(Reply::ok(json!({ "token": token })))
}
