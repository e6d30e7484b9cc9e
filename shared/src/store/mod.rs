//! The storage port. Every method is one atomic operation on the backing store (one DynamoDB
//! call or transaction, one embedded write transaction), so each race in SPEC.md has exactly one
//! winner. Conditional writes answer `Ok(false)` when their condition did not hold.

pub mod dynamo;
#[cfg(feature = "embedded-store")]
pub mod embedded;

use async_trait::async_trait;

use crate::domain::events::{QueueItem, TrailEvent};
use crate::domain::records::{
    NewUser, Recovery, SealedSecret, StaticCodes, TotpDevice, User, UserId,
};
use crate::domain::session::{SessionDetails, SessionState, Sessions};
use crate::domain::throttle::Counter;

/// Which abuse-limit counter (docs/data-model.md#abuse-limit-counters). Windows are the start of
/// their fixed window (seconds since the epoch).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CounterKey {
    LoginAddressIp { email_norm: String, ip: String },
    LoginAddress { email_norm: String },
    LoginIp { ip: String, window: i64 },
    PasswordProof { user: UserId },
    SignUpIp { ip: String, window: i64 },
    ResetIp { ip: String, window: i64 },
    ResetMails { email_norm: String, window: i64 },
}

/// Keeps a key part within DynamoDB's key size whatever a client typed (an address is at most
/// 254 characters, but NFC may triple a character's bytes, and a login may type anything):
/// long parts are replaced by their SHA-256. No real address is that long, so no account's key
/// changes.
pub fn bounded(part: &str) -> String {
    use sha2::Digest;
    if part.len() <= 512 {
        return part.to_owned();
    }
    let digest = sha2::Sha256::digest(part.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

impl CounterKey {
    /// The partition the counter lives in (the same layout on both stores).
    pub fn partition(&self) -> String {
        match self {
            Self::LoginAddressIp { email_norm, .. }
            | Self::LoginAddress { email_norm }
            | Self::ResetMails { email_norm, .. } => format!("THROTTLE#{}", bounded(email_norm)),
            Self::LoginIp { ip, .. } | Self::SignUpIp { ip, .. } | Self::ResetIp { ip, .. } => {
                format!("IP#{ip}")
            }
            Self::PasswordProof { user } => format!("USER#{user}"),
        }
    }

    pub fn sort(&self) -> String {
        match self {
            Self::LoginAddressIp { ip, .. } => format!("LOGIN#{ip}"),
            Self::LoginAddress { .. } => "LOGIN".to_owned(),
            Self::LoginIp { window, .. } => format!("LOGIN#{window}"),
            Self::PasswordProof { .. } => "PROOF".to_owned(),
            Self::SignUpIp { window, .. } => format!("CREATE#{window}"),
            Self::ResetIp { window, .. } => format!("RESET#{window}"),
            Self::ResetMails { window, .. } => format!("RESETMAILS#{window}"),
        }
    }
}

/// A counter to write, and when its record may be forgotten (the TTL).
#[derive(Debug, Clone)]
pub struct CounterWrite {
    pub key: CounterKey,
    pub counter: Counter,
    pub expires_at: i64,
    /// Written only if the stored version is still the one before `counter.version`; false:
    /// written whatever is stored (a success resetting its scopes).
    pub conditional: bool,
}

/// What a change leaves behind, written in the same atomic write as the change: its trail
/// events and its queued mail. A change and its notice happen together or not at all.
#[derive(Debug, Clone, Default)]
pub struct Effects {
    pub events: Vec<TrailEvent>,
    pub mail: Vec<QueueItem>,
}

impl Effects {
    pub fn none() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.mail.is_empty()
    }
}

/// Outcome of [`Store::claim_queued`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This delivery holds the item now.
    Claimed(QueueItem),
    /// Another delivery holds it (it may have crashed: try again after its claim).
    Busy,
    /// Delivered and removed already.
    Gone,
}

/// Failed and throttled logins of an address in one hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FailureHour {
    pub hour: i64,
    pub failed: u32,
    pub throttled: u32,
}

/// How long trail events are kept.
pub const TRAIL_SECS: i64 = 90 * 24 * 3600;

/// A password replacement, applied only if the hash is still the one the caller saw.
#[derive(Debug, Clone)]
pub struct PasswordUpdate {
    pub expected_hash: String,
    pub new_hash: String,
    /// Rotate the token generation too (ends every session).
    pub new_token_gen: Option<String>,
    pub last_login: Option<i64>,
    /// Reset the TOTP failure count (a completed reset lifts the TOTP hard limit).
    pub clear_totp_failures: bool,
    /// A completed reset: when, and it activates a pending account (the mailbox was proven).
    pub reset_at: Option<i64>,
    /// The recovery state to set (a change or reset cancels a recovery under way).
    pub recovery: Option<Recovery>,
    /// The sessions that remain (a reset ends them all; a change all but the caller's).
    pub sessions: Option<Sessions>,
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
    async fn create_user(&self, new: NewUser, effects: &Effects) -> StoreResult<Created>;

    async fn user(&self, id: UserId) -> StoreResult<Option<User>>;

    async fn user_by_email(&self, email_norm: &str) -> StoreResult<Option<User>>;

    /// Login's read: the account of an address (if any) and the counters of its limits, in as
    /// few calls as the store allows. Counters answer in the order of `counters`; a missing
    /// record, or one expired at `now`, reads as the default (keeping its version, if stored).
    async fn login_lookup(
        &self,
        email_norm: &str,
        counters: &[CounterKey],
        now: i64,
    ) -> StoreResult<(Option<User>, Vec<Counter>)>;

    /// Counters, as `login_lookup` reads them.
    async fn counters(&self, keys: &[CounterKey], now: i64) -> StoreResult<Vec<Counter>>;

    /// Writes every counter, all or none: false when a conditional one is no longer at the
    /// version before the one it carries (another request counted first).
    async fn swap_counters(&self, writes: &[CounterWrite], effects: &Effects) -> StoreResult<bool>;

    async fn delete_counters(&self, keys: &[CounterKey]) -> StoreResult<()>;

    /// Claims the right to send a reset mail to an address: true if no mail was sent in the last
    /// `window` seconds (and records `now`), false otherwise.
    async fn claim_reset_mail(&self, email_norm: &str, now: i64, window: i64) -> StoreResult<bool>;

    /// Replaces the token generation (logout of all devices). False if the user is gone.
    async fn rotate_token_gen(
        &self,
        id: UserId,
        new_gen: &str,
        effects: &Effects,
    ) -> StoreResult<bool>;

    /// Deletes the user and its email claim, only if its token generation is still `seen_gen`.
    async fn delete_user(
        &self,
        user: &User,
        seen_gen: &str,
        effects: &Effects,
    ) -> StoreResult<bool>;

    async fn update_password(
        &self,
        id: UserId,
        update: PasswordUpdate,
        effects: &Effects,
    ) -> StoreResult<bool>;

    async fn insert_totp_device(&self, id: UserId, device: TotpDevice) -> StoreResult<TotpInsert>;

    async fn accept_totp(
        &self,
        id: UserId,
        accept: TotpAccept,
        effects: &Effects,
    ) -> StoreResult<bool>;

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
        effects: &Effects,
    ) -> StoreResult<bool>;

    /// Uses one emergency code (removes its hash) if it is unused and the failure count is still
    /// `seen_failures`; resets code and TOTP failures (an emergency code lifts the TOTP lockout).
    async fn consume_static_code(
        &self,
        id: UserId,
        hash: &str,
        seen_failures: u32,
        effects: &Effects,
    ) -> StoreResult<bool>;

    async fn record_static_failure(
        &self,
        id: UserId,
        seen_failures: u32,
        now: i64,
    ) -> StoreResult<bool>;

    /// Removes the TOTP device and the emergency codes and rotates the token generation.
    async fn remove_two_factor(
        &self,
        id: UserId,
        new_gen: &str,
        effects: &Effects,
    ) -> StoreResult<bool>;

    // Sessions (docs/api.md#sessions). Ending every session is part of the writes that rotate
    // the token generation (logout-all, reset, two-factor removal, recovery), which also set
    // `sessions` to none.

    /// Adds or replaces one session (its hot part on the user item, and its details item if
    /// given), if its generation is still `seen_gen` (`None`: it must not exist yet, and the
    /// user must have fewer than [`crate::domain::session::MAX_SESSIONS`], or `evict` is
    /// ended in the same write).
    #[allow(clippy::too_many_arguments)]
    async fn put_session(
        &self,
        id: UserId,
        session: &str,
        seen_gen: Option<u64>,
        state: SessionState,
        evict: Option<&str>,
        details: Option<&SessionDetails>,
        effects: &Effects,
    ) -> StoreResult<bool>;

    /// Ends one session, if it is live.
    async fn end_session(&self, id: UserId, session: &str, effects: &Effects) -> StoreResult<bool>;

    /// The details of some sessions (those found).
    async fn session_details(
        &self,
        id: UserId,
        sessions: &[String],
    ) -> StoreResult<Vec<SessionDetails>>;

    // Recovery and activation (docs/api.md#recovery, docs/api.md#activation).

    /// Sets the recovery state, if it is still the one seen (its nonce and wait).
    async fn set_recovery(
        &self,
        id: UserId,
        seen: &Recovery,
        next: Recovery,
        effects: &Effects,
    ) -> StoreResult<bool>;

    /// A recovery whose wait is over: removes the TOTP device and the codes, rotates the token
    /// generation (every session ends) and sets the recovery state, if the wait is still the
    /// one seen.
    async fn complete_recovery(
        &self,
        id: UserId,
        seen_until: i64,
        new_gen: &str,
        next: Recovery,
        effects: &Effects,
    ) -> StoreResult<bool>;

    /// Activates a pending account; false if it is not pending (any more).
    async fn activate(&self, id: UserId, effects: &Effects) -> StoreResult<bool>;

    // Security events and the mail queue (docs/api.md#security-events).

    /// Writes events and a queued mail that no change carries (a login, a refused gate).
    async fn record(&self, effects: &Effects) -> StoreResult<()>;

    /// Counts a failed (or throttled) login of an address in its hour, account or not.
    async fn count_login_failure(
        &self,
        email_norm: &str,
        hour: i64,
        throttled: bool,
        expires_at: i64,
    ) -> StoreResult<()>;

    /// A user's events before `before` (a [`TrailEvent::position`], or `~` for all), newest
    /// first, at most `limit`.
    async fn trail(&self, user: UserId, before: &str, limit: usize)
        -> StoreResult<Vec<TrailEvent>>;

    /// An address's login-failure hours before `before_hour`, newest first, at most `limit`.
    async fn failure_hours(
        &self,
        email_norm: &str,
        before_hour: i64,
        limit: usize,
        now: i64,
    ) -> StoreResult<Vec<FailureHour>>;

    /// The ids of queued items, oldest first (key operations only: one queue partition).
    async fn queued(&self, limit: usize) -> StoreResult<Vec<String>>;

    /// Claims a queued item until `until`, if it is still queued and not claimed by another
    /// delivery whose claim is alive at `now`.
    async fn claim_queued(&self, id: &str, now: i64, until: i64) -> StoreResult<Claim>;

    async fn remove_queued(&self, id: &str) -> StoreResult<()>;

    /// Removes what a deleted user left behind (the trail).
    async fn purge_user(&self, user: UserId) -> StoreResult<()>;

    // Operator (accounts-admin) operations.

    /// Imports users with their own ids (SPEC §12), each one atomically with its email claim and
    /// only if neither its id nor its address exists. First moves the id counter past the
    /// highest id given, so no sign-up can be handed one of them. Answers one outcome per user,
    /// in order. Stores batch the writes as far as their conditions allow.
    async fn import_users(&self, users: Vec<User>) -> StoreResult<Vec<Imported>>;

    /// Sets or lifts *disabled* (SPEC §10). With `new_gen`, also rotates the token generation
    /// (disabling does, so that enabling again does not revive old tokens). False if the user is
    /// gone.
    async fn set_disabled(
        &self,
        id: UserId,
        disabled: bool,
        new_gen: Option<&str>,
    ) -> StoreResult<bool>;

    /// One page of users in no promised order; `after` is the previous page's `next`.
    async fn users_page(&self, after: Option<PageCursor>, limit: u32) -> StoreResult<UserPage>;

    /// Replaces a TOTP secret's ciphertext (key rotation), only if the device and the sealed
    /// secret are still the ones seen.
    async fn reseal_totp_secret(
        &self,
        id: UserId,
        device_id: &str,
        seen: &SealedSecret,
        resealed: SealedSecret,
    ) -> StoreResult<bool>;
}

/// Outcome of one user of [`Store::import_users`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Imported {
    Inserted,
    /// A user with this id exists (a previous import, or an id taken since).
    IdTaken,
    /// Another account has this address (case-insensitively).
    EmailTaken,
}

/// Where a [`Store::users_page`] scan goes on: opaque to callers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageCursor(pub String);

#[derive(Debug)]
pub struct UserPage {
    pub users: Vec<User>,
    pub next: Option<PageCursor>,
}

impl From<StoreError> for crate::Error {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(why) => Self::Unavailable(why),
            StoreError::Corrupt(why) => Self::Internal(why),
        }
    }
}
