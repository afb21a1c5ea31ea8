//! Limits against abuse: slow clients are cut off, connections are capped, and memory stays
//! bounded while hundreds of slow clients hold connections.

use std::time::{Duration, Instant};

use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

/// Sends `bytes` one per `interval` until the server closes; returns how long it took.
async fn trickle(addr: std::net::SocketAddr, bytes: &[u8], interval: Duration) -> Duration {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    for b in bytes {
        if stream.write_all(&[*b]).await.is_err() {
            return started.elapsed();
        }
        // The server may close while we wait; a read returning 0 means it did.
        let mut buf = [0u8; 1024];
        match tokio::time::timeout(interval, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => {
                // An answer (408/closing): drain until closed.
                while !matches!(stream.read(&mut buf).await, Ok(0) | Err(_)) {}
                return started.elapsed();
            }
            Err(_) => {}
        }
    }
    panic!("the server never cut the slow client off");
}

#[tokio::test]
async fn a_client_sending_one_byte_a_second_is_cut_off() {
    let gw = Setup::new().limits("header_timeout_ms = 1500").limits("body_timeout_ms = 1500").start().await;
    let addr = gw.gateway.as_ref().unwrap().partner_addr;
    // Slow headers.
    let head =
        b"POST /v1/records/birth-registration HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\r\n";
    let took = trickle(addr, head, Duration::from_secs(1)).await;
    assert!(took < Duration::from_secs(4), "slow headers held the connection {took:?}");
    // Slow body, after quick headers.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let key = gw.key("on-vital-stats");
    let head = format!(
        "POST /v1/records/birth-registration HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    for _ in 0..10 {
        if stream.write_all(b" ").await.is_err() {
            break;
        }
        let mut buf = [0u8; 2048];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf)).await {
            answer.extend_from_slice(&buf[..n]);
            break;
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(4));
    // An idle keep-alive connection is closed too.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 16];
    let closed = tokio::time::timeout(Duration::from_secs(4), idle.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "an idle connection was kept open");
    assert_eq!(gw.client.get("/v1/agreements", key).await.status, StatusCode::OK);
}

#[tokio::test]
async fn connections_over_the_cap_wait_their_turn() {
    let gw = Setup::new().edit_listen("max_connections = 3").start().await;
    let addr = gw.gateway.as_ref().unwrap().partner_addr;
    let key = gw.key("on-vital-stats").to_owned();
    // Three connections held open (a partial request each).
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /v1/agreements HTTP/1.1\r\n").await.unwrap();
        held.push(s);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let fourth = {
        let client = gw.client.clone();
        let key = key.clone();
        tokio::spawn(async move { client.get("/v1/agreements", &key).await.status })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!fourth.is_finished(), "a fourth connection was served while three were open");
    drop(held.pop());
    let status = tokio::time::timeout(Duration::from_secs(5), fourth).await.expect("served once a slot freed").unwrap();
    assert_eq!(status, StatusCode::OK);
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// 500 clients holding connections with partial requests: memory stays bounded and the gateway
/// keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_bounded_with_500_slow_clients() {
    let setup = Setup::new().limits("header_timeout_ms = 30000");
    setup.write(&Default::default());
    let gateway = ChildGateway::spawn(&setup.main_config(), &[]).await;
    let pid = gateway.child.id();
    let addr: std::net::SocketAddr = gateway.client.base.trim_start_matches("http://").parse().unwrap();
    let key = setup.keys["on-vital-stats"].clone();
    let ok = gateway.client.get("/v1/agreements", &key).await;
    assert_eq!(ok.status, StatusCode::OK);
    let idle = rss_kib(pid);
    let mut slow = Vec::new();
    for i in 0..500 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("POST /v1/records/birth-registration HTTP/1.1\r\nhost: slow-{i}\r\n").as_bytes())
            .await
            .unwrap();
        slow.push(s);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (i, s) in slow.iter_mut().enumerate() {
        let _ = s.write_all(format!("x-slow: {i}\r\n").as_bytes()).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let held = rss_kib(pid);
    let r = gateway.client.get("/v1/agreements", &key).await;
    assert_eq!(r.status, StatusCode::OK, "the gateway keeps serving");
    eprintln!(
        "RSS idle {} KiB, with 500 slow clients {} KiB ({} KiB per connection)",
        idle,
        held,
        (held.saturating_sub(idle)) / 500
    );
    assert!(held < idle + 64 * 1024, "500 slow clients took {} KiB", held - idle);
    drop(slow);
    gateway.terminate();
}
