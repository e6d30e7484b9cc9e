//! Wiring: builds the service from configuration, choosing adapters. Done once per process
//! (Lambda init or local server start), never per request.

use std::sync::Arc;

use crate::clock::{Clock, SystemClock};
use crate::domain::keys::{Keys, Secrets};
use crate::domain::password::{self, PasswordHasher};
use crate::domain::token::TokenIssuer;
use crate::mail::outbox::Outbox;
use crate::mail::ses::SesMailer;
use crate::mail::Mailer;
use crate::service::Service;
use crate::settings::{MailerKind, Mode, Settings, StorageConfig};
use crate::store::dynamo::DynamoStore;
use crate::store::embedded::EmbeddedStore;
use crate::store::Store;
use crate::wiring::config::{self, ConfigError};

/// One process's service with its adapters, built once and shared by every request.
pub struct App {
    pub service: Service,
}

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("storage: {0}")]
    Storage(String),
    #[error("mail: {0}")]
    Mail(String),
    #[error("{0}")]
    Other(String),
}

/// Whether the AWS endpoint is overridden (a local emulator): then missing tables and sender
/// identities are created at start-up. Never done against real AWS.
fn endpoint_overridden(service_var: &str) -> bool {
    std::env::var_os("AWS_ENDPOINT_URL").is_some() || std::env::var_os(service_var).is_some()
}

/// The AWS SDK configuration from the standard environment (region, credentials, endpoint
/// overrides), over an HTTPS client using rustls with ring.
pub async fn aws_sdk_config() -> aws_config::SdkConfig {
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
    let http_client = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http_client)
        .load()
        .await
}

impl App {
    pub fn new(
        settings: Settings,
        secrets: &Secrets,
        store: Arc<dyn Store>,
        mailer: Arc<dyn Mailer>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartupError> {
        let keys = Keys::derive(secrets);
        let tokens = TokenIssuer::new(
            &keys.jwt,
            settings.token_lifetime_secs,
            &settings.jwt_issuer,
            &settings.jwt_audience,
        );
        let hasher =
            PasswordHasher::new(settings.argon2).map_err(|e| StartupError::Other(e.to_string()))?;
        password::warm_up();
        Ok(Self {
            service: Service {
                store,
                mailer,
                clock,
                keys,
                tokens,
                hasher,
                settings,
                queue_signal: tokio::sync::Notify::new(),
            },
        })
    }

    /// Builds the app from the environment (README: Configuration).
    pub async fn from_env(mode: Mode) -> Result<Self, StartupError> {
        let settings = config::settings_from_env(mode)?;
        let secrets = config::secrets_from_env(&settings)?;
        let needs_aws = matches!(settings.storage, StorageConfig::DynamoDb { .. })
            || settings.mailer == MailerKind::Ses;
        let aws = match needs_aws {
            true => Some(aws_sdk_config().await),
            false => None,
        };
        let store: Arc<dyn Store> = match (&settings.storage, &aws) {
            (StorageConfig::DynamoDb { table }, Some(aws)) => {
                let store = DynamoStore::new(aws, table.clone());
                if endpoint_overridden("AWS_ENDPOINT_URL_DYNAMODB") {
                    store
                        .ensure_table()
                        .await
                        .map_err(|e| StartupError::Storage(e.to_string()))?;
                }
                // Open the connection now, so the first request does not pay the handshake.
                store.warm_up().await;
                Arc::new(store)
            }
            (StorageConfig::Embedded { path }, _) => Arc::new(
                EmbeddedStore::open(path).map_err(|e| StartupError::Storage(e.to_string()))?,
            ),
            (StorageConfig::DynamoDb { .. }, None) => unreachable!("AWS config loaded above"),
        };
        let mailer: Arc<dyn Mailer> = match (settings.mailer, &aws) {
            (MailerKind::Ses, Some(aws)) => {
                let ses = SesMailer::new(aws);
                if endpoint_overridden("AWS_ENDPOINT_URL_SESV2") {
                    ses.ensure_identity(&settings.mail_from)
                        .await
                        .map_err(|e| StartupError::Mail(e.to_string()))?;
                }
                Arc::new(ses)
            }
            _ => Arc::new(Outbox::new(settings.data_dir.join("outbox"))),
        };
        Self::new(settings, &secrets, store, mailer, Arc::new(SystemClock))
    }
}
