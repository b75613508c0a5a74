//! Counts requests tonic refuses before a handler runs: a body that is not protobuf
//! (`INTERNAL`, "failed to decode") and a message over the size limit (`OUT_OF_RANGE`).
//! Our handlers return neither code, so the response's `grpc-status` header says which.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::codegen::http;
use tower_layer::Layer;
use tower_service::Service;

use super::counters::ServerCounters;

/// Wraps the gRPC routes with [`CountRefusalsService`].
#[derive(Clone)]
pub(super) struct CountRefusals {
    pub(super) counters: Arc<ServerCounters>,
}

impl<S> Layer<S> for CountRefusals {
    type Service = CountRefusalsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CountRefusalsService {
            inner,
            counters: Arc::clone(&self.counters),
        }
    }
}

/// See the module docs.
#[derive(Clone)]
pub(super) struct CountRefusalsService<S> {
    inner: S,
    counters: Arc<ServerCounters>,
}

impl<S, B, R> Service<http::Request<B>> for CountRefusalsService<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let response = self.inner.call(request);
        let counters = Arc::clone(&self.counters);
        Box::pin(async move {
            let response = response.await?;
            match response.headers().get("grpc-status").map(|v| v.as_bytes()) {
                Some(b"13") => ServerCounters::add(&counters.rejected_malformed, 1),
                Some(b"11") => ServerCounters::add(&counters.rejected_oversized, 1),
                _ => {}
            }
            Ok(response)
        })
    }
}
