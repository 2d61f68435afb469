// The Linux part of WaitSet: one kernel wait over many futex words, and the one thread that
// watches descriptors for a set that has some.
//
// futex_waitv (syscall 449, Linux >= 5.16) parks on up to 128 32-bit words at once, shared
// (the objects' words in their segments, keyed by the physical page, as wait.hpp's futex) or
// private (the set's own control word). Older kernels answer ENOSYS (remembered): the set
// then parks on its control word only, in slices of at most 1 ms, and re-checks every member
// between slices (still counted as a waiter of each, so writers make their wake calls; a
// change is seen within 1 ms: a bounded slice loop, not a spin). Sets of more than 127
// members do the same.
//
// Descriptors cannot join futex_waitv. A set with descriptors (pipes, servers) gets one
// helper thread, FdWatcher, parked in poll() on those descriptors plus an eventfd; when one
// polls readable it bumps the set's control word and wakes it, then sleeps until the set
// re-arms it (a level-triggered descriptor would otherwise report again at once). So a mixed
// set still makes one kernel wait per waiting thread; a descriptor's readiness costs one
// extra thread hand-off (a futex wake, ~20-40 us on our VMs), the futex members none.
#pragma once
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#include <linux/futex.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "posix.hpp"

namespace sharedstate {
namespace detail {
namespace os {

struct ParkWord {
    const std::atomic<uint32_t>* word;
    uint32_t expected;
    bool is_private;  // the set's own words (FUTEX_PRIVATE_FLAG); objects' words are shared
};
enum class Parked { woken, timed_out, interrupted };

inline constexpr size_t kWaitvMax = 128;      // FUTEX_WAITV_MAX
inline constexpr long kSysFutexWaitv = 449;   // __NR_futex_waitv (x86-64, arm64, and the generic table)
inline constexpr uint64_t kFallbackSliceNs = 1000000;

// 0: not tried yet, 1: works, 2: ENOSYS (older kernel or seccomp)
inline std::atomic<int>& futex_waitv_state() {
    static std::atomic<int> s{0};
    return s;
}
inline bool futex_waitv_available() { return futex_waitv_state().load(std::memory_order_relaxed) != 2; }

inline Parked park_one(const ParkWord& w, uint64_t timeout_ns) {
    timespec ts{time_t(timeout_ns / 1000000000u), long(timeout_ns % 1000000000u)};
    int op = FUTEX_WAIT | (w.is_private ? FUTEX_PRIVATE_FLAG : 0);
    long r = syscall(SYS_futex, reinterpret_cast<const uint32_t*>(w.word), op, w.expected, &ts, nullptr, 0);
    if (r == 0) return Parked::woken;
    if (errno == EINTR) return Parked::interrupted;
    if (errno == ETIMEDOUT) return Parked::timed_out;
    return Parked::woken;  // EAGAIN: the word changed
}

// Sleeps while every word still holds its expected value, at most timeout_ns.
inline Parked park_words(const ParkWord* w, size_t n, uint64_t timeout_ns) {
    if (n == 0) { sleep_ns(timeout_ns); return Parked::timed_out; }
#if defined(__linux__)
    if (n <= kWaitvMax && futex_waitv_available()) {
        struct futex_waitv v[kWaitvMax];
        for (size_t i = 0; i < n; ++i) {
            v[i].val = w[i].expected;
            v[i].uaddr = uint64_t(reinterpret_cast<uintptr_t>(w[i].word));
            v[i].flags = FUTEX_32 | (w[i].is_private ? FUTEX_PRIVATE_FLAG : 0);
            v[i].__reserved = 0;
        }
        timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        uint64_t at = uint64_t(now.tv_sec) * 1000000000u + uint64_t(now.tv_nsec) + timeout_ns;
        timespec abs{time_t(at / 1000000000u), long(at % 1000000000u)};
        long r = syscall(kSysFutexWaitv, v, (unsigned)n, 0u, &abs, CLOCK_MONOTONIC);
        int e = r >= 0 ? 0 : errno;
        if (e != ENOSYS) futex_waitv_state().store(1, std::memory_order_relaxed);
        if (r >= 0) return Parked::woken;
        if (e == EAGAIN) return Parked::woken;
        if (e == ETIMEDOUT) return Parked::timed_out;
        if (e == EINTR) return Parked::interrupted;
        if (e == ENOSYS) futex_waitv_state().store(2, std::memory_order_relaxed);
        // ENOSYS, or anything unexpected: the bounded slice below.
    }
#endif
    uint64_t slice = timeout_ns < kFallbackSliceNs ? timeout_ns : kFallbackSliceNs;
    Parked p = park_one(w[0], slice);
    if (p == Parked::timed_out && slice < timeout_ns) return Parked::woken;  // re-check, then park again
    return p;
}

inline void wake_word(const std::atomic<uint32_t>* w, bool is_private, int n = INT_MAX) {
    int op = FUTEX_WAKE | (is_private ? FUTEX_PRIVATE_FLAG : 0);
    syscall(SYS_futex, reinterpret_cast<const uint32_t*>(w), op, n, nullptr, nullptr, 0);
}

// One thread polling a set's descriptors (see the top of this file).
class FdWatcher {
public:
    explicit FdWatcher(std::atomic<uint32_t>* signal) : signal_(signal) {
        efd_ = eventfd(0, EFD_CLOEXEC);
        if (efd_ < 0) throw_os("eventfd", "WaitSet");
        on_throw([&] { th_ = std::thread([this] { run(); }); }, [&] { ::close(efd_); });
    }
    ~FdWatcher() {
        {
            std::lock_guard<std::mutex> g(mu_);
            stop_ = true;
        }
        kick();
        th_.join();
        ::close(efd_);
    }
    FdWatcher(const FdWatcher&) = delete;
    FdWatcher& operator=(const FdWatcher&) = delete;

    void set_fds(std::vector<int> fds) {
        {
            std::lock_guard<std::mutex> g(mu_);
            if (fds == fds_) return;
            fds_ = std::move(fds);
        }
        kick();
    }
    // Before a set parks: a watcher that reported and sleeps polls again.
    void arm() {
        if (reported_.exchange(false, std::memory_order_acq_rel)) kick();
    }

private:
    void kick() noexcept {
        uint64_t one = 1;
        ssize_t r = ::write(efd_, &one, sizeof one);
        (void)r;
    }
    void run() {
        std::vector<pollfd> p;
        for (;;) {
            {
                std::lock_guard<std::mutex> g(mu_);
                if (stop_) return;
                p.clear();
                for (int fd : fds_) p.push_back(pollfd{fd, POLLIN, 0});
            }
            p.push_back(pollfd{efd_, POLLIN, 0});
            int r = ::poll(p.data(), nfds_t(p.size()), -1);
            if (r < 0) continue;  // EINTR
            uint64_t got = 0;
            if (p.back().revents) {
                ssize_t n = ::read(efd_, &got, sizeof got);
                (void)n;
                continue;  // new descriptors, a re-arm or stop: look again
            }
            reported_.store(true, std::memory_order_release);
            signal_->fetch_add(1, std::memory_order_seq_cst);
            wake_word(signal_, true);
            ssize_t n = ::read(efd_, &got, sizeof got);  // blocks until arm(), set_fds() or stop
            (void)n;
        }
    }

    std::atomic<uint32_t>* signal_;
    int efd_ = -1;
    std::mutex mu_;
    std::vector<int> fds_;
    bool stop_ = false;
    std::atomic<bool> reported_{false};
    std::thread th_;
};

// The event-loop handle (WaitSet::fileno): an eventfd that is readable while signalled.
class LoopSignal {
public:
    LoopSignal() {
        fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (fd_ < 0) throw_os("eventfd", "WaitSet");
    }
    ~LoopSignal() { ::close(fd_); }
    LoopSignal(const LoopSignal&) = delete;
    LoopSignal& operator=(const LoopSignal&) = delete;
    void set() noexcept {
        uint64_t one = 1;
        ssize_t r = ::write(fd_, &one, sizeof one);
        (void)r;
    }
    void reset() noexcept {
        uint64_t v = 0;
        ssize_t r = ::read(fd_, &v, sizeof v);
        (void)r;
    }
    int fileno() const noexcept { return fd_; }

private:
    int fd_ = -1;
};

}  // namespace os
}  // namespace detail
}  // namespace sharedstate
