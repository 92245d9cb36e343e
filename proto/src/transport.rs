//! HTTP/2 settings shared by every server and client of the fleet, so the
//! two ends of a connection agree and the runner's own client streams as
//! fast as a Bazel-family one.
//!
//! HTTP/2's default flow-control window is 64 KiB: a 16 MiB ByteStream
//! write would stall for a WINDOW_UPDATE round trip every 64 KiB. These
//! windows let a whole 1 MiB chunk, and a few streams of them, be in
//! flight; they are also what one connection may make the other side
//! buffer, so they stay small enough that eight busy clients cost the
//! cache tens of megabytes, not hundreds.

use tonic::transport::{Endpoint, Server};

/// Bytes one stream may have in flight before the receiver acknowledges.
pub const STREAM_WINDOW_BYTES: u32 = 4 << 20;
/// Bytes all streams of one connection may have in flight together.
pub const CONNECTION_WINDOW_BYTES: u32 = 8 << 20;
/// Largest HTTP/2 frame: fewer, larger frames for 1 MiB chunks.
pub const MAX_FRAME_BYTES: u32 = 1 << 20;

/// A server builder with the fleet's HTTP/2 settings. (Servers take their
/// connections from an incoming stream that sets TCP_NODELAY on each.)
pub fn server() -> Server {
    Server::builder()
        .initial_stream_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        .tcp_nodelay(true)
}

/// `endpoint` with the fleet's HTTP/2 settings and TCP_NODELAY (small RPCs
/// must not wait for delayed ACKs).
pub fn tune(endpoint: Endpoint) -> Endpoint {
    endpoint
        .initial_stream_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
        .tcp_nodelay(true)
}
