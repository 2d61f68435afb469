// Mailslot: many writers, one reader, datagrams; writers never block while the reader is slow.
//
// Windows: the OS's own mailslot (`\\.\mailslot\NAME`: CreateMailslotA for the reader,
// CreateFileA + WriteFile for writers, GetMailslotInfo for info()), in detail/win32_mailslot.hpp.
//
// Linux has no mailslot, and a Unix SOCK_DGRAM socket blocks its writer after
// net.unix.max_dgram_qlen (10) unread datagrams. So a Linux mailslot is a shared-memory Queue
// named `NAME.mailslot` (queue.hpp: many producers, one consumer, ordered): the reader
// creates it and registers as its consumer; writers open it and put. Each writer's
// messages arrive in its order and none is lost while the reader lives. A full mailslot (the
// reader is `capacity` bytes behind) makes send() fail with errc::timeout at once, or after
// the bounded wait the caller asked for: never a silent drop. A writer whose reader closed
// or died gets errc::broken_pipe (checked on every send for a close, at most every 100 ms
// for a death, and always before reporting "full"). A reader that restarts on the same name
// adopts the existing queue, so writers that kept it open go on working.
#pragma once
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "detail/mailslot_types.hpp"
#include "error.hpp"
#include "name.hpp"
#include "wait.hpp"

#if defined(_WIN32)
#include "detail/win32_mailslot.hpp"
#else
#include "queue.hpp"
#endif

namespace sharedstate {

#if defined(_WIN32)

using Mailslot = detail::Win32Mailslot;
using MailslotWriter = detail::Win32MailslotWriter;

#else

namespace detail {
inline std::string mailslot_segment(const std::string& name) {
    split_name(name, "mailslot");  // validates: ValueError before any OS call
    return name + kMailslotSegmentSuffix;
}
}  // namespace detail

class Mailslot {
public:
    Mailslot() = default;
    // Creates the mailslot NAME and becomes its reader. `capacity`: bytes of messages that may
    // wait for the reader (Linux; rounded up to a power of two). errc::already_exists if
    // another live process reads it.
    explicit Mailslot(const std::string& name, uint32_t max_message = kMailslotDefaultMaxMessage,
                      uint64_t capacity = kMailslotDefaultCapacity)
        : name_(name) {
        ErrorInfo err;
        if (!init(name, max_message, capacity, err)) fail(err);
    }

    // One whole message. timeout < 0: forever. errc::timeout when none came.
    std::vector<unsigned char> recv(std::chrono::nanoseconds timeout = std::chrono::nanoseconds(-1),
                                    const Interrupt& intr = {}) {
        check_open();
        ErrorInfo err;
        if (!q_.wait_ready(timeout, intr, &err)) {
            if (err.is(errc::timeout)) fail(errc::timeout, "recv from mailslot '" + name_ + "': no message");
            fail(err);
        }
        return q_.get(timeout, intr);  // a message is ready: no wait
    }
    size_t recv_into(void* buf, size_t cap, std::chrono::nanoseconds timeout = std::chrono::nanoseconds(-1),
                     const Interrupt& intr = {}) {
        check_open();
        return q_.get_into(buf, cap, timeout, intr);
    }
    // Blocks until a message is waiting (recv will not block).
    void wait(std::chrono::nanoseconds timeout, const Interrupt& intr = {}) {
        check_open();
        q_.wait_ready(timeout, intr);
    }
    MailslotInfo info() {
        check_open();
        MailslotInfo i;
        i.next_size = q_.next_size();
        i.count = int64_t(q_.size());
        if (i.next_size < 0 && i.count > 0 && q_.empty()) i.count = 0;
        return i;
    }
    // A WaitSet member: ready when a message is waiting (the queue's source, detail/wait_source.hpp).
    detail::WaitSource wait_source() const {
        check_open();
        detail::WaitSource s = q_.wait_source();
        s.key = this;
        s.what = "mailslot '" + name_ + "'";
        return s;
    }
    uint32_t max_message() const { return q_.max_message(); }
    const std::string& name() const noexcept { return name_; }
    bool closed() const noexcept { return q_.closed(); }
    void close() noexcept { q_.close(); }
    Queue& queue() noexcept { return q_; }

private:
    bool init(const std::string& name, uint32_t max_message, uint64_t capacity, ErrorInfo& err) {
        detail::SplitName sn;
        if (!detail::split_name(name, "mailslot", sn, err)) return false;  // before any OS call
        std::string seg = name + ".mailslot";
        if (max_message == 0) max_message = kMailslotDefaultMaxMessage;
        uint64_t need = qformat::record_size(max_message);
        if (capacity < need) capacity = need;
        for (int attempt = 0;; ++attempt) {
            q_ = Queue::create(seg, capacity, max_message, err);
            if (!err) break;
            bool exists = err.code == std::error_code(EEXIST, std::generic_category());
            if (!exists || attempt > 3) return false;
            // Held by writers of an earlier reader: adopt it if that reader is gone.
            q_ = Queue::open(seg, err);
            if (!err) break;
            if (!err.is(errc::not_found) || attempt > 3) return false;  // removed as stale: create again
        }
        // The queue lets threads of one process share the consumer role; a mailslot has
        // one reader object, so a reader already registered in this process counts too.
        uint64_t o = q_.consumer_owner();
        if (o == detail::os::self_owner() || !q_.claim_consumer(&err)) {
            o = q_.consumer_owner();
            q_.close();
            return err.set(errc::already_exists, "mailslot '" + name + "' already has a reader (pid " +
                                                     std::to_string(detail::os::owner_pid(o)) + ")");
        }
        return true;
    }
    void check_open() const {
        if (q_.closed()) fail(errc::closed, "mailslot '" + name_ + "' is closed");
    }
    std::string name_;
    Queue q_;
};

class MailslotWriter {
public:
    MailslotWriter() = default;
    // Opens the mailslot NAME for writing: errc::not_found if nobody reads it.
    explicit MailslotWriter(const std::string& name) : name_(name) {
        std::string seg = detail::mailslot_segment(name);
        ErrorInfo err;
        q_ = Queue::open(seg, err);
        if (err) {
            if (err.code == std::error_code(ENOENT, std::generic_category()) || err.is(errc::not_found))
                fail(errc::not_found, "mailslot '" + name + "': no reader (nobody created it)");
            fail(err);
        }
        if (!reader_alive(true)) {
            q_.close();
            fail(errc::not_found, "mailslot '" + name + "': its reader has closed or exited");
        }
    }

    // Sends one message. Never waits while there is room; when the mailslot is full it waits
    // at most `timeout` (default 0: fail at once) and then fails with errc::timeout.
    void send(const void* data, size_t len, std::chrono::nanoseconds timeout = std::chrono::nanoseconds(0),
              const Interrupt& intr = {}) {
        if (q_.closed()) fail(errc::closed, "mailslot writer '" + name_ + "' is closed");
        if (len > q_.max_message())
            fail(errc::message_too_large, "send to mailslot '" + name_ + "': message of " + std::to_string(len) +
                                              " bytes, its max_message is " + std::to_string(q_.max_message()));
        if (!reader_alive(false)) broken();
        if (q_.try_put(data, len)) return;
        if (!reader_alive(true)) broken();
        ErrorInfo err;
        if (!q_.put(data, len, timeout, intr, err)) {
            if (!err.is(errc::timeout)) fail(err);
            if (!reader_alive(true)) broken();
            fail(errc::timeout, "send to mailslot '" + name_ + "': full (" + std::to_string(q_.used_bytes()) + " of " +
                                    std::to_string(q_.capacity()) + " bytes waiting): the reader is not keeping up");
        }
    }
    void send(const std::string& s, std::chrono::nanoseconds timeout = std::chrono::nanoseconds(0)) {
        send(s.data(), s.size(), timeout);
    }
    const std::string& name() const noexcept { return name_; }
    bool closed() const noexcept { return q_.closed(); }
    void close() noexcept { q_.close(); }

private:
    // A closed reader clears the consumer word: seen at once. A dead one leaves its owner word:
    // checked (a /proc read) when `thorough`, or at most every 100 ms.
    bool reader_alive(bool thorough) {
        uint64_t o = q_.consumer_owner();
        if (o == 0) return false;
        uint64_t now = detail::os::monotonic_ns();
        if (!thorough && o == last_owner_ && now - last_check_ < 100000000u) return true;
        last_owner_ = o;
        last_check_ = now;
        return detail::os::owner_alive(o);
    }
    [[noreturn]] void broken() {
        fail(errc::broken_pipe, "send to mailslot '" + name_ + "': its reader has closed or exited");
    }
    std::string name_;
    Queue q_;
    uint64_t last_owner_ = 0;
    uint64_t last_check_ = 0;
};

#endif

}  // namespace sharedstate
