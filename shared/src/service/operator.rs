//! Operator operations (`accounts-admin`, SPEC §12): the same store port and domain the API
//! uses, with no second path to the data. Nothing here prints or returns a secret.

use crate::domain::client_ip::ClientIp;
use crate::domain::events::{NoticeFacts, Origin, QueueKind, SecurityEvent};
use crate::domain::records::{SealedSecret, User, UserId};
use crate::domain::totp;
use crate::store::{Effects, PageCursor};
use crate::Error;

use super::two_factor::seal_context;
use super::{random_id, Service};

/// Users read per page by the scans of `stats` and `rotate-keys`.
const PAGE: u32 = 500;

/// What `stats` counts (one scan of the users).
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    pub users: u64,
    pub disabled: u64,
    pub two_factor: u64,
    pub unconfirmed_totp: u64,
    pub with_emergency_codes: u64,
    pub legacy_password_hashes: u64,
    pub never_logged_in: u64,
    pub highest_id: u64,
}

/// What `rotate-keys` did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Rotation {
    pub devices: u64,
    pub already_current: u64,
    pub resealed: u64,
    /// Changed between the read and the write (re-run to cover them).
    pub raced: u64,
    /// Sealed under a key that is not configured: cannot be opened (configure the old key in
    /// `TOTP_ENCRYPTION_PREVIOUS_KEYS` and run again).
    pub unopenable: Vec<UserId>,
}

impl Service {
    /// A TOTP secret sealed under the current key, bound to its user and device.
    pub fn seal_totp_secret(&self, user: &User, device_id: &str, secret: &[u8]) -> SealedSecret {
        self.keys.totp.seal(secret, &seal_context(user, device_id))
    }

    /// The stored (keyed-hash) form of an emergency code of `user`.
    pub fn emergency_code_hash(&self, user: UserId, code: &str) -> String {
        totp::emergency_code_hash(&self.keys.emergency_codes, user, code)
    }

    /// A user by id (all digits) or address (case-insensitively).
    pub async fn find_user(&self, who: &str) -> Result<Option<User>, Error> {
        let who = who.trim();
        if !who.is_empty() && who.bytes().all(|b| b.is_ascii_digit()) {
            return match who.parse() {
                Ok(id) => Ok(self.store.user(UserId(id)).await?),
                Err(_) => Ok(None),
            };
        }
        Ok(self
            .store
            .user_by_email(&crate::domain::email::normalize(who))
            .await?)
    }

    /// Disables an account and ends its sessions (SPEC §10 "Disabled").
    pub async fn disable_user(&self, id: UserId) -> Result<bool, Error> {
        Ok(self
            .store
            .set_disabled(id, true, Some(&random_id()))
            .await?)
    }

    pub async fn enable_user(&self, id: UserId) -> Result<bool, Error> {
        Ok(self.store.set_disabled(id, false, None).await?)
    }

    /// Ends every session of the user (and so every token it holds).
    pub async fn end_sessions(&self, id: UserId) -> Result<bool, Error> {
        let effects = Effects {
            events: vec![self.trail_event(SecurityEvent::SessionsRevoked, id, &operator())],
            mail: Vec::new(),
        };
        Ok(self
            .store
            .rotate_token_gen(id, &random_id(), &effects)
            .await?)
    }

    /// Removes the TOTP device and emergency codes (after a support check), ends every session,
    /// and queues the user's notice in the same write. Answers whether the user still existed.
    pub async fn remove_two_factor_by_operator(&self, user: &User) -> Result<bool, Error> {
        let origin = operator();
        let mut effects = self.effects(SecurityEvent::TotpRemoved, user, &origin, None);
        // An operator's removal is noticed even with notices off: it is not the user's act.
        if effects.mail.is_empty() {
            let facts = NoticeFacts {
                event: SecurityEvent::TotpRemoved,
                at: self.now(),
                ip: origin.ip.key(),
                codes_left: None,
            };
            effects
                .mail
                .push(self.queue_item(user, QueueKind::Notice(facts)));
        }
        if !self
            .store
            .remove_two_factor(user.id, &random_id(), &effects)
            .await?
        {
            return Ok(false);
        }
        self.log_effects(&effects, &origin);
        Ok(true)
    }

    /// Deletes the user with its email claim (the same cascade as the API's delete); its
    /// trail is purged by the mailer after.
    pub async fn delete_by_operator(&self, user: &User) -> Result<bool, Error> {
        let effects = Effects {
            events: Vec::new(),
            mail: vec![self.queue_item(user, QueueKind::PurgeUser)],
        };
        let deleted = self
            .store
            .delete_user(user, &user.token_gen, &effects)
            .await?;
        if deleted {
            self.queue_signal.notify_one();
        }
        Ok(deleted)
    }

    /// Calls `each` for every user, page by page (bounded memory).
    pub async fn for_each_user(
        &self,
        mut each: impl FnMut(User) -> Result<(), Error> + Send,
    ) -> Result<(), Error> {
        let mut cursor: Option<PageCursor> = None;
        loop {
            let page = self.store.users_page(cursor, PAGE).await?;
            for user in page.users {
                each(user)?;
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok(()),
            }
        }
    }

    pub async fn stats(&self) -> Result<Stats, Error> {
        let mut stats = Stats::default();
        self.for_each_user(|user| {
            stats.users += 1;
            stats.disabled += u64::from(user.disabled);
            stats.two_factor += u64::from(user.confirmed_totp().is_some());
            stats.unconfirmed_totp += u64::from(user.totp.as_ref().is_some_and(|d| !d.confirmed));
            stats.with_emergency_codes += u64::from(
                user.static_codes
                    .as_ref()
                    .is_some_and(|c| !c.hashes.is_empty()),
            );
            stats.legacy_password_hashes +=
                u64::from(user.password_hash.starts_with("pbkdf2_sha256$"));
            stats.never_logged_in += u64::from(user.last_login.is_none());
            stats.highest_id = stats.highest_id.max(user.id.0);
            Ok(())
        })
        .await?;
        Ok(stats)
    }

    /// Re-encrypts every TOTP secret not sealed under the current key (SPEC §12 `rotate-keys`).
    /// Each write is conditional on the ciphertext read, so a device changed meanwhile is left
    /// alone (and counted as raced). Idempotent.
    pub async fn rotate_totp_keys(&self, dry_run: bool) -> Result<Rotation, Error> {
        let mut rotation = Rotation::default();
        let current = self.keys.totp.current_version();
        let mut stale = Vec::new();
        self.for_each_user(|user| {
            if let Some(device) = &user.totp {
                rotation.devices += 1;
                if device.secret.key_version == current {
                    rotation.already_current += 1;
                } else {
                    stale.push(user.id);
                }
            }
            Ok(())
        })
        .await?;
        // Stale devices are re-read one by one: only their ids were kept.
        for id in stale {
            let Some(user) = self.store.user(id).await? else {
                rotation.raced += 1;
                continue;
            };
            let Some(device) = &user.totp else {
                rotation.raced += 1;
                continue;
            };
            let context = seal_context(&user, &device.device_id);
            let Ok(secret) = self.keys.totp.open(&device.secret, &context) else {
                rotation.unopenable.push(user.id);
                continue;
            };
            if dry_run {
                rotation.resealed += 1;
                continue;
            }
            let resealed = self.keys.totp.seal(&secret, &context);
            match self
                .store
                .reseal_totp_secret(user.id, &device.device_id, &device.secret, resealed)
                .await?
            {
                true => rotation.resealed += 1,
                false => rotation.raced += 1,
            }
        }
        Ok(rotation)
    }
}

/// The origin of an operator's actions (no client IP: the CLI runs beside the store).
fn operator() -> Origin {
    Origin::new(ClientIp::unknown(), "accounts-admin", "")
}
