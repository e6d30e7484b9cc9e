//! The deployed shape, run locally: `infra/template.yaml`'s HTTP API in front of each
//! function's own release binary, started as a Lambda custom runtime with the environment the
//! template gives it (README: Serve the deployed shape locally).
//!
//! - [`template`] reads the SAM template (routes, binaries, environment, intrinsics).
//! - [`routes`] selects a route as API Gateway HTTP APIs do.
//! - [`event`] turns a request into a payload 2.0 event and a function's response into HTTP.
//! - [`runtime`] runs warm processes per function behind the Lambda Runtime API.
//! - [`gateway`] ties them together: start-up (cold starts, route probe) and the HTTP front.

pub mod event;
pub mod gateway;
pub mod routes;
pub mod runtime;
pub mod template;
