//! delivery_cpu: CPU time the whole process spends per recorded event — the caller's share plus the tracker's
//! worker, librdkafka's threads and the producer's polling thread — against a raw rdkafka producer sending
//! pre-encoded payloads of the same size with the same configuration (its caller plus its threads).
//! The in-process mock broker's threads are excluded from both. Linux (reads /proc/self/task).
//! Prints `delivery_cpu_ns_per_event ours=<ns> raw=<ns> caller=<ns> delivery=<ns>`.

mod support;

use std::collections::BTreeMap;
use std::hint::black_box;

use saga_tracker::testing::TestKafka;
use saga_tracker::{KafkaSink, Tracker};
use support::*;

/// CPU seconds used so far by each thread of this process, by thread id.
fn thread_cpu() -> BTreeMap<u32, f64> {
    // USER_HZ, the unit of utime and stime in /proc: 100 on every Linux architecture this runs on.
    const TICKS_PER_SECOND: f64 = 100.0;
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir("/proc/self/task").expect("/proc/self/task") {
        let dir = entry.expect("task entry").path();
        let Ok(stat) = std::fs::read_to_string(dir.join("stat")) else {
            continue; // ended meanwhile
        };
        let after = &stat[stat.rfind(')').expect("stat format") + 2..];
        let fields: Vec<&str> = after.split(' ').collect();
        let ticks: f64 =
            fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
        let tid = dir
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse().ok())
            .expect("tid");
        out.insert(tid, ticks / TICKS_PER_SECOND);
    }
    out
}

/// CPU seconds of the threads in `ids` (threads that ended count what they had at `before`).
fn cpu_of(ids: &[u32], before: &BTreeMap<u32, f64>, after: &BTreeMap<u32, f64>) -> f64 {
    ids.iter()
        .map(|id| {
            after.get(id).or(before.get(id)).copied().unwrap_or(0.0)
                - before.get(id).copied().unwrap_or(0.0)
        })
        .sum()
}

const ROUNDS: u64 = 24;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` compatibility
    }
    let kafka = TestKafka::start_with(1).expect("kafka");
    let topic = kafka.unique_topic("saga.tracker");
    kafka.create_topic(&topic, 3).expect("topic");
    let spool = tempfile::tempdir().expect("spool");

    // Ours: the threads started by building the tracker and its sink, plus the caller's own CPU time.
    let existing: Vec<u32> = thread_cpu().into_keys().collect();
    let sink = KafkaSink::builder(kafka.brokers())
        .topic(&topic)
        .build()
        .expect("sink");
    let tracker = Tracker::builder()
        .service("bench-service")
        .sink(sink)
        .spool_dir(spool.path())
        .build()
        .expect("tracker");
    let mut next = 0u64;
    let mut run_ours = |rounds: u64| {
        saga_tracker::with_default(&tracker, || {
            for _ in 0..rounds {
                for _ in 0..BURST {
                    next += 1;
                    drop(black_box(annotated(next)));
                }
                flush(&tracker);
            }
        })
    };
    run_ours(4); // warm up; librdkafka starts a thread per broker once it has learned of them
    let ours_threads: Vec<u32> = thread_cpu()
        .into_keys()
        .filter(|id| !existing.contains(id))
        .collect();
    let before = thread_cpu();
    let caller = cpu_time::ThreadTime::now();
    run_ours(ROUNDS);
    let caller = caller.elapsed().as_secs_f64();
    let after = thread_cpu();
    let events = (ROUNDS * BURST * 2) as f64;
    let delivery = cpu_of(&ours_threads, &before, &after);
    let stats = tracker.stats();
    assert_eq!((stats.spooled, stats.lost), (0, 0), "{stats:?}");
    assert_eq!(stats.delivered, stats.recorded, "{stats:?}");
    let payload = vec![0x5a_u8; largest_payload(&kafka, &topic)];
    drop(tracker);

    // Raw: a producer with the same configuration, created on this thread (normal priority).
    let existing: Vec<u32> = thread_cpu().into_keys().collect();
    let raw = raw_producer(&kafka);
    let mut run_raw = |rounds: u64| {
        for _ in 0..rounds {
            raw_calls(&raw, &topic, &payload, &mut next, BURST);
        }
    };
    run_raw(4);
    let raw_threads: Vec<u32> = thread_cpu()
        .into_keys()
        .filter(|id| !existing.contains(id))
        .collect();
    let before = thread_cpu();
    let raw_caller = cpu_time::ThreadTime::now();
    run_raw(ROUNDS);
    let raw_caller = raw_caller.elapsed().as_secs_f64();
    let after = thread_cpu();
    let raw_total = raw_caller + cpu_of(&raw_threads, &before, &after);

    let ns = |seconds: f64| seconds * 1e9 / events;
    println!(
        "delivery_cpu_ns_per_event ours={:.1} raw={:.1} caller={:.1} delivery={:.1}",
        ns(caller + delivery),
        ns(raw_total),
        ns(caller),
        ns(delivery)
    );
}
