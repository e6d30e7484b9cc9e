//! Login: email and password to a JWT. The route's policy ignores any Authorization header
//! (as the original).

use std::sync::Arc;

use auth::http::response::Reply;
use auth::http::routes::Endpoint;
use auth::http::{Call, HandlerFuture, Handlers};
use auth::App;

pub const HANDLERS: Handlers = &[(Endpoint::Login, login), (Endpoint::LoginRefresh, refresh)];

fn login(app: Arc<App>, call: Call) -> HandlerFuture {
    Box::pin(async move {
        let tokens = app.service.login(call.parse()?, &call.origin).await?;
        Ok(Reply::ok(tokens.to_json()))
    })
}

/// Refresh: like login, the Authorization header is not looked at (clients refresh when their
/// access token has expired).
fn refresh(app: Arc<App>, call: Call) -> HandlerFuture {
    Box::pin(async move {
        let tokens = app.service.refresh(call.parse()?, &call.origin).await?;
        Ok(Reply::ok(tokens.to_json()))
    })
}
