//! The gateway's Lambda side against an independent runtime client: a custom runtime written
//! in bash with curl, doing what each event asks (answer, report an error, crash, hang), or
//! failing its init. Checks Lambda's contract: the Runtime API paths and headers, the process
//! environment (the template's variables and Lambda's, nothing of the gateway's own), and that a
//! crash or a timeout fails that invocation only and a fresh process takes the slot.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use gateway::runtime::{Failure, Launch, LogSink, Pool, Status};
use gateway::template::FunctionSpec;
use tokio::sync::watch;

const RUNTIME: &str = r#"#!/usr/bin/env bash
set -u
api="http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/runtime"
case "${FAKE_INIT:-ok}" in
  exit) echo "init: giving up" >&2; exit 3 ;;
  report)
    curl -sS -X POST "$api/init/error" -H 'Lambda-Runtime-Function-Error-Type: Runtime.Bad' \
      -d '{"errorMessage":"no configuration","errorType":"Runtime.Bad"}' >/dev/null
    exec sleep 30 ;;
esac
while true; do
  headers=$(mktemp)
  event=$(curl -sS -D "$headers" "$api/invocation/next") || exit 1
  id=$(grep -i '^lambda-runtime-aws-request-id:' "$headers" | cut -d' ' -f2 | tr -d '\r')
  deadline=$(grep -ci '^lambda-runtime-deadline-ms: [0-9]' "$headers")
  arn=$(grep -i '^lambda-runtime-invoked-function-arn:' "$headers" | cut -d' ' -f2 | tr -d '\r')
  rm -f "$headers"
  case "$event" in
    *crash*) exit 7 ;;
    *hang*) exec sleep 30 ;;
    *error*)
      curl -sS -X POST "$api/invocation/$id/error" \
        -d '{"errorMessage":"boom","errorType":"Handled"}' >/dev/null ;;
    *)
      body="$id|$FAKE_NAME|${HOME:-no-home}|$AWS_LAMBDA_FUNCTION_NAME|$AWS_LAMBDA_FUNCTION_MEMORY_SIZE|$deadline|$arn"
      curl -sS -X POST "$api/invocation/$id/response" \
        -d "{\"statusCode\":200,\"body\":\"$body\"}" >/dev/null ;;
  esac
done
"#;

struct Fixture {
    pool: Pool,
    shutdown: watch::Sender<bool>,
    _dir: PathBuf,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
        let _ = std::fs::remove_dir_all(&self._dir);
    }
}

async fn fixture(init: &str, instances: usize, timeout_secs: u64) -> Fixture {
    let dir = std::env::temp_dir().join(format!(
        "gateway-runtime-{}-{}",
        std::process::id(),
        gateway::event::lambda_request_id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let binary = dir.join("bootstrap");
    std::fs::write(&binary, RUNTIME).unwrap();
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();
    let spec = FunctionSpec {
        logical_id: "FakeFunction".into(),
        name: "local-fake".into(),
        binary_name: "fake".into(),
        binary,
        handler: "bootstrap".into(),
        runtime: "provided.al2023".into(),
        architectures: vec!["x86_64".into()],
        memory_mb: 256,
        timeout_secs,
        log_group: "/aws/lambda/local-fake".into(),
        log_format: None,
        log_level: None,
        environment: BTreeMap::from([
            ("FAKE_NAME".to_owned(), "from-template".to_owned()),
            ("FAKE_INIT".to_owned(), init.to_owned()),
        ]),
        routes: Vec::new(),
    };
    let (shutdown, shutdown_rx) = watch::channel(false);
    let launch = Launch {
        region: "us-east-1".into(),
        account_id: "123456789012".into(),
        extra_env: Vec::new(),
        passthrough_env: Vec::new(),
        log: LogSink::file(&dir.join("log")).unwrap(),
        shutdown: shutdown_rx,
    };
    let pool = Pool::start(spec, instances, &launch).await.unwrap();
    for instance in &pool.instances {
        instance.start();
    }
    Fixture {
        pool,
        shutdown,
        _dir: dir,
    }
}

async fn settled(fixture: &Fixture, index: usize) -> Status {
    let mut status = fixture.pool.instances[index].status.subscribe();
    let settled = tokio::time::timeout(
        Duration::from_secs(10),
        status.wait_for(|s| !matches!(s, Status::Starting)),
    )
    .await
    .expect("settled within 10 s")
    .expect("status");
    settled.clone()
}

async fn invoke(fixture: &Fixture, event: &str) -> Result<String, Failure> {
    let outcome = fixture
        .pool
        .invoke(Bytes::from(event.to_owned()), Duration::from_secs(20))
        .await
        .expect("an answer within 20 s");
    outcome.result.map(|payload| {
        let value: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        value["body"].as_str().unwrap().to_owned()
    })
}

#[tokio::test]
async fn a_response_reaches_the_caller_with_lambdas_context_and_environment() {
    let fixture = fixture("ok", 1, 10).await;
    assert!(matches!(settled(&fixture, 0).await, Status::Ready(_)));
    let body = invoke(&fixture, r#"{"do":"answer"}"#).await.unwrap();
    let fields: Vec<&str> = body.split('|').collect();
    assert_eq!(fields[0].len(), 36, "a request id: {body}");
    assert_eq!(
        &fields[1..],
        [
            "from-template",
            "no-home", // nothing of the gateway's own environment
            "local-fake",
            "256",
            "1",
            "arn:aws:lambda:us-east-1:123456789012:function:local-fake"
        ]
    );
}

#[tokio::test]
async fn a_reported_error_fails_that_invocation_only() {
    let fixture = fixture("ok", 1, 10).await;
    match invoke(&fixture, r#"{"do":"error"}"#).await {
        Err(Failure::FunctionError { kind, message }) => {
            assert_eq!((kind.as_str(), message.as_str()), ("Handled", "boom"))
        }
        other => panic!("{other:?}"),
    }
    assert!(invoke(&fixture, "{}").await.is_ok());
    assert_eq!(fixture.pool.instances[0].inits().len(), 1, "no new process");
}

#[tokio::test]
async fn a_crash_fails_its_invocation_and_a_fresh_process_takes_the_slot() {
    let fixture = fixture("ok", 1, 10).await;
    match invoke(&fixture, r#"{"do":"crash"}"#).await {
        Err(Failure::Crashed(why)) => assert!(why.contains("7"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert!(invoke(&fixture, "{}").await.is_ok());
    assert_eq!(
        fixture.pool.instances[0].inits().len(),
        2,
        "a second cold start"
    );
}

#[tokio::test]
async fn an_invocation_past_the_timeout_fails_and_its_process_is_replaced() {
    let fixture = fixture("ok", 1, 1).await;
    let started = std::time::Instant::now();
    match invoke(&fixture, r#"{"do":"hang"}"#).await {
        Err(Failure::TimedOut(1)) => {}
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(invoke(&fixture, "{}").await.is_ok());
    assert_eq!(fixture.pool.instances[0].inits().len(), 2);
}

#[tokio::test]
async fn concurrent_invocations_run_in_separate_processes() {
    // Each hang holds its process until the 1 s timeout: three at once need three processes.
    let fixture = fixture("ok", 3, 1).await;
    for i in 0..3 {
        assert!(matches!(settled(&fixture, i).await, Status::Ready(_)));
    }
    let limit = Duration::from_secs(20);
    let hang = || {
        fixture
            .pool
            .invoke(Bytes::from_static(b"{\"do\":\"hang\"}"), limit)
    };
    let (a, b, c) = tokio::join!(hang(), hang(), hang());
    let mut served: Vec<String> = [a, b, c]
        .into_iter()
        .map(|o| {
            let o = o.expect("an answer");
            assert!(matches!(o.result, Err(Failure::TimedOut(1))), "{o:?}");
            o.instance
        })
        .collect();
    served.sort();
    assert_eq!(served, ["fake#1", "fake#2", "fake#3"]);
}

#[tokio::test]
async fn a_process_that_exits_during_init_fails_loudly_with_its_output() {
    let fixture = fixture("exit", 1, 10).await;
    match settled(&fixture, 0).await {
        Status::Failed(why) => assert!(why.contains("exited during init"), "{why}"),
        other => panic!("{other:?}"),
    }
    let tail = fixture.pool.instances[0].tail().join("\n");
    assert!(tail.contains("init: giving up"), "{tail}");
}

#[tokio::test]
async fn an_init_error_reported_to_the_runtime_api_fails_loudly() {
    let fixture = fixture("report", 1, 10).await;
    match settled(&fixture, 0).await {
        Status::Failed(why) => {
            assert!(why.contains("INIT ERROR"), "{why}");
            assert!(why.contains("no configuration"), "{why}");
        }
        other => panic!("{other:?}"),
    }
}
