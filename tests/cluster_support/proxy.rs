//! A TCP proxy to put between one node and a server, for fault injection. [`Proxy::pause`] holds every byte in both
//! directions, on connections open or new (a frozen process or a network that stopped delivering: nothing is lost,
//! nothing arrives); [`Proxy::resume`] lets the held bytes through in order, then everything else. It runs on its own
//! thread, so it keeps its behaviour whatever the test's runtime is doing; dropping it closes every connection.
//! [`Proxy::hold_replies`] holds only what the server sends (requests arrive, answers do not: a client that sent a
//! transaction's statements and can no longer hear them answered).

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};

pub struct Proxy {
    addr: SocketAddr,
    paused: watch::Sender<Held>,
    _stop: oneshot::Sender<()>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards each connection to `target`.
    pub fn start(target: SocketAddr) -> Proxy {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let (paused, paused_rx) = watch::channel(Held::Nothing);
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("test-proxy".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                rt.block_on(async move {
                    let listener = TcpListener::from_std(std_listener).unwrap();
                    let accept = async {
                        loop {
                            let Ok((client, _)) = listener.accept().await else { continue };
                            let paused = paused_rx.clone();
                            tokio::spawn(async move {
                                let Ok(server) = TcpStream::connect(target).await else { return };
                                // As the clients and servers themselves do: with Nagle's algorithm on, a small write
                                // behind an unacknowledged one waits for the peer's delayed ACK (40 ms on Linux), which
                                // stalled every PostgreSQL transaction and NATS request through the proxy.
                                let _ = client.set_nodelay(true);
                                let _ = server.set_nodelay(true);
                                let (cr, cw) = client.into_split();
                                let (sr, sw) = server.into_split();
                                tokio::join!(pump(cr, sw, paused.clone(), false), pump(sr, cw, paused, true));
                            });
                        }
                    };
                    tokio::select! {
                        _ = stopped => {}
                        _ = accept => {}
                    }
                });
            })
            .unwrap();
        Proxy { addr, paused, _stop: stop }
    }

    /// Where clients connect instead of the target.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn pause(&self) {
        self.paused.send_replace(Held::Both);
    }

    pub fn hold_replies(&self) {
        self.paused.send_replace(Held::Replies);
    }

    pub fn resume(&self) {
        self.paused.send_replace(Held::Nothing);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Held {
    Nothing,
    Both,
    Replies,
}

/// Copies one direction, holding each chunk while paused; an end of stream is passed on (after the held bytes).
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut paused: watch::Receiver<Held>,
    replies: bool,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = from.read(&mut buf).await.unwrap_or(0);
        let passes = |h: &Held| *h == Held::Nothing || (*h == Held::Replies && !replies);
        if paused.wait_for(passes).await.is_err() {
            return;
        }
        if n == 0 {
            let _ = to.shutdown().await;
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
