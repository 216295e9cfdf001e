//! Peak memory of a producing process while Kafka is down (issue 16 part 5): records `SPOOL_MEMORY_EVENTS`
//! events (default 1,000,000; each `#[saga_step]` call records two) through a `KafkaSink` whose broker refuses
//! connections, so every event ends in the spool, and prints the resident set as it goes and at the end; then
//! counts the spool and replays it to a sink that accepts everything (Kafka is back), and prints the peak of each.
//!
//! ```text
//! cargo run --release -p saga-tracker --example spool_memory
//! ```
//!
//! Prints `INFO spool_peak_rss ours=<MiB> ...` (the process's `VmHWM` once every event is spooled), the `VmRSS`
//! after each tenth of the events (flat once librdkafka's queue and the tracker's queue are full: memory does not
//! grow with the events), and the tracker's counters; then `INFO spool_replay_peak_rss count=<MiB> walk=<MiB>
//! replay=<MiB> ...`: the peak resident set while `Tracker::spooled_pending` counts the spool (one read of the
//! directory), while `Spool::walk` walks it alone (the files in recorded order, one directory read per chunk of
//! names) and while `Tracker::replay_spool` replays it (each peak measured from the resident set before it: the
//! high-water mark is reset through `/proc/self/clear_refs`), with how long each took. The spool lives in a temporary directory under `target/`
//! (one file per event, about 4 KiB of disk each, removed by the replay); fsync is off (`SPOOL_MEMORY_FSYNC=1`
//! turns it on), which changes the speed, not the memory.

use std::hint::black_box;
use std::time::{Duration, Instant};

use saga_tracker::sink::{Delivery, Envelope, SinkError};
use saga_tracker::{KafkaSink, Saga, Sink, Tracker, saga_step};

#[derive(Saga)]
enum SpoolSaga {
    Work,
}

#[derive(Debug, thiserror::Error)]
#[error("never")]
struct Never;

#[saga_step(SpoolSaga, Work, saga_id = id)]
fn work(id: u64) -> Result<u64, Never> {
    Ok(black_box(id).wrapping_mul(31))
}

/// A field of `/proc/self/status` in KiB (`VmHWM`, `VmRSS`).
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Resets the process's `VmHWM` to its current resident set (Linux 4.0+); false where that is refused.
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", b"5").is_ok()
}

/// Kafka is back: acknowledges every event at once (the replay then removes each spool file).
struct AcceptAll;

impl Sink for AcceptAll {
    fn send(&self, _envelope: Envelope<'_>, delivery: Delivery) {
        delivery.delivered();
    }
    fn flush(&self, _timeout: Duration) -> Result<(), SinkError> {
        Ok(())
    }
    fn describe(&self) -> String {
        "accepts everything".into()
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let events: u64 = std::env::var("SPOOL_MEMORY_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let fsync = std::env::var("SPOOL_MEMORY_FSYNC").is_ok_and(|v| v == "1");
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    std::fs::create_dir_all(&target)?;
    let spool = tempfile::Builder::new()
        .prefix("spool-memory-")
        .tempdir_in(&target)?;
    let sink = KafkaSink::builder(format!("127.0.0.1:{port}"))
        .message_timeout(Duration::from_secs(2))
        .build()?;
    let tracker = Tracker::builder()
        .service("spool-memory")
        .sink(sink)
        .spool_dir(spool.path())
        .spool_fsync(fsync)
        .build()?;
    let baseline = status_kib("VmRSS:");
    let started = Instant::now();
    let calls = events / 2;
    let mut samples = Vec::new();
    saga_tracker::with_default(&tracker, || {
        for id in 0..calls {
            let _ = work(id);
            if (id + 1) % (calls / 10).max(1) == 0 {
                samples.push(format!("{:.1}", mib(status_kib("VmRSS:"))));
            }
        }
    });
    let recorded_in = started.elapsed();
    // The events still in librdkafka's queue time out (2 s) and are spooled by the worker.
    let flushed = tracker.flush(Duration::from_secs(120));
    let stats = tracker.stats();
    let peak = status_kib("VmHWM:");
    println!(
        "INFO spool_peak_rss ours={:.1}MiB start={:.1}MiB events={} recorded_in={:.1?} flush={} rss_by_tenth_MiB={}",
        mib(peak),
        mib(baseline),
        calls * 2,
        recorded_in,
        if flushed.is_ok() { "ok" } else { "timed out" },
        samples.join(","),
    );
    println!("INFO spool_stats {stats:?}");
    drop(tracker);

    // Kafka is back: a new process counts the spool and replays it.
    let tracker = Tracker::builder()
        .service("spool-memory")
        .sink(AcceptAll)
        .spool_dir(spool.path())
        .spool_fsync(fsync)
        .build()?;
    let reset = reset_peak();
    let before_count = status_kib("VmRSS:");
    let started = Instant::now();
    let spooled_files = tracker.spooled_pending()?;
    let count_in = started.elapsed();
    let peak_count = status_kib("VmHWM:");
    // The walk alone (what the replay reads the spool with): one directory read per chunk of names.
    reset_peak();
    let started = Instant::now();
    let walked = saga_tracker::spool::Spool::open(spool.path(), fsync)?
        .walk()
        .try_fold(0usize, |n, key| key.map(|_| n + 1))?;
    let walk_in = started.elapsed();
    let peak_walk = status_kib("VmHWM:");
    reset_peak();
    let before_replay = status_kib("VmRSS:");
    let started = Instant::now();
    let report = tracker.replay_spool()?;
    let replay_in = started.elapsed();
    let peak_replay = status_kib("VmHWM:");
    let left = tracker.spooled_pending()?;
    println!(
        "INFO spool_replay_peak_rss count={:.1}MiB walk={:.1}MiB replay={:.1}MiB before_count={:.1}MiB before_replay={:.1}MiB peak_reset={} spool_files={spooled_files} count_in={count_in:.1?} walked={walked} walk_in={walk_in:.1?} replay_in={replay_in:.1?} resent={} corrupt={} left={left}",
        mib(peak_count),
        mib(peak_walk),
        mib(peak_replay),
        mib(before_count),
        mib(before_replay),
        if reset {
            "ok"
        } else {
            "refused (peaks include recording)"
        },
        report.resent,
        report.corrupt,
    );
    println!("INFO spool_replay_stats {:?}", tracker.stats());
    drop(tracker);
    Ok(())
}
