//! The operator CLI (SPEC §12) as a library: [`run`] executes one parsed command against an
//! [`App`] (the same service, store port and domain the API runs), writing its report to `out`.
//! Tests drive it in-process over the black-box harness's app; `main.rs` builds the app from
//! the environment exactly as the local server does.

pub mod django;

use std::io::Write;
use std::path::PathBuf;

use auth::domain::records::User;
use auth::settings::{Mode, StorageConfig};
use auth::App;
use clap::{Parser, Subcommand};

pub type AdminError = Box<dyn std::error::Error + Send + Sync>;
pub type AdminResult<T> = Result<T, AdminError>;

/// Operator commands for the account service. Configured like the local server: `TABLE_NAME`
/// selects DynamoDB (with the standard AWS environment), otherwise the embedded store in
/// `DATA_DIR` (default `.local`). Keys come from the same variables as the functions.
#[derive(Debug, Parser)]
#[command(name = "accounts-admin", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Imports a Django `manage.py dumpdata accounts otp_totp otp_static` JSON file.
    ///
    /// Users keep their ids, password hashes (pbkdf2_sha256, rehashed at the next login) and
    /// last login; inactive users become disabled. TOTP devices keep their secret (sealed under
    /// the current TOTP_ENCRYPTION_KEY), confirmation, last used step and drift; unused
    /// emergency codes are stored keyed-hashed. Idempotent: users whose id already exists are
    /// skipped. The file is read twice (two-factor records first), streaming. Never prints a
    /// secret.
    ImportDjango {
        /// The dumpdata JSON file.
        file: PathBuf,
        /// Read and check everything, write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Users per store write (DynamoDB writes them in transactions of up to 50).
        #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        batch: u32,
    },
    /// Looks up, disables, enables, logs out, removes two-factor from, or deletes one user.
    #[command(subcommand)]
    User(UserCommand),
    /// Counts users, disabled users, two-factor users and legacy hashes (one scan of the users).
    Stats {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Re-encrypts every TOTP secret under the current TOTP_ENCRYPTION_KEY.
    ///
    /// Secrets sealed under an older key must still open: keep that key in
    /// TOTP_ENCRYPTION_PREVIOUS_KEYS until this reports nothing left to re-encrypt, then drop it.
    /// Each write is conditional on the ciphertext read (a device changed meanwhile is left
    /// alone and counted as raced: run again). Idempotent.
    RotateKeys {
        /// Count what would be re-encrypted, write nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Shows a user (id, address, state, two-factor, dates); never a hash or a secret.
    Show {
        /// User id or email address (case-insensitive).
        user: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Disables an account: login answers "User account is disabled." (only to someone with the
    /// password) and every token is refused. Also ends every session. A reset never lifts it.
    Disable {
        /// User id or email address.
        user: String,
    },
    /// Lifts `disable`. Tokens from before stay dead.
    Enable {
        /// User id or email address.
        user: String,
    },
    /// Ends every session of the user. Until sessions (SPEC §11) exist, this rotates the user's
    /// token generation: every token of the user stops working at once.
    EndSessions {
        /// User id or email address.
        user: String,
    },
    /// Removes the user's TOTP device and emergency codes (after a support check), ends every
    /// session, and mails the user a notice (sent directly until the mail queue exists).
    RemoveTwoFactor {
        /// User id or email address.
        user: String,
    },
    /// Deletes the user, its two-factor devices and its address claim. Needs --yes.
    Delete {
        /// User id or email address.
        user: String,
        /// Confirm the deletion.
        #[arg(long)]
        yes: bool,
    },
}

/// The app, configured exactly like the local server (README "Configuration"). Against
/// DynamoDB the keys must be given (a locally generated key would not match the functions').
pub async fn app_from_env() -> AdminResult<App> {
    let keys_given = std::env::var_os("SECRET_KEY").is_some()
        && std::env::var_os("TOTP_ENCRYPTION_KEY").is_some();
    let keys_secret = std::env::var_os("KEYS_SECRET_ARN").is_some();
    if std::env::var_os("TABLE_NAME").is_some() && !keys_given && !keys_secret {
        return Err(
            "with TABLE_NAME set, SECRET_KEY and TOTP_ENCRYPTION_KEY (or \
                    KEYS_SECRET_ARN) must be the functions' keys"
                .into(),
        );
    }
    Ok(App::from_env(Mode::Local).await?)
}

/// Runs one command. Errors are for the operator (no secret in them).
pub async fn run(app: &App, cli: Cli, out: &mut (dyn Write + Send)) -> AdminResult<()> {
    let service = &app.service;
    match cli.command {
        Command::ImportDjango {
            file,
            dry_run,
            batch,
        } => {
            let options = django::Options {
                dry_run,
                batch: batch as usize,
                progress: true,
            };
            let report = django::import(service, &file, options).await?;
            report.write(out)?;
            if report.failed() {
                return Err("import stopped early".into());
            }
        }
        Command::Stats { json } => {
            let stats = service.stats().await?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&stats)?)?;
            } else {
                writeln!(out, "store: {}", describe_store(app))?;
                writeln!(out, "users: {}", stats.users)?;
                writeln!(out, "disabled: {}", stats.disabled)?;
                writeln!(out, "two-factor (confirmed TOTP): {}", stats.two_factor)?;
                writeln!(out, "unconfirmed TOTP devices: {}", stats.unconfirmed_totp)?;
                writeln!(out, "with emergency codes: {}", stats.with_emergency_codes)?;
                writeln!(
                    out,
                    "legacy pbkdf2 hashes (rehashed at next login): {}",
                    stats.legacy_password_hashes
                )?;
                writeln!(out, "never logged in: {}", stats.never_logged_in)?;
                writeln!(out, "highest id: {}", stats.highest_id)?;
            }
        }
        Command::RotateKeys { dry_run } => {
            let rotation = service.rotate_totp_keys(dry_run).await?;
            let verb = if dry_run {
                "would re-encrypt"
            } else {
                "re-encrypted"
            };
            writeln!(
                out,
                "TOTP devices: {}; already under the current key (v{}): {}; {verb}: {}; changed meanwhile (run again): {}; cannot be opened with the configured keys: {}",
                rotation.devices,
                service.keys.totp.current_version(),
                rotation.already_current,
                rotation.resealed,
                rotation.raced,
                rotation.unopenable.len()
            )?;
            for id in &rotation.unopenable {
                writeln!(out, "  cannot open: user {id}")?;
            }
            if !rotation.unopenable.is_empty() || rotation.raced > 0 {
                return Err("some TOTP secrets are still under an old key".into());
            }
        }
        Command::User(command) => user_command(app, command, out).await?,
    }
    Ok(())
}

fn describe_store(app: &App) -> String {
    match &app.service.settings.storage {
        StorageConfig::Embedded { path } => format!("embedded {}", path.display()),
        StorageConfig::DynamoDb { table } => format!("DynamoDB table {table}"),
    }
}

async fn find(app: &App, who: &str) -> AdminResult<User> {
    app.service
        .find_user(who)
        .await?
        .ok_or_else(|| format!("no user {who:?}").into())
}

fn gone(user: &User) -> AdminError {
    format!("user {} no longer exists", user.id).into()
}

async fn user_command(
    app: &App,
    command: UserCommand,
    out: &mut (dyn Write + Send),
) -> AdminResult<()> {
    let service = &app.service;
    match command {
        UserCommand::Show { user, json } => {
            let user = find(app, &user).await?;
            let shown = Shown::of(&user);
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&shown)?)?;
            } else {
                writeln!(out, "id: {}", shown.id)?;
                writeln!(out, "email: {}", shown.email)?;
                writeln!(out, "disabled: {}", shown.disabled)?;
                writeln!(out, "two-factor: {}", shown.two_factor)?;
                writeln!(out, "emergency codes left: {}", shown.emergency_codes_left)?;
                writeln!(out, "password hash: {}", shown.password_scheme)?;
                writeln!(out, "created: {}", shown.created_at)?;
                writeln!(
                    out,
                    "last login: {}",
                    shown
                        .last_login
                        .map_or("never".to_owned(), |t| t.to_string())
                )?;
            }
        }
        UserCommand::Disable { user } => {
            let user = find(app, &user).await?;
            if !service.disable_user(user.id).await? {
                return Err(gone(&user));
            }
            writeln!(out, "user {} disabled; every session ended", user.id)?;
        }
        UserCommand::Enable { user } => {
            let user = find(app, &user).await?;
            if !service.enable_user(user.id).await? {
                return Err(gone(&user));
            }
            writeln!(out, "user {} enabled", user.id)?;
        }
        UserCommand::EndSessions { user } => {
            let user = find(app, &user).await?;
            if !service.end_sessions(user.id).await? {
                return Err(gone(&user));
            }
            writeln!(out, "user {}: every session ended", user.id)?;
        }
        UserCommand::RemoveTwoFactor { user } => {
            let user = find(app, &user).await?;
            if user.totp.is_none() && user.static_codes.is_none() {
                writeln!(out, "user {} has no two-factor device", user.id)?;
                return Ok(());
            }
            if !service.remove_two_factor_by_operator(&user).await? {
                return Err(gone(&user));
            }
            writeln!(
                out,
                "user {}: TOTP device and emergency codes removed, every session ended, notice mailed",
                user.id
            )?;
        }
        UserCommand::Delete { user, yes } => {
            let user = find(app, &user).await?;
            if !yes {
                return Err(format!("add --yes to delete user {}", user.id).into());
            }
            if !service.delete_by_operator(&user).await? {
                return Err(format!("user {} changed meanwhile; nothing deleted", user.id).into());
            }
            writeln!(out, "user {} deleted", user.id)?;
        }
    }
    Ok(())
}

/// What `user show` prints.
#[derive(Debug, serde::Serialize)]
struct Shown {
    id: u64,
    email: String,
    disabled: bool,
    two_factor: &'static str,
    emergency_codes_left: usize,
    password_scheme: &'static str,
    created_at: i64,
    last_login: Option<i64>,
}

impl Shown {
    fn of(user: &User) -> Self {
        Self {
            id: user.id.0,
            email: user.email.clone(),
            disabled: user.disabled,
            two_factor: match &user.totp {
                Some(d) if d.confirmed => "on (confirmed TOTP device)",
                Some(_) => "off (unconfirmed TOTP device)",
                None => "off",
            },
            emergency_codes_left: user.static_codes.as_ref().map_or(0, |c| c.hashes.len()),
            password_scheme: match user.password_hash.split('$').next() {
                Some("pbkdf2_sha256") => "pbkdf2_sha256 (Django; rehashed at next login)",
                Some("") => "argon2id",
                _ => "other",
            },
            created_at: user.created_at,
            last_login: user.last_login,
        }
    }
}
