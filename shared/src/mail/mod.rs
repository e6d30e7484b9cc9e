//! The mail port and its adapters: SES v2 in AWS, an `.eml` outbox for local runs.

#[cfg(feature = "outbox")]
pub mod outbox;
#[cfg(feature = "ses")]
pub mod ses;

use async_trait::async_trait;

#[derive(Debug, Clone)]
pub struct MailMessage {
    pub from: String,
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

#[derive(Debug, thiserror::Error)]
#[error("mail not sent: {0}")]
pub struct MailError(pub String);

#[async_trait]
pub trait Mailer: Send + Sync + 'static {
    async fn send(&self, message: &MailMessage) -> Result<(), MailError>;
}

/// The mailer of a process that never sends (`MAILER=none`: the API functions, which only queue
/// mail). Nothing in them calls it; if wiring ever did, the send fails loudly instead of
/// dropping the mail, and the queued item stays for the mailer function.
pub struct NotSending;

#[async_trait]
impl Mailer for NotSending {
    async fn send(&self, _message: &MailMessage) -> Result<(), MailError> {
        Err(MailError(
            "this process does not send mail (MAILER=none): the mailer function does".into(),
        ))
    }
}
