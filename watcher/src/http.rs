//! The watcher's HTTP listener (`watcher.metrics_listen`, loopback addresses only), served by
//! hyper on the daemon's I/O runtime.
//!
//! [`ROUTES`] is the one place that says what is served: `GET /metrics` (and `/`), and the
//! health endpoints load balancers poll, in the style they already know: `/primary` answers
//! 200 on the node that is the primary and 503 elsewhere, `/replica` 200 on a healthy replica
//! and 503 elsewhere, `/health` a JSON document (role, lag, cut, last heartbeat). Each is
//! rendered from the [`Status`].
//!
//! Which node a listener speaks for: a node's own listener (`health_listen` of the source or
//! of a replica) speaks for that node, so a load balancer checks each backend at its own
//! address; the main listener speaks for the backup host's own copy, the first configured
//! replica (and its `/health` lists every node). Requests hyper cannot parse get its 400 (or
//! 431 for oversized headers), unknown paths 404, other methods than GET and HEAD 405. Every
//! response closes its connection, and a client gets 5 s to send its request.

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

/// One path the listener serves, and how its page is made from the status and the node the
/// listener speaks for (an index into [`Status::nodes`]).
pub(crate) struct Route {
    /// The path, exactly.
    pub path: &'static str,
    /// The page.
    pub page: fn(&Status, Option<usize>) -> Page,
}

/// Every path served.
pub(crate) const ROUTES: &[Route] = &[
    Route {
        path: "/metrics",
        page: metrics_page,
    },
    Route {
        path: "/",
        page: metrics_page,
    },
    Route {
        path: "/primary",
        page: primary_page,
    },
    Route {
        path: "/replica",
        page: replica_page,
    },
    Route {
        path: "/health",
        page: health_page,
    },
];

/// The node a listener speaks for: its own, or (the main listener) the first replica's.
fn node_of(s: &Status, node: Option<usize>) -> Option<&crate::status::NodeState> {
    match node {
        Some(i) => s.nodes.get(i),
        None => s.nodes.iter().find(|n| n.kind == "replica"),
    }
}

fn role_page(s: &Status, node: Option<usize>, wanted: &str) -> Page {
    let (code, body) = match node_of(s, node) {
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "no node: this listener speaks for the first configured replica, and none is configured\n"
                .to_string(),
        ),
        Some(n) if n.role == wanted => (StatusCode::OK, format!("{} {}\n", n.role, n.target)),
        Some(n) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{} {}\n", n.role, n.target),
        ),
    };
    Page {
        code,
        content_type: "text/plain; charset=utf-8",
        body,
    }
}

fn primary_page(s: &Status, node: Option<usize>) -> Page {
    role_page(s, node, "primary")
}

fn replica_page(s: &Status, node: Option<usize>) -> Page {
    role_page(s, node, "replica")
}

fn health_page(s: &Status, node: Option<usize>) -> Page {
    let this = node_of(s, node);
    let replica = this.and_then(|n| s.replicas.iter().find(|r| r.path == n.target));
    let doc = serde_json::json!({
        "node": this.map(|n| &n.target),
        "role": this.map(|n| &n.role),
        "primary": s.source,
        "primary_state": s.primary_state,
        "primary_last_seen_us": s.primary_last_seen_us,
        "heartbeat_interval_ms": s.heartbeat_interval_ms,
        "lag_secs": replica.map(|r| r.lag_secs),
        "behind": replica.map(|r| r.behind),
        "position": replica.map(|r| r.position),
        "consistent": replica.map(|r| r.consistent),
        "takeover": s.takeover,
        "nodes": s.nodes,
        "health": s.health,
    });
    Page {
        code: StatusCode::OK,
        content_type: "application/json",
        body: format!("{doc:#}\n"),
    }
}

fn metrics_page(s: &Status, _node: Option<usize>) -> Page {
    Page {
        code: StatusCode::OK,
        content_type: "text/plain; version=0.0.4",
        body: crate::metrics::render(s),
    }
}

/// Binds `addr`, which must be a loopback address unless `any_address` (a node's health
/// listener, which a load balancer on another host polls: it serves the health pages only).
/// Must run inside the I/O runtime.
pub(crate) fn bind(addr: SocketAddr, any_address: bool) -> Result<TcpListener, WatcherError> {
    let io = |context: &str, cause| WatcherError::Socket {
        socket: addr.to_string().into(),
        context: context.into(),
        cause,
    };
    if !addr.ip().is_loopback() && !any_address {
        return Err(io(
            "metrics are served on loopback addresses only (a node's health_listen may be any address)",
            std::io::Error::from(std::io::ErrorKind::InvalidInput),
        ));
    }
    let listener = std::net::TcpListener::bind(addr)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|e| io("cannot listen for metrics", e))?;
    TcpListener::from_std(listener).map_err(|e| io("cannot listen for metrics", e))
}

/// Serves `listener` until the runtime stops.
pub(crate) async fn serve(listener: TcpListener, board: Board, node: Option<usize>) {
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
                let page = answer(req.method(), req.uri().path(), &board, node);
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
fn answer(
    method: &Method,
    path: &str,
    board: &Board,
    node: Option<usize>,
) -> Response<Full<Bytes>> {
    // A node's own listener may face the network: it serves the health pages, not the metrics.
    let served_here =
        |r: &&Route| node.is_none() || matches!(r.path, "/primary" | "/replica" | "/health");
    let Some(route) = ROUTES.iter().filter(served_here).find(|r| r.path == path) else {
        let served: Vec<&str> = ROUTES.iter().filter(served_here).map(|r| r.path).collect();
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
    let page = (route.page)(&board.snapshot(), node);
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
            let r = answer(&Method::GET, path, &board, None);
            assert_eq!(r.status(), StatusCode::OK);
            assert_eq!(r.headers()[CONTENT_TYPE], "text/plain; version=0.0.4");
            assert_eq!(body(r), crate::metrics::render(&status));
        }
    }

    #[test]
    fn unknown_paths_and_other_methods_get_http_errors() {
        let board = Board::new(Status::default());
        let r = answer(&Method::GET, "/nope", &board, None);
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert!(body(r).contains("/metrics"));
        let r = answer(&Method::POST, "/metrics", &board, None);
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers()[ALLOW], "GET, HEAD");
    }

    #[test]
    fn each_listener_answers_for_its_node_and_roles_follow_the_primary() {
        let node = |target: &str, kind: &str| crate::status::NodeState {
            target: target.into(),
            kind: kind.into(),
            ..Default::default()
        };
        let mut status = Status {
            source: "a.db".into(),
            source_up: true,
            nodes: vec![node("a.db", "source"), node("b.db", "replica")],
            replicas: vec![crate::status::ReplicaState {
                path: "b.db".into(),
                ..Default::default()
            }],
            ..Status::default()
        };
        status.judge();
        let board = Board::new(status.clone());
        let code = |path, node| answer(&Method::GET, path, &board, node).status();
        assert_eq!(code("/primary", Some(0)), StatusCode::OK);
        assert_eq!(code("/replica", Some(0)), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(code("/primary", Some(1)), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(code("/replica", Some(1)), StatusCode::OK);
        // The main listener speaks for the first replica.
        assert_eq!(code("/replica", None), StatusCode::OK);
        // A node's listener serves the health pages only.
        assert_eq!(code("/metrics", Some(0)), StatusCode::NOT_FOUND);
        assert_eq!(code("/metrics", None), StatusCode::OK);
        // The primary down: neither node is a primary to route to.
        let mut down = status.clone();
        down.source_up = false;
        down.judge();
        let board = Board::new(down);
        assert_eq!(
            answer(&Method::GET, "/primary", &board, Some(0)).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        // After a failover the replica is the primary and the old one is fenced.
        let mut after = status;
        after.source = "b.db".into();
        after.judge();
        let board = Board::new(after);
        let r = answer(&Method::GET, "/primary", &board, Some(1));
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(body(r), "primary b.db\n");
        let r = answer(&Method::GET, "/primary", &board, Some(0));
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body(r), "fenced a.db\n");
        let health: serde_json::Value =
            serde_json::from_str(&body(answer(&Method::GET, "/health", &board, Some(1)))).unwrap();
        assert_eq!(health["role"], "primary");
        assert_eq!(health["nodes"][0]["role"], "fenced");
    }
}
