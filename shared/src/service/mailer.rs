//! Delivery of the mail queue (docs/api.md#mail-queue), at least once: an item is claimed by a
//! conditional write before it is sent and removed after. A crash between the send and the
//! removal sends it again once the claim has expired; a duplicate stream record of an item
//! that is claimed or gone sends nothing. Mail is rendered here, at send time: reset links are
//! minted now, from the account as it now is, so no live link ever sits in the table.

use crate::domain::events::{iso8601, NoticeFacts, QueueItem, QueueKind, SecurityEvent};
use crate::domain::records::User;
use crate::domain::reset_token::Purpose;
use crate::mail::MailMessage;
use crate::store::Claim;
use crate::Error;

use super::reset::html_escape;
use super::Service;

/// How long a claim keeps other deliveries off an item: past the mailer's 30 s timeout.
pub const CLAIM_SECS: i64 = 60;
/// How many queued items the local delivery loop takes per round.
const BATCH: usize = 25;

/// What became of one queued item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Sent,
    /// Handled without a mail (a purge, a reset for an account that is gone).
    Done,
    /// Delivered and removed already (a duplicate record): nothing to do.
    Nothing,
    /// Another delivery holds the item: try again after its claim (it may have crashed).
    Busy,
}

impl Service {
    /// Claims, renders, sends and removes one queued item. An error leaves the claim to
    /// expire, so the item is tried again (by the stream's retry or the local loop).
    pub async fn deliver(&self, id: &str) -> Result<Delivery, Error> {
        let now = self.now();
        let item = match self.store.claim_queued(id, now, now + CLAIM_SECS).await? {
            Claim::Claimed(item) => item,
            Claim::Busy => return Ok(Delivery::Busy),
            Claim::Gone => return Ok(Delivery::Nothing),
        };
        let message = match &item.kind {
            QueueKind::PurgeUser => {
                self.store.purge_user(item.user).await?;
                None
            }
            QueueKind::PasswordReset => self.link_mail(&item, Purpose::Reset).await?,
            QueueKind::RecoveryLink => self.link_mail(&item, Purpose::Recovery).await?,
            QueueKind::ActivationLink => self.link_mail(&item, Purpose::Activation).await?,
            QueueKind::Notice(facts) => {
                if facts.event == SecurityEvent::AccountDeleted {
                    // Its trail is unreachable since the deletion; now it goes.
                    self.store.purge_user(item.user).await?;
                }
                Some(self.notice(&item, facts))
            }
        };
        let outcome = match message {
            Some(message) => {
                self.mailer
                    .send(&message)
                    .await
                    .map_err(|e| Error::Unavailable(e.to_string()))?;
                Delivery::Sent
            }
            None => Delivery::Done,
        };
        self.store.remove_queued(id).await?;
        tracing::info!(queue_item = id, outcome = ?outcome, "queued item delivered");
        Ok(outcome)
    }

    /// Delivers what is queued now (the local server's loop; in AWS the table's stream
    /// triggers the mailer function instead). Failures are logged and left for the next round.
    pub async fn deliver_queued(&self) -> Result<usize, Error> {
        let ids = self.store.queued(BATCH).await?;
        let mut handled = 0;
        for id in &ids {
            match self.deliver(id).await {
                Ok(Delivery::Nothing | Delivery::Busy) => {}
                Ok(_) => handled += 1,
                Err(err) => tracing::warn!(queue_item = %id, error = %err, "delivery failed"),
            }
        }
        Ok(handled)
    }

    /// A mail carrying a link of `purpose`, minted now from the account as it now is. An
    /// account that is gone gets nothing; so does an activation of an active one.
    async fn link_mail(
        &self,
        item: &QueueItem,
        purpose: Purpose,
    ) -> Result<Option<MailMessage>, Error> {
        let Some(user) = self.store.user(item.user).await? else {
            return Ok(None);
        };
        let link = self.link(purpose, &user);
        Ok(match purpose {
            Purpose::Reset => Some(self.reset_message(&user, &link)),
            Purpose::Recovery => Some(self.link_message(
                &user,
                "Two-factor recovery",
                "You asked to recover your account's two-factor authentication, having lost \
                 your authenticator and emergency codes. Open this link to start the recovery. \
                 It waits before it removes two-factor authentication, and every device and \
                 session of yours will be told; anything you do with your authenticator \
                 cancels it.",
                &link,
            )),
            Purpose::Activation if user.pending => Some(self.link_message(
                &user,
                "Account activation",
                "Open this link to activate your account.",
                &link,
            )),
            Purpose::Activation => None,
        })
    }

    /// A mail whose one purpose is a link: text and HTML.
    fn link_message(&self, user: &User, title: &str, what: &str, link: &str) -> MailMessage {
        let site = &self.settings.site_name;
        let text = format!(
            "{what}\n\n{link}\n\nIf you did not ask for this, ignore this message; the link \
             expires on its own.\n\nThe {site} team\n"
        );
        let html = format!(
            "<!doctype html>\n<html><body>\n<p>{what_h}</p>\n<p><a href=\"{link_h}\">{link_h}</a></p>\n\
             <p>If you did not ask for this, ignore this message; the link expires on its own.</p>\n\
             <p>The {site_h} team</p>\n</body></html>\n",
            what_h = html_escape(what),
            link_h = html_escape(link),
            site_h = html_escape(site),
        );
        MailMessage {
            from: self.settings.mail_from.clone(),
            to: user.email.clone(),
            subject: format!("{title} on {site}"),
            text,
            html,
        }
    }

    /// A security notice: what happened, when, from where, and what to do if it was not the
    /// owner. No secret, token, code or link that grants anything.
    pub fn notice(&self, item: &QueueItem, facts: &NoticeFacts) -> MailMessage {
        let site = &self.settings.site_name;
        let what = facts.event.notice().unwrap_or("a security setting changed");
        let when = iso8601(facts.at);
        let codes_left = facts
            .codes_left
            .map(|n| format!("\nEmergency codes left: {n}.\n"))
            .unwrap_or_default();
        let advice = match facts.event {
            SecurityEvent::AccountDeleted => {
                "If you did not delete your account, contact us at once: someone else knew your \
                 password."
            }
            _ => {
                "If this was not you, reset your password now (use \"forgot password\" on the \
                 sign-in page), then check your two-factor settings."
            }
        };
        let text = format!(
            "Hello,\n\nOn {site}, {what}.\n\nWhen: {when} (UTC)\nFrom IP address: {ip}\n\
             {codes_left}\nIf this was you, there is nothing to do.\n{advice}\n\nThe {site} team\n",
            ip = facts.ip,
        );
        let html = format!(
            "<!doctype html>\n<html><body>\n<p>Hello,</p>\n<p>On {site_h}, {what_h}.</p>\n\
             <p>When: {when} (UTC)<br>From IP address: {ip_h}</p>\n{codes_h}\
             <p>If this was you, there is nothing to do.<br>{advice_h}</p>\n\
             <p>The {site_h} team</p>\n</body></html>\n",
            site_h = html_escape(site),
            what_h = html_escape(what),
            ip_h = html_escape(&facts.ip),
            codes_h = facts
                .codes_left
                .map(|n| format!("<p>Emergency codes left: {n}.</p>\n"))
                .unwrap_or_default(),
            advice_h = html_escape(advice),
        );
        MailMessage {
            from: self.settings.mail_from.clone(),
            to: item.to.clone(),
            subject: format!("Security notice from {site}: {}", capitalised(what)),
            text,
            html,
        }
    }
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}
