//! The account lifecycle (docs/api.md#re-authentication, #recovery, #activation): a stolen
//! password-only token can no longer take two-factor over once its password proof is old; the
//! session cap; recovery of a lost authenticator (password and mailbox, then time); optional
//! activation. On both stores.

use api_tests::*;
use serde_json::json;

use crate::support::*;

const REAUTH: &str = "Log in again to change two-factor settings.";
const NOTICE: &str = "Subject: Security notice from Accounts: ";
const DISABLED: &str = "User account is disabled.";
const NEW_PASSWORD: &str = "a-brand-new-passphrase-7";

macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(api_tests::Backend::Embedded).await;
                }
            )*
        }
        mod dynamodb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(api_tests::Backend::DynamoDb).await;
                }
            )*
        }
    };
}

on_both_stores!(
    the_takeover_with_a_stolen_token_fails_once_its_password_proof_is_old,
    refusals_come_in_order_token_then_otp_gate_then_reauthentication,
    no_token_outlives_the_session_cap_through_code_logins,
    a_lost_authenticator_is_recovered_with_the_password_the_mailbox_and_time,
    a_code_login_cancels_a_recovery,
    activation_when_it_is_on,
);

fn link_parts(mail: &str, path: &str) -> (String, String) {
    let start = mail.find(path).expect("a link in the mail") + path.len();
    let mut parts = mail[start..].split('/');
    let uid = parts.next().unwrap().to_owned();
    let token: String = parts
        .next()
        .unwrap()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    (uid, token)
}

async fn recover(server: &TestServer, uid: &str, token: &str) -> Response {
    server
        .call(
            "POST",
            "/api/totp/recovery/",
            None,
            Some(json!({"uid": uid, "token": token})),
        )
        .await
}

async fn request_recovery(server: &TestServer, token: &str) -> Response {
    server
        .call("POST", "/api/totp/recovery/request/", Some(token), None)
        .await
}

async fn the_takeover_with_a_stolen_token_fails_once_its_password_proof_is_old(backend: Backend) {
    let server = TestServer::start_on(backend).await;
    let (email, stolen) = server.signed_up("victim").await;
    server.clock.advance(301);
    // Step 1 of the takeover: enrol the thief's authenticator.
    server
        .totp_create(&stolen)
        .await
        .assert(403, json!({"detail": REAUTH}));

    // Within the window the same steps still work, and the owner is told at once.
    let (_, fresh) = server.signed_up("victim-2").await;
    let created = server.totp_create(&fresh).await;
    created.assert_status(201);
    let secret = otpauth_secret(created.json().as_str().unwrap());
    let otp = server
        .totp_login(&fresh, &server.code_now(&secret))
        .await
        .token();
    let owner = server.view(&otp).await.json()["email"]
        .as_str()
        .unwrap()
        .to_owned();
    server
        .wait_for_mail(
            &owner,
            &format!("{NOTICE}Two-factor authentication was turned on"),
        )
        .await
        .expect("the owner's notice");
    let _ = email;
}

async fn refusals_come_in_order_token_then_otp_gate_then_reauthentication(backend: Backend) {
    let server = TestServer::start_on(backend).await;
    let (email, _, otp) = server.enrolled("order").await;
    let password_only = server.login(&email, STRONG_PASSWORD).await.token();
    server.clock.advance(301);
    server
        .call("GET", "/api/static/create/", None, None)
        .await
        .assert_status(401);
    // A password-only token meets the OTP gate before re-authentication.
    server.static_create(&password_only).await.assert(
        403,
        json!({"detail": "You do not have permission to perform this action until you verify your OTP device."}),
    );
    // An old OTP-verified token passes the gate and meets re-authentication, before the 409
    // of a confirmed device's totp/create.
    for answer in [
        server.static_create(&otp).await,
        server.totp_delete(&otp).await,
        server.totp_create(&otp).await,
    ] {
        answer.assert(403, json!({"detail": REAUTH}));
    }
}

async fn no_token_outlives_the_session_cap_through_code_logins(backend: Backend) {
    let server = TestServer::start_with(Options {
        backend,
        settings: Box::new(|s| s.session_max_secs = 1000),
        ..Options::default()
    })
    .await;
    let (email, secret, _) = server.enrolled("capped").await;
    server.clock.advance(600);
    let token = server.login(&email, STRONG_PASSWORD).await.token();
    server.clock.advance(300);
    // A code login copies the password proof's time: its token is no newer a session.
    let otp = server
        .totp_login(&token, &server.code_now(&secret))
        .await
        .token();
    server.view(&otp).await.assert_status(200);
    server.clock.advance(701);
    assert_unauthorized(&server.view(&otp).await, EXPIRED);
}

async fn a_lost_authenticator_is_recovered_with_the_password_the_mailbox_and_time(
    backend: Backend,
) {
    let server = TestServer::start_on(backend).await;
    let (email, secret, _) = server.enrolled("lost").await;
    let _ = secret;
    let token = server.login(&email, STRONG_PASSWORD).await.token();
    request_recovery(&server, &token).await.assert_status(204);
    let mail = server
        .wait_for_mail(&email, "Two-factor recovery on")
        .await
        .expect("a recovery link");
    let (uid, link) = link_parts(&mail, "/totp/recovery/");
    // No enumeration: an unknown uid and a bad token read the same.
    let invalid = json!({"non_field_errors": ["Invalid token for given user."]});
    recover(&server, "OTk5OTk5", &link)
        .await
        .assert(400, invalid.clone());
    let last = if link.ends_with('0') { '1' } else { '0' };
    let tampered = format!("{}{last}", &link[..link.len() - 1]);
    recover(&server, &uid, &tampered)
        .await
        .assert(400, invalid.clone());
    recover(&server, &uid, &link).await.assert_status(204);
    server
        .wait_for_mail(
            &email,
            "recovery of your account's two-factor authentication was started",
        )
        .await
        .expect("a recovery-started notice");
    // The link works once.
    recover(&server, &uid, &link).await.assert(400, invalid);
    // Until the wait is over, the device still gates.
    let token = server.login(&email, STRONG_PASSWORD).await.token();
    server.view(&token).await.assert_status(403);
    server.clock.advance(72 * 3600 + 1);
    // The next login completes it: the password alone then logs in.
    let token = server.login(&email, STRONG_PASSWORD).await.token();
    server.view(&token).await.assert_status(200);
    server
        .wait_for_mail(
            &email,
            "two-factor authentication was removed from your account",
        )
        .await
        .expect("a recovery-completed notice");
}

async fn a_code_login_cancels_a_recovery(backend: Backend) {
    let server = TestServer::start_on(backend).await;
    let (email, secret, _) = server.enrolled("cancel").await;
    let token = server.login(&email, STRONG_PASSWORD).await.token();
    request_recovery(&server, &token).await.assert_status(204);
    let mail = server
        .wait_for_mail(&email, "Two-factor recovery on")
        .await
        .expect("a recovery link");
    let (uid, link) = link_parts(&mail, "/totp/recovery/");
    recover(&server, &uid, &link).await.assert_status(204);
    // The owner still has the authenticator: a code login cancels the recovery.
    server.clock.advance(30);
    server
        .totp_login(&token, &server.code_now(&secret))
        .await
        .assert_status(201);
    server
        .wait_for_mail(&email, "two-factor recovery of your account was cancelled")
        .await
        .expect("a recovery-cancelled notice");
    server.clock.advance(72 * 3600 + 1);
    let token = server.login(&email, STRONG_PASSWORD).await.token();
    server.view(&token).await.assert_status(403);
}

async fn activation_when_it_is_on(backend: Backend) {
    let server = TestServer::start_with(Options {
        backend,
        settings: Box::new(|s| s.send_activation_email = true),
        ..Options::default()
    })
    .await;
    let email = unique_email("pending");
    server
        .create_user(&email, STRONG_PASSWORD)
        .await
        .assert_status(201);
    server
        .login(&email, STRONG_PASSWORD)
        .await
        .assert(400, json!({"non_field_errors": [DISABLED]}));
    // A wrong password reads as any wrong password: pending tells nothing without it.
    server
        .login(&email, "not-the-password-1")
        .await
        .assert(400, json!({"non_field_errors": [BAD_CREDENTIALS]}));
    let mail = server
        .wait_for_mail(&email, "Account activation on")
        .await
        .expect("an activation link");
    let (uid, token) = link_parts(&mail, "/activate/");
    let activate = |uid: String, token: String| {
        let server = &server;
        async move {
            server
                .call(
                    "POST",
                    "/api/user/activation/",
                    None,
                    Some(json!({"uid": uid, "token": token})),
                )
                .await
        }
    };
    activate(uid.clone(), token.clone())
        .await
        .assert_status(204);
    activate(uid, token)
        .await
        .assert(403, json!({"detail": "Stale token for given user."}));
    server
        .login(&email, STRONG_PASSWORD)
        .await
        .assert_status(200);
    // Resend answers 204 whatever the address.
    for address in [email.as_str(), "nobody@example.com"] {
        server
            .call(
                "POST",
                "/api/user/resend_activation/",
                None,
                Some(json!({ "email": address })),
            )
            .await
            .assert_status(204);
    }

    // A completed reset activates a pending account: the mailbox was proven.
    let other = unique_email("reset-activates");
    server
        .create_user(&other, STRONG_PASSWORD)
        .await
        .assert_status(201);
    server.request_reset(&other).await.assert_status(204);
    let reset = server
        .wait_for_reset_mail(&other)
        .await
        .expect("reset mail");
    let (uid, token) = reset_link_parts(&reset);
    server
        .confirm_reset(&uid, &token, NEW_PASSWORD)
        .await
        .assert_status(204);
    server.login(&other, NEW_PASSWORD).await.assert_status(200);
}
