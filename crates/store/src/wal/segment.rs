//! WAL segment files: naming, record framing and replay.
//!
//! A segment is `<data_dir>/wal/<seq, 20 digits>.wal`, a sequence of records
//! `u32 LE payload length | u32 LE CRC32C(payload) | payload`. Replay reads records in order and
//! tolerates damage: a record whose CRC fails but whose frame is intact is skipped; the bytes
//! after the last good record (a torn write, garbage) are truncated away. Neither is fatal.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, ErrorKind, Read};
use std::path::{Path, PathBuf};

use crate::api::StoreError;

pub(crate) const HEADER_LEN: usize = 8;
/// No single record may be larger than this; a bigger length is taken as damage.
pub(crate) const MAX_RECORD: u32 = 512 * 1024 * 1024;

pub(crate) fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.wal"))
}

/// Segment files in `dir`, in sequence order, with their sizes.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf, u64)>, StoreError> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| StoreError::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io(dir, e))?;
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(seq) = name
            .strip_suffix(".wal")
            .and_then(|s| s.parse::<u64>().ok())
        else {
            continue;
        };
        let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
        out.push((seq, path, size));
    }
    out.sort_by_key(|(seq, _, _)| *seq);
    Ok(out)
}

/// Appends one framed record to `buf`.
pub(crate) fn frame(buf: &mut Vec<u8>, payload: &[u8]) {
    buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    buf.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    buf.extend_from_slice(payload);
}

/// What replaying one segment found.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct ReplayReport {
    pub records: u64,
    pub corrupt_skipped: u64,
    /// Bytes cut off the end (torn or garbage tail).
    pub truncated_bytes: u64,
    /// Size after replay.
    pub bytes: u64,
}

/// Reads until `buf` is full or the file ends; returns how many bytes were read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Calls `on_record` with every intact record of the segment, in order, then truncates any
/// damaged tail.
pub(crate) fn replay(
    path: &Path,
    mut on_record: impl FnMut(&[u8]),
) -> Result<ReplayReport, StoreError> {
    let io = |e| StoreError::io(path, e);
    let file = File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut report = ReplayReport::default();
    let mut offset: u64 = 0;
    // End of the last record whose checksum matched: everything after it is the torn tail.
    let mut good_end: u64 = 0;
    let mut payload = Vec::new();
    loop {
        let mut header = [0u8; HEADER_LEN];
        let n = read_full(&mut reader, &mut header).map_err(io)?;
        if n < HEADER_LEN {
            break;
        }
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let end = offset + HEADER_LEN as u64 + u64::from(len);
        if len > MAX_RECORD || end > size {
            break;
        }
        payload.resize(len as usize, 0);
        if read_full(&mut reader, &mut payload).map_err(io)? < len as usize {
            break;
        }
        offset = end;
        if crc32c::crc32c(&payload) == crc {
            on_record(&payload);
            report.records += 1;
            good_end = end;
        } else {
            report.corrupt_skipped += 1;
        }
    }
    // Skipped records after the last good one are part of the damaged tail, not separate losses.
    if good_end < size {
        let file = OpenOptions::new().write(true).open(path).map_err(io)?;
        file.set_len(good_end).map_err(io)?;
        file.sync_all().map_err(io)?;
        report.truncated_bytes = size - good_end;
    }
    report.bytes = good_end;
    Ok(report)
}

/// Syncs a directory so a created or removed file name is durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write_records(path: &Path, payloads: &[&[u8]]) -> Vec<u8> {
        let mut buf = Vec::new();
        for p in payloads {
            frame(&mut buf, p);
        }
        std::fs::File::create(path)
            .unwrap()
            .write_all(&buf)
            .unwrap();
        buf
    }

    fn replay_all(path: &Path) -> (Vec<Vec<u8>>, ReplayReport) {
        let mut got = Vec::new();
        let report = replay(path, |p| got.push(p.to_vec())).unwrap();
        (got, report)
    }

    #[test]
    fn torn_tails_are_cut_and_middle_damage_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = segment_path(dir.path(), 1);
        let full = write_records(&path, &[b"one", b"two", b"three"]);
        // every truncation point keeps the records before it
        for cut in 0..full.len() {
            std::fs::write(&path, &full[..cut]).unwrap();
            let (got, report) = replay_all(&path);
            let whole = [11usize, 22, 35].iter().filter(|&&e| e <= cut).count();
            assert_eq!(got.len(), whole, "cut at {cut}");
            assert_eq!(std::fs::metadata(&path).unwrap().len(), report.bytes);
        }
        // a flipped payload byte in the middle record: first and last survive
        let mut bad = full.clone();
        bad[11 + 8] ^= 0xff;
        std::fs::write(&path, &bad).unwrap();
        let (got, report) = replay_all(&path);
        assert_eq!(got, vec![b"one".to_vec(), b"three".to_vec()]);
        assert_eq!(report.corrupt_skipped, 1);
        assert_eq!(report.truncated_bytes, 0);
        // garbage appended: cut away
        let mut garbage = full.clone();
        garbage.extend_from_slice(&[0xff; 5]);
        garbage.extend_from_slice(&[3, 0, 0, 0, 1, 2, 3, 4, b'x', b'y', b'z']);
        std::fs::write(&path, &garbage).unwrap();
        let (got, report) = replay_all(&path);
        assert_eq!(got.len(), 3);
        assert_eq!(report.truncated_bytes, 16);
        assert_eq!(std::fs::read(&path).unwrap(), full);
    }
}
