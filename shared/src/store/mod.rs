//! The storage port. Every method is one atomic operation on the backing store (one DynamoDB
//! call or transaction, one embedded write transaction), so each race in SPEC.md has exactly one
//! winner. Conditional writes answer `Ok(false)` when their condition did not hold.

pub mod dynamo;
pub mod embedded;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

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
        }
    }
}

/// A password replacement, applied only if the hash is still the one the caller saw.
#[derive(Debug, Clone)]
pub struct PasswordUpdate {
    pub expected_hash: String,
    pub new_hash: String,
    /// Rotate the token generation too (ends every session).
    pub new_token_gen: Option<String>,
    pub last_login: Option<i64>,
}

/// A TOTP code accepted at `step`: applied only if the device is the one seen, its failure count
/// is unchanged since it was read (so concurrent guesses cannot all be judged against one state),
/// and `step` is later than the last accepted one (replay protection).
#[derive(Debug, Clone)]
pub struct TotpAccept {
    pub device_id: String,
    pub seen_failures: u32,
    pub step: i64,
    pub drift: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached or refused the call for a reason not of the client's making.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// An item exists but cannot be read back into a record.
    #[error("corrupt item: {0}")]
    Corrupt(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Outcome of [`Store::create_user`].
#[derive(Debug)]
pub enum Created {
    /// Boxed: a user record is large and this enum is returned by value.
    User(Box<User>),
    EmailTaken,
}

/// Outcome of [`Store::insert_totp_device`].
#[derive(Debug)]
pub enum TotpInsert {
    Inserted,
    /// A device already existed (possibly inserted by a racing request): here it is.
    Existing(TotpDevice),
    UserGone,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Allocates a fresh id and inserts the user together with its email claim, atomically.
    async fn create_user(&self, new: NewUser) -> StoreResult<Created>;

    async fn user(&self, id: UserId) -> StoreResult<Option<User>>;

    async fn user_by_email(&self, email_norm: &str) -> StoreResult<Option<User>>;

    /// Login's read: the account (if any) and the address's failure record, in as few calls as
    /// the store allows.
    /// The account of an address (if any) and its login failures still alive at `now`.
    async fn login_lookup(
        &self,
        email_norm: &str,
        now: i64,
    ) -> StoreResult<(Option<User>, Failures)>;

    /// Counts one failed login for an address (account or not); the record expires at `expires_at`.
    async fn record_login_failure(
        &self,
        email_norm: &str,
        now: i64,
        expires_at: i64,
    ) -> StoreResult<()>;

    async fn clear_login_failures(&self, email_norm: &str) -> StoreResult<()>;

    /// Claims the right to send a reset mail to an address: true if no mail was sent in the last
    /// `window` seconds (and records `now`), false otherwise.
    async fn claim_reset_mail(&self, email_norm: &str, now: i64, window: i64) -> StoreResult<bool>;

    /// Replaces the token generation (logout of all devices). False if the user is gone.
    async fn rotate_token_gen(&self, id: UserId, new_gen: &str) -> StoreResult<bool>;

    /// Deletes the user and its email claim, only if its token generation is still `seen_gen`.
    async fn delete_user(&self, user: &User, seen_gen: &str) -> StoreResult<bool>;

    async fn update_password(&self, id: UserId, update: PasswordUpdate) -> StoreResult<bool>;

    async fn insert_totp_device(&self, id: UserId, device: TotpDevice) -> StoreResult<TotpInsert>;

    async fn accept_totp(&self, id: UserId, accept: TotpAccept) -> StoreResult<bool>;

    /// Counts a failed TOTP attempt if the failure count is still `seen_failures`.
    async fn record_totp_failure(
        &self,
        id: UserId,
        device_id: &str,
        seen_failures: u32,
        now: i64,
    ) -> StoreResult<bool>;

    /// Replaces all emergency codes, only while `totp_device_id` is a confirmed device.
    async fn replace_static_codes(
        &self,
        id: UserId,
        totp_device_id: &str,
        codes: StaticCodes,
    ) -> StoreResult<bool>;

    /// Uses one emergency code (removes its hash) if it is unused and the failure count is still
    /// `seen_failures`; resets code and TOTP failures (an emergency code lifts the TOTP lockout).
    async fn consume_static_code(
        &self,
        id: UserId,
        hash: &str,
        seen_failures: u32,
    ) -> StoreResult<bool>;

    async fn record_static_failure(
        &self,
        id: UserId,
        seen_failures: u32,
        now: i64,
    ) -> StoreResult<bool>;

    /// Removes the TOTP device and the emergency codes and rotates the token generation.
    async fn remove_two_factor(&self, id: UserId, new_gen: &str) -> StoreResult<bool>;
}
