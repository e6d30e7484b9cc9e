//! Security events (docs/api.md#security-events): the owner's notices arrive, through the
//! outbox and through SES, with the facts and without any secret; the security log pages
//! newest first behind the OTP gate; a deleted account's trail goes.

use std::time::Duration;

use api_tests::*;
use auth::domain::records::UserId;
use serde_json::{json, Value};

const NEW_PASSWORD: &str = "another-long-passphrase-4";
const NOTICE: &str = "Subject: Security notice from Accounts: ";

fn mails_to(server: &TestServer, to: &str) -> Vec<String> {
    server
        .outbox_messages()
        .into_iter()
        .filter(|m| m.contains(&format!("To: {to}\r\n")))
        .collect()
}

async fn events(server: &TestServer, token: &str, query: &str) -> Response {
    server
        .call(
            "GET",
            &format!("/api/user/events/{query}"),
            Some(token),
            None,
        )
        .await
}

fn names(page: &Value) -> Vec<String> {
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn each_security_change_mails_its_notice_with_the_facts_and_no_secret() {
    let server = TestServer::start().await;
    let (email, token) = server.signed_up("notices").await;
    let ip = server.source_ip().to_string();

    server
        .change_password(&token, STRONG_PASSWORD, NEW_PASSWORD)
        .await
        .assert_status(204);
    let changed = server
        .wait_for_mail(&email, &format!("{NOTICE}Your password was changed"))
        .await
        .expect("a password-changed notice");
    assert!(
        changed.contains(&format!("From IP address: {ip}")),
        "{changed}"
    );
    assert!(changed.contains("(UTC)"));
    assert!(changed.contains("If this was not you, reset your password"));
    assert!(!changed.contains(NEW_PASSWORD) && !changed.contains(STRONG_PASSWORD));
    assert!(!changed.contains("http"), "no link in a notice: {changed}");

    let created = server.totp_create(&token).await;
    let secret = otpauth_secret(created.json().as_str().unwrap());
    let otp = server
        .totp_login(&token, &server.code_now(&secret))
        .await
        .token();
    server
        .wait_for_mail(
            &email,
            &format!("{NOTICE}Two-factor authentication was turned on"),
        )
        .await
        .expect("a totp-enabled notice");

    let codes = server.static_create(&otp).await.json();
    let codes: Vec<String> = codes
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    server
        .wait_for_mail(&email, &format!("{NOTICE}New emergency codes were created"))
        .await
        .expect("a codes-generated notice");
    server
        .static_login(&token, &codes[0])
        .await
        .assert_status(201);
    let used = server
        .wait_for_mail(&email, &format!("{NOTICE}An emergency code was used"))
        .await
        .expect("a code-used notice");
    assert!(used.contains("Emergency codes left: 5."), "{used}");

    server.totp_delete(&otp).await.assert_status(200);
    server
        .wait_for_mail(
            &email,
            &format!("{NOTICE}Two-factor authentication was turned off"),
        )
        .await
        .expect("a totp-removed notice");

    for mail in mails_to(&server, &email) {
        for code in &codes {
            assert!(!mail.contains(code.as_str()), "a code in a mail: {mail}");
        }
        assert!(!mail.contains(&token) && !mail.contains(&otp));
        assert!(!mail.contains("secret="), "{mail}");
    }
}

#[tokio::test]
async fn a_completed_reset_and_a_deletion_are_noticed() {
    let server = TestServer::start().await;
    let (email, _) = server.signed_up("reset-notice").await;
    server.request_reset(&email).await.assert_status(204);
    let mail = server
        .wait_for_reset_mail(&email)
        .await
        .expect("reset mail");
    let (uid, reset_token) = reset_link_parts(&mail);
    server
        .confirm_reset(&uid, &reset_token, NEW_PASSWORD)
        .await
        .assert_status(204);
    let notice = server
        .wait_for_mail(&email, &format!("{NOTICE}Your password was reset"))
        .await
        .expect("a reset-completed notice");
    assert!(!notice.contains(&reset_token));

    let token = server.login(&email, NEW_PASSWORD).await.token();
    server
        .delete_user(&token, NEW_PASSWORD)
        .await
        .assert_status(204);
    server
        .wait_for_mail(&email, &format!("{NOTICE}Your account was deleted"))
        .await
        .expect("an account-deleted notice");
}

#[tokio::test]
async fn notices_are_off_with_notify_security_events_false() {
    let server = TestServer::start_with(Options {
        settings: Box::new(|s| s.notify_security_events = false),
        ..Options::default()
    })
    .await;
    let (email, token) = server.signed_up("quiet").await;
    server
        .change_password(&token, STRONG_PASSWORD, NEW_PASSWORD)
        .await
        .assert_status(204);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(mails_to(&server, &email).is_empty());
}

#[tokio::test]
async fn a_notice_goes_through_ses() {
    let server = TestServer::start_with(Options {
        backend: Backend::DynamoDb,
        mail: MailBackend::Ses,
        ..Options::default()
    })
    .await;
    let (email, token) = server.signed_up("ses-notice").await;
    server
        .change_password(&token, STRONG_PASSWORD, NEW_PASSWORD)
        .await
        .assert_status(204);
    let message = ses_message(&email, "Security notice from")
        .await
        .expect("the notice reached SES");
    assert_eq!(
        message["subject"],
        "Security notice from Accounts: Your password was changed"
    );
    assert!(!message.to_string().contains(NEW_PASSWORD));
}

async fn the_security_log_pages_newest_first_behind_the_otp_gate(backend: Backend) {
    use auth::clock::Clock;
    let server = TestServer::start_on(backend).await;
    // Start 10 s into an hour, so that the whole flow is in it (failures count per hour).
    let now = server.clock.now();
    server.clock.advance(3600 - now.rem_euclid(3600) + 10);
    let (email, token) = server.signed_up("log").await;
    for _ in 0..3 {
        server
            .login(&email, STRONG_PASSWORD)
            .await
            .assert_status(200);
        server.clock.advance(1);
    }
    server
        .login(&email, "wrong-password-1")
        .await
        .assert_status(400);
    server
        .login(&email, "wrong-password-2")
        .await
        .assert_status(400);
    server
        .change_password(&token, STRONG_PASSWORD, NEW_PASSWORD)
        .await
        .assert_status(204);

    let first = events(&server, &token, "?limit=2").await;
    first.assert_status(200);
    let first = first.json();
    assert_eq!(names(&first), ["password.changed", "login.succeeded"]);
    assert_eq!(
        first["events"][0]["ip"],
        json!(server.source_ip().to_string())
    );
    let cursor = first["next"].as_str().expect("a next page").to_owned();
    let second = events(&server, &token, &format!("?limit=2&cursor={cursor}"))
        .await
        .json();
    assert_eq!(names(&second), ["login.succeeded", "login.succeeded"]);
    let cursor = second["next"].as_str().expect("a last page").to_owned();
    let third = events(&server, &token, &format!("?cursor={cursor}"))
        .await
        .json();
    // Failed logins are counted per hour, shown at the hour's start.
    assert_eq!(names(&third), ["login.succeeded", "login.failed"]);
    assert_eq!(third["events"][1]["count"], json!(2));
    assert_eq!(third["next"], Value::Null);

    events(&server, &token, "?limit=0").await.assert(
        400,
        json!({"limit": ["Ensure this value is between 1 and 100."]}),
    );
    events(&server, &token, "?limit=101&cursor=nope")
        .await
        .assert(
            400,
            json!({
                "limit": ["Ensure this value is between 1 and 100."],
                "cursor": ["Invalid cursor."]
            }),
        );

    // With a confirmed device, a password-only token is refused (and that is logged too).
    server.clock.advance(1);
    let created = server.totp_create(&token).await;
    let secret = otpauth_secret(created.json().as_str().unwrap());
    let otp = server
        .totp_login(&token, &server.code_now(&secret))
        .await
        .token();
    server.clock.advance(1);
    events(&server, &token, "").await.assert_status(403);
    let log = names(&events(&server, &otp, "?limit=4").await.json());
    assert_eq!(log[0], "otp.gate_refused");
    let mut enrolment = log[1..3].to_vec();
    enrolment.sort();
    assert_eq!(enrolment, ["otp.succeeded", "totp.enabled"]);
    assert_eq!(log[3], "password.changed");
}

#[tokio::test]
async fn the_security_log_pages_newest_first_behind_the_otp_gate_on_the_embedded_store() {
    the_security_log_pages_newest_first_behind_the_otp_gate(Backend::Embedded).await;
}

#[tokio::test]
async fn the_security_log_pages_newest_first_behind_the_otp_gate_on_dynamodb() {
    the_security_log_pages_newest_first_behind_the_otp_gate(Backend::DynamoDb).await;
}

#[tokio::test]
async fn a_deleted_accounts_trail_is_removed_after_the_request() {
    for backend in [Backend::Embedded, Backend::DynamoDb] {
        let server = TestServer::start_on(backend).await;
        let (email, token) = server.signed_up("purged").await;
        let id = UserId(server.view(&token).await.json()["id"].as_u64().unwrap());
        let store = &server.app.service.store;
        assert!(!store.trail(id, "~", 10).await.unwrap().is_empty());
        server
            .delete_user(&token, STRONG_PASSWORD)
            .await
            .assert_status(204);
        server
            .wait_for_mail(&email, "Your account was deleted")
            .await
            .expect("the deletion notice, sent after the purge");
        assert!(
            store.trail(id, "~", 10).await.unwrap().is_empty(),
            "{backend:?}"
        );
    }
}
