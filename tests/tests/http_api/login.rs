//! Login (SPEC §3, §4) and its throttle (SPEC §7).

use api_tests::*;
use serde_json::{json, Value};

use crate::support::*;

const WRONG: &str = "not-the-password-42";

fn bad_credentials() -> Value {
    json!({ "non_field_errors": [BAD_CREDENTIALS] })
}

fn throttled(seconds: u64) -> Value {
    // DRF's wording: "second" for one, "seconds" otherwise.
    let unit = if seconds == 1 { "second" } else { "seconds" };
    json!({
        "detail": format!("Request was throttled. Expected available in {seconds} {unit}.")
    })
}

#[track_caller]
fn assert_throttled(answer: &Response, seconds: u64) {
    answer.assert(429, throttled(seconds));
    assert_eq!(
        answer.header("retry-after"),
        Some(seconds.to_string().as_str()),
        "Retry-After"
    );
    assert_hardened(answer);
}

#[tokio::test]
async fn a_login_answers_a_token_that_authenticates() {
    let server = TestServer::start().await;
    let email = unique_email("login");
    let id = server.create_user(&email, STRONG_PASSWORD).await.json()["id"].clone();
    let answer = server.login(&email, STRONG_PASSWORD).await;
    assert_hardened(&answer);
    assert_eq!(answer.status, 200);
    let body = answer.json();
    // The original's clients read `token`; sessions add `refresh` (docs/api.md#sessions).
    assert_eq!(
        body.as_object().map(|o| o.keys().collect::<Vec<_>>()),
        Some(vec![&"refresh".to_owned(), &"token".to_owned()]),
        "a token and a refresh token: {body}"
    );
    server
        .view(&answer.token())
        .await
        .assert(200, json!({"id": id, "email": email}));
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_email_get_the_same_answer() {
    let server = TestServer::start().await;
    let (email, _) = server.signed_up("known").await;
    let wrong_password = server.login(&email, WRONG).await;
    let unknown_email = server
        .login(&unique_email("unknown"), STRONG_PASSWORD)
        .await;
    let invalid_address = server.login("not-an-address", STRONG_PASSWORD).await;
    for answer in [&wrong_password, &unknown_email, &invalid_address] {
        assert_hardened(answer);
        answer.assert(400, bad_credentials());
    }
    assert_eq!(wrong_password.body, unknown_email.body);
    assert_eq!(wrong_password.body, invalid_address.body);
}

#[tokio::test]
async fn a_login_reports_all_missing_fields() {
    let server = TestServer::start().await;
    server
        .call("POST", "/api/user/login/", None, Some(json!({})))
        .await
        .assert(400, json!({"email": [REQUIRED], "password": [REQUIRED]}));
    server
        .call(
            "POST",
            "/api/user/login/",
            None,
            Some(json!({"email": unique_email("x")})),
        )
        .await
        .assert(400, json!({"password": [REQUIRED]}));
}

#[tokio::test]
async fn login_is_case_insensitive_on_the_whole_address() {
    let server = TestServer::start().await;
    let suffix = random_hex(4);
    let registered = format!("Carol.{suffix}@Example.COM");
    let created = server.create_user(&registered, STRONG_PASSWORD).await;
    assert_eq!(created.status, 201, "{:?}", created.json());
    let id = created.json()["id"].as_u64().unwrap();
    for typed in [
        registered.clone(),
        format!("carol.{suffix}@example.com"),
        format!("CAROL.{}@EXAMPLE.COM", suffix.to_uppercase()),
        format!("  carol.{suffix}@example.com  "),
    ] {
        let answer = server.login(&typed, STRONG_PASSWORD).await;
        assert_eq!(answer.status, 200, "{typed}: {:?}", answer.json());
        assert_eq!(user_id(&server, &answer.token()).await, id);
    }
}

#[tokio::test]
async fn surrounding_whitespace_of_a_password_is_trimmed() {
    let server = TestServer::start().await;
    let email = unique_email("trim");
    let padded = format!("  {STRONG_PASSWORD}\t ");
    assert_eq!(server.create_user(&email, &padded).await.status, 201);
    assert_eq!(server.login(&email, STRONG_PASSWORD).await.status, 200);
    assert_eq!(server.login(&email, &padded).await.status, 200);
    assert_eq!(
        server
            .login(&email, &format!("\n{STRONG_PASSWORD} "))
            .await
            .status,
        200
    );
    // Inner whitespace is part of the password.
    let spaced = STRONG_PASSWORD.replace('-', " ");
    server
        .login(&email, &spaced)
        .await
        .assert(400, bad_credentials());
}

#[tokio::test]
async fn five_failures_are_free_and_the_sixth_attempt_is_throttled_even_with_the_right_password() {
    let server = TestServer::start().await;
    let (email, _) = server.signed_up("throttle").await;
    for _ in 0..5 {
        server
            .login(&email, WRONG)
            .await
            .assert(400, bad_credentials());
    }
    assert_throttled(&server.login(&email, STRONG_PASSWORD).await, 1);
    // Refused attempts do not count: still one second to wait.
    assert_throttled(&server.login(&email, WRONG).await, 1);
    server.clock.advance(1);
    let answer = server.login(&email, STRONG_PASSWORD).await;
    assert_eq!(answer.status, 200, "{:?}", answer.json());
    assert_eq!(server.view(&answer.token()).await.status, 200);
}

#[tokio::test]
async fn the_wait_doubles_with_each_further_failure() {
    let server = TestServer::start().await;
    let (email, _) = server.signed_up("doubling").await;
    for _ in 0..5 {
        server
            .login(&email, WRONG)
            .await
            .assert(400, bad_credentials());
    }
    // Failures six, seven and eight, each after waiting out the previous one's delay.
    for wait in [1u64, 2, 4] {
        assert_throttled(&server.login(&email, WRONG).await, wait);
        server.clock.advance(wait as i64);
        // The attempt after the wait is judged, and fails.
        server
            .login(&email, WRONG)
            .await
            .assert(400, bad_credentials());
    }
    // After eight failures the wait is 2^(8-5) = 8 s.
    assert_throttled(&server.login(&email, STRONG_PASSWORD).await, 8);
    server.clock.advance(5);
    assert_throttled(&server.login(&email, STRONG_PASSWORD).await, 3);
    server.clock.advance(3);
    assert_eq!(server.login(&email, STRONG_PASSWORD).await.status, 200);
}

#[tokio::test]
async fn a_successful_login_resets_the_failure_count() {
    let server = TestServer::start().await;
    let (email, _) = server.signed_up("reset-count").await;
    for _ in 0..4 {
        server
            .login(&email, WRONG)
            .await
            .assert(400, bad_credentials());
    }
    assert_eq!(server.login(&email, STRONG_PASSWORD).await.status, 200);
    // Five free failures again.
    for _ in 0..5 {
        server
            .login(&email, WRONG)
            .await
            .assert(400, bad_credentials());
    }
    assert_throttled(&server.login(&email, STRONG_PASSWORD).await, 1);
}

#[tokio::test]
async fn an_address_without_an_account_throttles_identically() {
    let server = TestServer::start().await;
    let (email, _) = server.signed_up("exists").await;
    let nobody = unique_email("nobody");
    let mut with_account = Vec::new();
    let mut without_account = Vec::new();
    for (address, out) in [(&email, &mut with_account), (&nobody, &mut without_account)] {
        for _ in 0..7 {
            let answer = server.login(address, WRONG).await;
            assert_hardened(&answer);
            out.push((
                answer.status,
                answer.json(),
                answer.header("retry-after").map(str::to_owned),
            ));
        }
    }
    assert_eq!(with_account, without_account);
    assert_eq!(
        with_account.iter().map(|a| a.0).collect::<Vec<_>>(),
        [400, 400, 400, 400, 400, 429, 429]
    );
    assert_eq!(with_account[5].1, throttled(1));
    assert_eq!(with_account[5].2.as_deref(), Some("1"));
}

#[tokio::test]
async fn the_throttle_is_keyed_by_the_normalized_address() {
    let server = TestServer::start().await;
    let suffix = random_hex(4);
    let email = format!("dave.{suffix}@example.com");
    assert_eq!(
        server.create_user(&email, STRONG_PASSWORD).await.status,
        201
    );
    for typed in [
        format!("Dave.{suffix}@example.com"),
        format!("DAVE.{suffix}@EXAMPLE.COM"),
        format!("dave.{suffix}@Example.com"),
        format!(" dave.{suffix}@example.com"),
        email.clone(),
    ] {
        server
            .login(&typed, WRONG)
            .await
            .assert(400, bad_credentials());
    }
    assert_throttled(&server.login(&email, STRONG_PASSWORD).await, 1);
    // Another address is not affected.
    let (other, _) = server.signed_up("other").await;
    assert_eq!(server.login(&other, STRONG_PASSWORD).await.status, 200);
}

#[tokio::test]
async fn the_login_wait_is_capped_at_fifteen_minutes() {
    let server = TestServer::start().await;
    let (email, _) = server.signed_up("cap").await;
    for _ in 0..5 {
        server
            .login(&email, WRONG)
            .await
            .assert(400, bad_credentials());
    }
    // Failures 6 to 16: waits 1, 2, 4, ... 512, then 1024 capped to 900.
    let mut waits = Vec::new();
    for _ in 0..11 {
        let answer = server.login(&email, WRONG).await;
        assert_eq!(answer.status, 429, "{:?}", answer.json());
        let wait: u64 = answer
            .header("retry-after")
            .and_then(|w| w.parse().ok())
            .expect("Retry-After seconds");
        assert_throttled(&answer, wait);
        waits.push(wait);
        server.clock.advance(wait as i64);
        server
            .login(&email, WRONG)
            .await
            .assert(400, bad_credentials());
    }
    assert_eq!(
        waits,
        [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900],
        "2^(n-5) s, at most 15 minutes"
    );
    assert_throttled(&server.login(&email, STRONG_PASSWORD).await, 900);
    server.clock.advance(900);
    assert_eq!(server.login(&email, STRONG_PASSWORD).await.status, 200);
}
