//! A network that loses answers, between the store's DynamoDB client and the emulator: the
//! "ambiguous write" of a real network. Every write is delivered and applied, but the answer to
//! its first attempt never comes back; the SDK sends it again, byte for byte, and that answer
//! comes through. Reads pass untouched.
//!
//! moto ignores `TransactWriteItems`' `ClientRequestToken`; DynamoDB does not. So this layer
//! does what DynamoDB does: a transaction repeating the token of one that succeeded is not
//! applied again, and is answered with that first answer.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::http::{Headers, StatusCode};
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::byte_stream::ByteStream;

const WRITES: [&str; 5] = [
    "PutItem",
    "UpdateItem",
    "DeleteItem",
    "TransactWriteItems",
    "BatchWriteItem",
];

/// What the layer did, for tests to assert that a fault really happened.
#[derive(Debug, Default)]
pub struct Faults {
    /// Writes applied whose first answer was lost.
    lost: AtomicUsize,
    /// Transactions answered from their token's first answer, not applied again.
    replayed: AtomicUsize,
    /// Writes (operation and body) whose answer was lost once already.
    seen: Mutex<HashSet<u64>>,
    /// The first successful answer of each transaction token.
    answers: Mutex<HashMap<String, Answer>>,
}

impl Faults {
    pub fn lost(&self) -> usize {
        self.lost.load(Ordering::SeqCst)
    }

    pub fn replayed(&self) -> usize {
        self.replayed.load(Ordering::SeqCst)
    }
}

#[derive(Debug, Clone)]
struct Answer {
    status: StatusCode,
    headers: Headers,
    body: bytes::Bytes,
}

impl Answer {
    fn response(&self) -> HttpResponse {
        let mut response = HttpResponse::new(self.status, SdkBody::from(self.body.clone()));
        *response.headers_mut() = self.headers.clone();
        response
    }
}

/// The SDK HTTP client `inner`, losing the first answer of every write.
#[derive(Debug, Clone)]
pub struct LosingAnswers {
    inner: SharedHttpClient,
    faults: Arc<Faults>,
}

impl LosingAnswers {
    pub fn new(inner: SharedHttpClient) -> Self {
        Self {
            inner,
            faults: Arc::default(),
        }
    }

    pub fn faults(&self) -> Arc<Faults> {
        self.faults.clone()
    }
}

impl HttpClient for LosingAnswers {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(LosingConnector {
            inner: self.inner.http_connector(settings, components),
            faults: self.faults.clone(),
        })
    }
}

#[derive(Debug)]
struct LosingConnector {
    inner: SharedHttpConnector,
    faults: Arc<Faults>,
}

impl HttpConnector for LosingConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let operation = crate::dynamodb_operation(&request)
            .unwrap_or_default()
            .to_owned();
        if !WRITES.contains(&operation.as_str()) {
            return self.inner.call(request);
        }
        let body = request.body().bytes().unwrap_or_default().to_vec();
        let token = (operation == "TransactWriteItems")
            .then(|| client_request_token(&body))
            .flatten();
        let write = {
            let mut hasher = DefaultHasher::new();
            (&operation, &body).hash(&mut hasher);
            hasher.finish()
        };
        let inner = self.inner.clone();
        let faults = self.faults.clone();
        HttpConnectorFuture::new(async move {
            if let Some(token) = &token {
                let first = faults.answers.lock().unwrap().get(token).cloned();
                if let Some(first) = first {
                    faults.replayed.fetch_add(1, Ordering::SeqCst);
                    return Ok(first.response());
                }
            }
            let response = inner.call(request).await?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = ByteStream::new(response.into_body())
                .collect()
                .await
                .map_err(|err| ConnectorError::io(err.into()))?
                .into_bytes();
            let answer = Answer {
                status,
                headers,
                body,
            };
            if let (Some(token), true) = (&token, status.is_success()) {
                faults
                    .answers
                    .lock()
                    .unwrap()
                    .insert(token.clone(), answer.clone());
            }
            if faults.seen.lock().unwrap().insert(write) {
                faults.lost.fetch_add(1, Ordering::SeqCst);
                return Err(ConnectorError::io(
                    "the answer was lost on its way back (fault injected after the write)".into(),
                ));
            }
            Ok(answer.response())
        })
    }
}

fn client_request_token(body: &[u8]) -> Option<String> {
    let request: serde_json::Value = serde_json::from_slice(body).ok()?;
    request
        .get("ClientRequestToken")?
        .as_str()
        .map(str::to_owned)
}
