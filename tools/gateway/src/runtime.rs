//! Lambda's side of a function: warm processes of its release binary, each polling its own
//! Lambda Runtime API (`/2018-06-01/runtime/invocation/next`, `/response`, `/error`,
//! `/init/error`) on 127.0.0.1, all fed by one queue of invocations. A process that exits is
//! replaced (the next invocation it would have served pays a cold start, as on Lambda); one
//! that outlives the function's timeout is killed, as Lambda kills it.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::Command;
use tokio::sync::{mpsc, oneshot, watch};

use crate::template::FunctionSpec;

const RUNTIME_PREFIX: &str = "/2018-06-01/runtime/";
/// Lambda's limit on a synchronous response.
const MAX_RESPONSE_BYTES: usize = 6 * 1024 * 1024;
/// Lines of each process's output kept for reports of a failed start.
const TAIL_LINES: usize = 40;

/// Where a function's processes write: one file per function, or the gateway's stdout; every
/// line names its process (`accounts#2`).
#[derive(Clone)]
pub struct LogSink {
    file: Option<Arc<Mutex<std::fs::File>>>,
}

impl LogSink {
    pub fn stdout() -> Self {
        Self { file: None }
    }

    pub fn file(path: &Path) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Self {
            file: Some(Arc::new(Mutex::new(file))),
        })
    }

    pub fn line(&self, label: &str, line: &str) {
        match &self.file {
            Some(file) => {
                let _ = writeln!(file.lock().unwrap(), "[{label}] {line}");
            }
            None => println!("[{label}] {line}"),
        }
    }
}

/// Why an invocation got no response.
#[derive(Debug, Clone)]
pub enum Failure {
    /// The runtime reported an error (`/invocation/{id}/error`).
    FunctionError { kind: String, message: String },
    /// The process exited while the invocation was in flight.
    Crashed(String),
    /// Still running at the function's timeout: the process was killed.
    TimedOut(u64),
    /// The response was over Lambda's 6 MB limit.
    TooLarge(usize),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::FunctionError { kind, message } => write!(f, "function error {kind}: {message}"),
            Self::Crashed(why) => write!(f, "the process exited mid-invocation ({why})"),
            Self::TimedOut(secs) => write!(f, "Task timed out after {secs} seconds"),
            Self::TooLarge(n) => write!(f, "response of {n} bytes is over Lambda's 6 MB"),
        }
    }
}

#[derive(Debug)]
pub struct Outcome {
    pub result: Result<Bytes, Failure>,
    /// Which process served it (`accounts#2`).
    pub instance: String,
}

struct Invocation {
    request_id: String,
    event: Bytes,
    reply: oneshot::Sender<Outcome>,
}

/// What a process is doing, as the start-up and the reports see it.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    Starting,
    /// Polled `/invocation/next` this long after its spawn: the cold start.
    Ready(Duration),
    Failed(String),
}

struct Current {
    request_id: String,
    reply: oneshot::Sender<Outcome>,
    started: Instant,
    /// Set on the first invocation a process serves: Lambda's `Init Duration`.
    init: Option<Duration>,
}

struct State {
    generation: u64,
    spawned_at: Instant,
    ready: bool,
    unreported_init: Option<Duration>,
    current: Option<Current>,
    tail: VecDeque<String>,
    /// Every init this instance paid (the first, and after each replacement).
    inits: Vec<Duration>,
}

/// One execution environment of a function: a process slot, refilled when its process exits.
pub struct Instance {
    pub label: String,
    spec: Arc<FunctionSpec>,
    env: Vec<(String, String)>,
    queue: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Invocation>>>,
    requeue: mpsc::UnboundedSender<Invocation>,
    state: Mutex<State>,
    generation: watch::Sender<u64>,
    pub status: watch::Sender<Status>,
    /// The generation whose process must be killed.
    kill: watch::Sender<u64>,
    /// Opened by the start-up, one process after another (each cold start measured alone, as
    /// Lambda's execution environments do not share a CPU).
    go: watch::Sender<bool>,
    log: LogSink,
    invoked_arn: String,
}

/// A function: its processes and their shared queue.
pub struct Pool {
    pub spec: Arc<FunctionSpec>,
    queue: mpsc::UnboundedSender<Invocation>,
    pub instances: Vec<Arc<Instance>>,
}

/// What the processes of every function share: the machine's AWS settings and the shutdown.
pub struct Launch {
    pub region: String,
    pub account_id: String,
    /// Variables from the overrides file (local only).
    pub extra_env: Vec<(String, String)>,
    /// From the gateway's own environment: the emulator endpoint and the credentials standing
    /// in for the function's execution role.
    pub passthrough_env: Vec<(String, String)>,
    pub log: LogSink,
    pub shutdown: watch::Receiver<bool>,
}

/// Variables Lambda reserves: a template may not set them.
pub const RESERVED: [&str; 18] = [
    "_HANDLER",
    "_X_AMZN_TRACE_ID",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_RUNTIME_API",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
];

impl Pool {
    /// Binds one Runtime API per process; each process starts at [`Instance::start`].
    pub async fn start(spec: FunctionSpec, count: usize, launch: &Launch) -> std::io::Result<Self> {
        let spec = Arc::new(spec);
        let (queue, receiver) = mpsc::unbounded_channel();
        let receiver = Arc::new(tokio::sync::Mutex::new(receiver));
        let mut instances = Vec::new();
        for index in 1..=count {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let port = listener.local_addr()?.port();
            let label = format!("{}#{index}", spec.binary_name);
            let env = environment(&spec, port, launch);
            let invoked_arn = format!(
                "arn:aws:lambda:{}:{}:function:{}",
                launch.region, launch.account_id, spec.name
            );
            let instance = Arc::new(Instance {
                label,
                spec: spec.clone(),
                env,
                queue: receiver.clone(),
                requeue: queue.clone(),
                state: Mutex::new(State {
                    generation: 0,
                    spawned_at: Instant::now(),
                    ready: false,
                    unreported_init: None,
                    current: None,
                    tail: VecDeque::new(),
                    inits: Vec::new(),
                }),
                generation: watch::channel(0).0,
                status: watch::channel(Status::Starting).0,
                kill: watch::channel(0).0,
                go: watch::channel(false).0,
                log: launch.log.clone(),
                invoked_arn,
            });
            tokio::spawn(serve_runtime_api(listener, instance.clone()));
            tokio::spawn(supervise(instance.clone(), launch.shutdown.clone()));
            instances.push(instance);
        }
        Ok(Self {
            spec,
            queue,
            instances,
        })
    }

    /// Invokes the function synchronously; `None` when no process answered within `limit`
    /// (API Gateway's integration timeout).
    pub async fn invoke(&self, event: Bytes, limit: Duration) -> Option<Outcome> {
        let (reply, answer) = oneshot::channel();
        let invocation = Invocation {
            request_id: crate::event::lambda_request_id(),
            event,
            reply,
        };
        self.queue.send(invocation).ok()?;
        match tokio::time::timeout(limit, answer).await {
            Ok(Ok(outcome)) => Some(outcome),
            Ok(Err(_)) => Some(Outcome {
                result: Err(Failure::Crashed("the invocation was dropped".into())),
                instance: self.spec.binary_name.clone(),
            }),
            Err(_) => None,
        }
    }
}

impl Instance {
    /// The last lines the current (or last) process wrote.
    pub fn tail(&self) -> Vec<String> {
        self.state.lock().unwrap().tail.iter().cloned().collect()
    }

    /// Lets the first process start.
    pub fn start(&self) {
        self.go.send_replace(true);
    }

    pub fn inits(&self) -> Vec<Duration> {
        self.state.lock().unwrap().inits.clone()
    }

    fn output(&self, line: &str) {
        self.log.line(&self.label, line);
        let mut state = self.state.lock().unwrap();
        if state.tail.len() == TAIL_LINES {
            state.tail.pop_front();
        }
        state.tail.push_back(line.to_owned());
    }

    fn fail(&self, why: String) {
        self.output(&format!("gateway: {why}"));
        self.status.send_replace(Status::Failed(why));
    }
}

/// The environment Lambda gives a process: the template's variables, Lambda's reserved ones,
/// the local additions; nothing else of the gateway's own environment.
fn environment(spec: &FunctionSpec, port: u16, launch: &Launch) -> Vec<(String, String)> {
    let task_root = spec
        .binary
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let mut env: Vec<(String, String)> = spec
        .environment
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    env.extend(launch.extra_env.iter().cloned());
    env.extend(launch.passthrough_env.iter().cloned());
    let stream = format!(
        "{}/[$LATEST]{}",
        crate::event::clf_time(now_ms() / 1000)[..11].replace('/', "-"),
        &crate::event::lambda_request_id().replace('-', "")
    );
    let reserved = [
        ("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{port}")),
        ("AWS_LAMBDA_FUNCTION_NAME", spec.name.clone()),
        (
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
            spec.memory_mb.to_string(),
        ),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        ("AWS_LAMBDA_LOG_GROUP_NAME", spec.log_group.clone()),
        ("AWS_LAMBDA_LOG_STREAM_NAME", stream),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".into()),
        ("AWS_REGION", launch.region.clone()),
        ("AWS_DEFAULT_REGION", launch.region.clone()),
        ("_HANDLER", spec.handler.clone()),
        ("LAMBDA_TASK_ROOT", task_root.display().to_string()),
        ("LAMBDA_RUNTIME_DIR", task_root.display().to_string()),
        ("TZ", ":UTC".into()),
        ("LANG", "en_US.UTF-8".into()),
        ("PATH", "/usr/local/bin:/usr/bin/:/bin:/opt/bin".into()),
    ];
    env.extend(reserved.into_iter().map(|(k, v)| (k.to_owned(), v)));
    if let Some(format) = &spec.log_format {
        env.push(("AWS_LAMBDA_LOG_FORMAT".into(), format.clone()));
        if let Some(level) = &spec.log_level {
            env.push(("AWS_LAMBDA_LOG_LEVEL".into(), level.clone()));
        }
    }
    env
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// Keeps a process running in the instance's slot until shutdown.
async fn supervise(instance: Arc<Instance>, mut shutdown: watch::Receiver<bool>) {
    let mut go = instance.go.subscribe();
    tokio::select! {
        _ = async { go.wait_for(|go| *go).await.is_ok() } => {}
        _ = shutdown.changed() => return,
    }
    let mut backoff = Duration::from_millis(250);
    loop {
        if *shutdown.borrow() {
            return;
        }
        let generation = {
            let mut state = instance.state.lock().unwrap();
            state.generation += 1;
            state.spawned_at = Instant::now();
            state.ready = false;
            state.generation
        };
        instance.generation.send_replace(generation);
        instance.status.send_replace(Status::Starting);
        let mut command = Command::new(&instance.spec.binary);
        command
            .env_clear()
            .envs(instance.env.iter().map(|(k, v)| (k, v)))
            .current_dir(
                instance
                    .spec
                    .binary
                    .parent()
                    .unwrap_or_else(|| Path::new(".")),
            )
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        #[cfg(target_os = "linux")]
        // SAFETY: prctl is async-signal-safe; it only asks the kernel to kill the child when
        // the gateway (the spawning thread) dies, so no process outlives a killed gateway.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(e) => {
                instance.fail(format!(
                    "cannot start {}: {e}",
                    instance.spec.binary.display()
                ));
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let instance = instance.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    instance.output(&line);
                }
            });
        }
        let mut kill = instance.kill.subscribe();
        let status = tokio::select! {
            status = child.wait() => status,
            _ = async { kill.wait_for(|g| *g == generation).await.is_ok() } => {
                let _ = child.start_kill();
                child.wait().await
            }
            _ = shutdown.changed() => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                return;
            }
        };
        let why = match status {
            Ok(status) => status.to_string(),
            Err(e) => e.to_string(),
        };
        let (was_ready, current) = {
            let mut state = instance.state.lock().unwrap();
            state.generation += 1;
            (state.ready, state.current.take())
        };
        instance.generation.send_replace(generation + 1);
        if let Some(current) = current {
            let _ = current.reply.send(Outcome {
                result: Err(Failure::Crashed(why.clone())),
                instance: instance.label.clone(),
            });
        }
        if *shutdown.borrow() {
            return;
        }
        if was_ready {
            instance.output(&format!(
                "gateway: the process exited ({why}); a new one takes its place (cold start)"
            ));
            backoff = Duration::from_millis(250);
        } else {
            if !matches!(*instance.status.borrow(), Status::Failed(_)) {
                instance.fail(format!("the process exited during init ({why})"));
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.changed() => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }
}

async fn serve_runtime_api(listener: TcpListener, instance: Arc<Instance>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let instance = instance.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let instance = instance.clone();
                async move { Ok::<_, Infallible>(runtime_api(instance, request).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn reply(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

fn accepted() -> Response<Full<Bytes>> {
    reply(StatusCode::ACCEPTED, r#"{"status":"OK"}"#.into())
}

async fn runtime_api(instance: Arc<Instance>, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_owned();
    let Some(route) = path.strip_prefix(RUNTIME_PREFIX) else {
        return reply(
            StatusCode::NOT_FOUND,
            r#"{"errorMessage":"unknown path"}"#.into(),
        );
    };
    let method = request.method().clone();
    let body = match Limited::new(request.into_body(), MAX_RESPONSE_BYTES + 1)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(_) => Bytes::from(vec![0u8; MAX_RESPONSE_BYTES + 1]),
    };
    match (method.as_str(), route) {
        ("GET", "invocation/next") => next_invocation(instance).await,
        ("POST", "init/error") => {
            let error = String::from_utf8_lossy(&body).into_owned();
            instance.fail(format!(
                "INIT ERROR reported to /runtime/init/error: {error}"
            ));
            let generation = instance.state.lock().unwrap().generation;
            instance.kill.send_replace(generation);
            accepted()
        }
        ("POST", route) => {
            let Some((id, verb)) = route
                .strip_prefix("invocation/")
                .and_then(|r| r.rsplit_once('/'))
            else {
                return reply(
                    StatusCode::NOT_FOUND,
                    r#"{"errorMessage":"unknown path"}"#.into(),
                );
            };
            let current = {
                let mut state = instance.state.lock().unwrap();
                match &state.current {
                    Some(c) if c.request_id == id => state.current.take(),
                    _ => None,
                }
            };
            let Some(current) = current else {
                return reply(
                    StatusCode::BAD_REQUEST,
                    r#"{"errorMessage":"Invalid request ID","errorType":"InvalidRequestID"}"#
                        .into(),
                );
            };
            let result = match verb {
                "response" if body.len() > MAX_RESPONSE_BYTES => Err(Failure::TooLarge(body.len())),
                "response" => Ok(body),
                "error" => {
                    let parsed: serde_json::Value =
                        serde_json::from_slice(&body).unwrap_or_default();
                    Err(Failure::FunctionError {
                        kind: parsed["errorType"]
                            .as_str()
                            .unwrap_or("Unhandled")
                            .to_owned(),
                        message: parsed["errorMessage"]
                            .as_str()
                            .map(str::to_owned)
                            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned()),
                    })
                }
                _ => {
                    return reply(
                        StatusCode::NOT_FOUND,
                        r#"{"errorMessage":"unknown path"}"#.into(),
                    )
                }
            };
            report(&instance, &current, &result);
            let _ = current.reply.send(Outcome {
                result,
                instance: instance.label.clone(),
            });
            accepted()
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            r#"{"errorMessage":"unknown path"}"#.into(),
        ),
    }
}

/// Lambda's REPORT line, in the function's log.
fn report(instance: &Instance, current: &Current, result: &Result<Bytes, Failure>) {
    let mut line = format!(
        "REPORT RequestId: {} Duration: {:.2} ms",
        current.request_id,
        current.started.elapsed().as_secs_f64() * 1000.0
    );
    if let Some(init) = current.init {
        let _ = write!(
            line,
            " Init Duration: {:.2} ms",
            init.as_secs_f64() * 1000.0
        );
    }
    if let Err(failure) = result {
        let _ = write!(line, " Error: {failure}");
    }
    instance.output(&line);
}

/// Waits until the generation moves past `generation` (the process it served is gone).
async fn gone(receiver: &mut watch::Receiver<u64>, generation: u64) {
    while *receiver.borrow_and_update() == generation {
        if receiver.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

async fn next_invocation(instance: Arc<Instance>) -> Response<Full<Bytes>> {
    let (generation, first_init) = {
        let mut state = instance.state.lock().unwrap();
        let first_init = (!state.ready).then(|| state.spawned_at.elapsed());
        if let Some(init) = first_init {
            state.ready = true;
            state.unreported_init = Some(init);
            state.inits.push(init);
        }
        (state.generation, first_init)
    };
    if let Some(init) = first_init {
        instance.output(&format!(
            "gateway: INIT {:.1} ms (process spawn → first /runtime/invocation/next)",
            init.as_secs_f64() * 1000.0
        ));
        instance.status.send_replace(Status::Ready(init));
    }
    let mut generations = instance.generation.subscribe();
    loop {
        let invocation = {
            let mut queue = tokio::select! {
                queue = instance.queue.lock() => queue,
                _ = gone(&mut generations, generation) => return reply(StatusCode::GONE, "{}".into()),
            };
            tokio::select! {
                invocation = queue.recv() => invocation,
                _ = gone(&mut generations, generation) => return reply(StatusCode::GONE, "{}".into()),
            }
        };
        let Some(invocation) = invocation else {
            return reply(StatusCode::GONE, "{}".into());
        };
        if invocation.reply.is_closed() {
            continue; // the caller gave up (API Gateway's timeout)
        }
        let timeout = instance.spec.timeout_secs;
        let deadline = now_ms() + timeout * 1000;
        {
            let mut state = instance.state.lock().unwrap();
            if state.generation != generation {
                drop(state);
                let _ = instance.requeue.send(invocation);
                return reply(StatusCode::GONE, "{}".into());
            }
            let init = state.unreported_init.take();
            state.current = Some(Current {
                request_id: invocation.request_id.clone(),
                reply: invocation.reply,
                started: Instant::now(),
                init,
            });
        }
        tokio::spawn(watchdog(
            instance.clone(),
            invocation.request_id.clone(),
            generation,
            timeout,
        ));
        let mut response = reply(StatusCode::OK, String::new());
        *response.body_mut() = Full::new(invocation.event);
        let headers = response.headers_mut();
        let mut set = |name: &'static str, value: String| {
            if let Ok(value) = hyper::header::HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        };
        set(
            "lambda-runtime-aws-request-id",
            invocation.request_id.clone(),
        );
        set("lambda-runtime-deadline-ms", deadline.to_string());
        set(
            "lambda-runtime-invoked-function-arn",
            instance.invoked_arn.clone(),
        );
        set(
            "lambda-runtime-trace-id",
            format!(
                "Root=1-{:08x}-{};Parent={};Sampled=0",
                now_ms() / 1000,
                &invocation.request_id.replace('-', "")[..24],
                &invocation.request_id.replace('-', "")[..16]
            ),
        );
        return response;
    }
}

/// Lambda's timeout: an invocation still running at the function's `Timeout` fails, and its
/// process is killed (and replaced).
async fn watchdog(instance: Arc<Instance>, request_id: String, generation: u64, timeout_secs: u64) {
    tokio::time::sleep(Duration::from_secs(timeout_secs)).await;
    let current = {
        let mut state = instance.state.lock().unwrap();
        match &state.current {
            Some(c) if c.request_id == request_id => state.current.take(),
            _ => None,
        }
    };
    if let Some(current) = current {
        let failure = Failure::TimedOut(timeout_secs);
        instance.output(&format!(
            "gateway: {request_id} {failure}; killing the process"
        ));
        let _ = current.reply.send(Outcome {
            result: Err(failure),
            instance: instance.label.clone(),
        });
        instance.kill.send_replace(generation);
    }
}
