//! API Gateway HTTP API payload format 2.0: the event a request becomes, and the HTTP answer a
//! function's response becomes (AWS: "Create AWS Lambda proxy integrations for HTTP APIs").

use std::collections::BTreeMap;

use base64::Engine;
use serde_json::{json, Map, Value};

/// What API Gateway knows about a request besides the request itself.
#[derive(Debug, Clone)]
pub struct Context {
    pub request_id: String,
    pub time_epoch_ms: u64,
    /// The TCP peer (API Gateway's `sourceIp`: never what the client wrote in a header).
    pub source_ip: String,
    pub account_id: String,
    pub api_id: String,
    pub stage: String,
    /// The port and scheme the client reached API Gateway on (`x-forwarded-port`/`-proto`).
    pub forwarded_port: u16,
    pub forwarded_proto: String,
}

/// Hop-by-hop headers: they describe the client's connection, not the request.
const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Content types API Gateway passes as text; any other body (or one that is not UTF-8) is
/// base64 with `isBase64Encoded: true`, as HTTP APIs do (form posts included).
fn is_text(content_type: Option<&str>) -> bool {
    let Some(content_type) = content_type else {
        return false;
    };
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence.starts_with("text/")
        || matches!(
            essence.as_str(),
            "application/json" | "application/javascript" | "application/xml"
        )
        || essence.ends_with("+json")
        || essence.ends_with("+xml")
}

/// The payload 2.0 event for a request that matched `route_key` with `path_parameters`.
pub fn request_event(
    request: &hyper::http::request::Parts,
    body: &[u8],
    route_key: &str,
    path_parameters: &BTreeMap<String, String>,
    context: &Context,
) -> Value {
    let raw_path = request.uri.path().to_owned();
    let raw_query = request.uri.query().unwrap_or_default().to_owned();

    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    let mut cookies: Vec<String> = Vec::new();
    for (name, value) in &request.headers {
        let name = name.as_str();
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        if HOP_BY_HOP.contains(&name) {
            continue;
        }
        if name == "cookie" {
            cookies.extend(
                value
                    .split(';')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned),
            );
            continue;
        }
        headers
            .entry(name.to_owned())
            .and_modify(|v| {
                v.push(',');
                v.push_str(&value);
            })
            .or_insert(value);
    }
    // API Gateway appends the peer to what the client wrote, and states its own port and scheme.
    let forwarded = match headers.get("x-forwarded-for") {
        Some(given) => format!("{given}, {}", context.source_ip),
        None => context.source_ip.clone(),
    };
    headers.insert("x-forwarded-for".into(), forwarded);
    headers.insert(
        "x-forwarded-port".into(),
        context.forwarded_port.to_string(),
    );
    headers.insert("x-forwarded-proto".into(), context.forwarded_proto.clone());

    let domain = headers.get("host").cloned().unwrap_or_default();
    let domain_prefix = domain
        .split(['.', ':'])
        .next()
        .unwrap_or_default()
        .to_owned();
    let user_agent = headers.get("user-agent").cloned().unwrap_or_default();
    let protocol = match request.version {
        hyper::Version::HTTP_10 => "HTTP/1.0",
        hyper::Version::HTTP_2 => "HTTP/2.0",
        _ => "HTTP/1.1",
    };

    let mut event = Map::new();
    event.insert("version".into(), json!("2.0"));
    event.insert("routeKey".into(), json!(route_key));
    event.insert("rawPath".into(), json!(raw_path));
    event.insert("rawQueryString".into(), json!(raw_query));
    if !cookies.is_empty() {
        event.insert("cookies".into(), json!(cookies));
    }
    event.insert("headers".into(), json!(headers));
    if !raw_query.is_empty() {
        let mut parameters: BTreeMap<String, String> = BTreeMap::new();
        for (name, value) in form_urlencoded::parse(raw_query.as_bytes()) {
            parameters
                .entry(name.into_owned())
                .and_modify(|v| {
                    v.push(',');
                    v.push_str(&value);
                })
                .or_insert_with(|| value.into_owned());
        }
        event.insert("queryStringParameters".into(), json!(parameters));
    }
    event.insert(
        "requestContext".into(),
        json!({
            "accountId": context.account_id,
            "apiId": context.api_id,
            "domainName": domain,
            "domainPrefix": domain_prefix,
            "http": {
                "method": request.method.as_str(),
                "path": raw_path,
                "protocol": protocol,
                "sourceIp": context.source_ip,
                "userAgent": user_agent,
            },
            "requestId": context.request_id,
            "routeKey": route_key,
            "stage": context.stage,
            "time": clf_time(context.time_epoch_ms / 1000),
            "timeEpoch": context.time_epoch_ms,
        }),
    );
    if !path_parameters.is_empty() {
        event.insert("pathParameters".into(), json!(path_parameters));
    }
    let text = is_text(headers.get("content-type").map(String::as_str))
        .then(|| std::str::from_utf8(body).ok())
        .flatten();
    match (body.is_empty(), text) {
        (true, _) => {
            event.insert("isBase64Encoded".into(), json!(false));
        }
        (false, Some(text)) => {
            event.insert("isBase64Encoded".into(), json!(false));
            event.insert("body".into(), json!(text));
        }
        (false, None) => {
            event.insert("isBase64Encoded".into(), json!(true));
            event.insert(
                "body".into(),
                json!(base64::engine::general_purpose::STANDARD.encode(body)),
            );
        }
    }
    Value::Object(event)
}

/// `29/Nov/2026:15:00:00 +0000`, as `requestContext.time`.
pub fn clf_time(epoch_secs: u64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = (epoch_secs / 86_400) as i64;
    let secs = epoch_secs % 86_400;
    // Civil from days (H. Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{day:02}/{}/{year}:{:02}:{:02}:{:02} +0000",
        MONTHS[(month - 1) as usize],
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// An HTTP answer: status, headers (in order, repeats allowed), body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    /// API Gateway's own answers (`{"message":"Not Found"}` and the like).
    pub fn gateway(status: u16, message: &str) -> Self {
        Self {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: json!({ "message": message }).to_string().into_bytes(),
        }
    }
}

/// What API Gateway answers for a function's response payload. A JSON object with a
/// `statusCode` is the structured format; any other JSON is the body of a 200 (the inferred
/// format); anything else is a malformed response, a 500.
pub fn response_answer(payload: &[u8]) -> Result<Answer, String> {
    let value: Value =
        serde_json::from_slice(payload).map_err(|e| format!("response is not JSON: {e}"))?;
    let Some(object) = value.as_object().filter(|o| o.contains_key("statusCode")) else {
        return Ok(Answer {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: payload.to_vec(),
        });
    };
    let status = match &object["statusCode"] {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
    .filter(|s| (100..=599).contains(s))
    .ok_or_else(|| format!("bad statusCode {}", object["statusCode"]))? as u16;
    let mut headers = Vec::new();
    for (name, value) in object
        .get("headers")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let value = match value {
            Value::String(s) => s.clone(),
            Value::Null => continue,
            other => other.to_string(),
        };
        headers.push((name.to_ascii_lowercase(), value));
    }
    for cookie in object
        .get("cookies")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        headers.push(("set-cookie".into(), cookie.to_owned()));
    }
    let body = match object.get("body") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(text)) => {
            if object.get("isBase64Encoded") == Some(&Value::Bool(true)) {
                base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .map_err(|e| format!("body is not base64: {e}"))?
            } else {
                text.clone().into_bytes()
            }
        }
        Some(other) => other.to_string().into_bytes(),
    };
    Ok(Answer {
        status,
        headers,
        body,
    })
}

/// A request id shaped like API Gateway's (`Vx3kQhT0IAMEb00=`).
pub fn gateway_request_id() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 11];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A Lambda request id (a UUID v4).
pub fn lambda_request_id() -> String {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(method: &str, uri: &str, headers: &[(&str, &str)]) -> hyper::http::request::Parts {
        let mut builder = hyper::Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap().into_parts().0
    }

    fn context() -> Context {
        Context {
            request_id: "id".into(),
            time_epoch_ms: 0,
            source_ip: "127.0.0.9".into(),
            account_id: "123456789012".into(),
            api_id: "local".into(),
            stage: "$default".into(),
            forwarded_port: 3000,
            forwarded_proto: "http".into(),
        }
    }

    #[test]
    fn the_time_is_in_common_log_format() {
        assert_eq!(clf_time(0), "01/Jan/1970:00:00:00 +0000");
        assert_eq!(clf_time(951_782_400), "29/Feb/2000:00:00:00 +0000");
        assert_eq!(clf_time(1_795_964_400), "29/Nov/2026:15:00:00 +0000");
    }

    #[test]
    fn headers_join_repeats_cookies_move_and_the_peer_is_appended() {
        let request = parts(
            "GET",
            "/p?a=1&a=2&b=x%20y",
            &[
                ("accept", "a"),
                ("accept", "b"),
                ("cookie", "c1=1; c2=2"),
                ("x-forwarded-for", "203.0.113.7"),
                ("connection", "keep-alive"),
            ],
        );
        let event = request_event(&request, b"", "$default", &BTreeMap::new(), &context());
        assert_eq!(event["headers"]["accept"], "a,b");
        assert_eq!(event["cookies"], json!(["c1=1", "c2=2"]));
        assert_eq!(
            event["headers"]["x-forwarded-for"],
            "203.0.113.7, 127.0.0.9"
        );
        assert_eq!(event["headers"].get("connection"), None);
        assert_eq!(event["headers"].get("cookie"), None);
        assert_eq!(
            event["queryStringParameters"],
            json!({"a": "1,2", "b": "x y"})
        );
        assert_eq!(event["rawQueryString"], "a=1&a=2&b=x%20y");
        assert_eq!(event["requestContext"]["http"]["sourceIp"], "127.0.0.9");
        assert_eq!(event.get("body"), None);
        assert_eq!(event.get("pathParameters"), None);
    }

    #[test]
    fn json_is_passed_as_text_and_other_bodies_as_base64() {
        let cases: [(&str, &[u8], bool); 4] = [
            ("application/json", b"{\"a\": 1}", false),
            ("application/x-www-form-urlencoded", b"a=1", true),
            ("application/json", b"{\"a\": \"\xff\"}", true),
            ("text/plain; charset=utf-8", b"x", false),
        ];
        for (content_type, body, base64) in cases {
            let request = parts("POST", "/p", &[("content-type", content_type)]);
            let event = request_event(&request, body, "$default", &BTreeMap::new(), &context());
            assert_eq!(event["isBase64Encoded"], json!(base64), "{content_type}");
            let sent = event["body"].as_str().unwrap();
            let decoded = if base64 {
                base64::engine::general_purpose::STANDARD
                    .decode(sent)
                    .unwrap()
            } else {
                sent.as_bytes().to_vec()
            };
            assert_eq!(decoded, body);
        }
    }

    #[test]
    fn a_structured_response_becomes_its_status_headers_cookies_and_body() {
        let answer = response_answer(
            br#"{"statusCode":405,"headers":{"Allow":"POST, OPTIONS","content-type":"application/json"},"multiValueHeaders":{},"body":"{\"detail\":\"x\"}","isBase64Encoded":false,"cookies":["a=1"]}"#,
        )
        .unwrap();
        assert_eq!(answer.status, 405);
        assert_eq!(
            answer.headers,
            [
                ("allow".to_owned(), "POST, OPTIONS".to_owned()),
                ("content-type".to_owned(), "application/json".to_owned()),
                ("set-cookie".to_owned(), "a=1".to_owned()),
            ]
        );
        assert_eq!(answer.body, br#"{"detail":"x"}"#);
        let binary =
            response_answer(br#"{"statusCode":200,"body":"AAE=","isBase64Encoded":true}"#).unwrap();
        assert_eq!(binary.body, [0, 1]);
        let empty = response_answer(br#"{"statusCode":204,"cookies":[]}"#).unwrap();
        assert_eq!((empty.status, empty.body.len()), (204, 0));
    }

    #[test]
    fn other_json_is_an_inferred_200_and_garbage_is_refused() {
        let inferred = response_answer(br#"{"hello":"world"}"#).unwrap();
        assert_eq!(inferred.status, 200);
        assert_eq!(inferred.body, br#"{"hello":"world"}"#);
        assert!(response_answer(b"not json").is_err());
        assert!(response_answer(br#"{"statusCode":"abc"}"#).is_err());
    }

    #[test]
    fn request_ids_look_like_api_gateways_and_lambdas() {
        let id = gateway_request_id();
        assert_eq!((id.len(), id.ends_with('=')), (16, true), "{id}");
        let id = lambda_request_id();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
    }
}
