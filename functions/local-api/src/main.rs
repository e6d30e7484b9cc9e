//! `cargo run --release -p local-api`: the whole API on 127.0.0.1:$PORT (default 3000), with the
//! embedded store and the mail outbox in $DATA_DIR (default .local/) unless configured otherwise.

use std::sync::Arc;

use auth::http::routes::ROUTES;
use auth::settings::{Mode, StorageConfig};
use auth::App;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    auth::wiring::telemetry::init(Mode::Local);
    let app = Arc::new(App::from_env(Mode::Local).await?);
    let port: u16 = std::env::var("PORT")
        .ok()
        .map(|p| p.parse())
        .transpose()?
        .unwrap_or(3000);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let settings = &app.service.settings;
    let storage = match &settings.storage {
        StorageConfig::Embedded { path } => format!("embedded store {}", path.display()),
        StorageConfig::DynamoDb { table } => format!("DynamoDB table {table}"),
    };
    tracing::info!(
        "serving {} routes on http://{} ({storage}, mailer {:?})",
        ROUTES.len(),
        listener.local_addr()?,
        settings.mailer
    );
    local_api::serve(listener, app).await?;
    Ok(())
}
