//! The operator CLI against both stores, driven in-process over the black-box harness's app:
//! the CLI writes through the same store the HTTP server reads, and every effect is checked
//! over HTTP (SPEC §12; the oracle is `../shared/data/django-dump/truth.json`).

use std::path::PathBuf;

use accounts_admin::{run, Cli};
use api_tests::{base32_decode, Backend, TestServer, STRONG_PASSWORD};
use auth::clock::Clock;
use auth::domain::keys::{Secrets, VersionedKey};
use auth::domain::records::UserId;
use auth::service::Principal;
use auth::App;
use clap::Parser;
use secrecy::{SecretBox, SecretString};
use serde_json::{json, Value};

fn dump_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/django-dump")
}

fn truth() -> Vec<Value> {
    let text = std::fs::read_to_string(dump_dir().join("truth.json")).expect("truth.json");
    let truth: Value = serde_json::from_str(&text).unwrap();
    truth["users"].as_array().unwrap().clone()
}

fn user_of<'a>(users: &'a [Value], kind: &str) -> &'a Value {
    users.iter().find(|u| u["kind"] == kind).unwrap()
}

/// Runs `accounts-admin <args>` on `app`: its output, or its error.
async fn admin(app: &App, args: &[&str]) -> Result<String, String> {
    let cli = Cli::try_parse_from(std::iter::once("accounts-admin").chain(args.iter().copied()))
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let result = run(app, cli, &mut out).await;
    let out = String::from_utf8(out).unwrap();
    result
        .map(|()| out.clone())
        .map_err(|e| format!("{e}\n{out}"))
}

async fn import_dump(app: &App) -> String {
    let path = dump_dir().join("dump.json");
    admin(app, &["import-django", path.to_str().unwrap()])
        .await
        .expect("import")
}

async fn snapshot(server: &TestServer, ids: &[u64]) -> Vec<Option<auth::domain::records::User>> {
    let mut users = Vec::new();
    for id in ids {
        users.push(server.app.service.store.user(UserId(*id)).await.unwrap());
    }
    users
}

async fn django_import_keeps_every_account_working(backend: Backend) {
    let server = TestServer::start_on(backend).await;
    let users = truth();
    // The dump's last accepted TOTP step must be in the past.
    let dump_last_t = 59_866_074i64;
    let wanted = (dump_last_t + 2) * 30;
    if server.clock.now() < wanted {
        server.clock.advance(wanted - server.clock.now());
    }

    // A dry run writes nothing.
    let path = dump_dir().join("dump.json");
    let dry = admin(
        &server.app,
        &["import-django", "--dry-run", path.to_str().unwrap()],
    )
    .await
    .unwrap();
    assert!(dry.contains("imported: 4"), "{dry}");
    assert_eq!(snapshot(&server, &[1, 2, 3, 4]).await, vec![None; 4]);

    let report = import_dump(&server.app).await;
    assert!(
        report.contains("imported: 4 (disabled: 1, with TOTP device: 2, with emergency codes: 1)"),
        "{report}"
    );
    assert!(report.contains("refused: 0"), "{report}");
    // Never a secret in the report.
    for user in &users {
        assert!(!report.contains(user["password"].as_str().unwrap()));
        if let Some(codes) = user["unused_codes"].as_array() {
            for code in codes {
                assert!(!report.contains(code.as_str().unwrap()), "{report}");
            }
        }
        if let Some(secret) = user["totp_secret"].as_str() {
            assert!(!report.contains(secret));
        }
    }

    // A second import changes nothing.
    let before = snapshot(&server, &[1, 2, 3, 4]).await;
    let again = import_dump(&server.app).await;
    assert!(
        again.contains("imported: 0") && again.contains("skipped: 4"),
        "{again}"
    );
    assert_eq!(snapshot(&server, &[1, 2, 3, 4]).await, before);

    // Every password logs in; the inactive account cannot.
    let plain = user_of(&users, "plain");
    let token = server
        .login(
            plain["email"].as_str().unwrap(),
            plain["password"].as_str().unwrap(),
        )
        .await
        .token();
    server
        .view(&token)
        .await
        .assert(200, json!({"id": 1, "email": plain["email"]}));

    let inactive = user_of(&users, "inactive");
    server
        .login(
            inactive["email"].as_str().unwrap(),
            inactive["password"].as_str().unwrap(),
        )
        .await
        .assert(
            400,
            json!({"non_field_errors": ["User account is disabled."]}),
        );
    // A wrong password learns nothing about the state.
    server
        .login(inactive["email"].as_str().unwrap(), "not-the-password-1")
        .await
        .assert(
            400,
            json!({"non_field_errors": ["Unable to log in with provided credentials."]}),
        );

    // The unconfirmed device does not gate.
    let unconfirmed = user_of(&users, "unconfirmed");
    let token = server
        .login(
            unconfirmed["email"].as_str().unwrap(),
            unconfirmed["password"].as_str().unwrap(),
        )
        .await
        .token();
    server.view(&token).await.assert_status(200);

    // The TOTP account is gated; its secret's codes verify; codes work once; the used one not.
    let totp_user = user_of(&users, "totp");
    let (email, password) = (
        totp_user["email"].as_str().unwrap(),
        totp_user["password"].as_str().unwrap(),
    );
    let secret = base32_decode(totp_user["totp_secret"].as_str().unwrap());
    let token = server.login(email, password).await.token();
    server.view(&token).await.assert_status(403);
    let verified = server.totp_login(&token, &server.code_now(&secret)).await;
    verified.assert_status(201);
    server.view(&verified.token()).await.assert_status(200);

    let used = totp_user["used_code"].as_str().unwrap();
    server.static_login(&token, used).await.assert_status(400);
    server.clock.advance(5); // past the one-failure throttle
    for code in totp_user["unused_codes"].as_array().unwrap() {
        let code = code.as_str().unwrap();
        let answer = server.static_login(&token, code).await;
        answer.assert_status(201);
        server.view(&answer.token()).await.assert_status(200);
        server.static_login(&token, code).await.assert_status(400);
        server.clock.advance(5);
    }

    // New sign-ups get ids above the imported ones.
    let created = server.create_user("new@example.com", STRONG_PASSWORD).await;
    created.assert_status(201);
    assert!(
        created.json()["id"].as_u64().unwrap() > 4,
        "{:?}",
        created.json()
    );
}

#[tokio::test]
async fn django_import_embedded() {
    django_import_keeps_every_account_working(Backend::Embedded).await;
}

#[tokio::test]
async fn django_import_dynamodb() {
    django_import_keeps_every_account_working(Backend::DynamoDb).await;
}

/// A dump with refusals: bad address, duplicate address (case-insensitively), unknown hash.
async fn import_refuses_with_reasons(backend: Backend) {
    let server = TestServer::start_on(backend).await;
    let hash =
        "pbkdf2_sha256$600000$65FLHEg8cuBerzro0fTmlT$Z122n03/V1MB7VeXfZoHlZQ0WfeunfqYnHfyOto8C8Q=";
    let user = |pk: u64, email: &str, password: &str| {
        json!({"model": "accounts.user", "pk": pk, "fields": {
            "password": password, "last_login": "2024-01-02T03:04:05Z", "email": email,
            "is_active": true, "date_joined": "2024-01-01T00:00:00Z"}})
    };
    let dump = json!([
        user(10, "ok@example.com", hash),
        user(11, "not an address", hash),
        user(12, "OK@example.com", hash),
        user(13, "md5@example.com", "md5$abc$def"),
        {"model": "otp_static.statictoken", "pk": 1, "fields": {"device": 99, "token": "abcdefgh"}},
    ]);
    let dir = std::env::temp_dir().join(format!("dump-{}", api_tests::random_hex(6)));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("dump.json");
    std::fs::write(&path, dump.to_string()).unwrap();
    let report = admin(&server.app, &["import-django", path.to_str().unwrap()])
        .await
        .unwrap();
    assert!(report.contains("imported: 1 "), "{report}");
    assert!(report.contains("refused: 3"), "{report}");
    assert!(report.contains("1 bad email address (ids: 11)"), "{report}");
    assert!(
        report
            .contains("1 duplicate address (another account has it, case-insensitively) (ids: 12)"),
        "{report}"
    );
    assert!(
        report.contains("1 unknown password hash scheme (not pbkdf2_sha256) (ids: 13)"),
        "{report}"
    );
    assert!(
        report.contains("emergency code of an unknown device"),
        "{report}"
    );
    assert!(!report.contains("abcdefgh"), "{report}");
    let imported = server
        .app
        .service
        .store
        .user(UserId(10))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(imported.last_login, Some(1_704_164_645));
    assert_eq!(imported.created_at, 1_704_067_200);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn import_refusals_embedded() {
    import_refuses_with_reasons(Backend::Embedded).await;
}

#[tokio::test]
async fn import_refusals_dynamodb() {
    import_refuses_with_reasons(Backend::DynamoDb).await;
}

async fn account_commands(backend: Backend) {
    let server = TestServer::start_on(backend).await;
    let app = &server.app;
    let (email, token) = server.signed_up("operator").await;
    let id = server.view(&token).await.json()["id"]
        .as_u64()
        .unwrap()
        .to_string();

    let shown = admin(app, &["user", "show", &email.to_uppercase()])
        .await
        .unwrap();
    assert!(
        shown.contains(&format!("id: {id}")) && shown.contains("disabled: false"),
        "{shown}"
    );
    assert!(!shown.contains("$argon2"), "never a hash: {shown}");
    assert!(admin(app, &["user", "show", "nobody@example.com"])
        .await
        .is_err());

    // disable: login refused after the password, tokens dead; enable: login works again.
    admin(app, &["user", "disable", &id]).await.unwrap();
    server
        .view(&token)
        .await
        .assert(401, json!({"detail": "Invalid signature."}));
    server.login(&email, STRONG_PASSWORD).await.assert(
        400,
        json!({"non_field_errors": ["User account is disabled."]}),
    );
    let stats = admin(app, &["stats", "--json"]).await.unwrap();
    let stats: Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(
        (stats["users"].as_u64(), stats["disabled"].as_u64()),
        (Some(1), Some(1))
    );
    admin(app, &["user", "enable", &email]).await.unwrap();
    server.view(&token).await.assert_status(401); // tokens from before stay dead
    server.clock.advance(3600); // past the login backoff of the refused attempts
    let token = server.login(&email, STRONG_PASSWORD).await.token();
    server.view(&token).await.assert_status(200);

    // end-sessions: every token dies.
    admin(app, &["user", "end-sessions", &id]).await.unwrap();
    server.view(&token).await.assert_status(401);

    // remove-two-factor: the gate is gone, sessions ended, a notice is mailed.
    let (email2, secret, otp_token) = server.enrolled("operator2").await;
    let _ = secret;
    let password_token = server.login(&email2, STRONG_PASSWORD).await.token();
    server.view(&password_token).await.assert_status(403);
    let out = admin(app, &["user", "remove-two-factor", &email2])
        .await
        .unwrap();
    assert!(out.contains("removed"), "{out}");
    server.view(&otp_token).await.assert_status(401);
    let fresh = server.login(&email2, STRONG_PASSWORD).await.token();
    server.view(&fresh).await.assert_status(200);
    let notice = server
        .wait_for_mail(&email2, "Two-factor authentication was turned off")
        .await
        .expect("notice mail");
    assert!(
        notice.contains("Subject: Security notice from Accounts: "),
        "{notice}"
    );

    // delete needs --yes; then the account is gone.
    assert!(admin(app, &["user", "delete", &email2]).await.is_err());
    server.view(&fresh).await.assert_status(200);
    admin(app, &["user", "delete", &email2, "--yes"])
        .await
        .unwrap();
    server.view(&fresh).await.assert_status(401);
    server
        .login(&email2, STRONG_PASSWORD)
        .await
        .assert_status(400);

    let stats = admin(app, &["stats"]).await.unwrap();
    assert!(
        stats.contains("users: 1\n") && stats.contains("disabled: 0\n"),
        "{stats}"
    );
}

#[tokio::test]
async fn account_commands_embedded() {
    account_commands(Backend::Embedded).await;
}

#[tokio::test]
async fn account_commands_dynamodb() {
    account_commands(Backend::DynamoDb).await;
}

fn secrets(root: &str, totp_keys: &[(u32, u8)]) -> Secrets {
    Secrets::new(
        SecretString::from(root.to_owned()),
        totp_keys
            .iter()
            .map(|(version, byte)| VersionedKey {
                version: *version,
                key: SecretBox::new(Box::new([*byte; 32])),
            })
            .collect(),
    )
    .unwrap()
}

/// rotate-keys re-encrypts under the current key, after which the old key can be dropped.
async fn rotate_keys(backend: Backend) {
    let server = TestServer::start_on(backend).await;
    let root = "a-root-secret-key-of-at-least-32-bytes!";
    let old = server.app_with_secrets(&secrets(root, &[(1, 1)]));
    let path = dump_dir().join("dump.json");
    admin(&old, &["import-django", path.to_str().unwrap()])
        .await
        .unwrap();

    let both = server.app_with_secrets(&secrets(root, &[(2, 2), (1, 1)]));
    let dry = admin(&both, &["rotate-keys", "--dry-run"]).await.unwrap();
    assert!(dry.contains("would re-encrypt: 2"), "{dry}");
    let out = admin(&both, &["rotate-keys"]).await.unwrap();
    assert!(out.contains("re-encrypted: 2"), "{out}");
    let again = admin(&both, &["rotate-keys"]).await.unwrap();
    assert!(
        again.contains("already under the current key (v2): 2; re-encrypted: 0"),
        "{again}"
    );

    // Only the new key from now on: the imported secret's codes still verify.
    let new = server.app_with_secrets(&secrets(root, &[(2, 2)]));
    let totp_user = user_of(&truth(), "totp").clone();
    let secret = base32_decode(totp_user["totp_secret"].as_str().unwrap());
    let user = new.service.store.user(UserId(2)).await.unwrap().unwrap();
    assert_eq!(user.totp.as_ref().unwrap().secret.key_version, 2);
    let now = new.service.now().max((59_866_074 + 2) * 30);
    if new.service.now() < now {
        server.clock.advance(now - new.service.now());
    }
    let code = api_tests::totp_code(&secret, new.service.now());
    new.service
        .verify_totp(
            &Principal {
                user,
                auth_time: new.service.now(),
                session: None,
            },
            &code,
            &auth::domain::events::Origin::unknown(),
        )
        .await
        .expect("the re-encrypted secret opens under the new key alone");
    // An app without the old key cannot open what was not rotated: nothing is left.
    let stats = admin(&new, &["rotate-keys", "--dry-run"]).await.unwrap();
    assert!(
        stats.contains("cannot be opened with the configured keys: 0"),
        "{stats}"
    );
}

#[tokio::test]
async fn rotate_keys_embedded() {
    rotate_keys(Backend::Embedded).await;
}

#[tokio::test]
async fn rotate_keys_dynamodb() {
    rotate_keys(Backend::DynamoDb).await;
}

#[test]
fn every_command_has_help() {
    use clap::CommandFactory;
    fn walk(command: &clap::Command, path: &str) {
        assert!(command.get_about().is_some(), "{path} has no help text");
        for sub in command.get_subcommands() {
            if sub.get_name() != "help" {
                walk(sub, &format!("{path} {}", sub.get_name()));
            }
        }
    }
    Cli::command().debug_assert();
    walk(&Cli::command(), "accounts-admin");
    let help = Cli::try_parse_from(["accounts-admin", "user", "end-sessions", "--help"])
        .unwrap_err()
        .to_string();
    assert!(help.contains("token generation"), "{help}");
}

/// The functions' keys come from one Secrets Manager secret at start-up (moto here).
#[tokio::test]
async fn keys_are_read_from_secrets_manager() {
    use base64::Engine;
    let aws = api_tests::emulator_config().await;
    let name = format!("test/keys-{}", api_tests::random_hex(6));
    let aes = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
    let secret = json!({
        "secret_key": "k".repeat(48),
        "totp_encryption_key": aes,
        "totp_encryption_key_version": "4",
        "totp_encryption_previous_keys": "none",
        "secret_key_previous": "p".repeat(48),
        "emergency_code_key": "e".repeat(48),
    });
    aws_sdk_secretsmanager::Client::new(&aws)
        .create_secret()
        .name(&name)
        .secret_string(secret.to_string())
        .send()
        .await
        .expect("create secret");
    let settings = auth::settings::Settings::local(std::env::temp_dir().join("unused"));
    let secrets = auth::wiring::aws::keys_from_secrets_manager(&aws, &settings, &name)
        .await
        .expect("keys");
    assert_eq!(secrets.totp_keys[0].version, 4);
    assert_eq!(secrets.previous_secret_keys.len(), 1);
    assert!(secrets.emergency_code_key.is_some());
    let missing = auth::wiring::aws::keys_from_secrets_manager(&aws, &settings, "no/such").await;
    assert!(missing.is_err());
}

/// A token and a reset link signed before a SECRET_KEY rotation still verify after it (the old
/// key listed as previous); emergency codes stored before EMERGENCY_CODE_KEY was introduced
/// still work once.
#[tokio::test]
async fn rotated_secret_keys_keep_tokens_and_codes() {
    let server = TestServer::start().await;
    let old_root = "an-old-root-secret-key-of-at-least-32-bytes";
    let before = server.app_with_secrets(&secrets(old_root, &[(1, 1)]));
    let email = api_tests::unique_email("rotation");
    let user = before
        .service
        .store
        .create_user(
            auth::domain::records::NewUser {
                email: email.clone(),
                email_norm: email.clone(),
                password_hash: "unused".to_owned(),
                token_gen: "gen".to_owned(),
                created_at: before.service.now(),
                pending: false,
            },
            &auth::store::Effects::none(),
        )
        .await
        .unwrap();
    let auth::store::Created::User(user) = user else {
        panic!("created")
    };
    let token = token_of(&before, &user);
    let after = server.app_with_secrets(
        &secrets("a-new-root-secret-key-of-at-least-32-bytes", &[(1, 1)])
            .with_previous_secret_keys(vec![SecretString::from(old_root.to_owned())])
            .unwrap()
            .with_emergency_code_key(Some(SecretString::from("e".repeat(40))))
            .unwrap(),
    );
    after
        .service
        .authenticate(
            &token,
            auth::service::Gate::Open,
            &auth::domain::events::Origin::unknown(),
        )
        .await
        .expect("a token of the previous key verifies");
    let fresh = token_of(&after, &user);
    assert!(
        before
            .service
            .authenticate(
                &fresh,
                auth::service::Gate::Open,
                &auth::domain::events::Origin::unknown()
            )
            .await
            .is_err(),
        "only the current key signs"
    );
    let without = server.app_with_secrets(&secrets(
        "a-new-root-secret-key-of-at-least-32-bytes",
        &[(1, 1)],
    ));
    assert!(
        without
            .service
            .authenticate(
                &token,
                auth::service::Gate::Open,
                &auth::domain::events::Origin::unknown()
            )
            .await
            .is_err(),
        "dropping the previous key ends its tokens"
    );

    // Codes hashed under the old derivation still work once after the change.
    let old_hash = before.service.emergency_code_hash(user.id, "abcdefgh");
    let new_hash = after.service.emergency_code_hash(user.id, "abcdefgh");
    assert_ne!(
        old_hash, new_hash,
        "the emergency key no longer follows SECRET_KEY"
    );
}

/// A password-only access token of `user` from `app`'s keys (no session: as tokens issued
/// before sessions).
fn token_of(app: &auth::App, user: &auth::domain::records::User) -> String {
    let now = app.service.now();
    app.service.tokens.issue(
        user,
        &auth::domain::token::Grant {
            session: None,
            otp_device_id: None,
            auth_time: now,
            issued_at: now,
        },
    )
}
