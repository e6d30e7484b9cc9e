//! Accounts: create, view, logout of all devices, delete, change password.

use std::sync::Arc;

use auth::http::app::App;
use auth::http::response::Reply;
use auth::http::routes::Endpoint;
use auth::http::{Call, HandlerFuture};
use auth::service::accounts::{EMAIL_TAKEN, INVALID_PASSWORD};
use auth::service::Gate;
use auth::Error;
use serde_json::json;

pub fn handler(app: Arc<App>, call: Call) -> HandlerFuture {
    Box::pin(async move {
        match call.endpoint {
            Endpoint::UserCreate => create(&app, &call).await,
            Endpoint::UserView => view(&app, &call).await,
            Endpoint::UserLogoutAll => logout_all(&app, &call).await,
            Endpoint::UserDelete => delete(&app, &call).await,
            Endpoint::PasswordChange => change_password(&app, &call).await,
            _ => Err(Error::NotFound),
        }
    })
}

async fn create(app: &App, call: &Call) -> Result<Reply, Error> {
    app.refuse_invalid_credentials(call).await?;
    let body = call.body()?;
    let mut fields = body.fields();
    let email = fields.email("email");
    let password = fields.password("password");
    // DRF reports a duplicate beside the other field errors.
    if let (Some(email), true) = (&email, fields.has_errors()) {
        if app.email_registered(email).await? {
            fields.add_error("email", EMAIL_TAKEN);
        }
    }
    fields.finish()?;
    let (Some(email), Some(password)) = (email, password) else {
        return Err(Error::Internal("fields passed without values".into()));
    };
    let user = app.create_user(email, password).await?;
    Ok(Reply::created(
        json!({ "email": user.email, "id": user.id.0 }),
    ))
}

async fn view(app: &App, call: &Call) -> Result<Reply, Error> {
    let principal = app.principal(call, Gate::OtpVerified).await?;
    let user = principal.user;
    Ok(Reply::ok(json!({ "id": user.id.0, "email": user.email })))
}

async fn logout_all(app: &App, call: &Call) -> Result<Reply, Error> {
    let principal = app.principal(call, Gate::OtpVerified).await?;
    app.logout_all(&principal).await?;
    Ok(Reply::NoContent)
}

async fn delete(app: &App, call: &Call) -> Result<Reply, Error> {
    let principal = app.principal(call, Gate::OtpVerified).await?;
    let body = call.body()?;
    let mut fields = body.fields();
    if let Some(current) = fields.password("current_password") {
        if !app
            .check_current_password(&principal.user, &current)
            .await?
        {
            fields.add_error("current_password", INVALID_PASSWORD);
        }
    }
    fields.finish()?;
    app.delete_account(&principal).await?;
    Ok(Reply::NoContent)
}

async fn change_password(app: &App, call: &Call) -> Result<Reply, Error> {
    let principal = app.principal(call, Gate::OtpVerified).await?;
    let body = call.body()?;
    let mut fields = body.fields();
    let new_password = fields.password("new_password");
    if let Some(current) = fields.password("current_password") {
        if !app
            .check_current_password(&principal.user, &current)
            .await?
        {
            fields.add_error("current_password", INVALID_PASSWORD);
        }
    }
    fields.finish()?;
    let Some(new_password) = new_password else {
        return Err(Error::Internal("fields passed without values".into()));
    };
    app.change_password(&principal.user, &new_password).await?;
    Ok(Reply::NoContent)
}
