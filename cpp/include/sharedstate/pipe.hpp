// Message pipes: a named server that accepts any number of clients, each connection a
// duplex Pipe whose messages (0 bytes to max_message) keep their boundaries.
//
//   sharedstate::PipeServer srv("game-events");
//   sharedstate::Pipe conn = srv.accept(std::chrono::seconds(5));
//   auto cli = sharedstate::Pipe::connect("game-events");      // in the other process
//   cli.send("hello");  std::string m = conn.recv();
//
// Windows: a message-mode named pipe \\.\pipe\NAME; Linux: a SOCK_SEQPACKET Unix socket in
// a private 0700 directory with a one-byte record tag so that any size keeps its boundary
// (docs/channels.md). The OS code is in detail/posix_channels.hpp / detail/win32_channels.hpp;
// this file holds what is the same on both: argument checks, locking, timeouts, closing.
//
// Threads: one thread may send while another receives. Concurrent senders (or receivers)
// are serialized, so a long message is never interleaved with another. close() from any
// thread wakes the others, which then fail with errc::closed.
#pragma once
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>

#include "error.hpp"
#include "name.hpp"
#include "wait.hpp"
#if defined(_WIN32)
#include "detail/win32_channels.hpp"
#else
#include "detail/posix_channels.hpp"
#endif

namespace sharedstate {

inline constexpr size_t kDefaultMaxMessage = size_t(64) << 20;      // 64 MiB
inline constexpr size_t kLargestMaxMessage = (size_t(1) << 31) - 1;  // Win32 I/O sizes are DWORDs

namespace detail {
inline bool check_max_message(size_t m, const std::string& name, ErrorInfo* err = nullptr) {
    if (m > kLargestMaxMessage)
        return report(err, errc::invalid_argument,
                      "pipe '" + name + "': max_message " + std::to_string(m) + " exceeds " + std::to_string(kLargestMaxMessage));
    return true;
}
inline Deadline deadline_of(std::chrono::nanoseconds t) { return Deadline::after(t.count()); }

// Takes m before the deadline, running intr() every slice. False on timeout. Contention
// means two threads receiving (or sending) on one pipe at once, which is rare and slow
// anyway: it polls with a backoff of up to 1 ms instead of a timed mutex (whose
// pthread_mutex_clocklock ThreadSanitizer does not understand).
inline bool lock_within(std::mutex& m, const Deadline& dl, const Interrupt& intr) {
    if (m.try_lock()) return true;
    uint64_t nap = 20000, next_intr = os::monotonic_ns() + kSliceNs;
    for (;;) {
        uint64_t left = dl.left();
        if (left == 0) return false;
        os::sleep_ns(nap < left ? nap : left);
        if (m.try_lock()) return true;
        if (nap < 1000000) nap *= 2;
        if (os::monotonic_ns() >= next_intr) {
            intr();
            next_intr = os::monotonic_ns() + kSliceNs;
        }
    }
}
}  // namespace detail

class PipeServer;

class Pipe {
public:
    using nanoseconds = std::chrono::nanoseconds;
    static constexpr nanoseconds forever{-1};

    Pipe() = default;  // a closed pipe
    Pipe(Pipe&&) noexcept = default;
    Pipe& operator=(Pipe&& o) noexcept {
        if (this != &o) { close(); p_ = std::move(o.p_); }
        return *this;
    }
    ~Pipe() { close(); }

    // Connects to the server NAME. Nobody serving: std::system_error ENOENT (FileNotFoundError)
    // at once when timeout is forever; with a timeout, retried until it expires (errc::timeout).
    static Pipe connect(const std::string& name, nanoseconds timeout = forever, size_t max_message = kDefaultMaxMessage,
                        const Interrupt& intr = {}) {
        detail::split_name(name, "pipe");
        detail::check_max_message(max_message, name);
        auto h = detail::os::pipe_connect(name, detail::deadline_of(timeout), intr);
        return Pipe(std::make_unique<Impl>(h, name, max_message));
    }

    // Sends one whole message. Larger than max_message: errc::message_too_large before
    // anything is sent. errc::timeout if it could not start before the timeout.
    void send(const void* data, size_t n, nanoseconds timeout = forever, const Interrupt& intr = {}) {
        Impl& p = live();
        if (n > p.max_msg) {
            fail(errc::message_too_large, "pipe '" + p.conn.name() + "': message of " + std::to_string(n) + " bytes exceeds max_message " +
                                              std::to_string(p.max_msg));
        }
        detail::Deadline dl = detail::deadline_of(timeout);
        if (!detail::lock_within(p.smu, dl, intr)) timed_out(p, "send");
        std::lock_guard<std::mutex> g(p.smu, std::adopt_lock);
        if (p.closed.load(std::memory_order_relaxed)) closed_error();
        if (!p.conn.send(static_cast<const unsigned char*>(data), n, dl, intr)) timed_out(p, "send");
    }
    void send(std::string_view s, nanoseconds timeout = forever, const Interrupt& intr = {}) { send(s.data(), s.size(), timeout, intr); }

    // One attempt that never blocks (not even on the send lock): true when the message was
    // sent, false when the caller should fall back to send(). Short messages only.
    bool try_send(const void* data, size_t n) {
        Impl& p = live();
        if (n > p.max_msg || !p.smu.try_lock()) return false;
        std::lock_guard<std::mutex> g(p.smu, std::adopt_lock);
        return p.conn.try_send(static_cast<const unsigned char*>(data), n);
    }

    // Waits for the next message and hands it to sink(const unsigned char*, size_t) while
    // the receive lock is held; the message is consumed when sink returns normally (if sink
    // throws, it stays the next message). Returns what sink returns. The bytes are valid
    // only during the call. Peer closed cleanly: errc::end_of_stream; gone: errc::broken_pipe.
    template <class Sink>
    auto recv_with(nanoseconds timeout, const Interrupt& intr, Sink&& sink) -> decltype(sink(nullptr, size_t(0))) {
        Impl& p = live();
        detail::Deadline dl = detail::deadline_of(timeout);
        if (!detail::lock_within(p.rmu, dl, intr)) timed_out(p, "recv");
        std::lock_guard<std::mutex> g(p.rmu, std::adopt_lock);
        if (p.closed.load(std::memory_order_relaxed)) closed_error();
        if (!p.conn.fill(dl, intr, true)) timed_out(p, "recv");
        return deliver(p, std::forward<Sink>(sink));
    }

    std::string recv(nanoseconds timeout = forever, const Interrupt& intr = {}) {
        return recv_with(timeout, intr, [](const unsigned char* d, size_t n) { return std::string(reinterpret_cast<const char*>(d), n); });
    }

    // Copies the next message into buf and returns its size. A message larger than cap is
    // errc::message_too_large and stays the next message (see available()).
    size_t recv_into(void* buf, size_t cap, nanoseconds timeout = forever, const Interrupt& intr = {}) {
        return recv_with(timeout, intr, [&](const unsigned char* d, size_t n) {
            if (n > cap) {
                fail(errc::message_too_large, "pipe '" + name() + "': the next message has " + std::to_string(n) + " bytes, the buffer " +
                                                  std::to_string(cap));
            }
            if (n) std::memcpy(buf, d, n);
            return n;
        });
    }

    // The next message, not consumed, if one has arrived whole; never blocks (a message
    // still arriving counts as none yet). If the peer is gone and nothing is left, throws
    // like recv() does. If another thread is receiving right now, reports none.
    template <class Sink>
    bool peek_with(Sink&& sink) {
        Impl& p = live();
        if (!p.rmu.try_lock()) return false;
        std::lock_guard<std::mutex> g(p.rmu, std::adopt_lock);
        if (!p.conn.fill(detail::Deadline::after(0), Interrupt{}, false)) return false;
        sink(p.conn.data(), p.conn.size());
        return true;
    }
    std::optional<std::string> peek() {
        std::optional<std::string> r;
        peek_with([&](const unsigned char* d, size_t n) { r.emplace(reinterpret_cast<const char*>(d), n); });
        return r;
    }

    // The size of the next message (arrived whole, or arriving), 0 if none (or the peer is
    // gone). Never blocks. A 0-byte message also reads 0: peek() tells them apart.
    size_t available() {
        Impl& p = live();
        if (!p.rmu.try_lock()) return 0;
        std::lock_guard<std::mutex> g(p.rmu, std::adopt_lock);
        ErrorInfo err;
        p.conn.fill(detail::Deadline::after(0), Interrupt{}, false, &err);
        if (err) {
            if (err.is(errc::end_of_stream) || err.is(errc::broken_pipe)) return 0;
            fail(err);
        }
        return p.conn.pending_size();
    }

    // ------------------------------------------------------------ the error-code forms
    // The same calls, reporting failures in err instead of throwing (error.hpp): not found
    // (err.not_found(): nobody serving, timeout forever), errc::timeout, errc::closed,
    // errc::end_of_stream (the peer closed), errc::broken_pipe (it died mid-conversation),
    // errc::message_too_large, the OS error. A failed connect returns a closed Pipe.
    static Pipe connect(const std::string& name, nanoseconds timeout, ErrorInfo& err) noexcept {
        return connect(name, timeout, kDefaultMaxMessage, err);
    }
    static Pipe connect(const std::string& name, nanoseconds timeout, size_t max_message, ErrorInfo& err) noexcept {
        err.clear();
        detail::SplitName sn;
        if (!detail::split_name(name, "pipe", sn, err) || !detail::check_max_message(max_message, name, &err)) return Pipe();
        auto h = detail::os::pipe_connect(name, detail::deadline_of(timeout), Interrupt{}, &err);
        if (err) return Pipe();
        auto impl = std::make_unique<Impl>(h, name, max_message, &err);
        if (err) return Pipe();
        return Pipe(std::move(impl));
    }
    // True when sent (whole).
    bool send(const void* data, size_t n, nanoseconds timeout, ErrorInfo& err) noexcept {
        err.clear();
        Impl* p = live(err);
        if (!p) return false;
        if (n > p->max_msg) {
            return err.set(errc::message_too_large, "pipe '" + p->conn.name() + "': message of " + std::to_string(n) +
                                                        " bytes exceeds max_message " + std::to_string(p->max_msg));
        }
        detail::Deadline dl = detail::deadline_of(timeout);
        if (!detail::lock_within(p->smu, dl, Interrupt{})) return timed_out(*p, "send", err);
        std::lock_guard<std::mutex> g(p->smu, std::adopt_lock);
        if (p->closed.load(std::memory_order_relaxed)) return err.set(errc::closed, "pipe is closed");
        if (!p->conn.send(static_cast<const unsigned char*>(data), n, dl, Interrupt{}, &err))
            return err ? false : timed_out(*p, "send", err);
        return true;
    }
    bool send(std::string_view s, nanoseconds timeout, ErrorInfo& err) noexcept { return send(s.data(), s.size(), timeout, err); }
    // The next message into out; false with err set.
    bool recv(std::string& out, nanoseconds timeout, ErrorInfo& err) noexcept {
        return recv_ec(timeout, err, [&](const unsigned char* d, size_t n) {
            out.assign(reinterpret_cast<const char*>(d), n);
            return true;
        });
    }
    std::string recv(nanoseconds timeout, ErrorInfo& err) noexcept {
        std::string out;
        recv(out, timeout, err);
        return out;
    }
    // Copies the next message into buf: its size, or 0 with err set (a message larger
    // than cap is errc::message_too_large and stays the next message).
    size_t recv_into(void* buf, size_t cap, nanoseconds timeout, ErrorInfo& err) noexcept {
        size_t got = 0;
        recv_ec(timeout, err, [&](const unsigned char* d, size_t n) {
            if (n > cap) {
                return err.set(errc::message_too_large, "pipe '" + name() + "': the next message has " + std::to_string(n) +
                                                            " bytes, the buffer " + std::to_string(cap));
            }
            if (n) std::memcpy(buf, d, n);
            got = n;
            return true;
        });
        return got;
    }

    // Says goodbye to the peer (its recv() then ends with errc::end_of_stream once it has
    // read what was sent) and releases the OS handle. Idempotent; wakes blocked threads.
    void close() noexcept {
        if (!p_) return;
        Impl& p = *p_;
        if (p.closed.exchange(true)) return;
        // The goodbye must not land inside a long message another thread is sending.
        bool have_send = detail::lock_within(p.smu, detail::Deadline::after(20000000), Interrupt{});
        p.conn.wake_for_close(have_send);
        if (!have_send) p.smu.lock();  // the sender was woken with an error: it lets go
        p.rmu.lock();
        p.conn.close_fd();
        p.rmu.unlock();
        p.smu.unlock();
    }
    bool closed() const noexcept { return !p_ || p_->closed.load(std::memory_order_relaxed); }
    explicit operator bool() const noexcept { return !closed(); }

    const std::string& name() const { return live_c().conn.name(); }
    size_t max_message() const { return live_c().max_msg; }
    // A WaitSet member (detail/wait_source.hpp): ready when a message is there (or has started
    // arriving), or the peer is gone. The Pipe object must stay alive while in a set.
    detail::WaitSource wait_source() const {
        Impl* p = p_.get();
        if (!p || p->closed.load()) closed_error();
        detail::WaitSource s;
        s.key = p;
        s.what = "pipe '" + p->conn.name() + "'";
        p->conn.wait_source_into(s);
        s.ready = [p] {
            if (p->closed.load(std::memory_order_relaxed)) return true;  // recv() reports it
            if (!p->rmu.try_lock()) return false;                        // another thread is receiving
            std::lock_guard<std::mutex> g(p->rmu, std::adopt_lock);
            return p->conn.ready_now();
        };
        return s;
    }
#if defined(_WIN32)
    HANDLE native_handle() const { return live_c().conn.handle(); }
#else
    int fileno() const { return live_c().conn.fileno(); }
    int native_handle() const { return fileno(); }
#endif

private:
    friend class PipeServer;
    struct Impl {
        Impl(detail::os::NativePipe h, const std::string& n, size_t m, ErrorInfo* err = nullptr) : conn(h, n, m, err), max_msg(m) {}
        detail::os::PipeConn conn;
        std::mutex rmu, smu;
        std::atomic<bool> closed{false};
        size_t max_msg;
    };
    explicit Pipe(std::unique_ptr<Impl> p) : p_(std::move(p)) {}

    [[noreturn]] static void closed_error() { fail(errc::closed, "pipe is closed"); }
    [[noreturn]] static void timed_out(Impl& p, const char* what) {
        fail(errc::timeout, "pipe '" + p.conn.name() + "': " + what + " timed out");
    }
    Impl& live() {
        if (!p_ || p_->closed.load(std::memory_order_relaxed)) closed_error();
        return *p_;
    }
    const Impl& live_c() const {
        if (!p_) closed_error();
        return *p_;
    }
    Impl* live(ErrorInfo& err) {
        if (!p_ || p_->closed.load(std::memory_order_relaxed)) {
            err.set(errc::closed, "pipe is closed");
            return nullptr;
        }
        return p_.get();
    }
    static bool timed_out(Impl& p, const char* what, ErrorInfo& err) {
        return err.set(errc::timeout, "pipe '" + p.conn.name() + "': " + what + " timed out");
    }
    // sink(data, n) -> bool: false (err set by it) leaves the message unconsumed.
    template <class Sink>
    bool recv_ec(nanoseconds timeout, ErrorInfo& err, Sink&& sink) {
        err.clear();
        Impl* p = live(err);
        if (!p) return false;
        detail::Deadline dl = detail::deadline_of(timeout);
        if (!detail::lock_within(p->rmu, dl, Interrupt{})) return timed_out(*p, "recv", err);
        std::lock_guard<std::mutex> g(p->rmu, std::adopt_lock);
        if (p->closed.load(std::memory_order_relaxed)) return err.set(errc::closed, "pipe is closed");
        if (!p->conn.fill(dl, Interrupt{}, true, &err)) return err ? false : timed_out(*p, "recv", err);
        if (!sink(p->conn.data(), p->conn.size())) return false;
        p->conn.consume();
        return true;
    }
    template <class Sink>
    static auto deliver(Impl& p, Sink&& sink) -> decltype(sink(nullptr, size_t(0))) {
        using R = decltype(sink(nullptr, size_t(0)));
        if constexpr (std::is_void_v<R>) {
            sink(p.conn.data(), p.conn.size());
            p.conn.consume();
        } else {
            R r = sink(p.conn.data(), p.conn.size());
            p.conn.consume();
            return r;
        }
    }

    std::unique_ptr<Impl> p_;
};

class PipeServer {
public:
    using nanoseconds = std::chrono::nanoseconds;
    static constexpr nanoseconds forever{-1};

    PipeServer() = default;  // a closed server
    // Listens on NAME. Another live server on NAME: std::system_error EEXIST / ERROR_ACCESS_DENIED
    // (FileExistsError). A socket left by a crashed server is replaced.
    explicit PipeServer(const std::string& name, size_t max_message = kDefaultMaxMessage) {
        detail::split_name(name, "pipe");
        detail::check_max_message(max_message, name);
        auto p = std::make_unique<Impl>();
        p->name = name;
        p->max_msg = max_message;
        p->l.create(name);
        p_ = std::move(p);
    }
    // The error-code form (error.hpp): on failure a closed server and err set (err.exists():
    // another live server on NAME).
    PipeServer(const std::string& name, size_t max_message, ErrorInfo& err) noexcept {
        err.clear();
        detail::SplitName sn;
        if (!detail::split_name(name, "pipe", sn, err) || !detail::check_max_message(max_message, name, &err)) return;
        auto p = std::make_unique<Impl>();
        p->name = name;
        p->max_msg = max_message;
        if (!p->l.create(name, &err)) return;
        p_ = std::move(p);
    }
    PipeServer(const std::string& name, ErrorInfo& err) noexcept : PipeServer(name, kDefaultMaxMessage, err) {}
    // The next client; a closed Pipe with err set (errc::timeout, errc::closed...) on failure.
    Pipe accept(nanoseconds timeout, ErrorInfo& err) noexcept {
        err.clear();
        if (!p_ || p_->closed.load()) {
            err.set(errc::closed, "pipe server is closed");
            return Pipe();
        }
        Impl& p = *p_;
        detail::Deadline dl = detail::deadline_of(timeout);
        if (!detail::lock_within(p.mu, dl, Interrupt{})) {
            err.set(errc::timeout, "pipe server '" + p.name + "': accept timed out");
            return Pipe();
        }
        std::lock_guard<std::mutex> g(p.mu, std::adopt_lock);
        if (p.closed.load()) {
            err.set(errc::closed, "pipe server '" + p.name + "' is closed");
            return Pipe();
        }
        detail::os::NativePipe h = p.l.accept(dl, Interrupt{}, &err);
        if (err) return Pipe();
        if (h == detail::os::kNoPipe) {
            err.set(errc::timeout, "pipe server '" + p.name + "': accept timed out");
            return Pipe();
        }
        auto impl = std::make_unique<Pipe::Impl>(h, p.name, p.max_msg, &err);
        if (err) return Pipe();
        return Pipe(std::move(impl));
    }

    PipeServer(PipeServer&&) noexcept = default;
    PipeServer& operator=(PipeServer&& o) noexcept {
        if (this != &o) { close(); p_ = std::move(o.p_); }
        return *this;
    }
    ~PipeServer() { close(); }

    // The next client, each its own Pipe. errc::timeout when none came in time.
    Pipe accept(nanoseconds timeout = forever, const Interrupt& intr = {}) {
        Impl& p = live();
        detail::Deadline dl = detail::deadline_of(timeout);
        if (!detail::lock_within(p.mu, dl, intr)) timed_out(p);
        std::lock_guard<std::mutex> g(p.mu, std::adopt_lock);
        if (p.closed.load()) fail(errc::closed, "pipe server '" + p.name + "' is closed");
        detail::os::NativePipe h = p.l.accept(dl, intr);
        if (h == detail::os::kNoPipe) timed_out(p);
        return Pipe(std::make_unique<Pipe::Impl>(h, p.name, p.max_msg));
    }

    // Stops listening and frees the name; pipes already accepted stay connected.
    void close() noexcept {
        if (!p_) return;
        if (p_->closed.exchange(true)) return;
        p_->l.wake_for_close();
        p_->mu.lock();
        p_->l.close();
        p_->mu.unlock();
    }
    bool closed() const noexcept { return !p_ || p_->closed.load(); }
    const std::string& name() const { return live_c().name; }
    size_t max_message() const { return live_c().max_msg; }
    // A WaitSet member: ready when a client is waiting to be accepted. The server must stay
    // alive while in a set.
    detail::WaitSource wait_source() const {
        Impl* p = p_.get();
        if (!p || p->closed.load()) fail(errc::closed, "pipe server is closed");
        detail::WaitSource s;
        s.key = p;
        s.what = "pipe server '" + p->name + "'";
        p->l.wait_source_into(s);
#if defined(_WIN32)
        s.ready = [p] {
            if (p->closed.load(std::memory_order_relaxed)) return true;  // accept() reports it
            if (!p->mu.try_lock()) return false;                        // another thread is accepting
            std::lock_guard<std::mutex> g(p->mu, std::adopt_lock);
            return p->l.ready_now();
        };
#endif
        return s;
    }
    // The OS address: the socket file on Linux, \\.\pipe\NAME on Windows.
    const std::string& path() const { return live_c().l.path(); }

private:
    struct Impl {
        detail::os::PipeListener l;
        std::mutex mu;
        std::atomic<bool> closed{false};
        std::string name;
        size_t max_msg = kDefaultMaxMessage;
    };
    [[noreturn]] static void timed_out(Impl& p) { fail(errc::timeout, "pipe server '" + p.name + "': accept timed out"); }
    Impl& live() {
        if (!p_ || p_->closed.load()) fail(errc::closed, "pipe server is closed");
        return *p_;
    }
    const Impl& live_c() const {
        if (!p_) fail(errc::closed, "pipe server is closed");
        return *p_;
    }
    std::unique_ptr<Impl> p_;
};

}  // namespace sharedstate
