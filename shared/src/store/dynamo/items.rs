//! The table's layout: key and attribute names, keys of each item kind, and the mapping
//! between records and items (the only place that knows both).

use std::collections::HashMap;
use std::str::FromStr;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;

use crate::domain::events::{QueueItem, TrailEvent};
use crate::domain::records::{
    Failures, Recovery, SealedSecret, StaticCodes, TotpDevice, User, UserId,
};
use crate::domain::session::{SessionDetails, SessionState, Sessions};
use crate::domain::throttle::Counter;
use crate::store::{bounded, CounterKey, CounterWrite, StoreError, StoreResult, TRAIL_SECS};

pub(super) type Item = HashMap<String, AttributeValue>;

pub(super) const PK: &str = "pk";
pub(super) const SK: &str = "sk";
pub(super) const TTL: &str = "expires_at";

/// The table's key schema (attribute, key type) and TTL attribute, as `infra/template.yaml`
/// must declare them (checked by a test).
pub const KEY_SCHEMA: [(&str, &str); 2] = [(PK, "HASH"), (SK, "RANGE")];
pub const TTL_ATTRIBUTE: &str = TTL;

pub(super) const PROFILE: &str = "PROFILE";
pub(super) const EMAIL: &str = "EMAIL";
pub(super) const RESET: &str = "RESET";

// User attributes.
pub(super) const ID: &str = "id";
pub(super) const EMAIL_AS_STORED: &str = "email";
pub(super) const EMAIL_NORM: &str = "email_norm";
pub(super) const PASSWORD_HASH: &str = "password_hash";
pub(super) const TOKEN_GEN: &str = "token_gen";
pub(super) const LAST_LOGIN: &str = "last_login";
pub(super) const CREATED_AT: &str = "created_at";
pub(super) const PENDING: &str = "pending";
pub(super) const RECOVERY_NONCE: &str = "recovery_nonce";
pub(super) const RECOVERY_UNTIL: &str = "recovery_until";
pub(super) const RESET_AT: &str = "reset_at";
/// The live sessions' hot parts: a map of session id to {g, o?, a, r, u}.
pub(super) const SESSIONS: &str = "sessions";
const SESSION_GEN: &str = "g";
const SESSION_OTP: &str = "o";
const SESSION_AUTH_TIME: &str = "a";
const SESSION_ROTATED_AT: &str = "r";
const SESSION_LAST_USED: &str = "u";
// Session details items.
pub(super) const CREATED: &str = "created_at";
/// Present (true) only on a disabled account (SPEC §10).
pub(super) const DISABLED: &str = "disabled";
// The TOTP device, flattened.
pub(super) const TOTP_DEVICE_ID: &str = "totp_device_id";
pub(super) const TOTP_SECRET: &str = "totp_secret";
pub(super) const TOTP_KEY_VERSION: &str = "totp_key_version";
pub(super) const TOTP_CONFIRMED: &str = "totp_confirmed";
pub(super) const TOTP_LAST_STEP: &str = "totp_last_step";
pub(super) const TOTP_DRIFT: &str = "totp_drift";
pub(super) const TOTP_FAILURES: &str = "totp_failures";
pub(super) const TOTP_FAILED_AT: &str = "totp_failed_at";
pub(super) const TOTP_ATTRIBUTES: [&str; 8] = [
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
pub(super) const CODES_DEVICE_ID: &str = "codes_device_id";
pub(super) const CODES: &str = "codes";
pub(super) const CODE_FAILURES: &str = "code_failures";
pub(super) const CODE_FAILED_AT: &str = "code_failed_at";
pub(super) const CODES_ATTRIBUTES: [&str; 4] =
    [CODES_DEVICE_ID, CODES, CODE_FAILURES, CODE_FAILED_AT];
// Other items.
pub(super) const USER_ID: &str = "user_id";
pub(super) const LAST_ID: &str = "last_id";
// Trail events, login-failure hours and the mail queue.
pub(super) const EVENT: &str = "event";
pub(super) const AT: &str = "at";
pub(super) const IP: &str = "ip";
pub(super) const USER_AGENT: &str = "user_agent";
pub(super) const EVENT_ID: &str = "event_id";
pub(super) const COUNTED_FAILED: &str = "failed";
pub(super) const COUNTED_THROTTLED: &str = "throttled";
pub(super) const QUEUED: &str = "item";
pub(super) const CLAIMED_UNTIL: &str = "claimed_until";
/// The one partition of the mail queue: read with key operations only.
pub(super) const MAIL_QUEUE_PK: &str = "MAILQ";
/// A queued item left unsent (its sends kept failing) is forgotten after this long.
pub(super) const QUEUE_SECS: i64 = 14 * 24 * 3600;

// Abuse-limit counters.
pub(super) const COUNT: &str = "n";
pub(super) const WAIT_UNTIL: &str = "wait_until";
pub(super) const KNOWN_UNTIL: &str = "known_until";
pub(super) const EPOCH: &str = "epoch";
pub(super) const VERSION: &str = "v";
pub(super) const SENT_AT: &str = "sent_at";

// ---------------------------------------------------------------------------------------------
// Keys and attribute values.

pub(super) fn key(pk: String, sk: &str) -> Item {
    HashMap::from([
        (PK.to_owned(), AttributeValue::S(pk)),
        (SK.to_owned(), AttributeValue::S(sk.to_owned())),
    ])
}

pub(super) fn user_key(id: UserId) -> Item {
    key(format!("USER#{id}"), PROFILE)
}

pub(super) fn email_key(email_norm: &str) -> Item {
    key(format!("EMAIL#{}", bounded(email_norm)), EMAIL)
}

pub(super) fn id_counter_key() -> Item {
    key("COUNTER".to_owned(), "USER")
}

/// The per-address reset-mail claim (`THROTTLE#<email_norm>` / `RESET`).
pub(super) fn throttle_key(email_norm: &str, kind: &str) -> Item {
    key(format!("THROTTLE#{email_norm}"), kind)
}

pub(super) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(super) fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub(super) fn get<'a>(item: &'a Item, name: &str) -> StoreResult<&'a AttributeValue> {
    item.get(name)
        .ok_or_else(|| StoreError::Corrupt(format!("attribute {name} is missing")))
}

pub(super) fn ill_typed(name: &str, wanted: &str) -> StoreError {
    StoreError::Corrupt(format!("attribute {name} is not {wanted}"))
}

pub(super) fn get_s(item: &Item, name: &str) -> StoreResult<String> {
    match get(item, name)? {
        AttributeValue::S(value) => Ok(value.clone()),
        _ => Err(ill_typed(name, "a string")),
    }
}

pub(super) fn get_n<T: FromStr>(item: &Item, name: &str) -> StoreResult<T> {
    match get(item, name)? {
        AttributeValue::N(value) => value
            .parse()
            .map_err(|_| ill_typed(name, "a fitting number")),
        _ => Err(ill_typed(name, "a number")),
    }
}

pub(super) fn opt_n<T: FromStr>(item: &Item, name: &str) -> StoreResult<Option<T>> {
    match item.contains_key(name) {
        true => get_n(item, name).map(Some),
        false => Ok(None),
    }
}

pub(super) fn get_bool(item: &Item, name: &str) -> StoreResult<bool> {
    match get(item, name)? {
        AttributeValue::Bool(value) => Ok(*value),
        _ => Err(ill_typed(name, "a boolean")),
    }
}

pub(super) fn get_b(item: &Item, name: &str) -> StoreResult<Vec<u8>> {
    match get(item, name)? {
        AttributeValue::B(value) => Ok(value.as_ref().to_vec()),
        _ => Err(ill_typed(name, "binary")),
    }
}

/// A string set that may be absent (DynamoDB cannot store an empty set): absent reads as empty.
pub(super) fn opt_ss(item: &Item, name: &str) -> StoreResult<Vec<String>> {
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
pub(super) fn alive(item: &Item, now: i64) -> StoreResult<bool> {
    Ok(opt_n::<i64>(item, TTL)?.is_none_or(|at| at > now))
}

// ---------------------------------------------------------------------------------------------
// Records <-> items.

pub(super) fn totp_attributes(device: &TotpDevice) -> Vec<(&'static str, AttributeValue)> {
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
pub(super) fn codes_attributes(codes: &StaticCodes) -> Vec<(&'static str, AttributeValue)> {
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

pub(super) fn user_to_item(user: &User) -> Item {
    let mut item = user_key(user.id);
    let mut attributes = vec![
        (ID, n(user.id.0)),
        (EMAIL_AS_STORED, s(&user.email)),
        (EMAIL_NORM, s(&user.email_norm)),
        (PASSWORD_HASH, s(&user.password_hash)),
        (TOKEN_GEN, s(&user.token_gen)),
        (CREATED_AT, n(user.created_at)),
    ];
    if user.pending {
        attributes.push((PENDING, AttributeValue::Bool(true)));
    }
    if !user.recovery.nonce.is_empty() {
        attributes.push((RECOVERY_NONCE, s(&user.recovery.nonce)));
    }
    if let Some(until) = user.recovery.until {
        attributes.push((RECOVERY_UNTIL, n(until)));
    }
    if let Some(at) = user.reset_at {
        attributes.push((RESET_AT, n(at)));
    }
    attributes.push((SESSIONS, sessions_value(&user.sessions)));
    if let Some(at) = user.last_login {
        attributes.push((LAST_LOGIN, n(at)));
    }
    if user.disabled {
        attributes.push((DISABLED, AttributeValue::Bool(true)));
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

pub(super) fn user_from_item(item: &Item) -> StoreResult<User> {
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
        pending: match item.get(PENDING) {
            Some(_) => get_bool(item, PENDING)?,
            None => false,
        },
        recovery: Recovery {
            nonce: match item.get(RECOVERY_NONCE) {
                Some(_) => get_s(item, RECOVERY_NONCE)?,
                None => String::new(),
            },
            until: opt_n(item, RECOVERY_UNTIL)?,
        },
        reset_at: opt_n(item, RESET_AT)?,
        sessions: match item.get(SESSIONS) {
            None => Sessions::new(),
            Some(AttributeValue::M(map)) => map
                .iter()
                .map(|(id, state)| Ok((id.clone(), session_from_value(state)?)))
                .collect::<StoreResult<_>>()?,
            Some(_) => return Err(ill_typed(SESSIONS, "a map")),
        },
        disabled: match item.contains_key(DISABLED) {
            true => get_bool(item, DISABLED)?,
            false => false,
        },
    })
}

pub(super) fn email_claim_item(email_norm: &str, id: UserId) -> Item {
    let mut item = email_key(email_norm);
    item.insert(USER_ID.to_owned(), n(id.0));
    item
}

pub(super) fn counter_key(key: &CounterKey) -> Item {
    self::key(key.partition(), &key.sort())
}

pub(super) fn counter_item(write: &CounterWrite) -> Item {
    let mut item = counter_key(&write.key);
    let c = &write.counter;
    item.extend(
        [
            (COUNT, n(c.n)),
            (WAIT_UNTIL, n(c.wait_until)),
            (KNOWN_UNTIL, n(c.known_until)),
            (EPOCH, n(c.epoch)),
            (VERSION, n(c.version)),
            (TTL, n(write.expires_at)),
        ]
        .map(|(k, v)| (k.to_owned(), v)),
    );
    item
}

/// A counter item; one expired at `now` reads as the default but keeps its version, so a swap
/// still names what is stored.
pub(super) fn counter_from_item(item: &Item, now: i64) -> StoreResult<Counter> {
    // A record of the earlier throttle format (no version) reads as empty, and is replaced.
    let Some(version) = opt_n(item, VERSION)? else {
        return Ok(Counter::default());
    };
    if !alive(item, now)? {
        return Ok(Counter {
            version,
            ..Counter::default()
        });
    }
    Ok(Counter {
        n: get_n(item, COUNT)?,
        wait_until: get_n(item, WAIT_UNTIL)?,
        known_until: get_n(item, KNOWN_UNTIL)?,
        epoch: get_n(item, EPOCH)?,
        version,
    })
}

pub(super) fn event_item(event: &TrailEvent) -> Item {
    let mut item = key(
        format!("USER#{}", event.user),
        &format!("EVENT#{}", event.position()),
    );
    let mut attributes = vec![
        (EVENT, s(event.event.name())),
        (AT, n(event.at)),
        (IP, s(&event.ip)),
        (USER_AGENT, s(&event.user_agent)),
        (EVENT_ID, s(&event.id)),
        (TTL, n(event.at + TRAIL_SECS)),
    ];
    if let Some(count) = event.count {
        attributes.push((COUNTED_FAILED, n(count)));
    }
    item.extend(attributes.into_iter().map(|(k, v)| (k.to_owned(), v)));
    item
}

pub(super) fn event_from_item(item: &Item, user: UserId) -> StoreResult<TrailEvent> {
    let name = get_s(item, EVENT)?;
    let event = serde_json::from_value(serde_json::Value::String(name))
        .map_err(|_| ill_typed(EVENT, "a known event"))?;
    Ok(TrailEvent {
        user,
        event,
        at: get_n(item, AT)?,
        ip: get_s(item, IP)?,
        user_agent: get_s(item, USER_AGENT)?,
        id: get_s(item, EVENT_ID)?,
        count: opt_n(item, COUNTED_FAILED)?,
    })
}

pub(super) fn failure_hours_key(email_norm: &str, hour: i64) -> Item {
    let partition = CounterKey::LoginAddress {
        email_norm: email_norm.to_owned(),
    }
    .partition();
    key(partition, &format!("FAILS#{hour:012}"))
}

pub(super) fn queue_key(id: &str) -> Item {
    key(MAIL_QUEUE_PK.to_owned(), id)
}

/// A queue item: the serialised item (kind, user, address, facts; never a link or token).
pub(super) fn queue_item(mail: &QueueItem) -> StoreResult<Item> {
    let mut item = queue_key(&mail.id);
    let json = serde_json::to_string(mail).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    item.insert(QUEUED.to_owned(), s(json));
    let queued_at: i64 = mail
        .id
        .split('#')
        .next()
        .and_then(|t| t.parse().ok())
        .unwrap_or_default();
    item.insert(TTL.to_owned(), n(queued_at + QUEUE_SECS));
    Ok(item)
}

pub(super) fn queue_item_from(item: &Item) -> StoreResult<QueueItem> {
    serde_json::from_str(&get_s(item, QUEUED)?).map_err(|_| ill_typed(QUEUED, "a queue item"))
}

pub(super) fn session_value(state: &SessionState) -> AttributeValue {
    let mut map = HashMap::from([
        (SESSION_GEN.to_owned(), n(state.gen)),
        (SESSION_AUTH_TIME.to_owned(), n(state.auth_time)),
        (SESSION_ROTATED_AT.to_owned(), n(state.rotated_at)),
        (SESSION_LAST_USED.to_owned(), n(state.last_used_at)),
    ]);
    if let Some(otp) = &state.otp {
        map.insert(SESSION_OTP.to_owned(), s(otp));
    }
    AttributeValue::M(map)
}

pub(super) fn sessions_value(sessions: &Sessions) -> AttributeValue {
    AttributeValue::M(
        sessions
            .iter()
            .map(|(id, state)| (id.clone(), session_value(state)))
            .collect(),
    )
}

fn session_from_value(value: &AttributeValue) -> StoreResult<SessionState> {
    let AttributeValue::M(map) = value else {
        return Err(ill_typed(SESSIONS, "a map of maps"));
    };
    Ok(SessionState {
        gen: get_n(map, SESSION_GEN)?,
        otp: match map.get(SESSION_OTP) {
            Some(_) => Some(get_s(map, SESSION_OTP)?),
            None => None,
        },
        auth_time: get_n(map, SESSION_AUTH_TIME)?,
        rotated_at: get_n(map, SESSION_ROTATED_AT)?,
        last_used_at: get_n(map, SESSION_LAST_USED)?,
    })
}

pub(super) fn session_details_key(user: UserId, session: &str) -> Item {
    key(format!("USER#{user}"), &format!("SESSION#{session}"))
}

pub(super) fn session_details_item(
    user: UserId,
    details: &SessionDetails,
    expires_at: i64,
) -> Item {
    let mut item = session_details_key(user, &details.id);
    item.extend(
        [
            (EVENT_ID, s(&details.id)),
            (CREATED, n(details.created_at)),
            (IP, s(&details.ip)),
            (USER_AGENT, s(&details.user_agent)),
            (TTL, n(expires_at)),
        ]
        .map(|(k, v)| (k.to_owned(), v)),
    );
    item
}

pub(super) fn session_details_from(item: &Item) -> StoreResult<SessionDetails> {
    Ok(SessionDetails {
        id: get_s(item, EVENT_ID)?,
        created_at: get_n(item, CREATED)?,
        ip: get_s(item, IP)?,
        user_agent: get_s(item, USER_AGENT)?,
    })
}
