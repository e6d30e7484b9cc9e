//! The mail port and its adapters: SES v2 in AWS, an `.eml` outbox for local runs.

#[cfg(feature = "outbox")]
pub mod outbox;
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
