//! Lambda entry point: login's routes of the route table.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    auth::http::lambda::run(auth::http::routes::Function::Login, login::HANDLERS).await
}
