//! The one error type of the service. Each variant says which HTTP status it becomes and why;
//! [`crate::http::response`] turns it into a response in exactly one place.

use serde::Serialize;

/// Field errors in DRF's shape: `{"field": ["message", ...]}`, fields in the order they were
/// reported (object-level errors under `non_field_errors`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldErrors(Vec<(String, Vec<String>)>);

impl FieldErrors {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn single(field: &str, message: impl Into<String>) -> Self {
        let mut errors = Self::new();
        errors.add(field, message);
        errors
    }

    pub fn add(&mut self, field: &str, message: impl Into<String>) {
        let message = message.into();
        match self.0.iter_mut().find(|(name, _)| name == field) {
            Some((_, messages)) => messages.push(message),
            None => self.0.push((field.to_owned(), vec![message])),
        }
    }

    pub fn from_messages(field: &str, messages: Vec<String>) -> Self {
        let mut errors = Self::new();
        errors.extend(field, messages);
        errors
    }

    pub fn extend(&mut self, field: &str, messages: Vec<String>) {
        for message in messages {
            self.add(field, message);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(())` when nothing was reported, otherwise the 400 carrying every field's errors.
    pub fn into_result(self) -> Result<(), Error> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(Error::Fields(self))
        }
    }

    pub fn get(&self, field: &str) -> Option<&[String]> {
        self.0
            .iter()
            .find(|(name, _)| name == field)
            .map(|(_, m)| m.as_slice())
    }
}

impl Serialize for FieldErrors {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (field, messages) in &self.0 {
            map.serialize_entry(field, messages)?;
        }
        map.end()
    }
}

/// Why a request was refused at the authentication step (401), with the original's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    NotProvided,
    NoCredentials,
    CredentialsContainSpaces,
    /// Bad signature, wrong algorithm, malformed, or a revoked token generation.
    DecodeError,
    Expired,
    /// The token names a user that no longer exists.
    UnknownUser,
    /// A refresh token that is forged, of an ended or unknown session, reused, too old, or
    /// past the session cap.
    RefreshRefused,
}

impl AuthFailure {
    pub fn message(self) -> &'static str {
        match self {
            Self::NotProvided => "Authentication credentials were not provided.",
            Self::NoCredentials => "Invalid Authorization header. No credentials provided.",
            Self::CredentialsContainSpaces => {
                "Invalid Authorization header. Credentials string should not contain spaces."
            }
            Self::DecodeError => "Error decoding signature.",
            Self::Expired => "Signature has expired.",
            Self::UnknownUser => "Invalid signature.",
            Self::RefreshRefused => "Refresh token is invalid or expired.",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 400: one or more fields (or the object as a whole) failed validation.
    #[error("invalid fields")]
    Fields(FieldErrors),
    /// 400 `{"detail"}`: a request that is well-formed but not acceptable now.
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// 400 with an empty body: a wrong, reused or throttled one-time code (as the original).
    #[error("one-time code refused")]
    CodeRefused,
    /// 400: the body was not parseable JSON.
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    /// 401 with `WWW-Authenticate`.
    #[error("not authenticated: {0:?}")]
    Unauthenticated(AuthFailure),
    /// 403: the user has a confirmed TOTP device but the token was not OTP-verified.
    #[error("OTP verification required")]
    OtpRequired,
    /// 403: a two-factor change needs a password proven within `REAUTH_SECONDS`.
    #[error("recent password proof required")]
    ReauthRequired,
    /// 403: an activation link of an account that is active already (djoser's "stale").
    #[error("stale token")]
    StaleToken,
    /// 404: no route.
    #[error("not found")]
    NotFound,
    /// 405 with `Allow`.
    #[error("method {method} not allowed")]
    MethodNotAllowed { method: String, allow: String },
    /// 409: the state forbids the action (e.g. a confirmed TOTP device's secret is never re-shown).
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// 413: body larger than the configured limit.
    #[error("payload too large")]
    PayloadTooLarge { limit: usize },
    /// 415: a body in a content type we do not parse.
    #[error("unsupported media type {0:?}")]
    UnsupportedMediaType(String),
    /// 429 with `Retry-After`.
    #[error("throttled for {wait_seconds} s")]
    Throttled { wait_seconds: u64 },
    /// 503: storage (or another dependency) is unreachable. Never grants access: fail closed.
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// 500: a bug or broken invariant on our side; never caused by client input.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        Self::Fields(FieldErrors::single(field, message))
    }

    pub fn non_field(message: impl Into<String>) -> Self {
        Self::field("non_field_errors", message)
    }
}
