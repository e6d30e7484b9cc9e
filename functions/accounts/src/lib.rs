//! Accounts: create, view, logout of all devices, delete, change password.

use std::sync::Arc;

use auth::http::response::Reply;
use auth::http::routes::Endpoint;
use auth::http::{Call, HandlerFuture, Handlers};
use auth::App;
use serde_json::json;

pub const HANDLERS: Handlers = &[
    (Endpoint::UserCreate, create),
    (Endpoint::UserView, view),
    (Endpoint::UserLogoutAll, logout_all),
    (Endpoint::UserDelete, delete),
    (Endpoint::PasswordChange, change_password),
];

fn create(app: Arc<App>, call: Call) -> HandlerFuture {
    Box::pin(async move {
        let user = app.service.create_user(call.parse()?, call.client).await?;
        Ok(Reply::created(
            json!({ "email": user.email, "id": user.id.0 }),
        ))
    })
}

fn view(_app: Arc<App>, call: Call) -> HandlerFuture {
    Box::pin(async move {
        let user = &call.principal()?.user;
        Ok(Reply::ok(json!({ "id": user.id.0, "email": user.email })))
    })
}

fn logout_all(app: Arc<App>, call: Call) -> HandlerFuture {
    Box::pin(async move {
        app.service.logout_all(call.principal()?).await?;
        Ok(Reply::NoContent)
    })
}

fn delete(app: Arc<App>, call: Call) -> HandlerFuture {
    Box::pin(async move {
        app.service
            .delete_account(call.principal()?, call.parse()?)
            .await?;
        Ok(Reply::NoContent)
    })
}

fn change_password(app: Arc<App>, call: Call) -> HandlerFuture {
    Box::pin(async move {
        app.service
            .change_password(call.principal()?, call.parse()?)
            .await?;
        Ok(Reply::NoContent)
    })
}
