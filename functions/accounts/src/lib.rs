//! Accounts: create, view, the security log, logout of all devices, delete, change password.

use std::sync::Arc;

use auth::http::requests::trail_page;
use auth::http::response::Reply;
use auth::http::routes::Endpoint;
use auth::http::{Call, HandlerFuture, Handlers};
use auth::{App, Error};
use serde_json::json;

pub const HANDLERS: Handlers = &[
    (Endpoint::UserCreate, create),
    (Endpoint::UserView, view),
    (Endpoint::UserEvents, events),
    (Endpoint::UserLogoutAll, logout_all),
    (Endpoint::UserDelete, delete),
    (Endpoint::PasswordChange, change_password),
    (Endpoint::UserActivation, activate),
    (Endpoint::SessionList, sessions),
    (Endpoint::SessionEnd, end_session),
    (Endpoint::UserResendActivation, resend_activation),
];

fn create(app: Arc<App>, call: Call) -> HandlerFuture {
    Box::pin(async move {
        let user = app.service.create_user(call.parse()?, &call.origin).await?;
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

fn sessions(app: Arc<App>, call: Call) -> HandlerFuture {
    Box::pin(async move {
        let list = app.service.list_sessions(call.principal()?).await?;
        Ok(Reply::ok(list))
    })
}

fn end_session(app: Arc<App>, call: Call) -> HandlerFuture {
    Box::pin(async move {
        app.service
            .end_one_session(call.principal()?, call.param(), &call.origin)
            .await?;
        Ok(Reply::NoContent)
    })
}

fn activate(app: Arc<App>, call: Call) -> HandlerFuture {
    Box::pin(async move {
        app.service.activate(call.parse()?, &call.origin).await?;
        Ok(Reply::NoContent)
    })
}

fn resend_activation(app: Arc<App>, call: Call) -> HandlerFuture {
    Box::pin(async move {
        app.service
            .resend_activation(call.parse()?, &call.origin)
            .await?;
        Ok(Reply::NoContent)
    })
}

fn events(app: Arc<App>, call: Call) -> HandlerFuture {
    Box::pin(async move {
        let page = trail_page(&call.query()).map_err(Error::Fields)?;
        let log = app
            .service
            .security_log(&call.principal()?.user, &page)
            .await?;
        Ok(Reply::ok(log))
    })
}

fn logout_all(app: Arc<App>, call: Call) -> HandlerFuture {
    Box::pin(async move {
        app.service
            .logout_all(call.principal()?, &call.origin)
            .await?;
        Ok(Reply::NoContent)
    })
}

fn delete(app: Arc<App>, call: Call) -> HandlerFuture {
    Box::pin(async move {
        app.service
            .delete_account(call.principal()?, call.parse()?, &call.origin)
            .await?;
        Ok(Reply::NoContent)
    })
}

fn change_password(app: Arc<App>, call: Call) -> HandlerFuture {
    Box::pin(async move {
        app.service
            .change_password(call.principal()?, call.parse()?, &call.origin)
            .await?;
        Ok(Reply::NoContent)
    })
}
