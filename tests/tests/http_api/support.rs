//! Small helpers shared by the modules of this binary: SPEC §1's response invariants, requests
//! with an arbitrary `Authorization` header, and a base64url codec for crafting tokens by hand
//! (independent of the service's own encoders).

use api_tests::*;
use serde_json::{json, Value};

pub const WWW_AUTHENTICATE: &str = "JWT realm=\"api\"";
pub const INVALID_EMAIL: &str = "Enter a valid email address.";
pub const REQUIRED: &str = "This field is required.";
pub const NULL: &str = "This field may not be null.";
pub const BLANK: &str = "This field may not be blank.";
pub const NOT_A_STRING: &str = "Not a valid string.";
pub const EMAIL_TAKEN: &str = "user with this email address already exists.";
pub const BAD_CREDENTIALS: &str = "Unable to log in with provided credentials.";
pub const INVALID_PASSWORD: &str = "Invalid password.";
pub const TOO_SHORT: &str = "This password is too short. It must contain at least 8 characters.";
pub const TOO_COMMON: &str = "This password is too common.";
pub const ENTIRELY_NUMERIC: &str = "This password is entirely numeric.";
pub const DECODE_ERROR: &str = "Error decoding signature.";
pub const EXPIRED: &str = "Signature has expired.";
pub const UNKNOWN_USER: &str = "Invalid signature.";

/// SPEC §1: every response carries `Cache-Control: no-store` and `X-Content-Type-Options:
/// nosniff`; a 204 has no body; any other body is JSON served as `application/json`.
#[track_caller]
pub fn assert_hardened(response: &Response) {
    assert_eq!(
        response.header("cache-control"),
        Some("no-store"),
        "Cache-Control of a {}",
        response.status
    );
    assert_eq!(
        response.header("x-content-type-options"),
        Some("nosniff"),
        "X-Content-Type-Options of a {}",
        response.status
    );
    assert!(
        response.status < 500,
        "a 5xx for a client's request: {} {:?}",
        response.status,
        String::from_utf8_lossy(&response.body)
    );
    if response.status == 204 {
        assert!(response.body.is_empty(), "a 204 with a body");
    } else if !response.body.is_empty() {
        let content_type = response.header("content-type").unwrap_or_default();
        assert!(
            content_type.starts_with("application/json"),
            "a {} served as {content_type:?}",
            response.status
        );
        response.json();
    }
}

/// A 401 with the exact detail and `WWW-Authenticate: JWT realm="api"`.
#[track_caller]
pub fn assert_unauthorized(response: &Response, detail: &str) {
    response.assert(401, json!({ "detail": detail }));
    assert_eq!(
        response.header("www-authenticate"),
        Some(WWW_AUTHENTICATE),
        "a 401 without the challenge"
    );
    assert_hardened(response);
}

/// A JSON request with the given `Authorization` header value, verbatim.
pub async fn call_with_authorization(
    server: &TestServer,
    method: &str,
    path: &str,
    authorization: &str,
    body: Option<Value>,
) -> Response {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    server
        .raw(
            method,
            path,
            &[
                ("content-type", "application/json"),
                ("authorization", authorization),
            ],
            body,
        )
        .await
}

/// `GET /api/user/view/` with the given `Authorization` header value.
pub async fn view_with_authorization(server: &TestServer, authorization: &str) -> Response {
    call_with_authorization(server, "GET", "/api/user/view/", authorization, None).await
}

/// A request with a raw body of the given content type (no Authorization header).
pub async fn post_raw(
    server: &TestServer,
    path: &str,
    content_type: &str,
    body: impl Into<bytes::Bytes>,
) -> Response {
    server
        .raw("POST", path, &[("content-type", content_type)], body)
        .await
}

/// The user id a token's account has, read over HTTP.
pub async fn user_id(server: &TestServer, token: &str) -> u64 {
    let viewed = server.view(token).await;
    assert_eq!(viewed.status, 200, "{:?}", viewed.json());
    viewed.json()["id"].as_u64().expect("numeric id")
}

const BASE64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Unpadded base64url (RFC 4648 §5), as JWTs use.
pub fn base64url_encode(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(BASE64URL[((n >> (18 - 6 * i)) & 0x3f) as usize] as char);
        }
    }
    out
}

pub fn base64url_decode(text: &str) -> Vec<u8> {
    api_tests::decode_rfc4648(text, BASE64URL)
}

/// A JWT's three dot-separated parts.
pub fn jwt_parts(token: &str) -> (String, String, String) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWT has three parts: {token}");
    (
        parts[0].to_owned(),
        parts[1].to_owned(),
        parts[2].to_owned(),
    )
}

/// A JWT part decoded as JSON.
pub fn jwt_json(part: &str) -> Value {
    serde_json::from_slice(&base64url_decode(part)).expect("JWT part is JSON")
}

/// A JSON value as a JWT part.
pub fn jwt_part(value: &Value) -> String {
    base64url_encode(value.to_string().as_bytes())
}

#[test]
fn the_base64url_helpers_round_trip_and_match_rfc_4648() {
    // RFC 4648 §10 test vectors (unpadded).
    for (plain, encoded) in [
        ("", ""),
        ("f", "Zg"),
        ("fo", "Zm8"),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg"),
        ("fooba", "Zm9vYmE"),
        ("foobar", "Zm9vYmFy"),
    ] {
        assert_eq!(base64url_encode(plain.as_bytes()), encoded);
        assert_eq!(base64url_decode(encoded), plain.as_bytes());
    }
    assert_eq!(base64url_encode(&[0xfb, 0xff]), "-_8");
}
