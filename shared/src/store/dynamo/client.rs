//! The calls the adapter makes: consistent reads, conditional updates, transactions (retrying
//! only conflicts with other transactions), and the id counter. Errors name attributes, never
//! values.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::types::{
    KeysAndAttributes, Put, ReturnValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
    Update,
};

use super::expr::Expr;
use super::items::*;
use super::DynamoStore;
use crate::domain::records::{User, UserId};
use crate::store::{Effects, StoreError, StoreResult};

/// How often a transaction cancelled only by a conflicting transaction (not by a condition) is
/// tried again, and how often unprocessed keys of a batch read are asked for again.
pub(super) const ATTEMPTS: u32 = 5;

pub(super) fn unavailable(err: impl std::error::Error) -> StoreError {
    StoreError::Unavailable(DisplayErrorContext(err).to_string())
}

pub(super) fn build_error(err: impl std::error::Error) -> StoreError {
    StoreError::Unavailable(format!("invalid DynamoDB request: {err}"))
}

pub(super) fn condition_failed(err: &SdkError<UpdateItemError, impl std::fmt::Debug>) -> bool {
    err.as_service_error()
        .is_some_and(UpdateItemError::is_conditional_check_failed_exception)
}

/// How a transaction ended; when cancelled, the reason code of each item in request order
/// (`None` for the items that did not cause it).
pub(super) enum Transacted {
    Done,
    Cancelled(Vec<Option<String>>),
}

pub(super) const CONDITION_FAILED: &str = "ConditionalCheckFailed";
pub(super) const TRANSACTION_CONFLICT: &str = "TransactionConflict";

pub(super) fn cancelled_by_condition(reasons: &[Option<String>], index: usize) -> bool {
    reasons.get(index).and_then(Option::as_deref) == Some(CONDITION_FAILED)
}

impl DynamoStore {
    /// A strongly consistent read of one item.
    pub(super) async fn get_item(&self, key: Item) -> StoreResult<Option<Item>> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(output.item)
    }

    /// An unconditional delete of one item: the same applied twice, so safe to retry.
    pub(super) async fn delete_item(&self, key: Item) -> StoreResult<()> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    pub(super) async fn get_user(&self, id: UserId) -> StoreResult<Option<User>> {
        self.get_item(user_key(id))
            .await?
            .map(|item| user_from_item(&item))
            .transpose()
    }

    /// A strongly consistent batch read of a few items (unprocessed keys are asked for again).
    pub(super) async fn get_items(&self, keys: Vec<Item>) -> StoreResult<Vec<Item>> {
        let mut wanted = KeysAndAttributes::builder()
            .set_keys(Some(keys))
            .consistent_read(true)
            .build()
            .map_err(build_error)?;
        let mut found = Vec::new();
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(20 << attempt)).await;
            }
            let mut output = self
                .client
                .batch_get_item()
                .request_items(&self.table, wanted)
                .send()
                .await
                .map_err(unavailable)?;
            if let Some(items) = output
                .responses
                .as_mut()
                .and_then(|r| r.remove(&self.table))
            {
                found.extend(items);
            }
            match output
                .unprocessed_keys
                .as_mut()
                .and_then(|u| u.remove(&self.table))
            {
                Some(rest) if !rest.keys().is_empty() => wanted = rest,
                _ => return Ok(found),
            }
        }
        Err(StoreError::Unavailable(
            "DynamoDB left keys of a batch read unprocessed".to_owned(),
        ))
    }

    /// One UpdateItem with a condition: true if applied, false if the condition did not hold.
    pub(super) async fn update(
        &self,
        key: Item,
        update: String,
        condition: String,
        expr: Expr,
        effects: &Effects,
    ) -> StoreResult<bool> {
        let (names, values) = expr.into_parts();
        if !effects.is_empty() {
            // The change and what it leaves behind (events, a queued mail): one transaction.
            let update = Update::builder()
                .table_name(&self.table)
                .set_key(Some(key))
                .update_expression(update)
                .condition_expression(condition)
                .set_expression_attribute_names(names)
                .set_expression_attribute_values(values)
                .build()
                .map_err(build_error)?;
            let mut items = vec![TransactWriteItem::builder().update(update).build()];
            items.extend(self.effect_puts(effects)?);
            return match self.transact(items).await? {
                Transacted::Done => Ok(true),
                Transacted::Cancelled(reasons) if cancelled_by_condition(&reasons, 0) => Ok(false),
                Transacted::Cancelled(reasons) => Err(StoreError::Unavailable(format!(
                    "update with effects cancelled: {reasons:?}"
                ))),
            };
        }
        Ok(matches!(
            self.update_seeing(key, update, condition, (names, values))
                .await?,
            Updated::Applied(_)
        ))
    }

    /// One TransactWriteItems. A transaction cancelled only because another transaction was
    /// touching the same items is tried again (nothing of a cancelled transaction is applied);
    /// any other cancellation is answered with its per-item reason codes.
    pub(super) async fn transact(&self, items: Vec<TransactWriteItem>) -> StoreResult<Transacted> {
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(10 << attempt)).await;
            }
            let result = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .send()
                .await;
            let err = match result {
                Ok(_) => return Ok(Transacted::Done),
                Err(err) => err,
            };
            let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) =
                err.as_service_error()
            else {
                return Err(unavailable(err));
            };
            let reasons: Vec<Option<String>> = cancelled
                .cancellation_reasons()
                .iter()
                .map(|r| r.code().filter(|c| *c != "None").map(str::to_owned))
                .collect();
            let conflict_only = reasons.iter().flatten().any(|c| c == TRANSACTION_CONFLICT)
                && !reasons.iter().flatten().any(|c| c == CONDITION_FAILED);
            if !conflict_only {
                return Ok(Transacted::Cancelled(reasons));
            }
        }
        Err(StoreError::Unavailable(
            "DynamoDB transaction kept conflicting with other transactions".to_owned(),
        ))
    }

    /// Allocates the next user id. An unconditional `ADD`, so a retry of a call whose answer
    /// was lost counts twice and skips an id: gaps are allowed (ids are never reused, and no
    /// one relies on them being dense).
    pub(super) async fn next_user_id(&self) -> StoreResult<UserId> {
        let mut expr = Expr::default();
        let update = format!("ADD {} {}", expr.name(LAST_ID), expr.value(n(1)),);
        let (names, values) = expr.into_parts();
        let output = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(id_counter_key()))
            .update_expression(update)
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values)
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(unavailable)?;
        let attributes = output
            .attributes
            .ok_or_else(|| StoreError::Corrupt("the id counter answered nothing".to_owned()))?;
        Ok(UserId(get_n(&attributes, LAST_ID)?))
    }

    /// Counts one more failure in `(count, at)` of a user's device, by compare-and-set on the
    /// count the caller saw (so concurrent guesses in one state count once), if `device_exists`
    /// (a condition written over the same expression) still holds.
    pub(super) async fn count_failure(
        &self,
        id: UserId,
        (count, at): (&str, &str),
        seen_failures: u32,
        now: i64,
        device_exists: impl FnOnce(&mut Expr) -> String,
    ) -> StoreResult<bool> {
        let mut expr = Expr::default();
        let update = format!(
            "SET {}",
            expr.assignments(vec![(count, n(u64::from(seen_failures) + 1)), (at, n(now)),])
        );
        let device = device_exists(&mut expr);
        let condition = format!(
            "{device} AND {} = {}",
            expr.name(count),
            expr.value(n(seen_failures))
        );
        self.update(user_key(id), update, condition, expr, &Effects::none())
            .await
    }

    pub(super) fn put(&self, item: Item, condition: &str) -> StoreResult<TransactWriteItem> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(condition)
            .expression_attribute_names("#pk", PK)
            .build()
            .map_err(build_error)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// Unconditional puts of a change's events and queued mail, for its transaction.
    pub(super) fn effect_puts(&self, effects: &Effects) -> StoreResult<Vec<TransactWriteItem>> {
        let mut items: Vec<Item> = effects.events.iter().map(event_item).collect();
        for mail in &effects.mail {
            items.push(queue_item(mail)?);
        }
        items
            .into_iter()
            .map(|item| {
                let put = Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(item))
                    .build()
                    .map_err(build_error)?;
                Ok(TransactWriteItem::builder().put(put).build())
            })
            .collect()
    }

    /// Items of `partition` whose sort key is in [`low`, `before`), newest (highest) first, at
    /// most `limit`: one page, bounded by the page, not the partition.
    pub(super) async fn query_before(
        &self,
        partition: String,
        low: String,
        before: String,
        limit: usize,
    ) -> StoreResult<Vec<Item>> {
        let mut found = Vec::new();
        let mut start = None;
        loop {
            let output = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#pk = :pk AND #sk BETWEEN :low AND :before")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_names("#sk", SK)
                .expression_attribute_values(":pk", s(partition.clone()))
                .expression_attribute_values(":low", s(low.clone()))
                .expression_attribute_values(":before", s(before.clone()))
                .scan_index_forward(false)
                .consistent_read(true)
                .limit((limit + 1).min(1000) as i32)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(unavailable)?;
            for item in output.items.unwrap_or_default() {
                // BETWEEN is inclusive: the bound itself is not before itself.
                if matches!(item.get(SK), Some(AttributeValue::S(sk)) if *sk == before) {
                    continue;
                }
                found.push(item);
                if found.len() == limit {
                    return Ok(found);
                }
            }
            match output.last_evaluated_key {
                Some(key) => start = Some(key),
                None => return Ok(found),
            }
        }
    }

    /// One conditional UpdateItem that tells what it met: applied (with the item as it now
    /// is), or refused with the item as it was (`None`: there is no such item).
    ///
    /// Safe to retry: the update records its request id (see [`LAST_WRITES`]) and a refusal
    /// answers the item as it was, so a retry whose first attempt was applied (its answer lost
    /// on the way back, the SDK sending it again) meets its own id and answers the success it
    /// was, not a refusal.
    pub(super) async fn update_seeing(
        &self,
        key: Item,
        update: String,
        condition: String,
        expr: impl Into<ExprParts>,
    ) -> StoreResult<Updated> {
        let (names, mut values) = expr.into();
        let write = write_id();
        let update = recording_write(&update, &write, values.get_or_insert_with(Item::new));
        let mut names = names.unwrap_or_default();
        for (i, attribute) in LAST_WRITES.iter().enumerate() {
            names.insert(format!("#lw{i}"), (*attribute).to_owned());
        }
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .update_expression(update)
            .condition_expression(condition)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(values)
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(output) => Ok(Updated::Applied(output.attributes)),
            Err(err) => match err.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(failed)) => {
                    match failed.item() {
                        Some(old) if wrote(old, &write) => Ok(Updated::Applied(Some(old.clone()))),
                        old => Ok(Updated::Refused(old.cloned())),
                    }
                }
                _ => Err(unavailable(err)),
            },
        }
    }
}

/// An expression's placeholders: names and values.
pub(super) type ExprParts = (Option<HashMap<String, String>>, Option<Item>);

impl From<Expr> for ExprParts {
    fn from(expr: Expr) -> Self {
        expr.into_parts()
    }
}

/// The attributes that remember which requests last wrote an item with a conditional update,
/// newest first. A write whose answer was lost is sent again by the SDK, byte for byte, with
/// the same request id; its condition now fails (the first attempt changed the item) and the
/// item as it was carries that id: the write was applied. Three deep, so that a write of
/// another request landing between the two attempts does not hide it. Transactions need none:
/// the SDK gives each its idempotency token (`ClientRequestToken`), reused on retries, and
/// DynamoDB answers a repeated token with the first outcome.
pub(super) const LAST_WRITES: [&str; 3] = ["last_write", "last_write_1", "last_write_2"];

/// A fresh request id for one conditional write (96 random bits: never repeats).
fn write_id() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `update` with the request id in front of the last-writes ring. The ring shifts oldest first
/// (`#lw2 = #lw1`, then `#lw1 = #lw0`), so DynamoDB's rule (every operand reads the item as it
/// was) and an emulator applying the actions in order give the same ring.
fn recording_write(update: &str, write: &str, values: &mut Item) -> String {
    values.insert(":lw".to_owned(), s(write));
    values.insert(":lwnone".to_owned(), s("-"));
    let ring = "#lw2 = if_not_exists(#lw1, :lwnone), #lw1 = if_not_exists(#lw0, :lwnone), \
                #lw0 = :lw";
    // Placeholders are `#n0`/`:v0`-like, so "SET " can only be the clause keyword.
    match update.find("SET ") {
        Some(at) if at == 0 || update[..at].ends_with(' ') => {
            let (before, after) = update.split_at(at + 4);
            format!("{before}{ring}, {after}")
        }
        _ => format!("SET {ring} {update}"),
    }
}

/// Whether `item` was written by the request `write` (or by one of the two writes before it).
fn wrote(item: &Item, write: &str) -> bool {
    LAST_WRITES
        .iter()
        .any(|attribute| matches!(item.get(*attribute), Some(AttributeValue::S(id)) if id == write))
}

/// How [`DynamoStore::update_seeing`] ended.
pub(super) enum Updated {
    Applied(Option<Item>),
    Refused(Option<Item>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_id_joins_the_set_clause_wherever_it_is() {
        let mut values = Item::new();
        let ring = "#lw2 = if_not_exists(#lw1, :lwnone), #lw1 = if_not_exists(#lw0, :lwnone), \
                    #lw0 = :lw";
        assert_eq!(
            recording_write("SET #n0 = :v0", "id", &mut values),
            format!("SET {ring}, #n0 = :v0")
        );
        assert_eq!(
            recording_write("REMOVE #n0 SET #n1 = :v0", "id", &mut values),
            format!("REMOVE #n0 SET {ring}, #n1 = :v0")
        );
        assert_eq!(
            recording_write("REMOVE #n0.#n1", "id", &mut values),
            format!("SET {ring} REMOVE #n0.#n1")
        );
        assert_eq!(values.get(":lw"), Some(&s("id")));
    }

    #[test]
    fn an_item_remembers_its_last_three_writers() {
        let item: Item = LAST_WRITES
            .iter()
            .zip(["c", "b", "a"])
            .map(|(attribute, id)| (attribute.to_string(), s(id)))
            .collect();
        assert!(wrote(&item, "a") && wrote(&item, "c"));
        assert!(!wrote(&item, "d"));
        assert!(!wrote(&Item::new(), "a"));
    }
}
