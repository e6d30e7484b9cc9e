//! The AWS SDK configuration of the functions, read from the environment Lambda gives them.
//!
//! Not `aws-config`'s provider chain: a function's region and credentials are environment
//! variables that Lambda sets (`AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_SESSION_TOKEN`), and the chain's profile, SSO, STS and IMDS providers, which a function
//! never reaches, were a fifth of each binary. Tools run elsewhere (the operator CLI on a laptop)
//! take a profile's credentials through the environment too:
//! `eval "$(aws configure export-credentials --profile NAME --format env)"`.

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use aws_sdk_dynamodb::config::BehaviorVersion;
use aws_types::sdk_config::{RetryConfig, TimeoutConfig};
use aws_types::service_config::{LoadServiceConfig, ServiceConfigKey};
use aws_types::SdkConfig;

use crate::domain::keys::Secrets;
use crate::settings::Settings;
use crate::wiring::app::StartupError;
use crate::wiring::aws_http::{Http1Client, Trust};
use crate::wiring::config::{self, ConfigError};

/// Attempts per AWS call (standard retry mode, with backoff).
pub const SDK_ATTEMPTS: u32 = 3;

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The SDK configuration: region, credentials and endpoint overrides from the environment,
/// the timeouts and retries below, over the HTTP/1.1 client of `aws_http`.
pub fn sdk_config() -> Result<SdkConfig, ConfigError> {
    let region = env("AWS_REGION")
        .or_else(|| env("AWS_DEFAULT_REGION"))
        .ok_or(ConfigError::Missing("AWS_REGION"))?;
    let (Some(key_id), Some(secret)) = (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY"))
    else {
        return Err(ConfigError::Missing(
            "AWS_ACCESS_KEY_ID with AWS_SECRET_ACCESS_KEY",
        ));
    };
    let credentials = Credentials::new(key_id, secret, env("AWS_SESSION_TOKEN"), None, "env");
    let http_client = Http1Client::new(Trust::from_env());
    let mut builder = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(aws_types::region::Region::new(region))
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        .http_client(http_client)
        .timeout_config(sdk_timeouts())
        .retry_config(RetryConfig::standard().with_max_attempts(SDK_ATTEMPTS))
        .service_config(EndpointsFromEnv);
    builder.set_endpoint_url(env("AWS_ENDPOINT_URL"));
    Ok(builder.build())
}

/// Each client's endpoint override: `AWS_ENDPOINT_URL_<SERVICE>` (`_DYNAMODB`, `_SESV2`,
/// `_SECRETS_MANAGER`), else `AWS_ENDPOINT_URL`, as the SDK documents them.
#[derive(Debug)]
struct EndpointsFromEnv;

impl LoadServiceConfig for EndpointsFromEnv {
    fn load_config(&self, key: ServiceConfigKey<'_>) -> Option<String> {
        endpoint_override(key.env(), key.service_id())
    }
}

/// `<general>_<SERVICE ID>` (upper case, spaces as `_`), else `<general>`.
fn endpoint_override(general: &str, service_id: &str) -> Option<String> {
    let service = service_id.to_ascii_uppercase().replace(' ', "_");
    env(&format!("{general}_{service}")).or_else(|| env(general))
}

/// Whether the endpoint of the service `service_id` (the SDK's: `DynamoDB`, `SESv2`) is
/// overridden, as its client will see it (a local emulator): then missing tables and sender
/// identities are created at start-up. Never done against real AWS.
pub fn endpoint_overridden(service_id: &str) -> bool {
    endpoint_override("AWS_ENDPOINT_URL", service_id).is_some()
}

/// Timeouts that leave room for a retry on a fresh connection, chosen against the functions'
/// 10 s timeout (infra/template.yaml); `AWS_ATTEMPT_TIMEOUT_MS` and `AWS_OPERATION_TIMEOUT_MS`
/// change them (a local emulator, one request at a time, is far slower than DynamoDB). A
/// DynamoDB call answers in milliseconds, so an attempt that takes 700 ms is a stalled
/// connection: it is abandoned and tried again. One call, all its attempts and backoff
/// included, gives up after 2.5 s, and answers 503; the longest request (login: 2 reads and 3
/// writes in sequence, plus a ~50 ms argon2 hash at 1024 MB) then still answers within the
/// function's 10 s only if at most three of its calls stall for good, which no transient fault
/// does. A start-up warm-up read is bounded the same way.
pub fn sdk_timeouts() -> TimeoutConfig {
    let millis = |name: &str, default: u64| {
        env(name)
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(default)
    };
    let ms = std::time::Duration::from_millis;
    TimeoutConfig::builder()
        .connect_timeout(ms(500))
        .operation_attempt_timeout(ms(millis("AWS_ATTEMPT_TIMEOUT_MS", 700)))
        .operation_timeout(ms(millis("AWS_OPERATION_TIMEOUT_MS", 2500)))
        .build()
}

/// The keys secret (`KEYS_SECRET_ARN`: an ARN or name) from Secrets Manager, read once at
/// start-up, so keys are neither in the function's configuration nor resolved at deploy time.
pub async fn keys_from_secrets_manager(
    aws: &SdkConfig,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_endpoint_override_wins_over_the_general_one() {
        let key = |service| {
            ServiceConfigKey::builder()
                .service_id(service)
                .env("AWS_ENDPOINT_URL_TEST_ONLY")
                .profile("endpoint_url")
                .build()
                .unwrap()
        };
        std::env::set_var("AWS_ENDPOINT_URL_TEST_ONLY", "http://general");
        std::env::set_var(
            "AWS_ENDPOINT_URL_TEST_ONLY_SECRETS_MANAGER",
            "http://secrets",
        );
        let endpoints = EndpointsFromEnv;
        assert_eq!(
            endpoints.load_config(key("Secrets Manager")).as_deref(),
            Some("http://secrets")
        );
        assert_eq!(
            endpoints.load_config(key("DynamoDB")).as_deref(),
            Some("http://general")
        );
    }
}
