//! Accounts and login: create, login, view, logout everywhere, delete, change password.

use crate::domain::email::{normalize, Email, MAX_EMAIL_CHARS};
use crate::domain::events::{Origin, QueueKind, SecurityEvent};
use crate::domain::password::{self, Password, Verified};
use crate::domain::records::{NewUser, User};
use crate::error::{AuthFailure, FieldErrors};
use crate::store::{Created, Effects, PasswordUpdate};
use crate::Error;

use super::limits::{reset_epoch, under_epoch};
use super::requests::{AccountDeletion, Credentials, Invalid, Parsed, PasswordChange, SignUp};
use super::sessions::Tokens;
use super::{random_id, Principal, Service};
use crate::domain::throttle::Counter;

pub const EMAIL_TAKEN: &str = "user with this email address already exists.";
pub const BAD_CREDENTIALS: &str = "Unable to log in with provided credentials.";
pub const INVALID_PASSWORD: &str = "Invalid password.";
/// A pending (not yet activated) or disabled account's login, after its password.
pub const ACCOUNT_DISABLED: &str = "User account is disabled.";

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
    pub async fn create_user(
        &self,
        request: Parsed<SignUp, Option<Email>>,
        origin: &Origin,
    ) -> Result<User, Error> {
        self.count_one(&self.sign_up_scope(origin.ip)).await?;
        let SignUp { email, password } = match request {
            Ok(request) => request,
            Err(Invalid { mut errors, parsed }) => {
                // DRF reports a taken address beside the other field errors.
                if let Some(email) = parsed {
                    if self.email_registered(&email).await? {
                        errors.add("email", EMAIL_TAKEN);
                    }
                }
                return Err(Error::Fields(errors));
            }
        };
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
            pending: self.settings.send_activation_email,
        };
        // With activation on, the account waits for its mailed link (queued with it; the
        // user id in the item is filled in by the store).
        let placeholder = new.clone().into_user(crate::domain::records::UserId(0));
        let effects = Effects {
            events: Vec::new(),
            mail: match new.pending {
                true => vec![self.queue_item(&placeholder, QueueKind::ActivationLink)],
                false => Vec::new(),
            },
        };
        match self.store.create_user(new, &effects).await? {
            Created::User(user) => Ok(*user),
            Created::EmailTaken => Err(Error::field("email", EMAIL_TAKEN)),
        }
    }

    /// Email + password to a token. Every credential failure reads the same and costs the same
    /// hashing time. The attempt is counted in its limits' scopes before the password is hashed
    /// (docs/api.md#login-limits), whether or not the address has an account.
    pub async fn login(
        &self,
        request: Parsed<Credentials, ()>,
        origin: &Origin,
    ) -> Result<Tokens, Error> {
        let Credentials {
            email: email_text,
            password,
        } = request.map_err(|invalid| Error::Fields(invalid.errors))?;
        if email_text.chars().count() > MAX_EMAIL_CHARS {
            // No account can have it: nothing to look up, count or hash.
            return Err(Error::non_field(BAD_CREDENTIALS));
        }
        let key = normalize(&email_text);
        let scopes = self.login_scopes(&key, origin.ip);
        let keys = scopes.keys();
        let (user, read) = self.store.login_lookup(&key, &keys, self.now()).await?;
        let epoch = reset_epoch(user.as_ref());
        let now = self.now();
        let prepare = |mut read: Vec<Counter>| {
            read[0] = under_epoch(read[0], epoch);
            // An IP the owner logged in from lately is exempt from the address-wide scope, so
            // strangers with many IPs slow each other, not the owner.
            let known_ip = read[0].known_until > now;
            read.into_iter()
                .enumerate()
                .map(|(i, counter)| (!(known_ip && i == 1)).then_some(counter))
                .collect()
        };
        let all = [&scopes.address_ip, &scopes.address, &scopes.ip];
        let counted = match self.count_attempt(&all, read, &prepare).await {
            Ok(counted) => counted,
            Err(refused) => {
                let user_id = user.as_ref().map(|u| u.id);
                self.record_login_failure(&key, user_id, true, origin)
                    .await?;
                return Err(refused);
            }
        };
        let password = &password;
        let verified = match &user {
            Some(user) => self.hasher.verify(password, &user.password_hash).await?,
            None => self.hasher.verify_nobody(password).await?,
        };
        let mut user = match (user, verified.ok()) {
            (Some(user), true) => user,
            // The attempt was counted in its scopes when it was reserved.
            (user, _) => {
                let user_id = user.as_ref().map(|u| u.id);
                self.record_login_failure(&key, user_id, false, origin)
                    .await?;
                return Err(Error::non_field(BAD_CREDENTIALS));
            }
        };
        if user.pending || user.disabled {
            // drf-jwt's order: credentials first, then `is_active`, so only someone holding the
            // password learns the account is pending or disabled. The attempt stays counted.
            return Err(Error::non_field(ACCOUNT_DISABLED));
        }
        // A recovery whose wait is over completes now: the password alone logs in.
        if let Some(recovered) = self.complete_recovery_if_due(&user, origin).await? {
            user = recovered;
        }
        self.login_succeeded(&scopes, &counted, epoch, &Effects::none())
            .await?;
        if verified == Verified::YesRehash {
            self.upgrade_hash(&user, password).await;
        }
        // Login starts a session (not OTP-verified), its event in the same write.
        let effects = Effects {
            events: vec![self.trail_event(SecurityEvent::LoginSucceeded, user.id, origin)],
            mail: Vec::new(),
        };
        let tokens = self
            .start_session(&user, None, self.now(), origin, &effects)
            .await?;
        self.log_effects(&effects, origin);
        Ok(tokens)
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
                clear_totp_failures: false,
                reset_at: None,
                recovery: None,
                sessions: None,
            };
            self.store
                .update_password(user.id, update, &Effects::none())
                .await?;
            Ok::<_, Error>(())
        }
        .await;
        if let Err(err) = result {
            tracing::warn!(user_id = %user.id, error = %err, "password hash upgrade failed");
        }
    }

    /// Ends every session of the user: all tokens carry the old generation.
    pub async fn logout_all(&self, principal: &Principal, origin: &Origin) -> Result<(), Error> {
        let user = &principal.user;
        let effects = self.effects(SecurityEvent::SessionsRevoked, user, origin, None);
        if self
            .store
            .rotate_token_gen(user.id, &random_id(), &effects)
            .await?
        {
            self.log_effects(&effects, origin);
            Ok(())
        } else {
            Err(Error::Unauthenticated(AuthFailure::UnknownUser))
        }
    }

    /// Checks a `current_password`, counted before it is checked (5 free failures per user,
    /// then a backoff: docs/api.md#abuse-limits), so a stolen token is no password oracle.
    /// A success clears the count.
    async fn prove_password(&self, user: &User, password: &Password) -> Result<bool, Error> {
        let scope = self.password_proof_scope(user.id);
        self.count_one(&scope).await?;
        let proven = self
            .hasher
            .verify(password, &user.password_hash)
            .await?
            .ok();
        if proven {
            // A success clears the count, this attempt's included.
            self.store.delete_counters(&[scope.key]).await?;
        }
        Ok(proven)
    }

    /// The field errors of a body that did not parse, with the current password's verdict
    /// beside them when it did parse (djoser validates it as a field).
    async fn with_password_verdict(
        &self,
        user: &User,
        mut errors: FieldErrors,
        current: Option<Password>,
    ) -> Result<Error, Error> {
        if let Some(current) = current {
            if !self.prove_password(user, &current).await? {
                errors.add("current_password", INVALID_PASSWORD);
            }
        }
        Ok(Error::Fields(errors))
    }

    /// Deletes the account with its devices and codes (they live on the user item), once the
    /// current password is proven.
    pub async fn delete_account(
        &self,
        principal: &Principal,
        request: Parsed<AccountDeletion, ()>,
        origin: &Origin,
    ) -> Result<(), Error> {
        let user = &principal.user;
        let request = request.map_err(|invalid| Error::Fields(invalid.errors))?;
        if !self.prove_password(user, &request.current_password).await? {
            return Err(Error::field("current_password", INVALID_PASSWORD));
        }
        // The owner is told at the address the account had; its trail is removed after, by
        // the mailer, never in this request (it is unreachable at once: ids are never reused).
        let mut effects = self.effects(SecurityEvent::AccountDeleted, user, origin, None);
        effects.events.clear();
        if effects.mail.is_empty() {
            effects
                .mail
                .push(self.queue_item(user, QueueKind::PurgeUser));
        }
        if self
            .store
            .delete_user(user, &user.token_gen, &effects)
            .await?
        {
            self.log_event(SecurityEvent::AccountDeleted, Some(user.id), origin);
            self.queue_signal.notify_one();
            Ok(())
        } else {
            // The token was revoked (or the user deleted) while this request ran.
            Err(Error::Unauthenticated(AuthFailure::DecodeError))
        }
    }

    /// Sets a new password once the current one is proven. Tokens stay valid unless
    /// `LOGOUT_ON_PASSWORD_CHANGE` (djoser's setting) is on.
    pub async fn change_password(
        &self,
        principal: &Principal,
        request: Parsed<PasswordChange, Option<Password>>,
        origin: &Origin,
    ) -> Result<(), Error> {
        let user = &principal.user;
        let request = match request {
            Ok(request) => request,
            Err(Invalid { errors, parsed }) => {
                return Err(self.with_password_verdict(user, errors, parsed).await?)
            }
        };
        if !self.prove_password(user, &request.current_password).await? {
            return Err(Error::field("current_password", INVALID_PASSWORD));
        }
        let new_password = &request.new_password;
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
            clear_totp_failures: false,
            reset_at: None,
            recovery: Some(self.recovery_after_password()),
            // Every other session ends; the caller's stays unless LOGOUT_ON_PASSWORD_CHANGE.
            sessions: Some(match self.settings.logout_on_password_change {
                true => Default::default(),
                false => user
                    .sessions
                    .iter()
                    .filter(|(id, _)| principal.session.as_deref() == Some(id.as_str()))
                    .map(|(id, state)| (id.clone(), state.clone()))
                    .collect(),
            }),
        };
        let mut effects = self.effects(SecurityEvent::PasswordChanged, user, origin, None);
        if user.recovery.until.is_some() {
            let cancelled = self.effects(SecurityEvent::RecoveryCancelled, user, origin, None);
            effects.events.extend(cancelled.events);
            effects.mail.extend(cancelled.mail);
        }
        if self
            .store
            .update_password(user.id, update, &effects)
            .await?
        {
            self.log_effects(&effects, origin);
            Ok(())
        } else {
            // Changed concurrently: the password this request proved is no longer current.
            Err(Error::field("current_password", INVALID_PASSWORD))
        }
    }
}
