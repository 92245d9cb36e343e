//! The stored form of a step's log: the chunks exactly as they were
//! streamed, each with its stream. Replaying a cached result sends these
//! same chunks again, so a watcher sees byte for byte what it saw when the
//! step ran — lines whole, stdout and stderr apart and in their order —
//! instead of a flat byte string cut wherever a replay buffer ended.
//!
//! Layout: the magic `BFLOG1\n`, then per chunk one stream byte (`o` or
//! `e`), its length as a little-endian u32, and its bytes.

const MAGIC: &[u8] = b"BFLOG1\n";

/// Which stream a stored chunk was written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Appends chunks in the stored form.
#[derive(Debug)]
pub struct Writer {
    bytes: Vec<u8>,
}

impl Default for Writer {
    fn default() -> Self {
        Writer {
            bytes: MAGIC.to_vec(),
        }
    }
}

impl Writer {
    pub fn push(&mut self, stream: Stream, data: &[u8]) {
        // A chunk is at most a pipe read (64 KiB), far below u32::MAX; a
        // larger one is stored in pieces rather than with a wrapped length.
        for piece in data.chunks(u32::MAX as usize) {
            self.bytes.push(match stream {
                Stream::Stdout => b'o',
                Stream::Stderr => b'e',
            });
            self.bytes
                .extend_from_slice(&(piece.len() as u32).to_le_bytes());
            self.bytes.extend_from_slice(piece);
        }
    }

    /// Bytes held, framing included: what storing it costs.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FramingError {
    #[error("not a buildfleet log (no BFLOG1 header)")]
    NoHeader,
    #[error("unknown stream byte {byte:#04x} at offset {offset}")]
    Stream { byte: u8, offset: usize },
    #[error("chunk at offset {offset} runs past the end of the log")]
    Truncated { offset: usize },
}

/// The stored chunks, in order. Refuses anything malformed: a replay of
/// half a log would pass for the whole.
pub fn read(bytes: &[u8]) -> Result<Vec<(Stream, &[u8])>, FramingError> {
    let mut rest = bytes.strip_prefix(MAGIC).ok_or(FramingError::NoHeader)?;
    let mut out = Vec::new();
    while let Some((&tag, after)) = rest.split_first() {
        let offset = bytes.len() - rest.len();
        let stream = match tag {
            b'o' => Stream::Stdout,
            b'e' => Stream::Stderr,
            byte => return Err(FramingError::Stream { byte, offset }),
        };
        let (len, after) = after
            .split_first_chunk::<4>()
            .ok_or(FramingError::Truncated { offset })?;
        let len = u32::from_le_bytes(*len) as usize;
        if after.len() < len {
            return Err(FramingError::Truncated { offset });
        }
        let (data, after) = after.split_at(len);
        out.push((stream, data));
        rest = after;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_come_back_as_written() {
        let mut w = Writer::default();
        assert_eq!(w.bytes(), MAGIC);
        w.push(Stream::Stdout, b"seq-1\nseq-2\n");
        w.push(Stream::Stderr, b"warn\n");
        w.push(Stream::Stdout, b"");
        w.push(Stream::Stdout, b"no newline");
        let chunks = read(w.bytes()).unwrap();
        assert_eq!(
            chunks,
            [
                (Stream::Stdout, &b"seq-1\nseq-2\n"[..]),
                (Stream::Stderr, &b"warn\n"[..]),
                // An empty chunk shows nothing and is not stored.
                (Stream::Stdout, &b"no newline"[..]),
            ]
        );
    }

    #[test]
    fn malformed_logs_are_refused() {
        assert_eq!(read(b"seq-1\n"), Err(FramingError::NoHeader));
        let mut w = Writer::default();
        w.push(Stream::Stdout, b"abcdef");
        let cut = &w.bytes()[..w.bytes().len() - 1];
        assert!(matches!(read(cut), Err(FramingError::Truncated { .. })));
        let mut bad = w.bytes().to_vec();
        bad[MAGIC.len()] = b'x';
        assert!(matches!(
            read(&bad),
            Err(FramingError::Stream { byte: b'x', .. })
        ));
    }
}
