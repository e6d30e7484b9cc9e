//! Start-up and the HTTP front. Start-up fails loudly (an error naming the function and its
//! last output) when the template cannot be resolved, a binary is missing, a process fails its
//! init, or a route is not served by the function the template sends it to.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::event::{self, Answer, Context};
use crate::routes::{Route, Router};
use crate::runtime::{Launch, LogSink, Pool, Status, RESERVED};
use crate::template::{Binaries, Deployment, Overrides, Template};

/// The overrides file used when none is named (relative to the workspace root).
pub const DEFAULT_OVERRIDES: &str = "tools/gateway/local.yaml";

/// API Gateway's request payload limit.
const MAX_REQUEST_BYTES: usize = 10 * 1024 * 1024;
/// Lambda's synchronous invocation payload limit.
const MAX_EVENT_BYTES: usize = 6 * 1024 * 1024;
/// API Gateway's integration timeout (HTTP APIs: 30 s).
const INTEGRATION_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct Options {
    pub template: PathBuf,
    /// Default: [`DEFAULT_OVERRIDES`], when present.
    pub overrides: Option<PathBuf>,
    pub params: BTreeMap<String, String>,
    /// Default: cargo-lambda's `target/lambda/<binary>/bootstrap` under each `CodeUri`.
    pub binaries: Option<PathBuf>,
    /// Sample events (`routeKey` → `rawPath`) giving the route probe concrete paths for routes
    /// with `{parameters}`. Default: `../events` from the template, when present.
    pub events: Option<PathBuf>,
    pub port: u16,
    pub instances: usize,
    pub init_timeout: Duration,
    /// One log file per function here, instead of the gateway's stdout.
    pub logs: Option<PathBuf>,
    /// Start, probe, report, stop.
    pub check: bool,
    pub probe: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            template: PathBuf::from("infra/template.yaml"),
            overrides: None,
            params: BTreeMap::new(),
            binaries: None,
            events: None,
            port: 3000,
            instances: 2,
            init_timeout: Duration::from_secs(10),
            logs: None,
            check: false,
            probe: true,
        }
    }
}

fn say(line: &str) {
    println!("gateway: {line}");
}

/// Variables of the gateway's own environment every process gets: the emulator endpoint and
/// the credentials that stand in for the function's execution role.
fn passthrough_env() -> Vec<(String, String)> {
    std::env::vars()
        .filter(|(name, _)| {
            name.starts_with("AWS_ENDPOINT_URL")
                || matches!(
                    name.as_str(),
                    "AWS_ACCESS_KEY_ID"
                        | "AWS_SECRET_ACCESS_KEY"
                        | "AWS_SESSION_TOKEN"
                        | "AWS_EC2_METADATA_DISABLED"
                        // A slow local emulator needs longer SDK timeouts than DynamoDB.
                        | "AWS_ATTEMPT_TIMEOUT_MS"
                        | "AWS_OPERATION_TIMEOUT_MS"
                )
        })
        .collect()
}

struct Gateway {
    router: Router,
    pools: Vec<Pool>,
    deployment: Deployment,
    port: u16,
    throttle: Option<Mutex<Bucket>>,
}

/// API Gateway's stage throttling (token bucket: `rate` per second, `burst` deep).
struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn take(&mut self) -> bool {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Runs the gateway until Ctrl-C (or, with `check`, until start-up is verified).
pub async fn run(options: Options) -> Result<(), String> {
    let template_dir = options
        .template
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let overrides = match &options.overrides {
        Some(path) => Overrides::load(path)?,
        None => {
            let default = PathBuf::from(DEFAULT_OVERRIDES);
            if default.exists() {
                Overrides::load(&default)?
            } else {
                Overrides {
                    source: format!("{} (absent)", default.display()),
                    ..Overrides::default()
                }
            }
        }
    };
    let extra_env: Vec<(String, String)> = overrides
        .environment
        .iter()
        .map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
        .collect::<Result<_, _>>()?;
    let template = Template::load(&options.template, overrides, options.params.clone())?;
    let binaries = match &options.binaries {
        Some(dir) => Binaries::Dir(dir.clone()),
        None => Binaries::CargoLambda,
    };
    let deployment = template.deployment(&binaries)?;
    check_deployment(&deployment, &extra_env)?;

    let mut routes = Vec::new();
    for (index, function) in deployment.functions.iter().enumerate() {
        for route in &function.routes {
            routes.push(Route::new(
                route.method.as_deref(),
                route.path.as_deref(),
                index,
            ));
        }
    }
    let router = Router::new(routes);
    say(&format!(
        "{}: HTTP API {} (stage {}), {} routes, {} functions, {} processes each",
        options.template.display(),
        deployment.api.logical_id,
        deployment.api.stage,
        router.routes().len(),
        deployment.functions.len(),
        options.instances
    ));
    for (id, sources) in &deployment.not_run {
        say(&format!(
            "NOT RUN: {id} (no HTTP route reaches it; its {} event source is not emulated, so \
             what it would do does not happen here)",
            if sources.is_empty() {
                "(none)".to_owned()
            } else {
                sources.join(", ")
            }
        ));
    }
    if deployment.api.cors {
        say("the API configures CORS: API Gateway's CORS handling is NOT emulated here");
    }
    if !passthrough_env()
        .iter()
        .any(|(k, _)| k.starts_with("AWS_ENDPOINT_URL"))
    {
        say("AWS_ENDPOINT_URL is not set: the functions use real AWS with your credentials");
    }

    seed_secrets(&template, &deployment.region).await?;

    // Bind first: a busy port fails before anything starts.
    let listener = TcpListener::bind(("127.0.0.1", options.port))
        .await
        .map_err(|e| format!("127.0.0.1:{}: {e}", options.port))?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();

    if let Some(dir) = &options.logs {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let (shutdown, shutdown_rx) = watch::channel(false);
    let mut pools = Vec::new();
    for function in &deployment.functions {
        let arch = function.architectures.join(",");
        say(&format!(
            "{:<16} {} ({} MB, timeout {} s, {arch} in the template; this machine's build runs) routes: {}",
            function.binary_name,
            function.binary.display(),
            function.memory_mb,
            function.timeout_secs,
            function
                .routes
                .iter()
                .map(|r| r.key())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        let log = match &options.logs {
            Some(dir) => {
                let path = dir.join(format!("{}.log", function.binary_name));
                LogSink::file(&path).map_err(|e| format!("{}: {e}", path.display()))?
            }
            None => LogSink::stdout(),
        };
        let launch = Launch {
            region: deployment.region.clone(),
            account_id: deployment.account_id.clone(),
            extra_env: extra_env.clone(),
            passthrough_env: passthrough_env(),
            log,
            shutdown: shutdown_rx.clone(),
        };
        let pool = Pool::start(function.clone(), options.instances, &launch)
            .await
            .map_err(|e| format!("{}: runtime API: {e}", function.binary_name))?;
        pools.push(pool);
    }

    let started = wait_for_init(&pools, options.init_timeout, options.logs.as_deref()).await;
    if let Err(error) = started {
        shutdown.send_replace(true);
        tokio::time::sleep(Duration::from_millis(200)).await;
        return Err(error);
    }
    let throttle = deployment.api.throttle.map(|(rate, burst)| {
        Mutex::new(Bucket {
            rate,
            burst,
            tokens: burst,
            last: Instant::now(),
        })
    });
    let gateway = Arc::new(Gateway {
        router,
        pools,
        deployment,
        port,
        throttle,
    });
    if options.probe {
        let events = options
            .events
            .clone()
            .unwrap_or_else(|| template_dir.join("../events"));
        if let Err(error) = probe(&gateway, &sample_paths(&events)).await {
            shutdown.send_replace(true);
            tokio::time::sleep(Duration::from_millis(200)).await;
            return Err(error);
        }
    }
    if options.check {
        say("check passed: every process started and every route is served by its function");
        shutdown.send_replace(true);
        tokio::time::sleep(Duration::from_millis(200)).await;
        return Ok(());
    }
    if let Some((rate, burst)) = gateway.deployment.api.throttle {
        say(&format!(
            "stage throttling from the template: {rate} requests/s, burst {burst} (429 beyond)"
        ));
    }
    say(&format!("listening on http://127.0.0.1:{port}"));
    let serving = tokio::spawn(serve(listener, gateway.clone()));
    wait_for_signal().await;
    say("stopping");
    serving.abort();
    shutdown.send_replace(true);
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok(())
}

/// With an emulator endpoint, writes the overrides' `Secrets` into its Secrets Manager (created,
/// or given a new value), as the deploy's prerequisite (README: Deploying to AWS, step 2) would
/// have: functions that read a secret at start-up find it. Never done against real AWS.
async fn seed_secrets(template: &Template, region: &str) -> Result<(), String> {
    let secrets = &template.overrides().secrets;
    if secrets.is_empty() {
        return Ok(());
    }
    let endpoint = std::env::var("AWS_ENDPOINT_URL_SECRETS_MANAGER")
        .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
        .ok()
        .filter(|e| !e.is_empty());
    let Some(endpoint) = endpoint else {
        say("no AWS endpoint override: the overrides' Secrets are not written to Secrets Manager");
        return Ok(());
    };
    let client: HttpClient =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    for (name, keys) in secrets {
        let mut value = serde_json::Map::new();
        let mut unresolved = Vec::new();
        for (key, local) in keys {
            match local {
                Ok(v) => {
                    value.insert(key.clone(), serde_json::Value::String(v.clone()));
                }
                Err(e) => unresolved.push(e.clone()),
            }
        }
        if !unresolved.is_empty() {
            say(&format!(
                "secret {name:?} not written to the emulator: {}",
                unresolved.join("; ")
            ));
            continue;
        }
        let string = match value.get("SecretString") {
            Some(serde_json::Value::String(plain)) if value.len() == 1 => plain.clone(),
            _ => serde_json::Value::Object(value).to_string(),
        };
        let call = |target, body| secrets_manager(&client, &endpoint, region, target, body);
        let (status, answer) = call(
            "CreateSecret",
            serde_json::json!({"Name": name, "SecretString": string}),
        )
        .await?;
        let (status, answer) = if answer.contains("ResourceExistsException") {
            call(
                "PutSecretValue",
                serde_json::json!({"SecretId": name, "SecretString": string}),
            )
            .await?
        } else {
            (status, answer)
        };
        if status != 200 {
            return Err(format!(
                "writing secret {name:?} to the emulator's Secrets Manager: {status} {answer}"
            ));
        }
        say(&format!(
            "secret {name:?} written to the emulator's Secrets Manager ({} keys, from the overrides)",
            keys.len()
        ));
    }
    Ok(())
}

type HttpClient = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
>;

/// One Secrets Manager call to an emulator: (status, body).
async fn secrets_manager(
    client: &HttpClient,
    endpoint: &str,
    region: &str,
    target: &str,
    body: serde_json::Value,
) -> Result<(u16, String), String> {
    let request = hyper::Request::post(endpoint)
        .header("x-amz-target", format!("secretsmanager.{target}"))
        .header("content-type", "application/x-amz-json-1.1")
        // An emulator routes by the credential scope; it checks no signature.
        .header(
            "authorization",
            format!(
                "AWS4-HMAC-SHA256 Credential=local/20260101/{region}/secretsmanager/aws4_request, \
                 SignedHeaders=host, Signature=0"
            ),
        )
        .body(Full::new(Bytes::from(body.to_string())))
        .map_err(|e| e.to_string())?;
    let response = client
        .request(request)
        .await
        .map_err(|e| format!("{endpoint}: {e}"))?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

async fn wait_for_signal() {
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async {
            match terminate.as_mut() {
                Some(t) => { t.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => {}
    }
}

/// Lambda's rules the template must follow, and the local additions' own.
fn check_deployment(deployment: &Deployment, extra_env: &[(String, String)]) -> Result<(), String> {
    let mut errors = Vec::new();
    for function in &deployment.functions {
        for name in function.environment.keys() {
            if RESERVED.contains(&name.as_str()) {
                errors.push(format!(
                    "{}: environment variable {name} is reserved by Lambda (the deploy would fail)",
                    function.logical_id
                ));
            }
        }
        for (name, _) in extra_env {
            if function.environment.contains_key(name) {
                errors.push(format!(
                    "{}: the overrides' Environment sets {name}, which the template sets: \
                     override the template value (Parameters, Refs, Secrets) instead",
                    function.logical_id
                ));
            }
        }
        let binary = &function.binary;
        let executable = std::fs::metadata(binary)
            .map(|m| {
                use std::os::unix::fs::PermissionsExt;
                m.is_file() && m.permissions().mode() & 0o111 != 0
            })
            .unwrap_or(false);
        if !executable {
            errors.push(format!(
                "{}: no executable {} (build the functions first: cargo lambda build --release, \
                 as scripts/check-infra does; or point --binaries at them)",
                function.logical_id,
                binary.display()
            ));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("\n"))
    }
}

/// Starts the processes one after another, each once the one before polled its Runtime API;
/// prints the cold starts.
async fn wait_for_init(pools: &[Pool], limit: Duration, logs: Option<&Path>) -> Result<(), String> {
    let mut failures = Vec::new();
    for pool in pools {
        for instance in &pool.instances {
            instance.start();
            let deadline = tokio::time::Instant::now() + limit;
            let mut status = instance.status.subscribe();
            let outcome = tokio::time::timeout_at(
                deadline,
                status.wait_for(|s| !matches!(s, Status::Starting)),
            )
            .await;
            let failure = match outcome {
                Ok(Ok(status)) => match &*status {
                    Status::Failed(why) => Some(why.clone()),
                    _ => None,
                },
                Ok(Err(_)) => Some("the instance stopped".to_owned()),
                Err(_) => Some(format!(
                    "no /runtime/invocation/next within {} s of its start (Lambda's init limit \
                     is 10 s; --init-timeout)",
                    limit.as_secs()
                )),
            };
            if let Some(why) = failure {
                let mut report = format!(
                    "FUNCTION {} ({}) FAILED TO START: {why}",
                    instance.label, pool.spec.logical_id
                );
                let tail = instance.tail();
                if !tail.is_empty() {
                    report.push_str("\n  its last output:");
                    for line in tail.iter().rev().take(15).rev() {
                        report.push_str("\n    ");
                        report.push_str(line);
                    }
                }
                if let Some(dir) = logs {
                    report.push_str(&format!(
                        "\n  full log: {}",
                        dir.join(format!("{}.log", pool.spec.binary_name)).display()
                    ));
                }
                failures.push(report);
                // Its other processes would fail the same way: not started.
                break;
            }
        }
    }
    if !failures.is_empty() {
        return Err(failures.join("\n"));
    }
    say("cold starts (process spawn → first /runtime/invocation/next):");
    for pool in pools {
        let mut inits: Vec<f64> = pool
            .instances
            .iter()
            .filter_map(|i| i.inits().first().map(|d| d.as_secs_f64() * 1000.0))
            .collect();
        inits.sort_by(f64::total_cmp);
        let median = inits[inits.len() / 2];
        say(&format!(
            "  {:<16} {:>5} MB  median {:>6.1} ms  ({})",
            pool.spec.binary_name,
            pool.spec.memory_mb,
            median,
            inits
                .iter()
                .map(|ms| format!("{ms:.1}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(())
}

/// Route path (`/api/totp/login/{code}`) → `rawPath` of a sample event in `dir` for it.
fn sample_paths(dir: &Path) -> BTreeMap<String, String> {
    let mut paths = BTreeMap::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        let Ok(event) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        if let (Some(key), Some(path)) = (event["routeKey"].as_str(), event["rawPath"].as_str()) {
            if let Some((_, template)) = key.split_once(' ') {
                paths.insert(template.to_owned(), path.to_owned());
            }
        }
    }
    paths
}

/// Sends every route's function an `OPTIONS` for that route (as `aws lambda invoke` would:
/// straight to the function, not through the routes): a function serving the route answers
/// 2xx with an `Allow` naming the method; one that does not (a route sent to the wrong
/// function, a handler lost to feature-gating) answers 404 and start-up fails.
async fn probe(gateway: &Gateway, samples: &BTreeMap<String, String>) -> Result<(), String> {
    let mut failures = Vec::new();
    let mut probed = 0;
    let mut skipped = Vec::new();
    for pool in &gateway.pools {
        for route in &pool.spec.routes {
            let (Some(method), Some(path)) = (&route.method, &route.path) else {
                continue;
            };
            if method == "ANY" {
                continue;
            }
            let key = route.key();
            let concrete = match samples.get(path) {
                Some(sample) => sample.clone(),
                None if path.contains('{') => {
                    skipped.push(key);
                    continue;
                }
                None => format!("{path}/"),
            };
            let request = hyper::Request::builder()
                .method("OPTIONS")
                .uri(&concrete)
                .header("host", format!("127.0.0.1:{}", gateway.port))
                .header("user-agent", "gateway-probe")
                .body(())
                .map_err(|e| e.to_string())?;
            let (parts, _) = request.into_parts();
            let selected = gateway.router.select(method, &concrete);
            let params = selected.map(|s| s.params).unwrap_or_default();
            let event = event::request_event(
                &parts,
                b"",
                &key,
                &params,
                &gateway.context("127.0.0.1".into()),
            );
            let outcome = pool
                .invoke(Bytes::from(event.to_string()), INTEGRATION_TIMEOUT)
                .await;
            probed += 1;
            let verdict = match outcome {
                None => Err("no answer within 30 s".to_owned()),
                Some(outcome) => match outcome.result {
                    Err(failure) => Err(failure.to_string()),
                    Ok(payload) => match event::response_answer(&payload) {
                        Err(e) => Err(format!("malformed response: {e}")),
                        Ok(answer) => {
                            let allow = answer
                                .headers
                                .iter()
                                .find(|(k, _)| k == "allow")
                                .map(|(_, v)| v.clone())
                                .unwrap_or_default();
                            let listed = allow.split(',').any(|m| m.trim() == method);
                            if (200..300).contains(&answer.status) && listed {
                                Ok(())
                            } else {
                                Err(format!(
                                    "OPTIONS {concrete} answered {} (Allow: {allow:?}) {}",
                                    answer.status,
                                    String::from_utf8_lossy(&answer.body)
                                ))
                            }
                        }
                    },
                },
            };
            if let Err(why) = verdict {
                failures.push(format!(
                    "ROUTE {key} ({}) IS NOT SERVED BY {} ({}): {why}",
                    route.event, pool.spec.binary_name, pool.spec.logical_id
                ));
            }
        }
    }
    if !failures.is_empty() {
        return Err(format!(
            "{}\n(the template sends these routes to a function whose binary does not serve them)",
            failures.join("\n")
        ));
    }
    say(&format!(
        "route probe: {probed} routes answered OPTIONS from the function the template names"
    ));
    if !skipped.is_empty() {
        say(&format!(
            "route probe: not probed (no sample event gives a path): {}",
            skipped.join(", ")
        ));
    }
    Ok(())
}

impl Gateway {
    fn context(&self, source_ip: String) -> Context {
        Context {
            request_id: event::gateway_request_id(),
            time_epoch_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or_default(),
            source_ip,
            account_id: self.deployment.account_id.clone(),
            api_id: "local".into(),
            stage: self.deployment.api.stage.clone(),
            forwarded_port: self.port,
            forwarded_proto: "http".into(),
        }
    }
}

async fn serve(listener: TcpListener, gateway: Arc<Gateway>) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        let gateway = gateway.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let gateway = gateway.clone();
                async move { Ok::<_, Infallible>(handle(gateway, peer, request).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn http_answer(answer: Answer, request_id: &str) -> hyper::Response<Full<Bytes>> {
    let mut response = hyper::Response::new(Full::new(Bytes::from(answer.body)));
    *response.status_mut() =
        hyper::StatusCode::from_u16(answer.status).unwrap_or(hyper::StatusCode::BAD_GATEWAY);
    let headers = response.headers_mut();
    for (name, value) in answer.headers {
        if let (Ok(name), Ok(value)) = (
            hyper::header::HeaderName::from_bytes(name.as_bytes()),
            hyper::header::HeaderValue::from_str(&value),
        ) {
            headers.append(name, value);
        }
    }
    if let Ok(value) = hyper::header::HeaderValue::from_str(request_id) {
        headers.insert("apigw-requestid", value);
    }
    response
}

async fn handle(
    gateway: Arc<Gateway>,
    peer: SocketAddr,
    request: hyper::Request<Incoming>,
) -> hyper::Response<Full<Bytes>> {
    let started = Instant::now();
    let context = gateway.context(peer.ip().to_string());
    let (parts, body) = request.into_parts();
    let method = parts.method.to_string();
    let log = |status: u16, route: &str, by: &str| {
        say(&format!(
            "{status} {route} {by} {:.1} ms",
            started.elapsed().as_secs_f64() * 1000.0
        ));
    };
    if let Some(bucket) = &gateway.throttle {
        if !bucket.lock().unwrap().take() {
            log(429, &method, "(stage throttled)");
            return http_answer(
                Answer::gateway(429, "Too Many Requests"),
                &context.request_id,
            );
        }
    }
    let body = match Limited::new(body, MAX_REQUEST_BYTES).collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => {
            log(413, &method, "(request over 10 MB)");
            return http_answer(
                Answer::gateway(413, "Request Entity Too Large"),
                &context.request_id,
            );
        }
    };
    // Logs name the route key, never the raw path: codes travel in paths.
    let Some(selected) = gateway.router.select(&method, parts.uri.path()) else {
        log(404, &format!("{method} (no route)"), "");
        return http_answer(Answer::gateway(404, "Not Found"), &context.request_id);
    };
    let event = event::request_event(&parts, &body, selected.key, &selected.params, &context);
    let event = Bytes::from(event.to_string());
    if event.len() > MAX_EVENT_BYTES {
        log(413, selected.key, "(event over Lambda's 6 MB)");
        return http_answer(
            Answer::gateway(413, "Request Entity Too Large"),
            &context.request_id,
        );
    }
    let pool = &gateway.pools[selected.function];
    let (answer, by) = match pool.invoke(event, INTEGRATION_TIMEOUT).await {
        None => (
            Answer::gateway(503, "Service Unavailable"),
            format!("{} (no answer within 30 s)", pool.spec.binary_name),
        ),
        Some(outcome) => match outcome.result {
            Ok(payload) => match event::response_answer(&payload) {
                Ok(answer) => (answer, outcome.instance),
                Err(e) => {
                    say(&format!(
                        "MALFORMED RESPONSE from {}: {e}: {}",
                        outcome.instance,
                        String::from_utf8_lossy(&payload)
                    ));
                    (
                        Answer::gateway(500, "Internal Server Error"),
                        outcome.instance,
                    )
                }
            },
            Err(failure) => {
                say(&format!(
                    "INVOCATION FAILED on {}: {failure}",
                    outcome.instance
                ));
                // A crash, a timeout, a reported error: Lambda answers the invoke with a function
                // error, which an HTTP API turns into a 500.
                (
                    Answer::gateway(500, "Internal Server Error"),
                    outcome.instance,
                )
            }
        },
    };
    log(answer.status, selected.key, &by);
    http_answer(answer, &context.request_id)
}
