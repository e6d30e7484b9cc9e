//! Black-box HTTP tests of SPEC.md, against the app on a random port with a fresh store.

mod accounts;
mod conventions;
mod dynamodb_calls;
mod events;
mod lifecycle;
mod limits;
mod login;
mod reset;
mod sessions;
mod support;
mod tokens;
mod two_factor;
mod vectors;
