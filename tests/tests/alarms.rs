//! The template's alarms cover what the deployment can fail at, and each notifies the
//! `AlarmTopicArn` parameter's SNS topic (cfn-lint checks their syntax in scripts/check-infra).

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_yaml_ng::Value as Yaml;

fn template() -> Yaml {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../infra/template.yaml");
    serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The resource a `!Ref X` or `!GetAtt X.Attribute` names, if the value is one.
fn reference(value: &Yaml) -> Option<String> {
    match value {
        Yaml::Tagged(tagged) if tagged.tag == "Ref" => tagged.value.as_str().map(str::to_owned),
        Yaml::Tagged(tagged) if tagged.tag == "GetAtt" => tagged
            .value
            .as_str()
            .and_then(|t| t.split('.').next())
            .map(str::to_owned),
        _ => None,
    }
}

/// (namespace, metric, dimension values that are references) of every metric an alarm reads.
fn metrics(alarm: &Yaml) -> Vec<(String, String, BTreeSet<String>)> {
    let properties = &alarm["Properties"];
    let mut out = Vec::new();
    let mut add = |metric: &Yaml| {
        let dimensions = metric["Dimensions"]
            .as_sequence()
            .into_iter()
            .flatten()
            .filter_map(|d| reference(&d["Value"]))
            .collect();
        out.push((
            metric["Namespace"].as_str().unwrap_or_default().to_owned(),
            metric["MetricName"].as_str().unwrap_or_default().to_owned(),
            dimensions,
        ));
    };
    if properties["MetricName"].is_string() {
        add(properties);
    }
    for query in properties["Metrics"].as_sequence().into_iter().flatten() {
        if !query["MetricStat"].is_null() {
            add(&query["MetricStat"]["Metric"]);
        }
    }
    out
}

#[test]
fn every_alarm_notifies_the_alarm_topic_on_alarm_and_on_recovery() {
    let template = template();
    assert_eq!(
        template["Parameters"]["AlarmTopicArn"]["Type"].as_str(),
        Some("String")
    );
    let alarms: Vec<(&Yaml, &Yaml)> = template["Resources"]
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some("AWS::CloudWatch::Alarm"))
        .collect();
    assert!(!alarms.is_empty());
    for (name, alarm) in alarms {
        for actions in ["AlarmActions", "OKActions"] {
            let text = serde_yaml_ng::to_string(&alarm["Properties"][actions]).unwrap();
            assert!(
                text.contains("HasAlarmTopic") && text.contains("AlarmTopicArn"),
                "{name:?} {actions}: {text}"
            );
        }
    }
}

#[test]
fn functions_api_and_table_each_have_their_alarms() {
    let template = template();
    let resources = template["Resources"].as_mapping().unwrap();
    let watched: Vec<(String, String, BTreeSet<String>)> = resources
        .values()
        .filter(|r| r["Type"].as_str() == Some("AWS::CloudWatch::Alarm"))
        .flat_map(metrics)
        .collect();
    let has = |namespace: &str, metric: &str, resource: &str| {
        watched
            .iter()
            .any(|(n, m, d)| n == namespace && m == metric && d.contains(resource))
    };
    for (id, resource) in resources {
        let id = id.as_str().unwrap();
        match resource["Type"].as_str() {
            Some("AWS::Serverless::Function") => {
                assert!(has("AWS/Lambda", "Errors", id), "{id}: no errors alarm");
                assert!(
                    has("AWS/Lambda", "Throttles", id),
                    "{id}: no throttles alarm"
                );
            }
            Some("AWS::Serverless::HttpApi") => {
                assert!(has("AWS/ApiGateway", "5xx", id), "{id}: no 5xx alarm");
                assert!(
                    has("AWS/ApiGateway", "Count", id),
                    "{id}: 5xx not as a rate"
                );
            }
            Some("AWS::DynamoDB::Table") => {
                assert!(has("AWS/DynamoDB", "ReadThrottleEvents", id), "{id}");
                assert!(has("AWS/DynamoDB", "WriteThrottleEvents", id), "{id}");
            }
            Some("AWS::SQS::Queue") if id.contains("DeadLetter") || id.contains("Dlq") => {
                assert!(
                    has("AWS/SQS", "ApproximateNumberOfMessagesVisible", id),
                    "{id}: a dead-letter queue without a depth alarm"
                );
            }
            _ => {}
        }
    }
}
