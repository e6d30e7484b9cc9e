//! Lambda entry point: the mailer, triggered by the table's stream.

use std::sync::Arc;

use auth::settings::Mode;
use auth::App;
use lambda_http::lambda_runtime::{self, service_fn, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    auth::wiring::telemetry::init(Mode::Lambda);
    let app = match App::from_env(Mode::Lambda).await {
        Ok(app) => Arc::new(app),
        Err(err) => {
            tracing::error!(error = %err, function = "mailer", "start-up failed");
            return Err(err.into());
        }
    };
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<mailer::StreamEvent>| {
            let app = app.clone();
            async move {
                Ok::<_, lambda_runtime::Error>(mailer::handle(&app.service, event.payload).await)
            }
        },
    ))
    .await
}
