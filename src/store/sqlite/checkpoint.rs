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
//! the log has grown past its bound ([`LONGEST_LOG_FRAMES`], twice the length at which it asks):
//! a thread that cannot keep up does not let the log grow without end. A reader that holds one
//! transaction open (a `passerelle backup`) keeps any checkpoint from copying past what it reads,
//! and the log grows until it ends.
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
/// instead, the writer still spent 9 % of its time copying (1 % with this). (A quarter of the
/// length in unit tests, where a commit is a few frames, so that tests reach the tail.)
#[cfg(not(test))]
const WRITER_TAIL_FRAMES: i64 = 256;
#[cfg(test)]
const WRITER_TAIL_FRAMES: i64 = LONG_LOG_FRAMES / 4;

/// Beyond this, the writer copies whatever the thread has not: the log's bound.
const LONGEST_LOG_FRAMES: i64 = 2 * LONG_LOG_FRAMES;

/// What the log file is cut back to when it starts over (`journal_size_limit`), in bytes: the
/// log at its bound (a frame is a 4 KiB page and a 24-byte header) and a burst's commits beyond
/// it, so that a log started over is not cut and grown again.
pub(super) const LOG_SIZE_LIMIT: i64 = 136 << 20;

/// How often the thread copies the log when nobody asks.
const INTERVAL: Duration = Duration::from_millis(500);

/// The checkpoint thread of one store, and what it shares with the writer's log hook.
pub(super) struct Checkpoints {
    shared: Arc<Shared>,
}

struct Shared {
    stop: AtomicBool,
    /// How many times the writer has seen the log start over: which log a pass was over.
    generation: AtomicU64,
    /// How far the thread's last pass got.
    progress: Mutex<Progress>,
    /// Set when the writer asks for a pass; the thread runs one at once.
    asked: Mutex<bool>,
    wake: Condvar,
}

/// How far the thread's last pass got, in frames of the log it saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Progress {
    /// The log's generation when the pass began ([`Shared::generation`]).
    generation: u64,
    copied: i64,
}

impl Progress {
    /// What the writer has to copy itself, in a log of `frames` of generation `generation` after
    /// its commit. A pass over an earlier log copied none of this one.
    fn left(self, generation: u64, frames: i64) -> i64 {
        if self.generation == generation { frames - self.copied } else { frames }
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

fn after_commit(generation: u64, frames: i64, progress: Progress) -> AfterCommit {
    if frames <= LONG_LOG_FRAMES {
        AfterCommit::Nothing
    } else if progress.left(generation, frames) <= WRITER_TAIL_FRAMES || frames > LONGEST_LOG_FRAMES {
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
            generation: AtomicU64::new(0),
            progress: Mutex::new(Progress::default()),
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
    /// Stops the thread, which tries once, without waiting for anyone, to leave the log short
    /// behind it.
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

    fn progress(&self) -> Progress {
        *self.progress.lock().unwrap_or_else(|e| e.into_inner())
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
    let conn = match super::open(path) {
        Ok(conn) => conn,
        Err(error) => {
            tracing::warn!(message = "The store's checkpoint thread cannot open the store; the writer copies its log alone.", %error);
            return;
        }
    };
    loop {
        shared.wait();
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        // Read before the pass: if the log starts over meanwhile, the pass is taken for one over
        // the earlier log, which only makes the writer ask again.
        let generation = shared.generation.load(Ordering::Acquire);
        match conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(2)?)))
        {
            // Columns: busy, the log's frames, the frames copied (-1 and -1 when another
            // checkpoint held the lock: the writer's, which leaves nothing to report).
            Ok((0, copied)) if copied >= 0 => {
                *shared.progress.lock().unwrap_or_else(|e| e.into_inner()) = Progress { generation, copied };
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(message = "A store checkpoint failed; it is retried.", %error),
        }
    }
    // A last one on the way out, so a stopped gateway leaves a short log behind; it waits for
    // no one (a command-line process may be using the file).
    let _ = conn.busy_timeout(Duration::ZERO);
    let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
}

/// The writer's log hook, run after each of its commits ([`after_commit`]).
///
/// A failure is logged and left for the next commit: the commit that ran this has happened, and
/// an error returned here would make it report one.
fn writer_hook(shared: Arc<Shared>) -> impl FnMut(&mut Wal, std::ffi::c_int) -> rusqlite::Result<()> + Send + 'static {
    // The log's length after the previous commit (a shorter one has started over), and how many
    // times it has; only this hook counts, the thread reads the count.
    let (mut last, mut generation) = (0, 0);
    move |wal, frames| {
        let frames = i64::from(frames);
        if frames < last {
            generation += 1;
            shared.generation.store(generation, Ordering::Release);
        }
        last = frames;
        match after_commit(generation, frames, shared.progress()) {
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
    fn the_writer_copies_only_a_tail_or_a_log_at_its_bound() {
        let now = 7;
        let at = |generation: u64, copied: i64| Progress { generation, copied };
        let long = LONG_LOG_FRAMES + 100;
        assert_eq!(after_commit(now, LONG_LOG_FRAMES, at(now, 0)), AfterCommit::Nothing);
        // The thread has copied nothing of this log yet.
        assert_eq!(after_commit(now, long, at(now, 0)), AfterCommit::AskTheThread);
        // Its last pass left a tail.
        let tail = long - WRITER_TAIL_FRAMES;
        assert_eq!(after_commit(now, long, at(now, tail)), AfterCommit::CopyTheRest);
        assert_eq!(after_commit(now, long, at(now, tail - 1)), AfterCommit::AskTheThread);
        // A pass over the log before this one, which had reached this length: nothing of this
        // one is copied.
        assert_eq!(after_commit(now, long, at(now - 1, long)), AfterCommit::AskTheThread);
        // The bound.
        assert_eq!(after_commit(now, LONGEST_LOG_FRAMES + 1, at(now, 0)), AfterCommit::CopyTheRest);
    }
}
