//! An inbox writer's commit log: where a batch is made durable, instead of
//! the database's journal.
//!
//! Why a log of our own: fjall's journal is a sparse file (`set_len`), so
//! every `fdatasync` of it also writes the blocks it just allocated and the
//! inode that maps them: two device writes in series. Measured on this
//! project's machine, `write` + `fdatasync` of 200 bytes costs 150 µs of CPU
//! and 365 µs (p99 2.5 ms) on a growing file against 85–100 µs and 190–250
//! µs (p99 0.5 ms) on one whose blocks were written before. So a writer
//! commits its batch to fjall without an fsync (it survives kill -9 in the
//! OS's cache) and makes it durable by appending it here, to a segment that
//! was zero-filled when it was created and is reused afterwards.
//!
//! A log is a directory of segments, `<n>.seg`, each [`SEGMENT_BYTES`]
//! (more only for a record larger than that). A segment opens with a
//! header block naming the lsn of its first record; records follow,
//! back to back:
//!
//! ```text
//! header (4096 B): "SMVLOG01" | first lsn u64 | crc32 of both u32 | zeros
//! record:          payload length u32 | crc32 of lsn and payload u32 | lsn u64 | payload
//! ```
//!
//! Reading stops at the first record that is not the next lsn or whose
//! checksum fails: the torn tail of a crash, zeros, or what an earlier use
//! of a reused segment left. What is in the log and not in the database is
//! the driver's to apply again (it keeps the lsn it applied in the same
//! database batch). A segment is reused only after the driver made the
//! database itself durable (a checkpoint), so nothing in it is needed any
//! more.
//!
//! The log holds bytes and lsns only: what a payload means, and when to
//! checkpoint, is the driver's ([`super::shards`]).

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The size a segment is created with (zero-filled).
pub const SEGMENT_BYTES: u64 = 4 * 1024 * 1024;

/// Segments a log keeps: the one written, and the one written before it
/// (free once the database is checkpointed past it).
const SEGMENTS: usize = 2;

const HEADER_BYTES: u64 = 4096;
const MAGIC: &[u8; 8] = b"SMVLOG01";
const RECORD_HEAD: u64 = 16;

/// A record read back from a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub lsn: u64,
    pub payload: Vec<u8>,
}

/// One writer's commit log, open for appending.
#[derive(Debug)]
pub struct CommitLog {
    dir: PathBuf,
    /// The segment appended to, and which of the [`SEGMENTS`] it is.
    file: File,
    index: usize,
    /// Where the next record goes, and the segment's size.
    at: u64,
    len: u64,
    /// The lsn the next record must have.
    next_lsn: u64,
    /// Written since the last [`CommitLog::sync`].
    dirty: bool,
}

impl CommitLog {
    /// Opens (creating) the log in `dir`, and reads back the records that
    /// may not be in the database yet, oldest first. Appending goes on
    /// after them, in the same segment (over a torn tail, if any): they
    /// stay readable until the log rotates, which the driver does only
    /// after it applied them and checkpointed its database.
    pub fn open(dir: &Path) -> std::io::Result<(CommitLog, Vec<Record>)> {
        std::fs::create_dir_all(dir)?;
        let mut newest: Option<(u64, usize)> = None;
        for index in 0..SEGMENTS {
            let path = segment_path(dir, index);
            if path.exists() {
                if let Some(first) = read_header(&path)? {
                    newest = newest.max(Some((first, index)));
                }
            }
        }
        // Every record before the newest segment's first is in the database
        // durably (the driver checkpoints before it rotates): the records
        // needed are the newest segment's.
        let Some((first, index)) = newest else {
            return Ok((CommitLog::begin(dir, 0, 1)?, Vec::new()));
        };
        let path = segment_path(dir, index);
        let (records, end) = read_records(&path, first)?;
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        let len = file.metadata()?.len();
        let log = CommitLog {
            dir: dir.to_path_buf(),
            file,
            index,
            at: end,
            len,
            next_lsn: records.last().map_or(first, |r| r.lsn + 1),
            dirty: false,
        };
        Ok((log, records))
    }

    /// Makes the next record `next_lsn` if that is past the log's own
    /// (the database applied batches whose records a crash took from the
    /// log before they were synced: they promised nothing). Appending then
    /// moves to the other segment, since a segment's records run without
    /// a gap; every record in the log is in the database already.
    pub fn resume_at(&mut self, next_lsn: u64) -> std::io::Result<()> {
        if next_lsn > self.next_lsn {
            self.next_lsn = next_lsn;
            self.rotate()?;
        }
        Ok(())
    }

    /// The lsn the next record must have.
    pub fn next_lsn(&self) -> u64 {
        self.next_lsn
    }

    /// Whether a record of `payload_len` bytes fits in the segment being
    /// written. When it does not, the driver checkpoints its database and
    /// calls [`CommitLog::rotate`].
    pub fn fits(&self, payload_len: usize) -> bool {
        self.at + RECORD_HEAD + payload_len as u64 <= self.len
    }

    /// Appends a record, written to the OS (durable after [`CommitLog::sync`]).
    /// `lsn` must be [`CommitLog::next_lsn`].
    pub fn append(&mut self, lsn: u64, payload: &[u8]) -> std::io::Result<()> {
        if lsn != self.next_lsn {
            return Err(std::io::Error::other(format!(
                "commit log: record {lsn} appended where {} was due",
                self.next_lsn
            )));
        }
        let mut record = Vec::with_capacity(RECORD_HEAD as usize + payload.len());
        record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        record.extend_from_slice(&record_crc(lsn, payload).to_le_bytes());
        record.extend_from_slice(&lsn.to_le_bytes());
        record.extend_from_slice(payload);
        self.file.write_all_at(&record, self.at)?;
        self.at += record.len() as u64;
        self.len = self.len.max(self.at);
        self.next_lsn += 1;
        self.dirty = true;
        Ok(())
    }

    /// Makes every record appended so far durable (one `fdatasync`; none
    /// if nothing was appended since the last).
    pub fn sync(&mut self) -> std::io::Result<()> {
        if self.dirty {
            self.file.sync_data()?;
            self.dirty = false;
        }
        Ok(())
    }

    /// Moves appending to the other segment, which the next record (lsn
    /// [`CommitLog::next_lsn`]) opens. Only after the database holds every
    /// record of that segment durably: its records are overwritten.
    pub fn rotate(&mut self) -> std::io::Result<()> {
        self.sync()?;
        *self = CommitLog::begin(&self.dir, (self.index + 1) % SEGMENTS, self.next_lsn)?;
        Ok(())
    }

    /// Opens segment `index` for records from `first_lsn` on: created and
    /// zero-filled if new, its header rewritten (and synced) if reused.
    fn begin(dir: &Path, index: usize, first_lsn: u64) -> std::io::Result<CommitLog> {
        let path = segment_path(dir, index);
        let fresh = !path.exists();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        if fresh || file.metadata()?.len() < SEGMENT_BYTES {
            // Writing the zeros (not `set_len`, which leaves holes) is the
            // point: later syncs then write data blocks only.
            let zeros = vec![0u8; 1024 * 1024];
            let mut at = 0;
            while at < SEGMENT_BYTES {
                file.write_all_at(&zeros, at)?;
                at += zeros.len() as u64;
            }
        }
        let mut header = vec![0u8; HEADER_BYTES as usize];
        header[..8].copy_from_slice(MAGIC);
        header[8..16].copy_from_slice(&first_lsn.to_le_bytes());
        let crc = crc32fast::hash(&header[..16]);
        header[16..20].copy_from_slice(&crc.to_le_bytes());
        file.write_all_at(&header, 0)?;
        // Zero the first record's place so that what an earlier use left
        // right after the header is not read as this use's.
        file.write_all_at(&[0u8; RECORD_HEAD as usize], HEADER_BYTES)?;
        if fresh {
            file.sync_all()?;
            File::open(dir)?.sync_all()?;
        } else {
            file.sync_data()?;
        }
        let len = file.metadata()?.len();
        Ok(CommitLog {
            dir: dir.to_path_buf(),
            file,
            index,
            at: HEADER_BYTES,
            len,
            next_lsn: first_lsn,
            dirty: false,
        })
    }
}

fn segment_path(dir: &Path, index: usize) -> PathBuf {
    dir.join(format!("{index}.seg"))
}

fn record_crc(lsn: u64, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&lsn.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

/// The first lsn a segment's header names, or `None` for a header that is
/// not whole (a crash while it was rewritten: nothing in it is needed).
fn read_header(path: &Path) -> std::io::Result<Option<u64>> {
    let mut header = [0u8; 20];
    let mut file = File::open(path)?;
    if file.read_exact(&mut header).is_err() {
        return Ok(None);
    }
    let crc = u32::from_le_bytes(header[16..20].try_into().expect("4 bytes"));
    if &header[..8] != MAGIC || crc32fast::hash(&header[..16]) != crc {
        return Ok(None);
    }
    Ok(Some(u64::from_le_bytes(
        header[8..16].try_into().expect("8 bytes"),
    )))
}

/// The run of records of a segment from `first` on, and where it ends.
fn read_records(path: &Path, first: u64) -> std::io::Result<(Vec<Record>, u64)> {
    let bytes = std::fs::read(path)?;
    let mut records = Vec::new();
    let mut at = HEADER_BYTES as usize;
    let mut expected = first;
    while let Some(head) = bytes.get(at..at + RECORD_HEAD as usize) {
        let len = u32::from_le_bytes(head[0..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(head[4..8].try_into().expect("4 bytes"));
        let lsn = u64::from_le_bytes(head[8..16].try_into().expect("8 bytes"));
        let start = at + RECORD_HEAD as usize;
        let Some(payload) = bytes.get(start..start + len) else {
            break;
        };
        if len == 0 || lsn != expected || record_crc(lsn, payload) != crc {
            break;
        }
        records.push(Record {
            lsn,
            payload: payload.to_vec(),
        });
        expected += 1;
        at = start + len;
    }
    Ok((records, at as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lsns(records: &[Record]) -> Vec<u64> {
        records.iter().map(|r| r.lsn).collect()
    }

    fn reopen(dir: &Path) -> (CommitLog, Vec<u64>) {
        let (log, records) = CommitLog::open(dir).unwrap();
        (log, lsns(&records))
    }

    #[test]
    fn records_come_back_in_order_after_a_reopen_and_appending_goes_on_after_them() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, records) = reopen(dir.path());
        assert!(records.is_empty());
        for lsn in 1..=3 {
            log.append(lsn, format!("batch {lsn}").as_bytes()).unwrap();
        }
        log.sync().unwrap();
        drop(log);
        let (mut log, records) = CommitLog::open(dir.path()).unwrap();
        assert_eq!(lsns(&records), [1, 2, 3]);
        assert_eq!(records[1].payload, b"batch 2");
        assert_eq!(log.next_lsn(), 4);
        // A crash before the driver checkpointed: the records are read
        // again, with those appended since.
        log.append(4, b"batch 4").unwrap();
        drop(log);
        assert_eq!(reopen(dir.path()).1, [1, 2, 3, 4]);
    }

    #[test]
    fn a_torn_record_ends_the_log_and_the_next_append_overwrites_it() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = reopen(dir.path());
        log.append(1, b"whole").unwrap();
        log.append(2, b"torn in the middle of it").unwrap();
        let (file, at) = (log.file.try_clone().unwrap(), log.at);
        drop(log);
        // The crash: the last record's second half never reached the disk.
        file.write_all_at(&[0u8; 9], at - 9).unwrap();
        let (mut log, records) = reopen(dir.path());
        assert_eq!(records, [1]);
        log.append(2, b"again").unwrap();
        log.append(3, b"three").unwrap();
        drop(log);
        let (_, records) = CommitLog::open(dir.path()).unwrap();
        assert_eq!(lsns(&records), [1, 2, 3]);
        assert_eq!(records[1].payload, b"again");
    }

    #[test]
    fn after_a_rotation_only_the_new_segment_is_read_and_a_reused_one_shows_nothing_old() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = reopen(dir.path());
        for lsn in 1..=5 {
            log.append(lsn, &[lsn as u8; 100]).unwrap();
        }
        log.rotate().unwrap();
        log.append(6, b"six").unwrap();
        log.sync().unwrap();
        assert_eq!(reopen(dir.path()).1, [6]);
        log.rotate().unwrap();
        // Back in the first segment, whose records 1..=5 are still there
        // after the new header: only record 7 may be read from it.
        log.append(7, b"seven").unwrap();
        log.sync().unwrap();
        drop(log);
        assert_eq!(reopen(dir.path()).1, [7]);
        // A rotation with nothing appended after it: nothing to read, and
        // the lsns go on.
        let (mut log, _) = reopen(dir.path());
        log.rotate().unwrap();
        drop(log);
        let (log, records) = reopen(dir.path());
        assert!(records.is_empty());
        assert_eq!(log.next_lsn(), 8);
    }

    #[test]
    fn resuming_past_the_log_starts_a_segment_at_that_lsn() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = reopen(dir.path());
        log.append(1, b"one").unwrap();
        drop(log);
        let (mut log, _) = reopen(dir.path());
        // Not past it: appending goes on where it was.
        log.resume_at(2).unwrap();
        assert_eq!(log.index, 0);
        // The database holds batches up to 9 that the log lost.
        log.resume_at(10).unwrap();
        log.append(10, b"ten").unwrap();
        drop(log);
        assert_eq!(reopen(dir.path()).1, [10]);
    }

    #[test]
    fn a_torn_segment_header_leaves_the_segment_out() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = reopen(dir.path());
        log.append(1, b"one").unwrap();
        log.rotate().unwrap();
        log.append(2, b"two").unwrap();
        let file = log.file.try_clone().unwrap();
        drop(log);
        file.write_all_at(&[0xff; 4], 10).unwrap();
        // What the older segment holds is in the database already; the
        // driver skips it by its applied lsn.
        assert_eq!(reopen(dir.path()).1, [1]);
    }

    #[test]
    fn a_record_larger_than_a_segment_is_kept_whole() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = reopen(dir.path());
        let big = vec![7u8; SEGMENT_BYTES as usize + 10];
        assert!(!log.fits(big.len()));
        log.rotate().unwrap();
        log.append(1, &big).unwrap();
        log.append(2, b"after").unwrap();
        log.sync().unwrap();
        drop(log);
        let (_, records) = CommitLog::open(dir.path()).unwrap();
        assert_eq!(lsns(&records), [1, 2]);
        assert_eq!(records[0].payload, big);
    }

    #[test]
    fn an_out_of_turn_lsn_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = reopen(dir.path());
        assert!(log.append(2, b"x").is_err());
        log.append(1, b"x").unwrap();
    }
}
