//! `ceiling <port>`: the reference ceiling for `scripts/bench` — the least a server can do to
//! answer `GET /api/user/view/`: hyper (HTTP/1, keep-alive, tokio multi-thread), an HS256 JWT
//! verified with issuer and audience, one redb point read of a JSON user record, a JSON answer.
//! No routing, no middleware, no service layer. Prints a valid token on its first line of
//! stdout, then serves until killed. Measured in the same run as the real server, it turns the
//! view figure into "% of this machine's limit".

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use redb::{Database, TableDefinition};
use serde_json::{json, Value};

const USERS: TableDefinition<u64, &[u8]> = TableDefinition::new("users");
const KEY: &[u8] = b"ceiling-bench-key-ceiling-bench-key-0123";

struct Ceiling {
    db: Database,
    key: DecodingKey,
    validation: Validation,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn answer(ceiling: &Ceiling, request: &hyper::Request<hyper::body::Incoming>) -> (u16, Vec<u8>) {
    let Some(token) = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("JWT "))
    else {
        return (401, b"{}".to_vec());
    };
    let Ok(claims) = jsonwebtoken::decode::<Value>(token, &ceiling.key, &ceiling.validation) else {
        return (401, b"{}".to_vec());
    };
    let claims = claims.claims;
    if claims["exp"].as_i64().is_none_or(|exp| now() >= exp) {
        return (401, b"{}".to_vec());
    }
    let id = claims["user_id"].as_u64().unwrap_or(0);
    let tx = ceiling.db.begin_read().expect("read");
    let table = tx.open_table(USERS).expect("table");
    let Some(row) = table.get(id).expect("get") else {
        return (401, b"{}".to_vec());
    };
    let user: Value = serde_json::from_slice(row.value()).expect("user");
    if user["token_gen"] != claims["tgen"] {
        return (401, b"{}".to_vec());
    }
    let body = json!({"id": user["id"], "email": user["email"], "is_active": true});
    (200, serde_json::to_vec(&body).unwrap())
}

#[tokio::main]
async fn main() {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(3998);
    let dir = std::env::temp_dir().join(format!("ceiling-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = Database::create(dir.join("ceiling.redb")).unwrap();
    let user = json!({"id": 1, "email": "ceiling@example.com", "token_gen": "g1",
        "password": "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaA",
        "is_active": true, "date_joined": 0, "last_login": null, "totp": null, "static_codes": []});
    let tx = db.begin_write().unwrap();
    tx.open_table(USERS)
        .unwrap()
        .insert(1u64, serde_json::to_vec(&user).unwrap().as_slice())
        .unwrap();
    tx.commit().unwrap();
    let mut validation = Validation::new(Algorithm::HS256);
    validation.validate_exp = false;
    validation.set_issuer(&["ceiling"]);
    validation.set_audience(&["ceiling"]);
    let claims = json!({"user_id": 1, "username": "ceiling@example.com", "exp": now() + 3600,
        "iat": now(), "otp_device_id": null, "tgen": "g1", "iss": "ceiling", "aud": "ceiling"});
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(KEY),
    )
    .unwrap();
    println!("{token}");
    let ceiling = Arc::new(Ceiling {
        db,
        key: DecodingKey::from_secret(KEY),
        validation,
    });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let ceiling = ceiling.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let (status, body) = answer(&ceiling, &request);
                let response = hyper::Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(body)))
                    .unwrap();
                async move { Ok::<_, Infallible>(response) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
