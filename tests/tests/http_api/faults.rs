//! Lost answers (issue: faults). DynamoDB applies a write, its answer is lost on the way back,
//! and the SDK sends the write again: the request must still get the answer of the write it
//! made. Each step below runs on `Backend::DynamoDbLosingAnswers`, where the first answer of
//! every write is lost, and asserts both the right answer and that an answer really was lost
//! during the step (so none of these can pass by the fault not happening). Every scenario run
//! by `on_both_stores!` also runs on that backend.
//!
//! Two mechanisms make a retried write give its first answer: a write that leaves events or
//! mail behind is a transaction, answered from its idempotency token (`transaction` below); a
//! single-item conditional write (the TOTP device insert, the reset-mail claim, counters of
//! failures without events) meets its own request id in the item's `last_write` ring.

use std::future::Future;

use api_tests::*;
use serde_json::json;

use crate::support::*;

/// Runs one request with the fault layer counting: answers its response, after asserting that
/// at least one write of it had its answer lost (and, if `transaction`, that a transaction was
/// answered from its idempotency token).
async fn losing<F: Future<Output = Response>>(
    server: &TestServer,
    step: &str,
    transaction: bool,
    request: F,
) -> Response {
    let faults = server.faults.as_ref().expect("the answer-losing backend");
    let (lost, replayed) = (faults.lost(), faults.replayed());
    let response = request.await;
    assert!(faults.lost() > lost, "{step}: no write had its answer lost");
    if transaction {
        assert!(
            faults.replayed() > replayed,
            "{step}: no transaction was answered from its token"
        );
    }
    response
}

async fn start() -> TestServer {
    TestServer::start_on(Backend::DynamoDbLosingAnswers).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_write_paths_answer_right_when_their_first_answer_is_lost() {
    let server = start().await;
    let email = unique_email("lost-accounts");
    let created = losing(
        &server,
        "create",
        true,
        server.create_user(&email, STRONG_PASSWORD),
    )
    .await;
    created.assert_status(201);
    // The retried sign-up did not meet its own email claim as "taken".
    assert_eq!(created.json()["email"], json!(email));
    losing(
        &server,
        "create again",
        true,
        server.create_user(&email, STRONG_PASSWORD),
    )
    .await
    .assert(400, json!({"email": [EMAIL_TAKEN]}));

    let token = losing(
        &server,
        "login",
        true,
        server.login(&email, STRONG_PASSWORD),
    )
    .await
    .token();
    const NEW: &str = "a-brand-new-passphrase-7";
    losing(
        &server,
        "password change",
        true,
        server.change_password(&token, STRONG_PASSWORD, NEW),
    )
    .await
    .assert_status(204);
    server.login(&email, NEW).await.assert_status(200);
    server
        .login(&email, STRONG_PASSWORD)
        .await
        .assert(400, json!({"non_field_errors": [BAD_CREDENTIALS]}));

    losing(
        &server,
        "logout of all devices",
        true,
        server.logout_all(&token),
    )
    .await
    .assert_status(204);
    server.view(&token).await.assert_status(401);

    let token = server.login(&email, NEW).await.token();
    losing(&server, "delete", true, server.delete_user(&token, NEW))
        .await
        .assert_status(204);
    server
        .login(&email, NEW)
        .await
        .assert(400, json!({"non_field_errors": [BAD_CREDENTIALS]}));
    // The address was freed with the account.
    server
        .create_user(&email, STRONG_PASSWORD)
        .await
        .assert_status(201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_write_paths_answer_right_when_their_first_answer_is_lost() {
    let server = start().await;
    let (email, _) = server.signed_up("lost-reset").await;
    // The per-address mail claim: its retry must not meet itself as "already sent".
    losing(
        &server,
        "reset request",
        false,
        server.request_reset(&email),
    )
    .await
    .assert_status(204);
    let mail = server
        .wait_for_reset_mail(&email)
        .await
        .expect("the reset mail was sent, not taken for already sent");
    let (uid, token) = reset_link_parts(&mail);
    const NEW: &str = "a-reset-passphrase-12";
    losing(
        &server,
        "reset confirm",
        true,
        server.confirm_reset(&uid, &token, NEW),
    )
    .await
    .assert_status(204);
    server.login(&email, NEW).await.assert_status(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_factor_write_paths_answer_right_when_their_first_answer_is_lost() {
    let server = start().await;
    let (email, token) = server.signed_up("lost-otp").await;
    let created = losing(&server, "TOTP create", false, server.totp_create(&token)).await;
    created.assert_status(201);
    let secret = otpauth_secret(created.json().as_str().unwrap());
    // The retried compare-and-set must not see its own step as a replay.
    let verified = losing(
        &server,
        "TOTP accept",
        true,
        server.totp_login(&token, &server.code_now(&secret)),
    )
    .await;
    verified.assert_status(201);
    let otp_token = verified.token();

    // One wrong code counts one failure, not two: the right code is refused for 2^0 s only.
    server.clock.advance(30);
    let wrong = if server.code_now(&secret) == "000000" {
        "111111"
    } else {
        "000000"
    };
    losing(
        &server,
        "TOTP failure",
        true,
        server.totp_login(&otp_token, wrong),
    )
    .await
    .assert_status(400);
    server.clock.advance(1);
    server
        .totp_login(&otp_token, &server.code_now(&secret))
        .await
        .assert_status(201);

    let codes = losing(
        &server,
        "codes create",
        true,
        server.static_create(&otp_token),
    )
    .await;
    codes.assert_status(201);
    let codes: Vec<String> = serde_json::from_value(codes.json()).unwrap();
    let fresh = server.login(&email, STRONG_PASSWORD).await.token();
    losing(
        &server,
        "code use",
        true,
        server.static_login(&fresh, &codes[0]),
    )
    .await
    .assert_status(201);
    // Still one-time; the reuse counts as failure 1 (the next code waits 2^0 s).
    let again = server.static_login(&fresh, &codes[0]).await;
    assert_eq!(again.status, 400);
    server.clock.advance(1);
    // Failure 2 counts once: the wait becomes 2 s, not the 4 s of a double count.
    losing(
        &server,
        "code failure",
        true,
        server.static_login(&fresh, "aaaaaaaa"),
    )
    .await
    .assert_status(400);
    server.clock.advance(2);
    server
        .static_login(&fresh, &codes[1])
        .await
        .assert_status(201);

    let deleted = losing(&server, "TOTP delete", true, server.totp_delete(&otp_token)).await;
    deleted.assert_status(200);
    server.view(&deleted.token()).await.assert_status(200);
    server.view(&otp_token).await.assert_status(401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_failures_count_once_when_their_first_answer_is_lost() {
    let server = start().await;
    let (email, _) = server.signed_up("lost-throttle").await;
    // Five failures per address and IP are checked; the sixth is throttled (SPEC §8). A
    // double-counted failure would throttle earlier.
    for attempt in 1..=5 {
        losing(
            &server,
            &format!("failure {attempt}"),
            true,
            server.login(&email, "not-the-password-1"),
        )
        .await
        .assert(400, json!({"non_field_errors": [BAD_CREDENTIALS]}));
    }
    assert_eq!(server.login(&email, STRONG_PASSWORD).await.status, 429);
}
