//! Emergency (static, one-time) codes: create six, log in with one.

use std::sync::Arc;

use auth::http::response::Reply;
use auth::http::routes::Endpoint;
use auth::http::{Call, HandlerFuture, Handlers};
use auth::App;
use serde_json::json;

pub const HANDLERS: Handlers = &[
    (Endpoint::StaticCreate, create),
    (Endpoint::StaticLogin, login),
];

fn create(app: Arc<App>, call: Call) -> HandlerFuture {
    Box::pin(async move {
        let codes = app
            .service
            .create_emergency_codes(call.principal()?, &call.origin)
            .await?;
        Ok(Reply::created(json!(codes)))
    })
}

fn login(app: Arc<App>, call: Call) -> HandlerFuture {
    Box::pin(async move {
        let tokens = app
            .service
            .use_emergency_code(call.principal()?, call.param(), &call.origin)
            .await?;
        Ok(Reply::created(tokens.to_json()))
    })
}
