//! Crash safety of the embedded store: the local server is killed (SIGKILL, no shutdown of any
//! kind) in the middle of a stream of sign-ups, logins and deletions, five times over one data
//! folder. After each kill the store must open, every account must still have its email claim
//! (and no claim may name a missing account), and every sign-up that was answered 201 (and not
//! deleted since) must still be there: an acknowledged write is durable.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use auth::store::embedded::EmbeddedStore;
use auth::store::Store;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::process::{Child, Command};

const ROUNDS: usize = 5;
const WORKERS: usize = 4;
const PASSWORD: &str = "crash-test-passphrase-9";

/// Accounts the server acknowledged, and those a deletion was sent for (maybe applied).
#[derive(Default)]
struct Ledger {
    created: Mutex<Vec<String>>,
    deleting: Mutex<HashSet<String>>,
    writes: AtomicUsize,
}

fn random_u32() -> u32 {
    rand::random()
}

/// A fresh client address per account (127.x.y.z), as distinct clients would have: the
/// sign-up limit per IP is the server's, not the test's, to loosen.
fn random_loopback() -> Ipv4Addr {
    let r = random_u32().to_le_bytes();
    Ipv4Addr::new(127, r[0].max(1), r[1], r[2].max(2))
}

/// One HTTP/1.1 request on its own connection: (status, body).
async fn request(
    port: u16,
    from: Ipv4Addr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> std::io::Result<(u16, String)> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((from, 0)))?;
    let mut stream = socket
        .connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .await?;
    let auth = token
        .map(|t| format!("Authorization: JWT {t}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n{auth}\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status line: {text:?}")))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// Signs up, logs in and, every other account, deletes it again, until `stop`.
async fn worker(
    port: u16,
    round: usize,
    worker: usize,
    ledger: Arc<Ledger>,
    stop: Arc<AtomicBool>,
) {
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let ip = random_loopback();
        let email = format!(
            "crash-{round}-{worker}-{n}-{:08x}@example.com",
            random_u32()
        );
        let credentials = format!(r#"{{"email":"{email}","password":"{PASSWORD}"}}"#);
        let Ok((201, _)) = request(port, ip, "POST", "/api/user/create/", None, &credentials).await
        else {
            continue;
        };
        ledger.created.lock().unwrap().push(email.clone());
        ledger.writes.fetch_add(1, Ordering::SeqCst);
        let Ok((200, body)) =
            request(port, ip, "POST", "/api/user/login/", None, &credentials).await
        else {
            continue;
        };
        ledger.writes.fetch_add(1, Ordering::SeqCst);
        if n % 2 == 0 {
            let token = body
                .split("\"token\":\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap_or_default()
                .to_owned();
            ledger.deleting.lock().unwrap().insert(email.clone());
            let delete = format!(r#"{{"current_password":"{PASSWORD}"}}"#);
            let _ = request(port, ip, "POST", "/api/user/delete/", Some(&token), &delete).await;
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

async fn start(data: &Path) -> (Child, u16) {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_local-api"))
        .env("DATA_DIR", data)
        .env("PORT", port.to_string())
        .env("MAILER", "outbox")
        .env_remove("TABLE_NAME")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start local-api");
    for _ in 0..300 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return (child, port);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("local-api did not start listening on {port}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_write_leaves_every_account_with_its_claim_and_loses_no_acknowledged_one(
) {
    let data: PathBuf = std::env::temp_dir().join(format!("crash-{:08x}", random_u32()));
    let ledger = Arc::new(Ledger::default());
    for round in 0..ROUNDS {
        let (mut child, port) = start(&data).await;
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..WORKERS)
            .map(|w| tokio::spawn(worker(port, round, w, ledger.clone(), stop.clone())))
            .collect();
        // Kill once writes are flowing, at a different moment each round.
        let before = ledger.writes.load(Ordering::SeqCst);
        for _ in 0..500 {
            if ledger.writes.load(Ordering::SeqCst) >= before + 4 + round {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            ledger.writes.load(Ordering::SeqCst) > before,
            "round {round}: no write was acknowledged before the kill"
        );
        tokio::time::sleep(Duration::from_millis(u64::from(random_u32() % 40))).await;
        child.start_kill().expect("SIGKILL"); // tokio's kill is SIGKILL on Unix
        child.wait().await.expect("reaped");
        stop.store(true, Ordering::SeqCst);
        for w in workers {
            w.await.expect("worker");
        }

        let store = EmbeddedStore::open(&data.join("accounts.redb"))
            .unwrap_or_else(|e| panic!("round {round}: the killed store does not open: {e}"));
        let problems = store.integrity_problems().expect("integrity scan");
        assert!(problems.is_empty(), "round {round}: {problems:?}");
        let created = ledger.created.lock().unwrap().clone();
        let deleting = ledger.deleting.lock().unwrap().clone();
        for email in created.iter().filter(|e| !deleting.contains(*e)) {
            let user = store.user_by_email(email).await.expect("read");
            assert!(
                user.is_some(),
                "round {round}: acknowledged {email} is gone"
            );
        }
        drop(store); // release the file before the next round's server opens it
    }
    assert!(ledger.created.lock().unwrap().len() >= ROUNDS);
    let _ = std::fs::remove_dir_all(&data);
}
