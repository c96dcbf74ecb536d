// The reader-writer lock of the index handles: searches share it, writes take it alone.
// Writer-preferring: once a writer waits, new readers queue behind it, so a one-row add or
// remove waits only for the searches already running (glibc's default rwlock, behind
// std::shared_mutex, prefers readers and let writers starve under a steady search load).
// Meets the SharedMutex requirements used with std::unique_lock / std::shared_lock.
#pragma once
#include <pthread.h>

#include <shared_mutex>
#include <system_error>

namespace simdex {

#if defined(__GLIBC__)
class RwLock {
   public:
    RwLock() {
        pthread_rwlockattr_t attr;
        pthread_rwlockattr_init(&attr);
        pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
        int rc = pthread_rwlock_init(&lock_, &attr);
        pthread_rwlockattr_destroy(&attr);
        if (rc != 0) throw std::system_error(rc, std::generic_category(), "pthread_rwlock_init");
    }
    ~RwLock() { pthread_rwlock_destroy(&lock_); }
    RwLock(const RwLock&) = delete;
    RwLock& operator=(const RwLock&) = delete;

    void lock() { pthread_rwlock_wrlock(&lock_); }
    bool try_lock() { return pthread_rwlock_trywrlock(&lock_) == 0; }
    void unlock() { pthread_rwlock_unlock(&lock_); }
    void lock_shared() { pthread_rwlock_rdlock(&lock_); }
    bool try_lock_shared() { return pthread_rwlock_tryrdlock(&lock_) == 0; }
    void unlock_shared() { pthread_rwlock_unlock(&lock_); }

   private:
    pthread_rwlock_t lock_;
};
#else
using RwLock = std::shared_mutex;
#endif

}  // namespace simdex
