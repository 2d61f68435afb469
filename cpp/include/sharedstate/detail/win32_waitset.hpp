// The Windows part of WaitSet: one WaitForMultipleObjects over the members' wait handles
// (the named wake semaphores of SharedState/Queue eventcounts, Semaphore handles) and the
// set's own control semaphore, the events of pipes' armed reads and servers' armed
// connects. Members with no handle to wait on (mailslots) make the wait a slice of at most
// 2 ms, after which they are re-checked. More than 64 handles
// (MAXIMUM_WAIT_OBJECTS): the first 64 are waited on, in slices of 1 ms.
#pragma once
#include "win32.hpp"

#include <atomic>
#include <cstdint>

namespace sharedstate {
namespace detail {
namespace os {

enum class Parked { woken, timed_out, interrupted };

inline Parked park_handles(const HANDLE* h, size_t n, uint64_t timeout_ns, size_t& which) {
    which = SIZE_MAX;
    DWORD ms = timeout_ns == 0 ? 0 : DWORD((timeout_ns + 999999u) / 1000000u);
    size_t m = n < MAXIMUM_WAIT_OBJECTS ? n : MAXIMUM_WAIT_OBJECTS;
    if (n > m && ms > 1) ms = 1;
    if (m == 0) { Sleep(ms); return Parked::timed_out; }
    DWORD r = WaitForMultipleObjects(DWORD(m), h, FALSE, ms);
    if (r < WAIT_OBJECT_0 + m) { which = size_t(r - WAIT_OBJECT_0); return Parked::woken; }
    if (r >= WAIT_ABANDONED_0 && r < WAIT_ABANDONED_0 + m) return Parked::woken;
    if (r == WAIT_TIMEOUT) return Parked::timed_out;
    Sleep(1);  // WAIT_FAILED (a handle closed under us): re-check the members
    return Parked::woken;
}

// The set's control channel: add/remove/stop wake every parked thread of the set.
class CtlChannel {
public:
    CtlChannel() {
        h_ = CreateSemaphoreA(nullptr, 0, 0x7fffffff, nullptr);
        if (!h_) throw_os("CreateSemaphoreA", "WaitSet");
    }
    ~CtlChannel() { CloseHandle(h_); }
    CtlChannel(const CtlChannel&) = delete;
    CtlChannel& operator=(const CtlChannel&) = delete;
    void wake(uint32_t parked) noexcept {
        if (parked) ReleaseSemaphore(h_, LONG(parked > 1024 ? 1024 : parked), nullptr);
    }
    HANDLE handle() const noexcept { return h_; }

private:
    HANDLE h_ = nullptr;
};

// The event-loop handle (WaitSet::handle): a manual-reset event, signalled while a member is ready.
class LoopSignal {
public:
    LoopSignal() {
        h_ = CreateEventA(nullptr, TRUE, FALSE, nullptr);
        if (!h_) throw_os("CreateEventA", "WaitSet");
    }
    ~LoopSignal() { CloseHandle(h_); }
    LoopSignal(const LoopSignal&) = delete;
    LoopSignal& operator=(const LoopSignal&) = delete;
    void set() noexcept { SetEvent(h_); }
    void reset() noexcept { ResetEvent(h_); }
    HANDLE handle() const noexcept { return h_; }

private:
    HANDLE h_ = nullptr;
};

}  // namespace os
}  // namespace detail
}  // namespace sharedstate
