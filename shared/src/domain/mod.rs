//! The domain's records and rules: pure types and functions, no storage, no HTTP. Hashing runs
//! on blocking threads but touches nothing else.

mod argon2_memory;
pub mod client_ip;
pub mod email;
pub mod events;
pub mod keys;
pub mod password;
pub mod records;
pub mod reset_token;
pub mod session;
pub mod throttle;
pub mod token;
pub mod totp;
