//! The DynamoDB adapter: one table, string keys `pk` and `sk`, every operation one call or one
//! transaction guarded by a condition, mirroring the embedded adapter's semantics exactly.
//!
//! | item | pk | sk | attributes |
//! |---|---|---|---|
//! | user | `USER#<id>` | `PROFILE` | id, email, email_norm, password_hash, token_gen, last_login?, created_at, `totp_*`?, `codes_device_id`?, `codes`?, `code_failures`?, `code_failed_at`? |
//! | email claim | `EMAIL#<email_norm>` | `EMAIL` | user_id |
//! | id counter | `COUNTER` | `USER` | last_id |
//! | abuse-limit counter | `THROTTLE#<email_norm>`, `IP#<ip>`, `USER#<id>` | `LOGIN`, `LOGIN#<ip>`, `LOGIN#<bucket>`, `CREATE#<hour>`, `RESET#<hour>`, `RESETMAILS#<day>`, `PROOF` | n, wait_until, known_until, epoch, v, expires_at |
//! | reset-mail rate | `THROTTLE#<email_norm>` | `RESET` | sent_at, expires_at |
//! | login failures per hour | `THROTTLE#<email_norm>` | `FAILS#<hour>` | failed, throttled, expires_at |
//! | trail event | `USER#<id>` | `EVENT#<time>#<id>` | event, at, ip, user_agent, event_id, expires_at |
//! | queued mail | `MAILQ` | `<time>#<id>` | item (kind, user, address, facts: never a link), claimed_until?, expires_at |
//!
//! Long partition parts (over 512 bytes) are replaced by their SHA-256 (`store::bounded`).
//!
//! `expires_at` is the table's TTL attribute. DynamoDB deletes expired items lazily (up to days
//! late) and local emulators never do, so every reader treats `expires_at <= now` as absent.
//!
//! The TOTP device and the emergency codes are flattened into top-level attributes of the user
//! item, so each conditional update can name exactly the fields it checks. `codes` is a string
//! set, which DynamoDB cannot store empty: once the last code is used the attribute disappears,
//! and `codes_device_id` alone marks the (empty) emergency-code device.
//!
//! All item <-> record mapping lives in [`items`]. Nothing secret is ever logged or put into an
//! error message: errors name attributes, never their values.

//! The parts: [`items`] (layout and mapping), [`expr`] (placeholders), [`client`] (calls, retries,
//! transactions), [`provision`] (emulator tables, warm-up), and here the `Store` implementation.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;

use super::{
    Claim, CounterKey, CounterWrite, Created, Effects, FailureHour, Imported, PageCursor,
    PasswordUpdate, Store, StoreError, StoreResult, TotpAccept, TotpInsert, UserPage,
};
use crate::domain::events::TrailEvent;
use crate::domain::records::{
    NewUser, Recovery, SealedSecret, StaticCodes, TotpDevice, User, UserId,
};
use crate::domain::session::{SessionDetails, SessionState, MAX_SESSIONS};
use crate::domain::throttle::Counter;
use client::{
    build_error, cancelled_by_condition, unavailable, Transacted, Updated, CONDITION_FAILED,
};
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

/// Session details outlive their session's password proof by no more than the session cap
/// (read only for live sessions; TTL removes the rest).
const SESSION_DETAILS_SECS: i64 = 30 * 24 * 3600;

/// The attributes that store a recovery state: those to set, and those to remove.
fn recovery_attributes(
    recovery: &Recovery,
) -> (Vec<(&'static str, AttributeValue)>, Vec<&'static str>) {
    let mut sets = vec![(RECOVERY_NONCE, s(&recovery.nonce))];
    let mut removes = Vec::new();
    match recovery.until {
        Some(until) => sets.push((RECOVERY_UNTIL, n(until))),
        None => removes.push(RECOVERY_UNTIL),
    }
    (sets, removes)
}

/// The condition that the stored recovery state is `seen` (absent attributes read as empty).
fn recovery_is(expr: &mut Expr, seen: &Recovery) -> String {
    let nonce = match seen.nonce.is_empty() {
        true => format!("attribute_not_exists({})", expr.name(RECOVERY_NONCE)),
        false => format!(
            "{} = {}",
            expr.name(RECOVERY_NONCE),
            expr.value(s(&seen.nonce))
        ),
    };
    let until = match seen.until {
        Some(until) => format!("{} = {}", expr.name(RECOVERY_UNTIL), expr.value(n(until))),
        None => format!("attribute_not_exists({})", expr.name(RECOVERY_UNTIL)),
    };
    format!(
        "attribute_exists({}) AND {nonce} AND {until}",
        expr.name(PK)
    )
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
    pub fn new(config: &aws_types::SdkConfig, table: String) -> Self {
        Self::with_client(Client::new(config), table)
    }

    /// Over a client built elsewhere (tests install an interceptor that counts calls).
    pub fn with_client(client: Client, table: String) -> Self {
        Self { client, table }
    }
}

#[async_trait]
impl Store for DynamoStore {
    async fn create_user(&self, new: NewUser, effects: &Effects) -> StoreResult<Created> {
        let id = self.next_user_id().await?;
        let user = new.into_user(id);
        let mut items = vec![
            self.put(
                email_claim_item(&user.email_norm, id),
                "attribute_not_exists(#pk)",
            )?,
            self.put(user_to_item(&user), "attribute_not_exists(#pk)")?,
        ];
        let mut effects = effects.clone();
        // Queued mail names the user, whose id is only known now.
        for mail in &mut effects.mail {
            mail.user = id;
        }
        items.extend(self.effect_puts(&effects)?);
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
        let claim_pk = format!("EMAIL#{}", super::bounded(email_norm));
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

    async fn swap_counters(&self, writes: &[CounterWrite], effects: &Effects) -> StoreResult<bool> {
        let mut items = writes
            .iter()
            .map(|write| {
                let mut put = Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(counter_item(write)));
                let seen = write.counter.version.saturating_sub(1);
                if write.conditional && seen == 0 {
                    // Absent, or a record of the earlier format (no version).
                    put = put
                        .condition_expression(
                            "attribute_not_exists(#pk) OR attribute_not_exists(#v)",
                        )
                        .expression_attribute_names("#pk", PK)
                        .expression_attribute_names("#v", VERSION);
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
        items.extend(self.effect_puts(effects)?);
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
            self.delete_item(counter_key(key)).await?;
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
        self.update(
            throttle_key(email_norm, RESET),
            update,
            condition,
            expr,
            &Effects::none(),
        )
        .await
    }

    async fn rotate_token_gen(
        &self,
        id: UserId,
        new_gen: &str,
        effects: &Effects,
    ) -> StoreResult<bool> {
        let mut expr = Expr::default();
        // Every session ends with the generation.
        let update = format!(
            "SET {}",
            expr.assignments(vec![
                (TOKEN_GEN, s(new_gen)),
                (SESSIONS, sessions_value(&Default::default())),
            ])
        );
        let condition = format!("attribute_exists({})", expr.name(PK));
        self.update(user_key(id), update, condition, expr, effects)
            .await
    }

    async fn delete_user(
        &self,
        user: &User,
        seen_gen: &str,
        effects: &Effects,
    ) -> StoreResult<bool> {
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
        let mut items = vec![
            TransactWriteItem::builder().delete(delete_user).build(),
            TransactWriteItem::builder().delete(delete_claim).build(),
        ];
        items.extend(self.effect_puts(effects)?);
        match self.transact(items).await? {
            Transacted::Done => Ok(true),
            Transacted::Cancelled(reasons) if cancelled_by_condition(&reasons, 0) => Ok(false),
            Transacted::Cancelled(reasons) => Err(StoreError::Unavailable(format!(
                "user deletion cancelled: {reasons:?}"
            ))),
        }
    }

    async fn update_password(
        &self,
        id: UserId,
        update: PasswordUpdate,
        effects: &Effects,
    ) -> StoreResult<bool> {
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
        let mut removed = Vec::new();
        if let Some(at) = update.reset_at {
            assignments.push((RESET_AT, n(at)));
            removed.push(PENDING);
        }
        if let Some(recovery) = &update.recovery {
            let (sets, removes) = recovery_attributes(recovery);
            assignments.extend(sets);
            removed.extend(removes);
        }
        if let Some(sessions) = &update.sessions {
            assignments.push((SESSIONS, sessions_value(sessions)));
        }
        let mut set = format!("SET {}", expr.assignments(assignments));
        if !removed.is_empty() {
            set = format!("{set} REMOVE {}", expr.names_list(&removed));
        }
        let condition = format!(
            "{} = {}",
            expr.name(PASSWORD_HASH),
            expr.value(s(update.expected_hash))
        );
        self.update(user_key(id), set, condition, expr, effects)
            .await
    }

    async fn insert_totp_device(&self, id: UserId, device: TotpDevice) -> StoreResult<TotpInsert> {
        let mut expr = Expr::default();
        let update = format!("SET {}", expr.assignments(totp_attributes(&device)));
        let condition = format!(
            "attribute_exists({}) AND attribute_not_exists({})",
            expr.name(PK),
            expr.name(TOTP_DEVICE_ID)
        );
        let old = match self
            .update_seeing(user_key(id), update, condition, expr)
            .await?
        {
            Updated::Applied(_) => return Ok(TotpInsert::Inserted),
            Updated::Refused(old) => old,
        };
        match old.as_ref() {
            None => Ok(TotpInsert::UserGone),
            Some(old) => user_from_item(old)?
                .totp
                .map(TotpInsert::Existing)
                .ok_or_else(|| {
                    StoreError::Corrupt("TOTP insert refused, yet no device is stored".to_owned())
                }),
        }
    }

    async fn accept_totp(
        &self,
        id: UserId,
        accept: TotpAccept,
        effects: &Effects,
    ) -> StoreResult<bool> {
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
        self.update(user_key(id), update, condition, expr, effects)
            .await
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
        effects: &Effects,
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
        self.update(user_key(id), update, condition, expr, effects)
            .await
    }

    async fn consume_static_code(
        &self,
        id: UserId,
        hash: &str,
        seen_failures: u32,
        effects: &Effects,
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
        self.update(user_key(id), update, condition, expr, effects)
            .await
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

    async fn remove_two_factor(
        &self,
        id: UserId,
        new_gen: &str,
        effects: &Effects,
    ) -> StoreResult<bool> {
        let mut expr = Expr::default();
        let removed: Vec<&str> = TOTP_ATTRIBUTES
            .iter()
            .chain(CODES_ATTRIBUTES.iter())
            .copied()
            .collect();
        let update = format!(
            "SET {} REMOVE {}",
            expr.assignments(vec![
                (TOKEN_GEN, s(new_gen)),
                (SESSIONS, sessions_value(&Default::default())),
            ]),
            expr.names_list(&removed),
        );
        let condition = format!("attribute_exists({})", expr.name(PK));
        self.update(user_key(id), update, condition, expr, effects)
            .await
    }

    async fn put_session(
        &self,
        id: UserId,
        session: &str,
        seen_gen: Option<u64>,
        state: SessionState,
        evict: Option<&str>,
        details: Option<&SessionDetails>,
        effects: &Effects,
    ) -> StoreResult<bool> {
        let mut effects_items = self.effect_puts(effects)?;
        if let Some(details) = details {
            let expires_at = state.auth_time + SESSION_DETAILS_SECS;
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(session_details_item(id, details, expires_at)))
                .build()
                .map_err(build_error)?;
            effects_items.push(TransactWriteItem::builder().put(put).build());
        }
        for attempt in 0..2 {
            let mut expr = Expr::default();
            let sessions = expr.name(SESSIONS);
            let this = format!("{sessions}.{}", expr.name(session));
            let mut update = format!("SET {this} = {}", expr.value(session_value(&state)));
            let condition = match (seen_gen, evict) {
                (Some(gen), _) => format!("{this}.{} = {}", expr.name("g"), expr.value(n(gen))),
                (None, Some(evict)) => {
                    let evicted = format!("{sessions}.{}", expr.name(evict));
                    update = format!("{update} REMOVE {evicted}");
                    format!("attribute_not_exists({this}) AND attribute_exists({evicted})")
                }
                (None, None) => format!(
                    "attribute_not_exists({this}) AND size({sessions}) < {}",
                    expr.value(n(MAX_SESSIONS))
                ),
            };
            let (names, values) = expr.into_parts();
            let item = Update::builder()
                .table_name(&self.table)
                .set_key(Some(user_key(id)))
                .update_expression(update)
                .condition_expression(condition)
                .set_expression_attribute_names(names)
                .set_expression_attribute_values(values)
                .build()
                .map_err(build_error)?;
            let mut items = vec![TransactWriteItem::builder().update(item).build()];
            items.extend(effects_items.iter().cloned());
            match self.transact(items).await {
                Ok(Transacted::Done) => return Ok(true),
                Ok(Transacted::Cancelled(reasons)) if cancelled_by_condition(&reasons, 0) => {
                    return Ok(false)
                }
                Ok(Transacted::Cancelled(reasons)) => {
                    return Err(StoreError::Unavailable(format!(
                        "session write cancelled: {reasons:?}"
                    )))
                }
                // An account from before sessions has no map to write into: give it one.
                Err(err) if attempt == 0 && err.to_string().contains("document path") => {
                    self.client
                        .update_item()
                        .table_name(&self.table)
                        .set_key(Some(user_key(id)))
                        .update_expression("SET #s = :empty")
                        .condition_expression("attribute_exists(#pk) AND attribute_not_exists(#s)")
                        .expression_attribute_names("#s", SESSIONS)
                        .expression_attribute_names("#pk", PK)
                        .expression_attribute_values(":empty", sessions_value(&Default::default()))
                        .send()
                        .await
                        .map(|_| ())
                        .or_else(|e| match client::condition_failed(&e) {
                            // Another request gave it one first.
                            true => Ok(()),
                            false => Err(unavailable(e)),
                        })?;
                }
                Err(err) => return Err(err),
            }
        }
        Ok(false)
    }

    async fn end_session(&self, id: UserId, session: &str, effects: &Effects) -> StoreResult<bool> {
        let mut expr = Expr::default();
        let this = format!("{}.{}", expr.name(SESSIONS), expr.name(session));
        let update = format!("REMOVE {this}");
        let condition = format!("attribute_exists({this})");
        self.update(user_key(id), update, condition, expr, effects)
            .await
    }

    async fn session_details(
        &self,
        id: UserId,
        sessions: &[String],
    ) -> StoreResult<Vec<SessionDetails>> {
        if sessions.is_empty() {
            return Ok(Vec::new());
        }
        let keys = sessions
            .iter()
            .map(|s| session_details_key(id, s))
            .collect();
        self.get_items(keys)
            .await?
            .iter()
            .map(session_details_from)
            .collect()
    }

    async fn set_recovery(
        &self,
        id: UserId,
        seen: &Recovery,
        next: Recovery,
        effects: &Effects,
    ) -> StoreResult<bool> {
        let mut expr = Expr::default();
        let (sets, removes) = recovery_attributes(&next);
        let mut update = format!("SET {}", expr.assignments(sets));
        if !removes.is_empty() {
            update = format!("{update} REMOVE {}", expr.names_list(&removes));
        }
        let condition = recovery_is(&mut expr, seen);
        self.update(user_key(id), update, condition, expr, effects)
            .await
    }

    async fn complete_recovery(
        &self,
        id: UserId,
        seen_until: i64,
        new_gen: &str,
        next: Recovery,
        effects: &Effects,
    ) -> StoreResult<bool> {
        let mut expr = Expr::default();
        let (mut sets, mut removes) = recovery_attributes(&next);
        sets.push((TOKEN_GEN, s(new_gen)));
        sets.push((SESSIONS, sessions_value(&Default::default())));
        removes.extend(TOTP_ATTRIBUTES.iter().chain(CODES_ATTRIBUTES.iter()));
        let update = format!(
            "SET {} REMOVE {}",
            expr.assignments(sets),
            expr.names_list(&removes)
        );
        let condition = format!(
            "{} = {}",
            expr.name(RECOVERY_UNTIL),
            expr.value(n(seen_until))
        );
        self.update(user_key(id), update, condition, expr, effects)
            .await
    }

    async fn activate(&self, id: UserId, effects: &Effects) -> StoreResult<bool> {
        let mut expr = Expr::default();
        let update = format!("REMOVE {}", expr.names_list(&[PENDING]));
        let condition = format!(
            "{} = {}",
            expr.name(PENDING),
            expr.value(AttributeValue::Bool(true))
        );
        self.update(user_key(id), update, condition, expr, effects)
            .await
    }

    async fn record(&self, effects: &Effects) -> StoreResult<()> {
        let items = self.effect_puts(effects)?;
        match items.len() {
            0 => Ok(()),
            _ => match self.transact(items).await? {
                Transacted::Done => Ok(()),
                Transacted::Cancelled(reasons) => Err(StoreError::Unavailable(format!(
                    "event write cancelled: {reasons:?}"
                ))),
            },
        }
    }

    /// An unconditional `ADD` to the hour's statistics: a retry of a call whose answer was lost
    /// counts the failure twice. Allowed: the count only informs the security log, and no
    /// limit reads it (the limits' counters are version-conditioned transactions).
    async fn count_login_failure(
        &self,
        email_norm: &str,
        hour: i64,
        throttled: bool,
        expires_at: i64,
    ) -> StoreResult<()> {
        let mut expr = Expr::default();
        let counted = if throttled {
            COUNTED_THROTTLED
        } else {
            COUNTED_FAILED
        };
        let update = format!(
            "ADD {} {} SET {}",
            expr.name(counted),
            expr.value(n(1)),
            expr.assignments(vec![(TTL, n(expires_at))])
        );
        let (names, values) = expr.into_parts();
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(failure_hours_key(email_norm, hour)))
            .update_expression(update)
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn trail(
        &self,
        user: UserId,
        before: &str,
        limit: usize,
    ) -> StoreResult<Vec<TrailEvent>> {
        let items = self
            .query_before(
                format!("USER#{user}"),
                "EVENT#".to_owned(),
                format!("EVENT#{before}"),
                limit,
            )
            .await?;
        items
            .iter()
            .map(|item| event_from_item(item, user))
            .collect()
    }

    async fn failure_hours(
        &self,
        email_norm: &str,
        before_hour: i64,
        limit: usize,
        now: i64,
    ) -> StoreResult<Vec<FailureHour>> {
        let partition = CounterKey::LoginAddress {
            email_norm: email_norm.to_owned(),
        }
        .partition();
        let items = self
            .query_before(
                partition,
                "FAILS#".to_owned(),
                format!("FAILS#{before_hour:012}"),
                limit,
            )
            .await?;
        let mut hours = Vec::new();
        for item in &items {
            if !items::alive(item, now)? {
                continue;
            }
            let sk = get_s(item, SK)?;
            let hour = sk
                .strip_prefix("FAILS#")
                .and_then(|h| h.parse().ok())
                .ok_or_else(|| StoreError::Corrupt("failure hour key".to_owned()))?;
            hours.push(FailureHour {
                hour,
                failed: opt_n(item, COUNTED_FAILED)?.unwrap_or(0),
                throttled: opt_n(item, COUNTED_THROTTLED)?.unwrap_or(0),
            });
        }
        Ok(hours)
    }

    async fn queued(&self, limit: usize) -> StoreResult<Vec<String>> {
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_values(":pk", s(MAIL_QUEUE_PK))
            .projection_expression("#pk, #sk")
            .expression_attribute_names("#sk", SK)
            .limit(limit.min(1000) as i32)
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        output
            .items
            .unwrap_or_default()
            .iter()
            .map(|item| get_s(item, SK))
            .collect()
    }

    async fn claim_queued(&self, id: &str, now: i64, until: i64) -> StoreResult<Claim> {
        let mut expr = Expr::default();
        let update = format!("SET {}", expr.assignments(vec![(CLAIMED_UNTIL, n(until))]));
        let condition = format!(
            "attribute_exists({}) AND (attribute_not_exists({}) OR {} <= {})",
            expr.name(PK),
            expr.name(CLAIMED_UNTIL),
            expr.name(CLAIMED_UNTIL),
            expr.value(n(now))
        );
        match self
            .update_seeing(queue_key(id), update, condition, expr)
            .await?
        {
            Updated::Applied(item) => {
                let item = item.ok_or_else(|| {
                    StoreError::Corrupt("a claimed queue item answered nothing".to_owned())
                })?;
                Ok(Claim::Claimed(queue_item_from(&item)?))
            }
            Updated::Refused(Some(_)) => Ok(Claim::Busy),
            Updated::Refused(None) => Ok(Claim::Gone),
        }
    }

    async fn remove_queued(&self, id: &str) -> StoreResult<()> {
        self.delete_item(queue_key(id)).await
    }

    async fn purge_user(&self, user: UserId) -> StoreResult<()> {
        loop {
            let items = self
                .query_before(
                    format!("USER#{user}"),
                    "EVENT#".to_owned(),
                    "EVENT#~".to_owned(),
                    25,
                )
                .await?;
            if items.is_empty() {
                return Ok(());
            }
            for item in items {
                let key = key(get_s(&item, PK)?, &get_s(&item, SK)?);
                self.delete_item(key).await?;
            }
        }
    }

    // Operator (accounts-admin) operations.

    async fn import_users(&self, users: Vec<User>) -> StoreResult<Vec<Imported>> {
        let Some(highest) = users.iter().map(|u| u.id).max() else {
            return Ok(Vec::new());
        };
        self.raise_user_id_counter(highest).await?;
        let mut outcomes = Vec::with_capacity(users.len());
        for chunk in users.chunks(IMPORT_CHUNK) {
            outcomes.extend(self.import_chunk(chunk).await?);
        }
        Ok(outcomes)
    }

    async fn set_disabled(
        &self,
        id: UserId,
        disabled: bool,
        new_gen: Option<&str>,
    ) -> StoreResult<bool> {
        let mut expr = Expr::default();
        let mut set = vec![];
        if let Some(gen) = new_gen {
            // A new generation ends every session with it.
            set.push((TOKEN_GEN, s(gen)));
            set.push((SESSIONS, sessions_value(&Default::default())));
        }
        let update = match disabled {
            true => {
                set.push((DISABLED, AttributeValue::Bool(true)));
                format!("SET {}", expr.assignments(set))
            }
            false if set.is_empty() => format!("REMOVE {}", expr.name(DISABLED)),
            false => format!(
                "SET {} REMOVE {}",
                expr.assignments(set),
                expr.name(DISABLED)
            ),
        };
        let condition = format!("attribute_exists({})", expr.name(PK));
        self.update(user_key(id), update, condition, expr, &Effects::none())
            .await
    }

    async fn users_page(&self, after: Option<PageCursor>, limit: u32) -> StoreResult<UserPage> {
        let start = after
            .map(|PageCursor(text)| {
                let (pk, sk) = text
                    .split_once('\n')
                    .ok_or_else(|| StoreError::Corrupt("bad page cursor".to_owned()))?;
                Ok::<_, StoreError>(key(pk.to_owned(), sk))
            })
            .transpose()?;
        let mut expr = Expr::default();
        let filter = format!("{} = {}", expr.name(SK), expr.value(s(PROFILE)));
        let (names, values) = expr.into_parts();
        let output = self
            .client
            .scan()
            .table_name(&self.table)
            .filter_expression(filter)
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values)
            .set_exclusive_start_key(start)
            .limit(limit.max(1) as i32)
            .send()
            .await
            .map_err(client::unavailable)?;
        let users = output
            .items()
            .iter()
            .map(user_from_item)
            .collect::<StoreResult<Vec<_>>>()?;
        let next = match output.last_evaluated_key() {
            Some(last) => Some(PageCursor(format!(
                "{}\n{}",
                get_s(last, PK)?,
                get_s(last, SK)?
            ))),
            None => None,
        };
        Ok(UserPage { users, next })
    }

    async fn reseal_totp_secret(
        &self,
        id: UserId,
        device_id: &str,
        seen: &SealedSecret,
        resealed: SealedSecret,
    ) -> StoreResult<bool> {
        let mut expr = Expr::default();
        let update = format!(
            "SET {}",
            expr.assignments(vec![
                (
                    TOTP_SECRET,
                    AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(resealed.sealed)),
                ),
                (TOTP_KEY_VERSION, n(resealed.key_version)),
            ])
        );
        let condition = format!(
            "{} = {} AND {} = {} AND {} = {}",
            expr.name(TOTP_DEVICE_ID),
            expr.value(s(device_id)),
            expr.name(TOTP_SECRET),
            expr.value(AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(
                seen.sealed.clone()
            ))),
            expr.name(TOTP_KEY_VERSION),
            expr.value(n(seen.key_version)),
        );
        self.update(user_key(id), update, condition, expr, &Effects::none())
            .await
    }
}

/// Users per import transaction: two items each (user, email claim), within DynamoDB's 100.
const IMPORT_CHUNK: usize = 50;

impl DynamoStore {
    /// Moves the id counter to at least `id` (never back).
    async fn raise_user_id_counter(&self, id: UserId) -> StoreResult<()> {
        let mut expr = Expr::default();
        let value = expr.value(n(id.0));
        let update = format!("SET {} = {value}", expr.name(LAST_ID));
        let condition = format!(
            "attribute_not_exists({}) OR {} < {value}",
            expr.name(LAST_ID),
            expr.name(LAST_ID)
        );
        // False: the counter is already there or beyond.
        self.update(id_counter_key(), update, condition, expr, &Effects::none())
            .await
            .map(drop)
    }

    /// Up to [`IMPORT_CHUNK`] users: one batch read finds those already there, one transaction
    /// writes the rest; if a racing write makes it fail, each user is written on its own.
    async fn import_chunk(&self, users: &[User]) -> StoreResult<Vec<Imported>> {
        let mut keys = Vec::with_capacity(users.len() * 2);
        for user in users {
            keys.push(user_key(user.id));
            keys.push(email_key(&user.email_norm));
        }
        keys.sort_by_key(|k| format!("{:?}{:?}", k.get(PK), k.get(SK)));
        keys.dedup();
        let found = self.get_items(keys).await?;
        let present = |pk: String| {
            found
                .iter()
                .any(|item| matches!(item.get(PK), Some(AttributeValue::S(p)) if *p == pk))
        };
        let mut outcomes = Vec::with_capacity(users.len());
        let mut pending = Vec::new();
        let mut claimed_here = std::collections::HashSet::new();
        let mut ids_here = std::collections::HashSet::new();
        for user in users {
            let outcome = if present(format!("USER#{}", user.id)) || !ids_here.insert(user.id) {
                Some(Imported::IdTaken)
            } else if present(format!("EMAIL#{}", user.email_norm))
                || !claimed_here.insert(user.email_norm.clone())
            {
                Some(Imported::EmailTaken)
            } else {
                pending.push(user);
                None
            };
            outcomes.push(outcome);
        }
        let mut items = Vec::with_capacity(pending.len() * 2);
        for user in &pending {
            items.push(self.put(
                email_claim_item(&user.email_norm, user.id),
                "attribute_not_exists(#pk)",
            )?);
            items.push(self.put(user_to_item(user), "attribute_not_exists(#pk)")?);
        }
        let all_written = items.is_empty()
            || match self.transact(items).await? {
                Transacted::Done => true,
                Transacted::Cancelled(reasons)
                    if reasons.iter().flatten().any(|r| r == CONDITION_FAILED) =>
                {
                    false
                }
                Transacted::Cancelled(reasons) => {
                    return Err(StoreError::Unavailable(format!(
                        "import cancelled: {reasons:?}"
                    )))
                }
            };
        let mut pending = pending.into_iter();
        let mut result = Vec::with_capacity(users.len());
        for outcome in outcomes {
            match outcome {
                Some(outcome) => result.push(outcome),
                None if all_written => {
                    pending.next();
                    result.push(Imported::Inserted);
                }
                None => {
                    let user = pending.next().expect("one pending user per open outcome");
                    result.push(self.import_one(user).await?);
                }
            }
        }
        Ok(result)
    }

    async fn import_one(&self, user: &User) -> StoreResult<Imported> {
        let items = vec![
            self.put(
                email_claim_item(&user.email_norm, user.id),
                "attribute_not_exists(#pk)",
            )?,
            self.put(user_to_item(user), "attribute_not_exists(#pk)")?,
        ];
        match self.transact(items).await? {
            Transacted::Done => Ok(Imported::Inserted),
            Transacted::Cancelled(reasons) if cancelled_by_condition(&reasons, 1) => {
                Ok(Imported::IdTaken)
            }
            Transacted::Cancelled(reasons) if cancelled_by_condition(&reasons, 0) => {
                Ok(Imported::EmailTaken)
            }
            Transacted::Cancelled(reasons) => Err(StoreError::Unavailable(format!(
                "import cancelled: {reasons:?}"
            ))),
        }
    }
}
