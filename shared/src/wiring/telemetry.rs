//! Logging: JSON lines in Lambda (the runtime's span carries the request id onto every line),
//! readable text locally. Nothing logged carries a password, token, secret or code: requests are
//! logged by route template, never by raw path (codes travel in paths).

use tracing_subscriber::EnvFilter;

use crate::settings::Mode;

pub fn init(mode: Mode) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let result = match mode {
        Mode::Lambda => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .without_time()
            .try_init(),
        Mode::Local => builder.with_target(false).try_init(),
    };
    // A second init (tests start several apps in one process) keeps the first subscriber.
    let _ = result;
}
