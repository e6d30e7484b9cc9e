//! The embedded adapter: one redb file. Every write is one redb write transaction, and redb
//! serialises writers, so each conditional operation is atomic exactly as its DynamoDB twin.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::{
    CounterKey, CounterWrite, Created, PasswordUpdate, Store, StoreError, StoreResult, TotpAccept,
    TotpInsert,
};
use crate::domain::records::NewUser;
use crate::domain::records::{Failures, StaticCodes, TotpDevice, User, UserId};
use crate::domain::throttle::Counter;

const USERS: TableDefinition<u64, &[u8]> = TableDefinition::new("users");
const EMAILS: TableDefinition<&str, u64> = TableDefinition::new("emails");
const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");
const THROTTLES: TableDefinition<&str, &[u8]> = TableDefinition::new("throttles");
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
    async fn update_user<F>(&self, id: UserId, change: F) -> StoreResult<bool>
    where
        F: FnOnce(&mut User) -> bool + Send + 'static,
    {
        self.write(move |tx| {
            let Some(mut user) = get_user(tx, id)? else {
                return Ok((false, false));
            };
            if !change(&mut user) {
                return Ok((false, false));
            }
            put_user(tx, &user)?;
            Ok((true, true))
        })
        .await
    }

    async fn read<T, F>(&self, op: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&redb::ReadTransaction) -> StoreResult<T> + Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let tx = db.begin_read().map_err(unavailable)?;
            op(&tx)
        })
        .await
        .map_err(unavailable)?
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
    async fn create_user(&self, new: NewUser) -> StoreResult<Created> {
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

    async fn swap_counters(&self, writes: &[CounterWrite]) -> StoreResult<bool> {
        let writes = writes.to_vec();
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

    async fn rotate_token_gen(&self, id: UserId, new_gen: &str) -> StoreResult<bool> {
        let new_gen = new_gen.to_owned();
        self.update_user(id, move |user| {
            user.token_gen = new_gen;
            true
        })
        .await
    }

    async fn delete_user(&self, user: &User, seen_gen: &str) -> StoreResult<bool> {
        let (id, email_norm, seen_gen) = (user.id, user.email_norm.clone(), seen_gen.to_owned());
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
            Ok((true, true))
        })
        .await
    }

    async fn update_password(&self, id: UserId, update: PasswordUpdate) -> StoreResult<bool> {
        self.update_user(id, move |user| {
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

    async fn accept_totp(&self, id: UserId, accept: TotpAccept) -> StoreResult<bool> {
        self.update_user(id, move |user| match user.totp.as_mut() {
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
        self.update_user(id, move |user| match user.totp.as_mut() {
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
    ) -> StoreResult<bool> {
        let totp_device_id = totp_device_id.to_owned();
        self.update_user(id, move |user| {
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
    ) -> StoreResult<bool> {
        let hash = hash.to_owned();
        self.update_user(id, move |user| {
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
        self.update_user(id, move |user| match user.static_codes.as_mut() {
            Some(codes) if codes.failures.count == seen_failures => {
                codes.failures = Failures {
                    count: seen_failures + 1,
                    last_at: now,
                };
                true
            }
            _ => false,
        })
        .await
    }

    async fn remove_two_factor(&self, id: UserId, new_gen: &str) -> StoreResult<bool> {
        let new_gen = new_gen.to_owned();
        self.update_user(id, move |user| {
            user.totp = None;
            user.static_codes = None;
            user.token_gen = new_gen;
            true
        })
        .await
    }
}
