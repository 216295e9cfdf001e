//! A TCP proxy the test can cut: the service reaches PostgreSQL through it, so a test can take the database away
//! (every open connection is closed, new ones are closed on accept) and give it back.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct Proxy {
    pub addr: SocketAddr,
    down: Arc<AtomicBool>,
    cut: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on an ephemeral loopback port and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let down = Arc::new(AtomicBool::new(false));
        let (cut, cuts) = watch::channel(0u64);
        let d = Arc::clone(&down);
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                if d.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let mut cuts = cuts.clone();
                cuts.mark_unchanged();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let mut client = client;
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cuts.changed() => {}
                    }
                });
            }
        });
        Proxy {
            addr,
            down,
            cut,
            task,
        }
    }

    /// Closes every connection and refuses new ones until [`Proxy::up`].
    pub fn down(&self) {
        self.down.store(true, Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
    }

    /// Accepts connections again.
    pub fn up(&self) {
        self.down.store(false, Ordering::SeqCst);
    }

    /// `url` (a `postgres://` URL) with its host and port replaced by this proxy's.
    pub fn database_url(&self, url: &str) -> String {
        let (scheme, rest) = url.split_once("://").expect("postgres:// URL");
        let (userinfo, after) = match rest.split_once('@') {
            Some((u, a)) => (Some(u), a),
            None => (None, rest),
        };
        let path = after.find('/').map_or("", |i| &after[i..]);
        match userinfo {
            Some(u) => format!("{scheme}://{u}@{}{path}", self.addr),
            None => format!("{scheme}://{}{path}", self.addr),
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cut.send_modify(|n| *n += 1);
    }
}

/// The host and port of a `postgres://` URL, resolved.
pub fn upstream_of(url: &str) -> SocketAddr {
    let rest = url.split_once("://").expect("postgres:// URL").1;
    let after = rest.rsplit_once('@').map_or(rest, |(_, a)| a);
    let hostport = after.split(['/', '?']).next().expect("host");
    let hostport = if hostport.contains(':') {
        hostport.to_owned()
    } else {
        format!("{hostport}:5432")
    };
    std::net::ToSocketAddrs::to_socket_addrs(&hostport)
        .expect("resolve database host")
        .next()
        .expect("an address")
}
