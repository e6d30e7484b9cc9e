//! Password reset by email (SPEC §6): stateless Django-style tokens, one mail per address per
//! minute, and no way to tell a known address from an unknown one.

use std::time::Duration;

use crate::domain::events::{Origin, QueueKind, SecurityEvent};
use crate::domain::password;
use crate::domain::records::User;
use crate::domain::reset_token::Uid;
use crate::error::FieldErrors;
use crate::mail::MailMessage;
use crate::store::{CounterKey, Effects, PasswordUpdate};
use crate::Error;

use super::requests::{Invalid, Parsed, ResetConfirmation, ResetRequest};
use super::{random_id, Service};

pub const INVALID_UID: &str = "Invalid user id or user doesn't exist.";
pub const INVALID_TOKEN: &str = "Invalid token for given user.";

impl Service {
    pub(super) fn reset_message(&self, user: &User, link: &str) -> MailMessage {
        let site = &self.settings.site_name;
        let text = format!(
            "You're receiving this email because you requested a password reset for your user \
             account at {site}.\n\nPlease go to the following page and choose a new password:\n\n\
             {link}\n\nYour username, in case you've forgotten: {email}\n\n\
             If you did not ask for this, you can ignore this message: your password is unchanged.\n\n\
             Thanks for using our site!\n\nThe {site} team\n",
            email = user.email,
        );
        let html = format!(
            "<!doctype html>\n<html><body>\n<p>You're receiving this email because you requested a \
             password reset for your user account at {site}.</p>\n<p>Please go to the following page \
             and choose a new password:</p>\n<p><a href=\"{link}\">{link}</a></p>\n<p>Your username, \
             in case you've forgotten: {email}</p>\n<p>If you did not ask for this, you can ignore \
             this message: your password is unchanged.</p>\n<p>Thanks for using our site!</p>\n\
             <p>The {site} team</p>\n</body></html>\n",
            site = html_escape(site),
            link = html_escape(link),
            email = html_escape(&user.email),
        );
        MailMessage {
            from: self.settings.mail_from.clone(),
            to: user.email.clone(),
            subject: format!("Password reset on {site}"),
            text,
            html,
        }
    }

    /// Always succeeds for a valid address. Known and unknown addresses do the same claims,
    /// and both answer at the same deadline; for a known one the mail is queued (with the
    /// request's event, in one write) and sent by the mailer, never on the request path.
    pub async fn request_password_reset(
        &self,
        request: Parsed<ResetRequest, ()>,
        origin: &Origin,
    ) -> Result<(), Error> {
        // The IP limit answers 429: it says nothing about which addresses have accounts.
        self.count_one(&self.reset_request_scope(origin.ip)).await?;
        let email = &request
            .map_err(|invalid| Error::Fields(invalid.errors))?
            .email;
        let deadline = tokio::time::Instant::now()
            + Duration::from_millis(self.settings.reset_min_duration_ms);
        let now = self.now();
        let user = self.store.user_by_email(email.normalized()).await?;
        let may_send = self
            .store
            .claim_reset_mail(
                email.normalized(),
                now,
                self.settings.limits.reset_mail_interval_secs,
            )
            .await?;
        // At most so many mails per address per day; past them the answer is the same 204.
        let may_send = may_send
            && match self
                .count_one(&self.reset_mail_scope(email.normalized()))
                .await
            {
                Ok(_) => true,
                Err(Error::Throttled { .. }) => false,
                Err(other) => return Err(other),
            };
        if let (Some(user), true) = (user, may_send) {
            let effects = Effects {
                events: vec![self.trail_event(
                    SecurityEvent::PasswordResetRequested,
                    user.id,
                    origin,
                )],
                mail: vec![self.queue_item(&user, QueueKind::PasswordReset)],
            };
            self.store.record(&effects).await?;
            self.log_effects(&effects, origin);
        }
        tokio::time::sleep_until(deadline).await;
        Ok(())
    }

    /// Confirms a reset: the uid must name a user, the new password pass the validators, and
    /// the token be genuine and current. Success rotates the token generation (every session
    /// ends) and sets last login, which also kills the token.
    pub async fn confirm_password_reset(
        &self,
        request: Parsed<ResetConfirmation, Option<Uid>>,
        origin: &Origin,
    ) -> Result<(), Error> {
        let request = match request {
            Ok(request) => request,
            Err(Invalid {
                mut errors,
                parsed: Some(uid),
            }) => {
                if self.store.user(uid.0).await?.is_none() {
                    errors.add("uid", INVALID_UID);
                }
                return Err(Error::Fields(errors));
            }
            Err(invalid) => return Err(Error::Fields(invalid.errors)),
        };
        let Some(user) = self.store.user(request.uid.0).await? else {
            return Err(Error::field("uid", INVALID_UID));
        };
        let new_password = &request.new_password;
        let problems = password::validate(new_password.expose(), &user.email);
        if !problems.is_empty() {
            return Err(Error::Fields(FieldErrors::from_messages(
                "new_password",
                problems,
            )));
        }
        let now = self.now();
        // Links signed under a previous secret key stay valid for their lifetime.
        let genuine = request.token.is_some_and(|token| {
            self.keys.password_reset_verifiers().any(|key| {
                token.is_valid_for(key, &user, now, self.settings.password_reset_timeout_secs)
            })
        });
        if !genuine {
            return Err(Error::non_field(INVALID_TOKEN));
        }
        let update = PasswordUpdate {
            expected_hash: user.password_hash.clone(),
            new_hash: self.hasher.hash(new_password).await?,
            new_token_gen: Some(random_id()),
            last_login: Some(now),
            clear_totp_failures: true,
            // The mailbox is proven: a pending account is active from now on.
            reset_at: Some(now),
            recovery: Some(self.recovery_after_password()),
            sessions: Some(Default::default()),
        };
        let mut effects = self.effects(SecurityEvent::PasswordResetCompleted, &user, origin, None);
        if user.recovery.until.is_some() {
            let cancelled = self.effects(SecurityEvent::RecoveryCancelled, &user, origin, None);
            effects.events.extend(cancelled.events);
            effects.mail.extend(cancelled.mail);
        }
        if self
            .store
            .update_password(user.id, update, &effects)
            .await?
        {
            self.log_effects(&effects, origin);
            // The mailbox was proven: the address's login limits and the password-proof count
            // start over (address + IP records are left behind with the old last login).
            self.store
                .delete_counters(&[
                    CounterKey::LoginAddress {
                        email_norm: user.email_norm.clone(),
                    },
                    CounterKey::PasswordProof { user: user.id },
                ])
                .await?;
            Ok(())
        } else {
            // A racing confirm with the same token won: this one is a reuse.
            Err(Error::non_field(INVALID_TOKEN))
        }
    }
}

pub(super) fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#x27;")
}
