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
        active.file.write_all(&frame)?;
        active.file.sync_data()?;
        active.size.bytes += frame.len() as u64;
        active.size.events += 1;
        Ok(state.depth())
    }

    pub fn depth(&self) -> Depth {
        self.lock_state().depth()
    }

    /// How many calls were refused because the spool was full.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
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

    /// The records of a sealed segment, in order. Blocking.
    pub fn read(&self, sequence: u64) -> Result<Vec<SpoolRecord>, SpoolError> {
        let bytes = std::fs::read(self.path(sequence))?;
        Ok(SpoolRecord::decode_all(&bytes).0)
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
            .flat_map(|sequence| spool.read(*sequence).unwrap_or_default())
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
}
