use api_tests::*;
use serde_json::json;

const NEW_PASSWORD: &str = "a-brand-new-passphrase-7";

async fn reset_link_from_outbox(server: &TestServer, to: &str) -> (String, String) {
    let mail = server
        .wait_for_reset_mail(to)
        .await
        .expect("a reset mail in the outbox");
    assert!(
        mail.contains("Subject: Password reset on Accounts"),
        "{mail}"
    );
    reset_link_parts(&mail)
}

#[tokio::test]
async fn a_password_can_be_reset_with_the_mailed_link() {
    let server = TestServer::start().await;
    let (email, old_token) = server.signed_up("reset").await;
    let id = server.view(&old_token).await.json()["id"].as_u64().unwrap();
    assert_eq!(server.request_reset(&email).await.status, 204);
    let (uid, token) = reset_link_from_outbox(&server, &email).await;
    assert_eq!(
        uid,
        auth::domain::reset_token::Uid(auth::domain::records::UserId(id)).encode()
    );
    assert_eq!(
        server
            .confirm_reset(&uid, &token, NEW_PASSWORD)
            .await
            .status,
        204
    );
    // The new password works, the old one not, and every earlier session ended.
    assert_eq!(server.login(&email, NEW_PASSWORD).await.status, 200);
    assert_eq!(server.login(&email, STRONG_PASSWORD).await.status, 400);
    server
        .view(&old_token)
        .await
        .assert(401, json!({"detail": "Error decoding signature."}));
    // The token is single-use.
    server
        .confirm_reset(&uid, &token, "yet-another-passphrase-8")
        .await
        .assert(
            400,
            json!({"non_field_errors": ["Invalid token for given user."]}),
        );
}

#[tokio::test]
async fn a_reset_token_dies_when_the_password_changes() {
    let server = TestServer::start().await;
    let (email, token) = server.signed_up("change").await;
    server.request_reset(&email).await;
    let (uid, reset_token) = reset_link_from_outbox(&server, &email).await;
    assert_eq!(
        server
            .change_password(&token, STRONG_PASSWORD, NEW_PASSWORD)
            .await
            .status,
        204
    );
    assert_eq!(
        server
            .confirm_reset(&uid, &reset_token, "another-passphrase-11")
            .await
            .status,
        400
    );
}

#[tokio::test]
async fn an_expired_reset_token_is_refused() {
    let server = TestServer::start().await;
    let (email, _) = server.signed_up("expiry").await;
    server.request_reset(&email).await;
    let (uid, token) = reset_link_from_outbox(&server, &email).await;
    server.clock.advance(86_401);
    server
        .confirm_reset(&uid, &token, NEW_PASSWORD)
        .await
        .assert(
            400,
            json!({"non_field_errors": ["Invalid token for given user."]}),
        );
}

#[tokio::test]
async fn unknown_addresses_answer_the_same_and_get_no_mail() {
    let server = TestServer::start().await;
    let reply = server.request_reset(&unique_email("nobody")).await;
    assert_eq!((reply.status, reply.body.len()), (204, 0));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(server.outbox_messages().is_empty());
    server
        .request_reset("not an address")
        .await
        .assert(400, json!({"email": ["Enter a valid email address."]}));
}

#[tokio::test]
async fn at_most_one_reset_mail_per_address_per_minute() {
    let server = TestServer::start().await;
    let (email, _) = server.signed_up("rate").await;
    assert_eq!(server.request_reset(&email).await.status, 204);
    assert!(server.wait_for_reset_mail(&email).await.is_some());
    assert_eq!(server.request_reset(&email).await.status, 204);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(server.outbox_messages().len(), 1);
    server.clock.advance(61);
    assert_eq!(server.request_reset(&email).await.status, 204);
    for _ in 0..100 {
        if server.outbox_messages().len() == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(server.outbox_messages().len(), 2);
}

#[tokio::test]
async fn a_case_variant_address_reaches_the_one_account() {
    let server = TestServer::start().await;
    let (email, _) = server.signed_up("variant").await;
    assert_eq!(
        server.request_reset(&email.to_uppercase()).await.status,
        204
    );
    let (uid, token) = reset_link_from_outbox(&server, &email).await;
    assert_eq!(
        server
            .confirm_reset(&uid, &token, NEW_PASSWORD)
            .await
            .status,
        204
    );
}

#[tokio::test]
async fn bad_uid_bad_token_and_weak_password_each_get_their_error() {
    let server = TestServer::start().await;
    let (email, _) = server.signed_up("errors").await;
    server.request_reset(&email).await;
    let (uid, token) = reset_link_from_outbox(&server, &email).await;
    server
        .confirm_reset("OTk5OTk5OQ", &token, NEW_PASSWORD)
        .await
        .assert(
            400,
            json!({"uid": ["Invalid user id or user doesn't exist."]}),
        );
    server
        .confirm_reset("!!!", &token, NEW_PASSWORD)
        .await
        .assert(
            400,
            json!({"uid": ["Invalid user id or user doesn't exist."]}),
        );
    server
        .confirm_reset(&uid, "abc-0123456789abcdef", NEW_PASSWORD)
        .await
        .assert(
            400,
            json!({"non_field_errors": ["Invalid token for given user."]}),
        );
    server.confirm_reset(&uid, &token, "12345678").await.assert(
        400,
        json!({"new_password": ["This password is too common.", "This password is entirely numeric."]}),
    );
    server
        .call(
            "POST",
            "/api/user/password/reset/confirm/",
            None,
            Some(json!({})),
        )
        .await
        .assert(
            400,
            json!({
                "uid": ["This field is required."],
                "token": ["This field is required."],
                "new_password": ["This field is required."],
            }),
        );
}

#[tokio::test]
async fn the_reset_mail_goes_through_ses_and_completes_the_reset() {
    let server = TestServer::start_with(Options {
        backend: Backend::DynamoDb,
        mail: MailBackend::Ses,
        ..Options::default()
    })
    .await;
    let (email, _) = server.signed_up("ses").await;
    assert_eq!(server.request_reset(&email).await.status, 204);
    // Read the message back from the SES emulator.
    let found = ses_message(&email, "Password reset on").await;
    let message = found.expect("the reset mail reached SES");
    assert_eq!(message["subject"], "Password reset on Accounts");
    let (uid, token) = reset_link_parts(message["body"].as_str().unwrap());
    assert_eq!(
        server
            .confirm_reset(&uid, &token, NEW_PASSWORD)
            .await
            .status,
        204
    );
    assert_eq!(server.login(&email, NEW_PASSWORD).await.status, 200);
}
