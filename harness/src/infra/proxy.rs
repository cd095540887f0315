//! The fault path: a TCP proxy the harness puts between the target and
//! PgBouncer or Redis when a suite has network faults, so that latency,
//! a bandwidth cap, resets and a black hole can be turned on and off on the
//! run's clock. Hand-written on tokio: toxiproxy is a separate Go server
//! (another binary to install and drive over HTTP), and no maintained crate
//! embeds a controllable proxy.
//!
//! Each connection is two pumps, one per direction; a reader stamps each
//! chunk with its arrival and a writer sends it when the path's condition
//! allows:
//! - **delay**: a chunk from the service reaches the target `latency` (±
//!   `jitter`) after it arrived, in order; chunks do not queue behind each
//!   other's delay, as on a long wire;
//! - **bandwidth**: each direction sends at most so many bytes a second;
//! - **reset**: every open connection is reset (RST) and new ones are
//!   reset as they arrive;
//! - **blackhole**: nothing goes through, either way, until the fault
//!   ends; then what waited is delivered, as TCP retransmits would.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// What the path does now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PathCondition {
    #[default]
    Clear,
    Delay {
        latency: Duration,
        jitter: Duration,
    },
    Bandwidth {
        bytes_per_second: u64,
    },
    Reset,
    Blackhole,
}

/// A running proxy to one service.
#[derive(Debug)]
pub struct FaultProxy {
    address: SocketAddr,
    condition: watch::Sender<PathCondition>,
    accept: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> anyhow::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the fault proxy")?;
        let address = listener.local_addr()?;
        let (condition, receiver) = watch::channel(PathCondition::Clear);
        let accept = tokio::spawn(accept(listener, upstream, receiver));
        Ok(FaultProxy {
            address,
            condition,
            accept,
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Changes the path's condition for every connection, open or new.
    pub fn set(&self, condition: PathCondition) {
        self.condition.send_replace(condition);
    }

    pub fn condition(&self) -> PathCondition {
        *self.condition.borrow()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // Open connections end with the listener's task's children: each
        // watches the condition channel, which closes here.
        self.accept.abort();
    }
}

async fn accept(
    listener: TcpListener,
    upstream: SocketAddr,
    condition: watch::Receiver<PathCondition>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        if *condition.borrow() == PathCondition::Reset {
            reset(client);
            continue;
        }
        tokio::spawn(connection(client, upstream, condition.clone()));
    }
}

/// Closes with RST instead of FIN.
fn reset(stream: TcpStream) {
    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    drop(stream);
}

async fn connection(
    client: TcpStream,
    upstream: SocketAddr,
    mut condition: watch::Receiver<PathCondition>,
) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        reset(client);
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    // Handles kept to reset both sockets while the pumps own their halves.
    let (Ok(client_handle), Ok(server_handle)) = (duplicate(&client), duplicate(&server)) else {
        return;
    };
    // Not `into_split`: its write half sends FIN when dropped, and a reset
    // must be a bare RST.
    let (client_read, client_write) = tokio::io::split(client);
    let (server_read, server_write) = tokio::io::split(server);
    let up = tokio::spawn(pump(
        client_read,
        server_write,
        Direction::ToService,
        condition.clone(),
    ));
    let down = tokio::spawn(pump(
        server_read,
        client_write,
        Direction::ToTarget,
        condition.clone(),
    ));
    let (up_abort, down_abort) = (up.abort_handle(), down.abort_handle());
    let both = async {
        let _ = tokio::join!(up, down);
    };
    tokio::pin!(both);
    let reset_now = tokio::select! {
        _ = &mut both => false,
        changed = condition.wait_for(|c| *c == PathCondition::Reset) => changed.is_ok(),
    };
    if reset_now {
        // A reset is a close with linger zero of every descriptor of the
        // socket: the pumps' halves, then these handles.
        let _ = socket2::SockRef::from(&client_handle).set_linger(Some(Duration::ZERO));
        let _ = socket2::SockRef::from(&server_handle).set_linger(Some(Duration::ZERO));
        up_abort.abort();
        down_abort.abort();
        both.await;
    }
    drop(client_handle);
    drop(server_handle);
}

fn duplicate(stream: &TcpStream) -> std::io::Result<std::net::TcpStream> {
    socket2::SockRef::from(stream)
        .try_clone()
        .map(std::net::TcpStream::from)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    ToService,
    ToTarget,
}

async fn pump(
    mut from: tokio::io::ReadHalf<TcpStream>,
    mut to: tokio::io::WriteHalf<TcpStream>,
    direction: Direction,
    mut condition: watch::Receiver<PathCondition>,
) {
    let (chunks, mut arrived) = mpsc::channel::<(Instant, Vec<u8>)>(256);
    let read = async move {
        let mut buffer = vec![0u8; 16 * 1024];
        loop {
            match from.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if chunks
                        .send((Instant::now(), buffer[..n].to_vec()))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
    };
    let write = async move {
        let mut last_sent = Instant::now();
        while let Some((arrival, chunk)) = arrived.recv().await {
            // Nothing passes a black hole; a reset is the connection's to
            // carry out, so the pump waits for it.
            let now = loop {
                let current = *condition.borrow_and_update();
                match current {
                    PathCondition::Blackhole | PathCondition::Reset => {
                        if condition.changed().await.is_err() {
                            return;
                        }
                    }
                    other => break other,
                }
            };
            if let (PathCondition::Delay { latency, jitter }, Direction::ToTarget) =
                (now, direction)
            {
                let due = (arrival + delay(latency, jitter)).max(last_sent);
                tokio::time::sleep_until(due).await;
            }
            if to.write_all(&chunk).await.is_err() {
                return;
            }
            last_sent = Instant::now();
            if let PathCondition::Bandwidth { bytes_per_second } = now {
                let seconds = chunk.len() as f64 / bytes_per_second as f64;
                tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(read, write);
}

/// `latency` ± up to `jitter`, uniformly, never below zero.
fn delay(latency: Duration, jitter: Duration) -> Duration {
    if jitter.is_zero() {
        return latency;
    }
    use rand::Rng as _;
    let offset = rand::rng().random_range(-jitter.as_secs_f64()..=jitter.as_secs_f64());
    Duration::from_secs_f64((latency.as_secs_f64() + offset).max(0.0))
}
