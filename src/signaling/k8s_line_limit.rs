//! A bound on what a hostile API server can make the Kubernetes backend hold: at most
//! [`MAX_LINE`] bytes of a response body without a newline.
//!
//! kube reads a watch as newline-delimited JSON with an unbounded `LinesCodec`, and a list or
//! patch response whole, so a server that never sends a newline would grow one buffer without
//! end. Watch events are one JSON object per line and list pages are bounded in count, so a
//! run without a newline longer than [`MAX_LINE`] is never an honest answer: the body fails
//! there, the request errors, and the watch starts again after its backoff.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use hyper::body::{Body, Bytes, Frame, SizeHint};
use hyper::{Request, Response};
use kube::client::DynBody;

/// The error type of kube's service stack and bodies.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The longest run of body bytes without a newline that a response may carry. A list page
/// holds at most [`super::k8s_client`]'s page size of objects, each under the envelope size
/// limit plus Kubernetes' metadata; 16 MiB is far above that and still a bounded cost.
pub(super) const MAX_LINE: usize = 16 << 20;

/// The error a body over the limit ends with.
#[derive(Debug, thiserror::Error)]
#[error("the API server sent more than {limit} bytes without a newline")]
pub(super) struct LineTooLong {
    limit: usize,
}

/// A response body that fails once more than `limit` bytes come without a newline.
pub(super) struct LineLimitedBody<B> {
    inner: B,
    limit: usize,
    /// Bytes since the last newline.
    run: usize,
}

impl<B> LineLimitedBody<B> {
    /// Wraps `inner` with a limit of `limit` bytes between newlines.
    pub(super) fn new(inner: B, limit: usize) -> Self {
        Self {
            inner,
            limit,
            run: 0,
        }
    }
}

impl<B> Body for LineLimitedBody<B>
where
    B: Body<Data = Bytes, Error = BoxError> + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if let Some(Ok(frame)) = &frame
            && let Some(data) = frame.data_ref()
        {
            self.run = match data.iter().rposition(|&byte| byte == b'\n') {
                Some(newline) => data.len() - newline - 1,
                None => self.run.saturating_add(data.len()),
            };
            if self.run > self.limit {
                return Poll::Ready(Some(Err(Box::new(LineTooLong { limit: self.limit }))));
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The layer for kube's `ClientBuilder::with_layer`: every response body of the client gets
/// a [`LineLimitedBody`] of [`MAX_LINE`].
#[derive(Debug, Clone, Copy)]
pub(super) struct LimitLinesLayer;

impl<S> tower_layer::Layer<S> for LimitLinesLayer {
    type Service = LimitLines<S>;

    fn layer(&self, inner: S) -> LimitLines<S> {
        LimitLines { inner }
    }
}

/// The service [`LimitLinesLayer`] makes.
#[derive(Debug, Clone)]
pub(super) struct LimitLines<S> {
    inner: S,
}

impl<S> tower_service::Service<Request<kube::client::Body>> for LimitLines<S>
where
    S: tower_service::Service<Request<kube::client::Body>, Response = Response<Box<DynBody>>>,
    S::Future: Send + 'static,
{
    type Response = Response<Box<DynBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<kube::client::Body>) -> Self::Future {
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|body| Box::new(LineLimitedBody::new(body, MAX_LINE)) as Box<DynBody>))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt as _, StreamBody};

    fn body_of(chunks: &[&'static [u8]]) -> Box<DynBody> {
        let frames = chunks
            .iter()
            .map(|chunk| Ok::<_, BoxError>(Frame::data(Bytes::from_static(chunk))))
            .collect::<Vec<_>>();
        Box::new(StreamBody::new(tokio_stream::iter(frames)))
    }

    async fn read(body: Box<DynBody>, limit: usize) -> Result<Vec<u8>, BoxError> {
        let bytes = LineLimitedBody::new(body, limit)
            .collect()
            .await?
            .to_bytes();
        Ok(bytes.to_vec())
    }

    #[tokio::test]
    async fn lines_within_the_limit_pass_whole_across_chunks() {
        let body = body_of(&[b"{\"a\":", b"1}\n{\"b\"", b":2}\n", b"{\"c\":3}"]);
        let bytes = read(body, 8).await.expect("every line is at most 8 bytes");
        assert_eq!(bytes, b"{\"a\":1}\n{\"b\":2}\n{\"c\":3}");
    }

    #[tokio::test]
    async fn a_run_without_a_newline_over_the_limit_fails_the_body() {
        let body = body_of(&[b"{\"a\":1}\n", b"0123", b"4567", b"8"]);
        let error = read(body, 8).await.expect_err("9 bytes without a newline");
        assert!(error.to_string().contains("more than 8 bytes"), "{error}");
    }

    #[tokio::test]
    async fn a_chunk_that_ends_a_long_line_counts_only_what_follows_its_last_newline() {
        let body = body_of(&[b"01234567", b"\n0123456", b"7\n"]);
        assert!(read(body, 8).await.is_ok());
    }
}
