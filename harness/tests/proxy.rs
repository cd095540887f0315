//! The fault proxy between a client and a real TCP echo service on
//! loopback: clear, delayed, capped, reset and black-holed. Times are only
//! lower bounds a fault must add, never a speed the machine must reach.

use std::time::{Duration, Instant};

use harness::infra::proxy::{FaultProxy, PathCondition};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// An echo service on a free loopback port.
async fn echo() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 64 * 1024];
                loop {
                    match socket.read(&mut buffer).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if socket.write_all(&buffer[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
            });
        }
    });
    address
}

async fn round_trip(stream: &mut TcpStream, message: &[u8]) -> std::io::Result<Vec<u8>> {
    stream.write_all(message).await?;
    let mut back = vec![0u8; message.len()];
    stream.read_exact(&mut back).await?;
    Ok(back)
}

#[tokio::test]
async fn a_clear_path_carries_everything_both_ways() {
    let proxy = FaultProxy::start(echo().await).await.unwrap();
    let mut client = TcpStream::connect(proxy.address()).await.unwrap();
    let message: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(round_trip(&mut client, &message).await.unwrap(), message);
}

#[tokio::test]
async fn a_delay_holds_each_answer_for_its_latency() {
    let proxy = FaultProxy::start(echo().await).await.unwrap();
    let mut client = TcpStream::connect(proxy.address()).await.unwrap();
    round_trip(&mut client, b"warm").await.unwrap();
    proxy.set(PathCondition::Delay {
        latency: Duration::from_millis(200),
        jitter: Duration::ZERO,
    });
    let started = Instant::now();
    assert_eq!(round_trip(&mut client, b"ping").await.unwrap(), b"ping");
    assert!(started.elapsed() >= Duration::from_millis(200));
    proxy.set(PathCondition::Clear);
    assert_eq!(round_trip(&mut client, b"pong").await.unwrap(), b"pong");
}

#[tokio::test]
async fn a_bandwidth_cap_paces_the_bytes() {
    let proxy = FaultProxy::start(echo().await).await.unwrap();
    let mut client = TcpStream::connect(proxy.address()).await.unwrap();
    proxy.set(PathCondition::Bandwidth {
        bytes_per_second: 100_000,
    });
    let message = vec![7u8; 50_000];
    let started = Instant::now();
    assert_eq!(round_trip(&mut client, &message).await.unwrap(), message);
    // 50 kB each way at 100 kB/s: at least half a second, whatever the machine.
    assert!(started.elapsed() >= Duration::from_millis(450));
}

#[tokio::test]
async fn a_reset_cuts_open_connections_and_refuses_new_ones() {
    let proxy = FaultProxy::start(echo().await).await.unwrap();
    let mut open = TcpStream::connect(proxy.address()).await.unwrap();
    round_trip(&mut open, b"hello").await.unwrap();
    proxy.set(PathCondition::Reset);
    let mut buffer = [0u8; 8];
    let cut = tokio::time::timeout(Duration::from_secs(10), open.read(&mut buffer))
        .await
        .expect("the open connection ends");
    assert!(
        matches!(&cut, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "{cut:?}"
    );
    let mut fresh = TcpStream::connect(proxy.address()).await.unwrap();
    let refused = tokio::time::timeout(Duration::from_secs(10), round_trip(&mut fresh, b"again"))
        .await
        .expect("a new connection ends");
    assert!(refused.is_err(), "{refused:?}");
    proxy.set(PathCondition::Clear);
    let mut after = TcpStream::connect(proxy.address()).await.unwrap();
    assert_eq!(round_trip(&mut after, b"back").await.unwrap(), b"back");
}

#[tokio::test]
async fn a_black_hole_passes_nothing_until_it_ends() {
    let proxy = FaultProxy::start(echo().await).await.unwrap();
    let mut client = TcpStream::connect(proxy.address()).await.unwrap();
    round_trip(&mut client, b"before").await.unwrap();
    proxy.set(PathCondition::Blackhole);
    client.write_all(b"lost?").await.unwrap();
    let mut buffer = [0u8; 5];
    let waited =
        tokio::time::timeout(Duration::from_millis(500), client.read_exact(&mut buffer)).await;
    assert!(waited.is_err(), "something passed the black hole");
    proxy.set(PathCondition::Clear);
    client.read_exact(&mut buffer).await.unwrap();
    assert_eq!(&buffer, b"lost?");
}
