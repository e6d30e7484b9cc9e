//! Purpose-bound keys derived from the one service secret (HKDF-SHA256, one label each), and the
//! AES-256-GCM sealing of TOTP secrets under versioned keys.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretBox};
use sha2::Sha256;

use crate::config::Secrets;
use crate::store::SealedSecret;

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
