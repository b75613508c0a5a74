//! A minimal HTTP/1.1 endpoint for Prometheus scrapes: `GET /metrics`, one response per
//! connection, then close.
//!
//! Reachable by anyone who can reach the address, so it is kept cheap: at most
//! [`MAX_CONNECTIONS`] at once (others are closed at accept), [`MAX_REQUEST`] bytes of
//! request read within [`REQUEST_TIMEOUT`], nothing logged per request. Bind it to a
//! loopback or management address.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::CONTENT_TYPE;

/// Scrapes served at once.
pub(crate) const MAX_CONNECTIONS: usize = 8;
/// The most request bytes read (request line and headers).
pub(crate) const MAX_REQUEST: usize = 4096;
/// How long a client has to send its request.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A bound metrics listener.
#[derive(Debug)]
pub struct MetricsServer {
    listener: TcpListener,
}

impl MetricsServer {
    /// Binds `address`.
    pub async fn bind(address: SocketAddr) -> std::io::Result<Self> {
        Ok(Self {
            listener: TcpListener::bind(address).await?,
        })
    }

    /// The bound address (to find an OS-chosen port).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// Serves `render()` on `GET /metrics` until dropped.
pub async fn serve(server: MetricsServer, render: Arc<dyn Fn() -> String + Send + Sync>) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok((stream, _)) = server.listener.accept().await else {
            // Out of descriptors and the like: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let render = Arc::clone(&render);
        tokio::spawn(async move {
            let _ = tokio::time::timeout(REQUEST_TIMEOUT, answer(stream, &*render)).await;
            drop(permit);
        });
    }
}

async fn answer(mut stream: TcpStream, render: &(dyn Fn() -> String + Send + Sync)) {
    let mut request = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        if request.len() >= MAX_REQUEST {
            let _ = respond(
                &mut stream,
                "431 Request Header Fields Too Large",
                "text/plain",
                "",
            )
            .await;
            return;
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n.min(MAX_REQUEST)]),
        }
    }
    let line = request.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let (method, target) = (parts.next(), parts.next());
    let path = target.map(|t| t.split(|&b| b == b'?').next().unwrap_or_default());
    match (method, path) {
        (Some(b"GET"), Some(b"/metrics")) => {
            let body = render();
            let _ = respond(&mut stream, "200 OK", CONTENT_TYPE, &body).await;
        }
        (Some(b"GET"), _) => {
            let _ = respond(&mut stream, "404 Not Found", "text/plain", "try /metrics\n").await;
        }
        _ => {
            let _ = respond(&mut stream, "405 Method Not Allowed", "text/plain", "").await;
        }
    }
}

async fn respond(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &str,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(address: SocketAddr, request: &str) -> String {
        let mut stream = TcpStream::connect(address).await.expect("connect");
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut response = String::new();
        stream.read_to_string(&mut response).await.expect("read");
        response
    }

    async fn server() -> SocketAddr {
        let server = MetricsServer::bind("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind");
        let address = server.local_addr().expect("addr");
        tokio::spawn(serve(server, Arc::new(|| "wice_up 1\n".to_owned())));
        address
    }

    #[tokio::test]
    async fn metrics_are_served_on_get_metrics_only() {
        let address = server().await;
        let ok = get(address, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains(CONTENT_TYPE), "{ok}");
        assert!(ok.ends_with("\r\n\r\nwice_up 1\n"), "{ok}");
        let other = get(address, "GET / HTTP/1.1\r\n\r\n").await;
        assert!(other.starts_with("HTTP/1.1 404"), "{other}");
        let post = get(address, "POST /metrics HTTP/1.1\r\n\r\n").await;
        assert!(post.starts_with("HTTP/1.1 405"), "{post}");
    }

    #[tokio::test]
    async fn an_endless_request_is_cut_off() {
        let address = server().await;
        let huge = format!(
            "GET /metrics HTTP/1.1\r\nX: {}",
            "a".repeat(10 * MAX_REQUEST)
        );
        let mut stream = TcpStream::connect(address).await.expect("connect");
        let _ = stream.write_all(huge.as_bytes()).await;
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response).await;
        assert!(response.starts_with("HTTP/1.1 431"), "{response}");
    }
}
