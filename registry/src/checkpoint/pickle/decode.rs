//! Payload decoding: LONG1/LONG4 integers and the protocol 0/2 string encodings.

use std::rc::Rc;

use super::heap::V;

/// LONG1/LONG4 payload (little-endian two's complement) to an int or big int.
pub(super) fn long_from_le(b: &[u8]) -> V {
    if b.is_empty() {
        return V::Int(0);
    }
    if b.len() <= 8 {
        let neg = b.last().is_some_and(|x| x & 0x80 != 0);
        let mut a = if neg { [0xffu8; 8] } else { [0u8; 8] };
        a[..b.len()].copy_from_slice(b);
        return V::Int(i64::from_le_bytes(a));
    }
    // Longer encodings may still fit when the extra bytes are sign extension.
    let neg = b.last().is_some_and(|x| x & 0x80 != 0);
    let fill = if neg { 0xff } else { 0x00 };
    let fits = b[8..].iter().all(|&x| x == fill) && ((b[7] & 0x80 != 0) == neg);
    if fits {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[..8]);
        return V::Int(i64::from_le_bytes(a));
    }
    V::Big(Rc::from(b))
}

/// Python 2 `str` payloads: text when it is UTF-8, else raw bytes (torch loads with
/// `encoding='utf-8'` for text; numpy data in old pickles is binary).
pub(super) fn bytes_or_str(b: Vec<u8>) -> V {
    match String::from_utf8(b) {
        Ok(s) => V::Str(Rc::from(s.as_str())),
        Err(e) => V::Bytes(Rc::from(e.into_bytes())),
    }
}

/// The quoted repr of protocol 0 STRING (`'abc'`, `"a\nb"`), unescaped.
pub(super) fn python_string_literal(l: &[u8]) -> Option<Vec<u8>> {
    let l = l.strip_suffix(b"\r").unwrap_or(l);
    let q = *l.first()?;
    if (q != b'\'' && q != b'"') || l.len() < 2 || *l.last()? != q {
        return None;
    }
    let body = &l[1..l.len() - 1];
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        let c = body[i];
        if c != b'\\' {
            out.push(c);
            i += 1;
            continue;
        }
        let e = *body.get(i + 1)?;
        i += 2;
        match e {
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'r' => out.push(b'\r'),
            b'0' => out.push(0),
            b'\\' | b'\'' | b'"' => out.push(e),
            b'x' => {
                let h = std::str::from_utf8(body.get(i..i + 2)?).ok()?;
                out.push(u8::from_str_radix(h, 16).ok()?);
                i += 2;
            }
            other => {
                out.push(b'\\');
                out.push(other);
            }
        }
    }
    Some(out)
}

/// Protocol 0 UNICODE payload: latin-1 with `\uXXXX` / `\UXXXXXXXX` escapes.
pub(super) fn raw_unicode_escape(l: &[u8]) -> String {
    let mut out = String::with_capacity(l.len());
    let mut i = 0;
    while i < l.len() {
        let c = l[i];
        if c == b'\\' {
            let width = match l.get(i + 1) {
                Some(b'u') => 4,
                Some(b'U') => 8,
                _ => 0,
            };
            if width > 0 {
                if let Some(ch) = l
                    .get(i + 2..i + 2 + width)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                    .and_then(char::from_u32)
                {
                    out.push(ch);
                    i += 2 + width;
                    continue;
                }
            }
        }
        out.push(char::from(c));
        i += 1;
    }
    out
}
