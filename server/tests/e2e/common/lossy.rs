//! Bad networks in user space: this machine's kernel has no `netem`, so a
//! test that wants loss, delay and reordering puts a relay between the
//! client and the server. UDP datagrams (QUIC, WebTransport) are dropped
//! with a probability and delayed with jitter, each way, from a seeded
//! generator so a failure replays. A TCP stream (WebSocket) cannot lose
//! bytes above the kernel; its relay only delays, which is what loss turns
//! into for TCP (retransmission waits).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;

/// What a path is like, each way.
#[derive(Clone, Copy, Debug)]
pub struct Conditions {
    pub loss: f64,
    pub delay: Duration,
    /// Added to `delay`, uniformly in 0..jitter: datagrams overtake each other.
    pub jitter: Duration,
    pub seed: u64,
}

/// Datagrams a path carried and dropped, both ways together.
#[derive(Default, Debug)]
pub struct PathCounts {
    pub carried: AtomicU64,
    pub dropped: AtomicU64,
}

/// A lossy UDP path for one client: it sends to `addr`, the relay sends on
/// to `upstream` from a socket of its own.
pub struct LossyUdpPath {
    pub addr: SocketAddr,
    pub counts: Arc<PathCounts>,
    task: JoinHandle<()>,
}

impl LossyUdpPath {
    pub async fn start(upstream: SocketAddr, conditions: Conditions) -> Self {
        let client_side = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let server_side = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let addr = client_side.local_addr().unwrap();
        let counts = Arc::new(PathCounts::default());
        let task = tokio::spawn(relay(
            client_side,
            server_side,
            upstream,
            conditions,
            counts.clone(),
        ));
        LossyUdpPath { addr, counts, task }
    }
}

impl Drop for LossyUdpPath {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(
    client_side: Arc<UdpSocket>,
    server_side: Arc<UdpSocket>,
    upstream: SocketAddr,
    c: Conditions,
    counts: Arc<PathCounts>,
) {
    let mut rng = StdRng::seed_from_u64(c.seed);
    let mut client: Option<SocketAddr> = None;
    let (mut up, mut down) = (vec![0; 65_536], vec![0; 65_536]);
    loop {
        let (bytes, out, to) = tokio::select! {
            r = client_side.recv_from(&mut up) => {
                let (n, from) = r.unwrap();
                client = Some(from);
                (up[..n].to_vec(), server_side.clone(), upstream)
            }
            r = server_side.recv_from(&mut down) => {
                let (n, _) = r.unwrap();
                let Some(to) = client else { continue };
                (down[..n].to_vec(), client_side.clone(), to)
            }
        };
        if rng.random_bool(c.loss) {
            counts.dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        counts.carried.fetch_add(1, Ordering::Relaxed);
        let wait = c.delay + c.jitter.mul_f64(rng.random::<f64>());
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            let _ = out.send_to(&bytes, to).await;
        });
    }
}

/// A TCP relay that delays every chunk by `delay` each way (in order).
pub struct DelayedTcpPath {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl DelayedTcpPath {
    pub async fn start(upstream: SocketAddr, delay: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (ri, wi) = inbound.into_split();
                    let (ro, wo) = outbound.into_split();
                    tokio::join!(delayed_copy(ri, wo, delay), delayed_copy(ro, wi, delay));
                });
            }
        });
        DelayedTcpPath { addr, task }
    }
}

impl Drop for DelayedTcpPath {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn delayed_copy(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let reader = async move {
        let mut buf = vec![0; 16_384];
        while let Ok(n) = from.read(&mut buf).await {
            if n == 0
                || tx
                    .send((tokio::time::Instant::now() + delay, buf[..n].to_vec()))
                    .is_err()
            {
                break;
            }
        }
    };
    let writer = async move {
        while let Some((due, bytes)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}

/// A UDP path that stops once the server has answered the client's first
/// datagram: from then on it holds what comes either way, until
/// [`HeldUdpPath::open`] delivers it all and the path carries on as a
/// plain relay. A QUIC handshake through it is under way on the server and
/// cannot finish while it is held.
pub struct HeldUdpPath {
    pub addr: SocketAddr,
    answered: Option<tokio::sync::oneshot::Receiver<()>>,
    open: Option<tokio::sync::oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl HeldUdpPath {
    pub async fn start(upstream: SocketAddr) -> Self {
        let client_side = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let server_side = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        server_side.connect(upstream).await.unwrap();
        let addr = client_side.local_addr().unwrap();
        let (answered_tx, answered) = tokio::sync::oneshot::channel();
        let (open, open_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let (mut up, mut down) = (vec![0; 65_536], vec![0; 65_536]);
            let (n, client) = client_side.recv_from(&mut up).await.unwrap();
            server_side.send(&up[..n]).await.unwrap();
            let n = server_side.recv(&mut down).await.unwrap();
            let (mut to_client, mut to_server) = (vec![down[..n].to_vec()], Vec::new());
            let _ = answered_tx.send(());
            let mut open_rx = open_rx;
            loop {
                tokio::select! {
                    _ = &mut open_rx => break,
                    r = server_side.recv(&mut down) => to_client.push(down[..r.unwrap()].to_vec()),
                    r = client_side.recv_from(&mut up) => to_server.push(up[..r.unwrap().0].to_vec()),
                }
            }
            for datagram in to_server {
                let _ = server_side.send(&datagram).await;
            }
            for datagram in to_client {
                let _ = client_side.send_to(&datagram, client).await;
            }
            loop {
                tokio::select! {
                    r = server_side.recv(&mut down) => {
                        let _ = client_side.send_to(&down[..r.unwrap()], client).await;
                    }
                    r = client_side.recv_from(&mut up) => {
                        let _ = server_side.send(&up[..r.unwrap().0]).await;
                    }
                }
            }
        });
        HeldUdpPath {
            addr,
            answered: Some(answered),
            open: Some(open),
            task,
        }
    }

    /// Waits until the server has answered the client's first datagram.
    pub async fn answered(&mut self) {
        if let Some(answered) = self.answered.take() {
            answered.await.expect("the path runs until dropped");
        }
    }

    /// Delivers what was held, and carries everything from now on.
    pub fn open(&mut self) {
        if let Some(open) = self.open.take() {
            let _ = open.send(());
        }
    }
}

impl Drop for HeldUdpPath {
    fn drop(&mut self) {
        self.task.abort();
    }
}
