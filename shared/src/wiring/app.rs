//! Wiring: builds the service from configuration, choosing adapters. Done once per process
//! (Lambda init or local server start), never per request.

use std::sync::Arc;

use crate::clock::{Clock, SystemClock};
use crate::domain::keys::{Keys, Secrets};
use crate::domain::password::PasswordHasher;
use crate::domain::token::TokenIssuer;
#[cfg(feature = "outbox")]
use crate::mail::outbox::Outbox;
#[cfg(feature = "ses")]
use crate::mail::ses::SesMailer;
use crate::mail::{Mailer, NotSending};
use crate::service::Service;
use crate::settings::{MailerKind, Mode, Settings, StorageConfig};
use crate::store::dynamo::DynamoStore;
#[cfg(feature = "embedded-store")]
use crate::store::embedded::EmbeddedStore;
use crate::store::Store;
use crate::wiring::aws;
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
        )
        .with_previous(&keys.jwt_previous);
        let hasher =
            PasswordHasher::new(settings.argon2).map_err(|e| StartupError::Other(e.to_string()))?;
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
        let keys_secret = std::env::var("KEYS_SECRET_ARN")
            .ok()
            .filter(|v| !v.is_empty());
        let needs_aws = matches!(settings.storage, StorageConfig::DynamoDb { .. })
            || settings.mailer == MailerKind::Ses
            || keys_secret.is_some();
        let aws = match needs_aws {
            true => Some(aws::sdk_config()?),
            false => None,
        };
        // The keys fetch, the store's warm-up read and the mailer's set-up are independent
        // round trips: made at once, init waits for the slowest, not their sum.
        let secrets = async {
            match (&keys_secret, &aws) {
                (Some(id), Some(aws)) => aws::keys_from_secrets_manager(aws, &settings, id).await,
                _ => Ok(config::secrets_from_env(&settings)?),
            }
        };
        let store = async {
            let store: Arc<dyn Store> = match (&settings.storage, &aws) {
                (StorageConfig::DynamoDb { table }, Some(aws)) => {
                    let store = DynamoStore::new(aws, table.clone());
                    // Open the connection now, so the first request does not pay the
                    // handshake: the warm-up read, or on an emulator the table check, which
                    // opens it as well.
                    if aws::endpoint_overridden("DynamoDB") {
                        store
                            .ensure_table()
                            .await
                            .map_err(|e| StartupError::Storage(e.to_string()))?;
                    } else {
                        store.warm_up().await;
                    }
                    Arc::new(store)
                }
                #[cfg(feature = "embedded-store")]
                (StorageConfig::Embedded { path }, _) => Arc::new(
                    EmbeddedStore::open(path).map_err(|e| StartupError::Storage(e.to_string()))?,
                ),
                #[cfg(not(feature = "embedded-store"))]
                (StorageConfig::Embedded { .. }, _) => {
                    return Err(StartupError::Storage(
                        "this build has no embedded store: set TABLE_NAME".into(),
                    ))
                }
                (StorageConfig::DynamoDb { .. }, None) => unreachable!("AWS config loaded above"),
            };
            Ok::<_, StartupError>(store)
        };
        let mailer = async {
            let mailer: Arc<dyn Mailer> = match (settings.mailer, &aws) {
                (MailerKind::None, _) => Arc::new(NotSending),
                #[cfg(feature = "ses")]
                (MailerKind::Ses, Some(aws)) => {
                    let ses = SesMailer::new(aws);
                    if aws::endpoint_overridden("SESv2") {
                        ses.ensure_identity(&settings.mail_from)
                            .await
                            .map_err(|e| StartupError::Mail(e.to_string()))?;
                    }
                    Arc::new(ses)
                }
                #[cfg(not(feature = "ses"))]
                (MailerKind::Ses, _) => {
                    return Err(StartupError::Mail(
                        "this build has no SES mailer (feature ses): use MAILER=none or outbox"
                            .into(),
                    ))
                }
                #[cfg(feature = "outbox")]
                _ => Arc::new(Outbox::new(settings.data_dir.join("outbox"))),
                #[cfg(not(feature = "outbox"))]
                _ => {
                    return Err(StartupError::Mail(
                        "this build has no outbox: use MAILER=ses".into(),
                    ))
                }
            };
            Ok::<_, StartupError>(mailer)
        };
        let (secrets, store, mailer) = tokio::try_join!(secrets, store, mailer)?;
        Self::new(settings, &secrets, store, mailer, Arc::new(SystemClock))
    }
}
