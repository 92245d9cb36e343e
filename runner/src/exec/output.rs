//! Turning a child's stdout/stderr pipes into line-aligned [`OutputChunk`]s.
//!
//! Consumers (log storage, the coordinator stream) want whole lines, but a
//! chunk per line would mean one channel send per line, which is far too slow
//! for chatty builds. So each read takes everything the pipe has ready (up to
//! [`READ_BUF`]) and forwards all complete lines in it as one chunk. A partial
//! line is kept only until its newline arrives; a complete line is never held
//! back waiting for more data.

use std::fmt;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::{LogStream, OutputChunk};

/// Bytes requested per read; the default Linux pipe capacity, so one read
/// usually drains everything the child has written so far.
pub(crate) const READ_BUF: usize = 64 * 1024;

/// Longest line delivered in one piece. Longer lines are split so a child that
/// writes megabytes without a newline cannot make us buffer without bound.
pub(crate) const MAX_LINE: usize = 64 * 1024;

impl OutputChunk {
    /// A runner-generated message, newline-terminated like all other lines.
    pub(crate) fn system(message: impl fmt::Display) -> Self {
        Self {
            stream: LogStream::System,
            data: Bytes::from(format!("{message}\n")),
        }
    }
}

/// One unit of output produced by [`LineSplitter::take_ready`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Piece {
    /// Output bytes: whole lines, or one [`MAX_LINE`]-sized part of a long line.
    Data(Bytes),
    /// The following data is part of a line longer than [`MAX_LINE`]; emitted
    /// once per long line, before its first part.
    LongLine,
}

/// Accumulates raw reads and cuts them into line-aligned pieces.
///
/// Kept free of I/O so the cutting rules can be tested exhaustively.
#[derive(Debug)]
pub(crate) struct LineSplitter {
    pending: BytesMut,
    max_line: usize,
    /// Inside a line that has already been split; suppresses repeat notes.
    in_long_line: bool,
}

impl LineSplitter {
    pub(crate) fn new(max_line: usize) -> Self {
        Self {
            pending: BytesMut::new(),
            max_line,
            in_long_line: false,
        }
    }

    /// The buffer reads append to, with at least `additional` spare capacity.
    pub(crate) fn buffer(&mut self, additional: usize) -> &mut BytesMut {
        self.pending.reserve(additional);
        &mut self.pending
    }

    /// Remove and return everything deliverable now: all complete lines
    /// (batched into as few pieces as possible) and parts of overlong lines.
    /// Only an unterminated tail of at most `max_line` bytes stays buffered.
    pub(crate) fn take_ready(&mut self) -> Vec<Piece> {
        let mut pieces = Vec::new();
        // Start of the current (not yet terminated) line within `pending`.
        let mut cursor = 0;
        loop {
            let window_end = self.pending.len().min(cursor + self.max_line + 1);
            let window = &self.pending[cursor..window_end];
            if let Some(i) = window.iter().position(|&b| b == b'\n') {
                cursor += i + 1;
                self.in_long_line = false;
            } else if self.pending.len() - cursor > self.max_line {
                if cursor > 0 {
                    pieces.push(Piece::Data(self.pending.split_to(cursor).freeze()));
                    cursor = 0;
                }
                if !self.in_long_line {
                    pieces.push(Piece::LongLine);
                    self.in_long_line = true;
                }
                pieces.push(Piece::Data(self.pending.split_to(self.max_line).freeze()));
            } else {
                break;
            }
        }
        if cursor > 0 {
            pieces.push(Piece::Data(self.pending.split_to(cursor).freeze()));
        }
        pieces
    }

    /// At EOF: the final unterminated line, if any.
    pub(crate) fn finish(&mut self) -> Option<Bytes> {
        (!self.pending.is_empty()).then(|| self.pending.split().freeze())
    }
}

/// Delivers chunks for one stream, tolerating a vanished receiver.
struct Sink {
    stream: LogStream,
    output: mpsc::Sender<OutputChunk>,
    open: bool,
}

impl Sink {
    /// Waits for channel capacity (backpressure reaches the child through the
    /// pipe). If the receiver is gone we keep reading and discard, so the
    /// child is not blocked on a full pipe that nobody will ever drain.
    async fn send(&mut self, chunk: OutputChunk) {
        if self.open && self.output.send(chunk).await.is_err() {
            self.open = false;
            tracing::warn!(stream = %self.stream, "output receiver dropped; discarding output");
        }
    }

    async fn piece(&mut self, piece: Piece) {
        let chunk = match piece {
            Piece::Data(data) => OutputChunk {
                stream: self.stream,
                data,
            },
            Piece::LongLine => OutputChunk::system(format_args!(
                "{} line longer than {MAX_LINE} bytes: delivered split into {MAX_LINE}-byte pieces",
                self.stream
            )),
        };
        self.send(chunk).await;
    }
}

/// Resolves once `stop` becomes true; never if its sender goes away first.
async fn stop_requested(stop: &mut watch::Receiver<bool>) {
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Read one pipe to EOF (or until `stop`), forwarding line-aligned chunks.
///
/// `stop` exists for a pipe held open by a process outside the shard's
/// group, which we cannot kill: it is honoured only when the pipe has nothing
/// ready, so data already written is never cut off.
pub(crate) async fn pump<R>(
    mut reader: R,
    stream: LogStream,
    output: mpsc::Sender<OutputChunk>,
    mut stop: watch::Receiver<bool>,
) where
    R: AsyncRead + Unpin,
{
    let mut splitter = LineSplitter::new(MAX_LINE);
    let mut sink = Sink {
        stream,
        output,
        open: true,
    };
    loop {
        let read = tokio::select! {
            biased;
            read = reader.read_buf(splitter.buffer(READ_BUF)) => read,
            () = stop_requested(&mut stop) => break,
        };
        match read {
            Ok(0) => break,
            Ok(_) => {
                for piece in splitter.take_ready() {
                    sink.piece(piece).await;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::warn!(%stream, error = %e, "reading command output failed");
                let note = OutputChunk::system(format_args!(
                    "error reading {stream}: {e}; further {stream} output is lost"
                ));
                sink.send(note).await;
                break;
            }
        }
    }
    if let Some(rest) = splitter.finish() {
        sink.piece(Piece::Data(rest)).await;
    }
}

/// Sends runner notes without ever blocking the caller.
///
/// Notes are produced by the task that enforces timeouts; if it awaited a
/// slow output receiver, a stalled consumer could postpone the SIGKILL
/// indefinitely. Notes are queued and forwarded in order by a separate task.
#[derive(Clone)]
pub(crate) struct Notes {
    queue: mpsc::UnboundedSender<String>,
}

impl Notes {
    /// Returns the handle and the forwarding task, which finishes after the
    /// last `Notes` is dropped and everything queued has been delivered.
    pub(crate) fn start(output: mpsc::Sender<OutputChunk>) -> (Self, JoinHandle<()>) {
        let (queue, mut rx) = mpsc::unbounded_channel::<String>();
        let forwarder = tokio::spawn(async move {
            while let Some(message) = rx.recv().await {
                if output.send(OutputChunk::system(message)).await.is_err() {
                    break;
                }
            }
        });
        (Self { queue }, forwarder)
    }

    pub(crate) fn note(&self, message: String) {
        tracing::info!(note = %message);
        // The forwarder only stops early if the output receiver is gone, in
        // which case nobody can read the note anyway.
        let _ = self.queue.send(message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(splitter: &mut LineSplitter, data: &[u8]) -> Vec<Piece> {
        splitter.buffer(data.len()).extend_from_slice(data);
        splitter.take_ready()
    }

    fn data(s: &str) -> Piece {
        Piece::Data(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn complete_lines_are_batched_and_the_partial_tail_waits() {
        let mut s = LineSplitter::new(16);
        assert_eq!(feed(&mut s, b"a\nbb\nccc"), vec![data("a\nbb\n")]);
        assert_eq!(feed(&mut s, b"c\nd"), vec![data("cccc\n")]);
        assert_eq!(s.finish(), Some(Bytes::from_static(b"d")));
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn a_line_of_exactly_max_line_bytes_is_not_split() {
        let mut s = LineSplitter::new(4);
        assert_eq!(feed(&mut s, b"abcd\nabcd"), vec![data("abcd\n")]);
        assert_eq!(s.finish(), Some(Bytes::from_static(b"abcd")));
    }

    #[test]
    fn an_overlong_line_is_split_with_one_note_per_line() {
        let mut s = LineSplitter::new(4);
        assert_eq!(
            feed(&mut s, b"ok\nabcdefghij\nxy"),
            vec![
                data("ok\n"),
                Piece::LongLine,
                data("abcd"),
                data("efgh"),
                data("ij\n"),
            ]
        );
        // A second long line gets its own note.
        assert_eq!(
            feed(&mut s, b"zzzz\n"),
            vec![Piece::LongLine, data("xyzz"), data("zz\n")]
        );
    }

    #[test]
    fn arbitrary_read_boundaries_reassemble_to_the_input() {
        let input: Vec<u8> = (0..5000u32)
            .flat_map(|i| {
                let len = (i * 7919) % 23;
                let mut line = vec![b'a' + (i % 26) as u8; len as usize];
                line.push(b'\n');
                line
            })
            .collect();
        for step in [1, 2, 3, 7, 16, 100, 4096] {
            let mut s = LineSplitter::new(16);
            let mut out = Vec::new();
            for part in input.chunks(step) {
                for piece in feed(&mut s, part) {
                    if let Piece::Data(d) = piece {
                        assert!(d.ends_with(b"\n") || d.len() == 16, "misaligned {d:?}");
                        out.extend_from_slice(&d);
                    }
                }
            }
            out.extend_from_slice(&s.finish().unwrap_or_default());
            assert_eq!(out, input, "step {step}");
        }
    }
}
