//! Background priority for the threads that deliver events: the tracker's worker, and librdkafka's threads behind
//! a [`KafkaSink`](crate::KafkaSink). Recording is background work; when one of those threads and a handler's
//! thread want the same core, the handler should win.
//!
//! On Linux every thread has its own nice value and a new thread starts with its creator's, so a thread that
//! lowers its own priority before it creates a client lowers the priority of every thread that client starts.
//! Elsewhere nothing changes.

/// The nice value of the delivery threads (0 is normal priority, 19 the lowest).
pub(crate) const BACKGROUND_NICE: i32 = 10;

/// Lowers the calling thread's priority to [`BACKGROUND_NICE`]. Lowering needs no privilege; a failure (e.g. a
/// seccomp filter) leaves the priority as it was, which is harmless, and is logged at debug level.
pub(crate) fn lower_own_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: setpriority takes plain integers; with PRIO_PROCESS and who = 0 Linux applies it to the calling
        // thread only.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, BACKGROUND_NICE) };
        if rc != 0 {
            tracing::debug!("saga-tracker: could not lower a delivery thread's priority");
        }
    }
}

/// Runs `create` on a short-lived thread at background priority and returns what it made: every thread the
/// created client starts (now or later, from its own threads) inherits that priority.
pub(crate) fn create_at_background_priority<T: Send>(create: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        let creator = scope.spawn(|| {
            lower_own_priority();
            create()
        });
        match creator.join() {
            Ok(made) => made,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// The calling thread's nice value (Linux), for tests.
#[cfg(all(test, target_os = "linux"))]
pub(crate) fn own_nice() -> i32 {
    // SAFETY: getpriority takes plain integers; who = 0 is the calling thread.
    #[allow(unsafe_code)]
    unsafe {
        libc::getpriority(libc::PRIO_PROCESS, 0)
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn threads_started_by_a_created_client_inherit_background_priority() {
        let before = own_nice();
        let (creator_nice, child_nice) = create_at_background_priority(|| {
            let child = std::thread::spawn(own_nice);
            (own_nice(), child.join().expect("child"))
        });
        assert_eq!(creator_nice, BACKGROUND_NICE.max(before));
        assert_eq!(
            child_nice, creator_nice,
            "a thread started by the client inherits it"
        );
        assert_eq!(own_nice(), before, "the caller's own priority is unchanged");
    }
}
