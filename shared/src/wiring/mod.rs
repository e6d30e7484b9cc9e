//! Start-up wiring: configuration from the environment, logging, and the [`app::App`] built
//! from them with the adapters the configuration chooses. Done once per process.

pub mod app;
pub mod aws;
pub mod aws_http;
pub mod config;
pub mod telemetry;
