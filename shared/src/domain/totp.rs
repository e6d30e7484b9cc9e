//! TOTP (RFC 6238, SHA1, 6 digits, 30 s) and emergency codes: the pure parts, no storage.

use base64::Engine;
use rand::RngCore;
use subtle::ConstantTimeEq;
use totp_rs::{Algorithm, TOTP};

use crate::domain::keys::MacKey;
use crate::domain::records::{Failures, UserId};

pub const STEP_SECS: i64 = 30;
pub const DIGITS: usize = 6;
pub const SECRET_BYTES: usize = 20;
/// Steps either side of now that are accepted (django-otp's default tolerance).
pub const TOLERANCE: i64 = 1;
/// Drift is tracked as django-otp does, but never beyond this many steps.
pub const MAX_DRIFT: i64 = 5;
/// NIST SP 800-63B: after this many consecutive failures TOTP is refused until an emergency
/// code is used.
pub const HARD_LIMIT: u32 = 100;
/// Throttle delays never exceed 15 minutes.
pub const MAX_DELAY_SECS: i64 = 15 * 60;

pub const EMERGENCY_CODE_COUNT: usize = 6;
pub const EMERGENCY_CODE_LEN: usize = 8;

pub fn new_secret() -> [u8; SECRET_BYTES] {
    let mut secret = [0u8; SECRET_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    secret
}

pub fn step_at(now: i64) -> i64 {
    now.div_euclid(STEP_SECS)
}

fn totp(secret: &[u8]) -> TOTP {
    TOTP::new_unchecked(
        Algorithm::SHA1,
        DIGITS,
        0,
        STEP_SECS as u64,
        secret.to_vec(),
    )
}

pub fn code_at_step(secret: &[u8], step: i64) -> String {
    totp(secret).generate((step.max(0) * STEP_SECS) as u64)
}

/// The step a code matches, django-otp style: steps around `now + drift` within the tolerance,
/// later than `last_step`. Answers the matched step and the new drift. Every candidate is
/// compared (in constant time) so timing says nothing about which one matched.
pub fn verify(
    secret: &[u8],
    code: &str,
    now: i64,
    drift: i64,
    last_step: i64,
) -> Option<(i64, i64)> {
    let now_step = step_at(now);
    let mut found = None;
    for offset in -TOLERANCE..=TOLERANCE {
        let step = now_step + drift + offset;
        let matches: bool = code_at_step(secret, step)
            .as_bytes()
            .ct_eq(code.as_bytes())
            .into();
        if matches && step > last_step && found.is_none() {
            found = Some((step, (drift + offset).clamp(-MAX_DRIFT, MAX_DRIFT)));
        }
    }
    found
}

/// RFC 4648 base32 without padding, as authenticator apps expect.
pub fn base32(secret: &[u8]) -> String {
    totp_rs::Secret::Raw(secret.to_vec())
        .to_encoded()
        .to_string()
}

/// `otpauth://totp/<issuer>:<email>?secret=..&algorithm=SHA1&digits=6&period=30&issuer=..`
pub fn provisioning_url(issuer: &str, email: &str, secret: &[u8]) -> String {
    let issuer = uri_component(issuer);
    format!(
        "otpauth://totp/{issuer}:{}?secret={}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}&issuer={issuer}",
        uri_component(email),
        base32(secret),
    )
}

/// Percent-encodes all but RFC 3986 unreserved characters and `@` (legal in a path).
fn uri_component(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~@".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// django-otp 1.7 throttling: after n consecutive failures, attempts within 2^(n-1) s of the
/// last failure are refused without counting. Answers the seconds still to wait.
pub fn throttle_wait(failures: Failures, now: i64) -> Option<i64> {
    backoff_wait(failures, now, 1)
}

/// Exponential backoff shared by the code and login throttles: with `count` consecutive failures
/// and `free` of them free, the wait is 2^(count - free) s after the last failure, at most 15 min.
pub fn backoff_wait(failures: Failures, now: i64, free: u32) -> Option<i64> {
    if failures.count < free.max(1) {
        return None;
    }
    let exponent = (failures.count - free).min(20);
    let delay = (1i64 << exponent).min(MAX_DELAY_SECS);
    let until = failures.last_at + delay;
    (now < until).then_some(until - now)
}

/// A fresh emergency code: 8 characters of `[a-z2-7]`, 40 random bits.
pub fn new_emergency_code() -> String {
    let mut bytes = [0u8; 5];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base32(&bytes).to_ascii_lowercase()
}

pub fn is_emergency_code_shape(code: &str) -> bool {
    code.len() == EMERGENCY_CODE_LEN && code.bytes().all(|b| matches!(b, b'a'..=b'z' | b'2'..=b'7'))
}

pub fn is_totp_code_shape(code: &str) -> bool {
    code.len() == DIGITS && code.bytes().all(|b| b.is_ascii_digit())
}

/// The stored form of an emergency code: a keyed hash bound to its user, so neither a database
/// leak alone nor a copied hash from another user opens anything.
pub fn emergency_code_hash(key: &MacKey, user: UserId, code: &str) -> String {
    let mac = key.sign(&[&user.0.to_be_bytes(), code.as_bytes()]);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_the_rfc_6238_sha1_vectors() {
        // RFC 6238 appendix B, truncated to 6 digits.
        let secret = b"12345678901234567890";
        assert_eq!(code_at_step(secret, 59 / 30), "287082");
        assert_eq!(code_at_step(secret, 1111111109 / 30), "081804");
        assert_eq!(code_at_step(secret, 1234567890 / 30), "005924");
    }

    #[test]
    fn a_code_for_the_last_accepted_step_is_a_replay() {
        let secret = new_secret();
        let now = 1_700_000_000;
        let code = code_at_step(&secret, step_at(now));
        assert_eq!(verify(&secret, &code, now, 0, step_at(now)), None);
        assert!(verify(&secret, &code, now, 0, step_at(now) - 1).is_some());
    }

    #[test]
    fn emergency_codes_have_the_promised_shape() {
        for _ in 0..100 {
            assert!(is_emergency_code_shape(&new_emergency_code()));
        }
    }

    #[test]
    fn the_backoff_doubles_and_is_capped() {
        let f = |count| Failures { count, last_at: 0 };
        assert_eq!(throttle_wait(f(0), 0), None);
        assert_eq!(throttle_wait(f(1), 0), Some(1));
        assert_eq!(throttle_wait(f(3), 0), Some(4));
        assert_eq!(throttle_wait(f(3), 4), None);
        assert_eq!(throttle_wait(f(40), 0), Some(MAX_DELAY_SECS));
        assert_eq!(backoff_wait(f(4), 0, 5), None);
        assert_eq!(backoff_wait(f(5), 0, 5), Some(1));
        assert_eq!(backoff_wait(f(6), 1, 5), Some(1));
    }
}
