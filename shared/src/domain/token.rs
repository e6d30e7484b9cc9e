//! JWTs (SPEC §5): HS256 under a subkey of the service secret, never a per-user secret. A token
//! counts only while its `tgen` equals the user's current token generation (revocation).

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::domain::keys::MacKey;
use crate::domain::records::User;
use crate::error::AuthFailure;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub user_id: u64,
    /// The email, as drf-jwt's `username` claim.
    pub username: String,
    pub exp: i64,
    pub iat: i64,
    /// The device that verified this token (django-otp), or null for a password-only token.
    pub otp_device_id: Option<String>,
    /// The user's token generation when this token was issued.
    pub tgen: String,
    pub iss: String,
    pub aud: String,
    /// When the password was last proven (login); copied by totp/login, static/login and
    /// totp/delete. Tokens issued before it existed count from their `iat`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    /// The session this token belongs to (tokens from before sessions have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}

/// What an access token grants: its session, OTP state and password-proof time, from when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant<'a> {
    pub session: Option<&'a str>,
    pub otp_device_id: Option<&'a str>,
    pub auth_time: i64,
    /// The token's `iat`: the same grant at the same time is the same token (a refresh
    /// answered again within the reuse window).
    pub issued_at: i64,
}

impl Claims {
    /// When the password behind this token was proven.
    pub fn auth_time(&self) -> i64 {
        self.auth_time.unwrap_or(self.iat)
    }
}

pub struct TokenIssuer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// Previous keys' decoders: tokens they signed verify for their lifetime.
    previous: Vec<DecodingKey>,
    validation: Validation,
    lifetime_secs: i64,
    issuer: String,
    audience: String,
}

impl TokenIssuer {
    pub fn new(key: &MacKey, lifetime_secs: i64, issuer: &str, audience: &str) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        // Expiry is checked against the service's clock (a port), not jsonwebtoken's.
        validation.validate_exp = false;
        validation.required_spec_claims = ["exp", "iss", "aud"].map(String::from).into();
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        Self {
            encoding: EncodingKey::from_secret(key.bytes()),
            decoding: DecodingKey::from_secret(key.bytes()),
            previous: Vec::new(),
            validation,
            lifetime_secs,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
        }
    }

    /// Also verifies tokens signed under these (previous) keys; never signs with them.
    pub fn with_previous(mut self, keys: &[MacKey]) -> Self {
        self.previous = keys
            .iter()
            .map(|k| DecodingKey::from_secret(k.bytes()))
            .collect();
        self
    }

    pub fn issue(&self, user: &User, grant: &Grant<'_>) -> String {
        let claims = Claims {
            user_id: user.id.0,
            username: user.email.clone(),
            exp: grant.issued_at + self.lifetime_secs,
            iat: grant.issued_at,
            otp_device_id: grant.otp_device_id.map(str::to_owned),
            tgen: user.token_gen.clone(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            auth_time: Some(grant.auth_time),
            sid: grant.session.map(str::to_owned),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 encoding of plain claims cannot fail")
    }

    /// Verifies signature, algorithm, issuer, audience and expiry. No storage is touched: a forged token is
    /// refused here.
    pub fn decode(&self, token: &str, now: i64) -> Result<Claims, AuthFailure> {
        let mut decoded = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation);
        for key in &self.previous {
            match &decoded {
                Err(e) if *e.kind() == jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                    decoded = jsonwebtoken::decode::<Claims>(token, key, &self.validation);
                }
                _ => break,
            }
        }
        let claims = decoded.map_err(|_| AuthFailure::DecodeError)?.claims;
        if now >= claims.exp {
            return Err(AuthFailure::Expired);
        }
        Ok(claims)
    }
}
