//! The gateway's events agree with the samples in `events/` field by field: each sample's
//! request (method, raw path, query, client headers, body, source IP), routed by the real
//! `infra/template.yaml`, becomes exactly the sample (its per-request values — request id,
//! time, API id — are given to the builder as API Gateway's context), and the route reaches the
//! function `events/expected.json` names.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use gateway::event::{clf_time, request_event, Context};
use gateway::routes::{Route, Router};
use gateway::template::{Binaries, Overrides, Template};
use serde_json::Value;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

/// Every field path where `ours` and `sample` differ (missing, extra or another value).
fn differences(path: &str, ours: &Value, sample: &Value, out: &mut Vec<String>) {
    match (ours, sample) {
        (Value::Object(a), Value::Object(b)) => {
            for key in a.keys().chain(b.keys().filter(|k| !a.contains_key(*k))) {
                let here = format!("{path}.{key}");
                match (a.get(key), b.get(key)) {
                    (Some(x), Some(y)) => differences(&here, x, y, out),
                    (Some(x), None) => out.push(format!("{here}: extra {x}")),
                    (None, Some(y)) => out.push(format!("{here}: missing (sample: {y})")),
                    (None, None) => unreachable!(),
                }
            }
        }
        (a, b) if a == b => {}
        (a, b) => out.push(format!("{path}: ours {a}, sample {b}")),
    }
}

fn deployment_template() -> Template {
    let overrides = Overrides::parse(
        "Parameters: {MailFrom: a@example.com, FrontendUrl: http://x}\nRefs: {Table: t}\n\
         Secrets: {account-api/keys: {secret_key: s, totp_encryption_key: k, \
         totp_encryption_key_version: '1', totp_encryption_previous_keys: none}}",
        "test overrides",
        &|_| None,
    )
    .unwrap();
    Template::load(&repo("infra/template.yaml"), overrides, BTreeMap::new()).unwrap()
}

#[test]
fn every_sample_event_is_what_the_gateway_builds_for_its_request() {
    let template = deployment_template();
    let deployment = template
        .deployment(&Binaries::Dir(PathBuf::from("/nowhere")))
        .unwrap();
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
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(repo("events/expected.json")).unwrap())
            .unwrap();
    let function_of: BTreeMap<&str, &str> = expected["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["event"].as_str().unwrap(),
                e["function"].as_str().unwrap(),
            )
        })
        .collect();

    let mut checked = 0;
    let mut failures = Vec::new();
    for entry in std::fs::read_dir(repo("events")).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        if file == "expected.json" || !file.ends_with(".json") {
            continue;
        }
        let sample: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        if sample["version"] != "2.0" || sample["routeKey"].is_null() {
            continue; // not an HTTP API event (the mailer's stream batch)
        }
        let context = &sample["requestContext"];
        let method = context["http"]["method"].as_str().unwrap();
        let raw_path = sample["rawPath"].as_str().unwrap();
        let query = sample["rawQueryString"].as_str().unwrap_or_default();
        let uri = if query.is_empty() {
            raw_path.to_owned()
        } else {
            format!("{raw_path}?{query}")
        };
        // The client's request: API Gateway adds the x-forwarded-* headers itself.
        let mut request = hyper::Request::builder().method(method).uri(uri);
        for (name, value) in sample["headers"].as_object().unwrap() {
            if !name.starts_with("x-forwarded-") {
                request = request.header(name.as_str(), value.as_str().unwrap());
            }
        }
        let (parts, ()) = request.body(()).unwrap().into_parts();
        let body = match (&sample["body"], sample["isBase64Encoded"].as_bool()) {
            (Value::String(b), Some(true)) => {
                base64::engine::general_purpose::STANDARD.decode(b).unwrap()
            }
            (Value::String(b), _) => b.clone().into_bytes(),
            _ => Vec::new(),
        };
        let selected = router
            .select(method, raw_path)
            .unwrap_or_else(|| panic!("{file}: no template route for {method} {raw_path}"));
        let function = &deployment.functions[selected.function].binary_name;
        assert_eq!(
            Some(function.as_str()),
            function_of.get(file.as_str()).copied(),
            "{file}: the template sends it to {function}, events/expected.json says otherwise"
        );
        let gateway_context = Context {
            request_id: context["requestId"].as_str().unwrap().to_owned(),
            time_epoch_ms: context["timeEpoch"].as_u64().unwrap(),
            source_ip: context["http"]["sourceIp"].as_str().unwrap().to_owned(),
            account_id: context["accountId"].as_str().unwrap().to_owned(),
            api_id: context["apiId"].as_str().unwrap().to_owned(),
            stage: deployment.api.stage.clone(),
            forwarded_port: sample["headers"]["x-forwarded-port"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap(),
            forwarded_proto: sample["headers"]["x-forwarded-proto"]
                .as_str()
                .unwrap()
                .to_owned(),
        };
        let mut ours = request_event(
            &parts,
            &body,
            selected.key,
            &selected.params,
            &gateway_context,
        );
        // `time` is derived from `timeEpoch`; the samples' were written by hand (and some are a
        // few seconds off their timeEpoch): same format, same minute.
        let our_time = ours["requestContext"]["time"].take();
        let sample_time = context["time"].as_str().unwrap();
        assert_eq!(
            our_time.as_str().unwrap()[..17],
            sample_time[..17],
            "{file}: requestContext.time"
        );
        assert_eq!(
            our_time.as_str().unwrap().len(),
            sample_time.len(),
            "{file}: requestContext.time format"
        );
        ours["requestContext"]["time"] = Value::String(sample_time.to_owned());
        let mut diff = Vec::new();
        differences("", &ours, &sample, &mut diff);
        if !diff.is_empty() {
            failures.push(format!("{file}:\n  {}", diff.join("\n  ")));
        }
        checked += 1;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(
        checked,
        function_of.len(),
        "every sample has an expected.json entry"
    );
    assert_eq!(clf_time(1_795_964_400), "29/Nov/2026:15:00:00 +0000");
}
