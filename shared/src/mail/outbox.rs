//! Local mail: each message becomes an RFC 5322 `.eml` file in the outbox folder (as Django's
//! file backend). The log names the file, never the mail's text: it may hold a live link.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;

use super::{MailError, MailMessage, Mailer};

pub struct Outbox {
    dir: PathBuf,
    sequence: AtomicU64,
}

impl Outbox {
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            sequence: AtomicU64::new(0),
        }
    }

    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }
}

/// A multipart/alternative message with text and HTML parts.
pub fn to_eml(message: &MailMessage, boundary: &str) -> String {
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/alternative; boundary=\"{boundary}\"\r\n\r\n\
         --{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n\
         --{boundary}\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{html}\r\n\
         --{boundary}--\r\n",
        from = message.from,
        to = message.to,
        subject = message.subject,
        text = message.text.replace('\n', "\r\n"),
        html = message.html.replace('\n', "\r\n"),
    )
}

#[async_trait]
impl Mailer for Outbox {
    async fn send(&self, message: &MailMessage) -> Result<(), MailError> {
        let micros = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros());
        let n = self.sequence.fetch_add(1, Ordering::Relaxed);
        let name = format!("{micros}-{n}.eml");
        let eml = to_eml(message, &format!("=_boundary_{micros}_{n}"));
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(|e| MailError(e.to_string()))?;
        let path = self.dir.join(name);
        tokio::fs::write(&path, eml)
            .await
            .map_err(|e| MailError(e.to_string()))?;
        // Only where it is: the mail may hold a live link, which never goes to a log.
        tracing::info!(outbox_file = %path.display(), "mail written to the local outbox");
        Ok(())
    }
}
