//! The black-box harness: [`TestServer::start`] runs the real app (the same dispatch and
//! handlers the Lambda functions use) on a random 127.0.0.1 port with a fresh store, a manual
//! clock and a fresh outbox; the helpers speak plain HTTP to it, one per endpoint.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use auth::clock::ManualClock;
use auth::domain::keys::Secrets;
use auth::mail::outbox::Outbox;
use auth::mail::ses::SesMailer;
use auth::mail::Mailer;
use auth::settings::Settings;
use auth::store::dynamo::DynamoStore;
use auth::store::embedded::EmbeddedStore;
use auth::store::Store;
use auth::App;
use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use rand::RngCore;
use serde_json::{json, Value};

pub mod faults;

pub const STRONG_PASSWORD: &str = "correct-horse-battery-9";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The embedded redb store in a fresh temporary folder.
    Embedded,
    /// DynamoDB at `AWS_ENDPOINT_URL` (moto in the test command), a fresh table per server.
    DynamoDb,
    /// The same, over a network that loses the first answer of every write after the write
    /// was applied ([`faults::LosingAnswers`]).
    DynamoDbLosingAnswers,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailBackend {
    Outbox,
    /// SES v2 at `AWS_ENDPOINT_URL` (moto in the test command).
    Ses,
}

pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// A unique address per call, so tests sharing a backend never collide.
pub fn unique_email(prefix: &str) -> String {
    format!("{prefix}-{}@example.com", random_hex(6))
}

/// Every DynamoDB operation the store sends (one entry per HTTP call, retries included), read
/// off the `X-Amz-Target` header by an SDK interceptor.
#[derive(Debug, Clone, Default)]
pub struct DynamoCalls(Arc<Mutex<Vec<String>>>);

impl DynamoCalls {
    /// The operations sent since the last `take`.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

impl Intercept for DynamoCalls {
    fn name(&self) -> &'static str {
        "DynamoCalls"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _config: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(operation) = dynamodb_operation(context.request()) {
            self.0.lock().unwrap().push(operation.to_owned());
        }
        Ok(())
    }
}

/// The DynamoDB operation a request calls (`GetItem`, ...), from its `X-Amz-Target` header.
pub fn dynamodb_operation(
    request: &aws_smithy_runtime_api::client::orchestrator::HttpRequest,
) -> Option<&str> {
    let target = request.headers().get("x-amz-target")?;
    target.rsplit('.').next()
}

/// The AWS config for the emulator the test command started. Panics (fails the test) when no
/// endpoint is configured: DynamoDB and SES tests never skip.
pub async fn emulator_config() -> aws_types::SdkConfig {
    assert!(
        std::env::var_os("AWS_ENDPOINT_URL").is_some(),
        "AWS_ENDPOINT_URL is not set: run the tests with ./scripts/test, which starts the \
         DynamoDB/SES emulator (these tests never skip)"
    );
    auth::wiring::aws::sdk_config().expect("AWS configuration from the environment")
}

pub struct Response {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {} body is not JSON ({e}): {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn token(&self) -> String {
        self.json()["token"]
            .as_str()
            .unwrap_or_else(|| panic!("no token in {}: {:?}", self.status, self.json()))
            .to_owned()
    }

    /// Checks the status alone (the body is shown when it differs).
    #[track_caller]
    pub fn assert_status(&self, status: u16) {
        assert_eq!(
            self.status,
            status,
            "unexpected answer: {}",
            String::from_utf8_lossy(&self.body)
        );
    }

    #[track_caller]
    pub fn assert(&self, status: u16, body: Value) {
        assert_eq!(
            (self.status, self.json()),
            (status, body),
            "unexpected answer"
        );
    }
}

pub struct TestServer {
    pub base: String,
    /// DynamoDB calls made so far (DynamoDB backend only).
    pub dynamo_calls: DynamoCalls,
    /// What the answer-losing network did (that backend only).
    pub faults: Option<Arc<faults::Faults>>,
    pub clock: Arc<ManualClock>,
    pub app: Arc<App>,
    pub outbox: PathBuf,
    dir: PathBuf,
    /// The loopback address requests come from, and a client bound to it: each server (and so
    /// each test) is its own client IP, as real clients are, for the per-IP limits.
    client: Mutex<(IpAddr, Client<HttpConnector, Full<Bytes>>)>,
}

/// A client whose connections come from `ip` (any 127.x.y.z works on Linux loopback).
fn client_from(ip: IpAddr) -> Client<HttpConnector, Full<Bytes>> {
    let mut connector = HttpConnector::new();
    connector.set_local_address(Some(ip));
    Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector)
}

/// A random loopback address other than 127.0.0.1.
pub fn random_loopback() -> IpAddr {
    let mut bytes = [0u8; 3];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    IpAddr::V4(std::net::Ipv4Addr::new(
        127,
        bytes[0],
        bytes[1],
        bytes[2].max(2),
    ))
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub struct Options {
    pub backend: Backend,
    pub mail: MailBackend,
    /// Deliver queued mail in the background, as the local server does (off: the storage
    /// calls counted are the requests' own).
    pub deliver_mail: bool,
    pub settings: Box<dyn FnOnce(&mut Settings) + Send>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            backend: Backend::Embedded,
            mail: MailBackend::Outbox,
            deliver_mail: true,
            settings: Box::new(|_| {}),
        }
    }
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    pub async fn start_on(backend: Backend) -> Self {
        Self::start_with(Options {
            backend,
            ..Options::default()
        })
        .await
    }

    pub async fn start_with(options: Options) -> Self {
        if let Ok(base) = std::env::var(EXTERNAL_BASE_URL) {
            return Self::external(base, options).await;
        }
        let dir = std::env::temp_dir().join(format!("api-test-{}", random_hex(8)));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut settings = Settings::local(dir.clone());
        // Tests measure behaviour, not timing; the floor is exercised by the bench.
        settings.reset_min_duration_ms = 0;
        (options.settings)(&mut settings);
        let dynamo_calls = DynamoCalls::default();
        let mut faults = None;
        let store: Arc<dyn Store> = match options.backend {
            Backend::Embedded => {
                Arc::new(EmbeddedStore::open(&dir.join("accounts.redb")).expect("embedded store"))
            }
            Backend::DynamoDb | Backend::DynamoDbLosingAnswers => {
                let sdk = emulator_config().await;
                let mut config =
                    aws_sdk_dynamodb::config::Builder::from(&sdk).interceptor(dynamo_calls.clone());
                if options.backend == Backend::DynamoDbLosingAnswers {
                    let layer = faults::LosingAnswers::new(
                        sdk.http_client()
                            .expect("the SDK config names its HTTP client"),
                    );
                    faults = Some(layer.faults());
                    // Every write is sent twice here: retry at once rather than after the
                    // production backoff (up to a second), which would only slow the suite,
                    // and from an unlimited retry quota of this server's own. The quota (500
                    // per process, shared by every client) stops retry storms against an
                    // unhealthy service; a network losing every write's first answer, with
                    // twenty requests in flight, is not the case it is sized for.
                    use aws_sdk_dynamodb::config::retry::{
                        RetryConfig, RetryPartition, TokenBucket,
                    };
                    config = config
                        .http_client(layer)
                        .retry_config(
                            RetryConfig::standard()
                                .with_max_attempts(auth::wiring::aws::SDK_ATTEMPTS)
                                .with_initial_backoff(std::time::Duration::from_millis(5)),
                        )
                        .retry_partition(
                            RetryPartition::custom(format!("losing-answers-{}", random_hex(4)))
                                .token_bucket(TokenBucket::unlimited())
                                .build(),
                        );
                }
                let config = config.build();
                let store = DynamoStore::with_client(
                    aws_sdk_dynamodb::Client::from_conf(config),
                    format!("test-{}", random_hex(6)),
                );
                store.ensure_table().await.expect("create test table");
                Arc::new(store)
            }
        };
        let outbox = dir.join("outbox");
        let mailer: Arc<dyn Mailer> = match options.mail {
            MailBackend::Outbox => Arc::new(Outbox::new(outbox.clone())),
            MailBackend::Ses => {
                let ses = SesMailer::new(&emulator_config().await);
                ses.ensure_identity(&settings.mail_from)
                    .await
                    .expect("verify sender identity");
                Arc::new(ses)
            }
        };
        let clock = Arc::new(ManualClock::starting_now());
        let app = Arc::new(
            App::new(settings, &Secrets::generate(), store, mailer, clock.clone()).expect("app"),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        match options.deliver_mail {
            true => tokio::spawn(local_api::serve(listener, app.clone())),
            false => tokio::spawn(local_api::serve_requests(listener, app.clone())),
        };
        dynamo_calls.take(); // table creation is not a request's cost
        let source = random_loopback();
        Self {
            base,
            dynamo_calls,
            faults,
            clock,
            app,
            outbox,
            dir,
            client: Mutex::new((source, client_from(source))),
        }
    }

    /// From now on, requests come from `ip`.
    pub fn use_source_ip(&self, ip: IpAddr) {
        *self.client.lock().unwrap() = (ip, client_from(ip));
    }

    /// The address requests come from now.
    pub fn source_ip(&self) -> IpAddr {
        self.client.lock().unwrap().0
    }

    /// Any request: method, path, headers, raw body.
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Response {
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(body.into())).expect("request");
        let client = self.client.lock().unwrap().1.clone();
        let response = client.request(request).await.expect("HTTP round trip");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("body").to_bytes().to_vec();
        Response {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        }
    }

    /// A JSON request, optionally with `Authorization: JWT <token>`.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Response {
        let auth = token.map(|t| format!("JWT {t}"));
        let mut headers = vec![("content-type", "application/json")];
        if let Some(auth) = &auth {
            headers.push(("authorization", auth.as_str()));
        }
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        self.raw(method, path, &headers, body).await
    }

    // One helper per endpoint.

    pub async fn create_user(&self, email: &str, password: &str) -> Response {
        self.call(
            "POST",
            "/api/user/create/",
            None,
            Some(json!({"email": email, "password": password})),
        )
        .await
    }

    pub async fn login(&self, email: &str, password: &str) -> Response {
        self.call(
            "POST",
            "/api/user/login/",
            None,
            Some(json!({"email": email, "password": password})),
        )
        .await
    }

    pub async fn view(&self, token: &str) -> Response {
        self.call("GET", "/api/user/view/", Some(token), None).await
    }

    pub async fn logout_all(&self, token: &str) -> Response {
        self.call("POST", "/api/user/logout/all/", Some(token), None)
            .await
    }

    pub async fn delete_user(&self, token: &str, current_password: &str) -> Response {
        self.call(
            "POST",
            "/api/user/delete/",
            Some(token),
            Some(json!({"current_password": current_password})),
        )
        .await
    }

    pub async fn change_password(&self, token: &str, current: &str, new: &str) -> Response {
        self.call(
            "POST",
            "/api/user/password/change/",
            Some(token),
            Some(json!({"current_password": current, "new_password": new})),
        )
        .await
    }

    pub async fn request_reset(&self, email: &str) -> Response {
        self.call(
            "POST",
            "/api/user/password/reset/",
            None,
            Some(json!({ "email": email })),
        )
        .await
    }

    pub async fn confirm_reset(&self, uid: &str, token: &str, new_password: &str) -> Response {
        self.call(
            "POST",
            "/api/user/password/reset/confirm/",
            None,
            Some(json!({"uid": uid, "token": token, "new_password": new_password})),
        )
        .await
    }

    pub async fn totp_create(&self, token: &str) -> Response {
        self.call("GET", "/api/totp/create/", Some(token), None)
            .await
    }

    pub async fn totp_login(&self, token: &str, code: &str) -> Response {
        self.call(
            "POST",
            &format!("/api/totp/login/{code}/"),
            Some(token),
            None,
        )
        .await
    }

    pub async fn totp_delete(&self, token: &str) -> Response {
        self.call("POST", "/api/totp/delete/", Some(token), None)
            .await
    }

    pub async fn static_create(&self, token: &str) -> Response {
        self.call("GET", "/api/static/create/", Some(token), None)
            .await
    }

    pub async fn static_login(&self, token: &str, code: &str) -> Response {
        self.call(
            "POST",
            &format!("/api/static/login/{code}/"),
            Some(token),
            None,
        )
        .await
    }

    /// Creates an account and logs in: (email, password-only token).
    pub async fn signed_up(&self, prefix: &str) -> (String, String) {
        let email = unique_email(prefix);
        let created = self.create_user(&email, STRONG_PASSWORD).await;
        assert_eq!(created.status, 201, "{:?}", created.json());
        let token = self.login(&email, STRONG_PASSWORD).await.token();
        (email, token)
    }

    /// The newest outbox mail to `to` whose text contains `needle`, waiting up to 3 s (mail is
    /// delivered from the queue in the background).
    pub async fn wait_for_mail(&self, to: &str, needle: &str) -> Option<String> {
        for _ in 0..150 {
            let found = self
                .outbox_messages()
                .into_iter()
                .rev()
                .find(|m| m.contains(&format!("To: {to}\r\n")) && m.contains(needle));
            if found.is_some() {
                return found;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        None
    }

    /// The newest password-reset mail to `to`.
    pub async fn wait_for_reset_mail(&self, to: &str) -> Option<String> {
        self.wait_for_mail(to, "Subject: Password reset on").await
    }

    /// Mail written to the outbox so far, oldest first.
    pub fn outbox_messages(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.outbox) else {
            return Vec::new();
        };
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        paths
            .iter()
            .map(|p| std::fs::read_to_string(p).expect("eml"))
            .collect()
    }
}

/// The newest message the SES emulator holds for `to` whose text contains `needle`, waiting up
/// to 5 s (mail is delivered from the queue in the background).
pub async fn ses_message(to: &str, needle: &str) -> Option<Value> {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").expect("set by ./scripts/test");
    let client: Client<HttpConnector, http_body_util::Empty<Bytes>> =
        Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    for _ in 0..50 {
        let response = client
            .get(format!("{endpoint}/moto-api/data.json").parse().unwrap())
            .await
            .expect("moto data");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let data: Value = serde_json::from_slice(&body).unwrap();
        let found = data["ses"]["Message"]
            .as_array()
            .into_iter()
            .flatten()
            .rev()
            .find(|m| {
                m["destinations"]["ToAddresses"].to_string().contains(to)
                    && m.to_string().contains(needle)
            })
            .cloned();
        if found.is_some() {
            return found;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    None
}

/// The secret in an otpauth URL's `secret=` parameter, decoded from base32.
pub fn otpauth_secret(url: &str) -> Vec<u8> {
    let encoded = url
        .split(['?', '&'])
        .find_map(|p| p.strip_prefix("secret="))
        .expect("secret parameter");
    base32_decode(encoded)
}

/// RFC 4648 base32, independent of the service's own encoder.
pub fn base32_decode(text: &str) -> Vec<u8> {
    decode_rfc4648(
        &text.to_ascii_uppercase(),
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567",
    )
}

/// Decodes an RFC 4648 encoding (base32, base64, base64url: the alphabet says which), padding
/// optional. Written here, not taken from the service, so tests check it independently.
pub fn decode_rfc4648(text: &str, alphabet: &[u8]) -> Vec<u8> {
    let width = alphabet.len().trailing_zeros();
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for c in text.trim_end_matches('=').bytes() {
        let value = alphabet
            .iter()
            .position(|a| *a == c)
            .unwrap_or_else(|| panic!("{:?} is not in the alphabet", c as char));
        bits = (bits << width) | value as u32;
        count += width;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    out
}

/// The `{uid}/{token}` of the reset link in a mail body.
pub fn reset_link_parts(mail: &str) -> (String, String) {
    let start = mail
        .find("/password/reset/confirm/")
        .expect("reset link in mail")
        + "/password/reset/confirm/".len();
    let rest = &mail[start..];
    let mut parts = rest.split('/');
    let uid = parts.next().expect("uid").to_owned();
    let token: String = parts
        .next()
        .expect("token")
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    (uid, token)
}

/// RFC 6238 TOTP (SHA1, 6 digits, 30 s) written here from the RFC, independent of the
/// service's implementation; cross-checked against pyotp in the tests.
pub fn totp_code(secret: &[u8], unix_time: i64) -> String {
    use hmac::{Hmac, Mac};
    let counter = (unix_time / 30) as u64;
    let mut mac = <Hmac<sha1::Sha1> as Mac>::new_from_slice(secret).expect("key");
    mac.update(&counter.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = (digest[19] & 0x0f) as usize;
    let binary = u32::from_be_bytes([
        digest[offset] & 0x7f,
        digest[offset + 1],
        digest[offset + 2],
        digest[offset + 3],
    ]);
    format!("{:06}", binary % 1_000_000)
}

impl TestServer {
    /// The current TOTP code of a secret, at the server's (manual) clock.
    pub fn code_now(&self, secret: &[u8]) -> String {
        use auth::clock::Clock;
        totp_code(secret, self.clock.now())
    }

    /// Signs up, enrols a TOTP device and verifies it: (email, secret, OTP-verified token).
    pub async fn enrolled(&self, prefix: &str) -> (String, Vec<u8>, String) {
        let (email, token) = self.signed_up(prefix).await;
        let created = self.totp_create(&token).await;
        assert_eq!(created.status, 201, "{:?}", created.body);
        let secret = otpauth_secret(created.json().as_str().expect("URL string"));
        let verified = self.totp_login(&token, &self.code_now(&secret)).await;
        assert_eq!(verified.status, 201, "{:?}", verified.body);
        (email, secret, verified.token())
    }
}

/// Polls all futures at once on this task, so their requests race inside the server.
pub async fn join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut pinned: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = (0..pinned.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in pinned.iter_mut().enumerate() {
            if outputs[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => outputs[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().map(|o| o.expect("ready")).collect()
}

/// Set (to `http://127.0.0.1:<port>`) by `scripts/gateway-suite`: every `TestServer::start*`
/// then speaks to that already running server, the deployed shape under the gateway, instead
/// of starting the app in-process.
pub const EXTERNAL_BASE_URL: &str = "API_TEST_BASE_URL";

impl TestServer {
    /// A client of the already running server at `base`. Nothing in-process serves it: its
    /// `clock`, `app`, `outbox` and `dynamo_calls` belong to no server (a detached app on an
    /// empty store, a clock nobody reads), so tests that use them, or that ask for settings of
    /// their own (refused here), stay in-process: `tests/gateway-skip.txt` lists them.
    pub async fn external(base: String, options: Options) -> Self {
        let dir = std::env::temp_dir().join(format!("api-test-{}", random_hex(8)));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let defaults = Settings::local(dir.clone());
        let mut asked = defaults.clone();
        (options.settings)(&mut asked);
        assert_eq!(
            format!("{asked:?}"),
            format!("{defaults:?}"),
            "this test sets server settings of its own: it cannot run against {base} (list it \
             in tests/gateway-skip.txt)"
        );
        let clock = Arc::new(ManualClock::starting_now());
        let store = EmbeddedStore::open(&dir.join("detached.redb")).expect("embedded store");
        let outbox = dir.join("outbox");
        let app = Arc::new(
            App::new(
                defaults,
                &Secrets::generate(),
                Arc::new(store),
                Arc::new(Outbox::new(outbox.clone())),
                clock.clone(),
            )
            .expect("app"),
        );
        // Its own client IP, as in-process: the gateway passes the TCP peer as `sourceIp`.
        let source = random_loopback();
        Self {
            base: base.trim_end_matches('/').to_owned(),
            dynamo_calls: DynamoCalls::default(),
            faults: None,
            clock,
            app,
            outbox,
            dir,
            client: Mutex::new((source, client_from(source))),
        }
    }
}

// Operator CLI (accounts-admin) support.

impl TestServer {
    /// Another app over this server's store, mailer and clock, with `secrets` (operator tests:
    /// an app before and after a key rotation). Requests still go to the server's own app.
    pub fn app_with_secrets(&self, secrets: &Secrets) -> App {
        let service = &self.app.service;
        App::new(
            service.settings.clone(),
            secrets,
            service.store.clone(),
            service.mailer.clone(),
            service.clock.clone(),
        )
        .expect("app")
    }
}
