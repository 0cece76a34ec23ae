//! Who may call: the API token on the client ports (gRPC and HTTP, as Dapr's
//! `dapr-api-token`), the cluster secret on the internal port, an optional token on
//! `/metrics`, and an optional admin token for the Admin calls that change or probe the
//! cluster (membership, replica reads, chaos controls) on the client ports.
//!
//! - A token is compared in constant time ([`Token::matches`]); its `Debug` never shows it,
//!   and no error message, log line or metric repeats what a caller presented.
//! - A missing or wrong token is refused before the call reaches any service: gRPC
//!   UNAUTHENTICATED, HTTP 401, and nothing changes.
//! - No token configured: that port is open, as before.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower::{Layer, Service};

/// Metadata key / HTTP header of the API token, as Dapr and its SDKs name it.
pub const API_TOKEN_HEADER: &str = "dapr-api-token";

/// A secret a caller must present. Cheap to clone.
#[derive(Clone)]
pub struct Token(Arc<[u8]>);

impl Token {
    /// A token from its text; `what` names it in the error ("--api-token").
    pub fn new(what: &str, text: &str) -> anyhow::Result<Token> {
        let text = text.trim_end_matches(['\r', '\n']);
        if text.is_empty() {
            anyhow::bail!("{what} is empty");
        }
        if !text.bytes().all(|b| b.is_ascii_graphic()) {
            anyhow::bail!("{what} must be printable ASCII without spaces (it travels in a header)");
        }
        Ok(Token(text.as_bytes().into()))
    }

    /// Whether `presented` is this token, in time that depends only on the lengths.
    pub fn matches(&self, presented: &[u8]) -> bool {
        let expected: &[u8] = &self.0;
        if presented.len() != expected.len() {
            return false;
        }
        let difference = expected
            .iter()
            .zip(presented)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(difference) == 0
    }

    /// The text, for the places that must send it on (never for display).
    pub fn expose(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(redacted)")
    }
}

/// Metadata key of the admin token on the Admin calls of the client ports.
pub const ADMIN_TOKEN_HEADER: &str = "endure-admin-token";

/// Refuses a call that does not carry `required` (when set) as its admin token.
pub fn check_admin(
    required: Option<&Token>,
    metadata: &tonic::metadata::MetadataMap,
) -> Result<(), tonic::Status> {
    let Some(token) = required else {
        return Ok(());
    };
    let presented = metadata.get(ADMIN_TOKEN_HEADER).map(|v| v.as_bytes());
    match presented {
        Some(value) if token.matches(value) => Ok(()),
        _ => Err(tonic::Status::unauthenticated(format!(
            "{} (an admin call: membership, replica state, leader placement)",
            refusal(ADMIN_TOKEN_HEADER, presented)
        ))),
    }
}

/// Why a presented token was refused; the message names the header, never a value.
pub fn refusal(header: &str, presented: Option<&[u8]>) -> String {
    match presented {
        None => format!("this node requires a token in the `{header}` header; none was sent"),
        Some(_) => format!("the token in the `{header}` header is not the one this node accepts"),
    }
}

/// Checks `header` on every gRPC call of a listener against `token` (none: all pass).
#[derive(Clone, Debug)]
pub struct GrpcAuthLayer {
    header: &'static str,
    token: Option<Token>,
}

impl GrpcAuthLayer {
    pub fn new(header: &'static str, token: Option<Token>) -> Self {
        GrpcAuthLayer { header, token }
    }
}

impl<S> Layer<S> for GrpcAuthLayer {
    type Service = GrpcAuth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcAuth {
            inner,
            header: self.header,
            token: self.token.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct GrpcAuth<S> {
    inner: S,
    header: &'static str,
    token: Option<Token>,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B, RB> Service<http::Request<B>> for GrpcAuth<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    RB: Default + Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<S::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if let Some(token) = &self.token {
            let presented = request.headers().get(self.header).map(|v| v.as_bytes());
            if !presented.is_some_and(|value| token.matches(value)) {
                let status = tonic::Status::unauthenticated(refusal(self.header, presented));
                return Box::pin(std::future::ready(Ok(status.into_http())));
            }
        }
        Box::pin(self.inner.call(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_matches_itself_only() {
        let token = Token::new("--api-token", "s3cret-token\n").unwrap();
        assert!(token.matches(b"s3cret-token"));
        assert!(!token.matches(b"s3cret-tokeN"));
        assert!(!token.matches(b"s3cret-toke"));
        assert!(!token.matches(b""));
        assert_eq!(format!("{token:?}"), "Token(redacted)");
    }

    #[test]
    fn bad_tokens_are_refused_with_the_flag_named() {
        let empty = Token::new("--api-token", "\n").unwrap_err().to_string();
        assert!(empty.contains("--api-token is empty"), "{empty}");
        let spaced = Token::new("--cluster-secret", "a b")
            .unwrap_err()
            .to_string();
        assert!(
            spaced.contains("--cluster-secret must be printable"),
            "{spaced}"
        );
    }

    #[test]
    fn a_refusal_never_repeats_the_value() {
        let message = refusal(API_TOKEN_HEADER, Some(b"guess"));
        assert!(!message.contains("guess"), "{message}");
        assert!(refusal(API_TOKEN_HEADER, None).contains("none was sent"));
    }
}
