//! A layer blob's bytes: compression, digests and sizes.
//!
//! Layer blobs may be uncompressed tar, gzip or zstd; the compression is
//! detected from magic bytes ([`Compression::detect`]), never from the media
//! type. Reading a blob once ([`summarize_blob`]) gives its digest and size as
//! stored and as the uncompressed tar (the diffID), computed here, never
//! trusted from a manifest or a config.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

/// Compression of a layer blob, detected from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    /// A plain tar stream.
    Uncompressed,
    /// gzip (possibly several concatenated members).
    Gzip,
    /// zstd (possibly several concatenated frames).
    Zstd,
}

impl Compression {
    /// Detects the compression from the first bytes of a blob (16 are plenty).
    /// Anything that is not gzip, zstd, bzip2 or xz is taken to be a plain tar
    /// (an empty tar is all zeros, so there is no magic to require).
    pub fn detect(head: &[u8]) -> Result<Compression> {
        if head.starts_with(&[0x1f, 0x8b]) {
            Ok(Compression::Gzip)
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Ok(Compression::Zstd)
        } else if head.len() >= 10
            && head.starts_with(b"BZh")
            && head[3].is_ascii_digit()
            && &head[4..10] == b"1AY&SY"
        {
            bail!("layer blob is bzip2-compressed: not supported (only tar, gzip, zstd)")
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            bail!("layer blob is xz-compressed: not supported (only tar, gzip, zstd)")
        } else {
            Ok(Compression::Uncompressed)
        }
    }

    /// The compression a layer media type claims, if it says.
    pub fn from_media_type(media_type: &str) -> Option<Compression> {
        if media_type.ends_with("gzip") {
            Some(Compression::Gzip)
        } else if media_type.ends_with("zstd") {
            Some(Compression::Zstd)
        } else if media_type.ends_with(".tar") {
            Some(Compression::Uncompressed)
        } else {
            None
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compression::Uncompressed => "uncompressed",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        })
    }
}

/// Wraps `reader` in the decompressor its first bytes call for and returns
/// the detected compression with the uncompressed stream.
pub fn decompress<'a, R: Read + 'a>(mut reader: R) -> Result<(Compression, Box<dyn Read + 'a>)> {
    let mut head = Vec::with_capacity(16);
    (&mut reader)
        .take(16)
        .read_to_end(&mut head)
        .context("reading the first bytes of a blob")?;
    let compression = Compression::detect(&head)?;
    let stream = io::Cursor::new(head).chain(reader);
    let out: Box<dyn Read + 'a> = match compression {
        Compression::Uncompressed => Box::new(stream),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(stream)),
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::new(stream).context("starting a zstd decoder")?)
        }
    };
    Ok((compression, out))
}

/// A reader that hashes (sha256) and counts what passes through it.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// A writer that hashes (sha256) and counts what is written to it.
pub(crate) struct HashingWriter {
    pub(crate) hasher: Sha256,
    pub(crate) count: u64,
}

impl HashingWriter {
    pub(crate) fn new() -> Self {
        HashingWriter {
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// `sha256:<hex>` of everything written.
    pub(crate) fn digest(self) -> String {
        format!("sha256:{}", hex::encode(self.hasher.finalize()))
    }
}

impl Write for HashingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.hasher.update(buf);
        self.count += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `sha256:<hex>` of a byte slice.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(bytes))
}

/// The hex sha256 of a byte slice (what a filesystem model's entries hold).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// What reading a whole layer blob tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobSummary {
    /// Detected compression.
    pub compression: Compression,
    /// `sha256:<hex>` of the blob as stored.
    pub digest: String,
    /// Size of the blob as stored.
    pub size: u64,
    /// `sha256:<hex>` of the uncompressed tar.
    pub diff_id: String,
    /// Size of the uncompressed tar.
    pub uncompressed_size: u64,
}

/// Reads a layer blob once, hashing it both as stored and uncompressed.
pub fn summarize_blob<R: Read>(reader: R) -> Result<BlobSummary> {
    let mut raw = HashingReader {
        inner: reader,
        hasher: Sha256::new(),
        count: 0,
    };
    let mut plain = HashingWriter::new();
    let compression = {
        let (compression, mut stream) = decompress(&mut raw)?;
        io::copy(&mut stream, &mut plain)
            .with_context(|| format!("decompressing a {compression} blob"))?;
        compression
    };
    // Whatever the decompressor did not need (padding after the last frame)
    // is still part of the blob.
    io::copy(&mut raw, &mut io::sink()).context("reading the rest of a blob")?;
    let uncompressed_size = plain.count;
    Ok(BlobSummary {
        compression,
        digest: format!("sha256:{}", hex::encode(raw.hasher.finalize())),
        size: raw.count,
        diff_id: plain.digest(),
        uncompressed_size,
    })
}

/// [`summarize_blob`] of a file.
pub(crate) fn summarize_file(path: &Path) -> Result<BlobSummary> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    summarize_blob(io::BufReader::new(file))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;

    #[test]
    fn digests_of_bytes() {
        let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(sha256_hex(b""), empty);
        assert_eq!(sha256_digest(b""), format!("sha256:{empty}"));
    }

    #[test]
    fn compression_is_detected_by_magic() {
        assert_eq!(
            Compression::detect(&[0x1f, 0x8b, 8]).unwrap(),
            Compression::Gzip
        );
        assert_eq!(
            Compression::detect(&[0x28, 0xb5, 0x2f, 0xfd, 0]).unwrap(),
            Compression::Zstd
        );
        assert_eq!(
            Compression::detect(&[0; 16]).unwrap(),
            Compression::Uncompressed
        );
        assert_eq!(
            Compression::detect(b"etc/\0").unwrap(),
            Compression::Uncompressed
        );
        let err = Compression::detect(&[0xfd, b'7', b'z', b'X', b'Z', 0, 0]).unwrap_err();
        assert!(err.to_string().contains("xz"), "{err}");
        let err = Compression::detect(b"BZh91AY&SY....").unwrap_err();
        assert!(err.to_string().contains("bzip2"), "{err}");
    }

    #[test]
    fn summarize_gives_the_same_diff_id_for_every_compression() {
        let mut layer = LayerBuilder::new();
        layer
            .dir("etc", 0o755)
            .file("etc/hosts", b"127.0.0.1 localhost\n", 0o644);
        let tar = layer.finish();
        let plain = summarize_blob(&tar[..]).unwrap();
        let gz = summarize_blob(&gzip(&tar)[..]).unwrap();
        let zs = summarize_blob(&zstd_compress(&tar)[..]).unwrap();
        assert_eq!(plain.compression, Compression::Uncompressed);
        assert_eq!(gz.compression, Compression::Gzip);
        assert_eq!(zs.compression, Compression::Zstd);
        assert_eq!(plain.diff_id, sha256_digest(&tar));
        assert_eq!(plain.digest, plain.diff_id);
        assert_eq!(gz.diff_id, plain.diff_id);
        assert_eq!(zs.diff_id, plain.diff_id);
        assert_eq!(gz.uncompressed_size, tar.len() as u64);
        assert_eq!(zs.uncompressed_size, tar.len() as u64);
        assert_eq!(gz.digest, sha256_digest(&gzip(&tar)));
        assert_eq!(gz.size, gzip(&tar).len() as u64);
        assert_ne!(gz.digest, gz.diff_id);
    }
}
