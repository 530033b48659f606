//! The per-block trace-id index (`index.bin`): which rows of `data.parquet` hold which trace.
//!
//! Layout (little-endian): magic `MTIX`, u32 version, u32 entry count, then per trace in
//! ascending id order 16 id bytes and a u32 row count (a trace's first row is the sum of the
//! counts before it, since rows are sorted by trace id); then a u32 CRC32C of all the bytes
//! before it. Kept in memory (with first rows) for every open block, so trace by id costs a
//! binary search per block and then reads only that trace's rows.

use model::TraceId;

const MAGIC: &[u8; 4] = b"MTIX";
const VERSION: u32 = 1;
const ENTRY: usize = 20;
const HEADER: usize = 12;

#[derive(Debug, Default, Clone)]
pub(crate) struct TraceIndex {
    ids: Vec<[u8; 16]>,
    rows: Vec<(u32, u32)>,
}

impl TraceIndex {
    /// Adds the next trace; ids must come in ascending order, rows follow the previous trace's.
    pub fn push(&mut self, id: TraceId, rows: u32) {
        debug_assert!(self.ids.last().is_none_or(|last| last < id.as_bytes()));
        let first = self.rows.last().map_or(0, |(f, n)| f + n);
        self.ids.push(id.to_bytes());
        self.rows.push((first, rows));
    }

    /// Total rows covered.
    pub fn rows(&self) -> u64 {
        self.rows
            .last()
            .map_or(0, |(f, n)| u64::from(*f) + u64::from(*n))
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// `(first row, row count)` of a trace.
    pub fn lookup(&self, id: &TraceId) -> Option<(u32, u32)> {
        self.ids
            .binary_search(id.as_bytes())
            .ok()
            .map(|i| self.rows[i])
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + ENTRY * self.ids.len() + 4);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&(self.ids.len() as u32).to_le_bytes());
        for (id, (_, n)) in self.ids.iter().zip(&self.rows) {
            out.extend_from_slice(id);
            out.extend_from_slice(&n.to_le_bytes());
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Parses and checks an index; any damage is an error naming what is wrong.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() < HEADER + 4 {
            return Err(format!("index too short ({} bytes)", bytes.len()));
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        let stored = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
        if crc32c::crc32c(body) != stored {
            return Err("index checksum mismatch".into());
        }
        if &body[..4] != MAGIC {
            return Err("index magic missing".into());
        }
        let u32_at =
            |at: usize| u32::from_le_bytes([body[at], body[at + 1], body[at + 2], body[at + 3]]);
        let version = u32_at(4);
        if version != VERSION {
            return Err(format!("index version {version} not supported"));
        }
        let count = u32_at(8) as usize;
        if body.len() != HEADER + count * ENTRY {
            return Err(format!(
                "index holds {} bytes for {count} entries",
                body.len()
            ));
        }
        let mut index = TraceIndex {
            ids: Vec::with_capacity(count),
            rows: Vec::with_capacity(count),
        };
        let mut first: u32 = 0;
        for entry in body[HEADER..].chunks_exact(ENTRY) {
            let mut id = [0u8; 16];
            id.copy_from_slice(&entry[..16]);
            if index.ids.last().is_some_and(|last| *last >= id) {
                return Err("index ids out of order".into());
            }
            let n = u32::from_le_bytes([entry[16], entry[17], entry[18], entry[19]]);
            index.ids.push(id);
            index.rows.push((first, n));
            first = first
                .checked_add(n)
                .ok_or_else(|| "index row counts overflow".to_owned())?;
        }
        Ok(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_damage() {
        let mut idx = TraceIndex::default();
        idx.push(TraceId::from_halves(0, 1), 3);
        idx.push(TraceId::from_halves(0, 7), 2);
        idx.push(TraceId::from_halves(5, 0), 1);
        let bytes = idx.encode();
        let back = TraceIndex::decode(&bytes).unwrap();
        assert_eq!((back.len(), back.rows()), (3, 6));
        assert_eq!(back.lookup(&TraceId::from_halves(0, 7)), Some((3, 2)));
        assert_eq!(back.lookup(&TraceId::from_halves(0, 8)), None);
        let mut bad = bytes.clone();
        bad[20] ^= 1;
        assert!(TraceIndex::decode(&bad).is_err());
        assert!(TraceIndex::decode(&bytes[..10]).is_err());
        assert!(TraceIndex::decode(&[]).is_err());
    }
}
