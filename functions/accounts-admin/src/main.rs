//! `accounts-admin`: the operator CLI (SPEC §12, README "Operating"). Configured like the local
//! server: `TABLE_NAME` selects DynamoDB, otherwise the embedded store in `DATA_DIR`.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = accounts_admin::Cli::parse();
    let app = match accounts_admin::app_from_env().await {
        Ok(app) => app,
        Err(err) => {
            eprintln!("accounts-admin: {err}");
            return ExitCode::from(2);
        }
    };
    let mut out = std::io::stdout();
    match accounts_admin::run(&app, cli, &mut out).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("accounts-admin: {err}");
            ExitCode::FAILURE
        }
    }
}
