//! Path matching: a request's method and path become a [`Route`], a 404 or a 405, and
//! [`handle`] sends each route to its handler.
//!
//! Segments are percent-decoded before matching, as Dapr's router (chi) matches on the
//! decoded path: an event name `a%20b` is the name `a b`.

use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};

use super::errors::ApiError;
use super::{ops, workflow, HttpState, Response};
use crate::auth::{refusal, API_TOKEN_HEADER};
use crate::telemetry::names;

/// The versions Dapr serves the workflow API under; the JS SDK uses `v1.0-beta1`.
const WORKFLOW_API_VERSIONS: [&str; 3] = ["v1.0", "v1.0-beta1", "v1.0-alpha1"];

/// What a request asks for, with the path parameters it carries (decoded; possibly empty,
/// so the handler can answer Dapr's "missing" errors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `POST /{v}/workflows/{component}/{name}/start`.
    Start { name: String },
    /// `GET /{v}/workflows/{component}/{instanceID}`.
    Get { instance_id: String },
    /// `POST /{v}/workflows/{component}/{instanceID}/{terminate|pause|resume|purge}`.
    Manage { instance_id: String, action: Action },
    /// `POST /{v}/workflows/{component}/{instanceID}/raiseEvent/{eventName}`.
    RaiseEvent {
        instance_id: String,
        event_name: String,
    },
    /// `GET /v1.0/healthz`: Dapr's sidecar health check.
    DaprHealth,
    /// `GET /v1.0/metadata`: the JS SDK's readiness probe.
    DaprMetadata,
    /// `GET /healthz`: the process is alive.
    Live,
    /// `GET /readyz`: a leader is known, so requests can be served.
    Ready,
    /// `GET /metrics`: Prometheus text exposition.
    Metrics,
    /// `GET /cluster/status`: this node's view of the Raft cluster.
    ClusterStatus,
}

/// The instance operations that take no body and answer `202 {}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Terminate,
    Pause,
    Resume,
    Purge,
}

impl Route {
    /// The one method each route accepts.
    pub fn method(&self) -> Method {
        match self {
            Route::Start { .. } | Route::Manage { .. } | Route::RaiseEvent { .. } => Method::POST,
            _ => Method::GET,
        }
    }
}

/// The route for `method` and `path`, or the 404 / 405 to answer. HEAD is accepted
/// wherever GET is (RFC 9110; hyper leaves the body out), for probes that use it.
pub fn resolve(method: &Method, path: &str) -> Result<Route, ApiError> {
    let route = parse(path)?.ok_or_else(|| ApiError::route_not_found(path))?;
    let expected = route.method();
    let head_for_get = *method == Method::HEAD && expected == Method::GET;
    if *method != expected && !head_for_get {
        let allow = if expected == Method::POST {
            "POST"
        } else {
            "GET, HEAD"
        };
        return Err(ApiError::method_not_allowed(method.as_str(), path, allow));
    }
    Ok(route)
}

/// The route a path names regardless of method; `Ok(None)` when none does.
fn parse(path: &str) -> Result<Option<Route>, ApiError> {
    let Some(rest) = path.strip_prefix('/') else {
        return Ok(None);
    };
    let decoded: Vec<String> = rest
        .split('/')
        .map(|segment| percent_decode(segment, false))
        .collect::<Option<_>>()
        .ok_or_else(|| ApiError::malformed("path"))?;
    let segments: Vec<&str> = decoded.iter().map(String::as_str).collect();
    let route = match segments.as_slice() {
        ["healthz"] => Some(Route::Live),
        ["readyz"] => Some(Route::Ready),
        ["metrics"] => Some(Route::Metrics),
        ["cluster", "status"] => Some(Route::ClusterStatus),
        ["v1.0", "healthz"] => Some(Route::DaprHealth),
        ["v1.0", "metadata"] => Some(Route::DaprMetadata),
        [version, "workflows", _component, rest @ ..]
            if WORKFLOW_API_VERSIONS.contains(version) =>
        {
            workflow_route(rest)
        }
        _ => None,
    };
    Ok(route)
}

/// The workflow routes, after `/{v}/workflows/{component}/`. The component is not checked:
/// Endure has one workflow engine, and Dapr does not validate it either.
fn workflow_route(segments: &[&str]) -> Option<Route> {
    let owned = |s: &str| s.to_string();
    let manage = |id: &str, action| {
        Some(Route::Manage {
            instance_id: owned(id),
            action,
        })
    };
    match segments {
        [id] => Some(Route::Get {
            instance_id: owned(id),
        }),
        [name, "start"] => Some(Route::Start { name: owned(name) }),
        [id, "terminate"] => manage(id, Action::Terminate),
        [id, "pause"] => manage(id, Action::Pause),
        [id, "resume"] => manage(id, Action::Resume),
        [id, "purge"] => manage(id, Action::Purge),
        [id, "raiseEvent"] => Some(Route::RaiseEvent {
            instance_id: owned(id),
            event_name: String::new(),
        }),
        [id, "raiseEvent", event] => Some(Route::RaiseEvent {
            instance_id: owned(id),
            event_name: owned(event),
        }),
        _ => None,
    }
}

impl Route {
    /// A bounded label for metrics: the route's template, never an ID or a name.
    pub fn label(&self) -> &'static str {
        match self {
            Route::Start { .. } => "start",
            Route::Get { .. } => "get",
            Route::Manage {
                action: Action::Terminate,
                ..
            } => "terminate",
            Route::Manage {
                action: Action::Pause,
                ..
            } => "pause",
            Route::Manage {
                action: Action::Resume,
                ..
            } => "resume",
            Route::Manage {
                action: Action::Purge,
                ..
            } => "purge",
            Route::RaiseEvent { .. } => "raise_event",
            Route::DaprHealth => "dapr_healthz",
            Route::DaprMetadata => "dapr_metadata",
            Route::Live => "healthz",
            Route::Ready => "readyz",
            Route::Metrics => "metrics",
            Route::ClusterStatus => "cluster_status",
        }
    }
}

/// Answers one request and records it in the HTTP request metrics.
pub async fn handle(state: HttpState, request: Request<Incoming>) -> Response {
    let started = std::time::Instant::now();
    let route = resolve(request.method(), request.uri().path());
    let label = route.as_ref().map(Route::label).unwrap_or("unmatched");
    let response = match route {
        Ok(route) => match authorize(&state, &route, request.headers()) {
            Ok(()) => answer(state, route, request).await,
            Err(error) => error.into_response(),
        },
        Err(error) => error.into_response(),
    };
    metrics::counter!(names::HTTP_REQUESTS, "route" => label, "status" => response.status().as_u16().to_string())
        .increment(1);
    metrics::histogram!(names::HTTP_REQUEST_DURATION, "route" => label)
        .record(started.elapsed().as_secs_f64());
    response
}

/// Whether the request may reach `route`: health and readiness are open; `/metrics` takes
/// the metrics token as a bearer token when one is set; everything else the API token in
/// `dapr-api-token` when one is set. Refused: 401, and the route never runs.
fn authorize(state: &HttpState, route: &Route, headers: &hyper::HeaderMap) -> Result<(), ApiError> {
    let (token, header, presented) = match route {
        Route::Live | Route::Ready | Route::DaprHealth => return Ok(()),
        Route::Metrics => (
            &state.metrics_token,
            "authorization",
            headers
                .get(hyper::header::AUTHORIZATION)
                .map(|v| v.as_bytes().strip_prefix(b"Bearer ").unwrap_or(b"")),
        ),
        _ => (
            &state.api_token,
            API_TOKEN_HEADER,
            headers.get(API_TOKEN_HEADER).map(|v| v.as_bytes()),
        ),
    };
    match token {
        Some(token) if !presented.is_some_and(|value| token.matches(value)) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "ERR_UNAUTHORIZED",
            refusal(header, presented),
        )),
        _ => Ok(()),
    }
}

/// Answers one matched request; every failure becomes an error body, never a dropped
/// connection.
async fn answer(state: HttpState, route: Route, request: Request<Incoming>) -> Response {
    let result = match route {
        Route::Start { name } => workflow::start(&state, &name, request).await,
        Route::Get { instance_id } => workflow::get(&state, &instance_id).await,
        Route::Manage {
            instance_id,
            action,
        } => workflow::manage(&state, &instance_id, action).await,
        Route::RaiseEvent {
            instance_id,
            event_name,
        } => workflow::raise_event(&state, &instance_id, &event_name, request).await,
        Route::DaprHealth => Ok(ops::dapr_health()),
        Route::DaprMetadata => Ok(ops::dapr_metadata()),
        Route::Live => Ok(ops::live()),
        Route::Ready => ops::ready(&state),
        Route::Metrics => Ok(ops::metrics(&state)),
        Route::ClusterStatus => Ok(ops::cluster_status(&state)),
    };
    result.unwrap_or_else(ApiError::into_response)
}

/// The first value of `name` in a query string, form-decoded (`+` is a space), as Go's
/// `URL.Query().Get` reads it. `Err` if the value is not valid UTF-8.
pub fn query_param(query: Option<&str>, name: &str) -> Result<Option<String>, ApiError> {
    for pair in query.unwrap_or("").split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if percent_decode(key, true).as_deref() == Some(name) {
            return percent_decode(value, true)
                .map(Some)
                .ok_or_else(|| ApiError::malformed("query"));
        }
    }
    Ok(None)
}

/// Decodes `%XX` escapes (and `+` as a space when `plus_is_space`). `None` if the result is
/// not UTF-8. A `%` not followed by two hex digits stays as it is, as browsers leave it.
fn percent_decode(input: &str, plus_is_space: bool) -> Option<String> {
    let hex = |b: &u8| (*b as char).to_digit(16);
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match bytes[i] {
            b'%' => bytes
                .get(i + 1)
                .and_then(hex)
                .zip(bytes.get(i + 2).and_then(hex)),
            _ => None,
        };
        match (escaped, bytes[i]) {
            (Some((high, low)), _) => {
                out.push((high * 16 + low) as u8);
                i += 3;
                continue;
            }
            (None, b'+') if plus_is_space => out.push(b' '),
            (None, byte) => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
#[path = "router_tests.rs"]
mod tests;
