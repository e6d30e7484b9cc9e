//! Settings: the plain values the service runs with. Read from the environment once at start-up
//! by [`crate::wiring::config`]; every variable is listed in the README. Nothing secret lives
//! here (see [`crate::domain::keys::Secrets`]).

use std::path::PathBuf;

use std::net::IpAddr;

/// Where the process runs: a Lambda function is strict (missing secrets are start-up errors);
/// the local server generates missing secrets once and keeps them in `$DATA_DIR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Local,
    Lambda,
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
    /// This process never sends: the API functions only queue mail (in the same write as the
    /// change that mails), and the mailer function, the one with `ses:SendEmail`, sends it.
    None,
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

/// Every abuse limit's number, in one place (docs/api.md#abuse-limits; each has an environment
/// variable, named beside it, in the README).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Login failures per address + client IP that cost nothing; the n-th failure after them
    /// opens a wait of 2^(n-free) s.
    pub login_free_per_address_ip: u32,
    /// The same across every IP (an IP that logged into the account lately is exempt).
    pub login_free_per_address: u32,
    /// Login failures one IP may make across all addresses per bucket (credential stuffing).
    pub login_failures_per_ip: u32,
    pub login_ip_bucket_secs: i64,
    /// How long a login failure record outlives its last failure.
    pub login_record_secs: i64,
    /// An IP that logged into an account within this long is exempt from its address scope.
    pub login_known_ip_secs: i64,
    /// `current_password` failures (password change, delete) per user that cost nothing.
    pub password_proof_free: u32,
    /// No login or password-proof wait is longer than this (TOTP and emergency codes keep
    /// django-otp's own 15-minute cap).
    pub backoff_cap_secs: i64,
    pub signups_per_ip_per_hour: u32,
    pub reset_mail_interval_secs: i64,
    pub reset_mails_per_address_per_day: u32,
    pub reset_requests_per_ip_per_hour: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            login_free_per_address_ip: 5,
            login_free_per_address: 20,
            login_failures_per_ip: 50,
            login_ip_bucket_secs: 600,
            login_record_secs: 24 * 3600,
            login_known_ip_secs: 30 * 24 * 3600,
            password_proof_free: 5,
            backoff_cap_secs: 15 * 60,
            signups_per_ip_per_hour: 20,
            reset_mail_interval_secs: 60,
            reset_mails_per_address_per_day: 5,
            reset_requests_per_ip_per_hour: 20,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub mode: Mode,
    pub data_dir: PathBuf,
    pub storage: StorageConfig,
    pub mailer: MailerKind,
    pub token_lifetime_secs: i64,
    /// The JWT `iss` and `aud` every token carries and must carry.
    pub jwt_issuer: String,
    pub jwt_audience: String,
    pub logout_on_password_change: bool,
    /// Mail the owner a notice of security changes (docs/api.md#security-events).
    pub notify_security_events: bool,
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
    /// Peers whose `X-Forwarded-For` is believed (none by default).
    pub trusted_proxies: Vec<Cidr>,
    pub argon2: Argon2Cost,
    pub limits: Limits,
    /// No token or refresh lives past this long after its password proof.
    pub session_max_secs: i64,
    /// A refresh token older than this (since its session's last rotation) is refused.
    pub refresh_lifetime_secs: i64,
    /// The previous refresh generation is answered again for this long after a rotation.
    pub refresh_reuse_secs: i64,
    /// Two-factor changes need a password proven this recently.
    pub reauth_secs: i64,
    /// A lost-authenticator recovery waits this long before it removes the device.
    pub recovery_delay_secs: i64,
    /// Recovery and activation links expire after this long.
    pub link_lifetime_secs: i64,
    /// No recovery can start this soon after a completed reset.
    pub recovery_after_reset_secs: i64,
    pub recovery_url_template: String,
    /// djoser's `SEND_ACTIVATION_EMAIL`: new accounts wait for a mailed activation link.
    pub send_activation_email: bool,
    pub activation_url_template: String,
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
            jwt_issuer: "Accounts".into(),
            jwt_audience: "accounts".into(),
            logout_on_password_change: false,
            notify_security_events: true,
            password_reset_timeout_secs: 86_400,
            reset_min_duration_ms: 250,
            site_name: "Accounts".into(),
            frontend_url: "http://localhost:3000".into(),
            reset_url_template: "{frontend_url}/password/reset/confirm/{uid}/{token}".into(),
            mail_from: "no-reply@accounts.example.com".into(),
            totp_issuer: "Accounts".into(),
            max_body_bytes: 64 * 1024,
            cors_allowed_origins: Vec::new(),
            trusted_proxies: Vec::new(),
            argon2: Argon2Cost::default(),
            limits: Limits::default(),
            session_max_secs: 30 * 24 * 3600,
            reauth_secs: 300,
            refresh_lifetime_secs: 14 * 24 * 3600,
            refresh_reuse_secs: 10,
            recovery_delay_secs: 72 * 3600,
            link_lifetime_secs: 24 * 3600,
            recovery_after_reset_secs: 7 * 24 * 3600,
            recovery_url_template: "{frontend_url}/totp/recovery/{uid}/{token}".into(),
            send_activation_email: false,
            activation_url_template: "{frontend_url}/activate/{uid}/{token}".into(),
        }
    }
}

/// An address range, `10.0.0.0/8` or a single address (`TRUSTED_PROXIES`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix.parse::<u8>().ok()?)),
            None => (text, None),
        };
        let network: IpAddr = address.parse().ok()?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Self { network, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_eq(u32::from(net).into(), u32::from(ip).into(), self.prefix, 32)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(u128::from(net), u128::from(ip), self.prefix, 128)
            }
            _ => false,
        }
    }
}

fn prefix_eq(a: u128, b: u128, prefix: u8, bits: u32) -> bool {
    if prefix == 0 {
        return true;
    }
    let shift = bits - u32::from(prefix);
    (a >> shift) == (b >> shift)
}
