// Waiting without burning a core, waking without a syscall: an eventcount.
//
// A waiter spins on the condition for a short budget (a writer's store reaches another
// core in well under a microsecond; a kernel wake-up costs ~20 us each way on our VMs),
// then registers in the shared waiter count and parks on the word (futex / named
// semaphore). A writer changes the word with a seq_cst read-modify-write, then reads the
// waiter count (seq_cst) and makes the wake syscall only if it is non-zero. The waiter
// increments the count (seq_cst) before its last check of the word. Both sides being
// seq_cst, at least one of them sees the other: either the writer sees the waiter and
// wakes it, or the waiter sees the new word and does not park (Dekker's pattern). On
// Linux the futex compares the word again in the kernel, closing the last window.
#pragma once
#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>

#include "detail/os.hpp"

// cpu_relax(): the spin-wait hint of each target. Windows, any compiler and CPU: the SDK's
// YieldProcessor() (winnt.h, through detail/os.hpp): PAUSE on x86 and x64 (_M_IX86, _M_X64),
// the __yield() intrinsic on ARM64 under MSVC, which has no GNU asm. Elsewhere: PAUSE on x86,
// the YIELD instruction on ARM.
#if !defined(_WIN32) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>
#endif

namespace sharedstate {

// Called by blocking calls at least every slice (and after a signal): may throw to abort,
// e.g. the Python bindings raise KeyboardInterrupt through it.
struct Interrupt {
    void (*check)(void*) = nullptr;
    void* ctx = nullptr;
    void operator()() const { if (check) check(ctx); }
};

inline constexpr std::chrono::nanoseconds kDefaultSpin = std::chrono::microseconds(50);
inline constexpr uint64_t kSliceNs = 50000000;  // 50 ms: the longest Ctrl-C may go unseen
inline constexpr uint64_t kSpinAloneNs = 2000;   // pure spinning before polls start yielding

namespace detail {

inline void cpu_relax() noexcept {
#if defined(_WIN32)
    YieldProcessor();
#elif defined(__x86_64__) || defined(__i386__)
    _mm_pause();
#elif defined(__aarch64__) || defined(__arm__)
    __asm__ __volatile__("yield" ::: "memory");
#endif
}

// A timeout as an absolute monotonic deadline; negative means forever.
struct Deadline {
    uint64_t at = UINT64_MAX;
    static Deadline after(int64_t ns) {
        Deadline d;
        if (ns >= 0) d.at = os::monotonic_ns() + uint64_t(ns);
        return d;
    }
    bool forever() const { return at == UINT64_MAX; }
    // ns left, 0 if passed
    uint64_t left() const {
        if (forever()) return UINT64_MAX;
        uint64_t now = os::monotonic_ns();
        return now >= at ? 0 : at - now;
    }
};

inline int64_t to_ns(std::chrono::nanoseconds d) { return d.count(); }

// Blocks until done() is true (returns true) or the deadline passes (returns false).
// `word` is the 32-bit word that changes whenever done() may have become true.
template <class Done>
bool wait_until(const std::atomic<uint32_t>* word, std::atomic<uint32_t>& waiters, os::WakeChannel& ch, Done done,
                Deadline deadline, uint64_t spin_ns, const Interrupt& intr) {
    if (done()) return true;
    if (spin_ns) {
        const uint64_t start = os::monotonic_ns();
        const uint64_t end = start + spin_ns;
        unsigned n = 0;
        for (;;) {
            for (int i = 0; i < 16; ++i) {
                if (done()) return true;
                cpu_relax();
            }
            uint64_t now = os::monotonic_ns();
            if (now >= end || now >= deadline.at) break;
            // Past the first couple of microseconds (where a cross-core handoff lands),
            // offer the CPU between polls: on a machine with fewer free cores than busy
            // processes the writer may be waiting for this very CPU.
            if (now - start > kSpinAloneNs) std::this_thread::yield();
            if ((++n & 4095) == 0) intr();
        }
    }
    struct Registered {  // RAII: the count must drop even when intr() throws
        std::atomic<uint32_t>& w;
        explicit Registered(std::atomic<uint32_t>& x) : w(x) { w.fetch_add(1, std::memory_order_seq_cst); }
        ~Registered() { w.fetch_sub(1, std::memory_order_seq_cst); }
    } reg(waiters);
    for (;;) {
        uint32_t seen = word->load(std::memory_order_seq_cst);
        if (done()) return true;
        uint64_t left = deadline.left();
        if (left == 0) return false;
        if (!os::park(word, seen, left < kSliceNs ? left : kSliceNs, ch)) intr();  // signal arrived
        else if (left > kSliceNs) intr();
    }
}

}  // namespace detail
}  // namespace sharedstate
