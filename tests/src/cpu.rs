//! Pinning the calling thread to one CPU, for tests whose figures or timing depend on where
//! the kernel runs the program (BPF test runs, per-CPU counters, floods against one core).

/// Pins the calling thread, and the threads it starts from now on, to `cpu`; panics if the
/// kernel refuses.
pub fn pin_to_cpu(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t with one bit set, for this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set),
            0,
            "pin the test to CPU {cpu}"
        );
    }
}
