// The writer lock: one word in the segment holding the owner's (pid << 32) | start token.
// Writers serialize on it; readers never look at it. A lock whose owner process is gone is
// taken over by compare-and-swap from exactly the dead owner's word, so two rescuers cannot
// both win. A stopped (SIGSTOP) owner is alive: others wait for it, up to their timeout.
#pragma once
#include <atomic>
#include <cstdint>
#include <string>

#include "error.hpp"
#include "wait.hpp"

namespace sharedstate {
namespace detail {

enum class LockResult { acquired, recovered, busy, timed_out };

// timeout_ns: 0 = try once, < 0 = forever. Acquire ordering: we see the previous holder's
// writes. `recovered` tells the caller to repair what the dead owner may have left half done.
// With `err`, a timeout returns `timed_out` and sets *err (errc::timeout) instead of throwing.
inline LockResult lock_writer(std::atomic<uint64_t>& word, const std::string& name, int64_t timeout_ns,
                              const Interrupt& intr, ErrorInfo* err) {
    const uint64_t me = os::self_owner();
    uint64_t cur = 0;
    if (word.compare_exchange_strong(cur, me, std::memory_order_acquire, std::memory_order_relaxed))
        return LockResult::acquired;
    Deadline deadline = Deadline::after(timeout_ns);
    uint64_t next_check = 0;  // liveness checks cost a /proc read: at most every 200 us
    for (unsigned spins = 0;; ++spins) {
        cur = word.load(std::memory_order_relaxed);
        if (cur == 0) {
            if (word.compare_exchange_weak(cur, me, std::memory_order_acquire, std::memory_order_relaxed))
                return LockResult::acquired;
            continue;
        }
        uint64_t now = os::monotonic_ns();
        if (now >= next_check) {
            next_check = now + 200000;
            if (!os::owner_alive(cur) &&
                word.compare_exchange_strong(cur, me, std::memory_order_acquire, std::memory_order_relaxed))
                return LockResult::recovered;
        }
        if (timeout_ns == 0) return LockResult::busy;
        if (deadline.left() == 0) {
            std::string msg = "write lock of '" + name + "' is held by pid " + std::to_string(os::owner_pid(cur)) +
                              " (alive; stopped or stuck?): timed out waiting for it";
            if (!err) fail(errc::timeout, msg);
            err->set(errc::timeout, std::move(msg));
            return LockResult::timed_out;
        }
        if (spins < 200) cpu_relax();
        else {
            os::sleep_ns(spins < 2000 ? 20000 : 1000000);
            if ((spins & 31) == 0) intr();
        }
    }
}

inline LockResult lock_writer(std::atomic<uint64_t>& word, const std::string& name, int64_t timeout_ns,
                              const Interrupt& intr) {
    return lock_writer(word, name, timeout_ns, intr, nullptr);
}

inline void unlock_writer(std::atomic<uint64_t>& word) noexcept { word.store(0, std::memory_order_release); }

}  // namespace detail
}  // namespace sharedstate
