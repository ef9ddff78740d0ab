//! WebSocket plumbing shared by both transports: upgrade, split into a reader (this task) and a
//! writer task, and the bounded outbound queue between the call and the writer.

use std::future::Future;
use tracing::Instrument;

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use fastwebsockets::upgrade::{IncomingUpgrade, UpgradeFut};
use fastwebsockets::{
    FragmentCollectorRead, Frame, OpCode, Payload, Role, WebSocketError, WebSocketWrite,
};
use hyper_util::rt::TokioIo;
use switchboard_actors::Outbound;
use tokio::io::{AsyncReadExt, BufWriter, Chain};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;

/// The read half is the socket's own (`TcpStream::into_split`: no lock shared with the writer),
/// behind whatever bytes hyper had read past the upgrade request (nearly always none).
pub type WsRead = FragmentCollectorRead<Chain<std::io::Cursor<Bytes>, OwnedReadHalf>>;
/// The write half goes through a buffer so that a whole utterance of media frames leaves in a few
/// TCP writes instead of one per 20 ms frame; every write path below flushes when its message
/// is complete.
pub type WsWrite = WebSocketWrite<BufWriter<OwnedWriteHalf>>;

/// Bytes buffered on the write half before they go to the socket (~23 media frames).
const WRITE_BUFFER: usize = 8 * 1024;

/// Outbound messages queued per call before the client counts as "not reading" and the call is
/// ended (a media `Audio` message is a whole utterance, so this is minutes of speech).
pub const OUTBOUND_QUEUE: usize = 256;
/// Largest inbound message accepted by the socket layer; larger ones close the connection.
/// The parsers reject anything over 64 KiB (counted as `oversized`) long before this.
pub const MAX_SOCKET_MESSAGE: usize = 1024 * 1024;

/// Control frames the reader owes the peer (pong, close echo), sent by the writer.
pub type Control = mpsc::Sender<Frame<'static>>;

/// Names the call in the current socket's span (see [`accept`]).
pub fn name_call(call_sid: &str) {
    tracing::Span::current().record("call_sid", tracing::field::display(call_sid));
}

/// Accept the upgrade and run `session` on the connected socket in a task of its own.
pub fn accept<F, Fut>(upgrade: IncomingUpgrade, transport: &'static str, session: F) -> Response
where
    F: FnOnce(UpgradeFut) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    match upgrade.upgrade() {
        Ok((response, fut)) => {
            // Everything the socket's tasks log names the call once `start`/`setup` said which
            // (`name_call`). ERROR level, like the call actor's span: never filtered out while
            // anything is logged.
            let span =
                tracing::error_span!("twilio_socket", transport, call_sid = tracing::field::Empty);
            tokio::spawn(session(fut).instrument(span));
            response.map(axum::body::Body::new).into_response()
        }
        Err(e) => (
            axum::http::StatusCode::BAD_REQUEST,
            format!("websocket upgrade failed: {e}\n"),
        )
            .into_response(),
    }
}

/// Split a connected socket into a fragment-collecting reader and a writer.
///
/// The upgraded connection is taken back as the `TcpStream` that `http::serve_http1` gave hyper,
/// so reads and writes go straight to the socket: no `Upgraded` trait object, and no lock between
/// the two halves, which `tokio::io::split` would take on each of the 50 reads a second.
pub async fn connect(fut: UpgradeFut) -> Result<(WsRead, WsWrite), WebSocketError> {
    let upgraded = fut.await?.into_inner().into_inner();
    let parts = upgraded.downcast::<TokioIo<TcpStream>>().map_err(|_| {
        WebSocketError::IoError(std::io::Error::other(
            "the upgraded connection is not a plain TCP socket",
        ))
    })?;
    let (read, write) = parts.io.into_inner().into_split();
    let read = std::io::Cursor::new(parts.read_buf).chain(read);
    let write = BufWriter::with_capacity(WRITE_BUFFER, write);
    let (mut read, write) = fastwebsockets::after_handshake_split(read, write, Role::Server);
    read.set_max_message_size(MAX_SOCKET_MESSAGE);
    read.set_auto_close(true);
    read.set_auto_pong(true);
    Ok((FragmentCollectorRead::new(read), write))
}

/// What the reader got from the socket.
pub enum Incoming {
    Text(String),
    Binary,
    Closed,
}

/// Read the next data message; control frames the peer is owed are queued on `control`.
pub async fn next(read: &mut WsRead, control: &Control) -> Incoming {
    let mut send = |frame: Frame<'_>| {
        let owned = Frame::new(
            true,
            frame.opcode,
            None,
            Payload::Owned(frame.payload.to_vec()),
        );
        let control = control.clone();
        async move { control.send(owned).await.map_err(|_| "socket writer gone") }
    };
    loop {
        match read.read_frame::<_, &'static str>(&mut send).await {
            Ok(frame) => match frame.opcode {
                OpCode::Text => match String::from_utf8(frame.payload.to_vec()) {
                    Ok(text) => return Incoming::Text(text),
                    Err(_) => return Incoming::Binary,
                },
                OpCode::Binary => return Incoming::Binary,
                OpCode::Close => return Incoming::Closed,
                _ => continue,
            },
            Err(e) => {
                // Not a close from the peer: a reset, a protocol error, or our own writer gone.
                // The call ends as a hang-up; say why, once per socket.
                tracing::warn!(error = %e, "twilio socket read failed; treating it as a hang-up");
                return Incoming::Closed;
            }
        }
    }
}

/// Write one text frame; false when the peer is gone.
pub async fn send_text(write: &mut WsWrite, text: &str) -> bool {
    queue_text(write, text).await && flush(write).await
}

/// Write a text message into the socket's buffer without sending it yet: for a run of messages
/// that ends with [`flush`].
pub async fn queue_text(write: &mut WsWrite, text: &str) -> bool {
    write
        .write_frame(Frame::text(Payload::Borrowed(text.as_bytes())))
        .await
        .is_ok()
}

/// Send whatever is buffered.
pub async fn flush(write: &mut WsWrite) -> bool {
    write.flush().await.is_ok()
}

/// Close the socket with a normal close frame.
pub async fn close(write: &mut WsWrite, reason: &str) {
    let reason: String = reason.chars().take(100).collect();
    let _ = write
        .write_frame(Frame::close(1000, reason.as_bytes()))
        .await;
    flush(write).await;
}

/// Forward an owed control frame; true if the socket is now closed.
async fn forward_control(write: &mut WsWrite, frame: Frame<'static>) -> bool {
    let closing = frame.opcode == OpCode::Close;
    let _ = write.write_frame(frame).await;
    flush(write).await;
    closing
}

/// The writer's next message: control frames the reader owes the peer go out first. `None` when
/// the socket closed or the call dropped its sender.
pub async fn next_outbound(
    write: &mut WsWrite,
    out: &mut mpsc::Receiver<Outbound>,
    control: &mut mpsc::Receiver<Frame<'static>>,
) -> Option<Outbound> {
    loop {
        tokio::select! {
            biased;
            Some(c) = control.recv() => {
                if forward_control(write, c).await {
                    return None;
                }
            }
            msg = out.recv() => return msg,
        }
    }
}
