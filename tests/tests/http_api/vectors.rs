//! The real Django's outputs as oracles (`django-vectors.json`, generated with Django 4.2,
//! BSD-3-Clause; a copy of /work/shared/data/django-vectors.json): password validators, the
//! email validator, and pbkdf2_sha256 hashes of imported users.

use api_tests::*;
use auth::clock::Clock;
use auth::domain::records::NewUser;
use auth::store::{Created, Effects};
use serde_json::{json, Value};

use crate::support::*;

fn vectors() -> Value {
    serde_json::from_str(include_str!("django-vectors.json")).expect("vectors JSON")
}

fn list(name: &str) -> Vec<Value> {
    let all = vectors();
    let list = all[name].as_array().expect("a list of vectors").clone();
    assert!(!list.is_empty(), "no {name} vectors");
    list
}

fn text<'v>(vector: &'v Value, key: &str) -> &'v str {
    vector[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} in {vector}"))
}

/// Removes an account straight from the store, so the next vector can reuse its address (the
/// vectors pair the same few addresses with many passwords).
async fn forget(server: &TestServer, email: &str) {
    let user = server
        .app
        .service
        .store
        .user_by_email(&email.to_lowercase())
        .await
        .expect("store")
        .expect("the account just created");
    assert!(server
        .app
        .service
        .store
        .delete_user(&user, &user.token_gen, &Effects::none())
        .await
        .expect("store"));
}

#[tokio::test]
async fn every_django_password_validator_vector_gives_the_same_messages_at_sign_up() {
    let server = TestServer::start().await;
    let mut mismatches = Vec::new();
    for vector in list("password_validators") {
        let email = text(&vector, "email");
        let password = text(&vector, "password");
        // DRF trims before validating; the vectors were generated from trimmed passwords.
        assert_eq!(password.trim(), password, "untrimmed vector {vector}");
        let errors = vector["errors"].clone();
        // Many sign-ups: each from its own address, as the per-IP sign-up limit wants.
        server.use_source_ip(random_loopback());
        let answer = server.create_user(email, password).await;
        assert_hardened(&answer);
        let expected_empty = errors.as_array().is_some_and(|e| e.is_empty());
        let got = (answer.status, answer.json());
        if expected_empty {
            if got.0 == 201 {
                forget(&server, email).await;
            } else {
                mismatches.push(format!("{email} / {password:?}: expected 201, got {got:?}"));
            }
        } else if got != (400, json!({ "password": errors })) {
            mismatches.push(format!(
                "{email} / {password:?}: expected 400 {errors}, got {got:?}"
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[tokio::test]
async fn every_django_email_validator_vector_is_judged_the_same_at_sign_up() {
    let server = TestServer::start().await;
    let mut mismatches = Vec::new();
    for vector in list("email_validator") {
        let email = text(&vector, "email");
        let valid = vector["valid"].as_bool().expect("valid flag");
        if email.trim() != email {
            // DRF trims surrounding whitespace before the validator runs, so Django's verdict on
            // the untrimmed string does not apply over HTTP: ' x@example.com' and
            // 'x@example.com\n' are invalid to the validator but valid once trimmed. These are
            // checked below against the verdict for the trimmed address.
            continue;
        }
        let answer = server.create_user(email, STRONG_PASSWORD).await;
        assert_hardened(&answer);
        let got = (answer.status, answer.json());
        let expected = if valid {
            let (local, domain) = email.rsplit_once('@').expect("an @");
            let id = got.1["id"].clone();
            (
                201,
                json!({"email": format!("{local}@{}", domain.to_lowercase()), "id": id}),
            )
        } else {
            (400, json!({ "email": [INVALID_EMAIL] }))
        };
        if got != expected || (valid && !got.1["id"].is_u64()) {
            mismatches.push(format!("{email:?} (valid: {valid}): got {got:?}"));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[tokio::test]
async fn an_email_vector_that_only_whitespace_makes_invalid_is_valid_after_trimming() {
    let vectors = list("email_validator");
    let padded: Vec<&Value> = vectors
        .iter()
        .filter(|v| text(v, "email").trim() != text(v, "email"))
        .collect();
    assert!(!padded.is_empty(), "the vectors include padded addresses");
    for vector in padded {
        let email = text(vector, "email");
        let trimmed = email.trim();
        // Django's own verdict on the trimmed form, where the vectors give one.
        let trimmed_verdict = vectors
            .iter()
            .find(|v| text(v, "email") == trimmed)
            .map(|v| v["valid"].as_bool().unwrap());
        assert_ne!(
            trimmed_verdict,
            Some(false),
            "{trimmed:?} is itself invalid"
        );
        // A fresh server each, as the padded vectors trim to the same address.
        let server = TestServer::start().await;
        let answer = server.create_user(email, STRONG_PASSWORD).await;
        assert_eq!(answer.status, 201, "{email:?}: {:?}", answer.json());
        assert_eq!(answer.json()["email"], json!(trimmed));
    }
}

#[tokio::test]
async fn every_django_pbkdf2_hash_logs_in_and_is_upgraded_to_argon2id() {
    let server = TestServer::start().await;
    for vector in list("pbkdf2_sha256") {
        let password = text(&vector, "password");
        let hash = text(&vector, "hash");
        assert!(hash.starts_with("pbkdf2_sha256$"), "{hash}");
        let email = unique_email("imported");
        let created = server
            .app
            .service
            .store
            .create_user(
                NewUser {
                    email: email.clone(),
                    email_norm: email.to_lowercase(),
                    password_hash: hash.to_owned(),
                    token_gen: random_hex(16),
                    created_at: server.clock.now(),
                    pending: false,
                },
                &Effects::none(),
            )
            .await
            .expect("store");
        let Created::User(user) = created else {
            panic!("{email} already taken");
        };

        // A wrong password is refused and leaves the Django hash alone.
        server
            .login(&email, "definitely-not-it-77")
            .await
            .assert(400, json!({ "non_field_errors": [BAD_CREDENTIALS] }));
        let stored = server
            .app
            .service
            .store
            .user(user.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.password_hash, hash);

        let first = server.login(&email, password).await;
        assert_eq!(first.status, 200, "{password:?}: {:?}", first.json());
        server
            .view(&first.token())
            .await
            .assert(200, json!({"id": user.id.0, "email": email}));

        let stored = server
            .app
            .service
            .store
            .user(user.id)
            .await
            .unwrap()
            .unwrap();
        assert!(
            stored.password_hash.starts_with("$argon2id$"),
            "not rehashed: {}",
            stored.password_hash
        );
        assert!(!stored.password_hash.contains(hash));

        // The new hash verifies the same password, and only it.
        let again = server.login(&email, password).await;
        assert_eq!(again.status, 200, "{password:?}: {:?}", again.json());
        assert_eq!(server.view(&again.token()).await.status, 200);
        assert_eq!(
            server.login(&email, "definitely-not-it-77").await.status,
            400
        );
        let after = server
            .app
            .service
            .store
            .user(user.id)
            .await
            .unwrap()
            .unwrap();
        assert!(after.password_hash.starts_with("$argon2id$"));
    }
}

#[tokio::test]
async fn an_argon2id_hash_meets_the_owasp_minimum() {
    let server = TestServer::start().await;
    let (email, _) = server.signed_up("owasp").await;
    let user = server
        .app
        .service
        .store
        .user_by_email(&email.to_lowercase())
        .await
        .unwrap()
        .unwrap();
    // $argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$salt$hash
    let params = user
        .password_hash
        .split('$')
        .nth(3)
        .unwrap_or_else(|| panic!("{}", user.password_hash));
    let value = |key: &str| -> u64 {
        params
            .split(',')
            .find_map(|p| p.strip_prefix(&format!("{key}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{key} in {params}"))
    };
    assert!(user.password_hash.starts_with("$argon2id$v=19$"));
    assert!(value("m") >= 19 * 1024, "{params}");
    assert!(value("t") >= 2, "{params}");
    assert!(value("p") >= 1, "{params}");
}
