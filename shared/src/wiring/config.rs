//! Configuration from the environment, read once at start-up into [`Settings`] and
//! [`Secrets`]. Every variable is listed in the README. Secrets stay in `secrecy` types so they
//! never reach a `Debug` print or a log.

use std::path::PathBuf;

use base64::Engine;
use secrecy::{SecretBox, SecretString};

use crate::domain::keys::{KeyError, Secrets, VersionedKey};
use crate::settings::{Argon2Cost, Cidr, MailerKind, Mode, Settings, StorageConfig};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} is required")]
    Missing(&'static str),
    #[error("{name} is invalid: {why}")]
    Invalid { name: &'static str, why: String },
    #[error("cannot keep local secrets in {path}: {why}")]
    LocalSecrets { path: PathBuf, why: String },
}

fn invalid(name: &'static str, why: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        name,
        why: why.into(),
    }
}

impl From<KeyError> for ConfigError {
    fn from(err: KeyError) -> Self {
        match err {
            KeyError::SecretKeyTooShort => invalid("SECRET_KEY", err.to_string()),
            KeyError::NoTotpKey => ConfigError::Missing("TOTP_ENCRYPTION_KEY"),
        }
    }
}

/// The settings from the environment, over the local defaults.
pub fn settings_from_env(mode: Mode) -> Result<Settings, ConfigError> {
    let data_dir = PathBuf::from(var("DATA_DIR").unwrap_or_else(|| ".local".into()));
    let mut s = Settings::local(data_dir);
    s.mode = mode;
    s.storage = match (var("TABLE_NAME"), mode) {
        (Some(table), _) => StorageConfig::DynamoDb { table },
        (None, Mode::Lambda) => return Err(ConfigError::Missing("TABLE_NAME")),
        (None, Mode::Local) => s.storage,
    };
    s.mailer = match var("MAILER").as_deref() {
        // In Lambda: SES where the build has it (the mailer function), else nothing to send.
        None if mode == Mode::Lambda && cfg!(feature = "ses") => MailerKind::Ses,
        None if mode == Mode::Lambda => MailerKind::None,
        None | Some("outbox") => MailerKind::Outbox,
        Some("ses") => MailerKind::Ses,
        Some("none") => MailerKind::None,
        Some(other) => {
            return Err(invalid(
                "MAILER",
                format!("{other:?}: use outbox, ses or none"),
            ))
        }
    };
    s.token_lifetime_secs = parse_or("JWT_EXPIRATION_SECONDS", s.token_lifetime_secs)?;
    s.logout_on_password_change =
        parse_or("LOGOUT_ON_PASSWORD_CHANGE", s.logout_on_password_change)?;
    s.notify_security_events = parse_or("NOTIFY_SECURITY_EVENTS", s.notify_security_events)?;
    s.session_max_secs = parse_or("SESSION_MAX_SECONDS", s.session_max_secs)?;
    s.reauth_secs = parse_or("REAUTH_SECONDS", s.reauth_secs)?;
    s.refresh_lifetime_secs = parse_or("REFRESH_TOKEN_SECONDS", s.refresh_lifetime_secs)?;
    s.refresh_reuse_secs = parse_or("REFRESH_REUSE_SECONDS", s.refresh_reuse_secs)?;
    s.recovery_delay_secs = parse_or("TOTP_RECOVERY_DELAY_SECONDS", s.recovery_delay_secs)?;
    s.send_activation_email = parse_or("SEND_ACTIVATION_EMAIL", s.send_activation_email)?;
    s.activation_url_template = var("ACTIVATION_URL").unwrap_or(s.activation_url_template);
    s.recovery_url_template = var("TOTP_RECOVERY_URL").unwrap_or(s.recovery_url_template);
    s.password_reset_timeout_secs =
        parse_or("PASSWORD_RESET_TIMEOUT", s.password_reset_timeout_secs)?;
    s.reset_min_duration_ms = parse_or("RESET_MIN_DURATION_MS", s.reset_min_duration_ms)?;
    s.site_name = var("SITE_NAME").unwrap_or(s.site_name);
    s.jwt_issuer = var("JWT_ISSUER").unwrap_or_else(|| s.site_name.clone());
    s.jwt_audience = var("JWT_AUDIENCE").unwrap_or(s.jwt_audience);
    s.frontend_url = var("FRONTEND_URL").unwrap_or(s.frontend_url);
    s.reset_url_template = var("PASSWORD_RESET_CONFIRM_URL").unwrap_or(s.reset_url_template);
    s.mail_from = var("MAIL_FROM").unwrap_or(s.mail_from);
    s.totp_issuer = var("TOTP_ISSUER").unwrap_or(s.totp_issuer).replace(':', "");
    s.max_body_bytes = parse_or("MAX_BODY_BYTES", s.max_body_bytes)?;
    s.cors_allowed_origins = list("CORS_ALLOWED_ORIGINS");
    s.trusted_proxies = list("TRUSTED_PROXIES")
        .iter()
        .map(|entry| {
            Cidr::parse(entry).ok_or_else(|| {
                invalid("TRUSTED_PROXIES", format!("{entry:?} is not an IP or CIDR"))
            })
        })
        .collect::<Result<_, _>>()?;
    s.argon2 = Argon2Cost {
        memory_kib: parse_or("ARGON2_MEMORY_KIB", s.argon2.memory_kib)?,
        iterations: parse_or("ARGON2_ITERATIONS", s.argon2.iterations)?,
        parallelism: parse_or("ARGON2_PARALLELISM", s.argon2.parallelism)?,
    };
    let l = &mut s.limits;
    l.login_free_per_address_ip = parse_or(
        "LOGIN_FREE_FAILURES_PER_ADDRESS_IP",
        l.login_free_per_address_ip,
    )?;
    l.login_free_per_address =
        parse_or("LOGIN_FREE_FAILURES_PER_ADDRESS", l.login_free_per_address)?;
    l.login_failures_per_ip =
        parse_or("LOGIN_FAILURES_PER_IP_PER_BUCKET", l.login_failures_per_ip)?;
    l.login_ip_bucket_secs = parse_or("LOGIN_IP_BUCKET_SECONDS", l.login_ip_bucket_secs)?;
    l.login_known_ip_secs =
        parse_or::<i64>("LOGIN_KNOWN_IP_DAYS", l.login_known_ip_secs / 86_400)? * 86_400;
    l.password_proof_free = parse_or("PASSWORD_PROOF_FREE_FAILURES", l.password_proof_free)?;
    l.backoff_cap_secs = parse_or("LOGIN_BACKOFF_CAP_SECONDS", l.backoff_cap_secs)?;
    l.signups_per_ip_per_hour = parse_or("SIGNUPS_PER_IP_PER_HOUR", l.signups_per_ip_per_hour)?;
    l.reset_mail_interval_secs =
        parse_or("RESET_MAIL_INTERVAL_SECONDS", l.reset_mail_interval_secs)?;
    l.reset_mails_per_address_per_day = parse_or(
        "RESET_MAILS_PER_ADDRESS_PER_DAY",
        l.reset_mails_per_address_per_day,
    )?;
    l.reset_requests_per_ip_per_hour = parse_or(
        "RESET_REQUESTS_PER_IP_PER_HOUR",
        l.reset_requests_per_ip_per_hour,
    )?;
    if s.token_lifetime_secs <= 0 {
        return Err(invalid("JWT_EXPIRATION_SECONDS", "must be positive"));
    }
    if s.limits.login_ip_bucket_secs <= 0 || s.limits.backoff_cap_secs <= 0 {
        return Err(invalid(
            "LOGIN_IP_BUCKET_SECONDS/LOGIN_BACKOFF_CAP_SECONDS",
            "must be positive",
        ));
    }
    if s.argon2.memory_kib < 19 * 1024 || s.argon2.iterations < 2 {
        return Err(invalid(
            "ARGON2_MEMORY_KIB/ARGON2_ITERATIONS",
            "below OWASP's argon2id minimum (19456 KiB, 2 iterations)",
        ));
    }
    Ok(s)
}

/// Reads `SECRET_KEY`, `TOTP_ENCRYPTION_KEY` (+ `_VERSION`), `TOTP_ENCRYPTION_PREVIOUS_KEYS`,
/// `SECRET_KEY_PREVIOUS` and `EMERGENCY_CODE_KEY` from the environment. In local mode, missing
/// ones of the first two are generated once and kept in `$DATA_DIR/secrets.json` (mode 0600).
pub fn secrets_from_env(settings: &Settings) -> Result<Secrets, ConfigError> {
    secrets_from(settings, &|name| var(name))
}

/// The variable names a keys secret (JSON, `KEYS_SECRET_ARN`) may hold, lowercased: e.g.
/// `{"secret_key": .., "totp_encryption_key": .., "emergency_code_key": ..}`.
pub const KEY_VARIABLES: [&str; 6] = [
    "SECRET_KEY",
    "SECRET_KEY_PREVIOUS",
    "EMERGENCY_CODE_KEY",
    "TOTP_ENCRYPTION_KEY",
    "TOTP_ENCRYPTION_KEY_VERSION",
    "TOTP_ENCRYPTION_PREVIOUS_KEYS",
];

/// The keys from a JSON secret's fields (lowercased variable names; strings or numbers), each
/// falling back to the environment when the secret does not hold it.
pub fn secrets_from_json(settings: &Settings, json: &str) -> Result<Secrets, ConfigError> {
    let fields: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(json).map_err(|e| {
            invalid(
                "KEYS_SECRET_ARN",
                format!("secret is not a JSON object: {e}"),
            )
        })?;
    let lookup = |name: &str| {
        let field = match fields.get(&name.to_ascii_lowercase()) {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(serde_json::Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        field.filter(|v| !v.is_empty()).or_else(|| var(name))
    };
    secrets_from(settings, &lookup)
}

fn secrets_from(
    settings: &Settings,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Secrets, ConfigError> {
    let mut secret_key = lookup("SECRET_KEY");
    let mut totp_key = lookup("TOTP_ENCRYPTION_KEY");
    if settings.mode == Mode::Local && (secret_key.is_none() || totp_key.is_none()) {
        let kept = LocalSecrets::load_or_create(&settings.data_dir)?;
        secret_key = secret_key.or(Some(kept.secret_key));
        totp_key = totp_key.or(Some(kept.totp_encryption_key));
    }
    let secret_key = secret_key.ok_or(ConfigError::Missing("SECRET_KEY"))?;
    let totp_key = totp_key.ok_or(ConfigError::Missing("TOTP_ENCRYPTION_KEY"))?;
    let version = match lookup("TOTP_ENCRYPTION_KEY_VERSION") {
        None => 1u32,
        Some(raw) => raw
            .trim()
            .parse()
            .map_err(|e| invalid("TOTP_ENCRYPTION_KEY_VERSION", format!("{e}")))?,
    };
    let mut totp_keys = vec![VersionedKey {
        version,
        key: decode_aes_key("TOTP_ENCRYPTION_KEY", &totp_key)?,
    }];
    totp_keys.extend(previous_totp_keys(
        lookup("TOTP_ENCRYPTION_PREVIOUS_KEYS").as_deref(),
    )?);
    let previous = previous_secret_keys(lookup("SECRET_KEY_PREVIOUS").as_deref());
    let emergency = lookup("EMERGENCY_CODE_KEY").map(SecretString::from);
    let secrets = Secrets::new(SecretString::from(secret_key), totp_keys)?
        .with_previous_secret_keys(previous)
        .map_err(|e| invalid("SECRET_KEY_PREVIOUS", e.to_string()))?
        .with_emergency_code_key(emergency)
        .map_err(|e| invalid("EMERGENCY_CODE_KEY", e.to_string()))?;
    Ok(secrets)
}

/// `SECRET_KEY_PREVIOUS`: comma-separated earlier secret keys, newest first; unset, empty or
/// `none` for none.
fn previous_secret_keys(text: Option<&str>) -> Vec<SecretString> {
    let text = text.unwrap_or_default().trim();
    if text.eq_ignore_ascii_case("none") {
        return Vec::new();
    }
    text.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|e| SecretString::from(e.to_owned()))
        .collect()
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// A comma-separated list variable, entries trimmed, empty entries dropped.
fn list(name: &str) -> Vec<String> {
    var(name)
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(String::from)
        .collect()
}

fn parse_or<T: std::str::FromStr>(name: &'static str, default: T) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match var(name) {
        None => Ok(default),
        Some(raw) => raw
            .trim()
            .parse()
            .map_err(|e| invalid(name, format!("{e}"))),
    }
}

/// `TOTP_ENCRYPTION_PREVIOUS_KEYS`: `<version>:<base64 key>,...`. Unset, empty or `none` means
/// no previous keys (`none` because a deploy-time secret reference may not resolve to "").
fn previous_totp_keys(text: Option<&str>) -> Result<Vec<VersionedKey>, ConfigError> {
    const NAME: &str = "TOTP_ENCRYPTION_PREVIOUS_KEYS";
    let text = text.unwrap_or_default().trim();
    if text.eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    let mut keys = Vec::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (version, key) = entry
            .split_once(':')
            .ok_or_else(|| invalid(NAME, "expected <version>:<base64 key>,... or none"))?;
        keys.push(VersionedKey {
            version: version
                .parse()
                .map_err(|_| invalid(NAME, "version not a number"))?,
            key: decode_aes_key(NAME, key)?,
        });
    }
    Ok(keys)
}

fn decode_aes_key(name: &'static str, encoded: &str) -> Result<SecretBox<[u8; 32]>, ConfigError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| invalid(name, "not base64"))?;
    let key: [u8; 32] = bytes
        .try_into()
        .map_err(|_| invalid(name, "must decode to exactly 32 bytes"))?;
    Ok(SecretBox::new(Box::new(key)))
}

#[derive(serde::Serialize, serde::Deserialize)]
struct LocalSecrets {
    secret_key: String,
    totp_encryption_key: String,
}

impl LocalSecrets {
    fn generate() -> Self {
        use rand::RngCore;
        let engine = base64::engine::general_purpose::STANDARD;
        let mut bytes = [0u8; 48];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let secret_key = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let mut aes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut aes);
        Self {
            secret_key,
            totp_encryption_key: engine.encode(aes),
        }
    }

    fn load_or_create(dir: &std::path::Path) -> Result<Self, ConfigError> {
        let path = dir.join("secrets.json");
        let fail = |why: String| ConfigError::LocalSecrets {
            path: path.clone(),
            why,
        };
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| fail(e.to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
                let fresh = Self::generate();
                let json = serde_json::to_vec_pretty(&fresh).map_err(|e| fail(e.to_string()))?;
                write_private(&path, &json).map_err(|e| fail(e.to_string()))?;
                Ok(fresh)
            }
            Err(e) => Err(fail(e.to_string())),
        }
    }
}

fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_secret_key_is_a_startup_error() {
        let keys = Secrets::generate().totp_keys;
        let err: ConfigError = Secrets::new(SecretString::from("too short"), keys)
            .unwrap_err()
            .into();
        assert!(
            matches!(
                err,
                ConfigError::Invalid {
                    name: "SECRET_KEY",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn local_secrets_are_generated_once_and_kept_private() {
        let dir = std::env::temp_dir().join(format!("secrets-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let first = LocalSecrets::load_or_create(&dir).unwrap();
        let second = LocalSecrets::load_or_create(&dir).unwrap();
        assert_eq!(first.secret_key, second.secret_key);
        assert_eq!(first.totp_encryption_key, second.totp_encryption_key);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join("secrets.json"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_totp_key_must_be_32_bytes_of_base64() {
        assert!(decode_aes_key("K", "c2hvcnQ=").is_err());
        assert!(decode_aes_key("K", "not base64!").is_err());
        let key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        assert!(decode_aes_key("K", &key).is_ok());
    }

    #[test]
    fn previous_totp_keys_parse_and_none_means_none() {
        let key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        for empty in [None, Some(""), Some("none"), Some(" NONE ")] {
            assert!(previous_totp_keys(empty).unwrap().is_empty(), "{empty:?}");
        }
        let keys = previous_totp_keys(Some(&format!("2:{key}, 1:{key}"))).unwrap();
        assert_eq!(keys.iter().map(|k| k.version).collect::<Vec<_>>(), [2, 1]);
        assert!(previous_totp_keys(Some(&key)).is_err());
        assert!(previous_totp_keys(Some("x:abc")).is_err());
    }

    #[test]
    fn a_keys_secret_supplies_every_key() {
        let aes = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        let root = "r".repeat(40);
        let old = "o".repeat(40);
        let json = serde_json::json!({
            "secret_key": root, "totp_encryption_key": aes, "totp_encryption_key_version": 3,
            "secret_key_previous": old, "emergency_code_key": "e".repeat(40),
            "totp_encryption_previous_keys": "none",
        });
        let settings = Settings::local(std::env::temp_dir().join("never-used"));
        let secrets = secrets_from_json(&settings, &json.to_string()).unwrap();
        assert_eq!(secrets.totp_keys[0].version, 3);
        assert_eq!(secrets.previous_secret_keys.len(), 1);
        assert!(secrets.emergency_code_key.is_some());
        assert!(secrets_from_json(&settings, "[1]").is_err());
        assert_eq!(previous_secret_keys(Some(" none ")).len(), 0);
        assert_eq!(previous_secret_keys(Some("a, b,")).len(), 2);
    }

    #[test]
    fn secrets_never_print() {
        assert_eq!(format!("{:?}", Secrets::generate()), "Secrets(..)");
    }
}
