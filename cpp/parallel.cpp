#include "parallel.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <algorithm>
#include <memory>
#include <stdexcept>
#include <string>
#include <system_error>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <sched.h>
#endif

namespace simdex {
namespace {

std::function<bool()>& interrupt_check() {
    static std::function<bool()> check;
    return check;
}

// One job at a time per pool use; concurrent callers (several Python threads) each get
// their own helper threads from a shared pool of idle workers.
struct Job {
    const std::function<void(std::size_t, std::size_t)>* fn = nullptr;
    std::size_t tasks = 0;
    std::atomic<std::size_t> next{0};
    std::atomic<bool> stop{false};
    std::atomic<std::size_t> active{0};
    std::mutex mutex;
    std::condition_variable done;
    std::exception_ptr error;

    void run(std::size_t worker) {
        for (;;) {
            if (stop.load(std::memory_order_relaxed)) break;
            std::size_t task = next.fetch_add(1);
            if (task >= tasks) break;
            try {
                (*fn)(task, worker);
            } catch (...) {
                std::lock_guard<std::mutex> lock(mutex);
                if (!error) error = std::current_exception();
                stop = true;
            }
        }
    }
};

class Pool {
   public:
    static Pool& instance() {
        static Pool* pool = new Pool();  // never destroyed: workers may outlive static teardown
        return *pool;
    }

    // Hand `job` to `helpers` idle workers. Missing workers are started first, so a thread
    // that cannot start throws before any work is queued (nothing waits for a worker that
    // does not exist).
    void submit(const std::shared_ptr<Job>& job, std::size_t helpers, std::size_t first_worker) {
        std::lock_guard<std::mutex> lock(mutex_);
        while (idle_ < queue_.size() + helpers) {
            try {
                threads_.emplace_back([this] { loop(); });
            } catch (const std::system_error& e) {
                throw std::runtime_error("simdex: could not start a worker thread (" +
                                         std::to_string(threads_.size()) + " running): " + e.what() +
                                         "; pass a smaller threads=");
            }
            ++idle_;
        }
        for (std::size_t h = 0; h < helpers; ++h) {
            queue_.push_back({job, first_worker + h});
            job->active.fetch_add(1);
        }
        cv_.notify_all();
    }

   private:
    struct Item {
        std::shared_ptr<Job> job;
        std::size_t worker;
    };

    void loop() {
        std::unique_lock<std::mutex> lock(mutex_);
        for (;;) {
            cv_.wait(lock, [this] { return !queue_.empty(); });
            Item item = queue_.back();
            queue_.pop_back();
            --idle_;
            lock.unlock();
            item.job->run(item.worker);
            {
                std::lock_guard<std::mutex> job_lock(item.job->mutex);
                item.job->active.fetch_sub(1);
            }
            item.job->done.notify_all();
            item.job.reset();
            lock.lock();
            ++idle_;
        }
    }

    std::mutex mutex_;
    std::condition_variable cv_;
    std::vector<Item> queue_;
    std::vector<std::thread> threads_;
    std::size_t idle_ = 0;
};

}  // namespace

std::size_t available_cores() {
#if defined(__linux__)
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0) {
        int count = CPU_COUNT(&set);
        if (count > 0) return static_cast<std::size_t>(count);
    }
#endif
    unsigned hw = std::thread::hardware_concurrency();
    return hw == 0 ? 1 : hw;
}

std::size_t resolve_threads(long threads) {
    if (threads <= 0) return std::min(available_cores(), kMaxThreads);
    return std::min(static_cast<std::size_t>(threads), kMaxThreads);
}

void set_interrupt_check(std::function<bool()> check) { interrupt_check() = std::move(check); }

void parallel_for(std::size_t tasks, std::size_t threads,
                  const std::function<void(std::size_t, std::size_t)>& fn) {
    if (tasks == 0) return;
    threads = std::min({std::max<std::size_t>(threads, 1), tasks, kMaxThreads});
    auto job = std::make_shared<Job>();
    job->fn = &fn;
    job->tasks = tasks;
    if (threads > 1) Pool::instance().submit(job, threads - 1, 1);

    // The calling thread works too, checking for Ctrl-C between tasks.
    const auto& check = interrupt_check();
    bool interrupted = false;
    auto last_check = std::chrono::steady_clock::now();
    for (;;) {
        if (job->stop.load(std::memory_order_relaxed)) break;
        std::size_t task = job->next.fetch_add(1);
        if (task >= tasks) break;
        try {
            fn(task, 0);
        } catch (...) {
            std::lock_guard<std::mutex> lock(job->mutex);
            if (!job->error) job->error = std::current_exception();
            job->stop = true;
        }
        if (check) {
            auto now = std::chrono::steady_clock::now();
            if (now - last_check > std::chrono::milliseconds(20)) {
                last_check = now;
                if (check()) {
                    interrupted = true;
                    job->stop = true;
                }
            }
        }
    }
    {
        std::unique_lock<std::mutex> lock(job->mutex);
        while (!job->done.wait_for(lock, std::chrono::milliseconds(20),
                                   [&] { return job->active.load() == 0; })) {
            if (check && !interrupted) {
                lock.unlock();
                if (check()) {
                    interrupted = true;
                    job->stop = true;
                }
                lock.lock();
            }
        }
    }
    if (job->error) std::rethrow_exception(job->error);
    if (interrupted) throw Interrupted{};
}

}  // namespace simdex
