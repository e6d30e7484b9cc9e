//! The account service's one auth crate.
//!
//! A hexagon: the domain ([`service`], [`email`], [`password`], [`token`], [`totp`]) talks only to
//! small ports ([`store::Store`], [`mail::Mailer`], [`clock::Clock`]). Adapters implement the
//! ports (DynamoDB or an embedded redb file; SES or a local outbox). [`http`] is the one edge that
//! knows about HTTP: the route table, request parsing, and the single error-to-response mapping.

pub mod clock;
pub mod config;
pub mod email;
pub mod error;
pub mod fields;
pub mod http;
pub mod keys;
pub mod mail;
pub mod password;
pub mod service;
pub mod store;
pub mod telemetry;
pub mod token;
pub mod totp;

pub use error::Error;
pub use http::app::App;
