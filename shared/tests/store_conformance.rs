//! The storage conformance suite: every scenario runs, unchanged, against both adapters of the
//! `Store` port — `embedded::<scenario>` on a fresh redb file, `dynamodb::<scenario>` on a fresh
//! table of the DynamoDB endpoint named by `AWS_ENDPOINT_URL` (moto locally). The DynamoDB half
//! never skips: without an endpoint it fails and says why.

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use auth::domain::events::{QueueItem, QueueKind, SecurityEvent, TrailEvent};
use auth::domain::records::Recovery;
use auth::domain::records::{
    Failures, NewUser, SealedSecret, StaticCodes, TotpDevice, User, UserId,
};
use auth::domain::throttle::Counter;
use auth::store::dynamo::DynamoStore;
use auth::store::embedded::EmbeddedStore;
use auth::store::{
    Claim, CounterKey, CounterWrite, Created, Effects, PasswordUpdate, Store, TotpAccept,
    TotpInsert,
};
use tokio::sync::Barrier;

type Shared = Arc<dyn Store>;

// ---------------------------------------------------------------------------------------------
// The two adapters.

fn random_hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

/// A directory under the system temp dir, removed when the test ends (passed or failed).
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        Self(std::env::temp_dir().join(format!("store-conformance-{}", random_hex(8))))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn embedded_store(dir: &TempDir) -> Shared {
    Arc::new(EmbeddedStore::open(&dir.0.join("accounts.redb")).expect("open the embedded store"))
}

async fn dynamodb_store() -> Shared {
    let endpoint = ["AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL"]
        .iter()
        .any(|name| std::env::var_os(name).is_some());
    assert!(
        endpoint,
        "neither AWS_ENDPOINT_URL nor AWS_ENDPOINT_URL_DYNAMODB is set: the DynamoDB half of the \
         store conformance suite needs an emulator (run ./scripts/test, which starts one \
         and sets AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION); these \
         tests never skip"
    );
    let config = auth::wiring::aws::sdk_config().expect("AWS configuration");
    let store = DynamoStore::new(&config, format!("conf-{}", random_hex(6)));
    store.ensure_table().await.expect("create the test table");
    Arc::new(store)
}

/// Declares each scenario (an `async fn(Shared)` below) once per adapter.
macro_rules! conformance {
    ($($scenario:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $scenario() {
                    let dir = super::TempDir::new();
                    super::$scenario(super::embedded_store(&dir)).await;
                }
            )*
        }

        mod dynamodb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $scenario() {
                    super::$scenario(super::dynamodb_store().await).await;
                }
            )*
        }
    };
}

conformance!(
    ids_are_increasing_and_never_reused_after_delete,
    an_email_is_claimed_once_even_by_20_concurrent_creates,
    delete_requires_the_seen_token_generation_and_frees_the_email,
    update_password_is_conditional_on_the_seen_hash,
    login_lookup_reads_the_account_and_its_counters_in_order,
    twenty_concurrent_swaps_of_one_counter_version_let_exactly_one_win,
    a_swap_of_several_counters_is_all_or_none,
    claim_reset_mail_allows_one_per_window,
    insert_totp_device_returns_the_existing_device_to_a_second_caller,
    accept_totp_refuses_a_replayed_or_earlier_step_and_a_stale_failure_count,
    ten_concurrent_consumes_of_one_code_let_exactly_one_win,
    consuming_a_code_resets_code_and_totp_failures,
    emergency_codes_need_the_confirmed_totp_device,
    remove_two_factor_removes_device_and_codes_and_rotates_the_generation,
    operations_on_a_missing_user_answer_false_none_or_user_gone,
    an_expired_counter_reads_as_default_but_keeps_its_version,
    a_change_and_its_effects_are_written_together_or_not_at_all,
    a_queued_item_is_claimed_by_one_delivery_at_a_time_and_removed_once,
    recovery_and_activation_writes_are_conditional,
);

// ---------------------------------------------------------------------------------------------
// Helpers.

const T0: i64 = 1_700_000_000;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

fn new_user(email: &str) -> NewUser {
    NewUser {
        email: email.to_owned(),
        email_norm: email.to_lowercase(),
        password_hash: format!("$argon2id$v=19$m=19456,t=2,p=1${}", random_hex(16)),
        token_gen: random_hex(16),
        created_at: T0,
        pending: false,
    }
}

async fn create(store: &Shared, email: &str) -> User {
    match store
        .create_user(new_user(email), &Effects::none())
        .await
        .expect("create")
    {
        Created::User(user) => *user,
        Created::EmailTaken => panic!("{email} unexpectedly taken"),
    }
}

async fn read(store: &Shared, id: UserId) -> User {
    store.user(id).await.expect("read").expect("user exists")
}

fn device(device_id: &str) -> TotpDevice {
    TotpDevice {
        device_id: device_id.to_owned(),
        secret: SealedSecret {
            key_version: 3,
            sealed: (0..40).map(|_| rand::random::<u8>()).collect(),
        },
        confirmed: false,
        last_step: 0,
        drift: 0,
        failures: Failures::default(),
    }
}

fn accept(device_id: &str, seen_failures: u32, step: i64, drift: i64) -> TotpAccept {
    TotpAccept {
        device_id: device_id.to_owned(),
        seen_failures,
        step,
        drift,
    }
}

fn hashes(n: usize) -> Vec<String> {
    (0..n).map(|_| random_hex(32)).collect()
}

fn sorted(mut values: Vec<String>) -> Vec<String> {
    values.sort();
    values
}

/// A user with a confirmed TOTP device `totp-1` and the emergency codes `codes`.
async fn two_factor_user(store: &Shared, email: &str, codes: &[String]) -> User {
    let user = create(store, email).await;
    let inserted = store
        .insert_totp_device(user.id, device("totp-1"))
        .await
        .expect("insert device");
    assert!(matches!(inserted, TotpInsert::Inserted));
    assert!(store
        .accept_totp(user.id, accept("totp-1", 0, 1_000, 0), &Effects::none())
        .await
        .expect("confirm"));
    let codes = StaticCodes {
        device_id: "static-1".to_owned(),
        hashes: codes.to_vec(),
        failures: Failures::default(),
    };
    assert!(store
        .replace_static_codes(user.id, "totp-1", codes, &Effects::none())
        .await
        .expect("store codes"));
    read(store, user.id).await
}

/// Runs `n` copies of an operation at once (released together by a barrier) and collects results.
async fn concurrently<T, F, Fut>(n: usize, op: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
{
    let barrier = Arc::new(Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let barrier = barrier.clone();
            let op = op(i);
            tokio::spawn(async move {
                barrier.wait().await;
                op.await
            })
        })
        .collect();
    let mut results = Vec::with_capacity(n);
    for task in tasks {
        results.push(task.await.expect("task panicked"));
    }
    results
}

fn rand_byte() -> u8 {
    random_hex(1).chars().fold(0u8, |acc, c| {
        acc.wrapping_mul(16)
            .wrapping_add(c.to_digit(16).unwrap() as u8)
    })
}

fn count_true(results: &[bool]) -> usize {
    results.iter().filter(|won| **won).count()
}

// ---------------------------------------------------------------------------------------------
// Scenarios.

async fn ids_are_increasing_and_never_reused_after_delete(store: Shared) {
    let a = create(&store, "Alice@example.com").await;
    let b = create(&store, "bob@example.com").await;
    assert!(a.id.0 > 0, "ids are positive");
    assert!(b.id > a.id);

    // A new user reads back exactly as created, by id and by address.
    assert_eq!(a.email, "Alice@example.com");
    assert_eq!(a.email_norm, "alice@example.com");
    assert_eq!(
        (a.last_login, a.totp.clone(), a.static_codes.clone()),
        (None, None, None)
    );
    assert_eq!(store.user(a.id).await.unwrap(), Some(a.clone()));
    assert_eq!(
        store.user_by_email("alice@example.com").await.unwrap(),
        Some(a.clone())
    );

    assert!(store
        .delete_user(&b, &b.token_gen, &Effects::none())
        .await
        .unwrap());
    let c = create(&store, "bob@example.com").await;
    assert!(c.id > b.id, "{} reused after {} was deleted", c.id, b.id);
    let d = create(&store, "carol@example.com").await;
    assert!(d.id > c.id);
    assert_eq!(store.user(b.id).await.unwrap(), None);
    assert_eq!(store.user(c.id).await.unwrap(), Some(c));
}

async fn an_email_is_claimed_once_even_by_20_concurrent_creates(store: Shared) {
    let outcomes = concurrently(20, |i| {
        let store = store.clone();
        // Different spellings of one address: the claim is on the normalized form.
        let email = match i % 2 {
            0 => "Race@Example.com",
            _ => "race@example.com",
        };
        async move {
            store
                .create_user(new_user(email), &Effects::none())
                .await
                .expect("create")
        }
    })
    .await;
    let winners: Vec<User> = outcomes
        .into_iter()
        .filter_map(|outcome| match outcome {
            Created::User(user) => Some(*user),
            Created::EmailTaken => None,
        })
        .collect();
    assert_eq!(
        winners.len(),
        1,
        "exactly one create wins, the rest are EmailTaken"
    );
    let winner = &winners[0];
    assert_eq!(
        store
            .user_by_email("race@example.com")
            .await
            .unwrap()
            .as_ref(),
        Some(winner)
    );
    // No loser left a user behind under any id it may have drawn.
    let mut readable = Vec::new();
    for id in 1..=60 {
        if let Some(user) = store.user(UserId(id)).await.unwrap() {
            readable.push(user);
        }
    }
    assert_eq!(readable, vec![winner.clone()]);
}

async fn delete_requires_the_seen_token_generation_and_frees_the_email(store: Shared) {
    let user = create(&store, "dora@example.com").await;
    assert!(!store
        .delete_user(&user, "not-the-generation", &Effects::none())
        .await
        .unwrap());
    assert_eq!(store.user(user.id).await.unwrap(), Some(user.clone()));

    // A logout-everywhere in between makes the generation the caller saw stale.
    assert!(store
        .rotate_token_gen(user.id, "gen-2", &Effects::none())
        .await
        .unwrap());
    assert!(!store
        .delete_user(&user, &user.token_gen, &Effects::none())
        .await
        .unwrap());
    assert_eq!(read(&store, user.id).await.token_gen, "gen-2");

    assert!(store
        .delete_user(&user, "gen-2", &Effects::none())
        .await
        .unwrap());
    assert_eq!(store.user(user.id).await.unwrap(), None);
    assert_eq!(store.user_by_email("dora@example.com").await.unwrap(), None);
    let (found, _) = store
        .login_lookup("dora@example.com", &[], T0)
        .await
        .unwrap();
    assert_eq!(found, None);
    assert!(
        !store
            .delete_user(&user, "gen-2", &Effects::none())
            .await
            .unwrap(),
        "deletes once"
    );

    // The address is free again, for a new user with a new id.
    let again = create(&store, "Dora@example.com").await;
    assert!(again.id > user.id);
    assert_eq!(
        store.user_by_email("dora@example.com").await.unwrap(),
        Some(again)
    );
}

async fn update_password_is_conditional_on_the_seen_hash(store: Shared) {
    let user = create(&store, "erin@example.com").await;
    let update =
        |expected: &str, new: &str, gen: Option<&str>, login: Option<i64>| PasswordUpdate {
            clear_totp_failures: false,
            reset_at: None,
            recovery: None,
            sessions: None,
            expected_hash: expected.to_owned(),
            new_hash: new.to_owned(),
            new_token_gen: gen.map(str::to_owned),
            last_login: login,
        };

    let refused = update("not-the-hash", "h-x", Some("gen-x"), Some(1));
    assert!(!store
        .update_password(user.id, refused, &Effects::none())
        .await
        .unwrap());
    assert_eq!(read(&store, user.id).await, user);

    let reset = update(&user.password_hash, "h-2", Some("gen-2"), Some(T0 + 5));
    assert!(store
        .update_password(user.id, reset, &Effects::none())
        .await
        .unwrap());
    let after = read(&store, user.id).await;
    assert_eq!(
        (
            after.password_hash.as_str(),
            after.token_gen.as_str(),
            after.last_login
        ),
        ("h-2", "gen-2", Some(T0 + 5))
    );
    // The same reset again: its hash is gone, so it is single use.
    let replay = update(&user.password_hash, "h-3", None, None);
    assert!(!store
        .update_password(user.id, replay, &Effects::none())
        .await
        .unwrap());

    // A rehash touches only the hash.
    assert!(store
        .update_password(user.id, update("h-2", "h-3", None, None), &Effects::none())
        .await
        .unwrap());
    let after = read(&store, user.id).await;
    assert_eq!(
        (
            after.password_hash.as_str(),
            after.token_gen.as_str(),
            after.last_login
        ),
        ("h-3", "gen-2", Some(T0 + 5))
    );

    // Racing updates from the same seen hash: exactly one wins, and it is the one stored.
    let results = concurrently(10, |i| {
        let store = store.clone();
        let change = update("h-3", &format!("race-{i}"), Some(&format!("gen-{i}")), None);
        async move {
            store
                .update_password(user.id, change, &Effects::none())
                .await
                .unwrap()
        }
    })
    .await;
    assert_eq!(count_true(&results), 1, "{results:?}");
    let winner = results.iter().position(|won| *won).unwrap();
    let after = read(&store, user.id).await;
    assert_eq!(after.password_hash, format!("race-{winner}"));
    assert_eq!(after.token_gen, format!("gen-{winner}"));
}

fn counter_write(key: &CounterKey, n: u32, version: u64, expires_at: i64) -> CounterWrite {
    CounterWrite {
        key: key.clone(),
        counter: Counter {
            n,
            version,
            ..Counter::default()
        },
        expires_at,
        conditional: true,
    }
}

async fn login_lookup_reads_the_account_and_its_counters_in_order(store: Shared) {
    let now = now();
    let email = format!("lookup-{}@example.com", random_hex(4));
    let keys = [
        CounterKey::LoginAddressIp {
            email_norm: email.clone(),
            ip: "192.0.2.1".to_owned(),
        },
        CounterKey::LoginAddress {
            email_norm: email.clone(),
        },
        CounterKey::LoginIp {
            ip: "192.0.2.1".to_owned(),
            window: now - now % 600,
        },
    ];
    let (user, counters) = store.login_lookup(&email, &keys, now).await.unwrap();
    assert_eq!((user, counters), (None, vec![Counter::default(); 3]));

    let frank = create(&store, &email).await;
    assert!(store
        .swap_counters(&[counter_write(&keys[1], 7, 1, now + 60)], &Effects::none())
        .await
        .unwrap());
    let (user, counters) = store.login_lookup(&email, &keys, now).await.unwrap();
    assert_eq!(user, Some(frank));
    assert_eq!(counters[0], Counter::default());
    assert_eq!((counters[1].n, counters[1].version), (7, 1));
    assert_eq!(counters[2], Counter::default());
}

async fn twenty_concurrent_swaps_of_one_counter_version_let_exactly_one_win(store: Shared) {
    let now = now();
    let key = CounterKey::LoginAddress {
        email_norm: format!("race-{}@example.com", random_hex(4)),
    };
    let results = concurrently(20, |i| {
        let (store, key) = (store.clone(), key.clone());
        async move {
            store
                .swap_counters(
                    &[counter_write(&key, i as u32 + 1, 1, now + 60)],
                    &Effects::none(),
                )
                .await
                .unwrap()
        }
    })
    .await;
    assert_eq!(count_true(&results), 1, "{results:?}");
    let winner = results.iter().position(|won| *won).unwrap();
    let stored = store
        .counters(std::slice::from_ref(&key), now)
        .await
        .unwrap();
    assert_eq!((stored[0].n, stored[0].version), (winner as u32 + 1, 1));

    // A stale version loses; the next one wins; an unconditional write always lands.
    assert!(!store
        .swap_counters(&[counter_write(&key, 9, 1, now + 60)], &Effects::none())
        .await
        .unwrap());
    assert!(store
        .swap_counters(&[counter_write(&key, 9, 2, now + 60)], &Effects::none())
        .await
        .unwrap());
    let mut reset = counter_write(&key, 0, 40, now + 60);
    reset.conditional = false;
    assert!(store
        .swap_counters(&[reset], &Effects::none())
        .await
        .unwrap());
    let stored = store
        .counters(std::slice::from_ref(&key), now)
        .await
        .unwrap();
    assert_eq!((stored[0].n, stored[0].version), (0, 40));
}

async fn a_swap_of_several_counters_is_all_or_none(store: Shared) {
    let now = now();
    let ip = format!("198.51.100.{}", rand_byte());
    let one = CounterKey::SignUpIp {
        ip: ip.clone(),
        window: now - now % 3600,
    };
    let two = CounterKey::ResetIp {
        ip,
        window: now - now % 3600,
    };
    assert!(store
        .swap_counters(&[counter_write(&two, 1, 1, now + 60)], &Effects::none())
        .await
        .unwrap());
    // `two` is at version 1, not 0: neither is written.
    assert!(!store
        .swap_counters(
            &[
                counter_write(&one, 1, 1, now + 60),
                counter_write(&two, 1, 1, now + 60),
            ],
            &Effects::none()
        )
        .await
        .unwrap());
    let stored = store
        .counters(&[one.clone(), two.clone()], now)
        .await
        .unwrap();
    assert_eq!(stored[0], Counter::default());
    assert_eq!(stored[1].version, 1);
    store
        .delete_counters(&[one.clone(), two.clone()])
        .await
        .unwrap();
    let stored = store.counters(&[one, two], now).await.unwrap();
    assert_eq!(stored, vec![Counter::default(); 2]);
}

async fn claim_reset_mail_allows_one_per_window(store: Shared) {
    let email = "gina@example.com";
    assert!(store.claim_reset_mail(email, T0, 60).await.unwrap());
    assert!(!store.claim_reset_mail(email, T0, 60).await.unwrap());
    assert!(!store.claim_reset_mail(email, T0 + 59, 60).await.unwrap());
    assert!(store.claim_reset_mail(email, T0 + 60, 60).await.unwrap());
    assert!(!store.claim_reset_mail(email, T0 + 61, 60).await.unwrap());
    // Per address.
    assert!(store
        .claim_reset_mail("hank@example.com", T0 + 61, 60)
        .await
        .unwrap());
    // The reset rate and the login limits of an address are separate records.
    let address = CounterKey::LoginAddress {
        email_norm: email.to_owned(),
    };
    let (_, counters) = store.login_lookup(email, &[address], T0).await.unwrap();
    assert_eq!(counters, vec![Counter::default()]);

    let results = concurrently(10, |_| {
        let store = store.clone();
        async move {
            store
                .claim_reset_mail("burst@example.com", T0, 60)
                .await
                .unwrap()
        }
    })
    .await;
    assert_eq!(count_true(&results), 1, "{results:?}");
}

async fn insert_totp_device_returns_the_existing_device_to_a_second_caller(store: Shared) {
    let user = create(&store, "ivan@example.com").await;
    let first = device("totp-first");
    let inserted = store
        .insert_totp_device(user.id, first.clone())
        .await
        .unwrap();
    assert!(matches!(inserted, TotpInsert::Inserted), "{inserted:?}");
    match store
        .insert_totp_device(user.id, device("totp-second"))
        .await
        .unwrap()
    {
        TotpInsert::Existing(existing) => assert_eq!(existing, first),
        other => panic!("expected the existing device, got {other:?}"),
    }
    let stored = read(&store, user.id).await;
    assert_eq!(stored.totp, Some(first));
    assert_eq!(stored.confirmed_totp(), None, "a new device is unconfirmed");
    assert_eq!(
        User {
            totp: None,
            ..stored
        },
        user,
        "nothing else changed"
    );

    // Racing inserts: one wins, every other caller is handed the winner's device.
    let racer = create(&store, "judy@example.com").await;
    let outcomes = concurrently(8, |i| {
        let store = store.clone();
        async move {
            store
                .insert_totp_device(racer.id, device(&format!("totp-{i}")))
                .await
                .unwrap()
        }
    })
    .await;
    let stored = read(&store, racer.id).await.totp.expect("a device");
    let mut inserted = 0;
    for outcome in outcomes {
        match outcome {
            TotpInsert::Inserted => inserted += 1,
            TotpInsert::Existing(existing) => assert_eq!(existing, stored),
            TotpInsert::UserGone => panic!("the user exists"),
        }
    }
    assert_eq!(inserted, 1);
}

async fn accept_totp_refuses_a_replayed_or_earlier_step_and_a_stale_failure_count(store: Shared) {
    let user = create(&store, "kim@example.com").await;
    let original = device("totp-1");
    store
        .insert_totp_device(user.id, original.clone())
        .await
        .unwrap();

    assert!(store
        .accept_totp(user.id, accept("totp-1", 0, 100, 1), &Effects::none())
        .await
        .unwrap());
    let device_now = read(&store, user.id).await.totp.unwrap();
    assert_eq!(
        device_now,
        TotpDevice {
            confirmed: true,
            last_step: 100,
            drift: 1,
            ..original.clone()
        }
    );

    // Replays and earlier steps, and another device id, are refused.
    for refused in [
        accept("totp-1", 0, 100, 0),
        accept("totp-1", 0, 99, 0),
        accept("totp-other", 0, 101, 0),
    ] {
        assert!(!store
            .accept_totp(user.id, refused, &Effects::none())
            .await
            .unwrap());
    }
    assert_eq!(read(&store, user.id).await.totp.unwrap(), device_now);

    // A failure is counted once per seen count.
    assert!(store
        .record_totp_failure(user.id, "totp-1", 0, T0 + 5)
        .await
        .unwrap());
    assert!(!store
        .record_totp_failure(user.id, "totp-1", 0, T0 + 6)
        .await
        .unwrap());
    assert!(!store
        .record_totp_failure(user.id, "totp-other", 1, T0 + 6)
        .await
        .unwrap());
    assert_eq!(
        read(&store, user.id).await.totp.unwrap().failures,
        Failures {
            count: 1,
            last_at: T0 + 5
        }
    );

    // Accepting against a stale failure count is refused; against the current one it resets it.
    assert!(!store
        .accept_totp(user.id, accept("totp-1", 0, 101, 0), &Effects::none())
        .await
        .unwrap());
    assert!(store
        .accept_totp(user.id, accept("totp-1", 1, 101, -1), &Effects::none())
        .await
        .unwrap());
    let device_now = read(&store, user.id).await.totp.unwrap();
    assert_eq!(
        (device_now.last_step, device_now.drift, device_now.failures),
        (101, -1, Failures::default())
    );

    // The same code raced: one acceptance.
    let results = concurrently(10, |_| {
        let store = store.clone();
        async move {
            store
                .accept_totp(user.id, accept("totp-1", 0, 102, 0), &Effects::none())
                .await
                .unwrap()
        }
    })
    .await;
    assert_eq!(count_true(&results), 1, "{results:?}");
}

async fn ten_concurrent_consumes_of_one_code_let_exactly_one_win(store: Shared) {
    let codes = hashes(6);
    let user = two_factor_user(&store, "leo@example.com", &codes).await;
    let code = codes[2].clone();
    let results = concurrently(10, |_| {
        let (store, code) = (store.clone(), code.clone());
        async move {
            store
                .consume_static_code(user.id, &code, 0, &Effects::none())
                .await
                .unwrap()
        }
    })
    .await;
    assert_eq!(count_true(&results), 1, "{results:?}");
    let left = read(&store, user.id).await.static_codes.unwrap().hashes;
    let expected: Vec<String> = codes.into_iter().filter(|h| *h != code).collect();
    assert_eq!(sorted(left), sorted(expected));
}

async fn consuming_a_code_resets_code_and_totp_failures(store: Shared) {
    let codes = hashes(3);
    let user = two_factor_user(&store, "mia@example.com", &codes).await;
    assert!(store
        .record_totp_failure(user.id, "totp-1", 0, T0 + 1)
        .await
        .unwrap());
    assert!(store
        .record_static_failure(user.id, 0, T0 + 7)
        .await
        .unwrap());
    assert!(!store
        .record_static_failure(user.id, 0, T0 + 8)
        .await
        .unwrap());
    let before = read(&store, user.id).await;
    assert_eq!(
        before.static_codes.as_ref().unwrap().failures,
        Failures {
            count: 1,
            last_at: T0 + 7
        }
    );

    // A stale failure count, an unknown code: refused, nothing changes.
    assert!(!store
        .consume_static_code(user.id, &codes[0], 0, &Effects::none())
        .await
        .unwrap());
    assert!(!store
        .consume_static_code(user.id, &random_hex(32), 1, &Effects::none())
        .await
        .unwrap());
    assert_eq!(read(&store, user.id).await, before);

    assert!(store
        .consume_static_code(user.id, &codes[0], 1, &Effects::none())
        .await
        .unwrap());
    let after = read(&store, user.id).await;
    let static_codes = after.static_codes.clone().unwrap();
    assert_eq!(static_codes.failures, Failures::default());
    assert_eq!(after.totp.as_ref().unwrap().failures, Failures::default());
    assert_eq!(sorted(static_codes.hashes), sorted(codes[1..].to_vec()));
    assert!(
        !store
            .consume_static_code(user.id, &codes[0], 0, &Effects::none())
            .await
            .unwrap(),
        "a code is single use"
    );

    // Using up every code leaves the device, empty.
    for code in &codes[1..] {
        assert!(store
            .consume_static_code(user.id, code, 0, &Effects::none())
            .await
            .unwrap());
    }
    let emptied = read(&store, user.id).await.static_codes.unwrap();
    assert_eq!(
        emptied,
        StaticCodes {
            device_id: "static-1".to_owned(),
            hashes: Vec::new(),
            failures: Failures::default(),
        }
    );
    assert!(!store
        .consume_static_code(user.id, &codes[1], 0, &Effects::none())
        .await
        .unwrap());
    assert!(store
        .record_static_failure(user.id, 0, T0 + 9)
        .await
        .unwrap());
}

async fn emergency_codes_need_the_confirmed_totp_device(store: Shared) {
    let user = create(&store, "ned@example.com").await;
    let codes = |hashes: Vec<String>, count: u32| StaticCodes {
        device_id: "static-1".to_owned(),
        hashes,
        failures: Failures { count, last_at: 0 },
    };
    assert!(!store
        .replace_static_codes(user.id, "totp-1", codes(hashes(6), 0), &Effects::none())
        .await
        .unwrap());
    assert!(!store.record_static_failure(user.id, 0, T0).await.unwrap());
    store
        .insert_totp_device(user.id, device("totp-1"))
        .await
        .unwrap();
    assert!(
        !store
            .replace_static_codes(user.id, "totp-1", codes(hashes(6), 0), &Effects::none())
            .await
            .unwrap(),
        "the device is not confirmed yet"
    );
    assert!(store
        .accept_totp(user.id, accept("totp-1", 0, 5, 0), &Effects::none())
        .await
        .unwrap());
    assert!(!store
        .replace_static_codes(user.id, "totp-other", codes(hashes(6), 0), &Effects::none())
        .await
        .unwrap());

    let first = hashes(6);
    assert!(store
        .replace_static_codes(user.id, "totp-1", codes(first.clone(), 0), &Effects::none())
        .await
        .unwrap());
    let stored = read(&store, user.id).await.static_codes.unwrap();
    assert_eq!(sorted(stored.hashes), sorted(first));

    // Replacing replaces everything, failures included; an empty set of codes is kept as such.
    let second = hashes(6);
    assert!(store
        .replace_static_codes(
            user.id,
            "totp-1",
            codes(second.clone(), 2),
            &Effects::none()
        )
        .await
        .unwrap());
    let stored = read(&store, user.id).await.static_codes.unwrap();
    assert_eq!(sorted(stored.hashes), sorted(second));
    assert_eq!(stored.failures.count, 2);
    assert!(store
        .replace_static_codes(user.id, "totp-1", codes(Vec::new(), 0), &Effects::none())
        .await
        .unwrap());
    assert_eq!(
        read(&store, user.id).await.static_codes,
        Some(codes(Vec::new(), 0))
    );
}

async fn remove_two_factor_removes_device_and_codes_and_rotates_the_generation(store: Shared) {
    let user = two_factor_user(&store, "olga@example.com", &hashes(6)).await;
    assert!(user.totp.is_some() && user.static_codes.is_some());
    assert!(store
        .remove_two_factor(user.id, "gen-new", &Effects::none())
        .await
        .unwrap());
    assert_eq!(
        read(&store, user.id).await,
        User {
            token_gen: "gen-new".to_owned(),
            totp: None,
            static_codes: None,
            ..user.clone()
        }
    );
    // Without a device it still rotates the generation.
    assert!(store
        .remove_two_factor(user.id, "gen-3", &Effects::none())
        .await
        .unwrap());
    assert_eq!(read(&store, user.id).await.token_gen, "gen-3");
    // And a new device can be set up afterwards.
    let inserted = store
        .insert_totp_device(user.id, device("totp-2"))
        .await
        .unwrap();
    assert!(matches!(inserted, TotpInsert::Inserted), "{inserted:?}");
}

async fn operations_on_a_missing_user_answer_false_none_or_user_gone(store: Shared) {
    let deleted = create(&store, "pat@example.com").await;
    assert!(store
        .delete_user(&deleted, &deleted.token_gen, &Effects::none())
        .await
        .unwrap());
    let never = User {
        id: UserId(987_654),
        email: "nobody@example.com".to_owned(),
        email_norm: "nobody@example.com".to_owned(),
        ..deleted.clone()
    };
    for user in [deleted, never] {
        let id = user.id;
        assert_eq!(store.user(id).await.unwrap(), None);
        assert_eq!(store.user_by_email(&user.email_norm).await.unwrap(), None);
        assert!(!store
            .rotate_token_gen(id, "gen", &Effects::none())
            .await
            .unwrap());
        assert!(!store
            .delete_user(&user, &user.token_gen, &Effects::none())
            .await
            .unwrap());
        let update = PasswordUpdate {
            expected_hash: user.password_hash.clone(),
            new_hash: "h".to_owned(),
            new_token_gen: Some("gen".to_owned()),
            last_login: Some(T0),
            clear_totp_failures: true,
            reset_at: None,
            recovery: None,
            sessions: None,
        };
        assert!(!store
            .update_password(id, update, &Effects::none())
            .await
            .unwrap());
        let inserted = store
            .insert_totp_device(id, device("totp-1"))
            .await
            .unwrap();
        assert!(matches!(inserted, TotpInsert::UserGone), "{inserted:?}");
        assert!(!store
            .accept_totp(id, accept("totp-1", 0, 10, 0), &Effects::none())
            .await
            .unwrap());
        assert!(!store
            .record_totp_failure(id, "totp-1", 0, T0)
            .await
            .unwrap());
        let codes = StaticCodes {
            device_id: "static-1".to_owned(),
            hashes: hashes(2),
            failures: Failures::default(),
        };
        assert!(!store
            .replace_static_codes(id, "totp-1", codes, &Effects::none())
            .await
            .unwrap());
        assert!(!store
            .consume_static_code(id, "h", 0, &Effects::none())
            .await
            .unwrap());
        assert!(!store.record_static_failure(id, 0, T0).await.unwrap());
        assert!(!store
            .remove_two_factor(id, "gen", &Effects::none())
            .await
            .unwrap());
        // None of these brought the user back.
        assert_eq!(store.user(id).await.unwrap(), None);
    }
}

// ---------------------------------------------------------------------------------------------
// Expiry. DynamoDB deletes TTL'd items late (moto never), so each adapter itself must read an
// expired throttle record as absent and restart its count.

async fn an_expired_counter_reads_as_default_but_keeps_its_version(store: Shared) {
    let now = now();
    let key = CounterKey::PasswordProof {
        user: UserId(900_000 + u64::from(rand_byte())),
    };
    assert!(store
        .swap_counters(&[counter_write(&key, 3, 1, now - 1)], &Effects::none())
        .await
        .unwrap());
    let stored = store
        .counters(std::slice::from_ref(&key), now)
        .await
        .unwrap();
    assert_eq!(
        stored[0],
        Counter {
            version: 1,
            ..Counter::default()
        },
        "expired, though still stored"
    );
    // It is replaced by naming the version it still has.
    assert!(!store
        .swap_counters(&[counter_write(&key, 1, 1, now + 60)], &Effects::none())
        .await
        .unwrap());
    assert!(store
        .swap_counters(&[counter_write(&key, 1, 2, now + 60)], &Effects::none())
        .await
        .unwrap());
}

// ---------------------------------------------------------------------------------------------
// Security events, the mail queue, recovery and activation.

fn trail_event(user: UserId, at: i64) -> TrailEvent {
    TrailEvent {
        user,
        event: SecurityEvent::PasswordChanged,
        at,
        ip: "192.0.2.1".to_owned(),
        user_agent: "test".to_owned(),
        id: random_hex(8),
        count: None,
    }
}

fn queued(user: UserId, to: &str) -> QueueItem {
    QueueItem {
        id: format!("{T0:012}#{}", random_hex(8)),
        user,
        to: to.to_owned(),
        kind: QueueKind::PasswordReset,
    }
}

async fn a_change_and_its_effects_are_written_together_or_not_at_all(store: Shared) {
    let user = create(&store, "effects@example.com").await;
    let effects = Effects {
        events: vec![trail_event(user.id, T0)],
        mail: vec![queued(user.id, &user.email)],
    };
    let update = |expected: &str| PasswordUpdate {
        expected_hash: expected.to_owned(),
        new_hash: "new-hash".to_owned(),
        new_token_gen: None,
        last_login: None,
        clear_totp_failures: false,
        reset_at: None,
        recovery: None,
        sessions: None,
    };
    // The change's condition fails: neither it nor its event nor its mail is written.
    assert!(!store
        .update_password(user.id, update("not-the-hash"), &effects)
        .await
        .unwrap());
    assert!(store.trail(user.id, "~", 10).await.unwrap().is_empty());
    assert!(store.queued(10).await.unwrap().is_empty());
    // It holds: all three are.
    assert!(store
        .update_password(user.id, update(&user.password_hash), &effects)
        .await
        .unwrap());
    assert_eq!(read(&store, user.id).await.password_hash, "new-hash");
    assert_eq!(store.trail(user.id, "~", 10).await.unwrap(), effects.events);
    assert_eq!(
        store.queued(10).await.unwrap(),
        vec![effects.mail[0].id.clone()]
    );
    // Deleting the user takes its mail along; the trail goes only when purged.
    let gone = Effects {
        events: Vec::new(),
        mail: vec![queued(user.id, &user.email)],
    };
    let user = read(&store, user.id).await;
    assert!(store
        .delete_user(&user, &user.token_gen, &gone)
        .await
        .unwrap());
    assert_eq!(store.queued(10).await.unwrap().len(), 2);
    store.purge_user(user.id).await.unwrap();
    assert!(store.trail(user.id, "~", 10).await.unwrap().is_empty());
}

async fn a_queued_item_is_claimed_by_one_delivery_at_a_time_and_removed_once(store: Shared) {
    let item = queued(UserId(7), "q@example.com");
    store
        .record(&Effects {
            events: Vec::new(),
            mail: vec![item.clone()],
        })
        .await
        .unwrap();
    let claims = concurrently(10, |_| {
        let (store, id) = (store.clone(), item.id.clone());
        async move { store.claim_queued(&id, T0, T0 + 60).await.unwrap() }
    })
    .await;
    let won = claims
        .iter()
        .filter(|c| matches!(c, Claim::Claimed(i) if *i == item))
        .count();
    assert_eq!(won, 1, "{claims:?}");
    assert!(claims
        .iter()
        .all(|c| matches!(c, Claim::Claimed(_) | Claim::Busy)));
    // A claim that has expired (a crashed delivery) can be taken again.
    assert!(matches!(
        store
            .claim_queued(&item.id, T0 + 61, T0 + 120)
            .await
            .unwrap(),
        Claim::Claimed(_)
    ));
    store.remove_queued(&item.id).await.unwrap();
    assert_eq!(
        store
            .claim_queued(&item.id, T0 + 500, T0 + 560)
            .await
            .unwrap(),
        Claim::Gone
    );
}

async fn recovery_and_activation_writes_are_conditional(store: Shared) {
    let user = two_factor_user(&store, "recover@example.com", &hashes(2)).await;
    let started = Recovery {
        nonce: "n1".to_owned(),
        until: Some(T0 + 100),
    };
    let stale = Recovery {
        nonce: "other".to_owned(),
        until: None,
    };
    assert!(!store
        .set_recovery(user.id, &stale, started.clone(), &Effects::none())
        .await
        .unwrap());
    assert!(store
        .set_recovery(user.id, &user.recovery, started.clone(), &Effects::none())
        .await
        .unwrap());
    // The same link cannot start it twice: the state moved on.
    assert!(!store
        .set_recovery(user.id, &user.recovery, started.clone(), &Effects::none())
        .await
        .unwrap());
    let done = Recovery {
        nonce: "n2".to_owned(),
        until: None,
    };
    assert!(!store
        .complete_recovery(user.id, T0 + 99, "gen-r", done.clone(), &Effects::none())
        .await
        .unwrap());
    assert!(store
        .complete_recovery(user.id, T0 + 100, "gen-r", done.clone(), &Effects::none())
        .await
        .unwrap());
    let after = read(&store, user.id).await;
    assert_eq!(
        (after.totp, after.static_codes, after.token_gen.as_str()),
        (None, None, "gen-r")
    );
    assert_eq!(after.recovery, done);

    let mut pending = new_user("pending@example.com");
    pending.pending = true;
    let Created::User(pending) = store.create_user(pending, &Effects::none()).await.unwrap() else {
        panic!("taken")
    };
    assert!(read(&store, pending.id).await.pending);
    assert!(store.activate(pending.id, &Effects::none()).await.unwrap());
    assert!(!store.activate(pending.id, &Effects::none()).await.unwrap());
    assert!(!read(&store, pending.id).await.pending);
}

// ---------------------------------------------------------------------------------------------
// Timeouts: a stalled DynamoDB connection (accepted, never answered) fails within the SDK's
// operation timeout, as a 503-bound error, instead of hanging a request or a start-up.

#[tokio::test]
async fn a_stalled_dynamodb_connection_fails_within_the_operation_timeout() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().unwrap();
    // Accept and hold every connection without a byte of answer.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    let store = store_at(address, "t").await;
    let started = std::time::Instant::now();
    let read = store.user(UserId(1)).await;
    assert!(
        matches!(read, Err(auth::store::StoreError::Unavailable(_))),
        "{read:?}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    // A start-up warm-up against it returns (logged), it does not block.
    let started = std::time::Instant::now();
    assert!(!store.warm_up().await);
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

/// A TCP proxy to `target` that holds its first connection without a byte of answer and pipes
/// every later one through: one connection that stalls. Answers its address and how many
/// connections it accepted.
async fn stalling_once(target: std::net::SocketAddr) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut client, _)) = listener.accept().await {
            if count.fetch_add(1, Ordering::SeqCst) == 0 {
                held.push(client);
                continue;
            }
            tokio::spawn(async move {
                if let Ok(mut upstream) = tokio::net::TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }
            });
        }
    });
    (address, accepted)
}

/// The emulator's address, from `AWS_ENDPOINT_URL` (set by ./scripts/test).
fn emulator_address() -> std::net::SocketAddr {
    let url = std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL (./scripts/test sets it)");
    let host = url.trim_start_matches("http://").trim_end_matches('/');
    host.parse().unwrap_or_else(|e| panic!("{url}: {e}"))
}

/// A store over `endpoint` with the production timeouts, whatever the test environment sets
/// for the slow emulator, on the table `table`.
async fn store_at(endpoint: std::net::SocketAddr, table: &str) -> DynamoStore {
    let sdk = auth::wiring::aws::sdk_config().expect("AWS configuration");
    let config = aws_sdk_dynamodb::config::Builder::from(&sdk)
        .endpoint_url(format!("http://{endpoint}"))
        .timeout_config(
            aws_sdk_dynamodb::config::timeout::TimeoutConfig::builder()
                .connect_timeout(std::time::Duration::from_millis(500))
                .operation_attempt_timeout(std::time::Duration::from_millis(700))
                .operation_timeout(std::time::Duration::from_millis(2500))
                .build(),
        )
        .build();
    DynamoStore::with_client(aws_sdk_dynamodb::Client::from_conf(config), table.into())
}

#[tokio::test]
async fn a_connection_that_stalls_once_is_retried_within_the_operation_timeout() {
    let table = format!("stall-{}", random_hex(6));
    let direct = store_at(emulator_address(), &table).await;
    direct.ensure_table().await.expect("create the test table");

    // A read: its first attempt stalls, is abandoned after 700 ms, and the retry on a fresh
    // connection answers, well inside the 2.5 s operation timeout.
    let (proxy, accepted) = stalling_once(emulator_address()).await;
    let store = store_at(proxy, &table).await;
    let started = std::time::Instant::now();
    let read = store.user(UserId(1)).await;
    let took = started.elapsed();
    assert!(matches!(read, Ok(None)), "{read:?}");
    assert!(
        accepted.load(Ordering::SeqCst) >= 2,
        "the retry came on a new connection"
    );
    assert!(
        took >= std::time::Duration::from_millis(700),
        "the first attempt stalled: {took:?}"
    );
    assert!(
        took < std::time::Duration::from_millis(2500),
        "took {took:?}"
    );

    // The start-up warm-up read, stalled the same way, is retried and answers.
    let (proxy, accepted) = stalling_once(emulator_address()).await;
    let store = store_at(proxy, &table).await;
    let started = std::time::Instant::now();
    assert!(
        store.warm_up().await,
        "the warm-up read answered after its retry"
    );
    assert!(accepted.load(Ordering::SeqCst) >= 2);
    assert!(started.elapsed() < std::time::Duration::from_millis(2500));
}
