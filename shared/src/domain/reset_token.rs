//! Password-reset links (docs/api.md#password-reset): the `uid` and the stateless Django-style
//! token `<base36 timestamp>-<hmac>`, parsed into types before anything looks at them.

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

/// A well-formed token: a timestamp (seconds since Django's epoch) and a MAC. Anything else,
/// a timestamp past 2^63 included, does not parse and is refused as a bad token.
#[derive(Clone, PartialEq, Eq)]
pub struct ResetToken {
    timestamp: i64,
    mac: String,
}

impl std::fmt::Debug for ResetToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ResetToken({}, ..)", self.timestamp)
    }
}

impl ResetToken {
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

    /// A fresh token for `user` at `now`.
    pub fn issue(key: &MacKey, user: &User, now: i64) -> String {
        let timestamp = (now - TOKEN_EPOCH).max(0);
        format!(
            "{}-{}",
            to_base36(timestamp as u64),
            mac(key, user, timestamp)
        )
    }

    /// Whether this token was made for `user` as it is now, and is younger than `max_age`.
    pub fn is_valid_for(&self, key: &MacKey, user: &User, now: i64, max_age: i64) -> bool {
        let expected = mac(key, user, self.timestamp);
        let genuine: bool = expected.as_bytes().ct_eq(self.mac.as_bytes()).into();
        let age = (now - TOKEN_EPOCH).saturating_sub(self.timestamp);
        genuine && age <= max_age
    }
}

/// The MAC covers what a reset must invalidate (password hash, last login), so a token dies on
/// use, on a password change, or when the key changes.
fn mac(key: &MacKey, user: &User, timestamp: i64) -> String {
    let last_login = user.last_login.map(|t| t.to_string()).unwrap_or_default();
    let mac = key.sign(&[
        user.id.0.to_string().as_bytes(),
        user.password_hash.as_bytes(),
        last_login.as_bytes(),
        timestamp.to_string().as_bytes(),
        user.email.as_bytes(),
    ]);
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
