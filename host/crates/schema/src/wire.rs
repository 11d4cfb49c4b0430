//! The Confluent wire format: a zero byte, the schema id (4 bytes, big
//! endian), then the encoded payload.

/// Bytes before the payload.
pub const HEADER_LEN: usize = 5;

/// Splits a framed record into its schema id and payload.
pub fn split(bytes: &[u8]) -> Result<(u32, &[u8]), String> {
    match bytes {
        [0, a, b, c, d, payload @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), payload)),
        [magic, ..] if bytes.len() >= HEADER_LEN => Err(format!(
            "not in the schema registry's wire format: the first byte is {magic}, not 0"
        )),
        _ => Err(format!(
            "not in the schema registry's wire format: {} bytes, fewer than its {HEADER_LEN}-byte header",
            bytes.len()
        )),
    }
}

/// Appends the header for schema `id`; the payload follows.
pub fn frame(id: u32, out: &mut Vec<u8>) {
    out.push(0);
    out.extend_from_slice(&id.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_framed_payload_splits_back() {
        let mut out = Vec::new();
        frame(258, &mut out);
        out.extend_from_slice(b"xyz");
        assert_eq!(split(&out), Ok((258, &b"xyz"[..])));
    }

    #[test]
    fn a_wrong_magic_byte_or_a_short_record_says_so() {
        assert!(
            split(&[1, 0, 0, 0, 1, 9])
                .unwrap_err()
                .contains("first byte is 1")
        );
        assert!(split(&[0, 0, 1]).unwrap_err().contains("3 bytes"));
        assert!(split(&[]).unwrap_err().contains("0 bytes"));
    }
}
