//! Password reset by email (SPEC §6): stateless Django-style tokens, one mail per address per
//! minute, and no way to tell a known address from an unknown one.

use std::time::Duration;

use base64::Engine;
use subtle::ConstantTimeEq;
use tracing::Instrument;

use crate::email::Email;
use crate::error::FieldErrors;
use crate::mail::MailMessage;
use crate::password::{self, Password};
use crate::store::{PasswordUpdate, User, UserId};
use crate::Error;

use super::{random_id, Service};

pub const INVALID_UID: &str = "Invalid user id or user doesn't exist.";
pub const INVALID_TOKEN: &str = "Invalid token for given user.";
/// At most one reset mail per address per this many seconds.
pub const MAIL_INTERVAL_SECS: i64 = 60;
/// Django's reset-token epoch, 2001-01-01T00:00:00Z.
const TOKEN_EPOCH: i64 = 978_307_200;

/// `uid` = unpadded base64url of the id's decimal string (id 1 → `MQ`).
pub fn encode_uid(id: UserId) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id.0.to_string())
}

pub fn decode_uid(uid: &str) -> Option<UserId> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(uid.trim_end_matches('='))
        .ok()?;
    let text = std::str::from_utf8(&bytes).ok()?;
    let id: u64 = text.parse().ok()?;
    (id > 0).then_some(UserId(id))
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

impl Service {
    /// `<base36 timestamp>-<hmac>`: the HMAC covers what a reset must invalidate (password hash,
    /// last login), so a token dies on use, on a password change, or when the secret changes.
    pub fn reset_token(&self, user: &User, now: i64) -> String {
        let timestamp = (now - TOKEN_EPOCH).max(0) as u64;
        format!(
            "{}-{}",
            to_base36(timestamp),
            self.reset_mac(user, timestamp)
        )
    }

    fn reset_mac(&self, user: &User, timestamp: u64) -> String {
        let last_login = user.last_login.map(|t| t.to_string()).unwrap_or_default();
        let mac = self.keys.password_reset.sign(&[
            user.id.0.to_string().as_bytes(),
            user.password_hash.as_bytes(),
            last_login.as_bytes(),
            timestamp.to_string().as_bytes(),
            user.email.as_bytes(),
        ]);
        mac[..16].iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn check_reset_token(&self, user: &User, token: &str, now: i64) -> bool {
        let Some((ts, mac)) = token.split_once('-') else {
            return false;
        };
        if ts.is_empty() || ts.len() > 13 {
            return false;
        }
        let Ok(timestamp) = u64::from_str_radix(ts, 36) else {
            return false;
        };
        let expected = self.reset_mac(user, timestamp);
        let genuine: bool = expected.as_bytes().ct_eq(mac.as_bytes()).into();
        let age = now - TOKEN_EPOCH - timestamp as i64;
        genuine && age <= self.settings.password_reset_timeout_secs
    }

    pub fn reset_link(&self, uid: &str, token: &str) -> String {
        self.settings
            .reset_url_template
            .replace(
                "{frontend_url}",
                self.settings.frontend_url.trim_end_matches('/'),
            )
            .replace("{uid}", uid)
            .replace("{token}", token)
    }

    fn reset_message(&self, user: &User, link: &str) -> MailMessage {
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

    /// Always succeeds for a valid address. Known and unknown addresses do the same storage
    /// writes, and both answer at the same deadline: the mail is sent on its own task, awaited
    /// only until then, and a failed send is logged, never answered.
    pub async fn request_password_reset(&self, email: &Email) -> Result<(), Error> {
        let deadline = tokio::time::Instant::now()
            + Duration::from_millis(self.settings.reset_min_duration_ms);
        let now = self.now();
        let user = self.store.user_by_email(email.normalized()).await?;
        let may_send = self
            .store
            .claim_reset_mail(email.normalized(), now, MAIL_INTERVAL_SECS)
            .await?;
        if let (Some(user), true) = (user, may_send) {
            let link = self.reset_link(&encode_uid(user.id), &self.reset_token(&user, now));
            let message = self.reset_message(&user, &link);
            let mailer = self.mailer.clone();
            let send = tokio::spawn(
                async move {
                    if let Err(err) = mailer.send(&message).await {
                        tracing::error!(error = %err, "password reset mail failed");
                    }
                }
                .in_current_span(),
            );
            let _ = tokio::time::timeout_at(deadline, send).await;
        }
        tokio::time::sleep_until(deadline).await;
        Ok(())
    }

    /// Confirms a reset: the uid must name a user, the new password pass the validators, and
    /// the token be genuine and current. Success rotates the token generation (every session
    /// ends) and sets last login, which also kills the token.
    pub async fn confirm_password_reset(
        &self,
        uid: Option<&str>,
        token: Option<&str>,
        new_password: Option<&Password>,
        mut errors: FieldErrors,
    ) -> Result<(), Error> {
        let user = match uid {
            Some(uid) => match decode_uid(uid) {
                Some(id) => self.store.user(id).await?,
                None => None,
            },
            None => None,
        };
        if uid.is_some() && user.is_none() {
            errors.add("uid", INVALID_UID);
        }
        let (Some(user), Some(token), Some(new_password)) = (user, token, new_password) else {
            return Err(Error::Fields(errors));
        };
        errors.into_result()?;
        let problems = password::validate(new_password.expose(), &user.email);
        if !problems.is_empty() {
            return Err(Error::Fields(FieldErrors::from_messages(
                "new_password",
                problems,
            )));
        }
        let now = self.now();
        if !self.check_reset_token(&user, token, now) {
            return Err(Error::non_field(INVALID_TOKEN));
        }
        let update = PasswordUpdate {
            expected_hash: user.password_hash.clone(),
            new_hash: self.hasher.hash(new_password).await?,
            new_token_gen: Some(random_id()),
            last_login: Some(now),
        };
        if self.store.update_password(user.id, update).await? {
            Ok(())
        } else {
            // A racing confirm with the same token won: this one is a reuse.
            Err(Error::non_field(INVALID_TOKEN))
        }
    }
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#x27;")
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
    fn garbage_uids_decode_to_nothing() {
        assert_eq!(decode_uid("MQ"), Some(UserId(1)));
        assert_eq!(decode_uid("MA"), None); // "0"
        assert_eq!(decode_uid("!!"), None);
        assert_eq!(decode_uid("YWJj"), None); // "abc"
    }
}
