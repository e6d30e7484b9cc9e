//! Mailed links (docs/api.md#password-reset): the `uid` and the stateless Django-style token
//! `<base36 timestamp>-<hmac>`, parsed into types before anything looks at them. Reset,
//! recovery and activation tokens share the format, each under its own key and over its own
//! facts, so one link never works as another.

use base64::Engine;
use subtle::ConstantTimeEq;

use crate::domain::keys::MacKey;
use crate::domain::records::{User, UserId};

/// Django's reset-token epoch, 2001-01-01T00:00:00Z.
const TOKEN_EPOCH: i64 = 978_307_200;

/// A user id as a link carries it: unpadded base64url of the decimal id (id 1 → `MQ`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uid(pub UserId);

impl Uid {
    pub fn parse(text: &str) -> Option<Self> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text.trim_end_matches('='))
            .ok()?;
        let text = std::str::from_utf8(&bytes).ok()?;
        let id: u64 = text.parse().ok()?;
        (id > 0).then_some(Self(UserId(id)))
    }

    pub fn encode(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.0 .0.to_string())
    }
}

/// What a link is for: each purpose has its own key (in [`crate::domain::keys::Keys`]) and
/// covers the facts whose change must kill it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Dies when the password or last login changes (so it works once).
    Reset,
    /// Dies when the recovery nonce changes (a recovery started, cancelled or completed).
    Recovery,
    /// Stays genuine; using it twice is answered "stale" by the state it finds.
    Activation,
}

/// A well-formed link token: a timestamp (seconds since Django's epoch) and a MAC. Anything
/// else, a timestamp past 2^63 included, does not parse and is refused as a bad token.
#[derive(Clone, PartialEq, Eq)]
pub struct LinkToken {
    timestamp: i64,
    mac: String,
}

/// The reset token of djoser's links.
pub type ResetToken = LinkToken;

impl std::fmt::Debug for LinkToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LinkToken({}, ..)", self.timestamp)
    }
}

impl LinkToken {
    pub fn parse(text: &str) -> Option<Self> {
        let (ts, mac) = text.split_once('-')?;
        if ts.is_empty() || ts.len() > 13 || mac.len() != 32 {
            return None;
        }
        let timestamp = u64::from_str_radix(ts, 36).ok()?;
        Some(Self {
            timestamp: i64::try_from(timestamp).ok()?,
            mac: mac.to_owned(),
        })
    }

    /// A fresh reset token for `user` at `now`.
    pub fn issue(key: &MacKey, user: &User, now: i64) -> String {
        Self::issue_for(Purpose::Reset, key, user, now)
    }

    /// Whether this reset token was made for `user` as it is now, younger than `max_age`.
    pub fn is_valid_for(&self, key: &MacKey, user: &User, now: i64, max_age: i64) -> bool {
        self.is_valid(Purpose::Reset, key, user, now, max_age)
    }

    /// A fresh token of `purpose` (under that purpose's key) for `user` at `now`.
    pub fn issue_for(purpose: Purpose, key: &MacKey, user: &User, now: i64) -> String {
        let timestamp = (now - TOKEN_EPOCH).max(0);
        format!(
            "{}-{}",
            to_base36(timestamp as u64),
            mac(purpose, key, user, timestamp)
        )
    }

    /// Whether this token of `purpose` was made for `user` as it is now, and is younger than
    /// `max_age`.
    pub fn is_valid(
        &self,
        purpose: Purpose,
        key: &MacKey,
        user: &User,
        now: i64,
        max_age: i64,
    ) -> bool {
        let expected = mac(purpose, key, user, self.timestamp);
        let genuine: bool = expected.as_bytes().ct_eq(self.mac.as_bytes()).into();
        let age = (now - TOKEN_EPOCH).saturating_sub(self.timestamp);
        genuine && age <= max_age
    }
}

/// The MAC over the facts of a purpose. A reset covers what a reset must invalidate (password
/// hash, last login), so it dies on use, on a password change, or when the key changes.
fn mac(purpose: Purpose, key: &MacKey, user: &User, timestamp: i64) -> String {
    let id = user.id.0.to_string();
    let timestamp = timestamp.to_string();
    let last_login = user.last_login.map(|t| t.to_string()).unwrap_or_default();
    let mac = match purpose {
        Purpose::Reset => key.sign(&[
            id.as_bytes(),
            user.password_hash.as_bytes(),
            last_login.as_bytes(),
            timestamp.as_bytes(),
            user.email.as_bytes(),
        ]),
        Purpose::Recovery => key.sign(&[
            id.as_bytes(),
            user.recovery.nonce.as_bytes(),
            timestamp.as_bytes(),
            user.email.as_bytes(),
        ]),
        Purpose::Activation => {
            key.sign(&[id.as_bytes(), timestamp.as_bytes(), user.email.as_bytes()])
        }
    };
    mac[..16].iter().map(|b| format!("{b:02x}")).collect()
}

fn to_base36(mut n: u64) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("ascii")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base36_matches_django() {
        // django.utils.http.int_to_base36
        assert_eq!(to_base36(0), "0");
        assert_eq!(to_base36(35), "z");
        assert_eq!(to_base36(36), "10");
        assert_eq!(to_base36(818_000_000), "dj0ku8");
    }

    #[test]
    fn garbage_uids_parse_to_nothing() {
        assert_eq!(Uid::parse("MQ"), Some(Uid(UserId(1))));
        assert_eq!(Uid::parse("MA"), None); // "0"
        assert_eq!(Uid::parse("!!"), None);
        assert_eq!(Uid::parse("YWJj"), None); // "abc"
    }

    #[test]
    fn a_timestamp_past_2_pow_63_is_not_a_token() {
        let mac = "0".repeat(32);
        // "1y2p0ij32e8e8" is 2^63; 36^13 - 1 is past 2^64.
        assert!(ResetToken::parse(&format!("1y2p0ij32e8e8-{mac}")).is_none());
        assert!(ResetToken::parse(&format!("zzzzzzzzzzzzz-{mac}")).is_none());
        assert!(ResetToken::parse(&format!("dj0ku8-{mac}")).is_some());
        assert!(ResetToken::parse("dj0ku8").is_none());
        assert!(ResetToken::parse("dj0ku8-short").is_none());
    }
}
