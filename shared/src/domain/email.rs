//! Email addresses, parsed once: Django's `EmailValidator` rules (the original's), domain part
//! lowercased on save as Django's `normalize_email` does, and an identity key for uniqueness,
//! login and throttles: the address in Unicode NFC, its domain in IDNA ASCII, all lowercased, so
//! case variants and look-alike encodings of one mailbox are one account
//! (docs/api.md#users).

use std::net::{Ipv4Addr, Ipv6Addr};

pub const MAX_EMAIL_CHARS: usize = 254;

#[derive(Clone, PartialEq, Eq)]
pub struct Email {
    stored: String,
    normalized: String,
}

impl std::fmt::Debug for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Email({})", self.stored)
    }
}

impl Email {
    /// Parses an already-trimmed address. `None` when Django's validator would refuse it.
    pub fn parse(value: &str) -> Option<Self> {
        if value.chars().count() > MAX_EMAIL_CHARS || !is_valid(value) {
            return None;
        }
        let (local, domain) = value.rsplit_once('@')?;
        let stored = format!("{local}@{}", domain.to_lowercase());
        let normalized = normalize(value);
        Some(Self { stored, normalized })
    }

    /// The address as saved and answered (domain part lowercased).
    pub fn as_str(&self) -> &str {
        &self.stored
    }

    /// The uniqueness / login / throttle key.
    pub fn normalized(&self) -> &str {
        &self.normalized
    }
}

/// The key an address is looked up by, for inputs that may not even be valid addresses (login
/// and reset throttles are keyed by it whether or not an account exists): NFC, the domain in
/// IDNA ASCII where it has one, lowercased.
pub fn normalize(value: &str) -> String {
    let value = icu_normalizer::ComposingNormalizerBorrowed::new_nfc().normalize(value);
    let key = match value.rsplit_once('@') {
        Some((local, domain)) => match idna::domain_to_ascii(domain) {
            Ok(ascii) if !ascii.is_empty() => format!("{local}@{ascii}"),
            _ => value.into_owned(),
        },
        None => value.into_owned(),
    };
    key.to_lowercase()
}

/// Django 4.2 `EmailValidator.__call__`.
pub fn is_valid(value: &str) -> bool {
    if value.is_empty() || value.chars().count() > 320 {
        return false;
    }
    let Some((user, domain)) = value.rsplit_once('@') else {
        return false;
    };
    if !user_part_ok(user) {
        return false;
    }
    if domain == "localhost" || domain_part_ok(domain) {
        return true;
    }
    // Possibly an internationalised domain: validate its punycode form.
    match idna::domain_to_ascii(domain) {
        Ok(ascii) if ascii != domain => domain_part_ok(&ascii),
        _ => false,
    }
}

const ATEXT_SPECIALS: &str = "-!#$%&'*+/=?^_`{}|~";

fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || ATEXT_SPECIALS.contains(c)
}

/// `user_regex`: a dot-atom, or a quoted string of the allowed characters.
fn user_part_ok(user: &str) -> bool {
    if user.len() >= 2 && user.starts_with('"') && user.ends_with('"') {
        return quoted_ok(&user[1..user.len() - 1]);
    }
    !user.is_empty()
        && user
            .split('.')
            .all(|atom| !atom.is_empty() && atom.chars().all(is_atext))
}

fn quoted_ok(inner: &str) -> bool {
    let plain = |c: u32| matches!(c, 0x01..=0x08 | 0x0b | 0x0c | 0x0e..=0x1f | 0x21 | 0x23..=0x5b | 0x5d..=0x7f);
    let escaped = |c: u32| matches!(c, 0x01..=0x09 | 0x0b | 0x0c | 0x0e..=0x7f);
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(next) if escaped(next as u32) => {}
                _ => return false,
            }
        } else if !plain(c as u32) {
            return false;
        }
    }
    true
}

/// `domain_regex` (labels of 1–63 alphanumerics/hyphens not starting or ending with a hyphen, a
/// final label of 2–63 not ending with a hyphen) or an address literal `[ip]`.
fn domain_part_ok(domain: &str) -> bool {
    if let Some(literal) = domain.strip_prefix('[').and_then(|d| d.strip_suffix(']')) {
        let charset_ok = !literal.is_empty()
            && literal
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.');
        return charset_ok
            && (literal.parse::<Ipv4Addr>().is_ok() || literal.parse::<Ipv6Addr>().is_ok());
    }
    let labels: Vec<&str> = domain.split('.').collect();
    let Some((tld, rest)) = labels.split_last() else {
        return false;
    };
    if rest.is_empty() {
        return false;
    }
    let label_ok = |l: &str| {
        let b = l.as_bytes();
        (1..=63).contains(&b.len())
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
    };
    let tld_ok = (2..=63).contains(&tld.len())
        && !tld.ends_with('-')
        && tld.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-');
    rest.iter().all(|l| label_ok(l)) && tld_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_domain_part_is_lowercased_and_the_key_is_the_whole_address_lowercased() {
        let email = Email::parse("Alice.Smith@Example.COM").unwrap();
        assert_eq!(email.as_str(), "Alice.Smith@example.com");
        assert_eq!(email.normalized(), "alice.smith@example.com");
    }

    #[test]
    fn look_alike_encodings_of_one_mailbox_share_one_key() {
        let composed = Email::parse("Jose@b\u{fc}cher.de").unwrap();
        let decomposed = Email::parse("jose@bu\u{308}cher.de").unwrap();
        let punycode = Email::parse("JOSE@xn--bcher-kva.de").unwrap();
        assert_eq!(composed.normalized(), "jose@xn--bcher-kva.de");
        assert_eq!(decomposed.normalized(), composed.normalized());
        assert_eq!(punycode.normalized(), composed.normalized());
    }

    #[test]
    fn an_address_over_254_characters_is_not_an_address() {
        let long = format!("{}@example.com", "a".repeat(243));
        assert!(Email::parse(&long).is_none());
        assert!(Email::parse(&long[1..]).is_some());
    }

    #[test]
    fn an_internationalised_domain_is_accepted() {
        assert!(is_valid("user@bücher.de"));
    }

    #[test]
    fn escaped_characters_in_a_quoted_local_part_are_accepted() {
        assert!(is_valid(r#""quoted\ local"@example.com"#));
    }
}
