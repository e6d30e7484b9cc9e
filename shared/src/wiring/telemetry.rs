//! Logging: JSON lines in Lambda (the runtime's span carries the request id onto every line),
//! readable text locally. Nothing logged carries a password, token, secret or code: requests are
//! logged by route template, never by raw path (codes travel in paths).

use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt;
use tracing_subscriber::prelude::*;

use crate::settings::Mode;

pub fn init(mode: Mode) {
    // RUST_LOG as a level (`info`) or per target (`warn,auth=debug`). Span-field filters are not
    // supported: their regex engine cost every function binary most of a megabyte.
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO));
    let result = match mode {
        Mode::Lambda => tracing_subscriber::registry()
            .with(
                fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(false)
                    .without_time(),
            )
            .with(filter)
            .try_init(),
        Mode::Local => tracing_subscriber::registry()
            .with(fmt::layer().with_target(false))
            .with(filter)
            .try_init(),
    };
    // A second init (tests start several apps in one process) keeps the first subscriber.
    let _ = result;
}
