//! TOTP devices and emergency codes (SPEC §7). Every state change is one conditional write
//! judged against the state this request read, so racing requests cannot both win and a flood
//! of concurrent guesses counts as one attempt per state.

use subtle::ConstantTimeEq;

use crate::domain::events::{Origin, SecurityEvent};
use crate::domain::records::{Failures, StaticCodes, TotpDevice, User};
use crate::domain::totp;
use crate::error::AuthFailure;
use crate::store::{Effects, TotpAccept, TotpInsert};

use super::sessions::Tokens;
use crate::Error;

use super::{random_id, Principal, Service};

pub const ALREADY_CONFIRMED: &str =
    "A confirmed TOTP device exists; its secret is never shown again. Delete it first.";
pub const NO_CONFIRMED_DEVICE: &str =
    "Emergency codes need a confirmed TOTP device: verify a TOTP code first.";

/// The associated data binding a sealed secret to its user and device.
pub(super) fn seal_context(user: &User, device_id: &str) -> Vec<u8> {
    format!("{}/{device_id}", user.id).into_bytes()
}

impl Service {
    fn open_secret(&self, user: &User, device: &TotpDevice) -> Result<Vec<u8>, Error> {
        self.keys
            .totp
            .open(&device.secret, &seal_context(user, &device.device_id))
            .map_err(|e| Error::Internal(e.to_string()))
    }

    /// Creates an unconfirmed device (or answers the unconfirmed one that exists) and returns
    /// its otpauth URL. A confirmed device's secret is never answered again.
    pub async fn create_totp_device(&self, principal: &Principal) -> Result<String, Error> {
        let user = &principal.user;
        let device = match &user.totp {
            Some(device) => device.clone(),
            None => {
                let device_id = format!("otp_totp.totpdevice/{}", random_id());
                let secret = totp::new_secret();
                let device = TotpDevice {
                    secret: self
                        .keys
                        .totp
                        .seal(&secret, &seal_context(user, &device_id)),
                    device_id,
                    confirmed: false,
                    last_step: -1,
                    drift: 0,
                    failures: Failures::default(),
                };
                match self
                    .store
                    .insert_totp_device(user.id, device.clone())
                    .await?
                {
                    TotpInsert::Inserted => device,
                    TotpInsert::Existing(winner) => winner,
                    TotpInsert::UserGone => {
                        return Err(Error::Unauthenticated(AuthFailure::UnknownUser))
                    }
                }
            }
        };
        if device.confirmed {
            return Err(Error::Conflict(ALREADY_CONFIRMED));
        }
        let secret = self.open_secret(user, &device)?;
        Ok(totp::provisioning_url(
            &self.settings.totp_issuer,
            &user.email,
            &secret,
        ))
    }

    /// Verifies a TOTP code; the first accepted code confirms the device. Answers an
    /// OTP-verified token.
    pub async fn verify_totp(
        &self,
        principal: &Principal,
        code: &str,
        origin: &Origin,
    ) -> Result<Tokens, Error> {
        let user = &principal.user;
        let device = user.totp.as_ref().ok_or(Error::CodeRefused)?;
        let now = self.now();
        if device.failures.count >= totp::HARD_LIMIT
            || totp::throttle_wait(device.failures, now).is_some()
        {
            return Err(Error::CodeRefused);
        }
        let secret = self.open_secret(user, device)?;
        match totp::verify(&secret, code, now, device.drift, device.last_step) {
            Some((step, drift)) => {
                let accept = TotpAccept {
                    device_id: device.device_id.clone(),
                    seen_failures: device.failures.count,
                    step,
                    drift,
                };
                // The first accepted code turns two-factor on: the owner is told.
                let mut effects = match device.confirmed {
                    true => Effects::none(),
                    false => self.effects(SecurityEvent::TotpEnabled, user, origin, None),
                };
                let succeeded = self.trail_event(SecurityEvent::OtpSucceeded, user.id, origin);
                effects.events.push(succeeded);
                if !self.store.accept_totp(user.id, accept, &effects).await? {
                    return Err(Error::CodeRefused);
                }
                self.log_effects(&effects, origin);
                // A code login proves the owner holds the device: a recovery under way stops.
                self.cancel_recovery(user, origin).await?;
                self.upgrade_session(principal, &device.device_id, origin)
                    .await
            }
            None => {
                self.store
                    .record_totp_failure(user.id, &device.device_id, device.failures.count, now)
                    .await?;
                self.record_event(SecurityEvent::OtpFailed, user, origin)
                    .await?;
                Err(Error::CodeRefused)
            }
        }
    }

    /// Removes the TOTP device and the emergency codes, ends every session, and answers a
    /// fresh password-only token.
    pub async fn delete_totp_device(
        &self,
        principal: &Principal,
        origin: &Origin,
    ) -> Result<Tokens, Error> {
        let mut user = principal.user.clone();
        let new_gen = random_id();
        // Only a device that was there is reported removed.
        let effects = match user.totp.is_some() {
            true => self.effects(SecurityEvent::TotpRemoved, &user, origin, None),
            false => Effects::none(),
        };
        if !self
            .store
            .remove_two_factor(user.id, &new_gen, &effects)
            .await?
        {
            return Err(Error::Unauthenticated(AuthFailure::UnknownUser));
        }
        self.log_effects(&effects, origin);
        // Every session ended with the generation; the caller gets a new one.
        user.token_gen = new_gen;
        user.sessions.clear();
        self.start_session(&user, None, principal.auth_time, origin, &Effects::none())
            .await
    }

    /// Six fresh emergency codes replacing all old ones; only their keyed hashes are stored.
    pub async fn create_emergency_codes(
        &self,
        principal: &Principal,
        origin: &Origin,
    ) -> Result<Vec<String>, Error> {
        let user = &principal.user;
        let totp_device = user
            .confirmed_totp()
            .ok_or(Error::BadRequest(NO_CONFIRMED_DEVICE))?;
        let codes: Vec<String> = (0..totp::EMERGENCY_CODE_COUNT)
            .map(|_| totp::new_emergency_code())
            .collect();
        let device = StaticCodes {
            device_id: user.static_codes.as_ref().map_or_else(
                || format!("otp_static.staticdevice/{}", random_id()),
                |c| c.device_id.clone(),
            ),
            hashes: codes
                .iter()
                .map(|c| totp::emergency_code_hash(&self.keys.emergency_codes, user.id, c))
                .collect(),
            failures: Failures::default(),
        };
        let effects = self.effects(SecurityEvent::CodesGenerated, user, origin, None);
        if !self
            .store
            .replace_static_codes(user.id, &totp_device.device_id, device, &effects)
            .await?
        {
            return Err(Error::BadRequest(NO_CONFIRMED_DEVICE));
        }
        self.log_effects(&effects, origin);
        Ok(codes)
    }

    /// Uses an emergency code once; answers an OTP-verified token.
    pub async fn use_emergency_code(
        &self,
        principal: &Principal,
        code: &str,
        origin: &Origin,
    ) -> Result<Tokens, Error> {
        let user = &principal.user;
        let codes = user.static_codes.as_ref().ok_or(Error::CodeRefused)?;
        let now = self.now();
        if totp::throttle_wait(codes.failures, now).is_some() {
            return Err(Error::CodeRefused);
        }
        // The current key's hash, or an earlier derivation's for codes stored before a key
        // change (they keep working until used or replaced).
        let mut hash = None;
        for key in self.keys.emergency_code_verifiers() {
            let candidate = totp::emergency_code_hash(key, user.id, code);
            let found = codes.hashes.iter().fold(false, |found, h| {
                found | bool::from(h.as_bytes().ct_eq(candidate.as_bytes()))
            });
            if found && hash.is_none() {
                hash = Some(candidate);
            }
        }
        let known = hash.is_some();
        let hash = hash.unwrap_or_default();
        let codes_left = codes.hashes.len().saturating_sub(1);
        let mut effects = self.effects(SecurityEvent::CodeUsed, user, origin, Some(codes_left));
        let succeeded = self.trail_event(SecurityEvent::OtpSucceeded, user.id, origin);
        effects.events.push(succeeded);
        if known
            && self
                .store
                .consume_static_code(user.id, &hash, codes.failures.count, &effects)
                .await?
        {
            self.log_effects(&effects, origin);
            self.cancel_recovery(user, origin).await?;
            return self
                .upgrade_session(principal, &codes.device_id, origin)
                .await;
        }
        if !known {
            self.store
                .record_static_failure(user.id, codes.failures.count, now)
                .await?;
        }
        self.record_event(SecurityEvent::OtpFailed, user, origin)
            .await?;
        Err(Error::CodeRefused)
    }
}
