//! A ZIP archive of files written while it streams: entries are stored (media
//! does not compress), each followed by a data descriptor, so the CRC is taken
//! on the way through and no file is read twice or copied to a temporary file.
//! With stored entries and data descriptors the archive's length is a function
//! of the names and sizes alone ([`ZipPlan::length`]), known before the first
//! byte: `GET /api/download-result/{id}` of a collection sends it as
//! `Content-Length`.
//!
//! Plain ZIP (no ZIP64): an archive of at most 65 534 entries whose offsets and
//! sizes stay under 4 GiB; a larger one is refused up front
//! ([`ZipError::TooLarge`]).

use std::path::PathBuf;

use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};

const LOCAL_HEADER: u64 = 30;
const DATA_DESCRIPTOR: u64 = 16;
const CENTRAL_HEADER: u64 = 46;
const END_OF_CENTRAL_DIRECTORY: u64 = 22;
/// Bit 3: sizes and CRC follow the data in a data descriptor.
const FLAG_DATA_DESCRIPTOR: u16 = 0x0008;
/// Bit 11: the name is UTF-8.
const FLAG_UTF8: u16 = 0x0800;
const VERSION: u16 = 20;
const CRC32: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

#[derive(Debug, thiserror::Error)]
pub enum ZipError {
    #[error("the archive would pass 4 GiB or 65 534 files; download the files one by one")]
    TooLarge,
    #[error("{0} changed while it was archived")]
    Changed(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// One file of the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZipEntry {
    /// The name inside the archive (see [`safe_name`]).
    pub name: String,
    pub path: PathBuf,
    /// The file's size when the plan was made; a file that no longer has it
    /// fails the stream (the announced length would be wrong).
    pub size: u64,
    /// MS-DOS time and date of the entry.
    pub dos_time: u16,
    pub dos_date: u16,
}

/// The entries, checked to fit a plain ZIP.
#[derive(Debug, Clone)]
pub struct ZipPlan {
    entries: Vec<ZipEntry>,
    length: u64,
}

impl ZipPlan {
    pub fn new(entries: Vec<ZipEntry>) -> Result<Self, ZipError> {
        if entries.len() >= 0xFFFF {
            return Err(ZipError::TooLarge);
        }
        let limit = u64::from(u32::MAX);
        let mut offset = 0u64;
        let mut central = 0u64;
        for e in &entries {
            let name = e.name.len() as u64;
            if e.size >= limit || offset >= limit || name > 0xFFFF {
                return Err(ZipError::TooLarge);
            }
            offset += LOCAL_HEADER + name + e.size + DATA_DESCRIPTOR;
            central += CENTRAL_HEADER + name;
        }
        if offset >= limit || central >= limit {
            return Err(ZipError::TooLarge);
        }
        Ok(Self { entries, length: offset + central + END_OF_CENTRAL_DIRECTORY })
    }

    /// The archive's exact length in bytes.
    pub fn length(&self) -> u64 {
        self.length
    }

    pub fn entries(&self) -> &[ZipEntry] {
        &self.entries
    }

    /// Writes the archive to `out`, reading each file once.
    pub async fn write<W: AsyncWrite + Unpin>(&self, out: &mut W) -> Result<(), ZipError> {
        let mut central = Vec::new();
        let mut offset = 0u64;
        let mut buf = vec![0u8; 64 * 1024];
        for e in &self.entries {
            let flags = flags(&e.name);
            let mut local = Vec::with_capacity(30 + e.name.len());
            put32(&mut local, 0x0403_4b50);
            put16(&mut local, VERSION);
            put16(&mut local, flags);
            put16(&mut local, 0); // stored
            put16(&mut local, e.dos_time);
            put16(&mut local, e.dos_date);
            put32(&mut local, 0); // CRC, sizes: in the data descriptor
            put32(&mut local, 0);
            put32(&mut local, 0);
            put16(&mut local, e.name.len() as u16);
            put16(&mut local, 0);
            local.extend_from_slice(e.name.as_bytes());
            out.write_all(&local).await?;

            let mut file = tokio::fs::File::open(&e.path).await?;
            let mut digest = CRC32.digest();
            let mut left = e.size;
            while left > 0 {
                let want = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
                let n = file.read(&mut buf[..want]).await?;
                if n == 0 {
                    return Err(ZipError::Changed(e.name.clone()));
                }
                digest.update(&buf[..n]);
                out.write_all(&buf[..n]).await?;
                left -= n as u64;
            }
            if file.read(&mut buf[..1]).await? != 0 {
                return Err(ZipError::Changed(e.name.clone()));
            }
            let crc = digest.finalize();
            let size = e.size as u32; // < 4 GiB, checked by `new`
            let mut descriptor = Vec::with_capacity(16);
            put32(&mut descriptor, 0x0807_4b50);
            put32(&mut descriptor, crc);
            put32(&mut descriptor, size);
            put32(&mut descriptor, size);
            out.write_all(&descriptor).await?;

            put32(&mut central, 0x0201_4b50);
            put16(&mut central, VERSION); // made by
            put16(&mut central, VERSION); // needed
            put16(&mut central, flags);
            put16(&mut central, 0);
            put16(&mut central, e.dos_time);
            put16(&mut central, e.dos_date);
            put32(&mut central, crc);
            put32(&mut central, size);
            put32(&mut central, size);
            put16(&mut central, e.name.len() as u16);
            put16(&mut central, 0); // extra
            put16(&mut central, 0); // comment
            put16(&mut central, 0); // disk
            put16(&mut central, 0); // internal attributes
            put32(&mut central, 0); // external attributes
            put32(&mut central, offset as u32);
            central.extend_from_slice(e.name.as_bytes());
            offset += LOCAL_HEADER + e.name.len() as u64 + e.size + DATA_DESCRIPTOR;
        }
        let count = self.entries.len() as u16;
        let mut end = Vec::with_capacity(22);
        put32(&mut end, 0x0605_4b50);
        put16(&mut end, 0);
        put16(&mut end, 0);
        put16(&mut end, count);
        put16(&mut end, count);
        put32(&mut end, central.len() as u32);
        put32(&mut end, offset as u32);
        put16(&mut end, 0);
        out.write_all(&central).await?;
        out.write_all(&end).await?;
        out.flush().await?;
        Ok(())
    }
}

fn flags(name: &str) -> u16 {
    if name.is_ascii() { FLAG_DATA_DESCRIPTOR } else { FLAG_DATA_DESCRIPTOR | FLAG_UTF8 }
}

fn put16(v: &mut Vec<u8>, n: u16) {
    v.extend_from_slice(&n.to_le_bytes());
}

fn put32(v: &mut Vec<u8>, n: u32) {
    v.extend_from_slice(&n.to_le_bytes());
}

/// MS-DOS `(time, date)` of a moment (1980-01-01 for anything earlier).
pub fn dos_datetime(t: time::OffsetDateTime) -> (u16, u16) {
    if t.year() < 1980 {
        return (0, (1 << 5) | 1);
    }
    let time = (u16::from(t.hour()) << 11) | (u16::from(t.minute()) << 5) | u16::from(t.second() / 2);
    let year = u16::try_from(t.year() - 1980).unwrap_or(127).min(127);
    let date = (year << 9) | (u16::from(u8::from(t.month())) << 5) | u16::from(t.day());
    (time, date)
}

/// A name for an archive entry: ASCII letters, digits, `.`, `-` and `_` only (no
/// folder, no leading dot), at most 120 bytes, prefixed with `prefix`, and made
/// unique against `taken` (`-2`, `-3`, … before the extension).
pub fn safe_name(prefix: &str, file_name: &str, taken: &mut std::collections::HashSet<String>) -> String {
    let base: String = file_name
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') { c } else { '_' })
        .collect();
    let base = base.trim_start_matches('.');
    let base: String = if base.is_empty() { "file".into() } else { base.chars().take(120).collect() };
    let (stem, ext) = match base.rfind('.') {
        Some(i) if i > 0 => (&base[..i], &base[i..]),
        _ => (base.as_str(), ""),
    };
    let mut name = format!("{prefix}{stem}{ext}");
    let mut n = 2;
    while !taken.insert(name.clone()) {
        name = format!("{prefix}{stem}-{n}{ext}");
        n += 1;
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(dir: &std::path::Path, name: &str, bytes: &[u8]) -> ZipEntry {
        let path = dir.join(name.replace('/', "_"));
        std::fs::write(&path, bytes).expect("write");
        let (dos_time, dos_date) = dos_datetime(time::macros::datetime!(2026-12-02 06:30:10 UTC));
        ZipEntry { name: name.into(), path, size: bytes.len() as u64, dos_time, dos_date }
    }

    #[test]
    fn names_are_safe_and_unique() {
        let mut taken = std::collections::HashSet::new();
        assert_eq!(safe_name("002-", "downloads/x/clip 1.mp4", &mut taken), "002-clip_1.mp4");
        assert_eq!(safe_name("002-", "clip 1.mp4", &mut taken), "002-clip_1-2.mp4");
        assert_eq!(safe_name("", "../../.hidden", &mut taken), "hidden");
        assert_eq!(safe_name("", "", &mut taken), "file");
        assert_eq!(safe_name("", "Ünïcode\u{202e}.mp4", &mut taken), "_n_code_.mp4");
    }

    #[test]
    fn dos_times_pack_fields() {
        let (t, d) = dos_datetime(time::macros::datetime!(2026-12-02 06:30:10 UTC));
        assert_eq!((t >> 11, (t >> 5) & 63, (t & 31) * 2), (6, 30, 10));
        assert_eq!(((d >> 9) + 1980, (d >> 5) & 15, d & 31), (2026, 12, 2));
    }

    #[tokio::test]
    async fn the_length_is_known_up_front_and_the_archive_reads_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let plan = ZipPlan::new(vec![
            entry(dir.path(), "001-a.mp4", b"hello"),
            entry(dir.path(), "002-b.mp4", &big),
            entry(dir.path(), "003-empty.bin", b""),
        ])
        .expect("plan");
        let mut out = Vec::new();
        plan.write(&mut out).await.expect("write");
        assert_eq!(out.len() as u64, plan.length());
        // Local header of the first entry: stored, data descriptor flag, name.
        assert_eq!(&out[..4], b"PK\x03\x04");
        assert_eq!(u16::from_le_bytes([out[6], out[7]]), FLAG_DATA_DESCRIPTOR);
        assert_eq!(u16::from_le_bytes([out[8], out[9]]), 0);
        assert_eq!(&out[30..39], b"001-a.mp4");
        // The data descriptor after "hello" carries its CRC-32 (0x3610a686).
        assert_eq!(&out[39..44], b"hello");
        assert_eq!(&out[44..48], b"PK\x07\x08");
        assert_eq!(u32::from_le_bytes([out[48], out[49], out[50], out[51]]), 0x3610_a686);
        // End of central directory: 3 entries.
        let end = &out[out.len() - 22..];
        assert_eq!(&end[..4], b"PK\x05\x06");
        assert_eq!(u16::from_le_bytes([end[10], end[11]]), 3);

        // A reader that is not this code: Python's zipfile (CRC checked by testzip).
        let zip = dir.path().join("t.zip");
        std::fs::write(&zip, &out).expect("zip");
        #[allow(clippy::disallowed_methods)] // the test's own reader, not a service child
        let check = std::process::Command::new("python3")
            .args([
                "-c",
                "import sys, zipfile\nz = zipfile.ZipFile(sys.argv[1])\nassert z.testzip() is None\n\
                 print(';'.join(f'{i.filename}:{i.compress_type}:{i.file_size}' for i in z.infolist()))\n\
                 assert z.read('002-b.mp4') == bytes(i % 251 for i in range(200000))",
            ])
            .arg(&zip)
            .output()
            .expect("python3");
        assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
        assert_eq!(
            String::from_utf8_lossy(&check.stdout).trim(),
            "001-a.mp4:0:5;002-b.mp4:0:200000;003-empty.bin:0:0"
        );
    }

    #[tokio::test]
    async fn a_file_that_changed_size_fails_the_stream_and_huge_plans_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut e = entry(dir.path(), "a.mp4", b"hello");
        e.size = 9;
        let plan = ZipPlan::new(vec![e.clone()]).expect("plan");
        assert!(matches!(plan.write(&mut Vec::new()).await, Err(ZipError::Changed(_))));
        e.size = 3;
        let plan = ZipPlan::new(vec![e.clone()]).expect("plan");
        assert!(matches!(plan.write(&mut Vec::new()).await, Err(ZipError::Changed(_))));
        e.size = 5 * 1024 * 1024 * 1024;
        assert!(matches!(ZipPlan::new(vec![e.clone()]), Err(ZipError::TooLarge)));
        e.size = 3 * 1024 * 1024 * 1024;
        assert!(matches!(ZipPlan::new(vec![e.clone(), e]), Err(ZipError::TooLarge)));
    }
}
