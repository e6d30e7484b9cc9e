//! The account service's one auth crate, a hexagon (layers from the inside out):
//!
//! - [`settings`], [`error`]: plain values and the one error enum;
//! - [`domain`]: records and rules (email, password, token, TOTP, keys, client IP);
//! - ports beside their adapters: [`store`] (DynamoDB, embedded redb), [`mail`] (SES, outbox),
//!   [`clock`];
//! - [`service`]: what each endpoint does, in terms of the ports;
//! - [`http`]: the route table with each route's auth policy, request parsing, dispatch, and
//!   the single error-to-response mapping;
//! - [`wiring`]: configuration → adapters → [`App`].
//!
//! No module imports from a layer above its own. The behaviour is described in `docs/api.md`,
//! the storage in `docs/data-model.md`, the threats in `docs/security.md`.

pub mod clock;
pub mod domain;
pub mod error;
pub mod http;
pub mod mail;
pub mod service;
pub mod settings;
pub mod store;
pub mod wiring;

pub use error::Error;
pub use wiring::app::App;
