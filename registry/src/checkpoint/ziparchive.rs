//! A minimal zip central-directory reader over positioned reads, so that opening a 200 MB
//! checkpoint reads only the end of the file and one local header per record, without faulting
//! pages of the memory map in (page faults map neighbouring pages too: reading the local headers
//! through the map cost 116 MiB of RSS on a 200 MiB file).
//!
//! Why not the `zip` crate for reading: its archive constructor scans the whole file for
//! end-of-central-directory candidates. Format: PKWARE APPNOTE 6.3.10, sections 4.3.6
//! (local header), 4.3.12 (central header), 4.3.14-4.3.16 (zip64 and end records), as torch's
//! writer (`caffe2/serialize/inline_container.cc`, miniz) produces them. Compressed records
//! (only in re-zipped files) are handed to the `zip` crate by the caller.

/// One record of the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    /// 0 = stored, 8 = deflate, ...
    pub method: u16,
    pub crc32: u32,
    pub compressed_size: u64,
    pub size: u64,
    /// Offset of the record's data (after its local header).
    pub data_start: u64,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

const EOCD_SIG: u32 = 0x0605_4b50;
const EOCD64_LOCATOR_SIG: u32 = 0x0706_4b50;
const EOCD64_SIG: u32 = 0x0606_4b50;
const CENTRAL_SIG: u32 = 0x0201_4b50;
const LOCAL_SIG: u32 = 0x0403_4b50;

/// Positioned reads of the archive: `read(offset, len)` returns exactly `len` bytes or `None`
/// when they are not all in the file.
pub trait ReadAt {
    fn len(&self) -> u64;
    fn read(&self, offset: u64, len: usize) -> Option<Vec<u8>>;
}

/// Lists the records of the zip archive, in central-directory order.
pub fn entries(src: &dyn ReadAt) -> Result<Vec<Entry>, String> {
    let file_len = src.len();
    // The end record is 22 bytes plus a comment of at most 65535 bytes.
    let tail_len = file_len.min(22 + 65535) as usize;
    let tail_start = file_len - tail_len as u64;
    let tail = src
        .read(tail_start, tail_len)
        .ok_or("cannot read the end of the file")?;
    let eocd = (0..=tail.len().saturating_sub(22))
        .rev()
        .find(|&i| u32_at(&tail, i) == Some(EOCD_SIG))
        .ok_or("no end-of-central-directory record (truncated file?)")?;
    let mut count = u64::from(u16_at(&tail, eocd + 10).ok_or("truncated end record")?);
    let mut cd_size = u64::from(u32_at(&tail, eocd + 12).ok_or("truncated end record")?);
    let mut cd_offset = u64::from(u32_at(&tail, eocd + 16).ok_or("truncated end record")?);
    if eocd >= 20 && u32_at(&tail, eocd - 20) == Some(EOCD64_LOCATOR_SIG) {
        let rec = u64_at(&tail, eocd - 12).ok_or("truncated zip64 locator")?;
        let r = src
            .read(rec, 56)
            .ok_or_else(|| format!("zip64 end record expected at byte {rec}"))?;
        if u32_at(&r, 0) != Some(EOCD64_SIG) {
            return Err(format!("zip64 end record expected at byte {rec}"));
        }
        count = u64_at(&r, 32).ok_or("truncated zip64 end record")?;
        cd_size = u64_at(&r, 40).ok_or("truncated zip64 end record")?;
        cd_offset = u64_at(&r, 48).ok_or("truncated zip64 end record")?;
    }
    let cd_end = cd_offset
        .checked_add(cd_size)
        .ok_or("central directory size overflows")?;
    if cd_end > file_len {
        return Err(format!(
            "central directory ({cd_size} bytes at {cd_offset}) runs past the end of the file"
        ));
    }
    let b = src
        .read(cd_offset, cd_size as usize)
        .ok_or("cannot read the central directory")?;
    let b = b.as_slice();
    // Each central header is at least 46 bytes: a count beyond that is corrupt (and would
    // make us reserve memory for nothing).
    if count > cd_size / 46 + 1 {
        return Err(format!(
            "{count} records declared in a {cd_size}-byte central directory"
        ));
    }
    let mut out = Vec::with_capacity(count as usize);
    let mut at = 0usize;
    for i in 0..count {
        let bad = |what: &str| {
            format!(
                "central directory record {i} at byte {}: {what}",
                cd_offset + at as u64
            )
        };
        if u32_at(b, at) != Some(CENTRAL_SIG) {
            return Err(bad("bad signature"));
        }
        let method = u16_at(b, at + 10).ok_or_else(|| bad("truncated"))?;
        let crc32 = u32_at(b, at + 16).ok_or_else(|| bad("truncated"))?;
        let mut compressed_size = u64::from(u32_at(b, at + 20).ok_or_else(|| bad("truncated"))?);
        let mut size = u64::from(u32_at(b, at + 24).ok_or_else(|| bad("truncated"))?);
        let name_len = usize::from(u16_at(b, at + 28).ok_or_else(|| bad("truncated"))?);
        let extra_len = usize::from(u16_at(b, at + 30).ok_or_else(|| bad("truncated"))?);
        let comment_len = usize::from(u16_at(b, at + 32).ok_or_else(|| bad("truncated"))?);
        let mut local = u64::from(u32_at(b, at + 42).ok_or_else(|| bad("truncated"))?);
        let name = b
            .get(at + 46..at + 46 + name_len)
            .ok_or_else(|| bad("truncated name"))?;
        let name = String::from_utf8_lossy(name).into_owned();
        let extra = b
            .get(at + 46 + name_len..at + 46 + name_len + extra_len)
            .ok_or_else(|| bad("truncated extra field"))?;
        // Zip64 extended information (APPNOTE 4.5.3): the 64-bit values, in this order, of the
        // fields whose 32-bit value is 0xFFFFFFFF.
        let mut e = 0;
        while e + 4 <= extra.len() {
            let id = u16_at(extra, e).unwrap_or(0);
            let len = usize::from(u16_at(extra, e + 2).unwrap_or(0));
            if id == 0x0001 {
                let mut f = e + 4;
                for field in [&mut size, &mut compressed_size, &mut local] {
                    if *field == u64::from(u32::MAX) {
                        *field = u64_at(extra, f).ok_or_else(|| bad("truncated zip64 field"))?;
                        f += 8;
                    }
                }
            }
            e += 4 + len;
        }
        let lh = src
            .read(local, 30)
            .ok_or_else(|| bad(&format!("no local header at byte {local}")))?;
        if u32_at(&lh, 0) != Some(LOCAL_SIG) {
            return Err(bad(&format!("no local header at byte {local}")));
        }
        let lname = usize::from(u16_at(&lh, 26).ok_or_else(|| bad("truncated local header"))?);
        let lextra = usize::from(u16_at(&lh, 28).ok_or_else(|| bad("truncated local header"))?);
        let data_start = local + 30 + lname as u64 + lextra as u64;
        if data_start
            .checked_add(compressed_size)
            .is_none_or(|end| end > file_len)
        {
            return Err(bad(&format!(
                "`{name}` ({compressed_size} bytes at {data_start}) runs past the end of the file"
            )));
        }
        out.push(Entry {
            name,
            method,
            crc32,
            compressed_size,
            size,
            data_start,
        });
        at += 46 + name_len + extra_len + comment_len;
    }
    Ok(out)
}

/// CRC-32 (IEEE 802.3, as zip uses); only the small `data.pkl` is checked at open.
pub fn crc32(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, slot) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
            *slot = c;
        }
        t
    });
    let mut c = !0u32;
    for &x in data {
        c = table[((c ^ u32::from(x)) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_known_value() {
        // zlib.crc32(b"123456789") == 0xCBF43926
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }
}
