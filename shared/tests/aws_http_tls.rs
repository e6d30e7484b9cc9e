//! The SDK's HTTP client (`wiring/aws_http.rs`) over real TLS: a local HTTPS server with a
//! certificate from a throw-away CA (made with the `openssl` command), so the path every
//! deployed function takes to DynamoDB is exercised here, not only the emulator's plain HTTP.
//! Its own test binary: it sets `SSL_CERT_FILE`, which is process-wide.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use auth::wiring::aws_http::{Http1Client, Trust};
use aws_smithy_runtime_api::client::http::HttpConnector;
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_types::body::SdkBody;
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn openssl(dir: &Path, args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("the openssl command (./scripts/test installs it)");
    assert!(status.success(), "openssl {args:?}");
}

/// A CA, and a certificate for `localhost` signed by it: (CA PEM path, leaf chain, leaf key).
fn certificates(dir: &Path) -> (std::path::PathBuf, Vec<u8>, Vec<u8>) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend(["-keyout", "ca.key", "-out", "ca.pem", "-days", "2"]);
    ca.extend(["-subj", "/CN=aws-http test CA"]);
    openssl(dir, &ca);
    let mut leaf = vec!["req"];
    leaf.extend(ec);
    leaf.extend([
        "-keyout",
        "leaf.key",
        "-out",
        "leaf.csr",
        "-subj",
        "/CN=localhost",
    ]);
    openssl(dir, &leaf);
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "leaf.pem",
            "-days",
            "2",
            "-extfile",
            "leaf.ext",
        ],
    );
    (
        dir.join("ca.pem"),
        std::fs::read(dir.join("leaf.pem")).unwrap(),
        std::fs::read(dir.join("leaf.key")).unwrap(),
    )
}

/// An HTTPS server on 127.0.0.1 answering every request `{"ok":true}`; after each answer it
/// closes the connection if `close_after_answer`. Counts the connections it accepted.
async fn https_server(
    chain: &[u8],
    key: &[u8],
    close_after_answer: bool,
) -> (u16, Arc<AtomicUsize>) {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let chain: Vec<_> = CertificateDer::pem_slice_iter(chain)
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_slice(key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            counter.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut request = Vec::new();
                let mut buffer = [0u8; 4096];
                loop {
                    let Ok(n) = tls.read(&mut buffer).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buffer[..n]);
                    // Bodiless requests: the head's end is the request's end.
                    while let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                        request.drain(..end + 4);
                        let answer = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                                      content-length: 11\r\n\r\n{\"ok\":true}";
                        tls.write_all(answer.as_bytes()).await.unwrap();
                        if close_after_answer {
                            let _ = tls.shutdown().await;
                            return;
                        }
                    }
                }
            });
        }
    });
    (port, accepted)
}

/// One GET through the client's connector: the status and body, or the connector's error.
async fn get(client: &Http1Client, port: u16) -> Result<(u16, String), String> {
    let request = hyper::Request::builder()
        .uri(format!("https://localhost:{port}/"))
        .body(SdkBody::empty())
        .unwrap();
    let response = client
        .connector(Some(Duration::from_secs(5)))
        .call(HttpRequest::try_from(request).unwrap())
        .await
        .map_err(|e| format!("{e:?}"))?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

#[tokio::test]
async fn the_sdk_client_speaks_tls_keeps_its_connection_and_trusts_only_the_roots_it_is_given() {
    let dir = std::env::temp_dir().join(format!("aws-http-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (ca, chain, key) = certificates(&dir);
    // Trust::System reads SSL_CERT_FILE (rustls-native-certs): here, only the test CA.
    std::env::set_var("SSL_CERT_FILE", &ca);
    let trusting = Http1Client::new(Trust::System);

    // Keep-alive: two requests, one connection (the first answer was read to its end).
    let (port, accepted) = https_server(&chain, &key, false).await;
    for _ in 0..2 {
        assert_eq!(
            get(&trusting, port).await,
            Ok((200, r#"{"ok":true}"#.into()))
        );
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "the connection was reused"
    );

    // A server that closes after each answer: the pooled connection is found closed, and the
    // next request goes out on a new one, answered, not failed.
    let (port, accepted) = https_server(&chain, &key, true).await;
    for _ in 0..3 {
        assert_eq!(
            get(&trusting, port).await,
            Ok((200, r#"{"ok":true}"#.into()))
        );
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 3);

    // The functions' default trusts only the embedded AWS roots: the test CA's certificate is
    // refused, as any certificate not from Amazon Trust Services would be.
    let pinned = Http1Client::new(Trust::AwsRoots);
    let refused = get(&pinned, port)
        .await
        .expect_err("an unknown issuer is refused");
    assert!(refused.contains("UnknownIssuer"), "{refused}");
    std::fs::remove_dir_all(&dir).ok();
}
