//! The deployment artefacts agree with the route table: the SAM template, the OpenAPI file and
//! the sample events in `events/` (each replayed through the real `lambda_http` adapter).

use std::collections::BTreeSet;
use std::path::PathBuf;

use api_tests::TestServer;
use auth::http::routes::{route_for_path, Function, ROUTES};
use auth::store::dynamo::{KEY_SCHEMA, TTL_ATTRIBUTE};
use lambda_http::request::LambdaRequest;
use lambda_http::{Adapter, Context, LambdaEvent, Service};
use serde_json::Value;
use serde_yaml_ng::Value as Yaml;

fn repo_file(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_file(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn function_named(name: &str) -> Function {
    Function::ALL
        .into_iter()
        .find(|f| f.crate_name() == name)
        .unwrap_or_else(|| panic!("no function crate named {name:?}"))
}

/// (method, path template with trailing slash, function crate) for every route and method.
fn route_table() -> BTreeSet<(String, String, String)> {
    ROUTES
        .iter()
        .flat_map(|route| {
            route.methods.iter().map(move |method| {
                (
                    method.to_string(),
                    route.template.to_owned(),
                    route.function.crate_name().to_owned(),
                )
            })
        })
        .collect()
}

fn template() -> Yaml {
    serde_yaml_ng::from_str(&read("infra/template.yaml")).expect("template.yaml parses")
}

/// The function that is no HTTP route's: it consumes the table's stream (the mail queue).
const MAILER: &str = "mailer";

/// The template's Lambda functions: (binary name, resource).
fn template_functions(template: &Yaml) -> Vec<(String, Yaml)> {
    let resources = template["Resources"].as_mapping().expect("Resources");
    resources
        .values()
        .filter(|r| r["Type"].as_str() == Some("AWS::Serverless::Function"))
        .map(|r| {
            let binary = r["Metadata"]["BuildProperties"]["Binary"]
                .as_str()
                .expect("every function names its cargo-lambda binary");
            (binary.to_owned(), r.clone())
        })
        .collect()
}

fn yaml_str(value: &Yaml) -> Option<String> {
    value.as_str().map(str::to_owned)
}

#[test]
fn the_template_routes_exactly_the_route_table_to_the_right_functions() {
    let template = template();
    let mut declared = BTreeSet::new();
    let mut defaults = 0;
    for (binary, resource) in template_functions(&template) {
        if binary == MAILER {
            continue;
        }
        function_named(&binary);
        let events = resource["Properties"]["Events"]
            .as_mapping()
            .unwrap_or_else(|| panic!("{binary} has no events"));
        for event in events.values() {
            assert_eq!(event["Type"].as_str(), Some("HttpApi"), "{binary}");
            if event["Properties"]["Path"].is_null() {
                // The $default route: unknown paths and methods get the API's JSON 404/405.
                assert_eq!(binary, "accounts", "the $default route goes to accounts");
                assert!(defaults == 0, "one $default route");
                defaults += 1;
                continue;
            }
            let method = yaml_str(&event["Properties"]["Method"]).expect("Method");
            let path = yaml_str(&event["Properties"]["Path"]).expect("Path");
            // API Gateway serves a route with and without its trailing slash.
            assert!(
                !path.ends_with('/'),
                "{path}: declare routes without the slash"
            );
            let added =
                declared.insert((method.to_uppercase(), format!("{path}/"), binary.clone()));
            assert!(added, "{method} {path} declared twice");
        }
    }
    assert_eq!(declared, route_table());
    assert_eq!(
        defaults, 1,
        "a $default route answers unknown paths and methods"
    );
}

#[test]
fn the_template_builds_one_arm64_function_per_function_crate() {
    let template = template();
    let functions = template_functions(&template);
    let binaries: BTreeSet<_> = functions.iter().map(|(b, _)| b.clone()).collect();
    let crates: BTreeSet<_> = Function::ALL
        .iter()
        .map(|f| f.crate_name().to_owned())
        .chain([MAILER.to_owned()])
        .collect();
    assert_eq!(binaries, crates);
    assert_eq!(functions.len(), crates.len(), "one resource per crate");
    let globals = &template["Globals"]["Function"];
    assert_eq!(globals["Runtime"].as_str(), Some("provided.al2023"));
    assert_eq!(globals["Architectures"][0].as_str(), Some("arm64"));
    for (binary, resource) in &functions {
        assert_eq!(
            resource["Metadata"]["BuildMethod"].as_str(),
            Some("rust-cargolambda"),
            "{binary}"
        );
        assert!(
            resource["Properties"]["MemorySize"].as_u64().is_some(),
            "{binary}: memory is chosen per function"
        );
    }
}

#[test]
fn only_the_mailer_may_send_mail() {
    let template = template();
    for (binary, resource) in template_functions(&template) {
        let policies = serde_yaml_ng::to_string(&resource["Properties"]["Policies"]).unwrap();
        assert_eq!(
            policies.contains("ses:"),
            binary == MAILER,
            "{binary}: {policies}"
        );
        assert!(
            !policies.contains("dynamodb:*"),
            "{binary}: least privilege"
        );
        assert!(!policies.contains("Scan"), "{binary}: no function scans");
    }
}

#[test]
fn the_mailer_takes_inserted_queue_items_from_the_stream_with_partial_failures() {
    let template = template();
    let (_, mailer) = template_functions(&template)
        .into_iter()
        .find(|(b, _)| b == MAILER)
        .expect("a mailer function");
    let events = mailer["Properties"]["Events"]
        .as_mapping()
        .expect("the mailer's events");
    assert_eq!(events.len(), 1);
    let source = events.values().next().unwrap();
    assert_eq!(source["Type"].as_str(), Some("DynamoDB"));
    let properties = &source["Properties"];
    assert_eq!(
        properties["FunctionResponseTypes"][0].as_str(),
        Some("ReportBatchItemFailures")
    );
    let pattern: Value = serde_json::from_str(
        properties["FilterCriteria"]["Filters"][0]["Pattern"]
            .as_str()
            .expect("a filter pattern"),
    )
    .expect("the pattern is JSON");
    assert_eq!(pattern["eventName"], serde_json::json!(["INSERT"]));
    assert_eq!(
        pattern["dynamodb"]["Keys"]["pk"]["S"],
        serde_json::json!([mailer::QUEUE_PARTITION])
    );
    assert_eq!(
        properties["DestinationConfig"]["OnFailure"]["Type"].as_str(),
        Some("SQS")
    );
    assert!(
        template["Resources"]["MailDeadLettersAlarm"]["Type"].as_str()
            == Some("AWS::CloudWatch::Alarm")
    );
    assert!(template["Resources"]["Table"]["Properties"]["StreamSpecification"].is_mapping());
}

#[test]
fn the_table_has_the_stores_key_schema_ttl_and_protection() {
    let template = template();
    let table = &template["Resources"]["Table"];
    assert_eq!(table["Type"].as_str(), Some("AWS::DynamoDB::Table"));
    let properties = &table["Properties"];
    let keys: Vec<(String, String)> = properties["KeySchema"]
        .as_sequence()
        .expect("KeySchema")
        .iter()
        .map(|k| {
            (
                yaml_str(&k["AttributeName"]).unwrap(),
                yaml_str(&k["KeyType"]).unwrap(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = KEY_SCHEMA
        .iter()
        .map(|(a, k)| (a.to_string(), k.to_string()))
        .collect();
    assert_eq!(keys, expected);
    assert_eq!(
        properties["TimeToLiveSpecification"]["AttributeName"].as_str(),
        Some(TTL_ATTRIBUTE)
    );
    assert_eq!(properties["BillingMode"].as_str(), Some("PAY_PER_REQUEST"));
    assert_eq!(
        properties["DeletionProtectionEnabled"].as_bool(),
        Some(true)
    );
    assert_eq!(
        properties["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"].as_bool(),
        Some(true)
    );
}

#[test]
fn secrets_come_from_secrets_manager_never_from_the_template() {
    let text = read("infra/template.yaml");
    let template = template();
    let variables = &template["Globals"]["Function"]["Environment"]["Variables"];
    // Keys are read at start-up from the secret, never resolved into the configuration.
    for name in auth::wiring::config::KEY_VARIABLES {
        assert!(
            variables[name].is_null(),
            "{name} must not be in the environment"
        );
    }
    assert!(
        !text.contains("{{resolve:secretsmanager:"),
        "no deploy-time resolution"
    );
    assert!(!variables["KEYS_SECRET_ARN"].is_null());
    // Each function may read that one secret, and nothing else of Secrets Manager.
    let resources = template["Resources"].as_mapping().unwrap();
    let mut functions = 0;
    for (_, resource) in resources {
        if resource["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        functions += 1;
        let policies = serde_yaml_ng::to_string(&resource["Properties"]["Policies"]).unwrap();
        assert!(
            policies.contains("secretsmanager:GetSecretValue")
                && policies.contains(":secret:${KeysSecretName}-??????"),
            "{policies}"
        );
        assert_eq!(
            policies.matches("Action: secretsmanager:").count(),
            1,
            "{policies}"
        );
        assert!(!policies.contains("secretsmanager:*"), "{policies}");
    }
    assert!(functions >= 5);
    assert!(
        !text.contains("NoEcho"),
        "no secret is a template parameter"
    );
}

#[test]
fn the_openapi_description_lists_exactly_the_route_table() {
    let openapi: Value = serde_json::from_str(&read("infra/openapi.json")).expect("openapi.json");
    assert!(openapi["openapi"].as_str().unwrap_or("").starts_with("3."));
    let mut declared = BTreeSet::new();
    for (path, item) in openapi["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            if method == "parameters" || method == "summary" || method == "description" {
                continue;
            }
            let function = operation["x-function"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path} has no x-function"));
            let route = ROUTES
                .iter()
                .find(|r| r.template == path)
                .unwrap_or_else(|| panic!("{path}: not in the route table"));
            assert_eq!(
                operation["x-auth-policy"].as_str(),
                Some(route.policy.name()),
                "{method} {path}: x-auth-policy differs from the route table"
            );
            let secured = operation["security"]
                .as_array()
                .is_some_and(|s| !s.is_empty());
            assert_eq!(
                secured,
                route.policy.needs_token(),
                "{method} {path}: security requirement differs from the route's policy"
            );
            declared.insert((method.to_uppercase(), path.clone(), function.to_owned()));
        }
    }
    assert_eq!(declared, route_table());
}

/// Each function binary has a handler for exactly its routes of the route table, and no other.
#[test]
fn each_function_handles_exactly_its_routes() {
    for function in Function::ALL {
        let handled: BTreeSet<_> = local_api::handlers_of(function)
            .iter()
            .map(|(endpoint, _)| format!("{endpoint:?}"))
            .collect();
        let routed: BTreeSet<_> = ROUTES
            .iter()
            .filter(|r| r.function == function)
            .map(|r| format!("{:?}", r.endpoint))
            .collect();
        assert_eq!(handled, routed, "{function:?}");
    }
}

/// Replays `events/` in the order of `events/expected.json` against one fresh store, each event
/// through the `lambda_http` adapter and the very service a deployed function runs.
#[tokio::test]
async fn every_sample_event_gets_the_status_the_spec_promises() {
    let server = TestServer::start().await;
    let expected: Value = serde_json::from_str(&read("events/expected.json")).unwrap();
    let mut token = String::new();
    let mut covered = BTreeSet::new();
    for entry in expected["events"].as_array().expect("events") {
        let file = entry["event"].as_str().unwrap();
        let function = function_named(entry["function"].as_str().unwrap());
        let status = entry["status"].as_u64().unwrap();

        let text = read(&format!("events/{file}")).replace("${TOKEN}", &token);
        let raw: Value = serde_json::from_str(&text).unwrap();
        let path = raw["rawPath"].as_str().unwrap();
        let method = raw["requestContext"]["http"]["method"].as_str().unwrap();
        let (route, _) = route_for_path(path).unwrap_or_else(|| panic!("{file}: unrouted"));
        assert_eq!(
            route.function, function,
            "{file} goes to the wrong function"
        );
        covered.insert((method.to_owned(), route.template));

        let request: LambdaRequest = serde_json::from_str(&text).expect(file);
        let mut adapter = Adapter::from(auth::http::lambda::service(
            server.app.clone(),
            local_api::handlers_of(function),
        ));
        std::future::poll_fn(|cx| adapter.poll_ready(cx))
            .await
            .unwrap();
        let response = adapter
            .call(LambdaEvent::new(request, Context::default()))
            .await
            .unwrap();
        let response = serde_json::to_value(&response).unwrap();
        let body = response["body"].as_str().unwrap_or_default();
        assert_eq!(
            response["statusCode"].as_u64(),
            Some(status),
            "{file}: {body}"
        );
        if let Ok(answer) = serde_json::from_str::<Value>(body) {
            if let Some(fresh) = answer["token"].as_str() {
                token = fresh.to_owned();
            }
        }
    }
    let routes: BTreeSet<_> = ROUTES.iter().map(|r| r.template).collect();
    let with_events: BTreeSet<_> = covered.iter().map(|(_, t)| *t).collect();
    assert_eq!(with_events, routes, "every route has a sample event");
}
