//! Checkpoints of the SQLite log: who copies the write-ahead log into the database file, and when.
//!
//! A checkpoint copies the log's frames into the database file and fsyncs it. On the writer it
//! would stall every commit queued behind it, so a thread of its own does the copying: every half
//! second, and at once when the writer finds the log long. But a checkpoint that runs beside a
//! writer that never pauses never lets the log start over: it copies the frames committed when
//! it began while the writer appends more, and SQLite starts the log over only at a transaction
//! that begins with every frame copied. Without the writer's help the log grew as long as the
//! load lasted (4.7 GB beside a 0.8 GB database after 100,000 records in the backlog benchmark,
//! a fifth of the gateway's CPU spent by the kernel zeroing its new blocks).
//!
//! So the writer copies the tail itself, between two of its transactions, when the log is long
//! and the thread has copied all but a little of it ([`WRITER_TAIL_FRAMES`]); the writer's next
//! transaction then writes the log from its start. The writer copies everything left only when
//! the log has grown past twice its bound ([`LONGEST_LOG_FRAMES`]): a thread that cannot keep
//! up does not let the log grow without end.
//!
//! **Invariant:** while the store is open, checkpoints are passive: none waits for the writer or
//! a reader. None is ever needed for a commit to be durable (the log is fsynced at every commit).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use rusqlite::Connection;
use rusqlite::hooks::Wal;
use rusqlite::wal::CheckpointMode;

/// The log's length, in frames (pages), beyond which the writer asks for it to be copied and
/// started over: 64 MiB (1 MiB in unit tests, so a test fills it quickly). A page rewritten by
/// many commits in that time is copied once: at 16 MiB, checkpoints made three times the fsyncs
/// and the burst was 8 % slower.
#[cfg(not(test))]
const LONG_LOG_FRAMES: i64 = 16384;
#[cfg(test)]
const LONG_LOG_FRAMES: i64 = 256;

/// At most this much of a long log is left for the writer to copy: about two commits' frames at
/// the acceptance burst (~125 frames per commit), a millisecond of copying. With 1,024 frames
/// instead, the writer still spent 9 % of its time copying (1 % with this).
const WRITER_TAIL_FRAMES: i64 = LONG_LOG_FRAMES / 64;

/// Beyond this, the writer copies whatever the thread has not: the log's bound.
const LONGEST_LOG_FRAMES: i64 = 2 * LONG_LOG_FRAMES;

/// How often the thread copies the log when nobody asks.
const INTERVAL: Duration = Duration::from_millis(500);

/// The checkpoint thread of one store, and what it shares with the writer's log hook.
pub(super) struct Checkpoints {
    shared: Arc<Shared>,
}

struct Shared {
    stop: AtomicBool,
    /// The log's length and how much of it the thread had copied at the end of its last pass
    /// ([`Progress`], packed).
    progress: AtomicU64,
    /// Set when the writer asks for a pass; the thread runs one at once.
    asked: Mutex<bool>,
    wake: Condvar,
}

/// How far the thread's last pass got, in frames of the log it saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Progress {
    log: u32,
    copied: u32,
}

impl Progress {
    fn pack(self) -> u64 {
        (u64::from(self.log) << 32) | u64::from(self.copied)
    }

    fn unpack(packed: u64) -> Self {
        Progress { log: (packed >> 32) as u32, copied: packed as u32 }
    }

    /// What the writer has to copy itself, in a log of `frames` after its commit. A pass over a
    /// log longer than this one saw a log that has since started over: none of this one is
    /// copied.
    fn left(self, frames: i64) -> i64 {
        if i64::from(self.log) <= frames { frames - i64::from(self.copied) } else { frames }
    }
}

/// What the writer's log hook does after a commit that leaves `frames` in the log.
#[derive(Debug, PartialEq, Eq)]
enum AfterCommit {
    /// The log is short: nothing.
    Nothing,
    /// The thread is behind: ask it for a pass.
    AskTheThread,
    /// Little is left, or the log is at its bound: the writer copies what is left.
    CopyTheRest,
}

fn after_commit(frames: i64, progress: Progress) -> AfterCommit {
    if frames <= LONG_LOG_FRAMES {
        AfterCommit::Nothing
    } else if progress.left(frames) <= WRITER_TAIL_FRAMES || frames > LONGEST_LOG_FRAMES {
        AfterCommit::CopyTheRest
    } else {
        AfterCommit::AskTheThread
    }
}

impl Checkpoints {
    /// Starts the checkpoint thread over the store at `path`, and installs the writer's log hook
    /// on `writer` (after `wal_autocheckpoint`, which replaces a connection's log hook).
    pub(super) fn start(path: PathBuf, writer: &mut Connection) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            progress: AtomicU64::new(0),
            asked: Mutex::new(false),
            wake: Condvar::new(),
        });
        writer.wal_hook(Some(writer_hook(shared.clone()))).map_err(std::io::Error::other)?;
        let thread = shared.clone();
        std::thread::Builder::new().name("store-checkpoint".into()).spawn(move || run(&path, &thread))?;
        Ok(Checkpoints { shared })
    }
}

impl Drop for Checkpoints {
    /// Stops the thread, which leaves the log short behind it.
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.ask();
    }
}

impl Shared {
    fn ask(&self) {
        // A poisoned flag only means a thread panicked holding it; the flag is still a flag.
        let mut asked = self.asked.lock().unwrap_or_else(|e| e.into_inner());
        *asked = true;
        self.wake.notify_one();
    }

    /// Waits for the writer to ask, or for the interval to pass.
    fn wait(&self) {
        let mut asked = self.asked.lock().unwrap_or_else(|e| e.into_inner());
        if !*asked {
            asked = self.wake.wait_timeout(asked, INTERVAL).unwrap_or_else(|e| e.into_inner()).0;
        }
        *asked = false;
    }
}

/// The thread: a passive checkpoint every [`INTERVAL`], or at once when the writer asks.
fn run(path: &Path, shared: &Shared) {
    let Ok(conn) = super::open(path) else { return };
    loop {
        shared.wait();
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
        }) {
            // Busy: the writer was copying; its own pass tells the next hook what is left.
            Ok((0, log, copied)) => {
                if let (Ok(log), Ok(copied)) = (u32::try_from(log), u32::try_from(copied)) {
                    shared.progress.store(Progress { log, copied }.pack(), Ordering::Relaxed);
                }
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(message = "A store checkpoint failed; it is retried.", %error),
        }
    }
    // A last one on the way out, so a stopped gateway leaves a short log behind.
    let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
}

/// The writer's log hook, run after each of its commits ([`after_commit`]).
///
/// A failure is logged and left for the next commit: the commit that ran this has happened, and
/// an error returned here would make it report one.
fn writer_hook(shared: Arc<Shared>) -> impl FnMut(&mut Wal, std::ffi::c_int) -> rusqlite::Result<()> + Send + 'static {
    move |wal, frames| {
        let progress = Progress::unpack(shared.progress.load(Ordering::Relaxed));
        match after_commit(i64::from(frames), progress) {
            AfterCommit::Nothing => {}
            AfterCommit::AskTheThread => shared.ask(),
            AfterCommit::CopyTheRest => {
                if let Err(error) = wal.checkpoint_v2(CheckpointMode::PASSIVE)
                    && error.sqlite_error_code() != Some(rusqlite::ErrorCode::DatabaseBusy)
                {
                    tracing::warn!(message = "A store checkpoint by the writer failed; the next commit tries again.", %error);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_packs_both_lengths() {
        let progress = Progress { log: 70_000, copied: 65_000 };
        assert_eq!(Progress::unpack(progress.pack()), progress);
    }

    #[test]
    fn the_writer_copies_only_a_tail_or_a_log_at_its_bound() {
        let at = |log: i64, copied: i64| Progress { log: log as u32, copied: copied as u32 };
        let long = LONG_LOG_FRAMES + 100;
        assert_eq!(after_commit(LONG_LOG_FRAMES, at(0, 0)), AfterCommit::Nothing);
        // The thread has copied nothing of this log yet.
        assert_eq!(after_commit(long, at(0, 0)), AfterCommit::AskTheThread);
        // Its last pass left a tail.
        let tail = long - WRITER_TAIL_FRAMES;
        assert_eq!(after_commit(long, at(tail, tail)), AfterCommit::CopyTheRest);
        assert_eq!(after_commit(long, at(tail, tail - 1)), AfterCommit::AskTheThread);
        // A pass over a longer log saw one that has started over since.
        assert_eq!(after_commit(long, at(long + 10, long + 10)), AfterCommit::AskTheThread);
        // The bound.
        assert_eq!(after_commit(LONGEST_LOG_FRAMES + 1, at(0, 0)), AfterCommit::CopyTheRest);
    }
}
