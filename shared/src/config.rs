//! Configuration from the environment, read once at start-up. Every variable is listed in the
//! README. Secrets are wrapped in `secrecy` types so they never reach a `Debug` print or a log.

use std::path::PathBuf;

use base64::Engine;
use secrecy::{ExposeSecret, SecretBox, SecretString};

/// Where the process runs: a Lambda function is strict (missing secrets are start-up errors);
/// the local server generates missing secrets once and keeps them in `$DATA_DIR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Local,
    Lambda,
}

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

/// Which storage adapter to use.
#[derive(Debug, Clone)]
pub enum StorageConfig {
    Embedded { path: PathBuf },
    DynamoDb { table: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailerKind {
    Outbox,
    Ses,
}

/// Argon2id cost. Defaults are OWASP's minimum for argon2id (19 MiB, 2 passes, 1 lane).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Cost {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for Argon2Cost {
    fn default() -> Self {
        Self {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
        }
    }
}

/// Non-secret settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub mode: Mode,
    pub data_dir: PathBuf,
    pub storage: StorageConfig,
    pub mailer: MailerKind,
    pub token_lifetime_secs: i64,
    pub logout_on_password_change: bool,
    pub password_reset_timeout_secs: i64,
    /// Both reset paths (known and unknown address) answer no sooner than this after the
    /// request arrived, so the mail send cannot be told apart by timing.
    pub reset_min_duration_ms: u64,
    pub site_name: String,
    pub frontend_url: String,
    pub reset_url_template: String,
    pub mail_from: String,
    pub totp_issuer: String,
    pub max_body_bytes: usize,
    pub cors_allowed_origins: Vec<String>,
    pub argon2: Argon2Cost,
}

impl Settings {
    /// Defaults for local runs and tests, storage in `data_dir`.
    pub fn local(data_dir: PathBuf) -> Self {
        Self {
            mode: Mode::Local,
            storage: StorageConfig::Embedded {
                path: data_dir.join("accounts.redb"),
            },
            data_dir,
            mailer: MailerKind::Outbox,
            token_lifetime_secs: 900,
            logout_on_password_change: false,
            password_reset_timeout_secs: 86_400,
            reset_min_duration_ms: 250,
            site_name: "Accounts".into(),
            frontend_url: "http://localhost:3000".into(),
            reset_url_template: "{frontend_url}/password/reset/confirm/{uid}/{token}".into(),
            mail_from: "no-reply@accounts.example.com".into(),
            totp_issuer: "Accounts".into(),
            max_body_bytes: 64 * 1024,
            cors_allowed_origins: Vec::new(),
            argon2: Argon2Cost::default(),
        }
    }

    pub fn from_env(mode: Mode) -> Result<Self, ConfigError> {
        let data_dir = PathBuf::from(var("DATA_DIR").unwrap_or_else(|| ".local".into()));
        let mut s = Self::local(data_dir);
        s.mode = mode;
        s.storage = match (var("TABLE_NAME"), mode) {
            (Some(table), _) => StorageConfig::DynamoDb { table },
            (None, Mode::Lambda) => return Err(ConfigError::Missing("TABLE_NAME")),
            (None, Mode::Local) => s.storage,
        };
        s.mailer = match var("MAILER").as_deref() {
            None if mode == Mode::Lambda => MailerKind::Ses,
            None | Some("outbox") => MailerKind::Outbox,
            Some("ses") => MailerKind::Ses,
            Some(other) => return Err(invalid("MAILER", format!("{other:?}: use outbox or ses"))),
        };
        s.token_lifetime_secs = parse_or("JWT_EXPIRATION_SECONDS", s.token_lifetime_secs)?;
        s.logout_on_password_change =
            parse_or("LOGOUT_ON_PASSWORD_CHANGE", s.logout_on_password_change)?;
        s.password_reset_timeout_secs =
            parse_or("PASSWORD_RESET_TIMEOUT", s.password_reset_timeout_secs)?;
        s.reset_min_duration_ms = parse_or("RESET_MIN_DURATION_MS", s.reset_min_duration_ms)?;
        s.site_name = var("SITE_NAME").unwrap_or(s.site_name);
        s.frontend_url = var("FRONTEND_URL").unwrap_or(s.frontend_url);
        s.reset_url_template = var("PASSWORD_RESET_CONFIRM_URL").unwrap_or(s.reset_url_template);
        s.mail_from = var("MAIL_FROM").unwrap_or(s.mail_from);
        s.totp_issuer = var("TOTP_ISSUER").unwrap_or(s.totp_issuer).replace(':', "");
        s.max_body_bytes = parse_or("MAX_BODY_BYTES", s.max_body_bytes)?;
        s.cors_allowed_origins = var("CORS_ALLOWED_ORIGINS")
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|o| !o.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        s.argon2 = Argon2Cost {
            memory_kib: parse_or("ARGON2_MEMORY_KIB", s.argon2.memory_kib)?,
            iterations: parse_or("ARGON2_ITERATIONS", s.argon2.iterations)?,
            parallelism: parse_or("ARGON2_PARALLELISM", s.argon2.parallelism)?,
        };
        if s.token_lifetime_secs <= 0 {
            return Err(invalid("JWT_EXPIRATION_SECONDS", "must be positive"));
        }
        if s.argon2.memory_kib < 19 * 1024 || s.argon2.iterations < 2 {
            return Err(invalid(
                "ARGON2_MEMORY_KIB/ARGON2_ITERATIONS",
                "below OWASP's argon2id minimum (19456 KiB, 2 iterations)",
            ));
        }
        Ok(s)
    }
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
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

/// A 256-bit AES key for TOTP secrets, with the version stored beside each ciphertext.
pub struct VersionedKey {
    pub version: u32,
    pub key: SecretBox<[u8; 32]>,
}

/// The service's secrets. None of them ever lives in the database.
pub struct Secrets {
    /// Root of the JWT, reset-token and emergency-code keys (HKDF subkeys, one per purpose).
    pub secret_key: SecretString,
    /// The key that seals new TOTP secrets, then older keys still able to open old ones.
    pub totp_keys: Vec<VersionedKey>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets(..)")
    }
}

pub const MIN_SECRET_KEY_BYTES: usize = 32;

impl Secrets {
    /// Reads `SECRET_KEY`, `TOTP_ENCRYPTION_KEY` (+ `_VERSION`) and
    /// `TOTP_ENCRYPTION_PREVIOUS_KEYS`. In local mode, missing ones are generated once and kept
    /// in `$DATA_DIR/secrets.json` (mode 0600).
    pub fn from_env(settings: &Settings) -> Result<Self, ConfigError> {
        let mut secret_key = var("SECRET_KEY");
        let mut totp_key = var("TOTP_ENCRYPTION_KEY");
        if settings.mode == Mode::Local && (secret_key.is_none() || totp_key.is_none()) {
            let kept = LocalSecrets::load_or_create(&settings.data_dir)?;
            secret_key = secret_key.or(Some(kept.secret_key));
            totp_key = totp_key.or(Some(kept.totp_encryption_key));
        }
        let secret_key = secret_key.ok_or(ConfigError::Missing("SECRET_KEY"))?;
        let totp_key = totp_key.ok_or(ConfigError::Missing("TOTP_ENCRYPTION_KEY"))?;
        let version = parse_or("TOTP_ENCRYPTION_KEY_VERSION", 1u32)?;
        let mut totp_keys = vec![VersionedKey {
            version,
            key: decode_aes_key("TOTP_ENCRYPTION_KEY", &totp_key)?,
        }];
        totp_keys.extend(previous_totp_keys(
            var("TOTP_ENCRYPTION_PREVIOUS_KEYS").as_deref(),
        )?);
        Self::new(SecretString::from(secret_key), totp_keys)
    }

    pub fn new(
        secret_key: SecretString,
        totp_keys: Vec<VersionedKey>,
    ) -> Result<Self, ConfigError> {
        if secret_key.expose_secret().len() < MIN_SECRET_KEY_BYTES {
            return Err(invalid(
                "SECRET_KEY",
                format!("must be at least {MIN_SECRET_KEY_BYTES} bytes"),
            ));
        }
        if totp_keys.is_empty() {
            return Err(ConfigError::Missing("TOTP_ENCRYPTION_KEY"));
        }
        Ok(Self {
            secret_key,
            totp_keys,
        })
    }

    /// Fresh random secrets (tests and first local runs).
    pub fn generate() -> Self {
        let kept = LocalSecrets::generate();
        Self::new(
            SecretString::from(kept.secret_key),
            vec![VersionedKey {
                version: 1,
                key: decode_aes_key("TOTP_ENCRYPTION_KEY", &kept.totp_encryption_key)
                    .expect("generated key is valid"),
            }],
        )
        .expect("generated secrets are valid")
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
        let err = Secrets::new(SecretString::from("too short"), keys).unwrap_err();
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
    fn secrets_never_print() {
        assert_eq!(format!("{:?}", Secrets::generate()), "Secrets(..)");
    }
}
