//! A raw HTTP/1.1 client, as the simplest partner systems are written: it writes the whole
//! request (head and body) before it reads anything, then reads one answer delimited by its
//! `Content-Length`. Nothing of hyper's client is involved, so what the gateway does to the
//! connection (a reset, a close without `Connection: close`) shows up as it would for them.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// One answer read off a raw connection.
#[derive(Debug)]
pub struct RawAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawAnswer {
    /// The first header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Whether the server said it closes the connection after this answer.
    pub fn closes(&self) -> bool {
        self.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

/// A connection to the gateway.
pub struct RawConnection {
    stream: Box<dyn Stream>,
    buffer: Vec<u8>,
}

impl RawConnection {
    /// A TLS connection to `localhost` at `addr` (HTTP/1.1: the client offers no ALPN).
    pub async fn tls(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> std::io::Result<RawConnection> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let stream = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await?;
        Ok(RawConnection { stream: Box::new(stream), buffer: Vec::new() })
    }

    /// Writes `request` whole, then reads one answer. An error says what went wrong: the
    /// request could not be written, or the connection ended before a complete answer.
    pub async fn exchange(&mut self, request: &[u8]) -> Result<RawAnswer, String> {
        self.stream.write_all(request).await.map_err(|e| format!("writing the request: {e}"))?;
        self.stream.flush().await.map_err(|e| format!("flushing the request: {e}"))?;
        self.read_answer().await
    }

    /// Writes `bytes` without reading anything.
    pub async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }

    /// Reads one answer delimited by its `Content-Length`.
    pub async fn read_answer(&mut self) -> Result<RawAnswer, String> {
        let head_end = loop {
            if let Some(i) = self.buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            self.fill().await?;
        };
        let head = String::from_utf8_lossy(&self.buffer[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("not a status line: {status_line:?}"))?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let length: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .ok_or_else(|| format!("no content-length in {head:?}"))?;
        while self.buffer.len() < head_end + length {
            self.fill().await?;
        }
        let body = self.buffer[head_end..head_end + length].to_vec();
        self.buffer.drain(..head_end + length);
        Ok(RawAnswer { status, headers, body })
    }

    /// Whether the server has closed the connection (reads end of stream).
    pub async fn is_closed_by_server(&mut self) -> bool {
        self.fill().await.is_err()
    }

    async fn fill(&mut self) -> Result<(), String> {
        let mut chunk = [0u8; 16384];
        match self.stream.read(&mut chunk).await {
            Ok(0) => Err(format!("the connection ended before a complete answer ({} bytes read)", self.buffer.len())),
            Ok(n) => {
                self.buffer.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Err(e) => Err(format!("reading the answer: {e} ({} bytes read)", self.buffer.len())),
        }
    }
}

/// An HTTP/1.1 request with `Host: localhost`, a `Content-Length` for `body`, and `headers`.
pub fn request(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nhost: localhost\r\ncontent-length: {}\r\n", body.len());
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}
