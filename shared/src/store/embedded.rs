//! The embedded adapter: one redb file. Every write is one redb write transaction, and redb
//! serialises writers, so each conditional operation is atomic exactly as its DynamoDB twin.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::{
    Claim, CounterKey, CounterWrite, Created, Effects, FailureHour, Imported, PageCursor,
    PasswordUpdate, Store, StoreError, StoreResult, TotpAccept, TotpInsert, UserPage,
};
use crate::domain::events::{QueueItem, TrailEvent};
use crate::domain::records::NewUser;
use crate::domain::records::{
    Failures, Recovery, SealedSecret, StaticCodes, TotpDevice, User, UserId,
};
use crate::domain::session::{SessionDetails, SessionState, MAX_SESSIONS};
use crate::domain::throttle::Counter;

const USERS: TableDefinition<u64, &[u8]> = TableDefinition::new("users");
const EMAILS: TableDefinition<&str, u64> = TableDefinition::new("emails");
const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");
const THROTTLES: TableDefinition<&str, &[u8]> = TableDefinition::new("throttles");
/// Trail events under `<user:020>|<position>`, so one user's are a key range.
const TRAIL: TableDefinition<&str, &[u8]> = TableDefinition::new("trail");
/// Login failures per address and hour under `<email_norm>|<hour:012>`.
const FAILURE_HOURS: TableDefinition<&str, &[u8]> = TableDefinition::new("failure_hours");
/// Session details under `<user:020>|<session id>`.
const SESSION_DETAILS: TableDefinition<&str, &[u8]> = TableDefinition::new("session_details");
/// The mail queue: item id to item and claim.
const MAIL_QUEUE: TableDefinition<&str, &[u8]> = TableDefinition::new("mail_queue");

#[derive(Serialize, Deserialize)]
struct QueueRecord {
    item: QueueItem,
    claimed_until: i64,
}

#[derive(Serialize, Deserialize)]
struct FailureRecord {
    failed: u32,
    throttled: u32,
    expires_at: i64,
}

fn trail_key(user: UserId, position: &str) -> String {
    format!("{:020}|{position}", user.0)
}

fn write_effects(tx: &WriteTransaction, effects: &Effects) -> StoreResult<()> {
    if !effects.events.is_empty() {
        let mut trail = tx.open_table(TRAIL).map_err(unavailable)?;
        for event in &effects.events {
            trail
                .insert(
                    trail_key(event.user, &event.position()).as_str(),
                    encode(event)?.as_slice(),
                )
                .map_err(unavailable)?;
        }
    }
    for item in &effects.mail {
        let record = QueueRecord {
            item: item.clone(),
            claimed_until: 0,
        };
        tx.open_table(MAIL_QUEUE)
            .map_err(unavailable)?
            .insert(item.id.as_str(), encode(&record)?.as_slice())
            .map_err(unavailable)?;
    }
    Ok(())
}

/// Abuse-limit counters under `<partition>|<sort>` of their [`CounterKey`].
const COUNTER_RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("counters_v2");

#[derive(Serialize, Deserialize)]
struct CounterRecord {
    counter: Counter,
    expires_at: i64,
}

fn counter_key(key: &CounterKey) -> String {
    format!("{}|{}", key.partition(), key.sort())
}

/// A counter as stored: expired records read as the default but keep their version, so a swap
/// still names what is there.
fn read_counter(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &CounterKey,
    now: i64,
) -> StoreResult<Counter> {
    let Some(value) = table.get(counter_key(key).as_str()).map_err(unavailable)? else {
        return Ok(Counter::default());
    };
    let record: CounterRecord =
        serde_json::from_slice(value.value()).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(match record.expires_at > now {
        true => record.counter,
        false => Counter {
            version: record.counter.version,
            ..Counter::default()
        },
    })
}

fn write_counters(tx: &WriteTransaction, writes: &[CounterWrite]) -> StoreResult<()> {
    let mut table = tx.open_table(COUNTER_RECORDS).map_err(unavailable)?;
    for write in writes {
        let record = CounterRecord {
            counter: write.counter,
            expires_at: write.expires_at,
        };
        table
            .insert(
                counter_key(&write.key).as_str(),
                encode(&record)?.as_slice(),
            )
            .map_err(unavailable)?;
    }
    Ok(())
}

#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
}

fn unavailable(err: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(err.to_string())
}

fn decode_user(bytes: &[u8]) -> StoreResult<User> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn encode<T: Serialize>(value: &T) -> StoreResult<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn reset_key(email_norm: &str) -> String {
    format!("RESET#{email_norm}")
}

fn get_user(tx: &WriteTransaction, id: UserId) -> StoreResult<Option<User>> {
    let table = tx.open_table(USERS).map_err(unavailable)?;
    let row = table.get(id.0).map_err(unavailable)?;
    row.map(|v| decode_user(v.value())).transpose()
}

fn put_user(tx: &WriteTransaction, user: &User) -> StoreResult<()> {
    let bytes = encode(user)?;
    let mut table = tx.open_table(USERS).map_err(unavailable)?;
    table
        .insert(user.id.0, bytes.as_slice())
        .map_err(unavailable)?;
    Ok(())
}

impl EmbeddedStore {
    pub fn open(path: &Path) -> StoreResult<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(unavailable)?;
        }
        let db = Database::create(path).map_err(unavailable)?;
        // Tables must exist before a read transaction may open them.
        let tx = db.begin_write().map_err(unavailable)?;
        tx.open_table(USERS).map_err(unavailable)?;
        tx.open_table(EMAILS).map_err(unavailable)?;
        tx.open_table(COUNTERS).map_err(unavailable)?;
        tx.open_table(THROTTLES).map_err(unavailable)?;
        tx.open_table(COUNTER_RECORDS).map_err(unavailable)?;
        tx.open_table(TRAIL).map_err(unavailable)?;
        tx.open_table(FAILURE_HOURS).map_err(unavailable)?;
        tx.open_table(MAIL_QUEUE).map_err(unavailable)?;
        tx.open_table(SESSION_DETAILS).map_err(unavailable)?;
        tx.commit().map_err(unavailable)?;
        Ok(Self { db: Arc::new(db) })
    }

    /// Runs `op` in one write transaction on a blocking thread. `op` answers its result and
    /// whether it changed anything; unchanged transactions are aborted rather than committed.
    async fn write<T, F>(&self, op: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&WriteTransaction) -> StoreResult<(T, bool)> + Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let tx = db.begin_write().map_err(unavailable)?;
            let (value, changed) = op(&tx)?;
            if changed {
                tx.commit().map_err(unavailable)?;
            } else {
                tx.abort().map_err(unavailable)?;
            }
            Ok(value)
        })
        .await
        .map_err(unavailable)?
    }

    /// Reads and rewrites one user in a write transaction: `change` answers whether to save.
    /// Reads and rewrites one user in a write transaction, with the change's effects: `change`
    /// answers whether to save (and so whether the effects are written too).
    async fn update_user<F>(&self, id: UserId, effects: &Effects, change: F) -> StoreResult<bool>
    where
        F: FnOnce(&mut User) -> bool + Send + 'static,
    {
        let effects = effects.clone();
        self.write(move |tx| {
            let Some(mut user) = get_user(tx, id)? else {
                return Ok((false, false));
            };
            if !change(&mut user) {
                return Ok((false, false));
            }
            put_user(tx, &user)?;
            write_effects(tx, &effects)?;
            Ok((true, true))
        })
        .await
    }

    /// Runs `op` in one read transaction, inline on the calling task: a redb point read is a
    /// few microseconds of page-cache access (MVCC, it never waits for writers), far less than
    /// the thread hand-off of `spawn_blocking` it used to pay on every request.
    /// What is wrong between accounts and their email claims: a user whose address has no
    /// claim (or a claim naming another user), or a claim naming no such user. Empty when the
    /// store is whole; the crash test (kill -9 mid-write) asserts it stays empty.
    pub fn integrity_problems(&self) -> StoreResult<Vec<String>> {
        let tx = self.db.begin_read().map_err(unavailable)?;
        let users = tx.open_table(USERS).map_err(unavailable)?;
        let emails = tx.open_table(EMAILS).map_err(unavailable)?;
        let mut problems = Vec::new();
        for row in users.iter().map_err(unavailable)? {
            let (id, value) = row.map_err(unavailable)?;
            let user = decode_user(value.value())?;
            let claim = emails
                .get(user.email_norm.as_str())
                .map_err(unavailable)?
                .map(|v| v.value());
            if claim != Some(id.value()) {
                problems.push(format!("user {} has claim {claim:?}", id.value()));
            }
        }
        for row in emails.iter().map_err(unavailable)? {
            let (email, id) = row.map_err(unavailable)?;
            if users.get(id.value()).map_err(unavailable)?.is_none() {
                problems.push(format!(
                    "claim {} names no user {}",
                    email.value(),
                    id.value()
                ));
            }
        }
        Ok(problems)
    }

    async fn read<T, F>(&self, op: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&redb::ReadTransaction) -> StoreResult<T> + Send + 'static,
    {
        let tx = self.db.begin_read().map_err(unavailable)?;
        op(&tx)
    }
}

fn read_user_by_email(tx: &redb::ReadTransaction, email_norm: &str) -> StoreResult<Option<User>> {
    let emails = tx.open_table(EMAILS).map_err(unavailable)?;
    let Some(id) = emails
        .get(email_norm)
        .map_err(unavailable)?
        .map(|v| v.value())
    else {
        return Ok(None);
    };
    let users = tx.open_table(USERS).map_err(unavailable)?;
    let row = users.get(id).map_err(unavailable)?;
    row.map(|v| decode_user(v.value())).transpose()
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn create_user(&self, new: NewUser, effects: &Effects) -> StoreResult<Created> {
        let effects = effects.clone();
        self.write(move |tx| {
            let mut emails = tx.open_table(EMAILS).map_err(unavailable)?;
            if emails
                .get(new.email_norm.as_str())
                .map_err(unavailable)?
                .is_some()
            {
                return Ok((Created::EmailTaken, false));
            }
            let mut counters = tx.open_table(COUNTERS).map_err(unavailable)?;
            let last = counters
                .get("user")
                .map_err(unavailable)?
                .map(|v| v.value())
                .unwrap_or(0);
            let id = last + 1;
            counters.insert("user", id).map_err(unavailable)?;
            emails
                .insert(new.email_norm.as_str(), id)
                .map_err(unavailable)?;
            drop((emails, counters));
            let user = new.into_user(UserId(id));
            put_user(tx, &user)?;
            // Queued mail names the user, whose id is only known now.
            let mut effects = effects;
            for mail in &mut effects.mail {
                mail.user = user.id;
            }
            write_effects(tx, &effects)?;
            Ok((Created::User(Box::new(user)), true))
        })
        .await
    }

    async fn user(&self, id: UserId) -> StoreResult<Option<User>> {
        self.read(move |tx| {
            let users = tx.open_table(USERS).map_err(unavailable)?;
            let row = users.get(id.0).map_err(unavailable)?;
            row.map(|v| decode_user(v.value())).transpose()
        })
        .await
    }

    async fn user_by_email(&self, email_norm: &str) -> StoreResult<Option<User>> {
        let email_norm = email_norm.to_owned();
        self.read(move |tx| read_user_by_email(tx, &email_norm))
            .await
    }

    async fn login_lookup(
        &self,
        email_norm: &str,
        counters: &[CounterKey],
        now: i64,
    ) -> StoreResult<(Option<User>, Vec<Counter>)> {
        let email_norm = email_norm.to_owned();
        let keys = counters.to_vec();
        self.read(move |tx| {
            let user = read_user_by_email(tx, &email_norm)?;
            let table = tx.open_table(COUNTER_RECORDS).map_err(unavailable)?;
            let counters = keys
                .iter()
                .map(|key| read_counter(&table, key, now))
                .collect::<StoreResult<_>>()?;
            Ok((user, counters))
        })
        .await
    }

    async fn counters(&self, keys: &[CounterKey], now: i64) -> StoreResult<Vec<Counter>> {
        let keys = keys.to_vec();
        self.read(move |tx| {
            let table = tx.open_table(COUNTER_RECORDS).map_err(unavailable)?;
            keys.iter()
                .map(|key| read_counter(&table, key, now))
                .collect()
        })
        .await
    }

    async fn swap_counters(&self, writes: &[CounterWrite], effects: &Effects) -> StoreResult<bool> {
        let writes = writes.to_vec();
        let effects = effects.clone();
        self.write(move |tx| {
            {
                let table = tx.open_table(COUNTER_RECORDS).map_err(unavailable)?;
                for write in writes.iter().filter(|w| w.conditional) {
                    // The version stored, expired or not (i64::MIN: nothing expires).
                    let stored = read_counter(&table, &write.key, i64::MIN)?.version;
                    if stored + 1 != write.counter.version {
                        return Ok((false, false));
                    }
                }
            }
            write_counters(tx, &writes)?;
            write_effects(tx, &effects)?;
            Ok((true, true))
        })
        .await
    }

    async fn delete_counters(&self, keys: &[CounterKey]) -> StoreResult<()> {
        let keys = keys.to_vec();
        self.write(move |tx| {
            let mut table = tx.open_table(COUNTER_RECORDS).map_err(unavailable)?;
            for key in &keys {
                table
                    .remove(counter_key(key).as_str())
                    .map_err(unavailable)?;
            }
            Ok(((), true))
        })
        .await
    }

    async fn claim_reset_mail(&self, email_norm: &str, now: i64, window: i64) -> StoreResult<bool> {
        let key = reset_key(email_norm);
        self.write(move |tx| {
            let mut throttles = tx.open_table(THROTTLES).map_err(unavailable)?;
            let last_sent: Option<i64> = match throttles.get(key.as_str()).map_err(unavailable)? {
                Some(v) => Some(
                    serde_json::from_slice(v.value())
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                ),
                None => None,
            };
            if last_sent.is_some_and(|sent| sent > now - window) {
                return Ok((false, false));
            }
            throttles
                .insert(key.as_str(), encode(&now)?.as_slice())
                .map_err(unavailable)?;
            Ok((true, true))
        })
        .await
    }

    async fn rotate_token_gen(
        &self,
        id: UserId,
        new_gen: &str,
        effects: &Effects,
    ) -> StoreResult<bool> {
        let new_gen = new_gen.to_owned();
        self.update_user(id, effects, move |user| {
            user.token_gen = new_gen;
            user.sessions.clear();
            true
        })
        .await
    }

    async fn delete_user(
        &self,
        user: &User,
        seen_gen: &str,
        effects: &Effects,
    ) -> StoreResult<bool> {
        let (id, email_norm, seen_gen) = (user.id, user.email_norm.clone(), seen_gen.to_owned());
        let effects = effects.clone();
        self.write(move |tx| {
            match get_user(tx, id)? {
                Some(current) if current.token_gen == seen_gen => {}
                _ => return Ok((false, false)),
            }
            tx.open_table(USERS)
                .map_err(unavailable)?
                .remove(id.0)
                .map_err(unavailable)?;
            tx.open_table(EMAILS)
                .map_err(unavailable)?
                .remove(email_norm.as_str())
                .map_err(unavailable)?;
            write_effects(tx, &effects)?;
            Ok((true, true))
        })
        .await
    }

    async fn update_password(
        &self,
        id: UserId,
        update: PasswordUpdate,
        effects: &Effects,
    ) -> StoreResult<bool> {
        self.update_user(id, effects, move |user| {
            if user.password_hash != update.expected_hash {
                return false;
            }
            user.password_hash = update.new_hash;
            if let Some(gen) = update.new_token_gen {
                user.token_gen = gen;
            }
            if let Some(at) = update.last_login {
                user.last_login = Some(at);
            }
            if let (true, Some(device)) = (update.clear_totp_failures, user.totp.as_mut()) {
                device.failures = Failures::default();
            }
            if let Some(at) = update.reset_at {
                user.reset_at = Some(at);
                user.pending = false;
            }
            if let Some(recovery) = update.recovery {
                user.recovery = recovery;
            }
            if let Some(sessions) = update.sessions {
                user.sessions = sessions;
            }
            true
        })
        .await
    }

    async fn insert_totp_device(&self, id: UserId, device: TotpDevice) -> StoreResult<TotpInsert> {
        self.write(move |tx| {
            let Some(mut user) = get_user(tx, id)? else {
                return Ok((TotpInsert::UserGone, false));
            };
            if let Some(existing) = user.totp {
                return Ok((TotpInsert::Existing(existing), false));
            }
            user.totp = Some(device);
            put_user(tx, &user)?;
            Ok((TotpInsert::Inserted, true))
        })
        .await
    }

    async fn accept_totp(
        &self,
        id: UserId,
        accept: TotpAccept,
        effects: &Effects,
    ) -> StoreResult<bool> {
        self.update_user(id, effects, move |user| match user.totp.as_mut() {
            Some(device)
                if device.device_id == accept.device_id
                    && device.failures.count == accept.seen_failures
                    && device.last_step < accept.step =>
            {
                device.last_step = accept.step;
                device.drift = accept.drift;
                device.confirmed = true;
                device.failures = Failures::default();
                true
            }
            _ => false,
        })
        .await
    }

    async fn record_totp_failure(
        &self,
        id: UserId,
        device_id: &str,
        seen_failures: u32,
        now: i64,
    ) -> StoreResult<bool> {
        let device_id = device_id.to_owned();
        self.update_user(id, &Effects::none(), move |user| match user.totp.as_mut() {
            Some(device)
                if device.device_id == device_id && device.failures.count == seen_failures =>
            {
                device.failures = Failures {
                    count: seen_failures + 1,
                    last_at: now,
                };
                true
            }
            _ => false,
        })
        .await
    }

    async fn replace_static_codes(
        &self,
        id: UserId,
        totp_device_id: &str,
        codes: StaticCodes,
        effects: &Effects,
    ) -> StoreResult<bool> {
        let totp_device_id = totp_device_id.to_owned();
        self.update_user(id, effects, move |user| {
            if user
                .confirmed_totp()
                .is_none_or(|d| d.device_id != totp_device_id)
            {
                return false;
            }
            user.static_codes = Some(codes);
            true
        })
        .await
    }

    async fn consume_static_code(
        &self,
        id: UserId,
        hash: &str,
        seen_failures: u32,
        effects: &Effects,
    ) -> StoreResult<bool> {
        let hash = hash.to_owned();
        self.update_user(id, effects, move |user| {
            let Some(codes) = user.static_codes.as_mut() else {
                return false;
            };
            let Some(at) = codes.hashes.iter().position(|h| *h == hash) else {
                return false;
            };
            if codes.failures.count != seen_failures {
                return false;
            }
            codes.hashes.remove(at);
            codes.failures = Failures::default();
            if let Some(device) = user.totp.as_mut() {
                device.failures = Failures::default();
            }
            true
        })
        .await
    }

    async fn record_static_failure(
        &self,
        id: UserId,
        seen_failures: u32,
        now: i64,
    ) -> StoreResult<bool> {
        self.update_user(id, &Effects::none(), move |user| {
            match user.static_codes.as_mut() {
                Some(codes) if codes.failures.count == seen_failures => {
                    codes.failures = Failures {
                        count: seen_failures + 1,
                        last_at: now,
                    };
                    true
                }
                _ => false,
            }
        })
        .await
    }

    async fn remove_two_factor(
        &self,
        id: UserId,
        new_gen: &str,
        effects: &Effects,
    ) -> StoreResult<bool> {
        let new_gen = new_gen.to_owned();
        self.update_user(id, effects, move |user| {
            user.totp = None;
            user.static_codes = None;
            user.token_gen = new_gen;
            user.sessions.clear();
            true
        })
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
        let (session, evict) = (session.to_owned(), evict.map(str::to_owned));
        let details = details.cloned();
        let effects = effects.clone();
        self.write(move |tx| {
            let Some(mut user) = get_user(tx, id)? else {
                return Ok((false, false));
            };
            let current = user.sessions.get(&session).map(|s| s.gen);
            if current != seen_gen {
                return Ok((false, false));
            }
            if seen_gen.is_none() {
                match &evict {
                    Some(evict) if user.sessions.remove(evict).is_none() => {
                        return Ok((false, false))
                    }
                    None if user.sessions.len() >= MAX_SESSIONS => return Ok((false, false)),
                    _ => {}
                }
            }
            user.sessions.insert(session.clone(), state);
            put_user(tx, &user)?;
            if let Some(details) = &details {
                tx.open_table(SESSION_DETAILS)
                    .map_err(unavailable)?
                    .insert(
                        trail_key(id, &details.id).as_str(),
                        encode(details)?.as_slice(),
                    )
                    .map_err(unavailable)?;
            }
            write_effects(tx, &effects)?;
            Ok((true, true))
        })
        .await
    }

    async fn end_session(&self, id: UserId, session: &str, effects: &Effects) -> StoreResult<bool> {
        let session = session.to_owned();
        self.update_user(id, effects, move |user| {
            user.sessions.remove(&session).is_some()
        })
        .await
    }

    async fn session_details(
        &self,
        id: UserId,
        sessions: &[String],
    ) -> StoreResult<Vec<SessionDetails>> {
        let keys: Vec<String> = sessions.iter().map(|s| trail_key(id, s)).collect();
        self.read(move |tx| {
            let table = tx.open_table(SESSION_DETAILS).map_err(unavailable)?;
            let mut found = Vec::new();
            for key in &keys {
                if let Some(value) = table.get(key.as_str()).map_err(unavailable)? {
                    found.push(
                        serde_json::from_slice(value.value())
                            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    );
                }
            }
            Ok(found)
        })
        .await
    }

    async fn set_recovery(
        &self,
        id: UserId,
        seen: &Recovery,
        next: Recovery,
        effects: &Effects,
    ) -> StoreResult<bool> {
        let seen = seen.clone();
        self.update_user(id, effects, move |user| {
            if user.recovery != seen {
                return false;
            }
            user.recovery = next;
            true
        })
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
        let new_gen = new_gen.to_owned();
        self.update_user(id, effects, move |user| {
            if user.recovery.until != Some(seen_until) {
                return false;
            }
            user.totp = None;
            user.static_codes = None;
            user.token_gen = new_gen;
            user.recovery = next;
            user.sessions.clear();
            true
        })
        .await
    }

    async fn activate(&self, id: UserId, effects: &Effects) -> StoreResult<bool> {
        self.update_user(id, effects, move |user| {
            let was_pending = user.pending;
            user.pending = false;
            was_pending
        })
        .await
    }

    async fn record(&self, effects: &Effects) -> StoreResult<()> {
        let effects = effects.clone();
        self.write(move |tx| {
            write_effects(tx, &effects)?;
            Ok(((), !effects.is_empty()))
        })
        .await
    }

    async fn count_login_failure(
        &self,
        email_norm: &str,
        hour: i64,
        throttled: bool,
        expires_at: i64,
    ) -> StoreResult<()> {
        let key = format!("{email_norm}|{hour:012}");
        self.write(move |tx| {
            let mut table = tx.open_table(FAILURE_HOURS).map_err(unavailable)?;
            let mut record = match table.get(key.as_str()).map_err(unavailable)? {
                Some(v) => serde_json::from_slice(v.value())
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                None => FailureRecord {
                    failed: 0,
                    throttled: 0,
                    expires_at,
                },
            };
            match throttled {
                true => record.throttled += 1,
                false => record.failed += 1,
            }
            record.expires_at = expires_at;
            table
                .insert(key.as_str(), encode(&record)?.as_slice())
                .map_err(unavailable)?;
            Ok(((), true))
        })
        .await
    }

    async fn trail(
        &self,
        user: UserId,
        before: &str,
        limit: usize,
    ) -> StoreResult<Vec<TrailEvent>> {
        let (low, high) = (trail_key(user, ""), trail_key(user, before));
        self.read(move |tx| {
            let table = tx.open_table(TRAIL).map_err(unavailable)?;
            let range = table
                .range(low.as_str()..high.as_str())
                .map_err(unavailable)?;
            let mut events = Vec::new();
            for entry in range.rev().take(limit) {
                let (_, value) = entry.map_err(unavailable)?;
                events.push(
                    serde_json::from_slice(value.value())
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                );
            }
            Ok(events)
        })
        .await
    }

    async fn failure_hours(
        &self,
        email_norm: &str,
        before_hour: i64,
        limit: usize,
        now: i64,
    ) -> StoreResult<Vec<FailureHour>> {
        let low = format!("{email_norm}|");
        let high = format!("{email_norm}|{before_hour:012}");
        self.read(move |tx| {
            let table = tx.open_table(FAILURE_HOURS).map_err(unavailable)?;
            let range = table
                .range(low.as_str()..high.as_str())
                .map_err(unavailable)?;
            let mut hours = Vec::new();
            for entry in range.rev() {
                let (key, value) = entry.map_err(unavailable)?;
                let record: FailureRecord = serde_json::from_slice(value.value())
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                if record.expires_at <= now {
                    continue;
                }
                let hour = key
                    .value()
                    .rsplit_once('|')
                    .and_then(|(_, h)| h.parse().ok())
                    .ok_or_else(|| StoreError::Corrupt("failure hour key".to_owned()))?;
                hours.push(FailureHour {
                    hour,
                    failed: record.failed,
                    throttled: record.throttled,
                });
                if hours.len() == limit {
                    break;
                }
            }
            Ok(hours)
        })
        .await
    }

    async fn queued(&self, limit: usize) -> StoreResult<Vec<String>> {
        self.read(move |tx| {
            let table = tx.open_table(MAIL_QUEUE).map_err(unavailable)?;
            let mut ids = Vec::new();
            for entry in table.iter().map_err(unavailable)?.take(limit) {
                let (key, _) = entry.map_err(unavailable)?;
                ids.push(key.value().to_owned());
            }
            Ok(ids)
        })
        .await
    }

    async fn claim_queued(&self, id: &str, now: i64, until: i64) -> StoreResult<Claim> {
        let id = id.to_owned();
        self.write(move |tx| {
            let mut table = tx.open_table(MAIL_QUEUE).map_err(unavailable)?;
            let record: QueueRecord = match table.get(id.as_str()).map_err(unavailable)? {
                Some(v) => serde_json::from_slice(v.value())
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                None => return Ok((Claim::Gone, false)),
            };
            if record.claimed_until > now {
                return Ok((Claim::Busy, false));
            }
            let claimed = QueueRecord {
                item: record.item.clone(),
                claimed_until: until,
            };
            table
                .insert(id.as_str(), encode(&claimed)?.as_slice())
                .map_err(unavailable)?;
            Ok((Claim::Claimed(record.item), true))
        })
        .await
    }

    async fn remove_queued(&self, id: &str) -> StoreResult<()> {
        let id = id.to_owned();
        self.write(move |tx| {
            let removed = tx
                .open_table(MAIL_QUEUE)
                .map_err(unavailable)?
                .remove(id.as_str())
                .map_err(unavailable)?
                .is_some();
            Ok(((), removed))
        })
        .await
    }

    async fn purge_user(&self, user: UserId) -> StoreResult<()> {
        let (low, high) = (trail_key(user, ""), trail_key(user, "~"));
        self.write(move |tx| {
            let mut table = tx.open_table(TRAIL).map_err(unavailable)?;
            let keys: Vec<String> = table
                .range(low.as_str()..high.as_str())
                .map_err(unavailable)?
                .map(|entry| entry.map(|(k, _)| k.value().to_owned()))
                .collect::<Result<_, _>>()
                .map_err(unavailable)?;
            for key in &keys {
                table.remove(key.as_str()).map_err(unavailable)?;
            }
            Ok(((), !keys.is_empty()))
        })
        .await
    }

    // Operator (accounts-admin) operations.

    async fn import_users(&self, users: Vec<User>) -> StoreResult<Vec<Imported>> {
        // One write transaction for the whole batch; each user is checked on its own.
        self.write(move |tx| {
            let mut outcomes = Vec::with_capacity(users.len());
            let mut changed = false;
            {
                let mut counters = tx.open_table(COUNTERS).map_err(unavailable)?;
                let last = counters
                    .get("user")
                    .map_err(unavailable)?
                    .map(|v| v.value())
                    .unwrap_or(0);
                let highest = users.iter().map(|u| u.id.0).max().unwrap_or(0);
                if highest > last {
                    counters.insert("user", highest).map_err(unavailable)?;
                    changed = true;
                }
            }
            for user in &users {
                let mut emails = tx.open_table(EMAILS).map_err(unavailable)?;
                if get_user(tx, user.id)?.is_some() {
                    outcomes.push(Imported::IdTaken);
                    continue;
                }
                if emails
                    .get(user.email_norm.as_str())
                    .map_err(unavailable)?
                    .is_some()
                {
                    outcomes.push(Imported::EmailTaken);
                    continue;
                }
                emails
                    .insert(user.email_norm.as_str(), user.id.0)
                    .map_err(unavailable)?;
                drop(emails);
                put_user(tx, user)?;
                outcomes.push(Imported::Inserted);
                changed = true;
            }
            Ok((outcomes, changed))
        })
        .await
    }

    async fn set_disabled(
        &self,
        id: UserId,
        disabled: bool,
        new_gen: Option<&str>,
    ) -> StoreResult<bool> {
        let new_gen = new_gen.map(str::to_owned);
        self.update_user(id, &Effects::none(), move |user| {
            user.disabled = disabled;
            if let Some(gen) = new_gen {
                // A new generation ends every session with it.
                user.token_gen = gen;
                user.sessions.clear();
            }
            true
        })
        .await
    }

    async fn users_page(&self, after: Option<PageCursor>, limit: u32) -> StoreResult<UserPage> {
        let start = match after {
            None => 0,
            Some(PageCursor(text)) => text
                .parse::<u64>()
                .map_err(|_| StoreError::Corrupt("bad page cursor".to_owned()))?
                .saturating_add(1),
        };
        self.read(move |tx| {
            let table = tx.open_table(USERS).map_err(unavailable)?;
            let mut users = Vec::new();
            for row in table.range(start..).map_err(unavailable)? {
                let (_, value) = row.map_err(unavailable)?;
                users.push(decode_user(value.value())?);
                if users.len() >= limit.max(1) as usize {
                    break;
                }
            }
            let next = match users.len() >= limit.max(1) as usize {
                true => users.last().map(|u| PageCursor(u.id.0.to_string())),
                false => None,
            };
            Ok(UserPage { users, next })
        })
        .await
    }

    async fn reseal_totp_secret(
        &self,
        id: UserId,
        device_id: &str,
        seen: &SealedSecret,
        resealed: SealedSecret,
    ) -> StoreResult<bool> {
        let (device_id, seen) = (device_id.to_owned(), seen.clone());
        self.update_user(id, &Effects::none(), move |user| match user.totp.as_mut() {
            Some(device) if device.device_id == device_id && device.secret == seen => {
                device.secret = resealed;
                true
            }
            _ => false,
        })
        .await
    }
}
