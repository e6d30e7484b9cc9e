//! Sessions and refresh tokens (docs/api.md#sessions): rotation, the reuse window and reuse
//! detection, parallel refreshes answering one child, forged tokens ending nothing, what each
//! operation does to sessions, the list, the cap of 50. On both stores.

use api_tests::*;
use serde_json::{json, Value};

use crate::support::*;

const REFUSED: &str = "Refresh token is invalid or expired.";
const NEW_PASSWORD: &str = "a-brand-new-passphrase-7";

on_both_stores!(
    a_refresh_rotates_and_the_previous_one_answers_the_same_for_a_moment,
    twenty_parallel_refreshes_answer_one_child_and_the_session_stays_whole,
    a_forged_or_garbage_refresh_ends_nothing,
    each_operation_starts_rotates_or_ends_sessions_as_the_table_says,
    the_session_list_and_ending_one_session,
    a_51st_session_ends_the_least_recently_used,
    sixteen_parallel_logins_at_the_session_cap_all_answer,
    no_refresh_past_the_session_cap,
);

async fn refresh(server: &TestServer, token: &str) -> Response {
    server
        .call(
            "POST",
            "/api/user/login/refresh/",
            None,
            Some(json!({ "refresh": token })),
        )
        .await
}

fn pair(response: &Response) -> (String, String) {
    let body = response.json();
    (
        body["token"].as_str().expect("a token").to_owned(),
        body["refresh"]
            .as_str()
            .expect("a refresh token")
            .to_owned(),
    )
}

async fn login_pair(server: &TestServer, email: &str, password: &str) -> (String, String) {
    let answer = server.login(email, password).await;
    answer.assert_status(200);
    pair(&answer)
}

async fn a_refresh_rotates_and_the_previous_one_answers_the_same_for_a_moment(backend: Backend) {
    let server = TestServer::start_on(backend).await;
    let (email, _) = server.signed_up("rotate").await;
    let (access, first) = login_pair(&server, &email, STRONG_PASSWORD).await;
    server.clock.advance(5);
    let rotated = refresh(&server, &first).await;
    rotated.assert_status(200);
    let (new_access, second) = pair(&rotated);
    assert_ne!(second, first);
    // Rotation does not revoke the earlier access token; the new one works too.
    server.view(&access).await.assert_status(200);
    server.view(&new_access).await.assert_status(200);
    // Within the reuse window, the previous token gets the very same answer.
    server.clock.advance(9);
    assert_eq!(
        pair(&refresh(&server, &first).await),
        (new_access.clone(), second.clone())
    );
    // After it, it is reuse: the whole session ends, its access tokens at once.
    server.clock.advance(2);
    assert_unauthorized(&refresh(&server, &first).await, REFUSED);
    assert_unauthorized(&refresh(&server, &second).await, REFUSED);
    assert_unauthorized(&server.view(&new_access).await, DECODE_ERROR);
}

async fn twenty_parallel_refreshes_answer_one_child_and_the_session_stays_whole(backend: Backend) {
    let server = TestServer::start_on(backend).await;
    let (email, _) = server.signed_up("parallel-refresh").await;
    let (_, first) = login_pair(&server, &email, STRONG_PASSWORD).await;
    let answers = join_all((0..20).map(|_| refresh(&server, &first)).collect()).await;
    let pairs: Vec<(String, String)> = answers
        .iter()
        .map(|a| {
            a.assert_status(200);
            pair(a)
        })
        .collect();
    assert!(pairs.iter().all(|p| *p == pairs[0]), "{pairs:?}");
    // The child rotates on: the session was not torn by the race.
    let next = refresh(&server, &pairs[0].1).await;
    next.assert_status(200);
    server.view(&pair(&next).0).await.assert_status(200);
}

async fn a_forged_or_garbage_refresh_ends_nothing(backend: Backend) {
    let server = TestServer::start_on(backend).await;
    let (email, _) = server.signed_up("forged").await;
    let (_, genuine) = login_pair(&server, &email, STRONG_PASSWORD).await;
    let (session, rest) = genuine.split_once('.').unwrap();
    let gen = rest.split('.').next().unwrap();
    for forged in [
        "garbage".to_owned(),
        format!("{session}.{gen}.{}", "0".repeat(64)),
        format!("{session}.7.{}", rest.split('.').nth(1).unwrap()),
        String::new(),
    ] {
        let answer = refresh(&server, &forged).await;
        assert!(matches!(answer.status, 400 | 401), "{}", answer.status);
    }
    refresh(&server, &genuine).await.assert_status(200);
}

async fn each_operation_starts_rotates_or_ends_sessions_as_the_table_says(backend: Backend) {
    let server = TestServer::start_on(backend).await;
    let (email, _) = server.signed_up("table").await;
    // Password change: every other session ends; the caller's stays.
    let (a_access, a_refresh) = login_pair(&server, &email, STRONG_PASSWORD).await;
    let (b_access, b_refresh) = login_pair(&server, &email, STRONG_PASSWORD).await;
    server
        .change_password(&a_access, STRONG_PASSWORD, NEW_PASSWORD)
        .await
        .assert_status(204);
    server.view(&a_access).await.assert_status(200);
    refresh(&server, &a_refresh).await.assert_status(200);
    assert_unauthorized(&server.view(&b_access).await, DECODE_ERROR);
    assert_unauthorized(&refresh(&server, &b_refresh).await, REFUSED);

    // totp/login makes the presented token's session OTP-verified and rotates it.
    let (access, _) = login_pair(&server, &email, NEW_PASSWORD).await;
    let created = server.totp_create(&access).await;
    let secret = otpauth_secret(created.json().as_str().unwrap());
    let verified = server.totp_login(&access, &server.code_now(&secret)).await;
    verified.assert_status(201);
    let (otp_access, otp_refresh) = pair(&verified);
    server.view(&otp_access).await.assert_status(200);
    // Its refresh keeps the OTP state.
    let refreshed = refresh(&server, &otp_refresh).await;
    server.view(&pair(&refreshed).0).await.assert_status(200);
    server.view(&access).await.assert_status(403);

    // totp/delete ends every session and starts one for the caller.
    let other = login_pair(&server, &email, NEW_PASSWORD).await;
    let deleted = server.totp_delete(&pair(&refreshed).0).await;
    deleted.assert_status(200);
    let (fresh_access, fresh_refresh) = pair(&deleted);
    assert_unauthorized(&refresh(&server, &other.1).await, REFUSED);
    server.view(&fresh_access).await.assert_status(200);
    refresh(&server, &fresh_refresh).await.assert_status(200);

    // Logout-all ends them all.
    let (access, last) = login_pair(&server, &email, NEW_PASSWORD).await;
    server.logout_all(&access).await.assert_status(204);
    assert_unauthorized(&refresh(&server, &last).await, REFUSED);

    // A completed reset ends them all.
    let (_, kept) = login_pair(&server, &email, NEW_PASSWORD).await;
    server.request_reset(&email).await.assert_status(204);
    let mail = server
        .wait_for_reset_mail(&email)
        .await
        .expect("reset mail");
    let (uid, token) = reset_link_parts(&mail);
    server
        .confirm_reset(&uid, &token, "yet-another-passphrase-5")
        .await
        .assert_status(204);
    assert_unauthorized(&refresh(&server, &kept).await, REFUSED);
}

fn session_ids(list: &Value) -> Vec<String> {
    list["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn the_session_list_and_ending_one_session(backend: Backend) {
    let server = TestServer::start_on(backend).await;
    let (email, first_access) = server.signed_up("list").await;
    server.clock.advance(5);
    let (access, _) = login_pair(&server, &email, STRONG_PASSWORD).await;
    let list = server
        .call("GET", "/api/user/sessions/", Some(&access), None)
        .await;
    list.assert_status(200);
    let list = list.json();
    let sessions = list["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    // Most recently used first, the caller's marked.
    assert_eq!(sessions[0]["current"], json!(true));
    assert_eq!(sessions[1]["current"], json!(false));
    assert_eq!(sessions[0]["ip"], json!(server.source_ip().to_string()));
    for field in ["created_at", "last_used_at", "user_agent"] {
        assert!(sessions[0].get(field).is_some(), "{field}");
    }
    let other = session_ids(&list)[1].clone();
    server
        .call(
            "DELETE",
            &format!("/api/user/sessions/{other}/"),
            Some(&access),
            None,
        )
        .await
        .assert_status(204);
    assert_unauthorized(&server.view(&first_access).await, DECODE_ERROR);
    server
        .call(
            "DELETE",
            &format!("/api/user/sessions/{other}/"),
            Some(&access),
            None,
        )
        .await
        .assert(404, json!({"detail": "Not found."}));
    // Another user's session is not one of the caller's.
    let (_, stranger) = server.signed_up("stranger").await;
    let theirs = session_ids(
        &server
            .call("GET", "/api/user/sessions/", Some(&stranger), None)
            .await
            .json(),
    )[0]
    .clone();
    server
        .call(
            "DELETE",
            &format!("/api/user/sessions/{theirs}/"),
            Some(&access),
            None,
        )
        .await
        .assert_status(404);
    server.view(&stranger).await.assert_status(200);
}

async fn a_51st_session_ends_the_least_recently_used(backend: Backend) {
    let server = TestServer::start_on(backend).await;
    let (email, _) = server.signed_up("capped").await;
    let (_, oldest) = login_pair(&server, &email, STRONG_PASSWORD).await;
    let mut last = String::new();
    for _ in 0..50 {
        server.clock.advance(1);
        last = login_pair(&server, &email, STRONG_PASSWORD).await.0;
    }
    let list = server
        .call("GET", "/api/user/sessions/", Some(&last), None)
        .await
        .json();
    assert_eq!(list["sessions"].as_array().unwrap().len(), 50);
    assert_unauthorized(&refresh(&server, &oldest).await, REFUSED);
}

/// At the cap every login evicts the same least recently used session, and one of them wins
/// each round: each must still get its session, none a 503 for losing too many rounds, and the
/// count stays at the cap. (The 503 was seen in the bench, slowed down under strace, with 8
/// rounds allowed; here, unslowed, 8 were enough: this guards the behaviour, not that number.)
async fn sixteen_parallel_logins_at_the_session_cap_all_answer(backend: Backend) {
    let server = TestServer::start_on(backend).await;
    let (email, _) = server.signed_up("crowded").await;
    for _ in 0..50 {
        server.clock.advance(1);
        login_pair(&server, &email, STRONG_PASSWORD).await;
    }
    // Newer than all fifty: the evictions take the oldest of those, never one of these.
    server.clock.advance(1);
    // Sixteen devices, each its own address (one address would meet the per-IP login limit):
    // each request takes the client of the address set just before its first poll.
    let logins = (0..16).map(|_| async {
        server.use_source_ip(random_loopback());
        server.login(&email, STRONG_PASSWORD).await
    });
    let answers = join_all(logins.collect()).await;
    for answer in &answers {
        answer.assert_status(200);
    }
    let list = server
        .call(
            "GET",
            "/api/user/sessions/",
            Some(&pair(&answers[0]).0),
            None,
        )
        .await
        .json();
    assert_eq!(list["sessions"].as_array().unwrap().len(), 50);
}

async fn no_refresh_past_the_session_cap(backend: Backend) {
    let server = TestServer::start_with(Options {
        backend,
        settings: Box::new(|s| s.session_max_secs = 1000),
        ..Options::default()
    })
    .await;
    let (email, _) = server.signed_up("cap").await;
    let (_, first) = login_pair(&server, &email, STRONG_PASSWORD).await;
    server.clock.advance(600);
    let second = pair(&refresh(&server, &first).await).1;
    server.clock.advance(401);
    assert_unauthorized(&refresh(&server, &second).await, REFUSED);
}
