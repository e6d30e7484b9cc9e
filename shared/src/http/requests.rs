//! One typed request per endpoint, parsed from the body with DRF's field rules and every field
//! error collected at once ([`super::fields`]).

use super::fields::{Body, Fields};
use crate::domain::email::Email;
use crate::domain::reset_token::{ResetToken, Uid};
use crate::error::FieldErrors;
use crate::service::events::{TrailPage, DEFAULT_PAGE, INVALID_CURSOR, LIMIT_RANGE, MAX_PAGE};
use crate::service::requests::{
    AccountDeletion, Credentials, Invalid, LinkConfirmation, Parsed, PasswordChange,
    RefreshRequest, ResendActivation, ResetConfirmation, ResetRequest, SignUp,
};
use crate::service::reset::INVALID_UID;

/// A request type that a body parses into; `Partial` is what it keeps of a body that fails.
pub trait FromBody: Sized {
    type Partial;
    fn from_body(body: &Body) -> Parsed<Self, Self::Partial>;
}

/// The `uid` field of a mailed link: a string that must decode to a user id.
fn uid_field(fields: &mut Fields<'_>) -> Option<Uid> {
    let uid = fields.string("uid").and_then(|text| Uid::parse(&text));
    if uid.is_none() && !fields.has_error("uid") {
        fields.add_error("uid", INVALID_UID);
    }
    uid
}

/// `Ok(value)` when every field parsed, else the errors with the partial value.
fn finish<T, P>(fields: Fields<'_>, value: Option<T>, partial: P) -> Parsed<T, P> {
    let errors = fields.into_errors();
    match value {
        Some(value) if errors.is_empty() => Ok(value),
        _ => Err(Invalid {
            errors,
            parsed: partial,
        }),
    }
}

impl FromBody for SignUp {
    type Partial = Option<Email>;
    fn from_body(body: &Body) -> Parsed<Self, Option<Email>> {
        let mut fields = body.fields();
        let email = fields.email("email");
        let password = fields.password("password");
        let value = match (&email, password) {
            (Some(email), Some(password)) => Some(SignUp {
                email: email.clone(),
                password,
            }),
            _ => None,
        };
        finish(fields, value, email)
    }
}

impl FromBody for Credentials {
    type Partial = ();
    fn from_body(body: &Body) -> Parsed<Self, ()> {
        let mut fields = body.fields();
        // drf-jwt's plain string field: a bool, list or object is "Not a valid string."
        let email = fields.string("email");
        let password = fields.password("password");
        let value = email
            .zip(password)
            .map(|(email, password)| Credentials { email, password });
        finish(fields, value, ())
    }
}

impl FromBody for PasswordChange {
    type Partial = Option<crate::domain::password::Password>;
    fn from_body(body: &Body) -> Parsed<Self, Self::Partial> {
        let mut fields = body.fields();
        let new_password = fields.password("new_password");
        let current_password = fields.password("current_password");
        match (current_password, new_password) {
            (Some(current_password), Some(new_password)) if !fields.has_errors() => {
                Ok(PasswordChange {
                    current_password,
                    new_password,
                })
            }
            (current, _) => Err(Invalid {
                errors: fields.into_errors(),
                parsed: current,
            }),
        }
    }
}

impl FromBody for AccountDeletion {
    type Partial = ();
    fn from_body(body: &Body) -> Parsed<Self, ()> {
        let mut fields = body.fields();
        let value = fields
            .password("current_password")
            .map(|current_password| AccountDeletion { current_password });
        finish(fields, value, ())
    }
}

impl FromBody for ResetRequest {
    type Partial = ();
    fn from_body(body: &Body) -> Parsed<Self, ()> {
        let mut fields = body.fields();
        let value = fields.email("email").map(|email| ResetRequest { email });
        finish(fields, value, ())
    }
}

impl FromBody for ResetConfirmation {
    type Partial = Option<Uid>;
    fn from_body(body: &Body) -> Parsed<Self, Option<Uid>> {
        let mut fields = body.fields();
        let uid = uid_field(&mut fields);
        let token = fields.string("token");
        let new_password = fields.password("new_password");
        let value = match (uid, token, new_password) {
            (Some(uid), Some(token), Some(new_password)) => Some(ResetConfirmation {
                uid,
                token: ResetToken::parse(&token),
                new_password,
            }),
            _ => None,
        };
        finish(fields, value, uid)
    }
}

impl FromBody for LinkConfirmation {
    type Partial = Option<Uid>;
    fn from_body(body: &Body) -> Parsed<Self, Option<Uid>> {
        let mut fields = body.fields();
        let uid = uid_field(&mut fields);
        let token = fields.string("token");
        let value = match (uid, token) {
            (Some(uid), Some(token)) => Some(LinkConfirmation {
                uid,
                token: ResetToken::parse(&token),
            }),
            _ => None,
        };
        finish(fields, value, uid)
    }
}

impl FromBody for RefreshRequest {
    type Partial = ();
    fn from_body(body: &Body) -> Parsed<Self, ()> {
        let mut fields = body.fields();
        let value = fields
            .string("refresh")
            .map(|refresh| RefreshRequest { refresh });
        finish(fields, value, ())
    }
}

impl FromBody for ResendActivation {
    type Partial = ();
    fn from_body(body: &Body) -> Parsed<Self, ()> {
        let mut fields = body.fields();
        let value = fields
            .email("email")
            .map(|email| ResendActivation { email });
        finish(fields, value, ())
    }
}

/// `?limit=` (1–100, default 50) and `?cursor=` of the security log, both errors at once.
pub fn trail_page(query: &[(String, String)]) -> Result<TrailPage, FieldErrors> {
    let mut errors = FieldErrors::new();
    let value = |name: &str| query.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim());
    let limit = match value("limit") {
        None => DEFAULT_PAGE,
        Some(text) => match text.parse::<usize>() {
            Ok(limit) if (1..=MAX_PAGE).contains(&limit) => limit,
            _ => {
                errors.add("limit", LIMIT_RANGE);
                DEFAULT_PAGE
            }
        },
    };
    let before = match value("cursor").filter(|c| !c.is_empty()) {
        None => None,
        Some(text) => {
            let position = TrailPage::cursor(text);
            if position.is_none() {
                errors.add("cursor", INVALID_CURSOR);
            }
            position
        }
    };
    match errors.is_empty() {
        true => Ok(TrailPage { limit, before }),
        false => Err(errors),
    }
}
