//! Sessions and refresh tokens (docs/api.md#sessions). A session's hot part (generation, OTP
//! state, password-proof time, rotation and last use) lives on the user item, so the one read
//! that authenticates a request also decides whether its session is live; the details shown
//! by the session list live in their own items.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::domain::keys::MacKey;
use crate::domain::records::UserId;

/// At most this many sessions per user; a new one ends the least recently used.
pub const MAX_SESSIONS: usize = 50;

/// The hot part of a session, on the user item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionState {
    /// The refresh generation: only `gen` rotates; `gen - 1` is answered again for a moment.
    pub gen: u64,
    /// The device that OTP-verified this session, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otp: Option<String>,
    /// When the password behind it was proven.
    pub auth_time: i64,
    /// When it last rotated (its current access token's `iat`).
    pub rotated_at: i64,
    /// Login or refresh: the session list's order, and which session a 51st ends.
    pub last_used_at: i64,
}

/// A user's live sessions by id.
pub type Sessions = BTreeMap<String, SessionState>;

/// What the session list shows besides the hot part (its own item).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionDetails {
    pub id: String,
    pub created_at: i64,
    pub ip: String,
    pub user_agent: String,
}

/// A session id names its user (`<user id>-<random>`), so a refresh token finds its account.
pub fn new_session_id(user: UserId, random: &str) -> String {
    format!("{user}-{random}")
}

/// The user a session id belongs to.
pub fn user_of(session_id: &str) -> Option<UserId> {
    let (user, random) = session_id.split_once('-')?;
    let ok =
        !random.is_empty() && random.len() <= 64 && random.bytes().all(|b| b.is_ascii_hexdigit());
    let id: u64 = user.parse().ok()?;
    (ok && id > 0).then_some(UserId(id))
}

/// The session a 51st one ends: the least recently used.
pub fn least_recently_used(sessions: &Sessions) -> Option<&str> {
    sessions
        .iter()
        .min_by_key(|(id, s)| (s.last_used_at, id.as_str().to_owned()))
        .map(|(id, _)| id.as_str())
}

/// `<session id>.<generation>.<MAC>`: the MAC (HMAC-SHA256 under the refresh key) over the id
/// and generation. Nothing secret is stored: the server recomputes the token it expects, and a
/// token whose MAC does not verify is refused before anything is read or written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshToken {
    pub session: String,
    pub gen: u64,
}

impl RefreshToken {
    pub fn encode(&self, key: &MacKey) -> String {
        format!(
            "{}.{}.{}",
            self.session,
            self.gen,
            mac(key, &self.session, self.gen)
        )
    }

    /// Parses and verifies a presented token; `None` for anything not made by this service.
    pub fn verify(text: &str, key: &MacKey) -> Option<Self> {
        let mut parts = text.split('.');
        let (session, gen, presented) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || user_of(session).is_none() {
            return None;
        }
        let gen: u64 = gen.parse().ok()?;
        let expected = mac(key, session, gen);
        let genuine: bool = expected.as_bytes().ct_eq(presented.as_bytes()).into();
        genuine.then(|| Self {
            session: session.to_owned(),
            gen,
        })
    }
}

fn mac(key: &MacKey, session: &str, gen: u64) -> String {
    key.sign(&[session.as_bytes(), gen.to_string().as_bytes()])
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::keys::{Keys, Secrets};

    #[test]
    fn a_refresh_token_verifies_and_a_forged_one_does_not() {
        let keys = Keys::derive(&Secrets::generate());
        let token = RefreshToken {
            session: new_session_id(UserId(7), "ab12"),
            gen: 3,
        };
        let text = token.encode(&keys.refresh);
        assert_eq!(
            RefreshToken::verify(&text, &keys.refresh),
            Some(token.clone())
        );
        let bumped = text.replacen(".3.", ".4.", 1);
        assert_eq!(RefreshToken::verify(&bumped, &keys.refresh), None);
        assert_eq!(RefreshToken::verify("garbage", &keys.refresh), None);
        let other = Keys::derive(&Secrets::generate());
        assert_eq!(RefreshToken::verify(&text, &other.refresh), None);
    }

    #[test]
    fn a_refresh_token_of_a_rotated_key_verifies_while_that_key_is_a_previous_one() {
        use secrecy::SecretString;
        let root = |c: &str| SecretString::from(c.repeat(40));
        // TOTP keys play no part here.
        let totp = || Secrets::generate().totp_keys;
        let before = Keys::derive(&Secrets::new(root("a"), totp()).unwrap());
        let token = RefreshToken {
            session: new_session_id(UserId(7), "ab12"),
            gen: 1,
        };
        let text = token.encode(&before.refresh);
        let rotated = Keys::derive(
            &Secrets::new(root("b"), totp())
                .unwrap()
                .with_previous_secret_keys(vec![root("a")])
                .unwrap(),
        );
        let verify = |keys: &Keys| {
            keys.refresh_verifiers()
                .find_map(|key| RefreshToken::verify(&text, key))
        };
        assert_eq!(verify(&rotated), Some(token));
        // Once the old key is dropped, its tokens are refused.
        let dropped = Keys::derive(&Secrets::new(root("b"), totp()).unwrap());
        assert_eq!(verify(&dropped), None);
    }

    #[test]
    fn a_session_id_names_its_user() {
        assert_eq!(user_of("17-0a0b"), Some(UserId(17)));
        assert_eq!(user_of("17-"), None);
        assert_eq!(user_of("x-0a"), None);
        assert_eq!(user_of("0-0a"), None);
    }
}
