//! Two computations at once, on a machine's two cores: what a refresh
//! does meanwhile (parse, plan, hash) while the kernel reads or writes
//! the tries, or the halves of one pass over memory.

/// Runs `first` on a thread of its own while this thread runs `second`,
/// and returns both results. A panic in `first` is resumed here.
pub fn both<A: Send, B>(first: impl FnOnce() -> A + Send, second: impl FnOnce() -> B) -> (A, B) {
    std::thread::scope(|scope| {
        let first = scope.spawn(first);
        let second = second();
        let first = first
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (first, second)
    })
}
