//! The mailer function's handler, replayed with the sample stream batch in `events/`: a batch
//! with one undeliverable item reports only that record for retry (partial batch failure), a
//! duplicate record of a delivered item sends nothing, and records of other items are ignored.
//! The retried item is delivered once its claim has expired.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use api_tests::random_hex;
use async_trait::async_trait;
use auth::clock::ManualClock;
use auth::domain::events::{NoticeFacts, QueueItem, QueueKind, SecurityEvent};
use auth::domain::keys::Secrets;
use auth::domain::records::UserId;
use auth::mail::{MailError, MailMessage, Mailer};
use auth::service::mailer::CLAIM_SECS;
use auth::settings::Settings;
use auth::store::embedded::EmbeddedStore;
use auth::store::{Effects, Store};
use auth::App;
use serde_json::{json, Value};

/// Records what it sends; refuses one address while `bouncing` is set (a failing SES send).
#[derive(Default)]
struct RecordingMailer {
    sent: Mutex<Vec<MailMessage>>,
    bouncing: Mutex<Option<String>>,
}

#[async_trait]
impl Mailer for RecordingMailer {
    async fn send(&self, message: &MailMessage) -> Result<(), MailError> {
        if self.bouncing.lock().unwrap().as_deref() == Some(message.to.as_str()) {
            return Err(MailError("mailbox unavailable".into()));
        }
        self.sent.lock().unwrap().push(message.clone());
        Ok(())
    }
}

fn notice(user: u64, to: &str) -> QueueItem {
    QueueItem {
        id: format!("{:012}#{}", 1_795_964_402, random_hex(8)),
        user: UserId(user),
        to: to.to_owned(),
        kind: QueueKind::Notice(NoticeFacts {
            event: SecurityEvent::PasswordChanged,
            at: 1_795_964_402,
            ip: "203.0.113.7".to_owned(),
            codes_left: None,
        }),
    }
}

fn batch(deliverable: &str, bouncing: &str) -> mailer::StreamEvent {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../events/mailer-batch.json");
    let text = std::fs::read_to_string(path)
        .unwrap()
        .replace("${DELIVERABLE}", deliverable)
        .replace("${BOUNCING}", bouncing);
    serde_json::from_str(&text).expect("a stream event")
}

#[tokio::test]
async fn a_batch_retries_only_its_undeliverable_record_and_a_duplicate_sends_once() {
    let dir = std::env::temp_dir().join(format!("mailer-test-{}", random_hex(8)));
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&dir.join("accounts.redb")).unwrap());
    let mailer = Arc::new(RecordingMailer::default());
    let clock = Arc::new(ManualClock::starting_now());
    let app = App::new(
        Settings::local(dir.clone()),
        &Secrets::generate(),
        store.clone(),
        mailer.clone(),
        clock.clone(),
    )
    .unwrap();
    let (ok, bounce) = (notice(1, "ok@example.com"), notice(2, "bounce@example.com"));
    for item in [&ok, &bounce] {
        let effects = Effects {
            events: Vec::new(),
            mail: vec![item.clone()],
        };
        store.record(&effects).await.unwrap();
    }
    *mailer.bouncing.lock().unwrap() = Some("bounce@example.com".to_owned());

    let response = mailer::handle(&app.service, batch(&ok.id, &bounce.id)).await;
    assert_eq!(
        serde_json::to_value(&response).unwrap(),
        json!({"batchItemFailures": [{"itemIdentifier": "111100000000000000000002"}]})
    );
    let sent: Vec<String> = mailer
        .sent
        .lock()
        .unwrap()
        .iter()
        .map(|m| m.to.clone())
        .collect();
    assert_eq!(
        sent,
        ["ok@example.com"],
        "the duplicate record sent nothing"
    );
    // The failed item stays queued (claimed) for the retry; the sent one is gone.
    assert_eq!(store.queued(10).await.unwrap(), vec![bounce.id.clone()]);

    // The retried record, while the first claim is alive, sends nothing and is retried again;
    // once the claim has expired, it sends.
    *mailer.bouncing.lock().unwrap() = None;
    let retry = mailer::handle(&app.service, batch(&ok.id, &bounce.id)).await;
    assert_eq!(retry.batch_item_failures.len(), 1);
    assert_eq!(mailer.sent.lock().unwrap().len(), 1);
    clock.advance(CLAIM_SECS + 1);
    let again = mailer::handle(&app.service, batch(&ok.id, &bounce.id)).await;
    assert!(again.batch_item_failures.is_empty());
    let sent: Vec<Value> = mailer
        .sent
        .lock()
        .unwrap()
        .iter()
        .map(|m| json!([m.to, m.subject]))
        .collect();
    assert_eq!(
        sent,
        [
            json!([
                "ok@example.com",
                "Security notice from Accounts: Your password was changed"
            ]),
            json!([
                "bounce@example.com",
                "Security notice from Accounts: Your password was changed"
            ]),
        ]
    );
    assert!(store.queued(10).await.unwrap().is_empty());
    let _ = std::fs::remove_dir_all(dir);
}
