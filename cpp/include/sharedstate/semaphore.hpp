// Named counting semaphores, shared between processes.
//
//   auto sem = sharedstate::Semaphore::create("frame-ready", 0);
//   sem.release();                                   // in one process
//   if (sem.acquire(std::chrono::milliseconds(100))) // in another: true, or false on timeout
//
// Windows: CreateSemaphoreA / OpenSemaphoreA (the OS enforces `maximum`; the object lives
// while a handle is open). Linux: sem_open("/NAME"), given the same lifetime through a
// holder lock (detail/posix_channels.hpp): the last close (or the death of the last holder
// followed by a close or unlink) removes the name; persistent=true keeps it until unlink().
// On Linux `maximum` is checked by the creating handle only (POSIX has no maximum).
//
// close() may be called while another thread waits in acquire(): the OS object stays alive
// until that call returns.
#pragma once
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "detail/shared_slot.hpp"
#include "error.hpp"
#include "name.hpp"
#include "wait.hpp"
#if defined(_WIN32)
#include "detail/win32_channels.hpp"
#else
#include "detail/posix_channels.hpp"
#endif

namespace sharedstate {

class Semaphore {
public:
    using nanoseconds = std::chrono::nanoseconds;
    static constexpr nanoseconds forever{-1};

    Semaphore() = default;  // a closed semaphore
    Semaphore(Semaphore&&) noexcept = default;
    Semaphore& operator=(Semaphore&&) noexcept = default;
    ~Semaphore() = default;  // the last reference closes

    // The largest count (and maximum) the OS allows.
    static uint32_t max_value() { return detail::os::NamedSemaphore::value_max(); }

    // FileExistsError (EEXIST / ERROR_ALREADY_EXISTS) when NAME exists.
    static Semaphore create(const std::string& name, uint32_t initial = 0, uint32_t maximum = max_value(), bool persistent = false) {
        detail::split_name(name, "semaphore");
        if (maximum == 0 || maximum > max_value() || initial > maximum) {
            fail(errc::invalid_argument, "semaphore '" + name + "': need 0 <= initial (" + std::to_string(initial) + ") <= maximum (" +
                                             std::to_string(maximum) + "), 1 <= maximum <= " + std::to_string(max_value()));
        }
        Semaphore s;
        s.name_ = name;
        auto p = std::make_shared<detail::os::NamedSemaphore>();
        p->create(name, initial, maximum, persistent);
        s.s_ = std::move(p);
        return s;
    }
    // FileNotFoundError (ENOENT / ERROR_FILE_NOT_FOUND) when NAME does not exist.
    static Semaphore open(const std::string& name, bool persistent = false) {
        detail::split_name(name, "semaphore");
        Semaphore s;
        s.name_ = name;
        auto p = std::make_shared<detail::os::NamedSemaphore>();
        p->open(name, persistent);
        s.s_ = std::move(p);
        return s;
    }

    // Decrements the count, waiting for it to be positive: true when acquired, false when
    // the timeout passed (forever by default; 0 = just try).
    bool acquire(nanoseconds timeout = forever, const Interrupt& intr = {}) {
        auto p = live();
        return p->acquire(detail::Deadline::after(timeout.count()), intr);
    }
    // Adds n to the count (waking up to n waiters). Past the maximum: errc::invalid_argument.
    void release(uint32_t n = 1) {
        if (n == 0) fail(errc::invalid_argument, "semaphore '" + name_ + "': release(0)");
        live()->release(n);
    }

    // A WaitSet member: ready while the count is positive (readiness only: the caller still
    // acquires). The OS part is the backend's (NamedSemaphore::wait_source).
    detail::WaitSource wait_source() const {
        auto p = live();
        detail::WaitSource src = p->wait_source();
        src.key = this;
        src.what = "semaphore '" + name_ + "'";
        src.keep = p;
        return src;
    }
    // ------------------------------------------------------------ the error-code forms
    // The same calls, reporting failures in err instead of throwing (error.hpp): err.exists()
    // (create: NAME exists), err.not_found() (open: no such semaphore), errc::invalid_argument,
    // errc::closed, the OS error. A failed create/open returns a closed Semaphore.
    static Semaphore create(const std::string& name, uint32_t initial, uint32_t maximum, bool persistent,
                            ErrorInfo& err) noexcept {
        err.clear();
        detail::SplitName sn;
        if (!detail::split_name(name, "semaphore", sn, err)) return Semaphore();
        if (maximum == 0 || maximum > max_value() || initial > maximum) {
            err.set(errc::invalid_argument, "semaphore '" + name + "': need 0 <= initial (" + std::to_string(initial) +
                                                ") <= maximum (" + std::to_string(maximum) + "), 1 <= maximum <= " +
                                                std::to_string(max_value()));
            return Semaphore();
        }
        auto p = std::make_shared<detail::os::NamedSemaphore>();
        if (!p->create(name, initial, maximum, persistent, &err)) return Semaphore();
        Semaphore s;
        s.name_ = name;
        s.s_ = std::move(p);
        return s;
    }
    static Semaphore create(const std::string& name, uint32_t initial, ErrorInfo& err) noexcept {
        return create(name, initial, max_value(), false, err);
    }
    static Semaphore open(const std::string& name, bool persistent, ErrorInfo& err) noexcept {
        err.clear();
        detail::SplitName sn;
        if (!detail::split_name(name, "semaphore", sn, err)) return Semaphore();
        auto p = std::make_shared<detail::os::NamedSemaphore>();
        if (!p->open(name, persistent, &err)) return Semaphore();
        Semaphore s;
        s.name_ = name;
        s.s_ = std::move(p);
        return s;
    }
    static Semaphore open(const std::string& name, ErrorInfo& err) noexcept { return open(name, false, err); }
    // True when acquired; false with err set: errc::timeout when the timeout passed.
    bool acquire(nanoseconds timeout, ErrorInfo& err) noexcept {
        err.clear();
        auto p = live(err);
        if (!p) return false;
        if (p->acquire(detail::Deadline::after(timeout.count()), Interrupt{}, &err)) return true;
        if (!err) err.set(errc::timeout, "semaphore '" + name_ + "': acquire timed out");
        return false;
    }
    bool release(uint32_t n, ErrorInfo& err) noexcept {
        err.clear();
        if (n == 0) return err.set(errc::invalid_argument, "semaphore '" + name_ + "': release(0)");
        auto p = live(err);
        return p && p->release(n, &err);
    }

    void close() noexcept { s_.reset(); }
    bool closed() const noexcept { return s_.empty(); }

    // Removes the name now; processes that have it open keep using it. False if it was gone.
    // (Windows objects have no name apart from their handles: a no-op there.)
    bool unlink() { return remove(name_); }
    static bool remove(const std::string& name) { return detail::os::NamedSemaphore::unlink(name); }

    const std::string& name() const noexcept { return name_; }

private:
    std::shared_ptr<detail::os::NamedSemaphore> live() const {
        auto p = s_.load();
        if (!p) fail(errc::closed, "semaphore '" + name_ + "' is closed");
        return p;
    }
    std::shared_ptr<detail::os::NamedSemaphore> live(ErrorInfo& err) const {
        auto p = s_.load();
        if (!p) err.set(errc::closed, "semaphore '" + name_ + "' is closed");
        return p;
    }
    detail::SharedSlot<detail::os::NamedSemaphore> s_;
    std::string name_;
};

}  // namespace sharedstate
