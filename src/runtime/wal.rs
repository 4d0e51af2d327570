//! An actor's commits as page images: reading the frames its commits appended to the SQLite WAL file since the last
//! read ([`WalCursor`]), encoding them as one log entry ([`PageSet`]), and applying entries to a copy of the
//! database ([`apply_entry`]). Cluster mode ships these entries to its commit log and replays them on another node.
//!
//! Page images rather than row changes: they capture everything a commit did (schema changes, the runtime's own
//! tables, SQLite's free list) with no cooperation from the code that wrote, as LiteFS, Litestream and Rivet's depot
//! do. The WAL is read through a second file handle: the actor's connection holds SQLite's exclusive lock, which is
//! a lock inside SQLite, not on the file's bytes.
//!
//! What is stored is compressed ([`pack`], LZ4): an actor's pages are mostly free space and repeated text (a new
//! actor's whole file, ~80 KB, packs to ~5 KB), and every byte logged is a byte PostgreSQL writes twice (its WAL and
//! its table) and compresses again (TOAST) if we do not. [`unpack`] also reads the uncompressed entries and snapshots
//! of logs written before.
//!
//! The cursor relies on the runtime owning checkpoints (`wal_autocheckpoint = 0` in cluster mode): SQLite rewinds
//! the WAL only after a checkpoint, and the runtime checkpoints only once everything before it has been read and
//! shipped. A rewind is still detected (the header's salts change), so a read never mixes two generations.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;

const WAL_HEADER: u64 = 32;
const FRAME_HEADER: u64 = 24;
/// `FDY1`: the encoding of a [`PageSet`], so a log written by a future format is refused rather than misread.
const ENTRY_MAGIC: &[u8; 4] = b"FDY1";
/// `FDZ2`: a packed entry or snapshot: the unpacked length (u32 little-endian), the first [`CHECKSUM_LEN`] bytes of
/// the unpacked bytes' SHA-256, then an LZ4 block.
const PACKED_MAGIC: &[u8; 4] = b"FDZ2";
/// `FDZ1`: what [`pack`] wrote before it added the checksum (length, then the LZ4 block); still read.
const PACKED_V1_MAGIC: &[u8; 4] = b"FDZ1";
/// The start of every SQLite database file: how a snapshot stored before packing begins.
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";
/// Eight bytes of SHA-256: any damage the store or the network did goes unnoticed with odds of 2^-64, and the hash
/// is the one the tree already has (hardware SHA on this machine: ~1.5 GB/s, ~10 µs for a creation's entries).
const CHECKSUM_LEN: usize = 8;
const PACKED_HEADER: usize = 8 + CHECKSUM_LEN;
/// The most [`unpack`] will allocate: a corrupt length must not ask for more (an actor's file is far smaller).
const MAX_UNPACKED: usize = 1 << 30;

/// Where the next read of an actor's WAL starts.
#[derive(Debug, Clone, Default)]
pub struct WalCursor {
    /// Bytes of the WAL already read (the end of the last commit frame read), 0 before any.
    offset: u64,
    /// The salts of the WAL generation `offset` belongs to.
    salts: Option<(u32, u32)>,
}

/// The pages a run of commits left, each page's last image only, and the database's size after the last of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageSet {
    pub page_size: u32,
    /// Pages in the database after the last commit: applying truncates to this.
    pub db_pages: u32,
    pub pages: BTreeMap<u32, Vec<u8>>,
}

impl WalCursor {
    /// A cursor at the start of a WAL (a database opened with no WAL left to read, or right after a checkpoint that
    /// truncated it).
    pub fn new() -> Self {
        WalCursor::default()
    }

    /// Bytes of WAL read so far in this generation (to decide when to checkpoint).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The WAL was truncated by a checkpoint: the next read starts at its beginning.
    pub fn reset(&mut self) {
        *self = WalCursor::default();
    }

    /// The pages of every commit completed since the last read, or `None` if there is none. Frames after the last
    /// commit frame (a transaction still open, or one rolled back after spilling) are left for a later read.
    pub fn read_new(&mut self, wal_path: &Path) -> io::Result<Option<PageSet>> {
        let mut file = match File::open(wal_path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let len = file.metadata()?.len();
        if len < WAL_HEADER {
            return Ok(None);
        }
        let mut header = [0u8; WAL_HEADER as usize];
        file.read_exact(&mut header)?;
        let magic = be32(&header, 0);
        if magic & !1 != 0x377f_0682 {
            return Err(invalid(format!("not a WAL file (magic {magic:#x})")));
        }
        let page_size = be32(&header, 8);
        if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
            return Err(invalid(format!("WAL page size {page_size}")));
        }
        let salts = (be32(&header, 16), be32(&header, 20));
        let start = if self.salts == Some(salts) { self.offset.max(WAL_HEADER) } else { WAL_HEADER };
        if start >= len {
            return Ok(None);
        }
        let mut rest = Vec::with_capacity((len - start) as usize);
        file.seek(SeekFrom::Start(start))?;
        file.take(len - start).read_to_end(&mut rest)?;
        let frame = (FRAME_HEADER + u64::from(page_size)) as usize;
        let mut pending: Vec<(u32, &[u8])> = Vec::new();
        let mut set = PageSet { page_size, db_pages: 0, pages: BTreeMap::new() };
        let mut committed_end = None;
        let mut at = 0usize;
        while at + frame <= rest.len() {
            let head = &rest[at..at + FRAME_HEADER as usize];
            // A frame of an older generation (left beyond the end after a rewind) carries other salts.
            if (be32(head, 8), be32(head, 12)) != salts {
                break;
            }
            let (pgno, commit_size) = (be32(head, 0), be32(head, 4));
            pending.push((pgno, &rest[at + FRAME_HEADER as usize..at + frame]));
            at += frame;
            if commit_size != 0 {
                for (pgno, page) in pending.drain(..) {
                    set.pages.insert(pgno, page.to_vec());
                }
                set.db_pages = commit_size;
                committed_end = Some(start + at as u64);
            }
        }
        let Some(end) = committed_end else { return Ok(None) };
        self.offset = end;
        self.salts = Some(salts);
        // Pages past the final size were freed by a later commit of the run: applying them would only be truncated.
        let db_pages = set.db_pages;
        set.pages.retain(|&pgno, _| pgno <= db_pages);
        Ok(Some(set))
    }
}

impl PageSet {
    /// `FDY1`, page size, final page count, page count, then each page number and image (little-endian).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.pages.len() * (4 + self.page_size as usize));
        out.extend_from_slice(ENTRY_MAGIC);
        out.extend_from_slice(&self.page_size.to_le_bytes());
        out.extend_from_slice(&self.db_pages.to_le_bytes());
        out.extend_from_slice(&(self.pages.len() as u32).to_le_bytes());
        for (pgno, page) in &self.pages {
            out.extend_from_slice(&pgno.to_le_bytes());
            out.extend_from_slice(page);
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> io::Result<PageSet> {
        if bytes.len() < 16 || &bytes[..4] != ENTRY_MAGIC {
            return Err(invalid("not a foundry log entry".into()));
        }
        let (page_size, db_pages, count) = (le32(bytes, 4), le32(bytes, 8), le32(bytes, 12));
        let each = 4 + page_size as usize;
        if !(512..=65536).contains(&page_size) || bytes.len() != 16 + count as usize * each {
            return Err(invalid(format!(
                "log entry of {} bytes does not hold {count} pages of {page_size}",
                bytes.len()
            )));
        }
        let mut pages = BTreeMap::new();
        for chunk in bytes[16..].chunks_exact(each) {
            let pgno = le32(chunk, 0);
            if pgno == 0 || pgno > db_pages {
                return Err(invalid(format!("page {pgno} outside a database of {db_pages} pages")));
            }
            pages.insert(pgno, chunk[4..].to_vec());
        }
        Ok(PageSet { page_size, db_pages, pages })
    }
}

/// Writes an entry's pages into a database file (one with no WAL) and truncates it to the entry's final size.
pub fn apply_entry(db: &File, entry: &[u8]) -> io::Result<()> {
    let set = PageSet::decode(entry)?;
    let size = u64::from(set.page_size);
    for (pgno, page) in &set.pages {
        db.write_all_at(page, u64::from(pgno - 1) * size)?;
    }
    db.set_len(u64::from(set.db_pages) * size)
}

/// An entry or a snapshot as stored in the log: compressed and checksummed, behind [`PACKED_MAGIC`].
pub fn pack(raw: &[u8]) -> Vec<u8> {
    let packed = lz4_flex::block::compress(raw);
    let mut out = Vec::with_capacity(PACKED_HEADER + packed.len());
    out.extend_from_slice(PACKED_MAGIC);
    // An actor's file is far below 4 GiB (SQLite's own page limits aside, `unpack` refuses over 1 GiB).
    out.extend_from_slice(&u32::try_from(raw.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(&checksum(raw));
    out.extend_from_slice(&packed);
    out
}

/// What [`pack`] stored, its checksum verified; what it stored before checksums (`FDZ1`); or the bytes themselves
/// when they were stored uncompressed (logs written before packing: a snapshot is then an SQLite file, an entry
/// starts with `FDY1`). Anything else is refused: damage to the first bytes must not pass for an old format.
pub fn unpack(stored: &[u8]) -> io::Result<std::borrow::Cow<'_, [u8]>> {
    let (header, expect) = match stored.get(..4) {
        Some(m) if m == PACKED_MAGIC && stored.len() >= PACKED_HEADER => {
            (PACKED_HEADER, Some(&stored[8..PACKED_HEADER]))
        }
        Some(m) if m == PACKED_V1_MAGIC && stored.len() >= 8 => (8, None),
        Some(m) if m == ENTRY_MAGIC => return Ok(std::borrow::Cow::Borrowed(stored)),
        _ if stored.starts_with(SQLITE_MAGIC) || stored.is_empty() => return Ok(std::borrow::Cow::Borrowed(stored)),
        _ => return Err(invalid("a log entry in no known format (damaged?)".to_owned())),
    };
    let len = le32(stored, 4) as usize;
    if len > MAX_UNPACKED {
        return Err(invalid(format!("a packed log entry claims {len} bytes")));
    }
    let raw =
        lz4_flex::block::decompress(&stored[header..], len).map_err(|e| invalid(format!("a packed log entry: {e}")))?;
    if raw.len() != len {
        return Err(invalid(format!("a packed log entry unpacked to {} bytes, not {len}", raw.len())));
    }
    if let Some(expect) = expect {
        if checksum(&raw)[..] != *expect {
            return Err(invalid("a packed log entry fails its checksum (damaged in the store or on the way)".into()));
        }
    }
    Ok(std::borrow::Cow::Owned(raw))
}

fn checksum(raw: &[u8]) -> [u8; CHECKSUM_LEN] {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(raw);
    let mut out = [0u8; CHECKSUM_LEN];
    out.copy_from_slice(&digest[..CHECKSUM_LEN]);
    out
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::connection::SimpleConnection;
    use diesel::prelude::*;
    use diesel::sql_types::{BigInt, Text};

    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = BigInt)]
        n: i64,
        #[diesel(sql_type = Text)]
        v: String,
    }

    fn open(path: &Path) -> SqliteConnection {
        let mut c = SqliteConnection::establish(path.to_str().unwrap()).unwrap();
        c.batch_execute("PRAGMA locking_mode = EXCLUSIVE; PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0;")
            .unwrap();
        c
    }

    fn rows(path: &Path) -> Vec<(i64, String)> {
        let mut c = SqliteConnection::establish(path.to_str().unwrap()).unwrap();
        let r: Vec<Row> = diesel::sql_query("SELECT n, v FROM t ORDER BY n").load(&mut c).unwrap();
        r.into_iter().map(|r| (r.n, r.v)).collect()
    }

    /// The shipping loop of cluster mode in miniature: a base copy, then entries read after each commit (with
    /// checkpoints that truncate the WAL in between) rebuild exactly the database the connection sees.
    #[test]
    fn entries_read_after_commits_rebuild_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.sqlite3");
        let wal = dir.path().join("a.sqlite3-wal");
        let mut conn = open(&path);
        conn.batch_execute("CREATE TABLE t (n INTEGER PRIMARY KEY, v TEXT NOT NULL); PRAGMA wal_checkpoint(TRUNCATE);")
            .unwrap();
        let base = std::fs::read(&path).unwrap();
        let mut cursor = WalCursor::new();
        let mut entries = Vec::new();
        for round in 0..6i64 {
            for i in 0..40 {
                let n = round * 40 + i;
                conn.batch_execute(&format!("INSERT INTO t VALUES ({n}, '{}')", "x".repeat((n % 7 * 300) as usize)))
                    .unwrap();
            }
            conn.batch_execute(&format!(
                "DELETE FROM t WHERE n % 5 = {round}; UPDATE t SET v = 'r{round}' WHERE n % 3 = 0"
            ))
            .unwrap();
            // An open transaction's spilled or pending frames are not part of any entry.
            entries.push(cursor.read_new(&wal).unwrap().expect("commits since the last read").encode());
            assert!(cursor.read_new(&wal).unwrap().is_none(), "nothing new after a read");
            if round % 2 == 1 {
                conn.batch_execute("PRAGMA wal_checkpoint(TRUNCATE);").unwrap();
                cursor.reset();
            }
        }
        conn.batch_execute("DELETE FROM t WHERE n > 100; VACUUM;").unwrap();
        entries.push(cursor.read_new(&wal).unwrap().expect("the vacuum's pages").encode());
        drop(conn);
        let expected = rows(&path);
        assert!(!expected.is_empty());

        let copy = dir.path().join("b.sqlite3");
        std::fs::write(&copy, &base).unwrap();
        let file = std::fs::OpenOptions::new().write(true).open(&copy).unwrap();
        for e in &entries {
            apply_entry(&file, e).unwrap();
        }
        drop(file);
        assert_eq!(rows(&copy), expected);
        let mut c = SqliteConnection::establish(copy.to_str().unwrap()).unwrap();
        #[derive(QueryableByName)]
        struct Check {
            #[diesel(sql_type = Text)]
            integrity_check: String,
        }
        let ok: Vec<Check> = diesel::sql_query("PRAGMA integrity_check").load(&mut c).unwrap();
        assert_eq!(ok[0].integrity_check, "ok");
    }

    #[test]
    fn a_rolled_back_transaction_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.sqlite3");
        let wal = dir.path().join("a.sqlite3-wal");
        let mut conn = open(&path);
        // A tiny cache makes the big transaction spill frames into the WAL before it rolls back.
        conn.batch_execute("PRAGMA cache_size = 2; CREATE TABLE t (n INTEGER PRIMARY KEY, v TEXT NOT NULL);").unwrap();
        let mut cursor = WalCursor::new();
        cursor.read_new(&wal).unwrap().expect("the table");
        let spilled: Result<(), diesel::result::Error> = conn.transaction(|c| {
            c.batch_execute(&format!(
                "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 2000) \
                 INSERT INTO t SELECT i, '{}' FROM s",
                "y".repeat(200)
            ))?;
            Err(diesel::result::Error::RollbackTransaction)
        });
        assert!(spilled.is_err());
        assert!(cursor.read_new(&wal).unwrap().is_none(), "a rolled-back transaction is no commit");
        conn.batch_execute("INSERT INTO t VALUES (1, 'kept')").unwrap();
        let set = cursor.read_new(&wal).unwrap().expect("the insert");
        assert!(set.pages.len() <= 3, "only the insert's pages, not the spilled ones: {}", set.pages.len());
    }

    #[test]
    fn packed_entries_unpack_to_what_was_packed_and_old_ones_read_as_they_are() {
        let set = PageSet {
            page_size: 4096,
            db_pages: 3,
            pages: BTreeMap::from([(2, vec![0u8; 4096]), (3, b"row".repeat(1365).into_iter().chain([0]).collect())]),
        };
        let raw = set.encode();
        let packed = pack(&raw);
        assert!(packed.len() < raw.len() / 10, "free space and repeats compress: {} of {}", packed.len(), raw.len());
        assert_eq!(PageSet::decode(&unpack(&packed).unwrap()).unwrap(), set);
        assert_eq!(&*unpack(&raw).unwrap(), &raw[..], "an entry stored before packing reads as it is");
        let sqlite = b"SQLite format 3\0 and the rest of a file".to_vec();
        assert_eq!(&*unpack(&sqlite).unwrap(), &sqlite[..]);
        assert!(unpack(&packed[..packed.len() - 3]).is_err(), "a truncated packed entry is refused");
        let mut lying = packed.clone();
        lying[4..8].copy_from_slice(&(u32::MAX).to_le_bytes());
        assert!(unpack(&lying).is_err(), "an absurd length is refused before allocating");
        // What `pack` wrote before checksums: magic, length, LZ4 block.
        let mut v1 = b"FDZ1".to_vec();
        v1.extend_from_slice(&(raw.len() as u32).to_le_bytes());
        v1.extend_from_slice(&lz4_flex::block::compress(&raw));
        assert_eq!(&*unpack(&v1).unwrap(), &raw[..], "an entry packed before checksums reads as it was");
    }

    #[test]
    fn damage_anywhere_in_a_packed_entry_is_refused() {
        let set = PageSet {
            page_size: 4096,
            db_pages: 2,
            pages: BTreeMap::from([(1, b"header".repeat(682).into_iter().chain([0; 4]).collect()), (2, vec![7; 4096])]),
        };
        let raw = set.encode();
        let packed = pack(&raw);
        // Every byte, one bit flipped at a time: the magic, the length, the checksum, literals and match offsets of
        // the LZ4 block. Some flips still decompress to other bytes (a literal changed): the checksum is what refuses
        // those. A few change nothing that is read (a match offset moved within a run of equal bytes): those unpack
        // to exactly what was packed.
        let mut decompressed_anyway = 0;
        for at in 0..packed.len() {
            for bit in [0, 3, 7] {
                let mut damaged = packed.clone();
                damaged[at] ^= 1 << bit;
                let len = le32(&damaged, 4) as usize;
                if at >= PACKED_HEADER
                    && lz4_flex::block::decompress(&damaged[PACKED_HEADER..], len)
                        .is_ok_and(|r| r.len() == len && r != raw)
                {
                    decompressed_anyway += 1;
                }
                if let Ok(read) = unpack(&damaged) {
                    assert_eq!(&*read, &raw[..], "byte {at} bit {bit} flipped was not noticed");
                }
            }
        }
        assert!(decompressed_anyway > 0, "the test reaches the cases only the checksum catches");
        assert!(unpack(b"XXXX and then some bytes").is_err(), "an unknown format is refused");
    }

    #[test]
    fn a_damaged_entry_is_refused() {
        let set = PageSet { page_size: 512, db_pages: 2, pages: BTreeMap::from([(2, vec![7u8; 512])]) };
        let bytes = set.encode();
        assert_eq!(PageSet::decode(&bytes).unwrap(), set);
        assert!(PageSet::decode(&bytes[..bytes.len() - 1]).is_err());
        let mut beyond = set.clone();
        beyond.db_pages = 1;
        assert!(PageSet::decode(&beyond.encode()).is_err(), "a page past the final size");
        assert!(PageSet::decode(b"FDY2\0\0\0\0\0\0\0\0\0\0\0\0").is_err());
    }
}
