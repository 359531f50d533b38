//! HTTP/1.1 connections that can be trusted to tell a server's failure from the client's.
//!
//! Real servers close kept-alive connections whenever they like: llama.cpp's `llama-server`
//! closes after every streamed response while its headers still say `keep-alive`. A client
//! that writes its next request into such a connection sees a failure the server never
//! caused. So each [`Connection`] keeps a handle on its socket (a duplicate of the descriptor
//! hyper reads through) to check, right before reuse, that the peer has not closed it
//! ([`Connection::peer_closed`]), and counts the response
//! bytes hyper read ([`Connection::received_bytes`]) so a failed attempt can be classified as
//! "nothing came back" (safe to retry once on a fresh connection) or a real mid-response
//! failure.
//!
//! Connecting is done here rather than by a pooled connector so that each phase (TCP
//! connect, TLS handshake) is timed separately by the caller ([`Connector::tcp`],
//! [`Connector::tls`]).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// How to reach the endpoint: its host and port, and TLS when the URL is https.
pub struct Connector {
    host: String,
    port: u16,
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

/// An open TCP connection, before any TLS: the stream hyper will own, and a duplicate of its
/// descriptor to peek on ([`Connection::peer_closed`]).
pub struct Tcp {
    stream: TcpStream,
    peek: socket2::Socket,
}

/// A connection ready for requests.
pub struct Connection {
    /// Run-wide connection number (`requests.connection_id`).
    pub id: u32,
    /// hyper's handle to send requests on it.
    pub sender: SendRequest<Full<Bytes>>,
    /// Requests answered on it so far (0: fresh).
    pub served: u32,
    /// The socket's duplicate descriptor: peeking on it leaves the stream's readiness, which
    /// tokio tracks for hyper's reads, untouched.
    peek: socket2::Socket,
    received: Arc<AtomicU64>,
    /// hyper's connection future (it does the connection's reads and writes), polled by the
    /// worker's own task whenever it waits on this connection ([`driven`]); `None` once it
    /// ended.
    pub driver: Option<Driver>,
}

/// hyper's connection future for one connection, plain or TLS.
pub type Driver = Pin<Box<dyn Future<Output = ()> + Send>>;

/// `fut`, a wait on a connection (ready for a request, its response, a body frame), with the
/// connection's `driver` polled in the same task first each time: a spawned connection task
/// took two task wake-ups per body frame (the connection's on the socket, the worker's on the
/// body channel) where this takes one.
pub async fn driven<F: Future>(driver: &mut Option<Driver>, fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(|cx| {
        if let Some(d) = driver.as_mut() {
            if d.as_mut().poll(cx).is_ready() {
                *driver = None;
            }
        }
        fut.as_mut().poll(cx)
    })
    .await
}

impl Connector {
    /// `tls`: the client configuration to use for https (`None` for http).
    pub fn new(host: &str, port: u16, tls: Option<Arc<rustls::ClientConfig>>) -> Result<Self, String> {
        let tls = match tls {
            None => None,
            Some(cfg) => {
                let name = ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']').to_string())
                    .map_err(|e| format!("{host:?} is not a valid TLS server name: {e}"))?;
                Some((TlsConnector::from(cfg), name))
            }
        };
        Ok(Connector {
            host: host.to_string(),
            port,
            tls,
        })
    }

    /// Whether connections need a TLS handshake after TCP connect.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Resolves the host (every time: a DNS change between connections is followed).
    pub async fn resolve(&self) -> io::Result<Vec<SocketAddr>> {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, self.port)).await?.collect();
        if addrs.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{host} resolved to no address"),
            ));
        }
        Ok(addrs)
    }

    /// TCP connect to the first address that accepts, with `TCP_NODELAY` (small SSE requests
    /// must not wait for Nagle).
    pub async fn tcp(&self, addrs: &[SocketAddr]) -> io::Result<Tcp> {
        let mut last = None;
        for a in addrs {
            match TcpStream::connect(a).await {
                Ok(stream) => {
                    stream.set_nodelay(true)?;
                    let peek = socket2::SockRef::from(&stream).try_clone()?;
                    return Ok(Tcp { stream, peek });
                }
                Err(e) => last = Some(io::Error::new(e.kind(), format!("{a}: {e}"))),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address to connect to")))
    }

    /// The TLS handshake on `tcp` (https), or nothing (http); then the HTTP/1.1 handshake.
    pub async fn finish(&self, tcp: Tcp, id: u32) -> Result<Connection, FinishError> {
        let Tcp { stream: plain, peek } = tcp;
        let received = Arc::new(AtomicU64::new(0));
        let (sender, driver) = match &self.tls {
            None => handshake(plain, &received).await?,
            Some((connector, name)) => {
                let tls = connector.connect(name.clone(), plain).await.map_err(FinishError::Tls)?;
                handshake(tls, &received).await?
            }
        };
        Ok(Connection {
            id,
            sender,
            served: 0,
            peek,
            received,
            driver: Some(driver),
        })
    }
}

/// hyper's HTTP/1.1 handshake over `io`, counting the bytes it reads into `received`: the
/// sender, and the connection's future for the worker to poll ([`driven`]). It ends when the
/// server closes the connection or the worker drops it (either way the worker notices before
/// its next request).
async fn handshake<T>(io: T, received: &Arc<AtomicU64>) -> Result<(SendRequest<Full<Bytes>>, Driver), FinishError>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let counted = Counted {
        io,
        received: received.clone(),
    };
    let (sender, conn) = hyper::client::conn::http1::Builder::new()
        .handshake(TokioIo::new(counted))
        .await
        .map_err(FinishError::Http)?;
    Ok((
        sender,
        Box::pin(async move {
            let _ = conn.await;
        }),
    ))
}

/// Why [`Connector::finish`] failed.
#[derive(Debug)]
pub enum FinishError {
    /// The TLS handshake.
    Tls(io::Error),
    /// hyper's HTTP/1 handshake (no I/O happens there; kept for completeness).
    Http(hyper::Error),
}

impl Connection {
    /// Response bytes hyper has read on this connection so far (after TLS decryption).
    pub fn received_bytes(&self) -> u64 {
        self.received.load(Relaxed)
    }

    /// Whether an idle connection must not be reused: the peer closed it (EOF is readable)
    /// or sent bytes nobody asked for. A non-blocking `MSG_PEEK` on the socket itself, so it
    /// does not depend on hyper's connection future having been polled since the bytes arrived.
    pub fn peer_closed(&self) -> Option<&'static str> {
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 1];
        match self.peek.peek(&mut buf) {
            Ok(0) => Some("the server closed it"),
            Ok(_) => Some("unexpected bytes were waiting on it"),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => None,
            Err(_) => Some("the socket reports an error"),
        }
    }
}

/// The connection's I/O as hyper sees it (plain TCP or TLS over it), counting the
/// (decrypted) bytes read.
struct Counted<T> {
    io: T,
    received: Arc<AtomicU64>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.io).poll_read(cx, buf);
        this.received.fetch_add((buf.filled().len() - before) as u64, Relaxed);
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// The check that fixes the llama.cpp bug: after the server closed an idle connection,
    /// `peer_closed` says so without any read by hyper in between.
    #[tokio::test]
    async fn a_closed_idle_connection_is_detected_before_reuse() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut buf = [0u8; 1024];
            let mut seen = Vec::new();
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).await.expect("read");
                seen.extend_from_slice(&buf[..n]);
            }
            // Advertise keep-alive, then close anyway (what llama-server does).
            s.write_all(b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok")
                .await
                .expect("write");
            drop(s);
        });
        let c = Connector::new("127.0.0.1", addr.port(), None).expect("connector");
        let tcp = c.tcp(&[addr]).await.expect("connect");
        let mut conn = c.finish(tcp, 0).await.expect("handshake");
        assert_eq!(conn.peer_closed(), None, "fresh connection looks closed");
        let req = http::Request::builder()
            .uri("/")
            .header("host", "x")
            .body(Full::new(Bytes::new()))
            .expect("request");
        // The connection only moves while `driven` polls it: bounded, so that a broken
        // `driven` fails here instead of hanging.
        let exchange = async {
            let resp = driven(&mut conn.driver, conn.sender.send_request(req))
                .await
                .expect("response");
            driven(&mut conn.driver, http_body_util::BodyExt::collect(resp.into_body()))
                .await
                .expect("body")
        };
        let body = tokio::time::timeout(std::time::Duration::from_secs(30), exchange)
            .await
            .expect("the exchange finished: `driven` polls hyper's connection");
        assert_eq!(body.to_bytes(), Bytes::from_static(b"ok"));
        assert!(conn.received_bytes() > 0);
        server.await.expect("server");
        // Wait until the FIN has reached our socket (readiness, not a sleep), on a descriptor
        // of its own so that the connection's stays unregistered.
        let probe = std::net::TcpStream::from(conn.peek.try_clone().expect("dup"));
        let probe = TcpStream::from_std(probe).expect("register");
        probe.readable().await.expect("readable");
        assert_eq!(conn.peer_closed(), Some("the server closed it"));
    }
}
