//! `loadgen <base-url> <seconds> <concurrency>`: signs up a user, then measures requests/s and
//! p50/p99 latency of `GET /api/user/view/` and `POST /api/user/login/` with `concurrency`
//! keep-alive clients for `seconds` each. Used by `scripts/bench`; prints figures, asserts nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

async fn send(
    client: &HttpClient,
    method: &str,
    url: &str,
    auth: Option<&str>,
    body: &str,
) -> (u16, Bytes) {
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json");
    if let Some(token) = auth {
        request = request.header("authorization", format!("JWT {token}"));
    }
    let response = client
        .request(
            request
                .body(Full::new(Bytes::from(body.to_owned())))
                .unwrap(),
        )
        .await
        .expect("request");
    let status = response.status().as_u16();
    (
        status,
        response.into_body().collect().await.unwrap().to_bytes(),
    )
}

async fn measure(
    label: &str,
    seconds: u64,
    concurrency: usize,
    make: Arc<dyn Fn() -> (String, String, Option<String>, String) + Send + Sync>,
) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let make = make.clone();
        tasks.push(tokio::spawn(async move {
            let client: HttpClient =
                Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            while Instant::now() < deadline {
                let (method, url, auth, body) = make();
                let started = Instant::now();
                let (status, _) = send(&client, &method, &url, auth.as_deref(), &body).await;
                latencies.push(started.elapsed());
                if status >= 300 {
                    errors += 1;
                }
            }
            (latencies, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (latencies, e) = task.await.unwrap();
        all.extend(latencies);
        errors += e;
    }
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    println!(
        "{label:<28} {:>9.0} req/s   p50 {:>7.2} ms   p99 {:>7.2} ms   ({} requests, {errors} non-2xx)",
        all.len() as f64 / seconds as f64,
        pct(0.50).as_secs_f64() * 1000.0,
        pct(0.99).as_secs_f64() * 1000.0,
        all.len()
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let base = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "http://127.0.0.1:3000".into());
    let seconds: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10);
    let concurrency: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(8);
    let client: HttpClient = Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let email = format!("bench-{}@example.com", api_tests::random_hex(6));
    let credentials = format!(
        r#"{{"email":"{email}","password":"{}"}}"#,
        api_tests::STRONG_PASSWORD
    );
    let (status, _) = send(
        &client,
        "POST",
        &format!("{base}/api/user/create/"),
        None,
        &credentials,
    )
    .await;
    assert_eq!(status, 201, "sign-up failed");
    let (_, body) = send(
        &client,
        "POST",
        &format!("{base}/api/user/login/"),
        None,
        &credentials,
    )
    .await;
    let token = serde_json::from_slice::<serde_json::Value>(&body).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();

    let view_url = format!("{base}/api/user/view/");
    measure(
        "GET /api/user/view/",
        seconds,
        concurrency,
        Arc::new(move || {
            (
                "GET".into(),
                view_url.clone(),
                Some(token.clone()),
                String::new(),
            )
        }),
    )
    .await;
    let login_url = format!("{base}/api/user/login/");
    measure(
        "POST /api/user/login/",
        seconds,
        concurrency,
        Arc::new(move || ("POST".into(), login_url.clone(), None, credentials.clone())),
    )
    .await;
}
