//! What each endpoint asks of the service, as parsed types: the domain never sees raw strings.
//! Built from request bodies by `crate::http::requests`.

use crate::domain::email::Email;
use crate::domain::password::Password;
use crate::domain::reset_token::{LinkToken, ResetToken, Uid};
use crate::error::FieldErrors;

/// A request whose fields did not all parse: every field error, and the fields that did parse
/// that DRF still checks beside them (a taken address, a wrong current password, an unknown
/// uid), so one answer reports everything, as the original.
#[derive(Debug)]
pub struct Invalid<P> {
    pub errors: FieldErrors,
    pub parsed: P,
}

pub type Parsed<T, P> = Result<T, Invalid<P>>;

#[derive(Debug)]
pub struct SignUp {
    pub email: Email,
    pub password: Password,
}

#[derive(Debug)]
pub struct Credentials {
    /// Whatever was typed: login looks it up at the same cost whether or not it is an address.
    pub email: String,
    pub password: Password,
}

#[derive(Debug)]
pub struct PasswordChange {
    pub current_password: Password,
    pub new_password: Password,
}

#[derive(Debug)]
pub struct AccountDeletion {
    pub current_password: Password,
}

#[derive(Debug)]
pub struct ResetRequest {
    pub email: Email,
}

/// A mailed link's `uid` and `token` (activation, recovery).
#[derive(Debug)]
pub struct LinkConfirmation {
    pub uid: Uid,
    /// `None` when the token does not parse: refused as a bad token.
    pub token: Option<LinkToken>,
}

#[derive(Debug)]
pub struct ResendActivation {
    pub email: Email,
}

#[derive(Debug)]
pub struct RefreshRequest {
    pub refresh: String,
}

#[derive(Debug)]
pub struct ResetConfirmation {
    pub uid: Uid,
    /// `None` when the token does not parse: it is refused as a bad token, after the checks
    /// DRF runs before the token's (so the answer is the original's).
    pub token: Option<ResetToken>,
    pub new_password: Password,
}
