//! Security events (docs/api.md#security-events): what happened to an account, where from, and
//! what is mailed about it. An event never carries a password, token, code, secret or link.

use serde::{Deserialize, Serialize};

use crate::domain::client_ip::ClientIp;
use crate::domain::records::UserId;

/// User agents are kept to this many characters in logs and the trail.
pub const MAX_USER_AGENT_CHARS: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SecurityEvent {
    #[serde(rename = "login.succeeded")]
    LoginSucceeded,
    #[serde(rename = "login.failed")]
    LoginFailed,
    #[serde(rename = "login.throttled")]
    LoginThrottled,
    #[serde(rename = "otp.succeeded")]
    OtpSucceeded,
    #[serde(rename = "otp.failed")]
    OtpFailed,
    #[serde(rename = "otp.gate_refused")]
    OtpGateRefused,
    #[serde(rename = "password.changed")]
    PasswordChanged,
    #[serde(rename = "password.reset_requested")]
    PasswordResetRequested,
    #[serde(rename = "password.reset_completed")]
    PasswordResetCompleted,
    #[serde(rename = "totp.enabled")]
    TotpEnabled,
    #[serde(rename = "totp.removed")]
    TotpRemoved,
    #[serde(rename = "codes.generated")]
    CodesGenerated,
    #[serde(rename = "code.used")]
    CodeUsed,
    #[serde(rename = "recovery.started")]
    RecoveryStarted,
    #[serde(rename = "recovery.cancelled")]
    RecoveryCancelled,
    #[serde(rename = "recovery.completed")]
    RecoveryCompleted,
    #[serde(rename = "sessions.revoked")]
    SessionsRevoked,
    #[serde(rename = "session.revoked")]
    SessionRevoked,
    #[serde(rename = "account.activated")]
    AccountActivated,
    #[serde(rename = "account.deleted")]
    AccountDeleted,
}

impl SecurityEvent {
    pub fn name(self) -> &'static str {
        match self {
            Self::LoginSucceeded => "login.succeeded",
            Self::LoginFailed => "login.failed",
            Self::LoginThrottled => "login.throttled",
            Self::OtpSucceeded => "otp.succeeded",
            Self::OtpFailed => "otp.failed",
            Self::OtpGateRefused => "otp.gate_refused",
            Self::PasswordChanged => "password.changed",
            Self::PasswordResetRequested => "password.reset_requested",
            Self::PasswordResetCompleted => "password.reset_completed",
            Self::TotpEnabled => "totp.enabled",
            Self::TotpRemoved => "totp.removed",
            Self::CodesGenerated => "codes.generated",
            Self::CodeUsed => "code.used",
            Self::RecoveryStarted => "recovery.started",
            Self::RecoveryCancelled => "recovery.cancelled",
            Self::RecoveryCompleted => "recovery.completed",
            Self::SessionsRevoked => "sessions.revoked",
            Self::SessionRevoked => "session.revoked",
            Self::AccountActivated => "account.activated",
            Self::AccountDeleted => "account.deleted",
        }
    }

    /// What a notice mail says happened, for the events the owner is told about.
    pub fn notice(self) -> Option<&'static str> {
        Some(match self {
            Self::PasswordChanged => "your password was changed",
            Self::PasswordResetCompleted => "your password was reset",
            Self::TotpEnabled => "two-factor authentication was turned on",
            Self::TotpRemoved => "two-factor authentication was turned off",
            Self::CodesGenerated => "new emergency codes were created",
            Self::CodeUsed => "an emergency code was used",
            Self::AccountDeleted => "your account was deleted",
            Self::RecoveryStarted => {
                "a recovery of your account's two-factor authentication was started"
            }
            Self::RecoveryCancelled => "the two-factor recovery of your account was cancelled",
            Self::RecoveryCompleted => {
                "two-factor authentication was removed from your account by a recovery"
            }
            _ => return None,
        })
    }
}

/// Where a request came from, for events and their log lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub ip: ClientIp,
    /// At most [`MAX_USER_AGENT_CHARS`] characters.
    pub user_agent: String,
    pub request_id: String,
}

impl Origin {
    pub fn new(ip: ClientIp, user_agent: &str, request_id: &str) -> Self {
        Self {
            ip,
            user_agent: user_agent.chars().take(MAX_USER_AGENT_CHARS).collect(),
            request_id: request_id.to_owned(),
        }
    }

    /// A request with no known origin (direct calls in tests and tools).
    pub fn unknown() -> Self {
        Self::new(ClientIp::unknown(), "", "")
    }
}

/// One event of a user's trail, as stored (TTL 90 days) and shown by `GET /api/user/events/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrailEvent {
    pub user: UserId,
    pub event: SecurityEvent,
    pub at: i64,
    pub ip: String,
    pub user_agent: String,
    /// Random: orders events of one second and keeps their keys apart.
    pub id: String,
    /// Failed and throttled logins are shown as per-hour counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
}

impl TrailEvent {
    /// The event's place in the trail: newest last when sorted, so pages run backwards.
    pub fn position(&self) -> String {
        format!("{:012}#{}", self.at, self.id)
    }
}

/// The facts a notice shows: never a secret, token, code or link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoticeFacts {
    pub event: SecurityEvent,
    pub at: i64,
    pub ip: String,
    /// For `code.used`: how many emergency codes remain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codes_left: Option<usize>,
}

/// What a queued mail is: the mailer renders it (and mints any link) when it sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum QueueKind {
    /// The reset link is minted at send time, from the account as it then is.
    PasswordReset,
    /// The lost-authenticator recovery link, minted at send time.
    RecoveryLink,
    /// The activation link (`SEND_ACTIVATION_EMAIL`), minted at send time.
    ActivationLink,
    Notice(NoticeFacts),
    /// Not a mail: remove what a deleted account left behind (its trail).
    PurgeUser,
}

/// An item of the durable mail queue: written in the same atomic write as the change it reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueItem {
    /// `<time:012>#<random>`: the queue's order and the item's key.
    pub id: String,
    pub user: UserId,
    /// The address as it was at the change (the account may be gone when it is sent).
    pub to: String,
    #[serde(flatten)]
    pub kind: QueueKind,
}

/// `YYYY-MM-DDTHH:MM:SSZ` for seconds since the epoch (UTC, proleptic Gregorian).
pub fn iso8601(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_matches_known_instants() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(iso8601(1_795_964_402), "2026-11-29T15:00:02Z");
    }

    #[test]
    fn event_names_serialise_as_the_spec_names_them() {
        let json = serde_json::to_string(&SecurityEvent::PasswordResetCompleted).unwrap();
        assert_eq!(json, "\"password.reset_completed\"");
        assert_eq!(SecurityEvent::CodeUsed.name(), "code.used");
    }

    #[test]
    fn a_user_agent_is_cut_to_256_characters() {
        let origin = Origin::new(ClientIp::unknown(), &"x".repeat(1000), "r");
        assert_eq!(origin.user_agent.chars().count(), MAX_USER_AGENT_CHARS);
    }
}
