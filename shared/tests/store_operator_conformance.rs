//! Conformance of the operator (accounts-admin) operations of the `Store` port: every scenario
//! runs against both adapters, as in `store_conformance.rs` (kept apart so the two suites evolve
//! independently). The DynamoDB half never skips.

use std::sync::Arc;

use auth::domain::records::{Failures, SealedSecret, TotpDevice, User, UserId};
use auth::store::dynamo::DynamoStore;
use auth::store::{Created, Imported, Store};

type Shared = Arc<dyn Store>;

fn random_hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn dynamodb_store() -> Shared {
    assert!(
        std::env::var_os("AWS_ENDPOINT_URL").is_some(),
        "AWS_ENDPOINT_URL is not set: run ./scripts/test (these tests never skip)"
    );
    let config = auth::wiring::aws::sdk_config().expect("AWS configuration");
    let store = DynamoStore::new(&config, format!("op-{}", random_hex(6)));
    store.ensure_table().await.expect("create the test table");
    Arc::new(store)
}

macro_rules! conformance {
    ($($scenario:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    let dir = super::TempDir(std::env::temp_dir()
                        .join(format!("op-conformance-{}", super::random_hex(8))));
                    let store = auth::store::embedded::EmbeddedStore::open(&dir.0.join("a.redb"))
                        .expect("open");
                    super::$scenario(std::sync::Arc::new(store)).await;
                }
            )*
        }
        mod dynamodb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(super::dynamodb_store().await).await;
                }
            )*
        }
    };
}

conformance!(
    import_keeps_ids_moves_the_counter_and_is_idempotent,
    disable_sets_and_lifts_and_may_rotate_the_generation,
    users_page_visits_every_user_once,
    reseal_is_conditional_on_the_seen_ciphertext,
);

fn user(id: u64, email: &str) -> User {
    User {
        id: UserId(id),
        email: email.to_owned(),
        email_norm: email.to_ascii_lowercase(),
        password_hash: "pbkdf2_sha256$1$salt$hash".to_owned(),
        token_gen: format!("gen-{id}"),
        last_login: Some(1_700_000_000),
        created_at: 1_600_000_000,
        totp: None,
        static_codes: None,
        disabled: id.is_multiple_of(2),
        pending: false,
        recovery: Default::default(),
        reset_at: None,
        sessions: Default::default(),
    }
}

fn new_user(email: &str) -> auth::domain::records::NewUser {
    auth::domain::records::NewUser {
        email: email.to_owned(),
        email_norm: email.to_owned(),
        password_hash: "h".to_owned(),
        token_gen: "g".to_owned(),
        created_at: 0,
        pending: false,
    }
}

async fn import_keeps_ids_moves_the_counter_and_is_idempotent(store: Shared) {
    let users: Vec<User> = (1..=120)
        .map(|i| user(i * 3, &format!("User{i}@example.com")))
        .chain([
            user(1000, "user1@EXAMPLE.com"),
            user(3, "dup-id@example.com"),
        ])
        .collect();
    let outcomes = store.import_users(users.clone()).await.unwrap();
    assert!(outcomes[..120].iter().all(|o| *o == Imported::Inserted));
    assert_eq!(
        outcomes[120],
        Imported::EmailTaken,
        "case-insensitive duplicate"
    );
    assert_eq!(outcomes[121], Imported::IdTaken);
    for u in &users[..120] {
        assert_eq!(store.user(u.id).await.unwrap().as_ref(), Some(u));
    }
    assert_eq!(store.user(UserId(1000)).await.unwrap(), None);
    // A second run changes nothing.
    let again = store.import_users(users[..120].to_vec()).await.unwrap();
    assert!(again.iter().all(|o| *o == Imported::IdTaken));
    // New sign-ups get ids above the highest imported one (1000 was refused, but its id was
    // reserved before the writes: ids are never handed out twice).
    let Created::User(fresh) = store
        .create_user(new_user("new@example.com"), &auth::store::Effects::none())
        .await
        .unwrap()
    else {
        panic!("created")
    };
    assert!(fresh.id.0 > 360, "{:?}", fresh.id);
    // An import below the counter does not move it back.
    store
        .import_users(vec![user(2, "low@example.com")])
        .await
        .unwrap();
    let Created::User(next) = store
        .create_user(new_user("next@example.com"), &auth::store::Effects::none())
        .await
        .unwrap()
    else {
        panic!("created")
    };
    assert!(next.id > fresh.id);
}

async fn disable_sets_and_lifts_and_may_rotate_the_generation(store: Shared) {
    store
        .import_users(vec![user(7, "d@example.com")])
        .await
        .unwrap();
    assert!(store
        .set_disabled(UserId(7), true, Some("new-gen"))
        .await
        .unwrap());
    let read = store.user(UserId(7)).await.unwrap().unwrap();
    assert!(read.disabled);
    assert_eq!(read.token_gen, "new-gen");
    assert!(store.set_disabled(UserId(7), false, None).await.unwrap());
    let read = store.user(UserId(7)).await.unwrap().unwrap();
    assert!(!read.disabled);
    assert_eq!(read.token_gen, "new-gen");
    assert!(!store.set_disabled(UserId(99), true, None).await.unwrap());
}

async fn users_page_visits_every_user_once(store: Shared) {
    let users: Vec<User> = (1..=57)
        .map(|i| user(i, &format!("p{i}@example.com")))
        .collect();
    store.import_users(users).await.unwrap();
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.users_page(cursor, 10).await.unwrap();
        seen.extend(page.users.iter().map(|u| u.id.0));
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    seen.sort();
    assert_eq!(seen, (1..=57).collect::<Vec<_>>());
}

async fn reseal_is_conditional_on_the_seen_ciphertext(store: Shared) {
    let mut u = user(5, "r@example.com");
    let old = SealedSecret {
        key_version: 1,
        sealed: vec![1; 40],
    };
    u.totp = Some(TotpDevice {
        device_id: "dev".to_owned(),
        secret: old.clone(),
        confirmed: true,
        last_step: 10,
        drift: 0,
        failures: Failures::default(),
    });
    store.import_users(vec![u.clone()]).await.unwrap();
    let new = SealedSecret {
        key_version: 2,
        sealed: vec![2; 40],
    };
    assert!(!store
        .reseal_totp_secret(u.id, "other", &old, new.clone())
        .await
        .unwrap());
    assert!(store
        .reseal_totp_secret(u.id, "dev", &old, new.clone())
        .await
        .unwrap());
    assert!(
        !store
            .reseal_totp_secret(u.id, "dev", &old, new.clone())
            .await
            .unwrap(),
        "a second writer saw the old ciphertext"
    );
    let read = store.user(u.id).await.unwrap().unwrap();
    assert_eq!(read.totp.unwrap().secret, new);
}
