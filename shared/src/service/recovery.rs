//! Lost-authenticator recovery (docs/api.md#recovery) and djoser's optional activation
//! (docs/api.md#activation). Recovery needs the password *and* the mailbox, then time: a
//! recently password-proven token asks for a mailed link, the link starts a wait with a
//! notice, anything the owner does with the device (or the password) cancels it, and when the
//! wait is over the next login or authenticated request removes the device and codes.

use crate::domain::events::{Origin, QueueKind, SecurityEvent};
use crate::domain::records::{Recovery, User};
use crate::domain::reset_token::{LinkToken, Purpose, Uid};
use crate::store::Effects;
use crate::Error;

use super::requests::{LinkConfirmation, Parsed, ResendActivation};
use super::reset::{INVALID_TOKEN, INVALID_UID};
use super::{random_id, Service};

impl Service {
    /// Whether a reset completed too recently for a recovery to start (someone who holds
    /// only the mailbox must reset first, and the owner's own reset then cancels them).
    fn reset_too_recent(&self, user: &User) -> bool {
        user.reset_at
            .is_some_and(|at| self.now() - at < self.settings.recovery_after_reset_secs)
    }

    /// The recovery state after a cancellation, if one is under way: a new nonce (every
    /// link dies) and no wait.
    pub fn cancelled_recovery(&self, user: &User) -> Option<Recovery> {
        user.recovery.until.map(|_| Recovery {
            nonce: random_id(),
            until: None,
        })
    }

    /// The recovery state after a password change or reset: any recovery link mailed before
    /// dies (a new nonce), and a wait under way is cancelled.
    pub fn recovery_after_password(&self) -> Recovery {
        Recovery {
            nonce: random_id(),
            until: None,
        }
    }

    /// `POST /api/totp/recovery/request/`: mails a recovery link (always 204). Nothing is sent
    /// without a confirmed device, while a recovery is under way, or soon after a reset.
    pub async fn request_recovery(&self, user: &User, origin: &Origin) -> Result<(), Error> {
        if user.confirmed_totp().is_none()
            || user.recovery.until.is_some()
            || self.reset_too_recent(user)
        {
            return Ok(());
        }
        self.queue_link(user, QueueKind::RecoveryLink, origin).await
    }

    /// `POST /api/totp/recovery/`: a genuine, unused, unexpired link starts the wait, with a
    /// notice. Every refusal reads the same: which part was wrong is nobody's business.
    pub async fn start_recovery(
        &self,
        request: Parsed<LinkConfirmation, Option<Uid>>,
        origin: &Origin,
    ) -> Result<(), Error> {
        let refused = || Error::non_field(INVALID_TOKEN);
        let request = request.map_err(|invalid| match invalid.errors.get("uid") {
            // An unparsable uid reads as any bad link: which part was wrong is not said.
            Some(_) => refused(),
            None => Error::Fields(invalid.errors),
        })?;
        let user = self.store.user(request.uid.0).await?.ok_or_else(refused)?;
        let now = self.now();
        let genuine = request.token.is_some_and(|token| {
            self.keys.recovery_verifiers().any(|key| {
                token.is_valid(
                    Purpose::Recovery,
                    key,
                    &user,
                    now,
                    self.settings.link_lifetime_secs,
                )
            })
        });
        if !genuine
            || user.confirmed_totp().is_none()
            || user.recovery.until.is_some()
            || self.reset_too_recent(&user)
        {
            return Err(refused());
        }
        let next = Recovery {
            nonce: random_id(),
            until: Some(now + self.settings.recovery_delay_secs),
        };
        let effects = self.effects(SecurityEvent::RecoveryStarted, &user, origin, None);
        if !self
            .store
            .set_recovery(user.id, &user.recovery, next, &effects)
            .await?
        {
            // Another request used the link (or changed the state) first.
            return Err(refused());
        }
        self.log_effects(&effects, origin);
        Ok(())
    }

    /// Cancels a recovery under way (a TOTP or emergency-code login shows the owner holds the
    /// device), with a notice.
    pub async fn cancel_recovery(&self, user: &User, origin: &Origin) -> Result<(), Error> {
        let Some(next) = self.cancelled_recovery(user) else {
            return Ok(());
        };
        let effects = self.effects(SecurityEvent::RecoveryCancelled, user, origin, None);
        if self
            .store
            .set_recovery(user.id, &user.recovery, next, &effects)
            .await?
        {
            self.log_effects(&effects, origin);
        }
        Ok(())
    }

    /// Completes a recovery whose wait is over: the device and codes go, every session ends,
    /// and the owner is told. Answers the account as it now is, if it did.
    pub async fn complete_recovery_if_due(
        &self,
        user: &User,
        origin: &Origin,
    ) -> Result<Option<User>, Error> {
        let Some(until) = user.recovery.until.filter(|until| *until <= self.now()) else {
            return Ok(None);
        };
        let next = Recovery {
            nonce: random_id(),
            until: None,
        };
        let new_gen = random_id();
        let effects = self.effects(SecurityEvent::RecoveryCompleted, user, origin, None);
        if !self
            .store
            .complete_recovery(user.id, until, &new_gen, next.clone(), &effects)
            .await?
        {
            return Ok(None);
        }
        self.log_effects(&effects, origin);
        let mut user = user.clone();
        user.totp = None;
        user.static_codes = None;
        user.token_gen = new_gen;
        user.recovery = next;
        Ok(Some(user))
    }

    /// `POST /api/user/activation/`: activates a pending account. A genuine link of an active
    /// account is "stale" (403), as djoser answers.
    pub async fn activate(
        &self,
        request: Parsed<LinkConfirmation, Option<Uid>>,
        origin: &Origin,
    ) -> Result<(), Error> {
        let request = self.with_uid_checked(request).await?;
        let Some(user) = self.store.user(request.uid.0).await? else {
            return Err(Error::field("uid", INVALID_UID));
        };
        let now = self.now();
        let genuine = request.token.is_some_and(|token| {
            self.keys.activation_verifiers().any(|key| {
                token.is_valid(
                    Purpose::Activation,
                    key,
                    &user,
                    now,
                    self.settings.link_lifetime_secs,
                )
            })
        });
        if !genuine {
            return Err(Error::non_field(INVALID_TOKEN));
        }
        let effects = Effects {
            events: vec![self.trail_event(SecurityEvent::AccountActivated, user.id, origin)],
            mail: Vec::new(),
        };
        if !user.pending || !self.store.activate(user.id, &effects).await? {
            return Err(Error::StaleToken);
        }
        self.log_effects(&effects, origin);
        Ok(())
    }

    /// `POST /api/user/resend_activation/`: always 204; a pending account gets a new link.
    pub async fn resend_activation(
        &self,
        request: Parsed<ResendActivation, ()>,
        origin: &Origin,
    ) -> Result<(), Error> {
        let email = request
            .map_err(|invalid| Error::Fields(invalid.errors))?
            .email;
        // Always 204, at one deadline: nothing tells a pending account from any other address.
        let deadline = tokio::time::Instant::now()
            + std::time::Duration::from_millis(self.settings.reset_min_duration_ms);
        let answer = self.queue_activation(&email, origin).await;
        tokio::time::sleep_until(deadline).await;
        answer
    }

    async fn queue_activation(
        &self,
        email: &crate::domain::email::Email,
        origin: &Origin,
    ) -> Result<(), Error> {
        let Some(user) = self.store.user_by_email(email.normalized()).await? else {
            return Ok(());
        };
        if !user.pending {
            return Ok(());
        }
        self.queue_link(&user, QueueKind::ActivationLink, origin)
            .await
    }

    /// Queues a link mail, bounded per address as reset mail is (past the bound: nothing).
    async fn queue_link(&self, user: &User, kind: QueueKind, origin: &Origin) -> Result<(), Error> {
        match self
            .count_one(&self.reset_mail_scope(&user.email_norm))
            .await
        {
            Ok(_) => {}
            Err(Error::Throttled { .. }) => return Ok(()),
            Err(other) => return Err(other),
        }
        let effects = Effects {
            events: Vec::new(),
            mail: vec![self.queue_item(user, kind)],
        };
        self.store.record(&effects).await?;
        self.log_effects(&effects, origin);
        Ok(())
    }

    /// A link of `purpose` for `user`, minted now (at send time, never stored).
    pub fn link(&self, purpose: Purpose, user: &User) -> String {
        let (key, template) = match purpose {
            Purpose::Reset => (&self.keys.password_reset, &self.settings.reset_url_template),
            Purpose::Recovery => (&self.keys.recovery, &self.settings.recovery_url_template),
            Purpose::Activation => (
                &self.keys.activation,
                &self.settings.activation_url_template,
            ),
        };
        let token = LinkToken::issue_for(purpose, key, user, self.now());
        template
            .replace(
                "{frontend_url}",
                self.settings.frontend_url.trim_end_matches('/'),
            )
            .replace("{uid}", &Uid(user.id).encode())
            .replace("{token}", &token)
    }
}
