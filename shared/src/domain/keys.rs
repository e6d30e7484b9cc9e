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
    /// Root of the JWT, reset-token and emergency-code keys (HKDF subkeys, one per purpose).
    pub secret_key: SecretString,
    /// The key that seals new TOTP secrets, then older keys still able to open old ones.
    pub totp_keys: Vec<VersionedKey>,
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
        })
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

pub struct Keys {
    pub jwt: MacKey,
    pub password_reset: MacKey,
    /// Recovery and activation links have keys of their own: no link works as another kind.
    pub recovery: MacKey,
    pub activation: MacKey,
    pub emergency_codes: MacKey,
    pub totp: TotpSealer,
}

impl Keys {
    pub fn derive(secrets: &Secrets) -> Self {
        let hkdf = Hkdf::<Sha256>::new(
            Some(b"account-service/v1"),
            secrets.secret_key.expose_secret().as_bytes(),
        );
        let subkey = |label: &str| {
            let mut key = [0u8; 32];
            hkdf.expand(label.as_bytes(), &mut key)
                .expect("32 bytes is a valid HKDF length");
            MacKey(SecretBox::new(Box::new(key)))
        };
        Self {
            jwt: subkey("jwt-hs256"),
            password_reset: subkey("password-reset-token"),
            recovery: subkey("totp-recovery-token"),
            activation: subkey("activation-token"),
            emergency_codes: subkey("emergency-code-hmac"),
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
