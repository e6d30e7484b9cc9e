//! SPEC §1 (Authorization header, 401s) and §5 (tokens, revocation).

use api_tests::*;
use auth::clock::Clock;
use serde_json::json;

use crate::support::*;

// The header.

#[tokio::test]
async fn a_protected_endpoint_without_a_header_asks_for_credentials() {
    let server = TestServer::start().await;
    let answer = server.raw("GET", "/api/user/view/", &[], "").await;
    assert_unauthorized(&answer, "Authentication credentials were not provided.");
}

#[tokio::test]
async fn a_header_of_another_scheme_counts_as_no_credentials() {
    let server = TestServer::start().await;
    let (_, token) = server.signed_up("scheme").await;
    for header in [
        "Basic dXNlcjpwYXNz".to_owned(),
        format!("Token {token}"),
        String::new(),
    ] {
        assert_unauthorized(
            &view_with_authorization(&server, &header).await,
            "Authentication credentials were not provided.",
        );
    }
}

#[tokio::test]
async fn a_header_with_only_the_prefix_has_no_credentials() {
    let server = TestServer::start().await;
    for header in ["JWT", "jwt", "Bearer", "JWT   "] {
        assert_unauthorized(
            &view_with_authorization(&server, header).await,
            "Invalid Authorization header. No credentials provided.",
        );
    }
}

#[tokio::test]
async fn a_token_with_spaces_is_refused() {
    let server = TestServer::start().await;
    let (_, token) = server.signed_up("spaces").await;
    for header in [
        format!("JWT {token} extra"),
        "JWT a b".to_owned(),
        format!("Bearer {token} {token}"),
    ] {
        assert_unauthorized(
            &view_with_authorization(&server, &header).await,
            "Invalid Authorization header. Credentials string should not contain spaces.",
        );
    }
}

#[tokio::test]
async fn the_prefix_is_case_insensitive_and_bearer_is_accepted() {
    let server = TestServer::start().await;
    let (email, token) = server.signed_up("prefix").await;
    for prefix in ["JWT", "jwt", "Jwt", "jWt", "Bearer", "bearer", "BEARER"] {
        let answer = view_with_authorization(&server, &format!("{prefix} {token}")).await;
        assert_hardened(&answer);
        assert_eq!(answer.status, 200, "{prefix}: {:?}", answer.json());
        assert_eq!(answer.json()["email"], json!(email));
    }
}

#[tokio::test]
async fn a_garbage_token_cannot_be_decoded() {
    let server = TestServer::start().await;
    for token in [
        "garbage",
        "a.b.c",
        "a.b",
        "...",
        "eyJhbGciOiJIUzI1NiJ9.e30.",
        "%%%.%%%.%%%",
    ] {
        assert_unauthorized(
            &view_with_authorization(&server, &format!("JWT {token}")).await,
            DECODE_ERROR,
        );
    }
}

#[tokio::test]
async fn a_token_with_a_flipped_signature_bit_cannot_be_decoded() {
    let server = TestServer::start().await;
    let (_, token) = server.signed_up("sig").await;
    let (header, payload, signature) = jwt_parts(&token);
    let mut bytes = base64url_decode(&signature);
    assert_eq!(bytes.len(), 32, "an HS256 signature");
    bytes[0] ^= 0x01;
    let forged = format!("{header}.{payload}.{}", base64url_encode(&bytes));
    assert_unauthorized(
        &view_with_authorization(&server, &format!("JWT {forged}")).await,
        DECODE_ERROR,
    );
    // Without a signature at all.
    assert_unauthorized(
        &view_with_authorization(&server, &format!("JWT {header}.{payload}.")).await,
        DECODE_ERROR,
    );
    // The untouched token still works.
    assert_eq!(server.view(&token).await.status, 200);
}

#[tokio::test]
async fn an_alg_none_token_cannot_be_decoded() {
    let server = TestServer::start().await;
    let (_, token) = server.signed_up("none").await;
    let (_, payload, signature) = jwt_parts(&token);
    for alg in ["none", "None", "NONE"] {
        let header = jwt_part(&json!({"alg": alg, "typ": "JWT"}));
        // The canonical unsecured JWT: an empty signature.
        let unsigned = format!("{header}.{payload}.");
        assert_unauthorized(
            &view_with_authorization(&server, &format!("JWT {unsigned}")).await,
            DECODE_ERROR,
        );
        // And with the real signature left on.
        let resigned = format!("{header}.{payload}.{signature}");
        assert_unauthorized(
            &view_with_authorization(&server, &format!("JWT {resigned}")).await,
            DECODE_ERROR,
        );
    }
}

#[tokio::test]
async fn a_token_claiming_another_algorithm_cannot_be_decoded() {
    let server = TestServer::start().await;
    let (_, token) = server.signed_up("alg").await;
    let (_, payload, signature) = jwt_parts(&token);
    for alg in ["HS384", "HS512", "RS256", "ES256"] {
        let header = jwt_part(&json!({"alg": alg, "typ": "JWT"}));
        assert_unauthorized(
            &view_with_authorization(&server, &format!("JWT {header}.{payload}.{signature}")).await,
            DECODE_ERROR,
        );
    }
}

#[tokio::test]
async fn a_token_with_a_tampered_payload_cannot_be_decoded() {
    let server = TestServer::start().await;
    let (_, victim_token) = server.signed_up("victim").await;
    let victim_id = user_id(&server, &victim_token).await;
    let (_, token) = server.signed_up("attacker").await;
    let (header, payload, signature) = jwt_parts(&token);
    let claims = jwt_json(&payload);

    let mut other_user = claims.clone();
    other_user["user_id"] = json!(victim_id);
    let mut longer = claims.clone();
    longer["exp"] = json!(claims["exp"].as_i64().unwrap() + 365 * 86400);
    let mut verified = claims.clone();
    verified["otp_device_id"] = json!("some-device");
    for tampered in [other_user, longer, verified] {
        let forged = format!("{header}.{}.{signature}", jwt_part(&tampered));
        assert_unauthorized(
            &view_with_authorization(&server, &format!("JWT {forged}")).await,
            DECODE_ERROR,
        );
    }
}

#[tokio::test]
async fn a_token_signed_by_another_deployment_cannot_be_decoded() {
    // Two servers, two secrets; the first user of each has the same id and address.
    let ours = TestServer::start().await;
    let theirs = TestServer::start().await;
    let email = unique_email("twin");
    assert_eq!(ours.create_user(&email, STRONG_PASSWORD).await.status, 201);
    assert_eq!(
        theirs.create_user(&email, STRONG_PASSWORD).await.status,
        201
    );
    let foreign = theirs.login(&email, STRONG_PASSWORD).await.token();
    let own = ours.login(&email, STRONG_PASSWORD).await.token();
    assert_eq!(
        jwt_json(&jwt_parts(&foreign).1)["user_id"],
        jwt_json(&jwt_parts(&own).1)["user_id"]
    );
    assert_unauthorized(&ours.view(&foreign).await, DECODE_ERROR);
    assert_eq!(ours.view(&own).await.status, 200);
}

#[tokio::test]
async fn an_expired_token_is_refused_as_expired() {
    let server = TestServer::start().await;
    let (_, token) = server.signed_up("expiry").await;
    server.clock.advance(899);
    assert_eq!(server.view(&token).await.status, 200);
    server.clock.advance(2);
    assert_unauthorized(&server.view(&token).await, EXPIRED);
    // Still refused much later, and by the other authenticated endpoints.
    server.clock.advance(86400);
    assert_unauthorized(&server.logout_all(&token).await, EXPIRED);
}

#[tokio::test]
async fn a_token_of_a_deleted_user_is_refused_with_invalid_signature() {
    let server = TestServer::start().await;
    let (email, token) = server.signed_up("gone").await;
    let second = server.login(&email, STRONG_PASSWORD).await.token();
    assert_eq!(
        server.delete_user(&token, STRONG_PASSWORD).await.status,
        204
    );
    assert_unauthorized(&server.view(&token).await, UNKNOWN_USER);
    assert_unauthorized(&server.view(&second).await, UNKNOWN_USER);
    assert_unauthorized(&server.logout_all(&second).await, UNKNOWN_USER);
}

// Tokens.

#[tokio::test]
async fn a_token_is_hs256_with_the_originals_claims() {
    let server = TestServer::start().await;
    let (email, token) = server.signed_up("claims").await;
    let id = user_id(&server, &token).await;
    let (header, payload, signature) = jwt_parts(&token);
    assert_eq!(jwt_json(&header)["alg"], json!("HS256"));
    assert_eq!(base64url_decode(&signature).len(), 32);
    let claims = jwt_json(&payload);
    assert_eq!(claims["user_id"], json!(id));
    assert_eq!(claims["username"], json!(email));
    assert_eq!(claims["otp_device_id"], json!(null));
    assert_eq!(
        claims["exp"].as_i64(),
        Some(server.clock.now() + 900),
        "default lifetime 900 s: {claims}"
    );
}

#[tokio::test]
async fn logout_all_ends_every_session_and_a_new_login_works() {
    let server = TestServer::start().await;
    let (email, first) = server.signed_up("logout").await;
    let second = server.login(&email, STRONG_PASSWORD).await.token();
    let answer = server.logout_all(&first).await;
    assert_hardened(&answer);
    assert_eq!(answer.status, 204);
    assert!(answer.body.is_empty());
    assert_unauthorized(&server.view(&first).await, DECODE_ERROR);
    assert_unauthorized(&server.view(&second).await, DECODE_ERROR);
    assert_unauthorized(&server.logout_all(&second).await, DECODE_ERROR);
    let fresh = server.login(&email, STRONG_PASSWORD).await;
    assert_eq!(fresh.status, 200);
    assert_eq!(server.view(&fresh.token()).await.status, 200);
}

#[tokio::test]
async fn logout_all_leaves_other_users_sessions_alone() {
    let server = TestServer::start().await;
    let (_, mine) = server.signed_up("mine").await;
    let (_, theirs) = server.signed_up("theirs").await;
    assert_eq!(server.logout_all(&mine).await.status, 204);
    assert_eq!(server.view(&theirs).await.status, 200);
}

// Public endpoints and the header.

#[tokio::test]
async fn public_endpoints_refuse_an_invalid_authorization_header() {
    let server = TestServer::start().await;
    let (email, token) = server.signed_up("public").await;
    let create_body = json!({"email": unique_email("new"), "password": STRONG_PASSWORD});
    let reset_body = json!({ "email": email });
    let confirm_body = json!({"uid": "MQ", "token": "x-y", "new_password": STRONG_PASSWORD});
    let (header, payload, _) = jwt_parts(&token);
    let forged = format!("JWT {header}.{payload}.");
    for (path, body) in [
        ("/api/user/create/", &create_body),
        ("/api/user/password/reset/", &reset_body),
        ("/api/user/password/reset/confirm/", &confirm_body),
    ] {
        for (authorization, detail) in [
            ("JWT garbage", DECODE_ERROR),
            (forged.as_str(), DECODE_ERROR),
            (
                "JWT",
                "Invalid Authorization header. No credentials provided.",
            ),
            (
                "JWT a b",
                "Invalid Authorization header. Credentials string should not contain spaces.",
            ),
        ] {
            let answer =
                call_with_authorization(&server, "POST", path, authorization, Some(body.clone()))
                    .await;
            assert_unauthorized(&answer, detail);
        }
    }
    // Nothing was created or sent.
    assert_eq!(
        server
            .login(create_body["email"].as_str().unwrap(), STRONG_PASSWORD)
            .await
            .status,
        400
    );
    assert!(server.outbox_messages().is_empty());
}

#[tokio::test]
async fn public_endpoints_refuse_an_expired_or_orphaned_token() {
    let server = TestServer::start().await;
    let (_, expiring) = server.signed_up("expiring").await;
    let (_, orphan) = server.signed_up("orphan").await;
    assert_eq!(
        server.delete_user(&orphan, STRONG_PASSWORD).await.status,
        204
    );
    let body = json!({"email": unique_email("new"), "password": STRONG_PASSWORD});
    assert_unauthorized(
        &call_with_authorization(
            &server,
            "POST",
            "/api/user/create/",
            &format!("JWT {orphan}"),
            Some(body.clone()),
        )
        .await,
        UNKNOWN_USER,
    );
    server.clock.advance(901);
    assert_unauthorized(
        &call_with_authorization(
            &server,
            "POST",
            "/api/user/create/",
            &format!("JWT {expiring}"),
            Some(body),
        )
        .await,
        EXPIRED,
    );
}

#[tokio::test]
async fn public_endpoints_accept_a_valid_or_foreign_scheme_header() {
    let server = TestServer::start().await;
    let (_, token) = server.signed_up("valid").await;
    let created = call_with_authorization(
        &server,
        "POST",
        "/api/user/create/",
        &format!("JWT {token}"),
        Some(json!({"email": unique_email("second"), "password": STRONG_PASSWORD})),
    )
    .await;
    assert_eq!(created.status, 201, "{:?}", created.json());
    let created = call_with_authorization(
        &server,
        "POST",
        "/api/user/create/",
        "Basic dXNlcjpwYXNz",
        Some(json!({"email": unique_email("third"), "password": STRONG_PASSWORD})),
    )
    .await;
    assert_eq!(created.status, 201, "{:?}", created.json());
}

#[tokio::test]
async fn login_ignores_the_authorization_header() {
    let server = TestServer::start().await;
    let (email, token) = server.signed_up("ignored").await;
    let (_, orphan) = server.signed_up("orphan").await;
    assert_eq!(
        server.delete_user(&orphan, STRONG_PASSWORD).await.status,
        204
    );
    let body = json!({"email": email, "password": STRONG_PASSWORD});
    for authorization in [
        "JWT garbage".to_owned(),
        "JWT".to_owned(),
        "JWT a b".to_owned(),
        format!("JWT {orphan}"),
        format!("Bearer {token}"),
    ] {
        let answer = call_with_authorization(
            &server,
            "POST",
            "/api/user/login/",
            &authorization,
            Some(body.clone()),
        )
        .await;
        assert_hardened(&answer);
        assert_eq!(answer.status, 200, "{authorization}: {:?}", answer.json());
    }
    // An expired token is ignored too.
    server.clock.advance(901);
    let answer = call_with_authorization(
        &server,
        "POST",
        "/api/user/login/",
        &format!("JWT {token}"),
        Some(body),
    )
    .await;
    assert_eq!(answer.status, 200, "{:?}", answer.json());
}

#[tokio::test]
async fn a_header_with_bytes_that_are_not_ascii_is_refused_not_a_5xx() {
    let server = TestServer::start().await;
    assert_unauthorized(
        &view_with_authorization(&server, "JWT tökén.ünïcode.sïg").await,
        DECODE_ERROR,
    );
}

#[tokio::test]
async fn the_token_lifetime_is_configurable() {
    let server = TestServer::start_with(Options {
        settings: Box::new(|s| s.token_lifetime_secs = 60),
        ..Default::default()
    })
    .await;
    let (_, token) = server.signed_up("short").await;
    let claims = jwt_json(&jwt_parts(&token).1);
    assert_eq!(claims["exp"].as_i64(), Some(server.clock.now() + 60));
    server.clock.advance(59);
    assert_eq!(server.view(&token).await.status, 200);
    server.clock.advance(2);
    assert_unauthorized(&server.view(&token).await, EXPIRED);
}
