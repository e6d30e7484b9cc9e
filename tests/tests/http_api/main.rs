//! Black-box HTTP tests of SPEC.md, against the app on a random port with a fresh store.

mod accounts;
mod reset;
mod two_factor;
