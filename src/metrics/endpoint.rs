//! An HTTP endpoint that serves the Prometheus exposition, for a Prometheus server to scrape:
//! `GET /metrics` (or `HEAD`) answers 200 with the text of the exposition function it was given,
//! any other path 404, any other method 405, a request that is not HTTP 400, one whose head is
//! larger than [`REQUEST_HEAD_BYTES_MAX`] 431; a client that sends nothing within
//! [`REQUEST_TIMEOUT`] is dropped. One response per connection (`Connection: close`). No HTTP
//! framework: one path and two verbs do not need one, and the library stays small.
//!
//! ```no_run
//! # async fn run(metrics: std::sync::Arc<aside::metrics::Metrics>) -> std::io::Result<()> {
//! // `metrics` is `cache.metrics().clone()`.
//! let endpoint = aside::metrics::endpoint::Endpoint::bind("127.0.0.1:9464").await?;
//! tokio::spawn(endpoint.serve(move || metrics.snapshot().prometheus()));
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tracing::{debug, warn};

/// The largest request head read; a larger one is answered 431.
pub const REQUEST_HEAD_BYTES_MAX: usize = 8 * 1024;
/// How long a client may take to send its request head.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The exposition's content type (OpenMetrics text, which Prometheus parses).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A bound metrics endpoint, not yet serving.
pub struct Endpoint {
    listener: TcpListener,
}

impl Endpoint {
    /// Binds `addr` (port 0: any free port; [`Endpoint::local_addr`] says which).
    pub async fn bind(addr: impl ToSocketAddrs) -> std::io::Result<Endpoint> {
        Ok(Endpoint {
            listener: TcpListener::bind(addr).await?,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until the future is dropped: each connection on a task of its own, answered with
    /// `exposition()` taken when its request arrives.
    pub async fn serve<F>(self, exposition: F)
    where
        F: Fn() -> String + Send + Sync + 'static,
    {
        let exposition = Arc::new(exposition);
        loop {
            match self.listener.accept().await {
                Ok((stream, peer)) => {
                    let exposition = exposition.clone();
                    tokio::spawn(async move {
                        if let Err(e) = answer(stream, &*exposition).await {
                            debug!(%peer, error = %e, "metrics request dropped");
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors, say: wait a little rather than spin.
                    warn!(error = %e, "metrics endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

/// Reads one request head and writes its response.
async fn answer(
    mut stream: TcpStream,
    exposition: &(dyn Fn() -> String + Sync),
) -> std::io::Result<()> {
    let head = match tokio::time::timeout(REQUEST_TIMEOUT, read_head(&mut stream)).await {
        Ok(head) => head?,
        Err(_) => return Ok(()),
    };
    let r = match head {
        Head::TooLarge => Response::error(431, "request head too large"),
        Head::Closed => return Ok(()),
        Head::Complete(h) => route(&h, exposition),
    };
    let reason = match r.status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Request Header Fields Too Large",
    };
    let content_type = if r.status == 200 {
        CONTENT_TYPE
    } else {
        "text/plain; charset=utf-8"
    };
    let allow = if r.status == 405 {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    let mut out = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n",
        r.status,
        r.body.len()
    );
    if !r.head_only {
        out.push_str(&r.body);
    }
    stream.write_all(out.as_bytes()).await?;
    stream.shutdown().await
}

/// What a request is answered.
struct Response {
    status: u16,
    body: String,
    /// A HEAD request: the headers of the GET, with no body.
    head_only: bool,
}

impl Response {
    fn error(status: u16, why: &str) -> Response {
        Response {
            status,
            body: format!("{why}\n"),
            head_only: false,
        }
    }
}

enum Head {
    Complete(String),
    TooLarge,
    Closed,
}

async fn read_head(stream: &mut TcpStream) -> std::io::Result<Head> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(Head::Closed);
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.truncate(end);
            return Ok(Head::Complete(String::from_utf8_lossy(&buf).into_owned()));
        }
        if buf.len() > REQUEST_HEAD_BYTES_MAX {
            return Ok(Head::TooLarge);
        }
    }
}

/// The response to a request head.
fn route(head: &str, exposition: &(dyn Fn() -> String + Sync)) -> Response {
    let line = head.lines().next().unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Response::error(400, "not an HTTP request");
    };
    if !version.starts_with("HTTP/1.") {
        return Response::error(400, "not an HTTP/1 request");
    }
    if target.split('?').next() != Some("/metrics") {
        return Response::error(404, "not found: the metrics are at /metrics");
    }
    match method {
        "GET" | "HEAD" => Response {
            status: 200,
            body: exposition(),
            head_only: method == "HEAD",
        },
        _ => Response::error(405, "only GET and HEAD are served here"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn ask(addr: SocketAddr, request: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn serves_the_exposition_at_metrics_and_refuses_the_rest_in_one_line() {
        let endpoint = Endpoint::bind("127.0.0.1:0").await.unwrap();
        let addr = endpoint.local_addr().unwrap();
        let metrics = Arc::new(crate::metrics::Metrics::default());
        let m = metrics.clone();
        let server = tokio::spawn(endpoint.serve(move || m.snapshot().prometheus()));
        metrics
            .l1
            .hits
            .fetch_add(3, std::sync::atomic::Ordering::Relaxed);

        let ok = ask(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains(CONTENT_TYPE), "{ok}");
        let (head, body) = ok.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        assert!(body.contains("aside_hits_total{tier=\"l1\"} 3"), "{body}");
        assert!(body.contains("aside_read_latency_seconds_bucket{le=\"+Inf\"} 0"));
        assert!(body.ends_with("# EOF\n"));

        let head_only = ask(addr, b"HEAD /metrics?x=1 HTTP/1.0\r\n\r\n").await;
        assert!(head_only.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(head_only.ends_with("\r\n\r\n"), "{head_only}");

        for (request, status) in [
            (&b"GET / HTTP/1.1\r\n\r\n"[..], "404 Not Found"),
            (b"POST /metrics HTTP/1.1\r\n\r\n", "405 Method Not Allowed"),
            (b"hello\r\n\r\n", "400 Bad Request"),
            (b"GET /metrics SMTP/1.0\r\n\r\n", "400 Bad Request"),
        ] {
            let got = ask(addr, request).await;
            assert!(got.starts_with(&format!("HTTP/1.1 {status}\r\n")), "{got}");
            let body = got.split_once("\r\n\r\n").unwrap().1;
            assert_eq!(body.lines().count(), 1, "{body}");
        }
        let huge = format!(
            "GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n",
            "a".repeat(REQUEST_HEAD_BYTES_MAX * 2)
        );
        let got = ask(addr, huge.as_bytes()).await;
        assert!(got.starts_with("HTTP/1.1 431 "), "{got}");
        // A client that connects and says nothing does not stop the others.
        let _silent = TcpStream::connect(addr).await.unwrap();
        let again = ask(addr, b"GET /metrics HTTP/1.1\r\n\r\n").await;
        assert!(again.starts_with("HTTP/1.1 200 OK\r\n"));
        server.abort();
    }
}
