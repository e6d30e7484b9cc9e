//! The records the domain works on: a user with its TOTP device and emergency codes. Stores
//! persist them (each adapter maps them in one module); nothing here knows how.

use serde::{Deserialize, Serialize};

use crate::domain::session::Sessions;

/// A user's numeric id: positive, unique, never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct UserId(pub u64);

impl std::fmt::Display for UserId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: UserId,
    /// As stored (domain part lowercased), and as answered to clients.
    pub email: String,
    /// Lowercased whole address: the uniqueness and login key.
    pub email_norm: String,
    pub password_hash: String,
    /// The revocation generation every token must carry (SPEC §5).
    pub token_gen: String,
    pub last_login: Option<i64>,
    pub created_at: i64,
    pub totp: Option<TotpDevice>,
    pub static_codes: Option<StaticCodes>,
    /// Signed up with `SEND_ACTIVATION_EMAIL` on and not activated yet: cannot log in.
    #[serde(default)]
    pub pending: bool,
    /// Set only by an operator (SPEC §10 "Disabled", §12): login is refused and every token
    /// dies. A reset never lifts it.
    #[serde(default)]
    pub disabled: bool,
    /// Lost-authenticator recovery (docs/api.md#recovery).
    #[serde(default)]
    pub recovery: Recovery,
    /// When a password reset last completed.
    #[serde(default)]
    pub reset_at: Option<i64>,
    /// The live sessions (docs/api.md#sessions).
    #[serde(default)]
    pub sessions: Sessions,
}

/// The recovery state of an account: a per-user nonce that every recovery link covers (it
/// changes when a recovery starts, is cancelled or completes, so a link works once), and the
/// end of the wait of a recovery under way.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recovery {
    pub nonce: String,
    pub until: Option<i64>,
}

impl User {
    /// The user's confirmed TOTP device: its presence switches the OTP gate on.
    pub fn confirmed_totp(&self) -> Option<&TotpDevice> {
        self.totp.as_ref().filter(|d| d.confirmed)
    }

    /// Whether `device_id` (a token's `otp_device_id`) names a live, confirmed device of this user.
    pub fn has_verified_device(&self, device_id: &str) -> bool {
        let totp = self
            .confirmed_totp()
            .is_some_and(|d| d.device_id == device_id);
        let codes = self
            .static_codes
            .as_ref()
            .is_some_and(|c| c.device_id == device_id);
        totp || codes
    }
}

/// Consecutive failures of a throttled secret and when the last one happened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failures {
    pub count: u32,
    pub last_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TotpDevice {
    /// The persistent id tokens carry as `otp_device_id` (django-otp style).
    pub device_id: String,
    pub secret: SealedSecret,
    pub confirmed: bool,
    /// Last accepted time step; a code for this step or an earlier one is a replay.
    pub last_step: i64,
    pub drift: i64,
    pub failures: Failures,
}

/// A TOTP secret encrypted at rest: which key sealed it, and nonce || ciphertext.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedSecret {
    pub key_version: u32,
    pub sealed: Vec<u8>,
}

impl std::fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SealedSecret(v{}, ..)", self.key_version)
    }
}

/// The emergency-code device: keyed hashes of the unused codes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaticCodes {
    pub device_id: String,
    /// Hex HMACs of the unused codes. May be empty once all are used.
    pub hashes: Vec<String>,
    pub failures: Failures,
}

/// What a new user is created with; the store assigns the id.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: String,
    pub email_norm: String,
    pub password_hash: String,
    pub token_gen: String,
    pub created_at: i64,
    /// Waits for activation (`SEND_ACTIVATION_EMAIL`).
    pub pending: bool,
}

impl NewUser {
    /// The stored user once an adapter has allocated its id: no login yet, no two-factor.
    pub fn into_user(self, id: UserId) -> User {
        User {
            id,
            email: self.email,
            email_norm: self.email_norm,
            password_hash: self.password_hash,
            token_gen: self.token_gen,
            last_login: None,
            created_at: self.created_at,
            totp: None,
            static_codes: None,
            pending: self.pending,
            disabled: false,
            recovery: Recovery::default(),
            reset_at: None,
            sessions: Sessions::default(),
        }
    }
}
