//! The first IFD of a classic TIFF, read without decoding anything: the few tags our decoders look
//! at before handing the file to the `tiff` crate (palette maps in `tiff_palette`, the alpha kind
//! in `decode`).

pub(super) const TYPE_SHORT: u16 = 3;

/// One entry of the first IFD (classic TIFF: 12 bytes).
#[derive(Debug, Clone, Copy)]
pub(super) struct Entry {
    /// Byte offset of the entry itself in the file.
    pub(super) at: usize,
    tag: u16,
    typ: u16,
    count: u32,
}

/// The first IFD of a classic (not Big) TIFF, read without decoding anything.
pub(super) struct Ifd<'a> {
    bytes: &'a [u8],
    pub(super) big_endian: bool,
    entries: Vec<Entry>,
}

impl<'a> Ifd<'a> {
    pub(super) fn parse(bytes: &'a [u8]) -> Option<Self> {
        let big_endian = bytes.starts_with(b"MM");
        let mut ifd = Ifd {
            bytes,
            big_endian,
            entries: Vec::new(),
        };
        let start = ifd.u32_at(4)? as usize;
        let count = usize::from(ifd.u16_at(start)?);
        for i in 0..count {
            let at = start.checked_add(2 + 12 * i)?;
            ifd.entries.push(Entry {
                at,
                tag: ifd.u16_at(at)?,
                typ: ifd.u16_at(at + 2)?,
                count: ifd.u32_at(at + 4)?,
            });
        }
        Some(ifd)
    }

    pub(super) fn u16_at(&self, o: usize) -> Option<u16> {
        let b: [u8; 2] = self.bytes.get(o..o.checked_add(2)?)?.try_into().ok()?;
        Some(if self.big_endian {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        })
    }

    pub(super) fn u32_at(&self, o: usize) -> Option<u32> {
        let b: [u8; 4] = self.bytes.get(o..o.checked_add(4)?)?.try_into().ok()?;
        Some(if self.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    }

    pub(super) fn entry(&self, tag: u16) -> Option<Entry> {
        self.entries.iter().copied().find(|e| e.tag == tag)
    }

    /// The first value of a SHORT (or LONG) tag, stored in the entry's value field.
    pub(super) fn first_short(&self, tag: u16) -> Option<u16> {
        let e = self.entry(tag)?;
        match e.typ {
            TYPE_SHORT => self.u16_at(e.at + 8),
            4 => self.u32_at(e.at + 8).and_then(|v| u16::try_from(v).ok()),
            _ => None,
        }
    }

    /// All values of a SHORT tag (inline when they fit in 4 bytes, else at the offset).
    pub(super) fn shorts(&self, tag: u16) -> Option<Vec<u16>> {
        let e = self.entry(tag)?;
        if e.typ != TYPE_SHORT {
            return None;
        }
        let n = e.count as usize;
        let base = if n <= 2 {
            e.at + 8
        } else {
            self.u32_at(e.at + 8)? as usize
        };
        (0..n).map(|i| self.u16_at(base + 2 * i)).collect()
    }
}
