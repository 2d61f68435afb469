// The Linux side of the message channels: every socket and semaphore call of Pipe,
// PipeServer and Semaphore lives here. win32_channels.hpp has the same interface:
//   PipeConn (fill / ready / consume / send / try_send / wake / fileno),
//   PipeListener (create / accept / close), pipe_connect, NamedSemaphore.
//
// Pipes are Unix SOCK_SEQPACKET sockets in a private per-user directory. SEQPACKET keeps
// record boundaries, but one record must fit the sender's socket buffer (sk_sndbuf - 32
// bytes), and a 0-byte record cannot be told apart from end of stream (recv returns 0 for
// both). So every record carries a one-byte tag (docs/channels.md is the normative text):
//   'M' + body            a whole message, body 0..kRecordMax bytes
//   'F' + u64 LE total + first piece        first record of a longer message
//   'C' + piece           the following pieces, in order, until `total` bytes arrived
//   'E'                   goodbye: the peer closed cleanly (-> EOFError after the rest)
// Every record has at least one byte, so recv() == 0 always means end of stream, and an
// end of stream that was not announced by 'E' means the peer died: BrokenPipeError.
// Records stay <= 64 KiB + 9 so the kernel allocates them from small pages (a larger
// record needs a high-order kmalloc that can fail under memory fragmentation).
#pragma once
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include <fcntl.h>
#include <poll.h>
#include <semaphore.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "wait_source.hpp"
#include "../error.hpp"
#include "../name.hpp"
#include "../wait.hpp"
#include "posix.hpp"

namespace sharedstate {
namespace detail {
namespace os {

inline constexpr size_t kRecordMax = 65536;      // payload bytes of one record
inline constexpr size_t kRecordCap = kRecordMax + 9;  // + tag + u64 total ('F')
inline constexpr int kSocketBuffer = 1 << 20;  // SO_SNDBUF asked for: ~16 records in flight

using NativePipe = int;  // a connected socket descriptor
inline constexpr NativePipe kNoPipe = -1;

// ---------------------------------------------------------------- the socket directory
// $XDG_RUNTIME_DIR/sharedstate when XDG_RUNTIME_DIR is an absolute path to a directory we
// own with mode 0700 (what the XDG spec promises), else /tmp/sharedstate-<euid>. Either way
// the directory must be a real directory (lstat: not a symlink), owned by us, with no
// group/other permission bits: anything else could let another user plant or read sockets.
inline bool private_dir_ok(const std::string& dir, struct stat& st) {
    return lstat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == geteuid() && (st.st_mode & 077) == 0;
}

// tmp_only: the /tmp directory even when XDG_RUNTIME_DIR is usable. A client looks there
// too, so that a server started without XDG_RUNTIME_DIR (a service, cron, another login) is
// found by a client that has it, and the other way round.
inline std::string socket_dir(bool create, bool tmp_only = false, ErrorInfo* err = nullptr) {
    std::string dir;
    struct stat st;
    const char* x = std::getenv("XDG_RUNTIME_DIR");
    if (!tmp_only && x && x[0] == '/' && private_dir_ok(x, st)) dir = std::string(x) + "/sharedstate";
    else dir = "/tmp/sharedstate-" + std::to_string(unsigned(geteuid()));
    if (create && mkdir(dir.c_str(), 0700) == 0) {
        if (chmod(dir.c_str(), 0700) != 0) { os_error(err, "chmod", dir); return std::string(); }  // the umask may have taken bits
    } else if (create && errno != EEXIST) {
        os_error(err, "mkdir", dir);
        return std::string();
    }
    if (lstat(dir.c_str(), &st) != 0) {
        if (errno == ENOENT && !create) return dir;  // nobody serves anything yet
        os_error(err, "lstat", dir);
        return std::string();
    }
    if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 077) != 0) {
        char found[96];
        std::snprintf(found, sizeof found, "found mode %04o, uid %u%s", unsigned(st.st_mode & 07777), unsigned(st.st_uid),
                      S_ISDIR(st.st_mode) ? "" : ", not a directory");
        report(err, std::error_code(EACCES, std::generic_category()),
               "socket directory '" + dir + "' is not a private directory of uid " + std::to_string(unsigned(geteuid())) +
                   " (must be a real directory owned by us, mode 0700; " + found + ")");
        return std::string();
    }
    return dir;
}

inline uint64_t name_hash64(const std::string& s) {
    uint64_t h = 1469598103934665603ull;
    for (unsigned char c : s) { h ^= c; h *= 1099511628211ull; }
    return h;
}

// DIR/NAME.sock, or DIR/h-<64-bit FNV-1a of NAME>.sock when that would not fit sun_path.
inline std::string socket_path(const std::string& dir, const std::string& base, const char* ext, ErrorInfo* err = nullptr) {
    std::string p = dir + "/" + base + ext;
    if (p.size() < sizeof(sockaddr_un{}.sun_path)) return p;
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(name_hash64(base)));
    p = dir + "/h-" + hex + ext;
    if (p.size() >= sizeof(sockaddr_un{}.sun_path)) {
        report(err, errc::bad_name, "pipe '" + base + "': socket directory '" + dir + "' is too long for sun_path");
        return std::string();
    }
    return p;
}

inline sockaddr_un unix_addr(const std::string& path) {
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
    return a;
}

// Waits until fd is ready for `events`, at most until the deadline, in slices so that
// intr() (Ctrl-C) runs at least every kSliceNs. Returns false on timeout; true when ready
// or when *stop was set (by close() in another thread: the caller checks it).
// With err, a ppoll failure returns false with *err set.
inline bool wait_fd(int fd, short events, const Deadline& dl, const Interrupt& intr, const std::atomic<bool>* stop = nullptr,
                    ErrorInfo* err = nullptr) {
    for (;;) {
        if (stop && stop->load()) return true;
        uint64_t left = dl.left();
        if (left == 0) return false;
        uint64_t slice = left < kSliceNs ? left : kSliceNs;
        pollfd p{fd, events, 0};
        timespec ts{time_t(slice / 1000000000u), long(slice % 1000000000u)};
        int r = ppoll(&p, 1, &ts, nullptr);
        if (r > 0) return true;  // ready, or POLLHUP/POLLERR: the next call reports it
        if (r < 0 && errno != EINTR) return os_error(err, "ppoll", "fd " + std::to_string(fd));
        intr();
    }
}

// The peer's uid must be ours: the directory already keeps other users out; this check
// holds even if someone loosened its mode or passed a descriptor around.
inline bool peer_is_us(int fd) {
    ucred cr{};
    socklen_t len = sizeof cr;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) != 0) return false;
    return cr.uid == geteuid();
}

// Per-connection socket options: a 1 MiB send buffer (the kernel clamps it to
// net.core.wmem_max and doubles it), and 50 ms SO_RCVTIMEO/SO_SNDTIMEO so that a blocking
// recvmsg/sendmsg -- one syscall on the hot path -- still returns every slice for Ctrl-C.
inline size_t setup_conn(int fd) {
    int sz = kSocketBuffer;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
    timeval tv{0, long(kSliceNs / 1000)};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int got = 0;
    socklen_t len = sizeof got;
    if (getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &got, &len) != 0) got = 212992;
    // A record must fit sk_sndbuf - 32; leave room for the tag, the header and slack.
    size_t room = got > 4096 ? size_t(got) / 2 : 2048;
    return room < kRecordMax ? room : kRecordMax;
}

// ---------------------------------------------------------------- a connected pipe
class PipeConn {
public:
    PipeConn(int fd, std::string name, size_t max_message, ErrorInfo* /*err*/ = nullptr)
        : fd_(fd), name_(std::move(name)), max_(max_message) {
        chunk_ = setup_conn(fd_);
    }
    ~PipeConn() { close_fd(); }
    PipeConn(const PipeConn&) = delete;
    PipeConn& operator=(const PipeConn&) = delete;

    int fileno() const noexcept { return fd_; }
    const std::string& name() const noexcept { return name_; }

    // ---- receiving. fill() makes one whole message ready (true), or returns false when
    // none is (block=false) or the deadline passed. A message longer than one record is
    // assembled in big_; its state survives a timeout, so the next call continues it.
    bool fill(const Deadline& dl, const Interrupt& intr, bool block, ErrorInfo* err = nullptr) {
        if (ready_) return true;
        for (;;) {
            if (eof_) return report(err, errc::end_of_stream, "pipe '" + name_ + "': the peer closed the pipe");
            if (broken_) return report(err, errc::broken_pipe, "pipe '" + name_ + "': " + why_.load());
            if (closing_) return report(err, errc::closed, "pipe '" + name_ + "' was closed");
            // Blocking recvmsg when at least a slice is left (SO_RCVTIMEO ends it every
            // slice); otherwise non-blocking + ppoll for the exact rest.
            bool blocking = block && (dl.forever() || dl.left() >= kSliceNs);
            int flags = MSG_CMSG_CLOEXEC | (blocking ? 0 : MSG_DONTWAIT);
            unsigned char tag = 0;
            iovec iov[2];
            msghdr m{};
            m.msg_iov = iov;
            if (big_active_) {
                uint64_t rest = big_total_ - big_have_;
                iov[0] = {&tag, 1};
                iov[1] = {discard_ ? rec_buf() + 1 : big_.get() + big_have_, size_t(rest < kRecordMax ? rest : kRecordMax)};
                m.msg_iovlen = 2;
            } else {
                iov[0] = {rec_buf(), kRecordCap};
                m.msg_iovlen = 1;
            }
            ssize_t r = recvmsg(fd_, &m, flags);
            if (r < 0) {
                int e = errno;
                if (e == EAGAIN || e == EWOULDBLOCK) {
                    if (!block) return false;
                    if (blocking) { intr(); continue; }
                    if (!wait_fd(fd_, POLLIN, dl, intr, &closing_, err)) return false;
                    if (closing_) return report(err, errc::closed, "pipe '" + name_ + "' was closed");
                    continue;
                }
                if (e == EINTR) { intr(); continue; }
                if (e == ECONNRESET) continue;  // reported once, before what is still queued
                return os_error(err, "recvmsg", name_, e);
            }
            if (r == 0) {
                if (closing_) return report(err, errc::closed, "pipe '" + name_ + "' was closed");
                return broken("the peer closed the pipe without saying goodbye (it died, or is not a sharedstate pipe)", "", err);
            }
            if (m.msg_flags & MSG_TRUNC) return broken("protocol violation: a record longer than the protocol allows", "", err);
            if (big_active_) {
                if (tag != 'C') return broken("protocol violation: expected a continuation record", "", err);
                big_have_ += uint64_t(r - 1);
                if (big_have_ < big_total_) continue;
                big_active_ = false;
                if (discard_) {
                    discard_ = false;
                    return report(err, errc::message_too_large, "pipe '" + name_ + "': a message of " + std::to_string(big_total_) +
                                                      " bytes exceeds max_message " + std::to_string(max_) + " (discarded)");
                }
                set_ready(big_.get(), size_t(big_total_), true);
                return true;
            }
            unsigned char* rec = rec_buf();
            switch (rec[0]) {
            case 'M':
                if (size_t(r - 1) > max_) {
                    return report(err, errc::message_too_large, "pipe '" + name_ + "': a message of " + std::to_string(r - 1) +
                                                      " bytes exceeds max_message " + std::to_string(max_) + " (discarded)");
                }
                set_ready(rec + 1, size_t(r - 1), false);
                return true;
            case 'F': {
                if (r < 10) return broken("protocol violation: short first record", "", err);
                uint64_t total = 0;
                for (int i = 7; i >= 0; --i) total = (total << 8) | rec[1 + i];
                uint64_t piece = uint64_t(r - 9);
                if (total <= piece || total > (uint64_t(1) << 40)) return broken("protocol violation: bad message length", "", err);
                big_total_ = total;
                big_have_ = piece;
                big_active_ = true;
                discard_ = total > max_;
                if (!discard_) {
                    big_.reset(new unsigned char[size_t(total)]);  // not zero-filled: every byte is written
                    std::memcpy(big_.get(), rec + 9, size_t(piece));
                }
                continue;
            }
            case 'E':
                eof_ = true;
                continue;
            default:
                return broken("protocol violation: unknown record tag", "", err);
            }
        }
    }
    bool ready() const noexcept { return ready_; }
    // For a WaitSet (the receive lock held): a whole message is buffered, the end is known,
    // or the descriptor has something (a record, the peer's goodbye or hang-up). Never reads.
    bool ready_now() const noexcept {
        if (ready_ || eof_ || broken_ || closing_) return true;
        pollfd p{fd_, POLLIN, 0};
        return poll(&p, 1, 0) > 0;
    }
    void wait_source_into(WaitSource& s) const { s.fd = fd_; }
    const unsigned char* data() const noexcept { return ready_ptr_; }
    size_t size() const noexcept { return ready_len_; }
    void consume() noexcept {
        ready_ = false;
        if (ready_big_) big_.reset();  // up to max_message bytes: give them back
        ready_big_ = false;
    }
    // The size of the message being received (whole or not yet), 0 if none has started.
    size_t pending_size() const noexcept { return ready_ ? ready_len_ : big_active_ && !discard_ ? size_t(big_total_) : 0; }

    // ---- sending: one message as one 'M' record, or 'F' + 'C'... records. SEQPACKET
    // sends a record whole or not at all, so a timeout before the first record leaves the
    // pipe intact; a timeout or Ctrl-C in the middle of a long message breaks it (the
    // peer sees BrokenPipeError, never a message that runs into the next one).
    // Returns false on timeout before anything was sent.
    bool send(const unsigned char* p, size_t n, const Deadline& dl, const Interrupt& intr, ErrorInfo* err = nullptr) {
        if (broken_) return report(err, errc::broken_pipe, "pipe '" + name_ + "': " + why_.load());
        unsigned char hdr[9];
        if (n <= chunk_) {
            hdr[0] = 'M';
            return send_record(hdr, 1, p, n, dl, intr, false, err);
        }
        hdr[0] = 'F';
        uint64_t total = n;
        for (int i = 0; i < 8; ++i) hdr[1 + i] = static_cast<unsigned char>(total >> (8 * i));
        size_t piece = chunk_ - 8;
        if (!send_record(hdr, 9, p, piece, dl, intr, false, err)) return false;
        size_t off = piece;
        hdr[0] = 'C';
        while (off < n) {
            size_t k = n - off < chunk_ ? n - off : chunk_;
            if (!send_record(hdr, 1, p + off, k, dl, intr, true, err)) return false;
            off += k;
        }
        return true;
    }
    // One non-blocking attempt for a message that fits one record: true when sent, false
    // when it would block (nothing sent). For callers that hold a lock they would rather
    // not release (the Python GIL) on the common path.
    bool try_send(const unsigned char* p, size_t n) {
        if (broken_ || n > chunk_) return false;
        unsigned char tag = 'M';
        iovec iov[2] = {{&tag, 1}, {const_cast<unsigned char*>(p), n}};
        msghdr m{};
        m.msg_iov = iov;
        m.msg_iovlen = 2;
        return sendmsg(fd_, &m, MSG_NOSIGNAL | MSG_DONTWAIT) >= 0;
    }

    // Called by close(), possibly while other threads are blocked in fill()/send(): says
    // goodbye if the pipe is healthy (never blocks), then shuts the socket down, which
    // wakes those threads at once.
    void wake_for_close(bool goodbye) noexcept {
        closing_ = true;
        if (fd_ < 0) return;
        if (goodbye && !broken_) {
            unsigned char e = 'E';
            ::send(fd_, &e, 1, MSG_NOSIGNAL | MSG_DONTWAIT);
        }
        shutdown(fd_, SHUT_RDWR);
    }
    void close_fd() noexcept {
        if (fd_ >= 0) ::close(fd_);
        fd_ = -1;
    }

private:
    unsigned char* rec_buf() {
        if (!rec_) rec_.reset(new unsigned char[kRecordCap + 1]);
        return rec_.get();
    }
    void set_ready(const unsigned char* p, size_t n, bool big) {
        ready_ptr_ = p;
        ready_len_ = n;
        ready_big_ = big;
        ready_ = true;
    }
    // The receiving and the sending thread may both find the pipe broken: the reason is a
    // string literal published before the flag, so either side reads a complete one.
    void mark_broken(const char* why) noexcept {
        const char* none = nullptr;
        why_.compare_exchange_strong(none, why);
        broken_.store(true);
    }
    bool broken(const char* why, const std::string& detail = "", ErrorInfo* err = nullptr) {
        mark_broken(why);
        big_active_ = false;
        shutdown(fd_, SHUT_RDWR);
        return report(err, errc::broken_pipe, "pipe '" + name_ + "': " + why + detail);
    }
    bool send_record(const unsigned char* hdr, size_t hn, const unsigned char* p, size_t n, const Deadline& dl,
                     const Interrupt& intr, bool mid_message, ErrorInfo* err = nullptr) {
        iovec iov[2] = {{const_cast<unsigned char*>(hdr), hn}, {const_cast<unsigned char*>(p), n}};
        msghdr m{};
        m.msg_iov = iov;
        m.msg_iovlen = 2;
        // Ctrl-C (or any failure) between records would leave half a message behind: break the pipe.
        auto cut = [&] {
            if (mid_message && !broken_) { mark_broken("a send was interrupted in the middle of a long message"); shutdown(fd_, SHUT_RDWR); }
        };
        bool ok = on_throw([&]() -> bool {
            for (;;) {
                if (closing_) return report(err, errc::closed, "pipe '" + name_ + "' was closed");
                bool blocking = dl.forever() || dl.left() >= kSliceNs;
                ssize_t r = sendmsg(fd_, &m, MSG_NOSIGNAL | (blocking ? 0 : MSG_DONTWAIT));
                if (r >= 0) return true;  // SEQPACKET: all or nothing
                int e = errno;
                if (e == EAGAIN || e == EWOULDBLOCK) {
                    if (blocking) { intr(); continue; }
                    if (wait_fd(fd_, POLLOUT, dl, intr, &closing_, err)) {
                        if (closing_) return report(err, errc::closed, "pipe '" + name_ + "' was closed");
                        continue;
                    }
                    if (failed(err)) return false;
                    if (!mid_message) return false;
                    return broken("a send timed out in the middle of a long message", "", err);
                }
                if (e == EINTR) { intr(); continue; }
                if (e == EPIPE || e == ECONNRESET || e == ENOTCONN) {
                    if (closing_) return report(err, errc::closed, "pipe '" + name_ + "' was closed");
                    return broken("the peer is gone", " (sendmsg: " + std::string(std::strerror(e)) + ")", err);
                }
                return os_error(err, "sendmsg", name_, e);
            }
        }, cut);
        if (!ok && failed(err)) cut();
        return ok;
    }

    int fd_;
    std::string name_;
    size_t max_;
    size_t chunk_ = kRecordMax;
    std::unique_ptr<unsigned char[]> rec_;  // one record ('M' or 'F'), allocated on first use
    std::unique_ptr<unsigned char[]> big_;  // a message longer than one record, being assembled
    uint64_t big_total_ = 0, big_have_ = 0;
    bool big_active_ = false, discard_ = false;
    const unsigned char* ready_ptr_ = nullptr;
    size_t ready_len_ = 0;
    bool ready_ = false, ready_big_ = false;
    bool eof_ = false;                    // receiving side only (under the receive lock)
    std::atomic<bool> broken_{false};     // either side
    std::atomic<const char*> why_{nullptr};
    std::atomic<bool> closing_{false};
};

// ---------------------------------------------------------------- listening
// The server holds an exclusive flock on DIR/NAME.lock for its whole life; the kernel drops
// it when the process dies. So a socket file whose lock can be taken is stale (its server
// crashed): it is replaced, not an error; a held lock means a live server: FileExistsError.
class PipeListener {
public:
    PipeListener() = default;
    PipeListener(const PipeListener&) = delete;
    PipeListener& operator=(const PipeListener&) = delete;
    ~PipeListener() { close(); }

    void create(const std::string& name) { create(name, nullptr); }
    bool create(const std::string& name, ErrorInfo* err) {
        name_ = name;
        SplitName sn;
        if (err ? !split_name(name, "pipe", sn, *err) : (sn = split_name(name, "pipe"), false)) return false;
        const std::string& base = sn.base;
        std::string dir = socket_dir(true, false, err);
        if (failed(err)) return false;
        path_ = socket_path(dir, base, ".sock", err);
        if (failed(err)) return false;
        lock_path_ = socket_path(dir, base, ".lock", err);
        if (failed(err)) return false;
        for (int attempt = 0;; ++attempt) {
            lock_fd_ = ::open(lock_path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
            if (lock_fd_ < 0) return os_error(err, "open", lock_path_);
            if (flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
                int e = errno;
                drop_lock();
                if (e == EWOULDBLOCK)
                    return report(err, std::error_code(EEXIST, std::generic_category()), "pipe '" + name + "': a server is already listening");
                return os_error(err, "flock", lock_path_, e);
            }
            // A closing server unlinks the lock file while holding it: if ours is such an
            // orphan, start again with the file that is (or will be) there now.
            struct stat a, b;
            if (fstat(lock_fd_, &a) == 0 && stat(lock_path_.c_str(), &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev) break;
            drop_lock();
            if (attempt > 100) return os_error(err, "flock", lock_path_, EAGAIN);
        }
        unlink(path_.c_str());  // a stale socket of a crashed server (we hold the lock)
        fd_ = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd_ < 0) { int e = errno; close(); return os_error(err, "socket", name, e); }
        sockaddr_un a = unix_addr(path_);
        if (bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) { int e = errno; close(); return os_error(err, "bind", path_, e); }
        bound_ = true;
        if (chmod(path_.c_str(), 0600) != 0 || listen(fd_, SOMAXCONN) != 0) { int e = errno; close(); return os_error(err, "listen", path_, e); }
        return true;
    }

    // A connected, uid-checked descriptor, or -1 when the deadline passed (or, with err,
    // failed: then *err is set).
    int accept(const Deadline& dl, const Interrupt& intr, ErrorInfo* err = nullptr) {
        for (;;) {
            if (closing_.load()) { report(err, errc::closed, "pipe server '" + name_ + "' was closed"); return -1; }
            int c = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
            if (c >= 0) {
                if (peer_is_us(c)) return c;
                ::close(c);  // another uid: refused, keep waiting for ours
                continue;
            }
            int e = errno;
            if (e == EAGAIN || e == EWOULDBLOCK) {
                if (!wait_fd(fd_, POLLIN, dl, intr, &closing_, err)) return -1;
                continue;
            }
            if (e == EINTR) { intr(); continue; }
            if (e == ECONNABORTED || e == EPROTO) continue;
            if (e == EINVAL || e == EBADF) { report(err, errc::closed, "pipe server '" + name_ + "' was closed"); return -1; }
            os_error(err, "accept4", name_, e);
            return -1;
        }
    }

    // Wakes a thread blocked in accept() (it then reports `closed`).
    void wake_for_close() noexcept {
        closing_ = true;
        if (fd_ >= 0) shutdown(fd_, SHUT_RDWR);
    }

    void close() noexcept {
        // Unlink while we still hold the lock, so no newcomer can mistake our files for stale
        // ones, or lose its own to our unlink.
        if (bound_) unlink(path_.c_str());
        bound_ = false;
        if (lock_fd_ >= 0) unlink(lock_path_.c_str());
        if (fd_ >= 0) ::close(fd_);
        fd_ = -1;
        drop_lock();
    }

    const std::string& path() const noexcept { return path_; }
    int fileno() const noexcept { return fd_; }
    // For a WaitSet: the listening socket polls readable when a client is waiting.
    void wait_source_into(WaitSource& s) const {
        s.fd = fd_;
        const int fd = fd_;
        const std::atomic<bool>* closing = &closing_;
        s.ready = [fd, closing] {
            if (closing->load()) return true;  // accept() reports it
            pollfd p{fd, POLLIN, 0};
            return poll(&p, 1, 0) > 0;
        };
    }

private:
    void drop_lock() noexcept {
        if (lock_fd_ >= 0) ::close(lock_fd_);
        lock_fd_ = -1;
    }
    int fd_ = -1, lock_fd_ = -1;
    bool bound_ = false;
    std::atomic<bool> closing_{false};
    std::string name_, path_, lock_path_;
};

// Connects to NAME's server. Nobody serving: FileNotFoundError at once when the deadline is
// forever, else retried until the deadline (then errc::timeout). Returns the connected fd.
inline int pipe_connect(const std::string& name, const Deadline& dl, const Interrupt& intr, ErrorInfo* err = nullptr) {
    SplitName sn;
    if (err ? !split_name(name, "pipe", sn, *err) : (sn = split_name(name, "pipe"), false)) return -1;
    const std::string base = sn.base;
    // One attempt at DIR/NAME.sock: the connected fd, or -1 with errno set (-2: socket() failed, err set).
    auto attempt = [&](const std::string& path) {
        int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0) { os_error(err, "socket", name); return -2; }
        sockaddr_un a = unix_addr(path);
        if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) return fd;
        int e = errno;
        ::close(fd);
        errno = e;
        return -1;
    };
    for (;;) {
        std::string dir = socket_dir(false, false, err);
        if (failed(err)) return -1;
        std::string path = socket_path(dir, base, ".sock", err);
        if (failed(err)) return -1;
        int fd = attempt(path);
        if (fd == -2) return -1;
        int e = fd >= 0 ? 0 : errno;
        bool absent = e == ENOENT || e == ECONNREFUSED;  // no file, or a crashed server's file
        if (absent) {
            // Not in $XDG_RUNTIME_DIR/sharedstate: perhaps the server had no XDG_RUNTIME_DIR.
            // That directory must pass the same checks; if it does not, it does not count.
            ErrorInfo ignored;
            std::string tmp = socket_dir(false, true, &ignored);
            if (ignored) tmp = dir;
            std::string tmp_path = tmp != dir ? socket_path(tmp, base, ".sock", err) : std::string();
            if (failed(err)) return -1;
            if (tmp != dir) {
                int fd2 = attempt(tmp_path);
                if (fd2 == -2) return -1;
                int e2 = fd2 >= 0 ? 0 : errno;
                if (fd2 >= 0 || (e2 != ENOENT && e2 != ECONNREFUSED)) { fd = fd2; e = e2; absent = false; path = tmp_path; }
            }
        }
        if (fd >= 0) {
            if (!peer_is_us(fd)) {
                ::close(fd);
                report(err, std::error_code(EACCES, std::generic_category()), "pipe '" + name + "': the server runs as another user (SO_PEERCRED)");
                return -1;
            }
            int fl = fcntl(fd, F_GETFL);
            fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);  // blocking + SO_RCVTIMEO slices from now on
            return fd;
        }
        if (e == EINTR) { intr(); continue; }
        if (!absent && e != EAGAIN) { os_error(err, "connect", path, e); return -1; }
        if (absent && dl.forever()) { os_error(err, "connect", name + "' at '" + path, ENOENT); return -1; }
        if (dl.left() == 0) { report(err, errc::timeout, "pipe '" + name + "': no server accepted a connection in time"); return -1; }
        uint64_t nap = dl.left() < 2000000 ? dl.left() : 2000000;  // backlog full or not up yet: 2 ms naps
        sleep_ns(nap);
        intr();
    }
}

// ---------------------------------------------------------------- named semaphores
// sem_open("/NAME"). POSIX named semaphores live until sem_unlink; the Windows ones while a
// handle is open. We give Linux the Windows lifetime (as for segments): every holder keeps
// a shared flock on glibc's backing file /dev/shm/sem.NAME, and whoever closes last (can
// take it exclusively) unlinks the name; a killed holder's lock goes with it.
// persistent=true opts out (then only unlink() removes it).
class NamedSemaphore {
public:
    NamedSemaphore() = default;
    NamedSemaphore(const NamedSemaphore&) = delete;
    NamedSemaphore& operator=(const NamedSemaphore&) = delete;
    ~NamedSemaphore() { close(); }

    // With err: false with *err set on failure; without: throws.
    bool create(const std::string& name, uint32_t initial, uint32_t maximum, bool persistent, ErrorInfo* err = nullptr) {
        if (!init(name, err)) return false;
        sem_ = sem_open(path_.c_str(), O_CREAT | O_EXCL, 0600, unsigned(initial));
        if (sem_ == SEM_FAILED) { sem_ = nullptr; return os_error(err, "sem_open", name); }
        maximum_ = maximum;
        if (!persistent) hold(true);
        return true;
    }
    bool open(const std::string& name, bool persistent, ErrorInfo* err = nullptr) {
        if (!init(name, err)) return false;
        sem_ = sem_open(path_.c_str(), 0);
        if (sem_ == SEM_FAILED) { sem_ = nullptr; return os_error(err, "sem_open", name); }
        if (!persistent) hold(false);
        return true;
    }

    // true when acquired, false on timeout (or, with err, a failure: *err set).
    bool acquire(const Deadline& dl, const Interrupt& intr, ErrorInfo* err = nullptr) {
        for (;;) {
            if (sem_trywait(sem_) == 0) return true;
            if (errno == EINTR) { intr(); continue; }
            if (errno != EAGAIN) return os_error(err, "sem_trywait", name_);
            uint64_t left = dl.left();
            if (left == 0) return false;
            uint64_t slice = left < kSliceNs ? left : kSliceNs;
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 30))
            timespec now;
            clock_gettime(CLOCK_MONOTONIC, &now);
            uint64_t at = uint64_t(now.tv_sec) * 1000000000u + uint64_t(now.tv_nsec) + slice;
            timespec ts{time_t(at / 1000000000u), long(at % 1000000000u)};
            int r = sem_clockwait(sem_, CLOCK_MONOTONIC, &ts);
#else
            timespec now;
            clock_gettime(CLOCK_REALTIME, &now);
            uint64_t at = uint64_t(now.tv_sec) * 1000000000u + uint64_t(now.tv_nsec) + slice;
            timespec ts{time_t(at / 1000000000u), long(at % 1000000000u)};
            int r = sem_timedwait(sem_, &ts);
#endif
            if (r == 0) return true;
            if (errno != ETIMEDOUT && errno != EINTR) return os_error(err, "sem_clockwait", name_);
            intr();
        }
    }

    // Linux has no maximum: the creating handle checks it (best effort, not atomic with
    // other processes' releases); openers only know SEM_VALUE_MAX.
    bool release(uint32_t n, ErrorInfo* err = nullptr) {
        if (maximum_ < uint32_t(SEM_VALUE_MAX)) {
            int v = 0;
            if (sem_getvalue(sem_, &v) == 0 && uint64_t(v < 0 ? 0 : v) + n > maximum_)
                return report(err, errc::invalid_argument, "semaphore '" + name_ + "': release(" + std::to_string(n) +
                                                               ") would exceed maximum " + std::to_string(maximum_) +
                                                               " (count is " + std::to_string(v) + ")");
        }
        for (uint32_t i = 0; i < n; ++i)
            if (sem_post(sem_) != 0) {
                if (errno == EOVERFLOW) return report(err, errc::invalid_argument, "semaphore '" + name_ + "': count would exceed SEM_VALUE_MAX");
                return os_error(err, "sem_post", name_);
            }
        return true;
    }

    int value() const {
        int v = 0;
        if (sem_getvalue(sem_, &v) != 0) throw_os("sem_getvalue", name_);
        return v < 0 ? 0 : v;
    }

    void close() noexcept {
        if (hold_fd_ >= 0) {
            if (flock(hold_fd_, LOCK_EX | LOCK_NB) == 0 && same_as_name()) sem_unlink(path_.c_str());
            ::close(hold_fd_);
            hold_fd_ = -1;
        }
        if (sem_) sem_close(sem_);
        sem_ = nullptr;
    }
    // Removes the name now (the object lives on for those who have it open). False if absent.
    static bool unlink(const std::string& name) {
        std::string path = "/" + split_name(name, "semaphore").base;
        if (sem_unlink(path.c_str()) == 0) return true;
        if (errno == ENOENT) return false;
        throw_os("sem_unlink", name);
    }
    // A WaitSet member (detail/wait_source.hpp). glibc (>= 2.21, 64-bit, little-endian) keeps
    // the semaphore as {uint64_t data; int private; int pad;}: the count is data's low half,
    // which is the futex word sem_post wakes (FUTEX_WAKE of one waiter, only when data's high
    // half, the waiter count, is non-zero). A WaitSet counts itself in that high half and parks
    // on the low half like sem_wait does; since sem_post wakes only one, a set that leaves while
    // the count is still positive passes the wake on (waitset.hpp). The layout is checked
    // against sem_getvalue first; anywhere else the count is polled every millisecond.
    WaitSource wait_source() const {
        WaitSource s;
        sem_t* sem = sem_;
        s.ready = [sem] {
            int v = 0;
            return sem_getvalue(sem, &v) != 0 || v > 0;  // an error: acquire() reports it
        };
        s.poll_ns = 1000000;
#if defined(__GLIBC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ && \
    (defined(__x86_64__) || defined(__aarch64__)) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 21)
        static_assert(sizeof(sem_t) >= 16, "glibc sem_t holds {u64 data, int private, int pad}");
        auto* data = reinterpret_cast<std::atomic<uint64_t>*>(sem);
        for (int i = 0; i < 4; ++i) {
            int v = -1;
            if (sem_getvalue(sem, &v) != 0) break;
            uint64_t d = data->load(std::memory_order_seq_cst);
            if (uint64_t(uint32_t(d) & 0x7fffffffu) == uint64_t(v)) {
                s.word = reinterpret_cast<const std::atomic<uint32_t>*>(sem);
                s.waiters_hi = data;
                s.poll_ns = 0;
                break;
            }
        }
#endif
        return s;
    }
    static uint32_t value_max() { return uint32_t(SEM_VALUE_MAX); }
    bool is_open() const noexcept { return sem_ != nullptr; }

private:
    bool init(const std::string& name, ErrorInfo* err) {
        name_ = name;
        SplitName sn;
        if (err ? !split_name(name, "semaphore", sn, *err) : (sn = split_name(name, "semaphore"), false)) return false;
        const std::string& base = sn.base;
        if (base.size() > 250) return report(err, errc::bad_name, "semaphore name '" + name + "': too long");
        path_ = "/" + base;
        file_ = "/dev/shm/sem." + base;
        return true;
    }
    // glibc keeps the semaphore in /dev/shm/sem.NAME; elsewhere (another libc) the holder
    // lock is skipped and the semaphore behaves as persistent.
    void hold(bool created) {
        hold_fd_ = ::open(file_.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (hold_fd_ < 0) return;
        if (created) fchmod(hold_fd_, 0600);  // the mode given to sem_open is filtered by the umask
        if (flock(hold_fd_, LOCK_SH) != 0) { ::close(hold_fd_); hold_fd_ = -1; }
    }
    bool same_as_name() const {
        struct stat a, b;
        return fstat(hold_fd_, &a) == 0 && stat(file_.c_str(), &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev;
    }

    sem_t* sem_ = nullptr;
    int hold_fd_ = -1;
    uint32_t maximum_ = uint32_t(SEM_VALUE_MAX);
    std::string name_, path_, file_;
};

}  // namespace os
}  // namespace detail
}  // namespace sharedstate
