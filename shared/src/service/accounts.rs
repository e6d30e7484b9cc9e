//! Accounts and login: create, login, view, logout everywhere, delete, change password.

use crate::domain::client_ip::ClientIp;
use crate::domain::email::{normalize, Email, MAX_EMAIL_CHARS};
use crate::domain::password::{self, Password, Verified};
use crate::domain::records::{NewUser, User};
use crate::error::{AuthFailure, FieldErrors};
use crate::store::{Created, PasswordUpdate};
use crate::Error;

use super::limits::{reset_epoch, under_epoch, Scope};
use super::requests::{AccountDeletion, Credentials, Invalid, Parsed, PasswordChange, SignUp};
use super::{random_id, Principal, Service};

pub const EMAIL_TAKEN: &str = "user with this email address already exists.";
pub const BAD_CREDENTIALS: &str = "Unable to log in with provided credentials.";
pub const INVALID_PASSWORD: &str = "Invalid password.";

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
        client: ClientIp,
    ) -> Result<User, Error> {
        self.count_one(&self.sign_up_scope(client)).await?;
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
        };
        match self.store.create_user(new).await? {
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
        client: ClientIp,
    ) -> Result<String, Error> {
        let Credentials {
            email: email_text,
            password,
        } = request.map_err(|invalid| Error::Fields(invalid.errors))?;
        if email_text.chars().count() > MAX_EMAIL_CHARS {
            // No account can have it: nothing to look up, count or hash.
            return Err(Error::non_field(BAD_CREDENTIALS));
        }
        let key = normalize(&email_text);
        let scopes = self.login_scopes(&key, client);
        let keys = scopes.keys();
        let (user, mut counters) = self.store.login_lookup(&key, &keys, self.now()).await?;
        let epoch = reset_epoch(user.as_ref());
        counters[0] = under_epoch(counters[0], epoch);
        // An IP the owner logged in from lately is exempt from the address-wide scope, so
        // strangers with many IPs slow each other, not the owner.
        let known_ip = counters[0].known_until > self.now();
        let (applied, counters): (Vec<&Scope>, Vec<_>) =
            [&scopes.address_ip, &scopes.address, &scopes.ip]
                .into_iter()
                .zip(counters)
                .filter(|(scope, _)| !(known_ip && std::ptr::eq(*scope, &scopes.address)))
                .unzip();
        let counted = self.count_attempt(&applied, counters).await?;
        let password = &password;
        let verified = match &user {
            Some(user) => self.hasher.verify(password, &user.password_hash).await?,
            None => self.hasher.verify_nobody(password).await?,
        };
        let user = match (user, verified.ok()) {
            (Some(user), true) => user,
            // The attempt was counted as a failure when it was reserved.
            _ => return Err(Error::non_field(BAD_CREDENTIALS)),
        };
        let counted: Vec<_> = applied
            .iter()
            .map(|scope| scope.key.clone())
            .zip(counted)
            .collect();
        self.login_succeeded(&scopes, &counted, epoch).await?;
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
                clear_totp_failures: false,
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

    /// Checks a `current_password`, counted before it is checked (5 free failures per user,
    /// then a backoff: docs/api.md#abuse-limits), so a stolen token is no password oracle.
    /// A success clears the count.
    async fn prove_password(&self, user: &User, password: &Password) -> Result<bool, Error> {
        let scope = self.password_proof_scope(user.id);
        let counted = self.count_one(&scope).await?;
        let proven = self
            .hasher
            .verify(password, &user.password_hash)
            .await?
            .ok();
        if proven && counted.n > 1 {
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
    ) -> Result<(), Error> {
        let user = &principal.user;
        let request = request.map_err(|invalid| Error::Fields(invalid.errors))?;
        if !self.prove_password(user, &request.current_password).await? {
            return Err(Error::field("current_password", INVALID_PASSWORD));
        }
        if self.store.delete_user(user, &user.token_gen).await? {
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
        };
        if self.store.update_password(user.id, update).await? {
            Ok(())
        } else {
            // Changed concurrently: the password this request proved is no longer current.
            Err(Error::field("current_password", INVALID_PASSWORD))
        }
    }
}
