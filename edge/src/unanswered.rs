//! A TCP connection that the server never answered is reset when it is
//! dropped, not closed.
//!
//! Why: the connections the edge drops without having written a byte are
//! those that never finished a request or a TLS handshake within the
//! header deadline (half-open upgrades, scanners, clients gone quiet).
//! Closing one the orderly way costs a FIN, the peer's FIN and ACK, and a
//! socket left in TIME_WAIT for a minute; thousands of them expiring
//! together cost the kernel that much work on the server's threads, beside
//! the sessions. A reset (`SO_LINGER` 0, as nginx's
//! `reset_timedout_connection`) is one segment and frees the socket at
//! once. Nothing is lost by it: the server had nothing to send, and a
//! connection that was answered (a response, a TLS ServerHello, a
//! WebSocket's 101) closes as before, its last bytes delivered.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A TCP stream that remembers whether the server wrote to it.
#[derive(Debug)]
pub struct ResetIfUnanswered {
    tcp: TcpStream,
    answered: bool,
}

impl ResetIfUnanswered {
    pub fn new(tcp: TcpStream) -> Self {
        Self {
            tcp,
            answered: false,
        }
    }

    /// Passes a write's outcome on, noting whether a byte went out.
    fn noted(&mut self, written: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            self.answered = true;
        }
        written
    }
}

impl Drop for ResetIfUnanswered {
    fn drop(&mut self) {
        if !self.answered {
            // A zero linger makes close(2) send a RST and free the socket.
            let _ = socket2::SockRef::from(&self.tcp).set_linger(Some(Duration::ZERO));
        }
    }
}

impl AsyncRead for ResetIfUnanswered {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for ResetIfUnanswered {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.tcp).poll_write(cx, buf);
        self.noted(written)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs);
        self.noted(written)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// What the peer reads once the server side is dropped.
    async fn peer_sees(server_writes: &[u8]) -> io::Result<Vec<u8>> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut peer = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (tcp, _) = listener.accept().await.unwrap();
        let mut server = ResetIfUnanswered::new(tcp);
        peer.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let mut request = [0u8; 16];
        server.read_exact(&mut request).await.unwrap();
        server.write_all(server_writes).await.unwrap();
        drop(server);
        let mut seen = Vec::new();
        peer.read_to_end(&mut seen).await.map(|_| seen)
    }

    #[tokio::test]
    async fn an_unanswered_connection_is_reset() {
        let seen = peer_sees(b"").await;
        assert_eq!(
            seen.map_err(|e| e.kind()),
            Err(io::ErrorKind::ConnectionReset)
        );
    }

    #[tokio::test]
    async fn an_answered_connection_closes_with_its_answer_delivered() {
        let answer = b"HTTP/1.1 408 Request Timeout\r\n\r\n";
        assert_eq!(peer_sees(answer).await.unwrap(), answer);
    }
}
