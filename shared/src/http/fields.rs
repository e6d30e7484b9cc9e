//! Request bodies and fields with DRF's semantics and messages (docs/api.md#conventions): JSON objects or
//! form-encoded bodies; strings trimmed; every failing field reported at once.

use serde_json::{Map, Value};

use crate::domain::email::Email;
use crate::domain::password::{Password, MAX_PASSWORD_CHARS};
use crate::error::FieldErrors;
use crate::Error;

pub const REQUIRED: &str = "This field is required.";
pub const NULL: &str = "This field may not be null.";
pub const BLANK: &str = "This field may not be blank.";
pub const NOT_A_STRING: &str = "Not a valid string.";
pub const NULL_CHARACTERS: &str = "Null characters are not allowed.";
pub const INVALID_EMAIL: &str = "Enter a valid email address.";

/// A parsed request body: field name to value (form fields become strings).
#[derive(Debug, Default)]
pub struct Body(Map<String, Value>);

impl Body {
    /// Parses per the content type. An empty body is an empty object whatever its type, as DRF
    /// treats a body without content.
    pub fn parse(content_type: Option<&str>, bytes: &[u8]) -> Result<Self, Error> {
        if bytes.is_empty() {
            return Ok(Self::default());
        }
        let raw_type = content_type.unwrap_or("");
        let media_type = raw_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match media_type.as_str() {
            "application/json" => Self::from_json(bytes),
            "application/x-www-form-urlencoded" => Ok(Self(
                form_urlencoded::parse(bytes)
                    .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
                    .collect(),
            )),
            _ => Err(Error::UnsupportedMediaType(raw_type.to_owned())),
        }
    }

    fn from_json(bytes: &[u8]) -> Result<Self, Error> {
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| Error::MalformedJson(e.to_string()))?;
        let python_type = match value {
            Value::Object(map) => return Ok(Self(map)),
            Value::Null => return Err(Error::non_field("No data provided")),
            Value::Array(_) => "list",
            Value::String(_) => "str",
            Value::Bool(_) => "bool",
            Value::Number(n) if n.is_f64() => "float",
            Value::Number(_) => "int",
        };
        Err(Error::non_field(format!(
            "Invalid data. Expected a dictionary, but got {python_type}."
        )))
    }

    pub fn fields(&self) -> Fields<'_> {
        Fields {
            body: self,
            errors: FieldErrors::new(),
        }
    }
}

/// Reads fields one by one, collecting errors; `finish` answers them all at once.
pub struct Fields<'a> {
    body: &'a Body,
    errors: FieldErrors,
}

impl Fields<'_> {
    /// A required string field (DRF `CharField`): numbers are coerced, other types refused,
    /// surrounding whitespace trimmed, blank refused.
    pub fn string(&mut self, name: &str) -> Option<String> {
        let value = match self.body.0.get(name) {
            None => return self.fail(name, REQUIRED),
            Some(Value::Null) => return self.fail(name, NULL),
            Some(Value::String(s)) => s.trim().to_owned(),
            Some(Value::Number(n)) => n.to_string(),
            Some(_) => return self.fail(name, NOT_A_STRING),
        };
        if value.is_empty() {
            return self.fail(name, BLANK);
        }
        // DRF's ProhibitNullCharactersValidator: a NUL never reaches a hash or an address.
        if value.contains('\0') {
            return self.fail(name, NULL_CHARACTERS);
        }
        Some(value)
    }

    /// A password field: a string field of at most 4096 characters (so nobody can make the
    /// service hash megabytes), wrapped at once so it cannot be printed.
    pub fn password(&mut self, name: &str) -> Option<Password> {
        let value = self.string(name)?;
        if value.chars().count() > MAX_PASSWORD_CHARS {
            let message =
                format!("Ensure this field has no more than {MAX_PASSWORD_CHARS} characters.");
            self.errors.add(name, message);
            return None;
        }
        Some(Password::new(value))
    }

    /// A required email field (DRF `EmailField`): any non-string, and any address Django's
    /// validator refuses or longer than 254 characters, is "Enter a valid email address."
    pub fn email(&mut self, name: &str) -> Option<Email> {
        let raw = match self.body.0.get(name) {
            None | Some(Value::Null) | Some(Value::String(_)) => self.string(name)?,
            Some(_) => return self.fail(name, INVALID_EMAIL),
        };
        match Email::parse(&raw) {
            Some(email) => Some(email),
            None => self.fail(name, INVALID_EMAIL),
        }
    }

    pub fn add_error(&mut self, name: &str, message: impl Into<String>) {
        self.errors.add(name, message);
    }

    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    /// Whether `name` has failed already.
    pub fn has_error(&self, name: &str) -> bool {
        self.errors.get(name).is_some()
    }

    /// The errors so far.
    pub fn into_errors(self) -> FieldErrors {
        self.errors
    }

    fn fail<T>(&mut self, name: &str, message: &str) -> Option<T> {
        self.errors.add(name, message);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(text: &str) -> Result<Body, Error> {
        Body::parse(Some("application/json"), text.as_bytes())
    }

    #[test]
    fn a_json_array_is_not_a_dictionary() {
        let err = json("[1]").unwrap_err();
        let Error::Fields(errors) = err else {
            panic!("{err:?}")
        };
        assert_eq!(
            errors.get("non_field_errors").unwrap(),
            ["Invalid data. Expected a dictionary, but got list."]
        );
    }

    #[test]
    fn numbers_are_coerced_and_strings_trimmed() {
        let body = json(r#"{"a": 12345678, "b": "  x  ", "c": true}"#).unwrap();
        let mut fields = body.fields();
        assert_eq!(fields.string("a").as_deref(), Some("12345678"));
        assert_eq!(fields.string("b").as_deref(), Some("x"));
        assert_eq!(fields.string("c"), None);
        assert_eq!(fields.errors.get("c").unwrap(), [NOT_A_STRING]);
    }

    #[test]
    fn a_form_body_is_read_as_strings() {
        let body = Body::parse(
            Some("application/x-www-form-urlencoded; charset=utf-8"),
            b"email=a%40b.com&password=",
        )
        .unwrap();
        let mut fields = body.fields();
        assert_eq!(fields.string("email").as_deref(), Some("a@b.com"));
        assert_eq!(fields.string("password"), None);
        assert_eq!(fields.errors.get("password").unwrap(), [BLANK]);
    }

    #[test]
    fn a_null_character_is_refused_as_drf_does() {
        let body =
            Body::parse(Some("application/json"), br#"{"password": "abc\u0000def"}"#).unwrap();
        let mut fields = body.fields();
        assert_eq!(fields.password("password").map(|_| ()), None);
        assert_eq!(fields.errors.get("password").unwrap(), [NULL_CHARACTERS]);
    }

    #[test]
    fn other_content_types_are_unsupported() {
        assert!(matches!(
            Body::parse(Some("text/plain"), b"x"),
            Err(Error::UnsupportedMediaType(t)) if t == "text/plain"
        ));
    }
}
