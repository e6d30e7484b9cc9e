//! Lambda entry point: static-codes's routes of the route table.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    auth::http::lambda::run(
        auth::http::routes::Function::StaticCodes,
        static_codes::HANDLERS,
    )
    .await
}
