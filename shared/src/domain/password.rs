//! Passwords: a type that never prints, argon2id hashing on blocking threads, Django pbkdf2
//! hashes verified for imported users, and Django's four validators with their messages.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};

use argon2::password_hash::{PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use super::argon2_memory::WorkingMemory;
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

use crate::settings::Argon2Cost;
use crate::Error;

/// Longer passwords are refused before any hashing (docs/api.md#abuse-limits).
pub const MAX_PASSWORD_CHARS: usize = 4096;

/// A plaintext password from a request. `Debug` prints nothing of it.
#[derive(Clone)]
pub struct Password(SecretString);

impl Password {
    pub fn new(plain: String) -> Self {
        Self(SecretString::from(plain))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// The outcome of checking a password against a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    No,
    Yes,
    /// Correct, but stored under a legacy scheme or weaker cost: rehash now.
    YesRehash,
}

impl Verified {
    pub fn ok(self) -> bool {
        self != Self::No
    }
}

/// Hashes and verifies on tokio's blocking pool (argon2 takes tens of milliseconds of CPU and
/// 19 MiB; it must never run on the async executor). A semaphore bounds how many run at once so
/// a burst of logins cannot exhaust memory.
#[derive(Clone)]
pub struct PasswordHasher {
    argon2: Arc<Argon2<'static>>,
    params: Params,
    /// A hash of a random password, verified when the account does not exist, so an unknown
    /// email costs the same as a wrong password.
    dummy_hash: Arc<String>,
    permits: Arc<Semaphore>,
    /// Argon2's working memory, kept between hashes (at most one per permit). Allocating it per
    /// hash cost thousands of page faults on fresh zeroed pages (a fifth of the hash's time),
    /// and each blocking thread's allocator arena kept its own 19 MiB afterwards, so a warm
    /// process grew with every thread that had hashed. Its contents are overwritten by the
    /// next hash before they are read. It sits in huge pages where the kernel allows
    /// (`argon2_memory`).
    memory: Arc<Mutex<Vec<WorkingMemory>>>,
}

impl PasswordHasher {
    pub fn new(cost: Argon2Cost) -> Result<Self, Error> {
        let params = Params::new(cost.memory_kib, cost.iterations, cost.parallelism, None)
            .map_err(|e| Error::Internal(format!("argon2 parameters: {e}")))?;
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
        let dummy_hash = dummy_hash(&params)?;
        let lanes = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(Self {
            argon2: Arc::new(argon2),
            params,
            dummy_hash: Arc::new(dummy_hash),
            permits: Arc::new(Semaphore::new(lanes * 2)),
            memory: Arc::default(),
        })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Argon2<'static>, &mut WorkingMemory) -> T + Send + 'static,
    ) -> Result<T, Error> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| Error::Internal("hasher closed".into()))?;
        let argon2 = self.argon2.clone();
        let pool = self.memory.clone();
        tokio::task::spawn_blocking(move || {
            let taken = pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let mut memory = taken.unwrap_or_default();
            let result = work(&argon2, &mut memory);
            pool.lock().unwrap_or_else(|e| e.into_inner()).push(memory);
            result
        })
        .await
        .map_err(|e| Error::Internal(format!("hashing task: {e}")))
    }

    pub async fn hash(&self, password: &Password) -> Result<String, Error> {
        let password = password.clone();
        let params = self.params.clone();
        self.blocking(move |argon2, memory| {
            let internal = |e: &dyn std::fmt::Display| Error::Internal(format!("argon2: {e}"));
            let salt = SaltString::generate(&mut rand::rngs::OsRng);
            let mut salt_bytes = [0u8; 64];
            let salt_bytes = salt
                .as_salt()
                .decode_b64(&mut salt_bytes)
                .map_err(|e| internal(&e))?;
            let mut output = [0u8; Params::DEFAULT_OUTPUT_LEN];
            argon2
                .hash_password_into_with_memory(
                    password.expose().as_bytes(),
                    salt_bytes,
                    &mut output,
                    memory.blocks(params.block_count()),
                )
                .map_err(|e| internal(&e))?;
            phc_string(&params, &salt, &output)
        })
        .await?
    }

    pub async fn verify(&self, password: &Password, stored: &str) -> Result<Verified, Error> {
        let (password, stored) = (password.clone(), stored.to_owned());
        let params = self.params.clone();
        self.blocking(move |_, memory| verify_blocking(memory, &params, password.expose(), &stored))
            .await
    }

    /// Burns the time of one verification; always answers `No`.
    pub async fn verify_nobody(&self, password: &Password) -> Result<Verified, Error> {
        let dummy = self.dummy_hash.clone();
        self.verify(password, &dummy).await.map(|_| Verified::No)
    }
}

/// The PHC string of an argon2id hash at `params` (what `PasswordHasher::hash_password`
/// writes).
fn phc_string(params: &Params, salt: &SaltString, output: &[u8]) -> Result<String, Error> {
    use argon2::password_hash::{Output, ParamsString};
    let phc = PasswordHash {
        algorithm: argon2::ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params)
            .map_err(|e| Error::Internal(format!("argon2 parameters: {e}")))?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(output).map_err(|e| Error::Internal(format!("argon2: {e}")))?),
    };
    Ok(phc.to_string())
}

/// A PHC string at the service's parameters with a random salt and a random output: verifying
/// a password against it costs exactly one hash at those parameters (and never succeeds, short
/// of a 2^-256 guess of the output), yet making it costs no hashing, so start-up does not pay for
/// one argon2 run.
fn dummy_hash(params: &Params) -> Result<String, Error> {
    use rand::RngCore;
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    let mut output = [0u8; Params::DEFAULT_OUTPUT_LEN];
    rand::rngs::OsRng.fill_bytes(&mut output);
    phc_string(params, &salt, &output)
}

fn verify_blocking(
    memory: &mut WorkingMemory,
    params: &Params,
    password: &str,
    stored: &str,
) -> Verified {
    if stored.starts_with("pbkdf2_sha256$") {
        return match verify_django_pbkdf2(password, stored) {
            true => Verified::YesRehash,
            false => Verified::No,
        };
    }
    let Ok(parsed) = PasswordHash::new(stored) else {
        return Verified::No;
    };
    let Some(current) = argon2_matches(memory, &parsed, password.as_bytes()) else {
        return Verified::No;
    };
    let weaker = current.m_cost() < params.m_cost() || current.t_cost() < params.t_cost();
    if parsed.algorithm.as_str() != "argon2id" || weaker {
        Verified::YesRehash
    } else {
        Verified::Yes
    }
}

/// Whether `password` hashes to the stored argon2 (id, i or d) hash, computed in `memory`
/// (grown if the stored parameters need more); the stored parameters if it does. The outputs
/// are compared in constant time (`password_hash::Output`'s equality).
fn argon2_matches(
    memory: &mut WorkingMemory,
    stored: &PasswordHash,
    password: &[u8],
) -> Option<Params> {
    use argon2::password_hash::Output;
    let algorithm = Algorithm::try_from(stored.algorithm).ok()?;
    let version = match stored.version {
        Some(v) => Version::try_from(v).ok()?,
        None => Version::default(),
    };
    let params = Params::try_from(stored).ok()?;
    let (salt, expected) = (stored.salt?, stored.hash?);
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_bytes).ok()?;
    let mut output = vec![0u8; expected.len()];
    let blocks = memory.blocks(params.block_count());
    Argon2::new(algorithm, version, params.clone())
        .hash_password_into_with_memory(password, salt_bytes, &mut output, blocks)
        .ok()?;
    (Output::new(&output).ok()? == expected).then_some(params)
}

/// Django's `PBKDF2PasswordHasher`: `pbkdf2_sha256$<iterations>$<salt>$<base64 sha256>`.
pub fn verify_django_pbkdf2(password: &str, encoded: &str) -> bool {
    let mut parts = encoded.splitn(4, '$');
    let (Some("pbkdf2_sha256"), Some(iterations), Some(salt), Some(hash)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let Ok(iterations) = iterations.parse::<u32>() else {
        return false;
    };
    // A stored count this large is corruption, not a hash worth a minute of CPU.
    if iterations == 0 || iterations > 10_000_000 {
        return false;
    }
    let Ok(expected) = base64::engine::general_purpose::STANDARD.decode(hash) else {
        return false;
    };
    let mut derived = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<sha2::Sha256>(
        password.as_bytes(),
        salt.as_bytes(),
        iterations,
        &mut derived,
    );
    expected.len() == 32 && bool::from(derived.ct_eq(&expected[..]))
}

pub const MIN_LENGTH: usize = 8;
const MAX_SIMILARITY: f64 = 0.7;

pub const TOO_SIMILAR: &str = "The password is too similar to the email address.";
pub const TOO_SHORT: &str = "This password is too short. It must contain at least 8 characters.";
pub const TOO_COMMON: &str = "This password is too common.";
pub const ENTIRELY_NUMERIC: &str = "This password is entirely numeric.";

/// Django's four validators, all run, messages in Django's order.
pub fn validate(password: &str, email: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if too_similar(password, email) {
        errors.push(TOO_SIMILAR.to_owned());
    }
    if password.chars().count() < MIN_LENGTH {
        errors.push(TOO_SHORT.to_owned());
    }
    if common_passwords().contains(password.trim().to_lowercase().as_str()) {
        errors.push(TOO_COMMON.to_owned());
    }
    if !password.is_empty() && password.chars().all(char::is_numeric) {
        errors.push(ENTIRELY_NUMERIC.to_owned());
    }
    errors
}

/// `UserAttributeSimilarityValidator` on the email: the address and each of its `\W+`-separated
/// parts are compared with difflib's `quick_ratio`.
fn too_similar(password: &str, email: &str) -> bool {
    if email.is_empty() {
        return false;
    }
    let password: Vec<char> = password.to_lowercase().chars().collect();
    let email = email.to_lowercase();
    let mut parts: Vec<&str> = email
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .collect();
    parts.push(&email);
    parts.into_iter().any(|part| {
        let part: Vec<char> = part.chars().collect();
        !exceeds_maximum_length_ratio(password.len(), part.len())
            && quick_ratio(&password, &part) >= MAX_SIMILARITY
    })
}

fn exceeds_maximum_length_ratio(password_len: usize, value_len: usize) -> bool {
    let bound = MAX_SIMILARITY / 2.0 * password_len as f64;
    password_len >= 10 * value_len && (value_len as f64) < bound
}

/// difflib's `SequenceMatcher.quick_ratio`: 2 × (multiset intersection) / (total length).
fn quick_ratio(a: &[char], b: &[char]) -> f64 {
    let total = a.len() + b.len();
    if total == 0 {
        return 1.0;
    }
    let mut available = std::collections::HashMap::<char, i64>::new();
    for c in b {
        *available.entry(*c).or_default() += 1;
    }
    let mut matches = 0usize;
    for c in a {
        let n = available.entry(*c).or_default();
        if *n > 0 {
            matches += 1;
        }
        *n -= 1;
    }
    2.0 * matches as f64 / total as f64
}

/// Django's common-password list (see `data/README.md` for its source and licence), built on
/// first use: only sign-up, password change and reset confirmation need it, and they hash
/// argon2 anyway, so init (every function's cold start) does not build its 20,000 entries.
fn common_passwords() -> &'static HashSet<&'static str> {
    static LIST: OnceLock<HashSet<&'static str>> = OnceLock::new();
    LIST.get_or_init(|| {
        include_str!("../../data/common-passwords.txt")
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::{PasswordHasher as _, PasswordVerifier};

    #[test]
    fn a_password_debug_prints_nothing_of_it() {
        let printed = format!("{:?}", Password::new("hunter2hunter2".into()));
        assert!(!printed.contains("hunter2"), "{printed}");
    }

    /// The pooled-memory hash is the crate's own: the crate verifies it, and it verifies the
    /// crate's, whichever memory (fresh, reused, larger) it runs in.
    #[tokio::test]
    async fn hashes_in_reused_memory_agree_with_the_argon2_crate() {
        let cost = Argon2Cost::default();
        let hasher = PasswordHasher::new(cost).unwrap();
        let password = Password::new("correct horse battery".into());
        let ours = hasher.hash(&password).await.unwrap();
        let again = hasher.hash(&password).await.unwrap();
        assert_ne!(ours, again, "a fresh salt each time");
        let params = Params::new(cost.memory_kib, cost.iterations, cost.parallelism, None).unwrap();
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        for stored in [&ours, &again] {
            let parsed = PasswordHash::new(stored).unwrap();
            assert!(argon2
                .verify_password(b"correct horse battery", &parsed)
                .is_ok());
            assert!(argon2
                .verify_password(b"wrong horse battery", &parsed)
                .is_err());
        }
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        let theirs = argon2
            .hash_password(b"correct horse battery", &salt)
            .unwrap()
            .to_string();
        assert_eq!(
            hasher.verify(&password, &theirs).await.unwrap(),
            Verified::Yes
        );
        let wrong = Password::new("wrong horse battery".into());
        assert_eq!(hasher.verify(&wrong, &theirs).await.unwrap(), Verified::No);
        // A stored hash at a lower cost verifies, and asks to be rehashed.
        let weak = Params::new(8 * 1024, 1, 1, None).unwrap();
        let weak = Argon2::new(Algorithm::Argon2id, Version::V0x13, weak)
            .hash_password(b"correct horse battery", &salt)
            .unwrap()
            .to_string();
        assert_eq!(
            hasher.verify(&password, &weak).await.unwrap(),
            Verified::YesRehash
        );
    }

    #[test]
    fn the_dummy_hash_is_shaped_as_a_real_hash_and_matches_nothing() {
        let cost = Argon2Cost::default();
        let params = Params::new(cost.memory_kib, cost.iterations, cost.parallelism, None).unwrap();
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        let real = argon2.hash_password(b"some password", &salt).unwrap();
        let dummy = dummy_hash(&params).unwrap();
        let parsed = PasswordHash::new(&dummy).unwrap();
        // Same algorithm, version, parameters, salt and output lengths: the same verify cost.
        assert_eq!(parsed.algorithm, real.algorithm);
        assert_eq!(parsed.version, real.version);
        assert_eq!(parsed.params, real.params);
        assert_eq!(parsed.salt.unwrap().len(), real.salt.unwrap().len());
        assert_eq!(parsed.hash.unwrap().len(), real.hash.unwrap().len());
        assert_ne!(
            dummy,
            dummy_hash(&params).unwrap(),
            "salt and output are random"
        );
        let mut memory = WorkingMemory::new();
        let verified = verify_blocking(&mut memory, &params, "some password", &dummy);
        assert_eq!(verified, Verified::No);
        let verified = verify_blocking(&mut memory, &params, "some password", &real.to_string());
        assert_eq!(verified, Verified::Yes);
        let verified = verify_blocking(&mut memory, &params, "other password", &real.to_string());
        assert_eq!(verified, Verified::No);
    }

    #[test]
    fn quick_ratio_matches_difflib() {
        // difflib.SequenceMatcher(a="abcd", b="bcde").quick_ratio() == 0.75
        let a: Vec<char> = "abcd".chars().collect();
        let b: Vec<char> = "bcde".chars().collect();
        assert_eq!(quick_ratio(&a, &b), 0.75);
    }
}
