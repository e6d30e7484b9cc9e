//! Purpose-bound keys derived from the one service secret (HKDF-SHA256, one label each), and the
//! AES-256-GCM sealing of TOTP secrets under versioned keys.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretBox, SecretString};
use sha2::Sha256;

use crate::domain::records::SealedSecret;

/// A 256-bit AES key for TOTP secrets, with the version stored beside each ciphertext.
pub struct VersionedKey {
    pub version: u32,
    pub key: SecretBox<[u8; 32]>,
}

/// The service's secrets, from configuration only. None of them ever lives in the database.
pub struct Secrets {
    /// Root of the JWT and reset-token keys (HKDF subkeys, one per purpose), and of the
    /// emergency-code key unless `emergency_code_key` is given.
    pub secret_key: SecretString,
    /// The key that seals new TOTP secrets, then older keys still able to open old ones.
    pub totp_keys: Vec<VersionedKey>,
    /// Earlier `secret_key`s (rotation): their JWT and reset-token subkeys still verify, for
    /// those tokens' lifetime; only the current key signs.
    pub previous_secret_keys: Vec<SecretString>,
    /// The emergency-code root, separate so it need not rotate with the token key. Codes stored
    /// under the old derivation (from `secret_key` or a previous one) keep working until used or
    /// replaced.
    pub emergency_code_key: Option<SecretString>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets(..)")
    }
}

pub const MIN_SECRET_KEY_BYTES: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("must be at least {MIN_SECRET_KEY_BYTES} bytes")]
    SecretKeyTooShort,
    #[error("no TOTP encryption key")]
    NoTotpKey,
}

impl Secrets {
    pub fn new(secret_key: SecretString, totp_keys: Vec<VersionedKey>) -> Result<Self, KeyError> {
        if secret_key.expose_secret().len() < MIN_SECRET_KEY_BYTES {
            return Err(KeyError::SecretKeyTooShort);
        }
        if totp_keys.is_empty() {
            return Err(KeyError::NoTotpKey);
        }
        Ok(Self {
            secret_key,
            totp_keys,
            previous_secret_keys: Vec::new(),
            emergency_code_key: None,
        })
    }

    /// Adds the previous secret keys (each at least as long as a current one must be).
    pub fn with_previous_secret_keys(mut self, keys: Vec<SecretString>) -> Result<Self, KeyError> {
        if keys
            .iter()
            .any(|k| k.expose_secret().len() < MIN_SECRET_KEY_BYTES)
        {
            return Err(KeyError::SecretKeyTooShort);
        }
        self.previous_secret_keys = keys;
        Ok(self)
    }

    pub fn with_emergency_code_key(mut self, key: Option<SecretString>) -> Result<Self, KeyError> {
        if key
            .as_ref()
            .is_some_and(|k| k.expose_secret().len() < MIN_SECRET_KEY_BYTES)
        {
            return Err(KeyError::SecretKeyTooShort);
        }
        self.emergency_code_key = key;
        Ok(self)
    }

    /// Fresh random secrets (tests).
    pub fn generate() -> Self {
        let mut root = [0u8; 48];
        rand::rngs::OsRng.fill_bytes(&mut root);
        let mut aes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut aes);
        let root: String = root.iter().map(|b| format!("{b:02x}")).collect();
        Self::new(
            SecretString::from(root),
            vec![VersionedKey {
                version: 1,
                key: SecretBox::new(Box::new(aes)),
            }],
        )
        .expect("generated secrets are valid")
    }
}

pub type HmacSha256 = Hmac<Sha256>;

/// A 256-bit HMAC key for one purpose.
pub struct MacKey(SecretBox<[u8; 32]>);

impl MacKey {
    /// HMAC-SHA256 over the parts, each length-prefixed so no two inputs collide.
    pub fn sign(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut mac =
            <HmacSha256 as Mac>::new_from_slice(self.0.expose_secret()).expect("any key length");
        for part in parts {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }

    pub fn bytes(&self) -> &[u8; 32] {
        self.0.expose_secret()
    }
}

impl Keys {
    /// The reset-token keys that verify: the current one, then the previous ones.
    pub fn password_reset_verifiers(&self) -> impl Iterator<Item = &MacKey> {
        std::iter::once(&self.password_reset).chain(&self.password_reset_previous)
    }

    /// The recovery-link keys that verify: the current one, then the previous ones.
    pub fn recovery_verifiers(&self) -> impl Iterator<Item = &MacKey> {
        std::iter::once(&self.recovery).chain(&self.recovery_previous)
    }

    /// The activation-link keys that verify: the current one, then the previous ones.
    pub fn activation_verifiers(&self) -> impl Iterator<Item = &MacKey> {
        std::iter::once(&self.activation).chain(&self.activation_previous)
    }

    /// The refresh-token keys that verify: the current one, then the previous ones. A rotated
    /// `SECRET_KEY` ends no session: the next refresh answers a token under the current key.
    pub fn refresh_verifiers(&self) -> impl Iterator<Item = &MacKey> {
        std::iter::once(&self.refresh).chain(&self.refresh_previous)
    }

    /// The emergency-code keys that verify: the current one, then earlier derivations.
    pub fn emergency_code_verifiers(&self) -> impl Iterator<Item = &MacKey> {
        std::iter::once(&self.emergency_codes).chain(&self.emergency_codes_previous)
    }
}

pub struct Keys {
    pub jwt: MacKey,
    pub password_reset: MacKey,
    /// Recovery and activation links have keys of their own: no link works as another kind.
    pub recovery: MacKey,
    pub activation: MacKey,
    /// Refresh tokens' MACs.
    pub refresh: MacKey,
    pub emergency_codes: MacKey,
    /// Subkeys of the previous secret keys: verify only, never sign.
    pub jwt_previous: Vec<MacKey>,
    pub password_reset_previous: Vec<MacKey>,
    pub recovery_previous: Vec<MacKey>,
    pub activation_previous: Vec<MacKey>,
    pub refresh_previous: Vec<MacKey>,
    /// Earlier emergency-code derivations whose hashes may still be stored: verify only.
    pub emergency_codes_previous: Vec<MacKey>,
    pub totp: TotpSealer,
}

/// The HKDF subkey `label` of a root secret.
fn subkey(root: &SecretString, label: &str) -> MacKey {
    let hkdf = Hkdf::<Sha256>::new(Some(b"account-service/v1"), root.expose_secret().as_bytes());
    let mut key = [0u8; 32];
    hkdf.expand(label.as_bytes(), &mut key)
        .expect("32 bytes is a valid HKDF length");
    MacKey(SecretBox::new(Box::new(key)))
}

const EMERGENCY_LABEL: &str = "emergency-code-hmac";

impl Keys {
    pub fn derive(secrets: &Secrets) -> Self {
        let current = &secrets.secret_key;
        let previous = &secrets.previous_secret_keys;
        let old_derivations = || {
            std::iter::once(current)
                .chain(previous)
                .map(|root| subkey(root, EMERGENCY_LABEL))
        };
        // The subkey `label` of each previous root: verify-only keys.
        let under_previous =
            |label: &str| -> Vec<MacKey> { previous.iter().map(|k| subkey(k, label)).collect() };
        let (emergency_codes, emergency_codes_previous) = match &secrets.emergency_code_key {
            Some(own) => (subkey(own, EMERGENCY_LABEL), old_derivations().collect()),
            None => (
                subkey(current, EMERGENCY_LABEL),
                old_derivations().skip(1).collect(),
            ),
        };
        Self {
            jwt: subkey(current, "jwt-hs256"),
            password_reset: subkey(current, "password-reset-token"),
            recovery: subkey(current, "totp-recovery-token"),
            activation: subkey(current, "activation-token"),
            refresh: subkey(current, "refresh-token"),
            emergency_codes,
            jwt_previous: under_previous("jwt-hs256"),
            password_reset_previous: under_previous("password-reset-token"),
            recovery_previous: under_previous("totp-recovery-token"),
            activation_previous: under_previous("activation-token"),
            refresh_previous: under_previous("refresh-token"),
            emergency_codes_previous,
            totp: TotpSealer {
                keys: secrets
                    .totp_keys
                    .iter()
                    .map(|k| {
                        (
                            k.version,
                            Aes256Gcm::new_from_slice(k.key.expose_secret()).expect("32-byte key"),
                        )
                    })
                    .collect(),
            },
        }
    }
}

/// Seals TOTP secrets with the current key; opens them with whichever key sealed them.
pub struct TotpSealer {
    /// Current key first.
    keys: Vec<(u32, Aes256Gcm)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(text: &str) -> SecretString {
        SecretString::from(text.repeat(40))
    }

    #[test]
    fn previous_keys_verify_and_never_sign() {
        let old = Keys::derive(&Secrets::new(root("a"), Secrets::generate().totp_keys).unwrap());
        let rotated = Keys::derive(
            &Secrets::new(root("b"), Secrets::generate().totp_keys)
                .unwrap()
                .with_previous_secret_keys(vec![root("a")])
                .unwrap(),
        );
        assert_ne!(rotated.jwt.bytes(), old.jwt.bytes());
        assert_eq!(rotated.jwt_previous[0].bytes(), old.jwt.bytes());
        assert!(rotated
            .password_reset_verifiers()
            .any(|k| k.bytes() == old.password_reset.bytes()));
        assert!(rotated
            .recovery_verifiers()
            .any(|k| k.bytes() == old.recovery.bytes()));
        assert!(rotated
            .activation_verifiers()
            .any(|k| k.bytes() == old.activation.bytes()));
        assert!(rotated
            .refresh_verifiers()
            .any(|k| k.bytes() == old.refresh.bytes()));
        // Signing keys are the new ones only.
        for (new, old) in [
            (&rotated.recovery, &old.recovery),
            (&rotated.activation, &old.activation),
            (&rotated.refresh, &old.refresh),
        ] {
            assert_ne!(new.bytes(), old.bytes());
        }
        // Without an own key, codes follow the token key, and old ones still verify.
        assert!(rotated
            .emergency_code_verifiers()
            .any(|k| k.bytes() == old.emergency_codes.bytes()));
    }

    #[test]
    fn an_own_emergency_key_keeps_old_codes_verifying() {
        let before = Keys::derive(&Secrets::new(root("a"), Secrets::generate().totp_keys).unwrap());
        let after = Keys::derive(
            &Secrets::new(root("a"), Secrets::generate().totp_keys)
                .unwrap()
                .with_emergency_code_key(Some(root("c")))
                .unwrap(),
        );
        assert_ne!(
            after.emergency_codes.bytes(),
            before.emergency_codes.bytes()
        );
        assert_eq!(after.jwt.bytes(), before.jwt.bytes());
        assert!(after
            .emergency_code_verifiers()
            .any(|k| k.bytes() == before.emergency_codes.bytes()));
    }
}

#[derive(Debug, thiserror::Error)]
#[error("TOTP secret cannot be opened (unknown key version or tampered ciphertext)")]
pub struct UnsealError;

impl TotpSealer {
    /// `context` (user id and device id) is bound as associated data, so a ciphertext moved to
    /// another item does not open.
    pub fn seal(&self, secret: &[u8], context: &[u8]) -> SealedSecret {
        let (version, cipher) = &self.keys[0];
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ciphertext = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: secret,
                    aad: context,
                },
            )
            .expect("AES-GCM encryption of a short secret cannot fail");
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&ciphertext);
        SealedSecret {
            key_version: *version,
            sealed,
        }
    }

    /// The version of the key that seals new secrets.
    pub fn current_version(&self) -> u32 {
        self.keys[0].0
    }

    pub fn open(&self, sealed: &SealedSecret, context: &[u8]) -> Result<Vec<u8>, UnsealError> {
        let (_, cipher) = self
            .keys
            .iter()
            .find(|(v, _)| *v == sealed.key_version)
            .ok_or(UnsealError)?;
        if sealed.sealed.len() < 12 {
            return Err(UnsealError);
        }
        let (nonce, ciphertext) = sealed.sealed.split_at(12);
        cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: context,
                },
            )
            .map_err(|_| UnsealError)
    }
}
