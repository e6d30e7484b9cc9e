//! Security events (docs/api.md#security-events): one structured log line each, a per-user
//! trail served newest first, and the notice each reportable change queues in the same atomic
//! write as the change.

use base64::Engine;
use serde_json::{json, Value};

use crate::domain::events::{
    iso8601, NoticeFacts, Origin, QueueItem, QueueKind, SecurityEvent, TrailEvent,
};
use crate::domain::records::{User, UserId};
use crate::store::{Effects, TRAIL_SECS};
use crate::Error;

use super::{random_id, Service};

pub const INVALID_CURSOR: &str = "Invalid cursor.";
pub const LIMIT_RANGE: &str = "Ensure this value is between 1 and 100.";
pub const DEFAULT_PAGE: usize = 50;
pub const MAX_PAGE: usize = 100;
/// Positions of the per-hour login counts within their hour (after the hour's events).
const FAILED_SUFFIX: &str = "~failed";
const THROTTLED_SUFFIX: &str = "~throttled";
/// Before every position.
const NEWEST: &str = "~";

/// A page request of the trail, parsed from `?limit=&cursor=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrailPage {
    pub limit: usize,
    /// The position of the last event shown on the previous page.
    pub before: Option<String>,
}

impl TrailPage {
    /// Parses the cursor: base64url of a position `<time:012>#<suffix>`.
    pub fn cursor(text: &str) -> Option<String> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .ok()?;
        let position = String::from_utf8(bytes).ok()?;
        let (time, suffix) = position.split_once('#')?;
        let time_ok = time.len() == 12 && time.bytes().all(|b| b.is_ascii_digit());
        let suffix_ok = suffix == FAILED_SUFFIX
            || suffix == THROTTLED_SUFFIX
            || (!suffix.is_empty() && suffix.bytes().all(|b| b.is_ascii_hexdigit()));
        (time_ok && suffix_ok).then_some(position)
    }
}

/// An event id that orders events of one second as they happened (the sub-second of the
/// process's real time), then a random tail that keeps ids apart across processes.
fn ordered_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{nanos:09}{}", &random_id()[..8])
}

fn encode_cursor(position: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(position)
}

impl Service {
    /// The one log line of an event. Never a password, token, code, secret or link: only the
    /// event's name, whose account, and where from.
    pub fn log_event(&self, event: SecurityEvent, user: Option<UserId>, origin: &Origin) {
        tracing::info!(
            target: "security",
            event = event.name(),
            user_id = user.map(|u| u.0),
            ip = %origin.ip,
            user_agent = %origin.user_agent,
            request_id = %origin.request_id,
            at = %iso8601(self.now()),
            "security event"
        );
    }

    /// The trail record of an event of a known user.
    pub fn trail_event(&self, event: SecurityEvent, user: UserId, origin: &Origin) -> TrailEvent {
        TrailEvent {
            user,
            event,
            at: self.now(),
            ip: origin.ip.key(),
            user_agent: origin.user_agent.clone(),
            id: ordered_id(),
            count: None,
        }
    }

    /// A queue item for `user`, ordered by the time it was queued.
    pub fn queue_item(&self, user: &User, kind: QueueKind) -> QueueItem {
        QueueItem {
            id: format!("{:012}#{}", self.now(), random_id()),
            user: user.id,
            to: user.email.clone(),
            kind,
        }
    }

    /// What a change of `user` leaves behind: its trail event, and the owner's notice when the
    /// event is one they are told about (unless `NOTIFY_SECURITY_EVENTS=false`).
    pub fn effects(
        &self,
        event: SecurityEvent,
        user: &User,
        origin: &Origin,
        codes_left: Option<usize>,
    ) -> Effects {
        let mail = (self.settings.notify_security_events && event.notice().is_some()).then(|| {
            let facts = NoticeFacts {
                event,
                at: self.now(),
                ip: origin.ip.key(),
                codes_left,
            };
            self.queue_item(user, QueueKind::Notice(facts))
        });
        Effects {
            events: vec![self.trail_event(event, user.id, origin)],
            mail: mail.into_iter().collect(),
        }
    }

    /// Logs the events of effects that were written, and rings the queue if they queued mail.
    pub fn log_effects(&self, effects: &Effects, origin: &Origin) {
        for event in &effects.events {
            self.log_event(event.event, Some(event.user), origin);
        }
        if !effects.mail.is_empty() {
            self.queue_signal.notify_one();
        }
    }

    /// An event that no change carries (a login, a refused gate): logged and stored.
    pub async fn record_event(
        &self,
        event: SecurityEvent,
        user: &User,
        origin: &Origin,
    ) -> Result<(), Error> {
        let effects = Effects {
            events: vec![self.trail_event(event, user.id, origin)],
            mail: Vec::new(),
        };
        self.store.record(&effects).await?;
        self.log_effects(&effects, origin);
        Ok(())
    }

    /// A failed or throttled login: logged, and counted per hour on the address's record,
    /// whether or not it has an account (so the storage work says nothing about that).
    pub async fn record_login_failure(
        &self,
        email_norm: &str,
        user: Option<UserId>,
        throttled: bool,
        origin: &Origin,
    ) -> Result<(), Error> {
        let event = match throttled {
            true => SecurityEvent::LoginThrottled,
            false => SecurityEvent::LoginFailed,
        };
        self.log_event(event, user, origin);
        let now = self.now();
        let hour = now - now.rem_euclid(3600);
        self.store
            .count_login_failure(email_norm, hour, throttled, now + TRAIL_SECS)
            .await?;
        Ok(())
    }

    /// One page of a user's security log, newest first: stored events merged with the per-hour
    /// login-failure counts of the account's address.
    pub async fn security_log(&self, user: &User, page: &TrailPage) -> Result<Value, Error> {
        let before = page.before.as_deref().unwrap_or(NEWEST);
        let wanted = page.limit + 1;
        let now = self.now();
        // Expired events read as absent (TTL deletion lags, and local stores never delete).
        let events: Vec<_> = self
            .store
            .trail(user.id, before, wanted)
            .await?
            .into_iter()
            .filter(|e| e.at + TRAIL_SECS > now)
            .collect();
        // Hours up to and including the cursor's own hour; positions then decide.
        let before_hour = match page.before.as_deref() {
            Some(position) => position[..12].parse::<i64>().unwrap_or(0) + 1,
            None => 999_999_999_999,
        };
        let hours = self
            .store
            .failure_hours(&user.email_norm, before_hour, wanted, self.now())
            .await?;
        let mut entries: Vec<(String, Value)> = events
            .into_iter()
            .map(|e| {
                let shown = json!({
                    "event": e.event.name(),
                    "at": iso8601(e.at),
                    "ip": e.ip,
                    "user_agent": e.user_agent,
                });
                (e.position(), shown)
            })
            .collect();
        for hour in hours {
            for (count, event, suffix) in [
                (hour.failed, SecurityEvent::LoginFailed, FAILED_SUFFIX),
                (
                    hour.throttled,
                    SecurityEvent::LoginThrottled,
                    THROTTLED_SUFFIX,
                ),
            ] {
                let position = format!("{:012}#{suffix}", hour.hour);
                if count > 0 && position.as_str() < before {
                    let shown = json!({
                        "event": event.name(),
                        "at": iso8601(hour.hour),
                        "ip": null,
                        "user_agent": null,
                        "count": count,
                    });
                    entries.push((position, shown));
                }
            }
        }
        entries.sort_by(|a, b| b.0.cmp(&a.0));
        let more = entries.len() > page.limit;
        entries.truncate(page.limit);
        let next = match (more, entries.last()) {
            (true, Some((position, _))) => json!(encode_cursor(position)),
            _ => Value::Null,
        };
        let events: Vec<Value> = entries.into_iter().map(|(_, shown)| shown).collect();
        Ok(json!({ "events": events, "next": next }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let position = "001795964402#0a1b2c";
        assert_eq!(
            TrailPage::cursor(&encode_cursor(position)).as_deref(),
            Some(position)
        );
        assert!(TrailPage::cursor(&encode_cursor("001795964400#~failed")).is_some());
        assert!(TrailPage::cursor("not base64 !").is_none());
        assert!(TrailPage::cursor(&encode_cursor("12#ab")).is_none());
        assert!(TrailPage::cursor(&encode_cursor("001795964402#")).is_none());
        assert!(TrailPage::cursor(&encode_cursor("001795964402#zz")).is_none());
    }
}
