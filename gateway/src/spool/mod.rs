//! The LINA spool: where a LINA call goes when the broker cannot confirm it,
//! because LINA never resends. Append-only segment files, each record
//! fsynced before the caller answers 200; drained into the broker, oldest
//! first, by `drain`; a drained segment is deleted (it holds personal data).
//! The directory is locked: two gateways must not share one spool.

mod drain;
mod record;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

pub use drain::run_drain;
pub use record::{SpoolRecord, Target};

/// A segment is sealed and a new one started past this size.
const SEGMENT_BYTES: u64 = 8 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("the spool is full ({0} bytes)")]
    Full(u64),
    #[error("the spool directory {0} is in use by another gateway")]
    Locked(PathBuf),
    #[error("writing to the spool failed (the call was not kept): {0}")]
    WriteFailed(std::io::Error),
    #[error("spool I/O failed: {0}")]
    Io(#[from] std::io::Error),
}

/// How much is waiting in the spool.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Depth {
    pub bytes: u64,
    pub events: u64,
}

#[derive(Clone, Copy, Debug, Default)]
struct Segment {
    bytes: u64,
    events: u64,
}

struct Active {
    sequence: u64,
    file: File,
    size: Segment,
}

#[derive(Default)]
struct State {
    active: Option<Active>,
    sealed: BTreeMap<u64, Segment>,
    next_sequence: u64,
}

impl State {
    fn depth(&self) -> Depth {
        let mut depth = Depth::default();
        for segment in self
            .sealed
            .values()
            .chain(self.active.iter().map(|active| &active.size))
        {
            depth.bytes += segment.bytes;
            depth.events += segment.events;
        }
        depth
    }
}

pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    /// Held open for the spool's lifetime: the exclusive lock lives with it.
    _lock: File,
    state: Mutex<State>,
    /// LINA calls refused because the spool was full: the one accepted loss.
    refused: AtomicU64,
    /// LINA calls refused because a write or fsync failed (a full disk).
    write_failures: AtomicU64,
    /// Segments set aside because a frame in them could not be read.
    damaged: AtomicU64,
    /// Test-only fault: the next append writes this many bytes, then fails.
    #[cfg(test)]
    short_write: Mutex<Option<usize>>,
}

impl Spool {
    /// Opens (creating) the spool in `dir`, locking it, and takes stock of
    /// the segments a previous run left (they are drained first).
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Spool, SpoolError> {
        std::fs::create_dir_all(dir)?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("LOCK"))?;
        if lock.try_lock().is_err() {
            return Err(SpoolError::Locked(dir.to_owned()));
        }
        let mut state = State::default();
        for (sequence, path) in segments_in(dir)? {
            let bytes = std::fs::read(&path)?;
            let (records, torn) = SpoolRecord::decode_all(&bytes);
            if torn {
                tracing::warn!(
                    message = "A spool segment ends in a torn record; it was never acknowledged.",
                    segment = sequence
                );
            }
            let size = Segment {
                bytes: bytes.len() as u64,
                events: records.len() as u64,
            };
            state.sealed.insert(sequence, size);
            state.next_sequence = state.next_sequence.max(sequence + 1);
        }
        let spool = Spool {
            dir: dir.to_owned(),
            max_bytes,
            _lock: lock,
            state: Mutex::new(state),
            refused: AtomicU64::new(0),
            write_failures: AtomicU64::new(0),
            damaged: AtomicU64::new(0),
            #[cfg(test)]
            short_write: Mutex::new(None),
        };
        let depth = spool.depth();
        if depth.events > 0 {
            tracing::info!(
                message = "Spool holds events from an earlier run.",
                events = depth.events,
                bytes = depth.bytes
            );
        }
        Ok(spool)
    }

    /// Appends `record` and makes it durable (fsync) before returning.
    /// Blocking: call it from a blocking task.
    pub fn append(&self, record: &SpoolRecord) -> Result<Depth, SpoolError> {
        let frame = record.encode();
        let mut state = self.lock_state();
        let depth = state.depth();
        if depth.bytes + frame.len() as u64 > self.max_bytes {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(SpoolError::Full(self.max_bytes));
        }
        if state
            .active
            .as_ref()
            .is_none_or(|active| active.size.bytes >= SEGMENT_BYTES)
        {
            self.start_segment(&mut state)?;
        }
        let Some(active) = state.active.as_mut() else {
            return Err(SpoolError::Io(std::io::Error::other("no active segment")));
        };
        if let Err(error) = self.write_durably(&mut active.file, &frame) {
            self.write_failures.fetch_add(1, Ordering::Relaxed);
            self.abandon_active(&mut state);
            return Err(SpoolError::WriteFailed(error));
        }
        active.size.bytes += frame.len() as u64;
        active.size.events += 1;
        Ok(state.depth())
    }

    fn write_durably(&self, file: &mut File, frame: &[u8]) -> std::io::Result<()> {
        #[cfg(test)]
        if let Some(written) = self
            .short_write
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
        {
            file.write_all(&frame[..written.min(frame.len())])?;
            return Err(std::io::Error::other("injected short write"));
        }
        file.write_all(frame)?;
        file.sync_data()
    }

    /// After a failed write or fsync: nothing is ever appended after the
    /// tear. The segment is cut back to its last good frame and sealed
    /// there (the next call starts a new segment). Should the cut fail too
    /// (the disk is gone), the segment still is sealed, and the drainer sets
    /// aside a segment it cannot read to the end, after draining what it can.
    fn abandon_active(&self, state: &mut State) {
        let Some(active) = state.active.take() else {
            return;
        };
        let cut = active
            .file
            .set_len(active.size.bytes)
            .and_then(|()| active.file.sync_all());
        if let Err(error) = cut {
            tracing::error!(
                message = "Could not cut a spool segment back to its last good record.",
                segment = active.sequence,
                %error
            );
        }
        state.sealed.insert(active.sequence, active.size);
    }

    pub fn depth(&self) -> Depth {
        self.lock_state().depth()
    }

    /// How many calls were refused because the spool was full.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// How many calls were refused because a write or fsync failed.
    pub fn write_failures(&self) -> u64 {
        self.write_failures.load(Ordering::Relaxed)
    }

    /// How many segments were set aside unreadable.
    pub fn damaged(&self) -> u64 {
        self.damaged.load(Ordering::Relaxed)
    }

    /// Whether one more typical call would be refused.
    pub fn is_full(&self) -> bool {
        self.depth().bytes + 64 * 1024 > self.max_bytes
    }

    /// Seals the segment being written (new appends go to a new one) and
    /// returns every sealed segment, oldest first.
    pub fn seal(&self) -> Vec<u64> {
        let mut state = self.lock_state();
        if let Some(active) = state.active.take() {
            state.sealed.insert(active.sequence, active.size);
        }
        state.sealed.keys().copied().collect()
    }

    /// The readable records of a sealed segment, in order, and whether a
    /// frame in it could not be read (everything from it on is unread).
    /// Blocking.
    pub fn read(&self, sequence: u64) -> Result<(Vec<SpoolRecord>, bool), SpoolError> {
        let bytes = std::fs::read(self.path(sequence))?;
        Ok(SpoolRecord::decode_all(&bytes))
    }

    /// Moves a segment with an unreadable frame aside (`damaged-….spool`,
    /// never drained or deleted by the gateway) instead of deleting it: what
    /// follows the damage may be calls that were answered 200. Blocking.
    pub fn set_aside(&self, sequence: u64) -> Result<PathBuf, SpoolError> {
        let aside = self.dir.join(format!("damaged-{sequence:020}.spool"));
        std::fs::rename(self.path(sequence), &aside)?;
        File::open(&self.dir)?.sync_all()?;
        self.lock_state().sealed.remove(&sequence);
        self.damaged.fetch_add(1, Ordering::Relaxed);
        Ok(aside)
    }

    /// Deletes a drained segment. Blocking.
    pub fn remove(&self, sequence: u64) -> Result<(), SpoolError> {
        std::fs::remove_file(self.path(sequence))?;
        File::open(&self.dir)?.sync_all()?;
        self.lock_state().sealed.remove(&sequence);
        Ok(())
    }

    fn start_segment(&self, state: &mut State) -> Result<(), SpoolError> {
        if let Some(active) = state.active.take() {
            state.sealed.insert(active.sequence, active.size);
        }
        let sequence = state.next_sequence;
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(self.path(sequence))?;
        // The new file's directory entry must be durable too.
        File::open(&self.dir)?.sync_all()?;
        state.next_sequence += 1;
        state.active = Some(Active {
            sequence,
            file,
            size: Segment::default(),
        });
        Ok(())
    }

    fn path(&self, sequence: u64) -> PathBuf {
        self.dir.join(format!("segment-{sequence:020}.spool"))
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn segments_in(dir: &Path) -> Result<Vec<(u64, PathBuf)>, SpoolError> {
    let mut segments = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let sequence = path
            .file_name()
            .and_then(|name| name.to_str())
            .and_then(|name| {
                name.strip_prefix("segment-")?
                    .strip_suffix(".spool")?
                    .parse()
                    .ok()
            });
        if let Some(sequence) = sequence {
            segments.push((sequence, path));
        }
    }
    segments.sort();
    Ok(segments)
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::{Envelope, EventKind};

    fn temp_dir() -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("intake-spool-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap_or_default();
        dir
    }

    fn record(n: u8) -> SpoolRecord {
        SpoolRecord {
            envelope: Envelope::new(EventKind::LinaConsent, None, vec![b'{', n, b'}']),
            target: Target::Work,
            reason: None,
        }
    }

    #[test]
    fn appended_records_survive_a_reopen_in_order() -> Result<(), SpoolError> {
        let dir = temp_dir();
        let records: Vec<_> = (0..3).map(record).collect();
        {
            let spool = Spool::open(&dir, 1 << 20)?;
            for record in &records {
                spool.append(record)?;
            }
        }
        let spool = Spool::open(&dir, 1 << 20)?;
        assert_eq!(spool.depth().events, 3);
        let sealed = spool.seal();
        let read: Vec<_> = sealed
            .iter()
            .flat_map(|sequence| spool.read(*sequence).map(|read| read.0).unwrap_or_default())
            .collect();
        assert_eq!(read, records);
        for sequence in sealed {
            spool.remove(sequence)?;
        }
        assert_eq!(spool.depth(), Depth::default());
        std::fs::remove_dir_all(dir)?;
        Ok(())
    }

    #[test]
    fn a_second_spool_on_the_same_directory_is_refused() -> Result<(), SpoolError> {
        let dir = temp_dir();
        let _first = Spool::open(&dir, 1 << 20)?;
        assert!(matches!(
            Spool::open(&dir, 1 << 20),
            Err(SpoolError::Locked(_))
        ));
        std::fs::remove_dir_all(dir)?;
        Ok(())
    }

    #[test]
    fn a_full_spool_refuses_more() -> Result<(), SpoolError> {
        let dir = temp_dir();
        let one = record(1).encode().len() as u64;
        let spool = Spool::open(&dir, one * 2)?;
        spool.append(&record(1))?;
        spool.append(&record(2))?;
        assert!(matches!(spool.append(&record(3)), Err(SpoolError::Full(_))));
        assert_eq!(spool.refused(), 1);
        std::fs::remove_dir_all(dir)?;
        Ok(())
    }

    #[test]
    fn a_failed_write_is_cut_back_and_nothing_is_appended_after_it() -> Result<(), SpoolError> {
        let dir = temp_dir();
        let spool = Spool::open(&dir, 1 << 20)?;
        let records: Vec<_> = (1..=4).map(record).collect();
        spool.append(&records[0])?;
        *spool.short_write.lock().unwrap_or_else(|p| p.into_inner()) = Some(5);
        assert!(matches!(
            spool.append(&records[1]),
            Err(SpoolError::WriteFailed(_))
        ));
        assert_eq!(spool.write_failures(), 1);
        // Space is back: the next calls are kept, after no tear.
        spool.append(&records[2])?;
        spool.append(&records[3])?;
        let mut kept = Vec::new();
        for sequence in spool.seal() {
            let (records, torn) = spool.read(sequence)?;
            assert!(!torn, "segment {sequence} has a tear");
            kept.extend(records);
        }
        let expected = vec![records[0].clone(), records[2].clone(), records[3].clone()];
        assert_eq!(kept, expected);
        std::fs::remove_dir_all(dir)?;
        Ok(())
    }

    #[test]
    fn a_segment_with_a_tear_before_good_frames_is_read_up_to_it_and_set_aside()
    -> Result<(), SpoolError> {
        let dir = temp_dir();
        let first = record(1);
        let mut bytes = first.encode();
        bytes.extend_from_slice(&record(2).encode()[..7]);
        bytes.extend_from_slice(&record(3).encode());
        std::fs::write(dir.join("segment-00000000000000000000.spool"), &bytes)?;
        let spool = Spool::open(&dir, 1 << 20)?;
        let (records, torn) = spool.read(0)?;
        assert!(torn);
        assert_eq!(records, vec![first]);
        let aside = spool.set_aside(0)?;
        assert!(aside.exists(), "the segment is kept, not deleted");
        assert_eq!(spool.damaged(), 1);
        assert_eq!(spool.depth(), Depth::default());
        drop(spool);
        // A restart does not take the set-aside segment for one to drain.
        assert_eq!(Spool::open(&dir, 1 << 20)?.depth(), Depth::default());
        std::fs::remove_dir_all(dir)?;
        Ok(())
    }
}
