//! A tower layer that counts gRPC requests by method and status code and times them.
//! The status is read from the response headers, where gRPC puts it for errors
//! (trailers-only responses); a response without it is counted as OK (0).

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use tower::{Layer, Service};

use crate::sync::LockExt;
use crate::telemetry::names;

/// Distinct method labels; further paths (not ours, so UNIMPLEMENTED) share "other".
const MAX_METHOD_LABELS: usize = 64;

#[derive(Clone, Copy, Debug, Default)]
pub struct GrpcMetricsLayer;

impl<S> Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics { inner }
    }
}

#[derive(Clone, Debug)]
pub struct GrpcMetrics<S> {
    inner: S,
}

fn method_label(path: &str) -> String {
    static SEEN: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    let method = path.rsplit('/').next().unwrap_or("");
    let valid = !method.is_empty()
        && method.len() <= 64
        && method.chars().all(|c| c.is_ascii_alphanumeric());
    if !valid {
        return "other".to_string();
    }
    let mut seen = SEEN.get_or_init(Default::default).lock_or_die();
    if seen.contains(method) || seen.len() < MAX_METHOD_LABELS {
        seen.insert(method.to_string());
        return method.to_string();
    }
    "other".to_string()
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B, RB> Service<http::Request<B>> for GrpcMetrics<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = method_label(request.uri().path());
        let started = Instant::now();
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await?;
            let code = response
                .headers()
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u16>().ok())
                .unwrap_or(0);
            metrics::counter!(names::GRPC_REQUESTS, "method" => method.clone(), "code" => code.to_string())
                .increment(1);
            metrics::histogram!(names::GRPC_REQUEST_DURATION, "method" => method)
                .record(started.elapsed().as_secs_f64());
            Ok(response)
        })
    }
}
