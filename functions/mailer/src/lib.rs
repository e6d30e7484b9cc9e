//! The mailer: the table's DynamoDB stream, filtered (in the template) to inserted mail-queue
//! items, triggers it with a batch of records; it delivers each item (claim, render, send,
//! remove: `auth::service::mailer`) and reports the records it could not deliver, so that only
//! those are retried (`ReportBatchItemFailures`). Records of anything else are ignored. A
//! duplicate record sends nothing: of an item already sent, it is done; of an item another
//! delivery holds, it is retried until that delivery has sent it (or its claim has expired).

use auth::service::mailer::Delivery;
use auth::service::Service;
use serde::{Deserialize, Serialize};

/// The partition of the mail queue (`docs/data-model.md`).
pub const QUEUE_PARTITION: &str = "MAILQ";

#[derive(Debug, Deserialize)]
pub struct StreamEvent {
    #[serde(rename = "Records", default)]
    pub records: Vec<StreamRecord>,
}

#[derive(Debug, Deserialize)]
pub struct StreamRecord {
    #[serde(rename = "eventName", default)]
    pub event_name: String,
    #[serde(default)]
    pub dynamodb: Option<StreamChange>,
}

#[derive(Debug, Deserialize)]
pub struct StreamChange {
    #[serde(rename = "Keys", default)]
    pub keys: Option<Keys>,
    #[serde(rename = "SequenceNumber", default)]
    pub sequence_number: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Keys {
    pub pk: Option<StringValue>,
    pub sk: Option<StringValue>,
}

#[derive(Debug, Deserialize)]
pub struct StringValue {
    #[serde(rename = "S")]
    pub s: String,
}

/// The partial batch response: the sequence numbers to retry.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct BatchResponse {
    #[serde(rename = "batchItemFailures")]
    pub batch_item_failures: Vec<ItemFailure>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct ItemFailure {
    #[serde(rename = "itemIdentifier")]
    pub item_identifier: String,
}

impl StreamRecord {
    /// The queue item this record announces, if it is an inserted queue item.
    fn queued_id(&self) -> Option<&str> {
        let keys = self.dynamodb.as_ref()?.keys.as_ref()?;
        let is_queue = keys.pk.as_ref().is_some_and(|pk| pk.s == QUEUE_PARTITION);
        (self.event_name == "INSERT" && is_queue)
            .then(|| keys.sk.as_ref().map(|sk| sk.s.as_str()))
            .flatten()
    }

    fn sequence_number(&self) -> Option<&str> {
        self.dynamodb.as_ref()?.sequence_number.as_deref()
    }
}

/// Delivers every queue item of a batch; answers the records to retry.
pub async fn handle(service: &Service, event: StreamEvent) -> BatchResponse {
    let mut response = BatchResponse::default();
    for record in &event.records {
        let Some(id) = record.queued_id() else {
            continue;
        };
        let retry = match service.deliver(id).await {
            Ok(Delivery::Sent | Delivery::Done | Delivery::Nothing) => false,
            // Held by another delivery, which may have crashed: look again later.
            Ok(Delivery::Busy) => true,
            Err(err) => {
                tracing::error!(queue_item = id, error = %err, "delivery failed; retried");
                true
            }
        };
        if let (true, Some(sequence)) = (retry, record.sequence_number()) {
            response.batch_item_failures.push(ItemFailure {
                item_identifier: sequence.to_owned(),
            });
        }
    }
    response
}
