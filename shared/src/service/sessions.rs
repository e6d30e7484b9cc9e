//! Sessions and refresh tokens (docs/api.md#sessions): what starts, upgrades, rotates and ends
//! a session. A refresh of the current generation rotates it by a conditional write; the
//! previous generation, within `REFRESH_REUSE_SECONDS` of that rotation, gets the very answer
//! the rotation gave (so concurrent refreshes make one rotation, never two branches); any other
//! generation is reuse, and ends the session.

use serde_json::{json, Value};

use crate::domain::events::{iso8601, Origin, SecurityEvent};
use crate::domain::records::{User, UserId};
use crate::domain::session::{
    least_recently_used, new_session_id, user_of, RefreshToken, SessionDetails, SessionState,
    MAX_SESSIONS,
};
use crate::domain::token::Grant;
use crate::error::AuthFailure;
use crate::store::Effects;
use crate::Error;

use super::requests::{Parsed, RefreshRequest};
use super::{random_id, Principal, Service};

/// How often a session write is tried again after losing a race. Logins to one account at its
/// session cap all evict the same least recently used session, and one of them wins each round:
/// with 8 concurrent logins (the bench's load, slowed down under strace) a login lost 8 rounds
/// in a row and answered 503. Each round is one conditional write, so this bounds the cost.
const ATTEMPTS: usize = 32;

/// What login, refresh, the code logins and totp/delete answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokens {
    pub token: String,
    pub refresh: String,
}

impl Tokens {
    pub fn to_json(&self) -> Value {
        json!({ "token": self.token, "refresh": self.refresh })
    }
}

fn refused() -> Error {
    Error::Unauthenticated(AuthFailure::RefreshRefused)
}

impl Service {
    /// The access and refresh tokens of a session as it stands: the same state answers the
    /// same tokens (the token's `iat` is the rotation's time).
    fn tokens_for(&self, user: &User, session: &str, state: &SessionState) -> Tokens {
        let grant = Grant {
            session: Some(session),
            otp_device_id: state.otp.as_deref(),
            auth_time: state.auth_time,
            issued_at: state.rotated_at,
        };
        let refresh = RefreshToken {
            session: session.to_owned(),
            gen: state.gen,
        };
        Tokens {
            token: self.tokens.issue(user, &grant),
            refresh: refresh.encode(&self.keys.refresh),
        }
    }

    /// Moves a session from `state` to `next` (a refresh, a code login's upgrade) by a write
    /// conditional on its generation: the new tokens, or `None` if another request rotated it
    /// first.
    async fn rotate(
        &self,
        user: &User,
        session: &str,
        state: &SessionState,
        next: SessionState,
    ) -> Result<Option<Tokens>, Error> {
        let rotated = self
            .store
            .put_session(
                user.id,
                session,
                Some(state.gen),
                next.clone(),
                None,
                None,
                &Effects::none(),
            )
            .await?;
        Ok(rotated.then(|| self.tokens_for(user, session, &next)))
    }

    /// The account as it is now, after losing a race for one of its sessions.
    async fn reread(&self, id: UserId) -> Result<User, Error> {
        self.store
            .user(id)
            .await?
            .ok_or(Error::Unauthenticated(AuthFailure::UnknownUser))
    }

    /// Starts a session (login; totp/delete's new one), ending the least recently used one
    /// at the cap, with `effects` in the same write.
    pub async fn start_session(
        &self,
        user: &User,
        otp: Option<&str>,
        auth_time: i64,
        origin: &Origin,
        effects: &Effects,
    ) -> Result<Tokens, Error> {
        let now = self.now();
        let session = new_session_id(user.id, &random_id());
        let state = SessionState {
            gen: 1,
            otp: otp.map(str::to_owned),
            auth_time,
            rotated_at: now,
            last_used_at: now,
        };
        let details = SessionDetails {
            id: session.clone(),
            created_at: now,
            ip: origin.ip.key(),
            user_agent: origin.user_agent.clone(),
        };
        let mut sessions = user.sessions.clone();
        for _ in 0..ATTEMPTS {
            let evict = match sessions.len() >= MAX_SESSIONS {
                true => least_recently_used(&sessions).map(str::to_owned),
                false => None,
            };
            if self
                .store
                .put_session(
                    user.id,
                    &session,
                    None,
                    state.clone(),
                    evict.as_deref(),
                    Some(&details),
                    effects,
                )
                .await?
            {
                return Ok(self.tokens_for(user, &session, &state));
            }
            // Another login changed the sessions meanwhile: look again.
            sessions = self.reread(user.id).await?.sessions;
        }
        Err(Error::Unavailable("the sessions kept changing".into()))
    }

    /// totp/login, static/login: the presented token's session becomes OTP-verified by
    /// `device` and rotates (a token from before sessions starts one).
    pub async fn upgrade_session(
        &self,
        principal: &Principal,
        device: &str,
        origin: &Origin,
    ) -> Result<Tokens, Error> {
        let Some(session) = principal.session.as_deref() else {
            return self
                .start_session(
                    &principal.user,
                    Some(device),
                    principal.auth_time,
                    origin,
                    &Effects::none(),
                )
                .await;
        };
        let mut user = principal.user.clone();
        for _ in 0..ATTEMPTS {
            let state = user
                .sessions
                .get(session)
                .cloned()
                .ok_or(Error::Unauthenticated(AuthFailure::DecodeError))?;
            let next = SessionState {
                gen: state.gen + 1,
                otp: Some(device.to_owned()),
                rotated_at: self.now(),
                ..state.clone()
            };
            if let Some(tokens) = self.rotate(&user, session, &state, next).await? {
                return Ok(tokens);
            }
            user = self.reread(user.id).await?;
        }
        Err(Error::Unavailable("the session kept changing".into()))
    }

    /// `POST /api/user/login/refresh/`. A token whose MAC does not verify is refused before
    /// anything is read.
    pub async fn refresh(
        &self,
        request: Parsed<RefreshRequest, ()>,
        origin: &Origin,
    ) -> Result<Tokens, Error> {
        let request = request.map_err(|invalid| Error::Fields(invalid.errors))?;
        let presented = self
            .keys
            .refresh_verifiers()
            .find_map(|key| RefreshToken::verify(&request.refresh, key))
            .ok_or_else(refused)?;
        let user_id = user_of(&presented.session).ok_or_else(refused)?;
        let session = presented.session.as_str();
        for _ in 0..ATTEMPTS {
            let user = self.store.user(user_id).await?.ok_or_else(refused)?;
            let state = user.sessions.get(session).cloned().ok_or_else(refused)?;
            if user.disabled {
                // As every token of a disabled account (docs/api.md#activation).
                return Err(Error::Unauthenticated(AuthFailure::UnknownUser));
            }
            if user.pending {
                return Err(refused());
            }
            let now = self.now();
            if now - state.auth_time > self.settings.session_max_secs {
                return Err(refused());
            }
            if presented.gen == state.gen {
                if now - state.rotated_at > self.settings.refresh_lifetime_secs {
                    return Err(refused());
                }
                let next = SessionState {
                    gen: state.gen + 1,
                    rotated_at: now,
                    last_used_at: now,
                    ..state.clone()
                };
                if let Some(tokens) = self.rotate(&user, session, &state, next).await? {
                    return Ok(tokens);
                }
                // A concurrent refresh rotated first: its answer is ours (read again).
                continue;
            }
            if presented.gen + 1 == state.gen
                && now <= state.rotated_at + self.settings.refresh_reuse_secs
            {
                return Ok(self.tokens_for(&user, session, &state));
            }
            // Reuse of an earlier generation: the refresh token leaked; the session ends.
            let effects = Effects {
                events: vec![self.trail_event(SecurityEvent::SessionRevoked, user.id, origin)],
                mail: Vec::new(),
            };
            if self.store.end_session(user.id, session, &effects).await? {
                self.log_effects(&effects, origin);
            }
            return Err(refused());
        }
        Err(Error::Unavailable("the session kept changing".into()))
    }

    /// Whether a session can still be refreshed (not past the cap or the refresh lifetime).
    fn is_live(&self, state: &SessionState) -> bool {
        let now = self.now();
        now - state.auth_time <= self.settings.session_max_secs
            && now - state.rotated_at <= self.settings.refresh_lifetime_secs
    }

    /// `GET /api/user/sessions/`: the live sessions, most recently used first.
    pub async fn list_sessions(&self, principal: &Principal) -> Result<Value, Error> {
        let user = &principal.user;
        let live: Vec<(&String, &SessionState)> = user
            .sessions
            .iter()
            .filter(|(_, state)| self.is_live(state))
            .collect();
        let ids: Vec<String> = live.iter().map(|(id, _)| (*id).clone()).collect();
        let details = self.store.session_details(user.id, &ids).await?;
        let mut sessions: Vec<(i64, Value)> = live
            .into_iter()
            .map(|(id, state)| {
                let found = details.iter().find(|d| d.id == *id);
                let shown = json!({
                    "id": id,
                    "created_at": found.map(|d| iso8601(d.created_at)),
                    "last_used_at": iso8601(state.last_used_at),
                    "ip": found.map(|d| d.ip.clone()),
                    "user_agent": found.map(|d| d.user_agent.clone()),
                    "current": principal.session.as_deref() == Some(id.as_str()),
                });
                (state.last_used_at, shown)
            })
            .collect();
        sessions.sort_by_key(|(last_used, _)| std::cmp::Reverse(*last_used));
        let sessions: Vec<Value> = sessions.into_iter().map(|(_, shown)| shown).collect();
        Ok(json!({ "sessions": sessions }))
    }

    /// `DELETE /api/user/sessions/<id>/`: ends one of the caller's live sessions (404 for any
    /// other id); its access tokens die at once.
    pub async fn end_one_session(
        &self,
        principal: &Principal,
        session: &str,
        origin: &Origin,
    ) -> Result<(), Error> {
        let user = &principal.user;
        if !user.sessions.get(session).is_some_and(|s| self.is_live(s)) {
            return Err(Error::NotFound);
        }
        let effects = Effects {
            events: vec![self.trail_event(SecurityEvent::SessionRevoked, user.id, origin)],
            mail: Vec::new(),
        };
        if !self.store.end_session(user.id, session, &effects).await? {
            return Err(Error::NotFound);
        }
        self.log_effects(&effects, origin);
        Ok(())
    }
}
