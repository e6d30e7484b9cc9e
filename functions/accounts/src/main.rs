//! Lambda entry point: accounts's routes of the route table.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    auth::http::lambda::run(auth::http::routes::Function::Accounts, accounts::HANDLERS).await
}
