//! The body of `POST /txs` (`docs/rpc.md`, "Binary submission"): transactions' borsh bytes, each
//! with its length in front as a little-endian `u32`.

/// Why a body does not split into frames: nothing in it is looked at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("no transactions")]
    Empty,
    #[error("frame {index}: a length prefix of {have} bytes, not 4")]
    ShortPrefix { index: usize, have: usize },
    #[error("frame {index}: {len} bytes announced, {have} left in the body")]
    PastTheEnd { index: usize, len: usize, have: usize },
    #[error("{count} transactions, more than the limit of {max}")]
    TooMany { count: usize, max: usize },
}

/// The body carrying `txs` (each one transaction's borsh bytes).
pub fn encode<T: AsRef<[u8]>>(txs: &[T]) -> Vec<u8> {
    let mut body = Vec::with_capacity(txs.iter().map(|t| 4 + t.as_ref().len()).sum());
    for tx in txs {
        let tx = tx.as_ref();
        body.extend_from_slice(&(tx.len() as u32).to_le_bytes());
        body.extend_from_slice(tx);
    }
    body
}

/// The frames of `body`, at most `max` of them. The frames' contents are not looked at: a frame
/// that is not a transaction is that transaction's answer, not the request's.
pub fn split(body: &[u8], max: usize) -> Result<Vec<&[u8]>, FrameError> {
    let mut frames = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let index = frames.len();
        if index == max {
            // Count the rest without keeping it, for the message.
            let mut count = index;
            while rest.len() >= 4 {
                let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                count += 1;
                rest = rest.get(4 + len..).unwrap_or_default();
            }
            return Err(FrameError::TooMany { count: count + usize::from(!rest.is_empty()), max });
        }
        let Some((prefix, tail)) = rest.split_first_chunk::<4>() else {
            return Err(FrameError::ShortPrefix { index, have: rest.len() });
        };
        let len = u32::from_le_bytes(*prefix) as usize;
        if len > tail.len() {
            return Err(FrameError::PastTheEnd { index, len, have: tail.len() });
        }
        let (frame, tail) = tail.split_at(len);
        frames.push(frame);
        rest = tail;
    }
    if frames.is_empty() {
        return Err(FrameError::Empty);
    }
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_empty_frames_are_frames() {
        let txs: Vec<Vec<u8>> = vec![vec![1, 2, 3], vec![], vec![9; 300]];
        let body = encode(&txs);
        assert_eq!(body.len(), 3 * 4 + 303);
        let frames = split(&body, 3).unwrap();
        assert_eq!(frames, txs.iter().map(Vec::as_slice).collect::<Vec<_>>());
    }

    #[test]
    fn a_broken_body_is_refused_saying_where() {
        assert_eq!(split(&[], 10), Err(FrameError::Empty));
        let mut body = encode(&[vec![7u8; 10]]);
        body.extend_from_slice(&[5, 0]);
        assert_eq!(split(&body, 10), Err(FrameError::ShortPrefix { index: 1, have: 2 }));
        let mut body = encode(&[vec![7u8; 10]]);
        body.extend_from_slice(&100u32.to_le_bytes());
        body.extend_from_slice(&[1, 2, 3]);
        assert_eq!(split(&body, 10), Err(FrameError::PastTheEnd { index: 1, len: 100, have: 3 }));
        let huge = u32::MAX.to_le_bytes();
        assert!(matches!(split(&huge, 10), Err(FrameError::PastTheEnd { index: 0, .. })));
    }

    #[test]
    fn more_frames_than_the_limit_are_counted_and_refused() {
        let body = encode(&vec![vec![0u8; 3]; 7]);
        assert_eq!(split(&body, 7).unwrap().len(), 7);
        assert_eq!(split(&body, 5), Err(FrameError::TooMany { count: 7, max: 5 }));
        let e = split(&body, 5).unwrap_err().to_string();
        assert_eq!(e, "7 transactions, more than the limit of 5");
    }
}
