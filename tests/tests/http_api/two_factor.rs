use api_tests::*;
use serde_json::json;

on_both_stores!(
    the_full_two_factor_flow_works,
    a_replayed_totp_code_is_refused,
    concurrent_uses_of_one_totp_code_succeed_once,
    a_reused_emergency_code_is_refused,
    concurrent_uses_of_one_emergency_code_succeed_once,
    wrong_totp_codes_are_throttled_with_exponential_backoff,
    wrong_emergency_codes_are_throttled,
);

/// The whole two-factor journey of SPEC §3 and §7 on one backend.
async fn the_full_two_factor_flow_works(backend: Backend) {
    let server = TestServer::start_on(backend).await;
    let (email, password_token) = server.signed_up("flow").await;

    let created = server.totp_create(&password_token).await;
    assert_eq!(created.status, 201);
    let url = created.json().as_str().unwrap().to_owned();
    assert!(url.starts_with("otpauth://totp/Accounts:"), "{url}");
    assert!(
        url.contains("&algorithm=SHA1&digits=6&period=30&issuer=Accounts"),
        "{url}"
    );
    let secret = otpauth_secret(&url);
    assert_eq!(secret.len(), 20);
    // An unconfirmed device answers the same secret again; it does not gate anything yet.
    assert_eq!(server.totp_create(&password_token).await.json(), json!(url));
    assert_eq!(server.view(&password_token).await.status, 200);

    let verified = server
        .totp_login(&password_token, &server.code_now(&secret))
        .await;
    assert_eq!(verified.status, 201);
    let otp_token = verified.token();

    // The gate: the password-only token is refused, the verified one accepted.
    server.view(&password_token).await.assert(
        403,
        json!({"detail": "You do not have permission to perform this action until you verify your OTP device."}),
    );
    assert_eq!(server.view(&otp_token).await.status, 200);
    // A confirmed device's secret is never shown again.
    assert_eq!(server.totp_create(&otp_token).await.status, 409);

    let codes = server.static_create(&otp_token).await;
    assert_eq!(codes.status, 201);
    let codes: Vec<String> = serde_json::from_value(codes.json()).unwrap();
    assert_eq!(codes.len(), 6);
    let fresh_login = server.login(&email, STRONG_PASSWORD).await.token();
    let by_code = server.static_login(&fresh_login, &codes[0]).await;
    assert_eq!(by_code.status, 201);
    assert_eq!(server.view(&by_code.token()).await.status, 200);

    let deleted = server.totp_delete(&otp_token).await;
    assert_eq!(deleted.status, 200);
    let after_delete = deleted.token();
    assert_eq!(server.view(&after_delete).await.status, 200);
    // The delete rotated the token generation: every earlier token is dead.
    assert_eq!(server.view(&otp_token).await.status, 401);
    assert_eq!(server.view(&by_code.token()).await.status, 401);
    // A password-only login suffices again.
    let again = server.login(&email, STRONG_PASSWORD).await.token();
    assert_eq!(server.view(&again).await.status, 200);
}

#[tokio::test]
async fn the_harness_totp_agrees_with_pyotp() {
    let python = std::env::var("PYOTP_PYTHON")
        .expect("PYOTP_PYTHON is set by ./scripts/test (pyotp is the independent TOTP oracle)");
    let secret = b"0123456789abcdefghij";
    let encoded = "GAYTEMZUGU3DOOBZMFRGGZDFMZTWQ2LK";
    let t = 1_700_000_000i64;
    let out = std::process::Command::new(python)
        .args([
            "-c",
            &format!("import pyotp; print(pyotp.TOTP('{encoded}').at({t}))"),
        ])
        .output()
        .expect("run pyotp");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(base32_decode(encoded), secret);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        totp_code(secret, t)
    );
}

async fn a_replayed_totp_code_is_refused(backend: Backend) {
    let server = TestServer::start_on(backend).await;
    let (_, secret, token) = server.enrolled("replay").await;
    // The enrolment used the current step; the same code again is a replay.
    let replay = server.totp_login(&token, &server.code_now(&secret)).await;
    assert_eq!((replay.status, replay.body.len()), (400, 0));
    server.clock.advance(30);
    assert_eq!(
        server
            .totp_login(&token, &server.code_now(&secret))
            .await
            .status,
        201
    );
}

async fn concurrent_uses_of_one_totp_code_succeed_once(backend: Backend) {
    let server = TestServer::start_on(backend).await;
    let (_, token) = server.signed_up("race").await;
    let secret = otpauth_secret(server.totp_create(&token).await.json().as_str().unwrap());
    let code = server.code_now(&secret);
    let attempts = (0..10).map(|_| server.totp_login(&token, &code));
    let statuses: Vec<u16> = statuses(attempts).await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{backend:?}: {statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 201 || *s == 400),
        "{statuses:?}"
    );
}

async fn a_reused_emergency_code_is_refused(backend: Backend) {
    let server = TestServer::start_on(backend).await;
    let (_, _, token) = server.enrolled("reuse").await;
    let codes: Vec<String> =
        serde_json::from_value(server.static_create(&token).await.json()).unwrap();
    assert_eq!(server.static_login(&token, &codes[1]).await.status, 201);
    let again = server.static_login(&token, &codes[1]).await;
    assert_eq!((again.status, again.body.len()), (400, 0));
}

async fn concurrent_uses_of_one_emergency_code_succeed_once(backend: Backend) {
    let server = TestServer::start_on(backend).await;
    let (_, _, token) = server.enrolled("codes-race").await;
    let codes: Vec<String> =
        serde_json::from_value(server.static_create(&token).await.json()).unwrap();
    let attempts = (0..10).map(|_| server.static_login(&token, &codes[0]));
    let statuses = statuses(attempts).await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{backend:?}: {statuses:?}"
    );
}

#[tokio::test]
async fn creating_emergency_codes_replaces_the_old_ones() {
    let server = TestServer::start().await;
    let (_, _, token) = server.enrolled("replace").await;
    let old: Vec<String> =
        serde_json::from_value(server.static_create(&token).await.json()).unwrap();
    let new: Vec<String> =
        serde_json::from_value(server.static_create(&token).await.json()).unwrap();
    assert!(new
        .iter()
        .all(|c| c.len() == 8 && c.bytes().all(|b| matches!(b, b'a'..=b'z' | b'2'..=b'7'))));
    assert_eq!(server.static_login(&token, &old[0]).await.status, 400);
    // That failure throttles codes for 2^0 s.
    server.clock.advance(1);
    assert_eq!(server.static_login(&token, &new[0]).await.status, 201);
}

#[tokio::test]
async fn emergency_codes_are_stored_only_as_keyed_hashes() {
    let server = TestServer::start().await;
    let (email, _, token) = server.enrolled("hashed").await;
    let codes: Vec<String> =
        serde_json::from_value(server.static_create(&token).await.json()).unwrap();
    let user = server
        .app
        .service
        .store
        .user_by_email(&email)
        .await
        .unwrap()
        .unwrap();
    let stored = format!("{:?}", user.static_codes);
    assert!(
        codes.iter().all(|c| !stored.contains(c.as_str())),
        "{stored}"
    );
}

#[tokio::test]
async fn emergency_codes_need_a_confirmed_totp_device() {
    let server = TestServer::start().await;
    let (_, token) = server.signed_up("nodevice").await;
    let refused = server.static_create(&token).await;
    assert_eq!(refused.status, 400);
    assert!(refused.json()["detail"].is_string());
    // An unconfirmed device does not count either.
    server.totp_create(&token).await;
    assert_eq!(server.static_create(&token).await.status, 400);
}

#[tokio::test]
async fn malformed_code_segments_are_not_found() {
    let server = TestServer::start().await;
    let (_, token) = server.signed_up("shape").await;
    for path in [
        "/api/totp/login/12345/",
        "/api/totp/login/1234567/",
        "/api/totp/login/12a456/",
    ] {
        assert_eq!(
            server.call("POST", path, Some(&token), None).await.status,
            404,
            "{path}"
        );
    }
    for path in [
        "/api/static/login/ABCDEFGH/",
        "/api/static/login/abcdefg1/",
        "/api/static/login/abc/",
    ] {
        assert_eq!(
            server.call("GET", path, Some(&token), None).await.status,
            404,
            "{path}"
        );
    }
}

async fn wrong_totp_codes_are_throttled_with_exponential_backoff(backend: Backend) {
    let server = TestServer::start_on(backend).await;
    let (_, secret, token) = server.enrolled("throttle").await;
    server.clock.advance(30);
    let wrong = if server.code_now(&secret) == "000000" {
        "111111"
    } else {
        "000000"
    };
    // Failure 1 at t; within 2^0 s even the right code is refused without counting.
    assert_eq!(server.totp_login(&token, wrong).await.status, 400);
    assert_eq!(
        server
            .totp_login(&token, &server.code_now(&secret))
            .await
            .status,
        400
    );
    server.clock.advance(1);
    // Failure 2; the wait becomes 2 s.
    assert_eq!(server.totp_login(&token, wrong).await.status, 400);
    server.clock.advance(1);
    assert_eq!(
        server
            .totp_login(&token, &server.code_now(&secret))
            .await
            .status,
        400
    );
    server.clock.advance(1);
    assert_eq!(
        server
            .totp_login(&token, &server.code_now(&secret))
            .await
            .status,
        201
    );
}

async fn wrong_emergency_codes_are_throttled(backend: Backend) {
    let server = TestServer::start_on(backend).await;
    let (_, _, token) = server.enrolled("codes-throttle").await;
    let codes: Vec<String> =
        serde_json::from_value(server.static_create(&token).await.json()).unwrap();
    assert_eq!(server.static_login(&token, "aaaaaaaa").await.status, 400);
    assert_eq!(server.static_login(&token, &codes[0]).await.status, 400);
    server.clock.advance(1);
    assert_eq!(server.static_login(&token, &codes[0]).await.status, 201);
}

#[tokio::test]
async fn a_hundred_totp_failures_lock_totp_until_an_emergency_code_is_used() {
    // The clock runs a day forward: the token must outlive it.
    let server = TestServer::start_with(Options {
        settings: Box::new(|s| s.token_lifetime_secs = 1_000_000),
        ..Options::default()
    })
    .await;
    let (_, secret, token) = server.enrolled("lockout").await;
    let codes: Vec<String> =
        serde_json::from_value(server.static_create(&token).await.json()).unwrap();
    for _ in 0..100 {
        server.clock.advance(901);
        let wrong = if server.code_now(&secret) == "000000" {
            "111111"
        } else {
            "000000"
        };
        assert_eq!(server.totp_login(&token, wrong).await.status, 400);
    }
    server.clock.advance(901);
    assert_eq!(
        server
            .totp_login(&token, &server.code_now(&secret))
            .await
            .status,
        400
    );
    assert_eq!(server.static_login(&token, &codes[0]).await.status, 201);
    server.clock.advance(30);
    assert_eq!(
        server
            .totp_login(&token, &server.code_now(&secret))
            .await
            .status,
        201
    );
}

#[tokio::test]
async fn a_token_naming_another_users_device_is_not_verified() {
    let server = TestServer::start().await;
    let (_, _, alice_verified) = server.enrolled("alice").await;
    let (_, _, bob_verified) = server.enrolled("bob").await;
    // Bob's own verified token works; a token is tied to its user, so Alice's device id cannot
    // verify Bob: Bob's password-only token stays gated.
    assert_eq!(server.view(&bob_verified).await.status, 200);
    assert_eq!(server.view(&alice_verified).await.status, 200);
    let bob_email = server.view(&bob_verified).await.json()["email"]
        .as_str()
        .unwrap()
        .to_owned();
    let bob_password_only = server.login(&bob_email, STRONG_PASSWORD).await.token();
    assert_eq!(server.view(&bob_password_only).await.status, 403);
}

#[tokio::test]
async fn a_token_from_a_deleted_device_is_not_verified_for_a_new_one() {
    let server = TestServer::start().await;
    let (email, _, verified) = server.enrolled("redo").await;
    let fresh = server.totp_delete(&verified).await.token();
    let secret = otpauth_secret(server.totp_create(&fresh).await.json().as_str().unwrap());
    server.clock.advance(30);
    assert_eq!(
        server
            .totp_login(&fresh, &server.code_now(&secret))
            .await
            .status,
        201
    );
    // The pre-delete token is dead (generation rotated) and a password-only token is gated.
    assert_eq!(server.view(&verified).await.status, 401);
    let password_only = server.login(&email, STRONG_PASSWORD).await.token();
    assert_eq!(server.view(&password_only).await.status, 403);
}

async fn statuses<F: std::future::Future<Output = Response>>(
    attempts: impl Iterator<Item = F>,
) -> Vec<u16> {
    join_all(attempts.collect())
        .await
        .iter()
        .map(|r| r.status)
        .collect()
}
