//! Reading and writing WebSocket messages, for both ends of the WebSocket transport.

use std::future::poll_fn;
use std::pin::Pin;

use futures_sink::Sink;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_stream::StreamExt as _;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error, Message};

/// A socket's settings: messages up to `max_message` bytes, small buffers (a server holds
/// many sockets), writes that go out at once.
pub(crate) fn config(max_inbound: usize, max_outbound: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(16 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(2 * max_outbound)
        .max_message_size(Some(max_inbound))
        .max_frame_size(Some(max_inbound))
}

/// Sends `message` and flushes it.
pub(crate) async fn send<S>(ws: &mut WebSocketStream<S>, message: Message) -> Result<(), Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut ws = Pin::new(ws);
    poll_fn(|cx| ws.as_mut().poll_ready(cx)).await?;
    ws.as_mut().start_send(message)?;
    poll_fn(|cx| ws.as_mut().poll_flush(cx)).await
}

/// The next message; `None` when the socket is closed or failed.
pub(crate) async fn next<S>(ws: &mut WebSocketStream<S>) -> Option<Result<Message, Error>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    ws.next().await
}
