//! Login: email and password to a JWT. The route's policy ignores any Authorization header
//! (as the original).

use std::sync::Arc;

use auth::http::response::Reply;
use auth::http::routes::Endpoint;
use auth::http::{Call, HandlerFuture, Handlers};
use auth::App;
use serde_json::json;

pub const HANDLERS: Handlers = &[(Endpoint::Login, login)];

fn login(app: Arc<App>, call: Call) -> HandlerFuture {
    Box::pin(async move {
        let token = app.service.login(call.parse()?, &call.origin).await?;
        Ok(Reply::ok(json!({ "token": token })))
    })
}
