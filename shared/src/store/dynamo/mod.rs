//! The DynamoDB adapter: one table, string keys `pk` and `sk`, every operation one call or one
//! transaction guarded by a condition, mirroring the embedded adapter's semantics exactly.
//!
//! | item | pk | sk | attributes |
//! |---|---|---|---|
//! | user | `USER#<id>` | `PROFILE` | id, email, email_norm, password_hash, token_gen, last_login?, created_at, `totp_*`?, `codes_device_id`?, `codes`?, `code_failures`?, `code_failed_at`? |
//! | email claim | `EMAIL#<email_norm>` | `EMAIL` | user_id |
//! | id counter | `COUNTER` | `USER` | last_id |
//! | login throttle | `THROTTLE#<email_norm>` | `LOGIN` | failures, failed_at, expires_at |
//! | reset-mail rate | `THROTTLE#<email_norm>` | `RESET` | sent_at, expires_at |
//!
//! `expires_at` is the table's TTL attribute. DynamoDB deletes expired items lazily (up to days
//! late) and local emulators never do, so every reader treats `expires_at <= now` as absent.
//!
//! The TOTP device and the emergency codes are flattened into top-level attributes of the user
//! item, so each conditional update can name exactly the fields it checks. `codes` is a string
//! set, which DynamoDB cannot store empty: once the last code is used the attribute disappears,
//! and `codes_device_id` alone marks the (empty) emergency-code device.
//!
//! All item <-> record mapping lives in [`items`] (`user_to_item` / `user_from_item`). Nothing secret is
//! ever logged or put into an error message: errors name attributes, never their values.

//! The parts: [`items`] (layout and mapping), [`expr`] (placeholders), [`client`] (calls, retries,
//! transactions), [`provision`] (emulator tables, warm-up), and here the `Store` implementation.

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, Delete, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
};
use aws_sdk_dynamodb::Client;

use super::{
    CounterKey, CounterWrite, Created, PasswordUpdate, Store, StoreError, StoreResult, TotpAccept,
    TotpInsert,
};
use crate::domain::records::{NewUser, StaticCodes, TotpDevice, User, UserId};
use crate::domain::throttle::Counter;
use client::{build_error, cancelled_by_condition, unavailable, Transacted, CONDITION_FAILED};
use expr::Expr;
use items::*;

mod client;
mod expr;
mod items;
mod provision;

pub use items::{KEY_SCHEMA, TTL_ATTRIBUTE};

#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

/// The counters of `keys` among the items of a batch read, in the order of `keys`.
fn counters_in_order(items: &[Item], keys: &[CounterKey], now: i64) -> StoreResult<Vec<Counter>> {
    keys.iter()
        .map(|key| {
            let (pk, sk) = (key.partition(), key.sort());
            let item = items.iter().find(|item| {
                matches!(item.get(PK), Some(AttributeValue::S(p)) if *p == pk)
                    && matches!(item.get(SK), Some(AttributeValue::S(s)) if *s == sk)
            });
            item.map_or(Ok(Counter::default()), |item| counter_from_item(item, now))
        })
        .collect()
}

impl DynamoStore {
    pub fn new(config: &aws_config::SdkConfig, table: String) -> Self {
        Self::with_client(Client::new(config), table)
    }

    /// Over a client built elsewhere (tests install an interceptor that counts calls).
    pub fn with_client(client: Client, table: String) -> Self {
        Self { client, table }
    }
}

#[async_trait]
impl Store for DynamoStore {
    async fn create_user(&self, new: NewUser) -> StoreResult<Created> {
        let id = self.next_user_id().await?;
        let user = new.into_user(id);
        let items = vec![
            self.put(
                email_claim_item(&user.email_norm, id),
                "attribute_not_exists(#pk)",
            )?,
            self.put(user_to_item(&user), "attribute_not_exists(#pk)")?,
        ];
        match self.transact(items).await? {
            Transacted::Done => Ok(Created::User(Box::new(user))),
            Transacted::Cancelled(reasons) if cancelled_by_condition(&reasons, 0) => {
                Ok(Created::EmailTaken)
            }
            Transacted::Cancelled(reasons) => Err(StoreError::Unavailable(format!(
                "user creation cancelled: {reasons:?}"
            ))),
        }
    }

    async fn user(&self, id: UserId) -> StoreResult<Option<User>> {
        self.get_user(id).await
    }

    async fn user_by_email(&self, email_norm: &str) -> StoreResult<Option<User>> {
        let Some(claim) = self.get_item(email_key(email_norm)).await? else {
            return Ok(None);
        };
        // A claim whose user is gone was deleted together with it between the two reads.
        self.get_user(UserId(get_n(&claim, USER_ID)?)).await
    }

    async fn login_lookup(
        &self,
        email_norm: &str,
        counters: &[CounterKey],
        now: i64,
    ) -> StoreResult<(Option<User>, Vec<Counter>)> {
        let mut keys = vec![email_key(email_norm)];
        keys.extend(counters.iter().map(counter_key));
        let items = self.get_items(keys).await?;
        let claim_pk = format!("EMAIL#{email_norm}");
        let user_id = items
            .iter()
            .find(|item| matches!(item.get(PK), Some(AttributeValue::S(pk)) if *pk == claim_pk))
            .map(|claim| get_n(claim, USER_ID))
            .transpose()?;
        let found = counters_in_order(&items, counters, now)?;
        let user = match user_id {
            Some(id) => self.get_user(UserId(id)).await?,
            None => None,
        };
        Ok((user, found))
    }

    async fn counters(&self, keys: &[CounterKey], now: i64) -> StoreResult<Vec<Counter>> {
        let items = self
            .get_items(keys.iter().map(counter_key).collect())
            .await?;
        counters_in_order(&items, keys, now)
    }

    async fn swap_counters(&self, writes: &[CounterWrite]) -> StoreResult<bool> {
        let items = writes
            .iter()
            .map(|write| {
                let mut put = Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(counter_item(write)));
                let seen = write.counter.version.saturating_sub(1);
                if write.conditional && seen == 0 {
                    put = put
                        .condition_expression("attribute_not_exists(#pk)")
                        .expression_attribute_names("#pk", PK);
                } else if write.conditional {
                    put = put
                        .condition_expression("#v = :seen")
                        .expression_attribute_names("#v", VERSION)
                        .expression_attribute_values(":seen", n(seen));
                }
                let put = put.build().map_err(build_error)?;
                Ok(TransactWriteItem::builder().put(put).build())
            })
            .collect::<StoreResult<Vec<_>>>()?;
        match self.transact(items).await? {
            Transacted::Done => Ok(true),
            Transacted::Cancelled(reasons)
                if reasons.iter().flatten().any(|r| r == CONDITION_FAILED) =>
            {
                Ok(false)
            }
            Transacted::Cancelled(reasons) => Err(StoreError::Unavailable(format!(
                "counter swap cancelled: {reasons:?}"
            ))),
        }
    }

    async fn delete_counters(&self, keys: &[CounterKey]) -> StoreResult<()> {
        for key in keys {
            self.client
                .delete_item()
                .table_name(&self.table)
                .set_key(Some(counter_key(key)))
                .send()
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    async fn claim_reset_mail(&self, email_norm: &str, now: i64, window: i64) -> StoreResult<bool> {
        let mut expr = Expr::default();
        let update = format!(
            "SET {}",
            expr.assignments(vec![(SENT_AT, n(now)), (TTL, n(now + window))])
        );
        // Mirrors the embedded rule: refused while the last mail is less than `window` old.
        let condition = format!(
            "attribute_not_exists({}) OR {} <= {}",
            expr.name(PK),
            expr.name(SENT_AT),
            expr.value(n(now - window))
        );
        self.update(throttle_key(email_norm, RESET), update, condition, expr)
            .await
    }

    async fn rotate_token_gen(&self, id: UserId, new_gen: &str) -> StoreResult<bool> {
        let mut expr = Expr::default();
        let update = format!("SET {}", expr.assignments(vec![(TOKEN_GEN, s(new_gen))]));
        let condition = format!("attribute_exists({})", expr.name(PK));
        self.update(user_key(id), update, condition, expr).await
    }

    async fn delete_user(&self, user: &User, seen_gen: &str) -> StoreResult<bool> {
        let mut expr = Expr::default();
        let condition = format!("{} = {}", expr.name(TOKEN_GEN), expr.value(s(seen_gen)));
        let (names, values) = expr.into_parts();
        let delete_user = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(user_key(user.id)))
            .condition_expression(condition)
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values)
            .build()
            .map_err(build_error)?;
        let delete_claim = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(email_key(&user.email_norm)))
            .build()
            .map_err(build_error)?;
        let items = vec![
            TransactWriteItem::builder().delete(delete_user).build(),
            TransactWriteItem::builder().delete(delete_claim).build(),
        ];
        match self.transact(items).await? {
            Transacted::Done => Ok(true),
            Transacted::Cancelled(reasons) if cancelled_by_condition(&reasons, 0) => Ok(false),
            Transacted::Cancelled(reasons) => Err(StoreError::Unavailable(format!(
                "user deletion cancelled: {reasons:?}"
            ))),
        }
    }

    async fn update_password(&self, id: UserId, update: PasswordUpdate) -> StoreResult<bool> {
        let mut expr = Expr::default();
        let mut assignments = vec![(PASSWORD_HASH, s(update.new_hash))];
        if let Some(gen) = update.new_token_gen {
            assignments.push((TOKEN_GEN, s(gen)));
        }
        if let Some(at) = update.last_login {
            assignments.push((LAST_LOGIN, n(at)));
        }
        if update.clear_totp_failures {
            assignments.push((TOTP_FAILURES, n(0)));
            assignments.push((TOTP_FAILED_AT, n(0)));
        }
        let set = format!("SET {}", expr.assignments(assignments));
        let condition = format!(
            "{} = {}",
            expr.name(PASSWORD_HASH),
            expr.value(s(update.expected_hash))
        );
        self.update(user_key(id), set, condition, expr).await
    }

    async fn insert_totp_device(&self, id: UserId, device: TotpDevice) -> StoreResult<TotpInsert> {
        let mut expr = Expr::default();
        let update = format!("SET {}", expr.assignments(totp_attributes(&device)));
        let condition = format!(
            "attribute_exists({}) AND attribute_not_exists({})",
            expr.name(PK),
            expr.name(TOTP_DEVICE_ID)
        );
        let (names, values) = expr.into_parts();
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(user_key(id)))
            .update_expression(update)
            .condition_expression(condition)
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let err = match result {
            Ok(_) => return Ok(TotpInsert::Inserted),
            Err(err) => err,
        };
        let Some(UpdateItemError::ConditionalCheckFailedException(failed)) = err.as_service_error()
        else {
            return Err(unavailable(err));
        };
        match failed.item() {
            None => Ok(TotpInsert::UserGone),
            Some(old) => user_from_item(old)?
                .totp
                .map(TotpInsert::Existing)
                .ok_or_else(|| {
                    StoreError::Corrupt("TOTP insert refused, yet no device is stored".to_owned())
                }),
        }
    }

    async fn accept_totp(&self, id: UserId, accept: TotpAccept) -> StoreResult<bool> {
        let mut expr = Expr::default();
        let update = format!(
            "SET {}",
            expr.assignments(vec![
                (TOTP_LAST_STEP, n(accept.step)),
                (TOTP_DRIFT, n(accept.drift)),
                (TOTP_CONFIRMED, AttributeValue::Bool(true)),
                (TOTP_FAILURES, n(0)),
                (TOTP_FAILED_AT, n(0)),
            ])
        );
        let condition = format!(
            "{} = {} AND {} = {} AND {} < {}",
            expr.name(TOTP_DEVICE_ID),
            expr.value(s(accept.device_id)),
            expr.name(TOTP_FAILURES),
            expr.value(n(accept.seen_failures)),
            expr.name(TOTP_LAST_STEP),
            expr.value(n(accept.step)),
        );
        self.update(user_key(id), update, condition, expr).await
    }

    async fn record_totp_failure(
        &self,
        id: UserId,
        device_id: &str,
        seen_failures: u32,
        now: i64,
    ) -> StoreResult<bool> {
        self.count_failure(
            id,
            (TOTP_FAILURES, TOTP_FAILED_AT),
            seen_failures,
            now,
            |expr| {
                format!(
                    "{} = {}",
                    expr.name(TOTP_DEVICE_ID),
                    expr.value(s(device_id))
                )
            },
        )
        .await
    }

    async fn replace_static_codes(
        &self,
        id: UserId,
        totp_device_id: &str,
        codes: StaticCodes,
    ) -> StoreResult<bool> {
        let mut expr = Expr::default();
        let mut update = format!("SET {}", expr.assignments(codes_attributes(&codes)));
        if codes.hashes.is_empty() {
            update = format!("{update} REMOVE {}", expr.name(CODES));
        }
        let condition = format!(
            "{} = {} AND {} = {}",
            expr.name(TOTP_DEVICE_ID),
            expr.value(s(totp_device_id)),
            expr.name(TOTP_CONFIRMED),
            expr.value(AttributeValue::Bool(true)),
        );
        self.update(user_key(id), update, condition, expr).await
    }

    async fn consume_static_code(
        &self,
        id: UserId,
        hash: &str,
        seen_failures: u32,
    ) -> StoreResult<bool> {
        let mut expr = Expr::default();
        // Codes are only ever stored beside a TOTP device (replace_static_codes demands a
        // confirmed one, remove_two_factor removes both), so the device's failures can be reset
        // unconditionally; the condition still insists on the device, to never create a partial
        // one.
        let update = format!(
            "SET {} DELETE {} {}",
            expr.assignments(vec![
                (CODE_FAILURES, n(0)),
                (CODE_FAILED_AT, n(0)),
                (TOTP_FAILURES, n(0)),
                (TOTP_FAILED_AT, n(0)),
            ]),
            expr.name(CODES),
            expr.value(AttributeValue::Ss(vec![hash.to_owned()])),
        );
        let condition = format!(
            "contains({}, {}) AND {} = {} AND attribute_exists({})",
            expr.name(CODES),
            expr.value(s(hash)),
            expr.name(CODE_FAILURES),
            expr.value(n(seen_failures)),
            expr.name(TOTP_DEVICE_ID),
        );
        self.update(user_key(id), update, condition, expr).await
    }

    async fn record_static_failure(
        &self,
        id: UserId,
        seen_failures: u32,
        now: i64,
    ) -> StoreResult<bool> {
        self.count_failure(
            id,
            (CODE_FAILURES, CODE_FAILED_AT),
            seen_failures,
            now,
            |expr| format!("attribute_exists({})", expr.name(CODES_DEVICE_ID)),
        )
        .await
    }

    async fn remove_two_factor(&self, id: UserId, new_gen: &str) -> StoreResult<bool> {
        let mut expr = Expr::default();
        let removed: Vec<&str> = TOTP_ATTRIBUTES
            .iter()
            .chain(CODES_ATTRIBUTES.iter())
            .copied()
            .collect();
        let update = format!(
            "SET {} REMOVE {}",
            expr.assignments(vec![(TOKEN_GEN, s(new_gen))]),
            expr.names_list(&removed),
        );
        let condition = format!("attribute_exists({})", expr.name(PK));
        self.update(user_key(id), update, condition, expr).await
    }
}
