//! Emergency (static, one-time) codes: create six, log in with one.

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
            Endpoint::StaticCreate => {
                let principal = app.principal(&call, Gate::OtpVerified).await?;
                let codes = app.create_emergency_codes(&principal).await?;
                Ok(Reply::created(json!(codes)))
            }
            Endpoint::StaticLogin => {
                let principal = app.principal(&call, Gate::Open).await?;
                let token = app.use_emergency_code(&principal, call.param()).await?;
                Ok(Reply::created(json!({ "token": token })))
            }
            _ => Err(Error::NotFound),
        }
    })
}
