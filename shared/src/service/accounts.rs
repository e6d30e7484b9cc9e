//! Accounts and login: create, login, view, logout everywhere, delete, change password.

use crate::email::{normalize, Email};
use crate::error::{AuthFailure, FieldErrors};
use crate::password::{self, Password, Verified};
use crate::store::{Created, NewUser, PasswordUpdate, User};
use crate::totp::backoff_wait;
use crate::Error;

use super::{random_id, Principal, Service};

pub const EMAIL_TAKEN: &str = "user with this email address already exists.";
pub const BAD_CREDENTIALS: &str = "Unable to log in with provided credentials.";
pub const INVALID_PASSWORD: &str = "Invalid password.";
/// Login failures that cost nothing; after n ≥ 5 the wait is 2^(n-5) s (SPEC §7).
pub const FREE_LOGIN_FAILURES: u32 = 5;
/// How long a failure record outlives its last failure.
const LOGIN_FAILURE_TTL_SECS: i64 = 24 * 3600;

impl Service {
    /// Whether an address is already registered (reported as a field error beside others).
    pub async fn email_registered(&self, email: &Email) -> Result<bool, Error> {
        Ok(self
            .store
            .user_by_email(email.normalized())
            .await?
            .is_some())
    }

    /// Creates an account: uniqueness (case-insensitive), then Django's validators, then the
    /// argon2id hash, then one atomic insert that a racing duplicate cannot also win.
    pub async fn create_user(&self, email: Email, password: Password) -> Result<User, Error> {
        if self.email_registered(&email).await? {
            return Err(Error::field("email", EMAIL_TAKEN));
        }
        let problems = password::validate(password.expose(), email.as_str());
        if !problems.is_empty() {
            return Err(Error::Fields(FieldErrors::from_messages(
                "password", problems,
            )));
        }
        let password_hash = self.hasher.hash(&password).await?;
        let new = NewUser {
            email: email.as_str().to_owned(),
            email_norm: email.normalized().to_owned(),
            password_hash,
            token_gen: random_id(),
            created_at: self.now(),
        };
        match self.store.create_user(new).await? {
            Created::User(user) => Ok(*user),
            Created::EmailTaken => Err(Error::field("email", EMAIL_TAKEN)),
        }
    }

    /// Email + password to a token. Every credential failure reads the same and costs the same
    /// hashing time; failures are throttled per address whether or not it has an account.
    pub async fn login(&self, email_text: &str, password: &Password) -> Result<String, Error> {
        let key = normalize(email_text);
        let now = self.now();
        let (user, failures) = self.store.login_lookup(&key, now).await?;
        if let Some(wait) = backoff_wait(failures, now, FREE_LOGIN_FAILURES) {
            return Err(Error::Throttled {
                wait_seconds: wait as u64,
            });
        }
        let verified = match &user {
            Some(user) => self.hasher.verify(password, &user.password_hash).await?,
            None => self.hasher.verify_nobody(password).await?,
        };
        let user = match (user, verified.ok()) {
            (Some(user), true) => user,
            _ => {
                self.store
                    .record_login_failure(&key, now, now + LOGIN_FAILURE_TTL_SECS)
                    .await?;
                return Err(Error::non_field(BAD_CREDENTIALS));
            }
        };
        if failures.count > 0 {
            self.store.clear_login_failures(&key).await?;
        }
        if verified == Verified::YesRehash {
            self.upgrade_hash(&user, password).await;
        }
        Ok(self.issue_token(&user, None))
    }

    /// Rehashes a legacy (pbkdf2) or weaker hash to the current argon2id cost. Best effort: a
    /// failure leaves the old, still valid, hash in place.
    async fn upgrade_hash(&self, user: &User, password: &Password) {
        let result = async {
            let new_hash = self.hasher.hash(password).await?;
            let update = PasswordUpdate {
                expected_hash: user.password_hash.clone(),
                new_hash,
                new_token_gen: None,
                last_login: None,
            };
            self.store.update_password(user.id, update).await?;
            Ok::<_, Error>(())
        }
        .await;
        if let Err(err) = result {
            tracing::warn!(user_id = %user.id, error = %err, "password hash upgrade failed");
        }
    }

    /// Ends every session of the user: all tokens carry the old generation.
    pub async fn logout_all(&self, principal: &Principal) -> Result<(), Error> {
        if self
            .store
            .rotate_token_gen(principal.user.id, &random_id())
            .await?
        {
            Ok(())
        } else {
            Err(Error::Unauthenticated(AuthFailure::UnknownUser))
        }
    }

    pub async fn check_current_password(
        &self,
        user: &User,
        password: &Password,
    ) -> Result<bool, Error> {
        Ok(self
            .hasher
            .verify(password, &user.password_hash)
            .await?
            .ok())
    }

    /// Deletes the account with its devices and codes (they live on the user item).
    pub async fn delete_account(&self, principal: &Principal) -> Result<(), Error> {
        let user = &principal.user;
        if self.store.delete_user(user, &user.token_gen).await? {
            Ok(())
        } else {
            // The token was revoked (or the user deleted) while this request ran.
            Err(Error::Unauthenticated(AuthFailure::DecodeError))
        }
    }

    /// Sets a new password after the current one was checked. Tokens stay valid unless
    /// `LOGOUT_ON_PASSWORD_CHANGE` (djoser's setting) is on.
    pub async fn change_password(&self, user: &User, new_password: &Password) -> Result<(), Error> {
        let problems = password::validate(new_password.expose(), &user.email);
        if !problems.is_empty() {
            return Err(Error::Fields(FieldErrors::from_messages(
                "new_password",
                problems,
            )));
        }
        let update = PasswordUpdate {
            expected_hash: user.password_hash.clone(),
            new_hash: self.hasher.hash(new_password).await?,
            new_token_gen: self.settings.logout_on_password_change.then(random_id),
            last_login: None,
        };
        if self.store.update_password(user.id, update).await? {
            Ok(())
        } else {
            // Changed concurrently: the password this request proved is no longer current.
            Err(Error::field("current_password", INVALID_PASSWORD))
        }
    }
}
