//! Where a slide file's bytes come from, read by range so that a slide is never read into memory whole: a
//! file on disk ([`FileSource`]), bytes already in memory (`Bytes`), or anything else that can answer a byte
//! range (the node's blob store implements [`RandomAccess`] over object-store range requests).
//!
//! A TIFF's structure (IFDs, tag arrays) is parsed through [`SourceCursor`], a `Read + Seek` view that reads in
//! blocks of [`BLOCK`] bytes, since the `tiff` crate reads entries a few bytes at a time; tiles are read with
//! one [`RandomAccess::read_at`] each.

use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;

use bytes::Bytes;

/// Random access to the bytes of one immutable file. Implementations may block (disk, network): call them
/// off the async threads.
pub trait RandomAccess: Send + Sync {
    /// The file's length in bytes.
    fn size(&self) -> u64;
    /// `len` bytes from `offset`; fewer only at the end of the file.
    fn read_at(&self, offset: u64, len: usize) -> std::io::Result<Bytes>;
}

impl RandomAccess for Bytes {
    fn size(&self) -> u64 {
        self.len() as u64
    }

    fn read_at(&self, offset: u64, len: usize) -> std::io::Result<Bytes> {
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(self.len());
        let end = start.saturating_add(len).min(self.len());
        Ok(self.slice(start..end))
    }
}

/// A file on disk, read with positional reads (several tiles of one slide can be read at once).
pub struct FileSource {
    file: std::fs::File,
    size: u64,
}

impl FileSource {
    pub fn open(path: &std::path::Path) -> std::io::Result<Self> {
        let file = std::fs::File::open(path)?;
        let size = file.metadata()?.len();
        Ok(FileSource { file, size })
    }
}

impl RandomAccess for FileSource {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, offset: u64, len: usize) -> std::io::Result<Bytes> {
        let len = usize::try_from(self.size.saturating_sub(offset))
            .unwrap_or(usize::MAX)
            .min(len);
        let mut buf = vec![0u8; len];
        read_exact_at(&self.file, &mut buf, offset)?;
        Ok(Bytes::from(buf))
    }
}

#[cfg(unix)]
fn read_exact_at(f: &std::fs::File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(f, buf, offset)
}

#[cfg(windows)]
fn read_exact_at(f: &std::fs::File, mut buf: &mut [u8], mut offset: u64) -> std::io::Result<()> {
    while !buf.is_empty() {
        match std::os::windows::fs::FileExt::seek_read(f, buf, offset)? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
        }
    }
    Ok(())
}

/// Bytes read at once by a [`SourceCursor`].
pub const BLOCK: usize = 64 * 1024;

/// A `Read + Seek` view of a [`RandomAccess`] that keeps the last block it read.
pub struct SourceCursor {
    source: Arc<dyn RandomAccess>,
    pos: u64,
    block_start: u64,
    block: Bytes,
}

impl SourceCursor {
    pub fn new(source: Arc<dyn RandomAccess>) -> Self {
        SourceCursor {
            source,
            pos: 0,
            block_start: 0,
            block: Bytes::new(),
        }
    }
}

impl Read for SourceCursor {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() || self.pos >= self.source.size() {
            return Ok(0);
        }
        let in_block = self
            .pos
            .checked_sub(self.block_start)
            .filter(|&o| o < self.block.len() as u64);
        let offset = match in_block {
            Some(o) => o as usize,
            None if buf.len() >= BLOCK => {
                // A large read (a tag array, a tile) goes straight through.
                let b = self.source.read_at(self.pos, buf.len())?;
                buf[..b.len()].copy_from_slice(&b);
                self.pos += b.len() as u64;
                return Ok(b.len());
            }
            None => {
                self.block = self.source.read_at(self.pos, BLOCK)?;
                self.block_start = self.pos;
                0
            }
        };
        let n = (self.block.len() - offset).min(buf.len());
        buf[..n].copy_from_slice(&self.block[offset..offset + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for SourceCursor {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let target = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.source.size().checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = target.ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "seek before the start of the file",
            )
        })?;
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_cursor_reads_what_memory_holds_across_blocks() {
        let data: Vec<u8> = (0..(3 * BLOCK + 123))
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let mem = Bytes::from(data.clone());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, &data).unwrap();
        let sources: [Arc<dyn RandomAccess>; 2] =
            [Arc::new(mem), Arc::new(FileSource::open(&path).unwrap())];
        for s in sources {
            assert_eq!(s.size(), data.len() as u64);
            assert_eq!(&s.read_at(10, 5).unwrap()[..], &data[10..15]);
            assert_eq!(s.read_at(data.len() as u64 - 2, 10).unwrap().len(), 2);
            let mut c = SourceCursor::new(s);
            let mut out = Vec::new();
            let mut small = [0u8; 1000];
            // Small reads across block boundaries, a seek back, a large read, the end.
            c.seek(SeekFrom::Start(BLOCK as u64 - 10)).unwrap();
            c.read_exact(&mut small).unwrap();
            assert_eq!(&small[..], &data[BLOCK - 10..BLOCK + 990]);
            c.seek(SeekFrom::Current(-2000)).unwrap();
            c.read_exact(&mut small[..4]).unwrap();
            assert_eq!(&small[..4], &data[BLOCK - 1010..BLOCK - 1006]);
            c.seek(SeekFrom::Start(0)).unwrap();
            c.read_to_end(&mut out).unwrap();
            assert_eq!(out, data);
            assert_eq!(c.seek(SeekFrom::End(-1)).unwrap(), data.len() as u64 - 1);
            assert!(c.seek(SeekFrom::Current(-(data.len() as i64))).is_err());
        }
    }
}
