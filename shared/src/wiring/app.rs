//! Wiring: builds the service from configuration, choosing adapters. Done once per process
//! (Lambda init or local server start), never per request.

use std::sync::Arc;

use crate::clock::{Clock, SystemClock};
use crate::domain::keys::{Keys, Secrets};
use crate::domain::password::{self, PasswordHasher};
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
        .tls_context(tls_context())
        .build_https();
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http_client)
        .timeout_config(sdk_timeouts())
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(SDK_ATTEMPTS))
        .load()
        .await
}

/// The roots that sign AWS service endpoints (Amazon Trust Services; `shared/data/README.md`).
const AWS_ROOT_CAS: &[u8] = include_bytes!("../../data/aws-root-cas.pem");

/// Trust only the AWS roots, embedded: loading the system's ~150 roots from disk was 3–6 ms
/// of every cold start, and no other CA can then impersonate an AWS endpoint to the functions.
/// An endpoint override over https (an emulator or proxy with its own CA), or
/// `AWS_TRUST_SYSTEM_ROOTS=true`, keeps the system's.
fn tls_context() -> aws_smithy_http_client::tls::TlsContext {
    use aws_smithy_http_client::tls::{TlsContext, TrustStore};
    let custom_https = std::env::vars()
        .any(|(name, value)| name.starts_with("AWS_ENDPOINT_URL") && value.starts_with("https://"));
    let system_roots = std::env::var("AWS_TRUST_SYSTEM_ROOTS").is_ok_and(|v| v == "true");
    let trust = match custom_https || system_roots {
        true => TrustStore::default(),
        false => TrustStore::empty().with_pem_certificate(AWS_ROOT_CAS),
    };
    TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .unwrap_or_default()
}

/// Attempts per AWS call (standard retry mode, with backoff).
pub const SDK_ATTEMPTS: u32 = 3;

/// Timeouts that leave room for a retry on a fresh connection, chosen against the functions'
/// 10 s timeout (infra/template.yaml); `AWS_ATTEMPT_TIMEOUT_MS` and `AWS_OPERATION_TIMEOUT_MS`
/// change them (a local emulator, one request at a time, is far slower than DynamoDB). A DynamoDB call answers in milliseconds, so an attempt
/// that takes 700 ms is a stalled connection: it is abandoned and tried again. One call, all
/// its attempts and backoff included, gives up after 2.5 s, and answers 503; the longest
/// request (login: 2 reads and 3 writes in sequence, plus a ~50 ms argon2 hash at 1024 MB)
/// then still answers within the function's 10 s only if at most three of its calls stall
/// for good, which no transient fault does. A start-up warm-up read is bounded the same way.
pub fn sdk_timeouts() -> aws_config::timeout::TimeoutConfig {
    let millis = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(default)
    };
    let ms = std::time::Duration::from_millis;
    aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(ms(500))
        .operation_attempt_timeout(ms(millis("AWS_ATTEMPT_TIMEOUT_MS", 700)))
        .operation_timeout(ms(millis("AWS_OPERATION_TIMEOUT_MS", 2500)))
        .build()
}

/// The keys secret (`KEYS_SECRET_ARN`: an ARN or name) from Secrets Manager, read once at
/// start-up, so keys are neither in the function's configuration nor resolved at deploy time.
pub async fn keys_from_secrets_manager(
    aws: &aws_config::SdkConfig,
    settings: &Settings,
    id: &str,
) -> Result<Secrets, StartupError> {
    let client = aws_sdk_secretsmanager::Client::new(aws);
    let output = client
        .get_secret_value()
        .secret_id(id)
        .send()
        .await
        .map_err(|e| {
            StartupError::Other(format!(
                "cannot read the keys secret: {}",
                aws_sdk_secretsmanager::error::DisplayErrorContext(e)
            ))
        })?;
    let json = output
        .secret_string
        .ok_or_else(|| StartupError::Other("the keys secret holds no string".to_owned()))?;
    Ok(config::secrets_from_json(settings, &json)?)
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
        let keys_secret = std::env::var("KEYS_SECRET_ARN")
            .ok()
            .filter(|v| !v.is_empty());
        let needs_aws = matches!(settings.storage, StorageConfig::DynamoDb { .. })
            || settings.mailer == MailerKind::Ses
            || keys_secret.is_some();
        let aws = match needs_aws {
            true => Some(aws_sdk_config().await),
            false => None,
        };
        // The keys fetch, the store's warm-up read and the mailer's set-up are independent
        // round trips: made at once, init waits for the slowest, not their sum.
        let secrets = async {
            match (&keys_secret, &aws) {
                (Some(id), Some(aws)) => keys_from_secrets_manager(aws, &settings, id).await,
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
                    if endpoint_overridden("AWS_ENDPOINT_URL_DYNAMODB") {
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
                    if endpoint_overridden("AWS_ENDPOINT_URL_SESV2") {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_aws_roots_are_the_five_amazon_trust_services_certificates() {
        use rustls_pki_types::pem::PemObject;
        let certificates: Vec<_> = rustls_pki_types::CertificateDer::pem_slice_iter(AWS_ROOT_CAS)
            .collect::<Result<_, _>>()
            .expect("PEM");
        assert_eq!(certificates.len(), 5);
        let text = String::from_utf8_lossy(AWS_ROOT_CAS);
        for name in ["Amazon_Root_CA_1", "Amazon_Root_CA_4", "Starfield_Services"] {
            assert!(text.contains(name), "{name}");
        }
        aws_smithy_http_client::tls::TlsContext::builder()
            .with_trust_store(
                aws_smithy_http_client::tls::TrustStore::empty().with_pem_certificate(AWS_ROOT_CAS),
            )
            .build()
            .expect("a TLS context over the embedded roots");
    }
}
