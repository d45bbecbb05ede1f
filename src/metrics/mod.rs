//! Metrics for Prometheus and HTTP probes (`metrics-listen`, docs/operations.md): an HTTP/1.1
//! listener served by the event loop's epoll, with no thread of its own.
//!
//! - `http`: pure; one request head parsed from a buffer, one answer put into bytes.
//! - `server`: the listening TCP socket and its connections (limits, keep-alive, deadlines,
//!   slow readers); it answers what it can alone (404, 405, 400, 413, 431) and hands the
//!   caller the requests for [`Route`]s, to be answered with [`answer`].
//! - `exposition`: pure; a [`MetricsSnapshot`] in the Prometheus text format, and the
//!   process's own figures from `/proc/self`.
//!
//! How the event loop drives it: [`server::MetricsServer`]'s module documentation.

pub mod exposition;
pub mod http;
pub mod server;

pub use exposition::{JobMetrics, MetricsSnapshot, ProcessMetrics, VaultMetrics};
pub use http::Response;
pub use server::MetricsServer;

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `/metrics`: the Prometheus text format.
    Metrics,
    /// `/readyz`: 200 when ready (as `health`), else 503 with the reason.
    Ready,
    /// `/livez`: 200 while the event loop answers.
    Live,
}

impl Route {
    /// The route of a request path; `None`: 404.
    pub fn of(path: &str) -> Option<Route> {
        match path {
            "/metrics" => Some(Route::Metrics),
            "/readyz" => Some(Route::Ready),
            "/livez" => Some(Route::Live),
            _ => None,
        }
    }
}

/// A request the caller has to answer (a `GET` or `HEAD` of a [`Route`]); whether it was a
/// `HEAD` is the server's business (it leaves the body out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpRequest {
    pub route: Route,
}

/// The answer to `route`: `not_ready` is `None` when ready, else why not (as `health`);
/// `snapshot` is called only for `/metrics`.
pub fn answer(
    route: Route,
    not_ready: Option<&str>,
    snapshot: impl FnOnce() -> MetricsSnapshot,
) -> Response {
    match route {
        Route::Metrics => Response {
            status: http::Status::Ok,
            content_type: exposition::CONTENT_TYPE,
            body: exposition::render(&snapshot()).into_bytes(),
        },
        Route::Ready => match not_ready {
            None => Response::text(http::Status::Ok, "ready\n"),
            Some(reason) => Response::text(
                http::Status::ServiceUnavailable,
                &format!("not ready: {reason}\n"),
            ),
        },
        Route::Live => Response::text(http::Status::Ok, "live\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_exact_paths() {
        assert_eq!(Route::of("/metrics"), Some(Route::Metrics));
        assert_eq!(Route::of("/readyz"), Some(Route::Ready));
        assert_eq!(Route::of("/livez"), Some(Route::Live));
        for other in ["/", "/metrics/", "/Metrics", "metrics", "/healthz", ""] {
            assert_eq!(Route::of(other), None, "{other}");
        }
    }

    #[test]
    fn readiness_answers_say_why_not() {
        let never = || -> MetricsSnapshot { unreachable!("only /metrics renders") };
        let ready = answer(Route::Ready, None, never);
        assert_eq!(
            (ready.status.code(), &ready.body[..]),
            (200, &b"ready\n"[..])
        );
        let not = answer(Route::Ready, Some("not running yet: web"), never);
        assert_eq!(not.status.code(), 503);
        assert_eq!(not.body, b"not ready: not running yet: web\n");
        let live = answer(Route::Live, Some("shutting down"), never);
        assert_eq!(live.status.code(), 200);
    }

    #[test]
    fn metrics_answers_carry_the_exposition_content_type() {
        let response = answer(Route::Metrics, None, MetricsSnapshot::default);
        assert_eq!(response.status.code(), 200);
        assert_eq!(
            response.content_type,
            "text/plain; version=0.0.4; charset=utf-8"
        );
        assert!(
            String::from_utf8(response.body)
                .unwrap()
                .contains("\nsimplevisor_up 1\n")
        );
    }
}
