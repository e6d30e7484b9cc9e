//! How many DynamoDB calls each endpoint makes, counted by an SDK interceptor against the
//! emulator. The targets (issue #2) are asserted; the whole table is printed for the bench
//! (`cargo test ... dynamodb_calls -- --nocapture`).

use api_tests::{Backend, Options, TestServer, STRONG_PASSWORD};

const READS: [&str; 4] = ["GetItem", "BatchGetItem", "Query", "TransactGetItems"];

fn reads(calls: &[String]) -> usize {
    calls.iter().filter(|c| READS.contains(&c.as_str())).count()
}

fn report(endpoint: &str, calls: &[String]) {
    println!(
        "dynamodb calls  {endpoint:<28} {:>2} ({} reads)  {}",
        calls.len(),
        reads(calls),
        calls.join(", ")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn view_makes_one_dynamodb_call_and_login_two_reads_and_at_most_two_writes() {
    let server = TestServer::start_with(Options {
        backend: Backend::DynamoDb,
        deliver_mail: false,
        ..Options::default()
    })
    .await;
    let calls = &server.dynamo_calls;
    let email = api_tests::unique_email("calls");

    server
        .create_user(&email, STRONG_PASSWORD)
        .await
        .assert_status(201);
    report("POST /api/user/create/", &calls.take());

    let logged_in = server.login(&email, STRONG_PASSWORD).await;
    let token = logged_in.token();
    let login = calls.take();
    report("POST /api/user/login/", &login);
    // Counted before checked (one transaction over its limits' scopes), cleared, and a
    // session started (with its event) in one more.
    assert!(reads(&login) <= 2, "{login:?}");
    assert!(login.len() - reads(&login) <= 3, "{login:?}");

    let refresh_token = logged_in.json()["refresh"].as_str().unwrap().to_owned();
    let refreshed = server
        .call(
            "POST",
            "/api/user/login/refresh/",
            None,
            Some(serde_json::json!({ "refresh": refresh_token })),
        )
        .await;
    refreshed.assert_status(200);
    let refresh = calls.take();
    report("POST /api/user/login/refresh/", &refresh);
    assert_eq!(refresh, ["GetItem", "TransactWriteItems"]);
    let forged = format!("{}.0", &refresh_token[..refresh_token.len() - 2]);
    server
        .call(
            "POST",
            "/api/user/login/refresh/",
            None,
            Some(serde_json::json!({ "refresh": forged })),
        )
        .await
        .assert_status(401);
    assert_eq!(
        calls.take(),
        Vec::<String>::new(),
        "a forged refresh reads nothing"
    );

    server.view(&token).await.assert_status(200);
    let view = calls.take();
    report("GET /api/user/view/", &view);
    assert_eq!(view, ["GetItem"]);

    server
        .call("GET", "/api/user/events/", Some(&token), None)
        .await
        .assert_status(200);
    let log = calls.take();
    report("GET /api/user/events/", &log);
    assert_eq!(log, ["GetItem", "Query", "Query"], "bounded by the page");

    server
        .login(&email, "not-the-password-1")
        .await
        .assert_status(400);
    let failed = calls.take();
    report("POST /api/user/login/ (wrong)", &failed);
    // Counted when it was reserved; after the hash, only its hour's count for the log.
    assert!(
        reads(&failed) <= 2 && failed.len() - reads(&failed) <= 2,
        "{failed:?}"
    );

    server
        .change_password(&token, STRONG_PASSWORD, "another-long-passphrase-4")
        .await
        .assert_status(204);
    report("POST /api/user/password/change/", &calls.take());

    server.request_reset(&email).await.assert_status(204);
    report("POST /api/user/password/reset/", &calls.take());

    let created = server.totp_create(&token).await;
    created.assert_status(201);
    report("GET /api/totp/create/", &calls.take());
    let secret = api_tests::otpauth_secret(created.json().as_str().unwrap());
    let verified = server.totp_login(&token, &server.code_now(&secret)).await;
    report("POST /api/totp/login/{code}/", &calls.take());
    let otp_token = verified.token();

    let codes = server.static_create(&otp_token).await;
    codes.assert_status(201);
    report("GET /api/static/create/", &calls.take());
    let code = codes.json()[0].as_str().unwrap().to_owned();
    server.static_login(&token, &code).await.assert_status(201);
    report("POST /api/static/login/{code}/", &calls.take());

    server.totp_delete(&otp_token).await.assert_status(200);
    report("POST /api/totp/delete/", &calls.take());

    let token = server
        .login(&email, "another-long-passphrase-4")
        .await
        .token();
    calls.take();
    server.logout_all(&token).await.assert_status(204);
    report("POST /api/user/logout/all/", &calls.take());

    let token = server
        .login(&email, "another-long-passphrase-4")
        .await
        .token();
    calls.take();
    server
        .delete_user(&token, "another-long-passphrase-4")
        .await
        .assert_status(204);
    report("DELETE /api/user/delete/", &calls.take());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_token_is_refused_without_any_dynamodb_call() {
    let server = TestServer::start_with(Options {
        backend: Backend::DynamoDb,
        deliver_mail: false,
        ..Options::default()
    })
    .await;
    let forged = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ1c2VyX2lkIjoxfQ.c2lnbmF0dXJl";
    server.view(forged).await.assert_status(401);
    assert_eq!(server.dynamo_calls.take(), Vec::<String>::new());
}
