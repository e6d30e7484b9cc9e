//! SPEC §1: bodies, fields, paths, methods and the headers every response carries.

use api_tests::*;
use serde_json::json;

use crate::support::*;

const CREATE: &str = "/api/user/create/";
const LOGIN: &str = "/api/user/login/";

fn form(email: &str, password: &str) -> String {
    format!(
        "email={}&password={}",
        email.replace('@', "%40").replace('+', "%2B"),
        password
    )
}

// Bodies.

#[tokio::test]
async fn a_form_encoded_sign_up_and_login_are_served_like_json() {
    let server = TestServer::start().await;
    let email = unique_email("form");
    let created = post_raw(
        &server,
        CREATE,
        "application/x-www-form-urlencoded",
        form(&email, STRONG_PASSWORD),
    )
    .await;
    assert_hardened(&created);
    assert_eq!(created.status, 201, "{:?}", created.json());
    assert_eq!(created.json()["email"], json!(email));
    let logged_in = post_raw(
        &server,
        LOGIN,
        "application/x-www-form-urlencoded; charset=utf-8",
        form(&email, STRONG_PASSWORD),
    )
    .await;
    assert_eq!(logged_in.status, 200, "{:?}", logged_in.json());
    assert_eq!(server.view(&logged_in.token()).await.status, 200);
}

#[tokio::test]
async fn a_form_encoded_body_is_validated_like_json() {
    let server = TestServer::start().await;
    post_raw(
        &server,
        CREATE,
        "application/x-www-form-urlencoded",
        "email=not-an-address&password=",
    )
    .await
    .assert(400, json!({"email": [INVALID_EMAIL], "password": [BLANK]}));
    post_raw(
        &server,
        CREATE,
        "application/x-www-form-urlencoded",
        "password=%20%20",
    )
    .await
    .assert(400, json!({"email": [REQUIRED], "password": [BLANK]}));
}

#[tokio::test]
async fn malformed_json_is_a_400_json_parse_error() {
    let server = TestServer::start().await;
    for body in [
        "{\"email\": ",
        "{email: 1}",
        "{\"a\": 1,}",
        "not json",
        "{\"a\": 1} trailing",
    ] {
        let answer = post_raw(&server, CREATE, "application/json", body).await;
        assert_hardened(&answer);
        assert_eq!(answer.status, 400, "{body}: {:?}", answer.json());
        let json = answer.json();
        let object = json.as_object().expect("an object");
        assert_eq!(object.len(), 1, "only a detail: {json}");
        let detail = json["detail"].as_str().expect("a detail string");
        assert!(
            detail.starts_with("JSON parse error - ") && detail.len() > "JSON parse error - ".len(),
            "{body}: {detail}"
        );
    }
}

#[tokio::test]
async fn a_json_body_that_is_not_an_object_names_the_python_type_it_got() {
    let server = TestServer::start().await;
    for (body, python_type) in [
        ("[]", "list"),
        ("[{\"email\": \"a@example.com\"}]", "list"),
        ("42", "int"),
        ("-7", "int"),
        ("1.5", "float"),
        ("\"text\"", "str"),
        ("true", "bool"),
    ] {
        let answer = post_raw(&server, CREATE, "application/json", body).await;
        assert_hardened(&answer);
        answer.assert(
            400,
            json!({"non_field_errors": [
                format!("Invalid data. Expected a dictionary, but got {python_type}.")
            ]}),
        );
    }
}

#[tokio::test]
async fn a_json_body_that_is_not_an_object_is_refused_by_login_too() {
    let server = TestServer::start().await;
    post_raw(&server, LOGIN, "application/json", "[1, 2]")
        .await
        .assert(
            400,
            json!({"non_field_errors": ["Invalid data. Expected a dictionary, but got list."]}),
        );
    post_raw(&server, LOGIN, "application/json", "3")
        .await
        .assert(
            400,
            json!({"non_field_errors": ["Invalid data. Expected a dictionary, but got int."]}),
        );
}

#[tokio::test]
async fn another_content_type_is_a_415_naming_the_type() {
    let server = TestServer::start().await;
    let body = json!({"email": unique_email("xml"), "password": STRONG_PASSWORD}).to_string();
    for content_type in ["text/plain", "application/xml", "multipart/mixed"] {
        let answer = post_raw(&server, CREATE, content_type, body.clone()).await;
        assert_hardened(&answer);
        answer.assert(
            415,
            json!({"detail": format!("Unsupported media type \"{content_type}\" in request.")}),
        );
    }
    post_raw(&server, LOGIN, "text/plain", body).await.assert(
        415,
        json!({"detail": "Unsupported media type \"text/plain\" in request."}),
    );
}

#[tokio::test]
async fn a_one_megabyte_body_is_a_413_with_a_json_detail() {
    let server = TestServer::start().await;
    let padding = "x".repeat(1024 * 1024);
    let body = json!({"email": unique_email("big"), "password": padding}).to_string();
    for path in [CREATE, LOGIN] {
        let answer = post_raw(&server, path, "application/json", body.clone()).await;
        assert_hardened(&answer);
        assert_eq!(answer.status, 413, "{path}");
        let json = answer.json();
        assert_eq!(json.as_object().map(|o| o.len()), Some(1), "{json}");
        assert!(
            json["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{json}"
        );
    }
}

#[tokio::test]
async fn a_body_just_under_the_default_limit_is_read() {
    let server = TestServer::start().await;
    // 64 KiB is the default limit; this body is a little smaller and otherwise valid JSON.
    let padding = "y".repeat(60 * 1024);
    let body = json!({"email": "not-an-address", "password": STRONG_PASSWORD, "pad": padding});
    post_raw(&server, CREATE, "application/json", body.to_string())
        .await
        .assert(400, json!({"email": [INVALID_EMAIL]}));
}

#[tokio::test]
async fn an_empty_body_reads_as_an_empty_object() {
    let server = TestServer::start().await;
    let both_required = json!({"email": [REQUIRED], "password": [REQUIRED]});
    post_raw(&server, CREATE, "application/json", "")
        .await
        .assert(400, both_required.clone());
    server
        .raw("POST", CREATE, &[], "")
        .await
        .assert(400, both_required.clone());
    post_raw(&server, LOGIN, "application/json", "{}")
        .await
        .assert(400, both_required);
}

// Fields.

#[tokio::test]
async fn missing_fields_are_all_reported_as_required() {
    let server = TestServer::start().await;
    server
        .call("POST", CREATE, None, Some(json!({})))
        .await
        .assert(400, json!({"email": [REQUIRED], "password": [REQUIRED]}));
    server
        .call(
            "POST",
            CREATE,
            None,
            Some(json!({"email": unique_email("x")})),
        )
        .await
        .assert(400, json!({"password": [REQUIRED]}));
    server
        .call(
            "POST",
            CREATE,
            None,
            Some(json!({"password": STRONG_PASSWORD})),
        )
        .await
        .assert(400, json!({"email": [REQUIRED]}));
}

#[tokio::test]
async fn null_fields_may_not_be_null() {
    let server = TestServer::start().await;
    server
        .call(
            "POST",
            CREATE,
            None,
            Some(json!({"email": null, "password": null})),
        )
        .await
        .assert(400, json!({"email": [NULL], "password": [NULL]}));
    server
        .call(
            "POST",
            LOGIN,
            None,
            Some(json!({"email": null, "password": null})),
        )
        .await
        .assert(400, json!({"email": [NULL], "password": [NULL]}));
}

#[tokio::test]
async fn empty_and_whitespace_fields_may_not_be_blank() {
    let server = TestServer::start().await;
    for blank in ["", " ", "   \t\n "] {
        server
            .call(
                "POST",
                CREATE,
                None,
                Some(json!({"email": blank, "password": blank})),
            )
            .await
            .assert(400, json!({"email": [BLANK], "password": [BLANK]}));
        server
            .call(
                "POST",
                LOGIN,
                None,
                Some(json!({"email": blank, "password": blank})),
            )
            .await
            .assert(400, json!({"email": [BLANK], "password": [BLANK]}));
    }
}

#[tokio::test]
async fn a_bool_list_or_object_is_not_a_valid_string() {
    let server = TestServer::start().await;
    for value in [json!(true), json!(false), json!(["pw"]), json!({"a": "pw"})] {
        server
            .call(
                "POST",
                CREATE,
                None,
                Some(json!({"email": unique_email("types"), "password": value})),
            )
            .await
            .assert(400, json!({"password": [NOT_A_STRING]}));
    }
}

#[tokio::test]
async fn an_email_field_answers_any_non_string_with_enter_a_valid_email_address() {
    let server = TestServer::start().await;
    for value in [json!(true), json!(["a@example.com"]), json!({}), json!(42)] {
        server
            .call(
                "POST",
                CREATE,
                None,
                Some(json!({"email": value, "password": STRONG_PASSWORD})),
            )
            .await
            .assert(400, json!({"email": [INVALID_EMAIL]}));
    }
}

#[tokio::test]
async fn logins_email_is_a_plain_string_field_as_drf_jwts() {
    let server = TestServer::start().await;
    for value in [json!(true), json!(["a@example.com"]), json!({})] {
        server
            .call(
                "POST",
                LOGIN,
                None,
                Some(json!({"email": value, "password": STRONG_PASSWORD})),
            )
            .await
            .assert(400, json!({"email": ["Not a valid string."]}));
    }
    // A number is coerced to its text, which is no account.
    server
        .call(
            "POST",
            LOGIN,
            None,
            Some(json!({"email": 42, "password": STRONG_PASSWORD})),
        )
        .await
        .assert(
            400,
            json!({"non_field_errors": ["Unable to log in with provided credentials."]}),
        );
}

#[tokio::test]
async fn every_failing_field_is_reported_at_once() {
    let server = TestServer::start().await;
    server
        .call(
            "POST",
            CREATE,
            None,
            Some(json!({"email": false, "password": ["x"]})),
        )
        .await
        .assert(
            400,
            json!({"email": [INVALID_EMAIL], "password": [NOT_A_STRING]}),
        );
    server
        .call(
            "POST",
            CREATE,
            None,
            Some(json!({"email": "nope", "password": null})),
        )
        .await
        .assert(400, json!({"email": [INVALID_EMAIL], "password": [NULL]}));
}

#[tokio::test]
async fn numbers_are_coerced_to_strings() {
    let server = TestServer::start().await;
    // Coerced, then judged as the string "12345678" by the password validators.
    server
        .call(
            "POST",
            CREATE,
            None,
            Some(json!({"email": unique_email("num"), "password": 12345678})),
        )
        .await
        .assert(400, json!({"password": [TOO_COMMON, ENTIRELY_NUMERIC]}));
    server
        .call(
            "POST",
            CREATE,
            None,
            Some(json!({"email": unique_email("num"), "password": 1234567})),
        )
        .await
        .assert(
            400,
            json!({"password": [TOO_SHORT, TOO_COMMON, ENTIRELY_NUMERIC]}),
        );
    // At login a coerced number is just a wrong password.
    let (email, _) = server.signed_up("num").await;
    server
        .call(
            "POST",
            LOGIN,
            None,
            Some(json!({"email": email, "password": 987654321})),
        )
        .await
        .assert(400, json!({"non_field_errors": [BAD_CREDENTIALS]}));
}

#[tokio::test]
async fn unknown_fields_are_ignored() {
    let server = TestServer::start().await;
    let email = unique_email("extra");
    let created = server
        .call(
            "POST",
            CREATE,
            None,
            Some(json!({"email": email, "password": STRONG_PASSWORD, "id": 1, "is_staff": true})),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.json());
}

#[tokio::test]
async fn an_address_longer_than_254_characters_is_refused() {
    let server = TestServer::start().await;
    // A syntactically valid address of 260 characters.
    let label = "b".repeat(63);
    let email = format!("{}@{label}.{label}.{label}.com", "a".repeat(64));
    assert_eq!(email.chars().count(), 260);
    server
        .create_user(&email, STRONG_PASSWORD)
        .await
        .assert(400, json!({"email": [INVALID_EMAIL]}));
    server
        .request_reset(&email)
        .await
        .assert(400, json!({"email": [INVALID_EMAIL]}));
    server.login(&email, STRONG_PASSWORD).await.assert(
        400,
        json!({"non_field_errors": ["Unable to log in with provided credentials."]}),
    );
}

// Paths and methods.

#[tokio::test]
async fn an_unknown_path_is_a_json_404() {
    let server = TestServer::start().await;
    for (method, path) in [
        ("GET", "/"),
        ("GET", "/api/"),
        ("POST", "/api/user/"),
        ("GET", "/api/nope/"),
        ("POST", "/api/user/create/extra/"),
        ("POST", "/api/user/createx/"),
        ("GET", "/admin/"),
        ("POST", "/api/totp/login/12345/"),
        ("POST", "/api/totp/login/abcdef/"),
        ("GET", "/api/static/login/ABCDEFGH/"),
    ] {
        let answer = server.raw(method, path, &[], "").await;
        assert_hardened(&answer);
        assert_eq!(
            (answer.status, answer.json()),
            (404, json!({"detail": "Not found."})),
            "{method} {path}"
        );
    }
}

#[tokio::test]
async fn a_wrong_method_is_a_405_with_an_allow_header() {
    let server = TestServer::start().await;
    for (method, path, allowed) in [
        ("GET", LOGIN, &["POST"][..]),
        ("PUT", LOGIN, &["POST"][..]),
        ("DELETE", CREATE, &["POST"][..]),
        ("PATCH", "/api/user/password/reset/", &["POST"][..]),
        ("GET", "/api/user/password/reset/confirm/", &["POST"][..]),
        ("GET", "/api/user/login", &["POST"][..]),
    ] {
        let answer = server.raw(method, path, &[], "").await;
        assert_hardened(&answer);
        assert_eq!(
            (answer.status, answer.json()),
            (
                405,
                json!({"detail": format!("Method \"{method}\" not allowed.")})
            ),
            "{method} {path}"
        );
        let allow = answer
            .header("allow")
            .unwrap_or_else(|| panic!("no Allow header on {method} {path}"));
        let listed: Vec<&str> = allow.split(',').map(str::trim).collect();
        for m in allowed {
            assert!(listed.contains(m), "{method} {path}: Allow {allow:?}");
        }
        assert!(
            !listed.contains(&method),
            "{method} {path}: Allow {allow:?}"
        );
    }
}

#[tokio::test]
async fn a_wrong_method_on_an_authenticated_endpoint_lists_its_methods() {
    let server = TestServer::start().await;
    let (_, token) = server.signed_up("methods").await;
    let auth = format!("JWT {token}");
    for (method, path, allowed) in [
        ("POST", "/api/user/view/", &["GET"][..]),
        ("PUT", "/api/user/delete/", &["POST", "DELETE"][..]),
        ("GET", "/api/user/logout/all/", &["POST"][..]),
        ("GET", "/api/user/password/change/", &["POST"][..]),
    ] {
        let answer = call_with_authorization(&server, method, path, &auth, None).await;
        assert_hardened(&answer);
        answer.assert(
            405,
            json!({"detail": format!("Method \"{method}\" not allowed.")}),
        );
        let allow = answer.header("allow").expect("Allow header");
        let listed: Vec<&str> = allow.split(',').map(str::trim).collect();
        for m in allowed {
            assert!(listed.contains(m), "{method} {path}: Allow {allow:?}");
        }
    }
    // Nothing happened to the account.
    assert_eq!(server.view(&token).await.status, 200);
}

#[tokio::test]
async fn paths_without_the_trailing_slash_are_served() {
    let server = TestServer::start().await;
    let email = unique_email("noslash");
    let created = server
        .call(
            "POST",
            "/api/user/create",
            None,
            Some(json!({"email": email, "password": STRONG_PASSWORD})),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.json());
    let id = created.json()["id"].as_u64().unwrap();
    let token = server
        .call(
            "POST",
            "/api/user/login",
            None,
            Some(json!({"email": email, "password": STRONG_PASSWORD})),
        )
        .await
        .token();
    server
        .call("GET", "/api/user/view", Some(&token), None)
        .await
        .assert(200, json!({"id": id, "email": email}));
    let reset = server
        .call(
            "POST",
            "/api/user/password/reset",
            None,
            Some(json!({ "email": email })),
        )
        .await;
    assert_eq!(reset.status, 204);
    let logout = server
        .call("POST", "/api/user/logout/all", Some(&token), None)
        .await;
    assert_eq!(logout.status, 204);
}

// Headers.

#[tokio::test]
async fn every_response_carries_no_store_and_nosniff() {
    let server = TestServer::start().await;
    let email = unique_email("headers");
    let mut answers = Vec::new();
    answers.push(server.create_user(&email, STRONG_PASSWORD).await); // 201
    let login = server.login(&email, STRONG_PASSWORD).await; // 200
    let token = login.token();
    answers.push(login);
    answers.push(server.view(&token).await); // 200
    answers.push(server.create_user(&email, STRONG_PASSWORD).await); // 400
    answers.push(server.request_reset(&email).await); // 204
    answers.push(server.raw("GET", "/api/user/view/", &[], "").await); // 401
    answers.push(server.raw("GET", "/nowhere/", &[], "").await); // 404
    answers.push(server.raw("GET", LOGIN, &[], "").await); // 405
    answers.push(post_raw(&server, LOGIN, "text/plain", "x").await); // 415
    answers.push(post_raw(&server, LOGIN, "application/json", "{").await); // 400
    answers.push(post_raw(&server, LOGIN, "application/json", "x".repeat(1024 * 1024)).await); // 413
    answers.push(server.raw("OPTIONS", LOGIN, &[], "").await); // preflight
    for _ in 0..6 {
        answers.push(server.login(&email, "wrong-password-123").await); // 400 ×5, then 429
    }
    answers.push(server.logout_all(&token).await); // 204
    answers.push(server.view(&token).await); // 401 (revoked)
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    for expected in [200, 201, 204, 400, 401, 404, 405, 413, 415, 429] {
        assert!(
            statuses.contains(&expected),
            "no {expected} in {statuses:?}"
        );
    }
    for answer in &answers {
        assert_hardened(answer);
    }
}

#[tokio::test]
async fn no_cors_headers_are_sent_by_default() {
    let server = TestServer::start().await;
    let answer = server
        .raw(
            "OPTIONS",
            LOGIN,
            &[
                ("origin", "https://evil.example"),
                ("access-control-request-method", "POST"),
            ],
            "",
        )
        .await;
    assert_hardened(&answer);
    assert_eq!(answer.header("access-control-allow-origin"), None);
    let login = server
        .raw(
            "POST",
            LOGIN,
            &[
                ("origin", "https://evil.example"),
                ("content-type", "application/json"),
            ],
            "{}",
        )
        .await;
    assert_eq!(login.header("access-control-allow-origin"), None);
}

#[tokio::test]
async fn bodies_a_parser_chokes_on_are_a_400_not_a_5xx() {
    let server = TestServer::start().await;
    let invalid_utf8 = b"{\"email\": \"\xff\xfe\", \"password\": \"x\"}".to_vec();
    let deeply_nested = "[".repeat(50_000);
    for body in [invalid_utf8, deeply_nested.into_bytes()] {
        let answer = post_raw(&server, CREATE, "application/json", body).await;
        assert_hardened(&answer);
        assert_eq!(answer.status, 400, "{:?}", answer.json());
        let detail = answer.json()["detail"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(detail.starts_with("JSON parse error - "), "{detail}");
    }
    // A form body with bytes that are not UTF-8 is read leniently, then validated.
    let answer = post_raw(
        &server,
        CREATE,
        "application/x-www-form-urlencoded",
        "email=%FF%FE&password=",
    )
    .await;
    assert_hardened(&answer);
    answer.assert(400, json!({"email": [INVALID_EMAIL], "password": [BLANK]}));
}

#[tokio::test]
async fn a_float_is_coerced_like_python_prints_it() {
    let server = TestServer::start().await;
    let email = unique_email("float");
    let created = server
        .call(
            "POST",
            CREATE,
            None,
            Some(json!({"email": email, "password": 12345678.5})),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.json());
    assert_eq!(server.login(&email, "12345678.5").await.status, 200);
}

#[tokio::test]
async fn an_address_of_exactly_254_characters_is_accepted_and_255_refused() {
    let server = TestServer::start().await;
    let address = |last_label: usize| {
        format!(
            "{}@{}.{}.{}.com",
            "a".repeat(64),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(last_label)
        )
    };
    let longest = address(57);
    assert_eq!(longest.chars().count(), 254);
    let created = server.create_user(&longest, STRONG_PASSWORD).await;
    assert_eq!(created.status, 201, "{:?}", created.json());
    let too_long = address(58);
    assert_eq!(too_long.chars().count(), 255);
    server
        .create_user(&too_long, STRONG_PASSWORD)
        .await
        .assert(400, json!({"email": [INVALID_EMAIL]}));
}

#[tokio::test]
async fn an_internationalized_domain_is_accepted_and_lowercased() {
    let server = TestServer::start().await;
    let local = format!("x-{}", random_hex(4));
    let created = server
        .create_user(&format!("{local}@BÜCHER.Example"), STRONG_PASSWORD)
        .await;
    assert_eq!(created.status, 201, "{:?}", created.json());
    assert_eq!(
        created.json()["email"],
        json!(format!("{local}@bücher.example"))
    );
}

#[tokio::test]
async fn a_query_string_does_not_change_the_route() {
    let server = TestServer::start().await;
    let (email, _) = server.signed_up("query").await;
    let answer = server
        .call(
            "POST",
            "/api/user/login/?next=/elsewhere/&x=1",
            None,
            Some(json!({"email": email, "password": STRONG_PASSWORD})),
        )
        .await;
    assert_eq!(answer.status, 200, "{:?}", answer.json());
}

#[tokio::test]
async fn the_body_limit_is_configurable() {
    let server = TestServer::start_with(Options {
        settings: Box::new(|s| s.max_body_bytes = 1024),
        ..Default::default()
    })
    .await;
    let body = json!({"email": "not-an-address", "password": "p".repeat(2000)}).to_string();
    let answer = post_raw(&server, CREATE, "application/json", body).await;
    assert_hardened(&answer);
    assert_eq!(answer.status, 413);
    assert!(answer.json()["detail"].is_string());
    let small = json!({"email": "not-an-address", "password": STRONG_PASSWORD}).to_string();
    post_raw(&server, CREATE, "application/json", small)
        .await
        .assert(400, json!({"email": [INVALID_EMAIL]}));
}

#[tokio::test]
async fn a_configured_cors_origin_is_allowed_and_others_are_not() {
    let allowed = "https://app.example";
    let server = TestServer::start_with(Options {
        settings: Box::new(move |s| s.cors_allowed_origins = vec![allowed.to_owned()]),
        ..Default::default()
    })
    .await;
    let preflight = server
        .raw(
            "OPTIONS",
            LOGIN,
            &[
                ("origin", allowed),
                ("access-control-request-method", "POST"),
            ],
            "",
        )
        .await;
    assert_hardened(&preflight);
    assert!(preflight.status < 300, "{}", preflight.status);
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        Some(allowed)
    );
    let other = server
        .raw(
            "OPTIONS",
            LOGIN,
            &[
                ("origin", "https://evil.example"),
                ("access-control-request-method", "POST"),
            ],
            "",
        )
        .await;
    assert_eq!(other.header("access-control-allow-origin"), None);
}
