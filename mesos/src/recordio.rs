//! RecordIO, the framing of Mesos's event streams: each record is its length in bytes as
//! ASCII decimal, a `\n`, then the record, with nothing between records.
//!
//! [`encode`] frames one record; [`Decoder`] takes bytes as they arrive, however they are cut
//! into chunks, and yields whole records. It refuses a length that is not decimal, is zero,
//! or is over its bound, so a bad peer cannot make it buffer without end.

/// Most digits a record length may have (a u64 has 20).
const MAX_LENGTH_DIGITS: usize = 20;

/// One framed record: `<len>\n<record>`.
pub fn encode(record: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(record.len() + 12);
    out.extend_from_slice(record.len().to_string().as_bytes());
    out.push(b'\n');
    out.extend_from_slice(record);
    out
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordIoError {
    #[error("record length is not decimal digits followed by a newline")]
    BadLength,
    #[error("record length 0")]
    Empty,
    #[error("record of {len} bytes is over the {max} byte bound")]
    TooLarge { len: u64, max: usize },
}

/// Cuts a byte stream into records.
#[derive(Debug)]
pub struct Decoder {
    buf: Vec<u8>,
    max_record: usize,
}

impl Decoder {
    /// A decoder that refuses records over `max_record` bytes.
    pub fn new(max_record: usize) -> Self {
        Self {
            buf: Vec::new(),
            max_record,
        }
    }

    /// Adds bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole record, if it has arrived.
    pub fn next_record(&mut self) -> Result<Option<Vec<u8>>, RecordIoError> {
        let Some(newline) = self.buf.iter().position(|b| *b == b'\n') else {
            if self.buf.len() > MAX_LENGTH_DIGITS || !self.buf.iter().all(u8::is_ascii_digit) {
                return Err(RecordIoError::BadLength);
            }
            return Ok(None);
        };
        let digits = &self.buf[..newline];
        if digits.is_empty()
            || digits.len() > MAX_LENGTH_DIGITS
            || !digits.iter().all(u8::is_ascii_digit)
        {
            return Err(RecordIoError::BadLength);
        }
        let len: u64 = std::str::from_utf8(digits)
            .ok()
            .and_then(|d| d.parse().ok())
            .ok_or(RecordIoError::BadLength)?;
        if len == 0 {
            return Err(RecordIoError::Empty);
        }
        if len > self.max_record as u64 {
            return Err(RecordIoError::TooLarge {
                len,
                max: self.max_record,
            });
        }
        let len = len as usize;
        let start = newline + 1;
        if self.buf.len() < start + len {
            return Ok(None);
        }
        let record = self.buf[start..start + len].to_vec();
        self.buf.drain(..start + len);
        Ok(Some(record))
    }

    /// Bytes received that are not yet a whole record.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_as_mesos_documents() {
        // docs/recordio.md: "5\nhello6\nworld!"
        let mut stream = encode(b"hello");
        stream.extend(encode(b"world!"));
        assert_eq!(stream, b"5\nhello6\nworld!");
    }

    #[test]
    fn decodes_records_cut_anywhere() {
        let records: Vec<Vec<u8>> = vec![
            b"{\"type\":\"SUBSCRIBED\"}".to_vec(),
            b"{\"type\":\"HEARTBEAT\"}".to_vec(),
            vec![b'x'; 1234],
        ];
        let stream: Vec<u8> = records.iter().flat_map(|r| encode(r)).collect();
        for cut in 1..stream.len() {
            let mut d = Decoder::new(4096);
            let mut got = Vec::new();
            for piece in stream.chunks(cut) {
                d.push(piece);
                while let Some(r) = d.next_record().unwrap() {
                    got.push(r);
                }
            }
            assert_eq!(got, records, "cut every {cut} bytes");
            assert_eq!(d.pending(), 0);
        }
    }

    #[test]
    fn refuses_bad_lengths() {
        for (bytes, want) in [
            (&b"abc\n"[..], RecordIoError::BadLength),
            (b"\nxyz", RecordIoError::BadLength),
            (b"0\n", RecordIoError::Empty),
            (b"-1\n", RecordIoError::BadLength),
            (b"123456789012345678901", RecordIoError::BadLength),
            (b"12x", RecordIoError::BadLength),
            (b"99999999999999999999\n", RecordIoError::BadLength),
            (
                b"99999999999\n",
                RecordIoError::TooLarge {
                    len: 99_999_999_999,
                    max: 10,
                },
            ),
        ] {
            let mut d = Decoder::new(10);
            d.push(bytes);
            match d.next_record() {
                Err(e) if std::mem::discriminant(&e) == std::mem::discriminant(&want) => {}
                other => panic!("{:?}: {other:?}", String::from_utf8_lossy(bytes)),
            }
        }
        let mut d = Decoder::new(10);
        d.push(b"11\n");
        assert_eq!(
            d.next_record(),
            Err(RecordIoError::TooLarge { len: 11, max: 10 })
        );
    }
}
