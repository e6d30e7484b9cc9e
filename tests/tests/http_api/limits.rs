//! The abuse limits (docs/api.md#abuse-limits), on both stores: attempts counted before they are
//! checked, so parallel guesses do not all get checked; per-IP separation over real sockets
//! bound to their own loopback addresses; lockouts lifted by a reset; input bounds.

use std::net::IpAddr;

use api_tests::*;
use serde_json::json;

use crate::support::*;

const LOGIN: &str = "/api/user/login/";

on_both_stores!(
    twenty_parallel_wrong_passwords_are_at_most_six_checked,
    after_five_failures_a_burst_with_the_right_password_inside_checks_at_most_one,
    an_attackers_failures_do_not_lock_out_the_victims_ip,
    fifty_one_failures_from_one_ip_across_addresses_get_429,
    a_known_ip_is_exempt_from_the_address_wide_scope,
    a_completed_reset_lifts_the_login_lockout,
    current_password_is_counted_before_it_is_checked,
    sign_up_is_limited_per_ip_per_hour,
    reset_requests_are_limited_per_ip_and_mails_per_address,
    oversized_and_odd_inputs_get_a_4xx,
);

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// (number answered 400 — checked —, number answered 429).
fn tally(answers: &[Response]) -> (usize, usize) {
    for answer in answers {
        assert_hardened(answer);
    }
    let checked = answers.iter().filter(|a| a.status != 429).count();
    let refused = answers.iter().filter(|a| a.status == 429).count();
    (checked, refused)
}

async fn twenty_parallel_wrong_passwords_are_at_most_six_checked(backend: Backend) {
    let server = TestServer::start_on(backend).await;
    let (email, _) = server.signed_up("parallel").await;
    let passwords: Vec<String> = (0..20).map(|i| format!("wrong-guess-{i}")).collect();
    let guesses: Vec<_> = passwords.iter().map(|p| server.login(&email, p)).collect();
    let answers = join_all(guesses).await;
    let (checked, refused) = tally(&answers);
    assert!(
        checked <= 6,
        "{checked} of 20 parallel guesses were checked"
    );
    assert_eq!(checked + refused, 20);
    // Five simultaneous first attempts are never refused for racing.
    assert!(checked >= 5, "only {checked} checked");
}

async fn after_five_failures_a_burst_with_the_right_password_inside_checks_at_most_one(
    backend: Backend,
) {
    let server = TestServer::start_on(backend).await;
    let (email, _) = server.signed_up("burst").await;
    for i in 0..5 {
        server
            .login(&email, &format!("wrong-{i}"))
            .await
            .assert_status(400);
    }
    let refused = server.login(&email, STRONG_PASSWORD).await;
    refused.assert_status(429);
    assert!(refused.header("retry-after").is_some());
    server.clock.advance(1);
    let passwords: Vec<String> = (0..20)
        .map(|i| match i {
            10 => STRONG_PASSWORD.to_owned(),
            _ => format!("bad-{i}"),
        })
        .collect();
    let burst: Vec<_> = passwords.iter().map(|p| server.login(&email, p)).collect();
    let answers = join_all(burst).await;
    let (checked, _) = tally(&answers);
    assert!(checked <= 1, "{checked} attempts of the burst were checked");
}

async fn an_attackers_failures_do_not_lock_out_the_victims_ip(backend: Backend) {
    let server = TestServer::start_on(backend).await;
    let (email, _) = server.signed_up("victim").await;
    server.use_source_ip(ip("127.0.66.6"));
    for i in 0..5 {
        server
            .login(&email, &format!("wrong-{i}"))
            .await
            .assert_status(400);
    }
    server.login(&email, "wrong-6").await.assert_status(429);
    server.use_source_ip(ip("127.0.10.1"));
    server
        .login(&email, STRONG_PASSWORD)
        .await
        .assert_status(200);
}

async fn fifty_one_failures_from_one_ip_across_addresses_get_429(backend: Backend) {
    let server = TestServer::start_on(backend).await;
    let (email, _) = server.signed_up("stuffed").await;
    server.use_source_ip(ip("127.0.77.7"));
    for i in 0..50 {
        let answer = server
            .login(&format!("stuffing-{i}@example.com"), "some-password-1")
            .await;
        answer.assert_status(400);
    }
    // The 51st failure's attempt is refused, whichever address and password it names.
    let refused = server.login(&email, STRONG_PASSWORD).await;
    refused.assert_status(429);
    // Another IP is not affected, and the bucket ends.
    server.use_source_ip(ip("127.0.77.8"));
    server
        .login(&email, STRONG_PASSWORD)
        .await
        .assert_status(200);
    server.use_source_ip(ip("127.0.77.7"));
    server.clock.advance(600);
    server
        .login(&email, STRONG_PASSWORD)
        .await
        .assert_status(200);
}

async fn a_known_ip_is_exempt_from_the_address_wide_scope(backend: Backend) {
    let server = TestServer::start_on(backend).await;
    let owner = ip("127.0.20.1");
    server.use_source_ip(owner);
    let (email, _) = server.signed_up("owner").await;
    // Strangers from 20 addresses: the 20th failure opens the address-wide scope's waits.
    for i in 0..20u8 {
        server.use_source_ip(ip(&format!("127.0.21.{}", i + 2)));
        server
            .login(&email, "stranger-guess-1")
            .await
            .assert_status(400);
    }
    server.use_source_ip(ip("127.0.22.2"));
    server
        .login(&email, STRONG_PASSWORD)
        .await
        .assert_status(429);
    // The owner's IP logged in before: it is exempt from the address-wide scope.
    server.use_source_ip(owner);
    server
        .login(&email, STRONG_PASSWORD)
        .await
        .assert_status(200);
}

async fn a_completed_reset_lifts_the_login_lockout(backend: Backend) {
    let server = TestServer::start_on(backend).await;
    let (email, _) = server.signed_up("locked").await;
    for i in 0..5 {
        server
            .login(&email, &format!("wrong-{i}"))
            .await
            .assert_status(400);
    }
    server
        .login(&email, STRONG_PASSWORD)
        .await
        .assert_status(429);
    server.request_reset(&email).await.assert_status(204);
    let mail = server
        .wait_for_reset_mail(&email)
        .await
        .expect("reset mail");
    let (uid, token) = reset_link_parts(&mail);
    server
        .confirm_reset(&uid, &token, "a-brand-new-passphrase-7")
        .await
        .assert_status(204);
    server
        .login(&email, "a-brand-new-passphrase-7")
        .await
        .assert_status(200);
}

async fn current_password_is_counted_before_it_is_checked(backend: Backend) {
    let server = TestServer::start_on(backend).await;
    let (_, token) = server.signed_up("proof").await;
    for i in 0..5 {
        server
            .change_password(&token, &format!("not-it-{i}"), "new-passphrase-long-5")
            .await
            .assert(400, json!({"current_password": [INVALID_PASSWORD]}));
    }
    // A stolen token is no password oracle: past five failures, waits.
    let refused = server
        .change_password(&token, STRONG_PASSWORD, "new-passphrase-long-5")
        .await;
    refused.assert_status(429);
    server
        .delete_user(&token, STRONG_PASSWORD)
        .await
        .assert_status(429);
    server.clock.advance(1);
    server
        .change_password(&token, STRONG_PASSWORD, "new-passphrase-long-5")
        .await
        .assert_status(204);
    // The success cleared the count.
    server
        .change_password(&token, "wrong-again-1", "other-passphrase-long-6")
        .await
        .assert_status(400);
}

async fn sign_up_is_limited_per_ip_per_hour(backend: Backend) {
    let server = TestServer::start_on(backend).await;
    for _ in 0..20 {
        // Attempts count whatever their outcome; these are refused before any hashing.
        server
            .call(
                "POST",
                "/api/user/create/",
                None,
                Some(json!({"email": "x"})),
            )
            .await
            .assert_status(400);
    }
    let refused = server
        .create_user(&unique_email("late"), STRONG_PASSWORD)
        .await;
    refused.assert_status(429);
    server.use_source_ip(ip("127.0.30.30"));
    server
        .create_user(&unique_email("other-ip"), STRONG_PASSWORD)
        .await
        .assert_status(201);
}

async fn reset_requests_are_limited_per_ip_and_mails_per_address(backend: Backend) {
    use auth::clock::Clock;
    let server = TestServer::start_on(backend).await;
    // Windows are fixed hours and days: start early in one, so the flow stays in it.
    let now = server.clock.now();
    server.clock.advance(86_400 - now.rem_euclid(86_400) + 10);
    let (email, _) = server.signed_up("mails").await;
    // One mail per minute and five per day, per address: past them the same 204, no mail.
    for _ in 0..7 {
        server.request_reset(&email).await.assert_status(204);
        server.clock.advance(61);
    }
    let reset_mails = || {
        server
            .outbox_messages()
            .iter()
            .filter(|m| m.contains(&format!("To: {email}")) && m.contains("Password reset on"))
            .count()
    };
    for _ in 0..150 {
        if reset_mails() >= 5 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(reset_mails(), 5);
    // Twenty requests per IP per hour; the 21st is a 429 that says nothing about the address.
    for i in 7..20 {
        server
            .request_reset(&format!("nobody-{i}@example.com"))
            .await
            .assert_status(204);
    }
    server
        .request_reset("nobody-else@example.com")
        .await
        .assert_status(429);
}

async fn oversized_and_odd_inputs_get_a_4xx(backend: Backend) {
    let server = TestServer::start_on(backend).await;
    let long = format!("{}@example.com", "a".repeat(3000));
    let answer = server.login(&long, STRONG_PASSWORD).await;
    assert_hardened(&answer);
    answer.assert(400, json!({"non_field_errors": [BAD_CREDENTIALS]}));
    let answer = server
        .call(
            "POST",
            LOGIN,
            None,
            Some(json!({"email": "x@example.com", "password": "p".repeat(4097)})),
        )
        .await;
    answer.assert(
        400,
        json!({"password": ["Ensure this field has no more than 4096 characters."]}),
    );
    // A real user's uid (ids may have gaps: a retried id allocation counts twice).
    let (_, token) = server.signed_up("bounds").await;
    let id = server.view(&token).await.json()["id"].to_string();
    let uid = base64url_encode(id.as_bytes());
    let mac = "0".repeat(32);
    let answer = server
        .confirm_reset(&uid, &format!("zzzzzzzzzzzz-{mac}"), "a-fine-passphrase-8")
        .await;
    answer.assert(
        400,
        json!({"non_field_errors": ["Invalid token for given user."]}),
    );
    assert_eq!(
        answer.header("strict-transport-security"),
        Some("max-age=63072000")
    );
}
