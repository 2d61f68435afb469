// What a WaitSet needs from an object it waits on: the readiness interface.
//
// Every waitable class has a `detail::WaitSource wait_source() const` (a few lines each:
// SharedBlock, Queue, Mailslot, Pipe, PipeServer, Semaphore; Frames plugs in the same way).
// A source is one of three shapes, and may combine them:
//
//   version  an eventcount whose `version()` only grows (SharedState, Frames): the member is
//            ready when the version passes the one the set last reported (or `since`).
//            Fill: version, word, waiters, channel (the object's own wait word/count/channel).
//   event    a condition with `ready()` (Queue/Mailslot: a message available), parked on the
//            object's eventcount word like a blocked get() (word, waiters, channel).
//   native   an OS object the kernel can wait on: a descriptor (Linux: pipes, servers) or a
//            HANDLE (Windows), with `ready()` as the non-consuming check.
//   polled   nothing to park on (Windows mailslots): `ready()` is re-checked every `poll_ns`.
//
// A member counts as a waiter of each object it parks on (the `waiters` word is incremented
// while the set is parked), so writers still make their wake syscall only when somebody is
// parked: wait.hpp's protocol, unchanged. `keep` holds whatever the pointers point into (the
// mapping), so a member stays valid even if its object is closed while the set waits.
//
// A version-based class (Frames) needs only this (compare SharedBlock::wait_source):
//     detail::WaitSource wait_source() const {
//         return detail::version_source(this, "frames '" + name_ + "'", futex_word, &h->waiters,
//                                       wake_, map_, [h] { return h->version.load(); });
//     }
// and WaitSet::add(frames) works, from C++ and (one registration line) from Python.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "os.hpp"

namespace sharedstate {
namespace detail {

struct WaitSource {
    const void* key = nullptr;  // identity (the object's address): remove() finds it by this
    std::string what;           // "state 'NAME'", for messages
    // ---- version sources
    std::function<uint64_t()> version;  // set: a version source
    // ---- eventcount parking (both version and event sources)
    const std::atomic<uint32_t>* word = nullptr;  // Linux: the futex word; Windows: the eventcount word
    std::atomic<uint32_t>* waiters = nullptr;     // incremented while parked
    // glibc sem_t: counts as a waiter by adding 1 << 32 to this 64-bit word (nwaiters is the
    // high half), and on leaving passes a wake on if the count is still positive.
    std::atomic<uint64_t>* waiters_hi = nullptr;
    std::shared_ptr<void> channel;  // Windows: a duplicated HANDLE (the wake semaphore); Linux: unused
    // ---- the non-consuming check (event, native and polled sources)
    std::function<bool()> ready;
#if defined(_WIN32)
    std::shared_ptr<void> handle;  // a waitable HANDLE (duplicated), or null
    bool handle_consumes = false;  // waiting takes a count (a semaphore): given back at once
#else
    int fd = -1;  // a descriptor that polls readable (POLLIN/POLLHUP/POLLERR) when ready
#endif
    uint64_t poll_ns = 0;  // nothing to park on: re-check at least this often
    std::shared_ptr<const void> keep;

    bool is_version() const { return bool(version); }
};

#if defined(_WIN32)
// A private duplicate of h, closed with the last copy (null if h is null or duplication fails).
inline std::shared_ptr<void> duplicate_handle(void* h) {
    if (!h) return {};
    HANDLE out = nullptr;
    if (!DuplicateHandle(GetCurrentProcess(), h, GetCurrentProcess(), &out, 0, FALSE, DUPLICATE_SAME_ACCESS)) return {};
    return std::shared_ptr<void>(out, [](void* p) { CloseHandle(p); });
}
inline std::shared_ptr<void> channel_of(os::WakeChannel& ch) { return duplicate_handle(ch.handle()); }
#else
inline std::shared_ptr<void> channel_of(os::WakeChannel&) { return {}; }
#endif

// The version-based shape, as SharedState and Frames use it.
template <class VersionFn>
WaitSource version_source(const void* key, std::string what, const std::atomic<uint32_t>* word,
                          std::atomic<uint32_t>* waiters, os::WakeChannel& ch, std::shared_ptr<const void> keep,
                          VersionFn&& version) {
    WaitSource s;
    s.key = key;
    s.what = std::move(what);
    s.version = std::forward<VersionFn>(version);
    s.word = word;
    s.waiters = waiters;
    s.channel = channel_of(ch);
    s.keep = std::move(keep);
    return s;
}

}  // namespace detail
}  // namespace sharedstate
