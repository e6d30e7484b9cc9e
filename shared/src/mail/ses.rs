//! SES v2 `SendEmail` with simple content (text and HTML parts).

use async_trait::async_trait;
use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message};
use aws_sdk_sesv2::Client;

use super::{MailError, MailMessage, Mailer};

pub struct SesMailer {
    client: Client,
}

fn content(data: &str) -> Result<Content, MailError> {
    Content::builder()
        .data(data)
        .charset("UTF-8")
        .build()
        .map_err(|e| MailError(e.to_string()))
}

impl SesMailer {
    pub fn new(config: &aws_types::SdkConfig) -> Self {
        Self {
            client: Client::new(config),
        }
    }

    /// Against a local emulator, the sender's domain must be a verified identity before
    /// `SendEmail` succeeds; creating it is idempotent enough (an existing one is fine).
    pub async fn ensure_identity(&self, from: &str) -> Result<(), MailError> {
        let domain = from.rsplit_once('@').map_or(from, |(_, d)| d);
        match self
            .client
            .create_email_identity()
            .email_identity(domain)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if format!("{e:?}").contains("AlreadyExists") => Ok(()),
            Err(e) => Err(MailError(format!("{e:?}"))),
        }
    }
}

#[async_trait]
impl Mailer for SesMailer {
    async fn send(&self, message: &MailMessage) -> Result<(), MailError> {
        let body = Body::builder()
            .text(content(&message.text)?)
            .html(content(&message.html)?)
            .build();
        let simple = Message::builder()
            .subject(content(&message.subject)?)
            .body(body)
            .build();
        self.client
            .send_email()
            .from_email_address(&message.from)
            .destination(Destination::builder().to_addresses(&message.to).build())
            .content(EmailContent::builder().simple(simple).build())
            .send()
            .await
            .map_err(|e| MailError(format!("{}", aws_sdk_sesv2::error::DisplayErrorContext(e))))?;
        Ok(())
    }
}
