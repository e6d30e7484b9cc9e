use api_tests::*;
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn a_new_user_can_sign_up_log_in_and_view_their_account() {
    let server = TestServer::start().await;
    let email = unique_email("alice");
    let created = server.create_user(&email, STRONG_PASSWORD).await;
    assert_eq!(created.status, 201);
    let id = created.json()["id"].as_u64().unwrap();
    assert_eq!(created.json(), json!({"email": email, "id": id}));
    let token = server.login(&email, STRONG_PASSWORD).await.token();
    server
        .view(&token)
        .await
        .assert(200, json!({"id": id, "email": email}));
}

// Sign-up.

#[tokio::test]
async fn the_domain_part_is_lowercased_in_the_answer_and_the_local_part_kept() {
    let server = TestServer::start().await;
    let suffix = random_hex(4);
    let created = server
        .create_user(&format!("Mixed.Case-{suffix}@Example.COM"), STRONG_PASSWORD)
        .await;
    assert_hardened(&created);
    assert_eq!(created.status, 201, "{:?}", created.json());
    let stored = format!("Mixed.Case-{suffix}@example.com");
    assert_eq!(created.json()["email"], json!(stored));
    let token = server.login(&stored, STRONG_PASSWORD).await.token();
    assert_eq!(server.view(&token).await.json()["email"], json!(stored));
}

#[tokio::test]
async fn surrounding_whitespace_of_an_email_is_trimmed() {
    let server = TestServer::start().await;
    let email = unique_email("spaced");
    let created = server
        .create_user(&format!("  {email}\n"), STRONG_PASSWORD)
        .await;
    assert_eq!(created.status, 201, "{:?}", created.json());
    assert_eq!(created.json()["email"], json!(email));
}

#[tokio::test]
async fn a_duplicate_email_differing_only_in_case_is_refused() {
    let server = TestServer::start().await;
    let suffix = random_hex(4);
    let first = format!("Alice.{suffix}@X.com");
    let created = server.create_user(&first, STRONG_PASSWORD).await;
    assert_eq!(created.status, 201, "{:?}", created.json());
    for duplicate in [
        format!("alice.{suffix}@x.com"),
        format!("Alice.{suffix}@X.com"),
        format!("ALICE.{}@X.COM", suffix.to_uppercase()),
        format!(" alice.{suffix}@x.com "),
    ] {
        let answer = server.create_user(&duplicate, STRONG_PASSWORD).await;
        assert_hardened(&answer);
        answer.assert(400, json!({ "email": [EMAIL_TAKEN] }));
    }
    // Still exactly one account, reachable by any spelling.
    let id = created.json()["id"].as_u64().unwrap();
    let token = server
        .login(&format!("alice.{suffix}@x.com"), STRONG_PASSWORD)
        .await
        .token();
    assert_eq!(user_id(&server, &token).await, id);
}

#[tokio::test]
async fn a_duplicate_is_reported_beside_the_other_field_errors() {
    let server = TestServer::start().await;
    let (email, _) = server.signed_up("dup").await;
    server
        .call(
            "POST",
            "/api/user/create/",
            None,
            Some(json!({ "email": email.to_uppercase() })),
        )
        .await
        .assert(400, json!({"email": [EMAIL_TAKEN], "password": [REQUIRED]}));
}

#[tokio::test]
async fn a_weak_password_is_refused_with_every_validator_message_in_order() {
    let server = TestServer::start().await;
    let email = unique_email("weak");
    server.create_user(&email, "1234567").await.assert(
        400,
        json!({"password": [TOO_SHORT, TOO_COMMON, ENTIRELY_NUMERIC]}),
    );
    server
        .create_user(&email, "password")
        .await
        .assert(400, json!({ "password": [TOO_COMMON] }));
    // The address is still free.
    assert_eq!(
        server.create_user(&email, STRONG_PASSWORD).await.status,
        201
    );
}

#[tokio::test]
async fn twenty_concurrent_sign_ups_of_one_address_create_exactly_one_account() {
    let server = TestServer::start().await;
    let email = unique_email("race");
    let answers = join_all(
        (0..20)
            .map(|_| server.create_user(&email, STRONG_PASSWORD))
            .collect(),
    )
    .await;
    let created: Vec<&Response> = answers.iter().filter(|a| a.status == 201).collect();
    assert_eq!(
        created.len(),
        1,
        "{:?}",
        answers.iter().map(|a| a.status).collect::<Vec<_>>()
    );
    for answer in answers.iter().filter(|a| a.status != 201) {
        answer.assert(400, json!({ "email": [EMAIL_TAKEN] }));
    }
    let id = created[0].json()["id"].as_u64().unwrap();
    let token = server.login(&email, STRONG_PASSWORD).await.token();
    server
        .view(&token)
        .await
        .assert(200, json!({"id": id, "email": email}));
    let stored = server
        .app
        .service
        .store
        .user_by_email(&email.to_lowercase())
        .await
        .expect("store")
        .expect("the one account");
    assert_eq!(stored.id.0, id);
}

#[tokio::test]
async fn ids_are_positive_and_distinct() {
    let server = TestServer::start().await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let created = server
            .create_user(&unique_email("ids"), STRONG_PASSWORD)
            .await;
        ids.push(created.json()["id"].as_u64().expect("a numeric id"));
    }
    assert!(ids.iter().all(|id| *id > 0), "{ids:?}");
    let mut distinct = ids.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "{ids:?}");
}

// Delete.

#[tokio::test]
async fn deleting_with_a_wrong_current_password_is_refused() {
    let server = TestServer::start().await;
    let (email, token) = server.signed_up("keep").await;
    let answer = server.delete_user(&token, "not-my-password-1").await;
    assert_hardened(&answer);
    answer.assert(400, json!({ "current_password": [INVALID_PASSWORD] }));
    server
        .call("POST", "/api/user/delete/", Some(&token), Some(json!({})))
        .await
        .assert(400, json!({ "current_password": [REQUIRED] }));
    server
        .call(
            "POST",
            "/api/user/delete/",
            Some(&token),
            Some(json!({"current_password": ""})),
        )
        .await
        .assert(400, json!({ "current_password": [BLANK] }));
    // Nothing happened.
    assert_eq!(server.view(&token).await.status, 200);
    assert_eq!(server.login(&email, STRONG_PASSWORD).await.status, 200);
}

#[tokio::test]
async fn deleting_an_account_ends_its_tokens_and_frees_the_address() {
    let server = TestServer::start().await;
    let (email, token) = server.signed_up("delete").await;
    let old_id = user_id(&server, &token).await;
    let answer = server.delete_user(&token, STRONG_PASSWORD).await;
    assert_hardened(&answer);
    assert_eq!(answer.status, 204);
    assert!(answer.body.is_empty());
    assert_unauthorized(&server.view(&token).await, UNKNOWN_USER);
    server
        .login(&email, STRONG_PASSWORD)
        .await
        .assert(400, json!({ "non_field_errors": [BAD_CREDENTIALS] }));
    // The address can sign up again, as a new account with a new id.
    let again = server.create_user(&email, STRONG_PASSWORD).await;
    assert_eq!(again.status, 201, "{:?}", again.json());
    let new_id = again.json()["id"].as_u64().unwrap();
    assert_ne!(new_id, old_id, "ids are never reused");
    let token = server.login(&email, STRONG_PASSWORD).await.token();
    assert_eq!(user_id(&server, &token).await, new_id);
}

#[tokio::test]
async fn an_account_can_be_deleted_with_the_delete_method() {
    let server = TestServer::start().await;
    let (email, token) = server.signed_up("delete-method").await;
    let answer = server
        .call(
            "DELETE",
            "/api/user/delete/",
            Some(&token),
            Some(json!({ "current_password": STRONG_PASSWORD })),
        )
        .await;
    assert_eq!(answer.status, 204);
    assert_unauthorized(&server.view(&token).await, UNKNOWN_USER);
    assert_eq!(server.login(&email, STRONG_PASSWORD).await.status, 400);
}

#[tokio::test]
async fn deleting_needs_a_token() {
    let server = TestServer::start().await;
    let answer = server
        .raw(
            "POST",
            "/api/user/delete/",
            &[("content-type", "application/json")],
            json!({ "current_password": STRONG_PASSWORD }).to_string(),
        )
        .await;
    assert_unauthorized(&answer, "Authentication credentials were not provided.");
}

// Password change.

const NEW_PASSWORD: &str = "a-whole-new-passphrase-5";

#[tokio::test]
async fn a_password_change_with_a_wrong_current_password_is_refused() {
    let server = TestServer::start().await;
    let (email, token) = server.signed_up("change-wrong").await;
    let answer = server
        .change_password(&token, "not-my-password-1", NEW_PASSWORD)
        .await;
    assert_hardened(&answer);
    answer.assert(400, json!({ "current_password": [INVALID_PASSWORD] }));
    assert_eq!(server.login(&email, STRONG_PASSWORD).await.status, 200);
    assert_eq!(server.login(&email, NEW_PASSWORD).await.status, 400);
}

#[tokio::test]
async fn a_weak_new_password_is_refused_with_the_validator_messages() {
    let server = TestServer::start().await;
    let (email, token) = server.signed_up("change-weak").await;
    server
        .change_password(&token, STRONG_PASSWORD, "abc")
        .await
        .assert(400, json!({ "new_password": [TOO_SHORT, TOO_COMMON] }));
    server
        .change_password(&token, STRONG_PASSWORD, "87654321")
        .await
        .assert(
            400,
            json!({ "new_password": [TOO_COMMON, ENTIRELY_NUMERIC] }),
        );
    assert_eq!(server.login(&email, STRONG_PASSWORD).await.status, 200);
}

#[tokio::test]
async fn a_password_change_reports_missing_fields() {
    let server = TestServer::start().await;
    let (_, token) = server.signed_up("change-fields").await;
    server
        .call(
            "POST",
            "/api/user/password/change/",
            Some(&token),
            Some(json!({})),
        )
        .await
        .assert(
            400,
            json!({"current_password": [REQUIRED], "new_password": [REQUIRED]}),
        );
}

#[tokio::test]
async fn a_changed_password_replaces_the_old_one_and_keeps_the_session() {
    let server = TestServer::start().await;
    let (email, token) = server.signed_up("change").await;
    let answer = server
        .change_password(&token, STRONG_PASSWORD, NEW_PASSWORD)
        .await;
    assert_hardened(&answer);
    assert_eq!(answer.status, 204);
    assert!(answer.body.is_empty());
    server
        .login(&email, STRONG_PASSWORD)
        .await
        .assert(400, json!({ "non_field_errors": [BAD_CREDENTIALS] }));
    assert_eq!(server.login(&email, NEW_PASSWORD).await.status, 200);
    // LOGOUT_ON_PASSWORD_CHANGE is off by default: the old token still works.
    assert_eq!(server.view(&token).await.status, 200);
}

#[tokio::test]
async fn with_logout_on_password_change_the_old_token_is_refused() {
    let server = TestServer::start_with(Options {
        settings: Box::new(|s| s.logout_on_password_change = true),
        ..Default::default()
    })
    .await;
    let (email, token) = server.signed_up("change-logout").await;
    let other_session = server.login(&email, STRONG_PASSWORD).await.token();
    assert_eq!(
        server
            .change_password(&token, STRONG_PASSWORD, NEW_PASSWORD)
            .await
            .status,
        204
    );
    assert_unauthorized(&server.view(&token).await, DECODE_ERROR);
    assert_unauthorized(&server.view(&other_session).await, DECODE_ERROR);
    let fresh = server.login(&email, NEW_PASSWORD).await.token();
    assert_eq!(server.view(&fresh).await.status, 200);
}

#[tokio::test]
async fn concurrent_sign_ups_of_one_address_in_different_cases_create_exactly_one_account() {
    let server = TestServer::start().await;
    let local = format!("race.{}", random_hex(4));
    let spellings: Vec<String> = (0..10)
        .map(|i| match i % 3 {
            0 => format!("{local}@example.com"),
            1 => format!("{}@EXAMPLE.com", local.to_uppercase()),
            _ => format!("Race.{}@Example.COM", &local[5..]),
        })
        .collect();
    let answers = join_all(
        spellings
            .iter()
            .map(|e| server.create_user(e, STRONG_PASSWORD))
            .collect(),
    )
    .await;
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    for answer in answers.iter().filter(|a| a.status != 201) {
        answer.assert(400, json!({ "email": [EMAIL_TAKEN] }));
    }
}

#[tokio::test]
async fn a_new_password_too_similar_to_the_email_is_refused() {
    let server = TestServer::start().await;
    let email = format!("zebracrossing-{}@example.com", random_hex(4));
    server.create_user(&email, "zebracrossing").await.assert(
        400,
        json!({"password": ["The password is too similar to the email address."]}),
    );
    assert_eq!(
        server.create_user(&email, STRONG_PASSWORD).await.status,
        201
    );
    let token = server.login(&email, STRONG_PASSWORD).await.token();
    server
        .change_password(&token, STRONG_PASSWORD, "zebracrossing")
        .await
        .assert(
            400,
            json!({"new_password": ["The password is too similar to the email address."]}),
        );
}
