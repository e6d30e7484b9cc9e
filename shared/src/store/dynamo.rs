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
//! All item <-> record mapping lives here (`user_to_item` / `user_from_item`). Nothing secret is
//! ever logged or put into an error message: errors name attributes, never their values.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, Delete, KeySchemaElement, KeyType,
    KeysAndAttributes, Put, ReturnValue, ReturnValuesOnConditionCheckFailure, ScalarAttributeType,
    TableStatus, TimeToLiveSpecification, TransactWriteItem,
};
use aws_sdk_dynamodb::Client;

use super::{
    Created, Failures, NewUser, PasswordUpdate, SealedSecret, StaticCodes, Store, StoreError,
    StoreResult, TotpAccept, TotpDevice, TotpInsert, User, UserId,
};

type Item = HashMap<String, AttributeValue>;

const PK: &str = "pk";
const SK: &str = "sk";
const TTL: &str = "expires_at";

/// The table's key schema (attribute, key type) and TTL attribute, as `infra/template.yaml`
/// must declare them (checked by a test).
pub const KEY_SCHEMA: [(&str, &str); 2] = [(PK, "HASH"), (SK, "RANGE")];
pub const TTL_ATTRIBUTE: &str = TTL;

const PROFILE: &str = "PROFILE";
const EMAIL: &str = "EMAIL";
const LOGIN: &str = "LOGIN";
const RESET: &str = "RESET";

// User attributes.
const ID: &str = "id";
const EMAIL_AS_STORED: &str = "email";
const EMAIL_NORM: &str = "email_norm";
const PASSWORD_HASH: &str = "password_hash";
const TOKEN_GEN: &str = "token_gen";
const LAST_LOGIN: &str = "last_login";
const CREATED_AT: &str = "created_at";
// The TOTP device, flattened.
const TOTP_DEVICE_ID: &str = "totp_device_id";
const TOTP_SECRET: &str = "totp_secret";
const TOTP_KEY_VERSION: &str = "totp_key_version";
const TOTP_CONFIRMED: &str = "totp_confirmed";
const TOTP_LAST_STEP: &str = "totp_last_step";
const TOTP_DRIFT: &str = "totp_drift";
const TOTP_FAILURES: &str = "totp_failures";
const TOTP_FAILED_AT: &str = "totp_failed_at";
const TOTP_ATTRIBUTES: [&str; 8] = [
    TOTP_DEVICE_ID,
    TOTP_SECRET,
    TOTP_KEY_VERSION,
    TOTP_CONFIRMED,
    TOTP_LAST_STEP,
    TOTP_DRIFT,
    TOTP_FAILURES,
    TOTP_FAILED_AT,
];
// The emergency codes, flattened.
const CODES_DEVICE_ID: &str = "codes_device_id";
const CODES: &str = "codes";
const CODE_FAILURES: &str = "code_failures";
const CODE_FAILED_AT: &str = "code_failed_at";
const CODES_ATTRIBUTES: [&str; 4] = [CODES_DEVICE_ID, CODES, CODE_FAILURES, CODE_FAILED_AT];
// Other items.
const USER_ID: &str = "user_id";
const LAST_ID: &str = "last_id";
const FAILURES: &str = "failures";
const FAILED_AT: &str = "failed_at";
const SENT_AT: &str = "sent_at";

/// How often a transaction cancelled only by a conflicting transaction (not by a condition) is
/// tried again, and how often unprocessed keys of a batch read are asked for again.
const ATTEMPTS: u32 = 5;

#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

// ---------------------------------------------------------------------------------------------
// Keys and attribute values.

fn key(pk: String, sk: &str) -> Item {
    HashMap::from([
        (PK.to_owned(), AttributeValue::S(pk)),
        (SK.to_owned(), AttributeValue::S(sk.to_owned())),
    ])
}

fn user_key(id: UserId) -> Item {
    key(format!("USER#{id}"), PROFILE)
}

fn email_key(email_norm: &str) -> Item {
    key(format!("EMAIL#{email_norm}"), EMAIL)
}

fn counter_key() -> Item {
    key("COUNTER".to_owned(), "USER")
}

fn throttle_key(email_norm: &str, kind: &str) -> Item {
    key(format!("THROTTLE#{email_norm}"), kind)
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn get<'a>(item: &'a Item, name: &str) -> StoreResult<&'a AttributeValue> {
    item.get(name)
        .ok_or_else(|| StoreError::Corrupt(format!("attribute {name} is missing")))
}

fn ill_typed(name: &str, wanted: &str) -> StoreError {
    StoreError::Corrupt(format!("attribute {name} is not {wanted}"))
}

fn get_s(item: &Item, name: &str) -> StoreResult<String> {
    match get(item, name)? {
        AttributeValue::S(value) => Ok(value.clone()),
        _ => Err(ill_typed(name, "a string")),
    }
}

fn get_n<T: FromStr>(item: &Item, name: &str) -> StoreResult<T> {
    match get(item, name)? {
        AttributeValue::N(value) => value
            .parse()
            .map_err(|_| ill_typed(name, "a fitting number")),
        _ => Err(ill_typed(name, "a number")),
    }
}

fn opt_n<T: FromStr>(item: &Item, name: &str) -> StoreResult<Option<T>> {
    match item.contains_key(name) {
        true => get_n(item, name).map(Some),
        false => Ok(None),
    }
}

fn get_bool(item: &Item, name: &str) -> StoreResult<bool> {
    match get(item, name)? {
        AttributeValue::Bool(value) => Ok(*value),
        _ => Err(ill_typed(name, "a boolean")),
    }
}

fn get_b(item: &Item, name: &str) -> StoreResult<Vec<u8>> {
    match get(item, name)? {
        AttributeValue::B(value) => Ok(value.as_ref().to_vec()),
        _ => Err(ill_typed(name, "binary")),
    }
}

/// A string set that may be absent (DynamoDB cannot store an empty set): absent reads as empty.
fn opt_ss(item: &Item, name: &str) -> StoreResult<Vec<String>> {
    match item.get(name) {
        None => Ok(Vec::new()),
        Some(AttributeValue::Ss(values)) => {
            let mut values = values.clone();
            values.sort();
            Ok(values)
        }
        Some(_) => Err(ill_typed(name, "a string set")),
    }
}

/// Whether a TTL'd item is still alive at `now` (absent `expires_at` never expires).
fn alive(item: &Item, now: i64) -> StoreResult<bool> {
    Ok(opt_n::<i64>(item, TTL)?.is_none_or(|at| at > now))
}

// ---------------------------------------------------------------------------------------------
// Records <-> items.

fn totp_attributes(device: &TotpDevice) -> Vec<(&'static str, AttributeValue)> {
    vec![
        (TOTP_DEVICE_ID, s(&device.device_id)),
        (
            TOTP_SECRET,
            AttributeValue::B(Blob::new(device.secret.sealed.clone())),
        ),
        (TOTP_KEY_VERSION, n(device.secret.key_version)),
        (TOTP_CONFIRMED, AttributeValue::Bool(device.confirmed)),
        (TOTP_LAST_STEP, n(device.last_step)),
        (TOTP_DRIFT, n(device.drift)),
        (TOTP_FAILURES, n(device.failures.count)),
        (TOTP_FAILED_AT, n(device.failures.last_at)),
    ]
}

/// The emergency-code attributes to set. `codes` is left out when there are no hashes: the
/// caller must then remove it.
fn codes_attributes(codes: &StaticCodes) -> Vec<(&'static str, AttributeValue)> {
    let mut attributes = vec![
        (CODES_DEVICE_ID, s(&codes.device_id)),
        (CODE_FAILURES, n(codes.failures.count)),
        (CODE_FAILED_AT, n(codes.failures.last_at)),
    ];
    if !codes.hashes.is_empty() {
        let mut hashes = codes.hashes.clone();
        // A set holds each value once; DynamoDB rejects duplicates in a request.
        hashes.sort();
        hashes.dedup();
        attributes.push((CODES, AttributeValue::Ss(hashes)));
    }
    attributes
}

fn user_to_item(user: &User) -> Item {
    let mut item = user_key(user.id);
    let mut attributes = vec![
        (ID, n(user.id.0)),
        (EMAIL_AS_STORED, s(&user.email)),
        (EMAIL_NORM, s(&user.email_norm)),
        (PASSWORD_HASH, s(&user.password_hash)),
        (TOKEN_GEN, s(&user.token_gen)),
        (CREATED_AT, n(user.created_at)),
    ];
    if let Some(at) = user.last_login {
        attributes.push((LAST_LOGIN, n(at)));
    }
    if let Some(device) = &user.totp {
        attributes.extend(totp_attributes(device));
    }
    if let Some(codes) = &user.static_codes {
        attributes.extend(codes_attributes(codes));
    }
    item.extend(attributes.into_iter().map(|(k, v)| (k.to_owned(), v)));
    item
}

fn user_from_item(item: &Item) -> StoreResult<User> {
    let totp = match item.contains_key(TOTP_DEVICE_ID) {
        true => Some(TotpDevice {
            device_id: get_s(item, TOTP_DEVICE_ID)?,
            secret: SealedSecret {
                key_version: get_n(item, TOTP_KEY_VERSION)?,
                sealed: get_b(item, TOTP_SECRET)?,
            },
            confirmed: get_bool(item, TOTP_CONFIRMED)?,
            last_step: get_n(item, TOTP_LAST_STEP)?,
            drift: get_n(item, TOTP_DRIFT)?,
            failures: Failures {
                count: get_n(item, TOTP_FAILURES)?,
                last_at: get_n(item, TOTP_FAILED_AT)?,
            },
        }),
        false => None,
    };
    let static_codes = match item.contains_key(CODES_DEVICE_ID) {
        true => Some(StaticCodes {
            device_id: get_s(item, CODES_DEVICE_ID)?,
            hashes: opt_ss(item, CODES)?,
            failures: Failures {
                count: get_n(item, CODE_FAILURES)?,
                last_at: get_n(item, CODE_FAILED_AT)?,
            },
        }),
        false => None,
    };
    Ok(User {
        id: UserId(get_n(item, ID)?),
        email: get_s(item, EMAIL_AS_STORED)?,
        email_norm: get_s(item, EMAIL_NORM)?,
        password_hash: get_s(item, PASSWORD_HASH)?,
        token_gen: get_s(item, TOKEN_GEN)?,
        last_login: opt_n(item, LAST_LOGIN)?,
        created_at: get_n(item, CREATED_AT)?,
        totp,
        static_codes,
    })
}

fn email_claim_item(email_norm: &str, id: UserId) -> Item {
    let mut item = email_key(email_norm);
    item.insert(USER_ID.to_owned(), n(id.0));
    item
}

/// A login throttle item, or no failures if it has expired by `now`.
fn login_failures_from_item(item: &Item, now: i64) -> StoreResult<Failures> {
    if !alive(item, now)? {
        return Ok(Failures::default());
    }
    Ok(Failures {
        count: get_n(item, FAILURES)?,
        last_at: get_n(item, FAILED_AT)?,
    })
}

// ---------------------------------------------------------------------------------------------
// Expressions and errors.

/// Collects the placeholders of one request's expressions. Every attribute name goes through a
/// `#` placeholder, so no name can collide with one of DynamoDB's reserved words.
#[derive(Default)]
struct Expr {
    names: HashMap<String, String>,
    values: Item,
}

impl Expr {
    fn name(&mut self, attribute: &str) -> String {
        if let Some((placeholder, _)) = self.names.iter().find(|(_, a)| *a == attribute) {
            return placeholder.clone();
        }
        let placeholder = format!("#n{}", self.names.len());
        self.names.insert(placeholder.clone(), attribute.to_owned());
        placeholder
    }

    fn value(&mut self, value: AttributeValue) -> String {
        let placeholder = format!(":v{}", self.values.len());
        self.values.insert(placeholder.clone(), value);
        placeholder
    }

    /// `#a = :x, #b = :y` for a SET clause.
    fn assignments(&mut self, attributes: Vec<(&str, AttributeValue)>) -> String {
        attributes
            .into_iter()
            .map(|(attribute, value)| format!("{} = {}", self.name(attribute), self.value(value)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `#a, #b` for a REMOVE clause.
    fn names_list(&mut self, attributes: &[&str]) -> String {
        attributes
            .iter()
            .map(|attribute| self.name(attribute))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn into_parts(self) -> (Option<HashMap<String, String>>, Option<Item>) {
        let names = (!self.names.is_empty()).then_some(self.names);
        let values = (!self.values.is_empty()).then_some(self.values);
        (names, values)
    }
}

fn unavailable(err: impl std::error::Error) -> StoreError {
    StoreError::Unavailable(DisplayErrorContext(err).to_string())
}

fn build_error(err: impl std::error::Error) -> StoreError {
    StoreError::Unavailable(format!("invalid DynamoDB request: {err}"))
}

fn condition_failed(err: &SdkError<UpdateItemError, impl std::fmt::Debug>) -> bool {
    err.as_service_error()
        .is_some_and(UpdateItemError::is_conditional_check_failed_exception)
}

/// How a transaction ended; when cancelled, the reason code of each item in request order
/// (`None` for the items that did not cause it).
enum Transacted {
    Done,
    Cancelled(Vec<Option<String>>),
}

const CONDITION_FAILED: &str = "ConditionalCheckFailed";
const TRANSACTION_CONFLICT: &str = "TransactionConflict";

fn cancelled_by_condition(reasons: &[Option<String>], index: usize) -> bool {
    reasons.get(index).and_then(Option::as_deref) == Some(CONDITION_FAILED)
}

// ---------------------------------------------------------------------------------------------
// The adapter.

impl DynamoStore {
    pub fn new(config: &aws_config::SdkConfig, table: String) -> Self {
        Self::with_client(Client::new(config), table)
    }

    /// Over a client built elsewhere (tests install an interceptor that counts calls).
    pub fn with_client(client: Client, table: String) -> Self {
        Self { client, table }
    }

    /// Creates the table (pk/sk strings, on demand, TTL on `expires_at`) if it is missing, and
    /// waits until it is ACTIVE. Meant for local emulators; real tables come from the template.
    pub async fn ensure_table(&self) -> StoreResult<()> {
        let described = self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await;
        match described {
            Ok(_) => {}
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                self.create_table().await?;
            }
            Err(err) => return Err(unavailable(err)),
        }
        for _ in 0..300 {
            let described = self
                .client
                .describe_table()
                .table_name(&self.table)
                .send()
                .await
                .map_err(unavailable)?;
            if described.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(StoreError::Unavailable(format!(
            "table {} did not become ACTIVE",
            self.table
        )))
    }

    async fn create_table(&self) -> StoreResult<()> {
        let mut request = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest);
        for (name, key_type) in [(PK, KeyType::Hash), (SK, KeyType::Range)] {
            request = request
                .attribute_definitions(
                    AttributeDefinition::builder()
                        .attribute_name(name)
                        .attribute_type(ScalarAttributeType::S)
                        .build()
                        .map_err(build_error)?,
                )
                .key_schema(
                    KeySchemaElement::builder()
                        .attribute_name(name)
                        .key_type(key_type)
                        .build()
                        .map_err(build_error)?,
                );
        }
        match request.send().await {
            Ok(_) => {}
            // Created by a racing caller meanwhile: fine.
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_resource_in_use_exception()) =>
            {
                return Ok(())
            }
            Err(err) => return Err(unavailable(err)),
        }
        self.client
            .update_time_to_live()
            .table_name(&self.table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name(TTL)
                    .build()
                    .map_err(build_error)?,
            )
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// One cheap read, so the connection (TCP, TLS) is open before the first request needs it.
    pub async fn warm_up(&self) {
        let result = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(counter_key()))
            .send()
            .await;
        if let Err(err) = result {
            tracing::warn!(error = %DisplayErrorContext(&err), "DynamoDB warm-up read failed");
        }
    }

    /// A strongly consistent read of one item.
    async fn get_item(&self, key: Item) -> StoreResult<Option<Item>> {
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

    async fn get_user(&self, id: UserId) -> StoreResult<Option<User>> {
        self.get_item(user_key(id))
            .await?
            .map(|item| user_from_item(&item))
            .transpose()
    }

    /// A strongly consistent batch read of a few items (unprocessed keys are asked for again).
    async fn get_items(&self, keys: Vec<Item>) -> StoreResult<Vec<Item>> {
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
    async fn update(
        &self,
        key: Item,
        update: String,
        condition: String,
        expr: Expr,
    ) -> StoreResult<bool> {
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
    async fn transact(&self, items: Vec<TransactWriteItem>) -> StoreResult<Transacted> {
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
    async fn next_user_id(&self) -> StoreResult<UserId> {
        let mut expr = Expr::default();
        let update = format!("ADD {} {}", expr.name(LAST_ID), expr.value(n(1)),);
        let (names, values) = expr.into_parts();
        let output = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(counter_key()))
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
    async fn count_failure(
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
        self.update(user_key(id), update, condition, expr).await
    }

    fn put(&self, item: Item, condition: &str) -> StoreResult<TransactWriteItem> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(condition)
            .expression_attribute_names("#pk", PK)
            .build()
            .map_err(build_error)?;
        Ok(TransactWriteItem::builder().put(put).build())
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
        now: i64,
    ) -> StoreResult<(Option<User>, Failures)> {
        let items = self
            .get_items(vec![email_key(email_norm), throttle_key(email_norm, LOGIN)])
            .await?;
        let mut user_id = None;
        let mut failures = Failures::default();
        for item in &items {
            match get_s(item, SK)?.as_str() {
                EMAIL => user_id = Some(UserId(get_n(item, USER_ID)?)),
                LOGIN => failures = login_failures_from_item(item, now)?,
                _ => return Err(StoreError::Corrupt("unexpected item in batch".to_owned())),
            }
        }
        let user = match user_id {
            Some(id) => self.get_user(id).await?,
            None => None,
        };
        Ok((user, failures))
    }

    async fn record_login_failure(
        &self,
        email_norm: &str,
        now: i64,
        expires_at: i64,
    ) -> StoreResult<()> {
        // Normally one call: count up a live record (or start one). Only when an expired record
        // still lingers (TTL deletion lags) is it restarted at one instead, by a second call.
        for _ in 0..ATTEMPTS {
            let mut expr = Expr::default();
            let update = format!(
                "ADD {} {} SET {}",
                expr.name(FAILURES),
                expr.value(n(1)),
                expr.assignments(vec![(FAILED_AT, n(now)), (TTL, n(expires_at))])
            );
            let condition = format!(
                "attribute_not_exists({}) OR {} > {}",
                expr.name(PK),
                expr.name(TTL),
                expr.value(n(now))
            );
            if self
                .update(throttle_key(email_norm, LOGIN), update, condition, expr)
                .await?
            {
                return Ok(());
            }
            let mut expr = Expr::default();
            let update = format!(
                "SET {}",
                expr.assignments(vec![
                    (FAILURES, n(1)),
                    (FAILED_AT, n(now)),
                    (TTL, n(expires_at)),
                ])
            );
            let condition = format!("{} <= {}", expr.name(TTL), expr.value(n(now)));
            if self
                .update(throttle_key(email_norm, LOGIN), update, condition, expr)
                .await?
            {
                return Ok(());
            }
            // A racing failure refreshed the record in between: count up again.
        }
        Err(StoreError::Unavailable(
            "the login throttle kept changing".to_owned(),
        ))
    }

    async fn clear_login_failures(&self, email_norm: &str) -> StoreResult<()> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(throttle_key(email_norm, LOGIN)))
            .send()
            .await
            .map_err(unavailable)?;
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
