//! The calls the adapter makes: consistent reads, conditional updates, transactions (retrying
//! only conflicts with other transactions), and the id counter. Errors name attributes, never
//! values.

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
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .update_expression(update)
            .condition_expression(condition)
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values)
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(err) if condition_failed(&err) => Ok(false),
            Err(err) => Err(unavailable(err)),
        }
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

    /// Allocates the next user id (gaps are fine: ids are never reused).
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
    pub(super) async fn update_seeing(
        &self,
        key: Item,
        update: String,
        condition: String,
        expr: Expr,
    ) -> StoreResult<Updated> {
        let (names, values) = expr.into_parts();
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .update_expression(update)
            .condition_expression(condition)
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values)
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(output) => Ok(Updated::Applied(output.attributes)),
            Err(err) => match err.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(failed)) => {
                    Ok(Updated::Refused(failed.item().cloned()))
                }
                _ => Err(unavailable(err)),
            },
        }
    }
}

/// How [`DynamoStore::update_seeing`] ended.
pub(super) enum Updated {
    Applied(Option<Item>),
    Refused(Option<Item>),
}
