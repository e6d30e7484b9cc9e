//! The domain: what each endpoint does, in terms of the ports. Nothing here knows HTTP or AWS.

pub mod accounts;
pub mod events;
pub mod limits;
pub mod mailer;
pub mod operator;
pub mod recovery;
pub mod requests;
pub mod reset;
pub mod sessions;
pub mod two_factor;

use std::sync::Arc;

use rand::RngCore;
use subtle::ConstantTimeEq;

use crate::clock::Clock;
use crate::domain::events::{Origin, SecurityEvent};
use crate::domain::keys::Keys;
use crate::domain::password::PasswordHasher;
use crate::domain::records::{User, UserId};
use crate::domain::token::TokenIssuer;
use crate::error::AuthFailure;
use crate::mail::Mailer;
use crate::settings::Settings;
use crate::store::Store;
use crate::Error;

pub struct Service {
    pub store: Arc<dyn Store>,
    pub mailer: Arc<dyn Mailer>,
    pub clock: Arc<dyn Clock>,
    pub keys: Keys,
    pub tokens: TokenIssuer,
    pub hasher: PasswordHasher,
    pub settings: Settings,
    /// Rung when a mail is queued, so a local delivery loop sends it at once.
    pub queue_signal: tokio::sync::Notify,
}

/// Whether an endpoint is behind the OTP gate (SPEC §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    Open,
    OtpVerified,
}

/// An authenticated request's user, as read by the one storage read of the request.
#[derive(Debug)]
pub struct Principal {
    pub user: User,
    /// When the password behind the presented token was proven.
    pub auth_time: i64,
    /// The presented token's session (none for tokens from before sessions).
    pub session: Option<String>,
}

/// A random opaque id: token generations and device ids.
pub fn random_id() -> String {
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{:032x}", u128::from_be_bytes(bytes))
}

/// A request's id for the logs where the platform gives none (the local server): unique, not
/// secret, so drawn from the thread's CSPRNG instead of a `getrandom` call per request (which
/// was a third of the local server's system calls on a view).
pub fn request_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

impl Service {
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// Authenticates a bearer token: signature and expiry first (no storage touched by a
    /// forged token), then the one user read, the revocation generation, and the OTP gate.
    pub async fn authenticate(
        &self,
        token: &str,
        gate: Gate,
        origin: &Origin,
    ) -> Result<Principal, Error> {
        let claims = self
            .tokens
            .decode(token, self.now())
            .map_err(Error::Unauthenticated)?;
        // The session cap: no token outlives its password proof by more than this.
        if self.now() - claims.auth_time() > self.settings.session_max_secs {
            return Err(Error::Unauthenticated(AuthFailure::Expired));
        }
        let user = self
            .store
            .user(UserId(claims.user_id))
            .await?
            .ok_or(Error::Unauthenticated(AuthFailure::UnknownUser))?;
        if user.disabled {
            // SPEC §10 "Disabled": every token of a disabled account is refused (before the
            // generation check: disabling also rotates it).
            return Err(Error::Unauthenticated(AuthFailure::UnknownUser));
        }
        let current: bool = user
            .token_gen
            .as_bytes()
            .ct_eq(claims.tgen.as_bytes())
            .into();
        // An ended session's access tokens die with it.
        let live = claims
            .sid
            .as_deref()
            .is_none_or(|sid| user.sessions.contains_key(sid));
        if !current || !live {
            // A revoked token reads as the original's per-user-secret rotation did.
            return Err(Error::Unauthenticated(AuthFailure::DecodeError));
        }
        // A recovery whose wait is over completes now, and ends this session with the others.
        if self
            .complete_recovery_if_due(&user, origin)
            .await?
            .is_some()
        {
            return Err(Error::Unauthenticated(AuthFailure::DecodeError));
        }
        let otp_verified = claims
            .otp_device_id
            .as_deref()
            .is_some_and(|device| user.has_verified_device(device));
        if gate == Gate::OtpVerified && user.confirmed_totp().is_some() && !otp_verified {
            self.record_event(SecurityEvent::OtpGateRefused, &user, origin)
                .await?;
            return Err(Error::OtpRequired);
        }
        Ok(Principal {
            user,
            auth_time: claims.auth_time(),
            session: claims.sid,
        })
    }

    /// Whether the principal's password proof is recent enough for a two-factor change.
    pub fn password_is_recent(&self, principal: &Principal) -> bool {
        self.now() - principal.auth_time <= self.settings.reauth_secs
    }
}
