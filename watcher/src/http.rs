//! The watcher's HTTP listener (`watcher.metrics_listen`, loopback addresses only), served by
//! hyper on the daemon's I/O runtime.
//!
//! [`ROUTES`] is the one place that says what is served: today `GET /metrics` (and `/`, as
//! before); the health endpoints that load balancers poll (`/health` as JSON, `/primary` and
//! `/replica` answering 200 or 503) are each one more entry there, rendered from the
//! [`Status`]. Requests hyper cannot parse get its 400 (or 431 for oversized headers), unknown
//! paths 404, other methods than GET and HEAD 405. Every response closes its connection, and a
//! client gets 5 s to send its request.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::status::{Board, Status};
use crate::WatcherError;

/// How long a client may take to send its request headers, and to be answered in all.
const CLIENT_TIME: Duration = Duration::from_secs(5);

/// What one route answers.
pub(crate) struct Page {
    /// The HTTP status.
    pub code: StatusCode,
    /// The `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: String,
}

/// One path the listener serves, and how its page is made from the status.
pub(crate) struct Route {
    /// The path, exactly.
    pub path: &'static str,
    /// The page.
    pub page: fn(&Status) -> Page,
}

/// Every path served. Add `/health`, `/primary` and `/replica` here.
pub(crate) const ROUTES: &[Route] = &[
    Route {
        path: "/metrics",
        page: metrics_page,
    },
    Route {
        path: "/",
        page: metrics_page,
    },
];

fn metrics_page(s: &Status) -> Page {
    Page {
        code: StatusCode::OK,
        content_type: "text/plain; version=0.0.4",
        body: crate::metrics::render(s),
    }
}

/// Binds `addr`, which must be a loopback address. Must run inside the I/O runtime.
pub(crate) fn bind(addr: SocketAddr) -> Result<TcpListener, WatcherError> {
    let io = |context: &str, cause| WatcherError::Socket {
        socket: addr.to_string().into(),
        context: context.into(),
        cause,
    };
    if !addr.ip().is_loopback() {
        return Err(io(
            "metrics are served on loopback addresses only",
            std::io::Error::from(std::io::ErrorKind::InvalidInput),
        ));
    }
    let listener = std::net::TcpListener::bind(addr)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|e| io("cannot listen for metrics", e))?;
    TcpListener::from_std(listener).map_err(|e| io("cannot listen for metrics", e))
}

/// Serves `listener` until the runtime stops.
pub(crate) async fn serve(listener: TcpListener, board: Board) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "an HTTP client failed to connect");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let board = board.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let page = answer(req.method(), req.uri().path(), &board);
                async move { Ok::<_, Infallible>(page) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(CLIENT_TIME)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            // A client that will not finish is dropped.
            let _ = tokio::time::timeout(CLIENT_TIME * 2, conn).await;
        });
    }
}

/// The response to `method path`.
fn answer(method: &Method, path: &str, board: &Board) -> Response<Full<Bytes>> {
    let Some(route) = ROUTES.iter().find(|r| r.path == path) else {
        let served: Vec<&str> = ROUTES.iter().map(|r| r.path).collect();
        return plain(
            StatusCode::NOT_FOUND,
            format!("not found: this listener serves {}\n", served.join(", ")),
        );
    };
    if method != Method::GET && method != Method::HEAD {
        let mut r = plain(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{path} answers GET and HEAD only\n"),
        );
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let page = (route.page)(&board.snapshot());
    let mut r = Response::new(Full::new(Bytes::from(page.body)));
    *r.status_mut() = page.code;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(page.content_type));
    r
}

fn plain(code: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = code;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn body(r: Response<Full<Bytes>>) -> String {
        let bytes = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(r.into_body().collect())
            .unwrap()
            .to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn metrics_are_the_rendered_status_byte_for_byte() {
        let status = Status {
            archived: 7,
            passes: 2,
            source_up: true,
            ..Status::default()
        };
        let board = Board::new(status.clone());
        for path in ["/metrics", "/"] {
            let r = answer(&Method::GET, path, &board);
            assert_eq!(r.status(), StatusCode::OK);
            assert_eq!(r.headers()[CONTENT_TYPE], "text/plain; version=0.0.4");
            assert_eq!(body(r), crate::metrics::render(&status));
        }
    }

    #[test]
    fn unknown_paths_and_other_methods_get_http_errors() {
        let board = Board::new(Status::default());
        let r = answer(&Method::GET, "/nope", &board);
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert!(body(r).contains("/metrics"));
        let r = answer(&Method::POST, "/metrics", &board);
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers()[ALLOW], "GET, HEAD");
    }
}
