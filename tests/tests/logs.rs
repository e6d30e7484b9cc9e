//! What the service logs over a whole flow, captured: every security event is one JSON line
//! with its event, user id, client IP, user agent, request id and time, and no line anywhere
//! carries a password, token, code, secret or link. (Its own test binary: it installs the
//! process's log subscriber.)

use std::io::Write;
use std::sync::{Arc, Mutex};

use api_tests::*;
use serde_json::Value;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_full_flows_logs_carry_the_event_fields_and_never_a_secret() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .json()
        .with_writer(move || writer.clone())
        .try_init()
        .expect("the only subscriber of this test binary");

    let server = TestServer::start().await;
    let new_password = "another-long-passphrase-4";
    let (email, token) = server.signed_up("logged").await;
    server
        .login(&email, "a-wrong-password-1")
        .await
        .assert_status(400);
    server
        .change_password(&token, STRONG_PASSWORD, new_password)
        .await
        .assert_status(204);
    server.request_reset(&email).await.assert_status(204);
    let mail = server
        .wait_for_reset_mail(&email)
        .await
        .expect("reset mail");
    let (uid, reset_token) = reset_link_parts(&mail);
    let final_password = "yet-another-passphrase-5";
    server
        .confirm_reset(&uid, &reset_token, final_password)
        .await
        .assert_status(204);
    let token = server.login(&email, final_password).await.token();
    let url = server
        .totp_create(&token)
        .await
        .json()
        .as_str()
        .unwrap()
        .to_owned();
    let secret = otpauth_secret(&url);
    let code = server.code_now(&secret);
    let otp = server.totp_login(&token, &code).await.token();
    let codes = server.static_create(&otp).await.json();
    let first_code = codes[0].as_str().unwrap().to_owned();
    server
        .static_login(&token, &first_code)
        .await
        .assert_status(201);
    server
        .static_login(&token, "aaaaaaaa")
        .await
        .assert_status(400);
    server.view(&token).await.assert_status(403);
    server
        .call("GET", "/api/user/events/", Some(&otp), None)
        .await
        .assert_status(200);
    server
        .delete_user(&otp, final_password)
        .await
        .assert_status(204);
    server
        .wait_for_mail(&email, "Your account was deleted")
        .await
        .expect("the deletion notice");

    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let secrets = [
        STRONG_PASSWORD.to_owned(),
        new_password.to_owned(),
        final_password.to_owned(),
        token.clone(),
        otp.clone(),
        reset_token.clone(),
        code.clone(),
        first_code.clone(),
        url.split("secret=")
            .nth(1)
            .unwrap()
            .split('&')
            .next()
            .unwrap()
            .to_owned(),
        // The reset link (the front end's page with the uid and token).
        "localhost:3000/password/reset/confirm".to_owned(),
    ];
    for secret in &secrets {
        assert!(
            !text.contains(secret.as_str()),
            "a log line holds {secret:?}"
        );
    }
    let events: Vec<Value> = text
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["fields"]["message"] == "security event")
        .collect();
    let names: Vec<&str> = events
        .iter()
        .filter_map(|e| e["fields"]["event"].as_str())
        .collect();
    for expected in [
        "login.succeeded",
        "login.failed",
        "password.changed",
        "password.reset_requested",
        "password.reset_completed",
        "totp.enabled",
        "otp.succeeded",
        "codes.generated",
        "code.used",
        "otp.failed",
        "otp.gate_refused",
        "account.deleted",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} not logged: {names:?}"
        );
    }
    for event in &events {
        let fields = &event["fields"];
        for field in ["event", "ip", "user_agent", "request_id", "at"] {
            assert!(fields.get(field).is_some(), "{field} missing in {event}");
        }
        assert!(
            !fields["request_id"].as_str().unwrap_or("").is_empty(),
            "{event}"
        );
    }
    assert!(events
        .iter()
        .any(|e| e["fields"]["user_id"].as_u64().is_some()));
}
