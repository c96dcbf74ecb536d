// Our own thread pool: persistent workers that sleep on a condition variable when idle
// (no spin-waiting, which hurts on a loaded 2-core box), dynamic chunking, and a hook to
// check for Ctrl-C from the calling thread.
#pragma once
#include <cstddef>
#include <functional>

namespace simdex {

// The most threads one call may use (threads= above it is refused in Python, clamped here).
inline constexpr std::size_t kMaxThreads = 256;

// Number of cores this process may use (sched_getaffinity), at least 1.
std::size_t available_cores();
// threads <= 0 means all available cores; at most kMaxThreads.
std::size_t resolve_threads(long threads);

// Set by the binding: returns true when the user pressed Ctrl-C (called from the thread
// that entered parallel_for, at most every ~20 ms). May be empty.
void set_interrupt_check(std::function<bool()> check);

// Thrown by parallel_for after all workers stopped when the interrupt check fired.
struct Interrupted {};

// Runs fn(task, worker) for task in [0, tasks) on up to `threads` threads (the calling
// thread included, as worker 0). Tasks are handed out one at a time. The first exception
// thrown by fn stops the hand-out and is rethrown in the caller.
void parallel_for(std::size_t tasks, std::size_t threads,
                  const std::function<void(std::size_t task, std::size_t worker)>& fn);

}  // namespace simdex
