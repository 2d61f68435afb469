// The Windows side of the message channels: every named-pipe and semaphore call of Pipe,
// PipeServer and Semaphore lives here. Same interface as posix_channels.hpp.
//
// Pipes are message-mode named pipes \\.\pipe\NAME (PIPE_TYPE_MESSAGE|PIPE_READMODE_MESSAGE,
// PIPE_REJECT_REMOTE_CLIENTS): the OS keeps message boundaries for any size, so there is no
// framing. Every handle is overlapped, so every wait is WaitForSingleObject in slices
// (Ctrl-C, deadline) and a wait that ends early is cancelled with CancelIoEx, whose outcome
// is always collected with GetOverlappedResult before the OVERLAPPED leaves scope.
// A read that returns ERROR_MORE_DATA is continued (PeekNamedPipe says how much is left)
// until the message is whole.
//
// Readiness without polling (WaitSet, asyncio on Windows). A connection keeps one overlapped
// read armed at all times (from the start, and again after each message is taken): its
// manual-reset event is what a WaitSet parks on, and recv() collects the same read, so a
// message is never waited for in two ways and never consumed twice. A timed-out or
// interrupted recv() leaves the read armed: what it later brings waits in the buffer. A
// server keeps ConnectNamedPipe armed on its waiting instance the same way (a client that
// connected first, ERROR_PIPE_CONNECTED, sets the event by hand). Mailslots still have no such
// handle (win32_mailslot.hpp).
//
// FlushFileBuffers: a completed message-mode WriteFile has put the whole message in the
// pipe, where it stays readable after our handle closes (CloseHandle, unlike
// DisconnectNamedPipe, discards nothing), so send() waits for the overlapped write to
// complete and does not call FlushFileBuffers, which blocks until the peer has *read* the
// data, and can neither time out nor be cancelled (a stalled reader would hang us).
//
// Like win32.hpp, no macro of ours: <windows.h> as the game configured it.
#pragma once
#include <windows.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "wait_source.hpp"
#include "../error.hpp"
#include "../name.hpp"
#include "../wait.hpp"
#include "win32.hpp"

namespace sharedstate {
namespace detail {
namespace os {

using NativePipe = HANDLE;
inline const NativePipe kNoPipe = nullptr;

// PIPE_REJECT_REMOTE_CLIENTS (winbase.h, Vista and later); spelled out because older SDK
// headers lack it, and defining the macro would leak into the game's translation unit.
inline constexpr DWORD kPipeRejectRemoteClients = 0x00000008;
inline constexpr DWORD kPipeBuffer = 1 << 20;   // advisory in/out buffer sizes
inline constexpr size_t kFirstRead = 65536;     // the receive buffer grows as messages need

// Pipes have their own namespace: Local\ and Global\ mean nothing there and are dropped.
inline std::string pipe_path(const std::string& name) { return "\\\\.\\pipe\\" + split_name(name, "pipe").base; }
inline bool pipe_path(const std::string& name, std::string& path, ErrorInfo* err) {
    if (!err) { path = pipe_path(name); return true; }
    SplitName sn;
    if (!split_name(name, "pipe", sn, *err)) return false;
    path = "\\\\.\\pipe\\" + sn.base;
    return true;
}

inline DWORD slice_ms(const Deadline& dl) {
    uint64_t left = dl.left();
    if (left >= kSliceNs) return DWORD(kSliceNs / 1000000u);
    return DWORD((left + 999999u) / 1000000u);
}

// The outcome of one overlapped operation.
struct IoResult {
    bool timed_out = false;  // cancelled at the deadline, nothing transferred
    DWORD n = 0;             // bytes transferred
    DWORD err = 0;           // 0, or the operation's error (ERROR_MORE_DATA, ERROR_BROKEN_PIPE...)
    std::exception_ptr interrupted;  // intr() threw: rethrow after using what completed
};

// Starts nothing: waits for an operation that returned ERROR_IO_PENDING, in slices.
inline IoResult finish_io(HANDLE h, OVERLAPPED& ov, const Deadline& dl, const Interrupt& intr, bool may_time_out) {
    IoResult res;
    bool cancel = false;
    for (;;) {
        if (may_time_out && dl.left() == 0) { cancel = true; break; }
        DWORD r = WaitForSingleObject(ov.hEvent, may_time_out ? slice_ms(dl) : DWORD(kSliceNs / 1000000u));
        if (r == WAIT_OBJECT_0) break;
        if (r == WAIT_FAILED) { cancel = true; break; }
        std::exception_ptr x = capture([&] { intr(); });
        if (x) {
            res.interrupted = x;
            cancel = true;
            break;
        }
    }
    if (cancel) CancelIoEx(h, &ov);
    // Always collect the outcome: the OVERLAPPED and the buffer must outlive the operation.
    if (GetOverlappedResult(h, &ov, &res.n, TRUE)) return res;
    res.err = GetLastError();
    if (res.err == ERROR_OPERATION_ABORTED && cancel && !res.interrupted) res.timed_out = true;
    return res;
}

inline bool peer_gone(DWORD err) {
    return err == ERROR_BROKEN_PIPE || err == ERROR_PIPE_NOT_CONNECTED || err == ERROR_NO_DATA || err == ERROR_PIPE_LISTENING;
}

// ---------------------------------------------------------------- a connected pipe
class PipeConn {
public:
    // With err, a failure leaves the connection closed and *err set.
    PipeConn(HANDLE h, std::string name, size_t max_message, ErrorInfo* err = nullptr)
        : h_(h), name_(std::move(name)), max_(max_message) {
        rev_ = CreateEventA(nullptr, TRUE, FALSE, nullptr);
        wev_ = CreateEventA(nullptr, TRUE, FALSE, nullptr);
        pev_ = CreateEventA(nullptr, TRUE, FALSE, nullptr);
        if (!rev_ || !wev_ || !pev_) {
            DWORD e = GetLastError();
            release();
            os_error(err, "CreateEventA", name_, e);
            return;
        }
        arm();
    }
    ~PipeConn() { release(); }
    PipeConn(const PipeConn&) = delete;
    PipeConn& operator=(const PipeConn&) = delete;

    HANDLE handle() const noexcept { return h_; }
    const std::string& name() const noexcept { return name_; }

    bool fill(const Deadline& dl, const Interrupt& intr, bool block, ErrorInfo* err = nullptr) {
        if (ready_) return true;
        if (eof_) return report(err, errc::end_of_stream, "pipe '" + name_ + "': the peer closed the pipe");
        if (broken_) return report(err, errc::broken_pipe, "pipe '" + name_ + "': " + why_);
        // The first part of the next message is what the armed read brings (armed here if it
        // is not: a closed pipe, or the first call); nothing there yet: not ready, still armed.
        IoResult res;
        for (;;) {
            arm();
            if (!collect_armed(dl, intr, block, res)) {
                if (res.interrupted) rethrow(res.interrupted);
                if (!armed_) return gone_or_throw(res.err ? res.err : ERROR_OPERATION_ABORTED, "ReadFile", err);
                return false;
            }
            // Windows cancels a thread's I/O when the thread exits: the armed read may have been
            // started by a thread that is gone. Nothing was transferred; arm it again, here.
            if (res.err == ERROR_OPERATION_ABORTED && !closing_ && res.n == 0) {
                res = IoResult{};
                continue;
            }
            break;
        }
        size_t have = 0;
        bool discard = false;
        bool first = true;
        for (;;) {
            if (!first) {
                // The rest of a long message: it is in the pipe already (no timeout applies).
                res = IoResult{};
                OVERLAPPED ov{};
                ov.hEvent = rev_;
                size_t off = discard ? 0 : have;  // a discarded message is read over the start of buf_
                size_t room = buf_.size() - off;
                DWORD want = room > 0x40000000u ? 0x40000000u : DWORD(room);
                if (!ReadFile(h_, buf_.data() + off, want, nullptr, &ov)) {
                    DWORD e = GetLastError();
                    if (e == ERROR_IO_PENDING) {
                        res = finish_io(h_, ov, dl, intr, false);
                    } else if (e == ERROR_MORE_DATA) {
                        GetOverlappedResult(h_, &ov, &res.n, FALSE);
                        res.err = e;
                    } else {
                        res.err = e;
                    }
                } else {
                    GetOverlappedResult(h_, &ov, &res.n, FALSE);
                }
            }
            first = false;
            if (!discard) have += res.n;
            if (res.err == 0 || res.err == ERROR_MORE_DATA) {
                if (res.err == 0) {
                    if (res.interrupted) { stash(have, discard); rethrow(res.interrupted); }
                    if (discard || have > max_) {
                        arm();
                        return report(err, errc::message_too_large, "pipe '" + name_ + "': a message exceeds max_message " + std::to_string(max_) + " (discarded)");
                    }
                    ready_ = true;
                    ready_len_ = have;
                    return true;
                }
                if (res.interrupted) return broken("a receive was interrupted in the middle of a long message", err);
                DWORD left = 0;
                if (!PeekNamedPipe(h_, nullptr, 0, nullptr, nullptr, &left)) return gone_or_throw(GetLastError(), "PeekNamedPipe", err);
                uint64_t total = uint64_t(have) + left;
                if (total > max_) discard = true;  // read the rest into buf_ and drop it
                else if (total > buf_.size()) buf_.resize(size_t(total));
                continue;
            }
            if (res.interrupted) rethrow(res.interrupted);
            if (res.err == ERROR_OPERATION_ABORTED && closing_) return report(err, errc::closed, "pipe '" + name_ + "' was closed");
            if (have) return broken("the peer vanished in the middle of a message", err);
            return gone_or_throw(res.err, "ReadFile", err);
        }
    }
    bool ready() const noexcept { return ready_; }
    // For a WaitSet (the receive lock held): a whole message has arrived, or the pipe ended.
    bool ready_now() {
        ErrorInfo e;
        bool r = fill(Deadline::after(0), Interrupt{}, false, &e);
        return r || static_cast<bool>(e);  // an error: recv() reports it
    }
    // The armed read's event: signalled when it completes (a message, or the pipe ended).
    void wait_source_into(WaitSource& s) const { s.handle = duplicate_handle(pev_); }
    const unsigned char* data() const noexcept { return buf_.data(); }
    size_t size() const noexcept { return ready_len_; }
    void consume() noexcept {
        ready_ = false;
        if (buf_.size() > (size_t(4) << 20)) std::vector<unsigned char>().swap(buf_);  // give big buffers back
        arm();  // the next message's read: what a WaitSet parks on
    }
    size_t pending_size() const {
        if (ready_) return ready_len_;
        if (armed_) return 0;  // the read in flight would have taken anything the pipe holds
        DWORD avail = 0, left = 0;
        if (!PeekNamedPipe(h_, nullptr, 0, nullptr, &avail, &left)) return 0;
        return left ? size_t(left) : size_t(avail);
    }

    bool send(const unsigned char* p, size_t n, const Deadline& dl, const Interrupt& intr, ErrorInfo* err = nullptr) {
        if (broken_) return report(err, errc::broken_pipe, "pipe '" + name_ + "': " + why_);
        OVERLAPPED ov{};
        ov.hEvent = wev_;
        IoResult res;
        if (!WriteFile(h_, p, DWORD(n), nullptr, &ov)) {
            DWORD e = GetLastError();
            if (e == ERROR_IO_PENDING) res = finish_io(h_, ov, dl, intr, true);
            else res.err = e;
        } else {
            GetOverlappedResult(h_, &ov, &res.n, FALSE);
        }
        if (res.timed_out) return false;
        if (res.interrupted) {
            if (res.err == 0 && res.n == n) rethrow(res.interrupted);  // it went out whole
            return broken("a send was interrupted", err);
        }
        if (res.err == 0) {
            if (res.n != n) return broken("WriteFile wrote part of a message", err);
            return true;
        }
        if (res.err == ERROR_OPERATION_ABORTED && closing_) return report(err, errc::closed, "pipe '" + name_ + "' was closed");
        if (peer_gone(res.err)) return broken("the peer is gone (WriteFile: " + win_message(res.err) + ")", err);
        return os_error(err, "WriteFile", name_, res.err);
    }
    bool try_send(const unsigned char*, size_t) { return false; }  // no cheap non-blocking write

    // Wakes threads blocked on this pipe (their operations are cancelled; they report closed).
    void wake_for_close(bool /*goodbye*/) noexcept {
        closing_ = true;
        if (h_) CancelIoEx(h_, nullptr);
    }
    // The receive lock held (or no other user left).
    void close_fd() noexcept {
        if (h_ && armed_) {
            // The armed read writes into rov_ and buf_ until it completes: collect it first.
            CancelIoEx(h_, &rov_);
            DWORD n = 0;
            GetOverlappedResult(h_, &rov_, &n, TRUE);
            armed_ = false;
        }
        if (h_) CloseHandle(h_);
        h_ = nullptr;
    }

private:
    void release() noexcept {
        close_fd();
        if (rev_) CloseHandle(rev_);
        if (wev_) CloseHandle(wev_);
        if (pev_) CloseHandle(pev_);
        rev_ = wev_ = pev_ = nullptr;
    }
    // Starts the read of the next message into buf_ unless one is armed, a message waits in
    // buf_, or the pipe is done. It may complete at once (the event is then set). The receive
    // lock held.
    void arm() noexcept {
        if (armed_ || ready_ || eof_ || broken_ || closing_ || !h_ || !pev_) return;
        if (buf_.size() < kFirstRead) buf_.resize(kFirstRead);
        rov_ = OVERLAPPED{};
        rov_.hEvent = pev_;
        const DWORD want = buf_.size() > 0x40000000u ? 0x40000000u : DWORD(buf_.size());
        if (!ReadFile(h_, buf_.data(), want, nullptr, &rov_)) {
            DWORD e = GetLastError();
            if (e != ERROR_IO_PENDING && e != ERROR_MORE_DATA) {
                // Nothing was queued (the pipe is gone): fill() reports it; the WaitSet sees it ready.
                arm_err_ = e;
                SetEvent(pev_);
                return;
            }
        }
        armed_ = true;
    }
    // The armed read's outcome once it has completed (waiting for it when block, within dl):
    // true with res filled; false if it is still in flight (it stays armed) or intr threw
    // (res.interrupted), or with armed_ false and res.err when it could not be started.
    bool collect_armed(const Deadline& dl, const Interrupt& intr, bool block, IoResult& res) {
        if (!armed_) {
            res.err = arm_err_;
            arm_err_ = 0;
            return false;
        }
        for (;;) {
            DWORD n = 0;
            if (GetOverlappedResult(h_, &rov_, &n, FALSE)) {
                armed_ = false;
                res.n = n;
                return true;
            }
            DWORD e = GetLastError();
            if (e != ERROR_IO_INCOMPLETE) {
                armed_ = false;
                res.n = n;
                res.err = e;
                return true;
            }
            if (!block || dl.left() == 0) return false;
            DWORD r = WaitForSingleObject(pev_, slice_ms(dl));
            if (r == WAIT_OBJECT_0) continue;
            if (r == WAIT_FAILED) return false;
            res.interrupted = capture([&] { intr(); });
            if (res.interrupted) return false;
        }
    }
    void stash(size_t have, bool discard) {
        if (!discard) { ready_ = true; ready_len_ = have; }
    }
    bool gone_or_throw(DWORD code, const char* call, ErrorInfo* err) {
        if (closing_) return report(err, errc::closed, "pipe '" + name_ + "' was closed");
        if (peer_gone(code)) {
            // Windows cannot tell a clean close from a crash: the end of the stream it is.
            eof_ = true;
            return report(err, errc::end_of_stream, "pipe '" + name_ + "': the peer closed the pipe (" + win_message(code) + ")");
        }
        return os_error(err, call, name_, code);
    }
    bool broken(const std::string& why, ErrorInfo* err) {
        broken_ = true;
        why_ = why;
        return report(err, errc::broken_pipe, "pipe '" + name_ + "': " + why);
    }

    HANDLE h_ = nullptr, rev_ = nullptr, wev_ = nullptr, pev_ = nullptr;
    OVERLAPPED rov_{};  // the armed read (into buf_ from 0), in flight while armed_
    bool armed_ = false;
    DWORD arm_err_ = 0;  // the armed read could not start (the pipe is gone)
    std::string name_;
    size_t max_;
    std::vector<unsigned char> buf_;
    size_t ready_len_ = 0;
    bool ready_ = false, eof_ = false, broken_ = false;
    std::atomic<bool> closing_{false};
    std::string why_;
};

// ---------------------------------------------------------------- listening
// One instance waits for the next client at all times (created at once, and again after
// each accept), so clients can connect before accept() is called. The first instance is
// created with FILE_FLAG_FIRST_PIPE_INSTANCE: a second server on the name is refused.
class PipeListener {
public:
    PipeListener() = default;
    PipeListener(const PipeListener&) = delete;
    PipeListener& operator=(const PipeListener&) = delete;
    ~PipeListener() { close(); }

    void create(const std::string& name) { create(name, nullptr); }
    bool create(const std::string& name, ErrorInfo* err) {
        name_ = name;
        if (!pipe_path(name, path_, err)) return false;
        // One server per name. FILE_FLAG_FIRST_PIPE_INSTANCE says so on Windows, but Wine
        // ignores it; a named mutex held for the server's life says so everywhere (and goes
        // away with a crashed server, like the pipe itself).
        std::string guard = "Local\\sharedstate-pipe-server." + path_.substr(9);
        guard_ = CreateMutexA(nullptr, FALSE, guard.c_str());
        if (!guard_) return os_error(err, "CreateMutexA", guard);
        if (GetLastError() == ERROR_ALREADY_EXISTS) {
            close();
            return report(err, std::error_code(int(ERROR_ALREADY_EXISTS), std::system_category()),
                          "pipe '" + name + "': a server is already listening [WinError 183]");
        }
        ev_ = CreateEventA(nullptr, TRUE, FALSE, nullptr);
        if (!ev_) { DWORD e = GetLastError(); close(); return os_error(err, "CreateEventA", name, e); }
        pending_ = on_throw([&] { return instance(true, err); }, [&] { close(); });
        if (!pending_) { close(); return false; }
        if (!arm(err)) { close(); return false; }
        return true;
    }

    // nullptr on timeout (or, with err, a failure: *err set). The caller holds the server's
    // lock. A timeout or Ctrl-C leaves the connect armed: the client is accepted next time.
    HANDLE accept(const Deadline& dl, const Interrupt& intr, ErrorInfo* err = nullptr) {
        for (;;) {
            if (closing_) { report(err, errc::closed, "pipe server '" + name_ + "' was closed"); return nullptr; }
            if (!pending_ && !(pending_ = instance(false, err))) return nullptr;
            if (!armed_ && !arm(err)) return nullptr;
            // Wait for the armed connect, in slices (Ctrl-C, deadline).
            for (;;) {
                if (WaitForSingleObject(ev_, 0) == WAIT_OBJECT_0) break;
                if (dl.left() == 0) return nullptr;
                DWORD r = WaitForSingleObject(ev_, slice_ms(dl));
                if (r == WAIT_OBJECT_0) break;
                if (r == WAIT_FAILED) { os_error(err, "WaitForSingleObject", name_, GetLastError()); return nullptr; }
                intr();
            }
            DWORD e = 0;
            if (!preconnected_) {
                DWORD n = 0;
                if (!GetOverlappedResult(pending_, &cov_, &n, FALSE)) e = GetLastError();
                if (e == ERROR_IO_INCOMPLETE) continue;  // the event was set by hand: look again
            }
            armed_ = false;
            preconnected_ = false;
            if (e == ERROR_OPERATION_ABORTED) {
                if (closing_) {
                    report(err, errc::closed, "pipe server '" + name_ + "' was closed");
                    return nullptr;
                }
                // The thread that armed it has exited (Windows cancels a thread's I/O then): arm
                // again; a client that connected meanwhile is reported as ERROR_PIPE_CONNECTED.
                continue;
            }
            if (e == ERROR_NO_DATA || e == ERROR_BROKEN_PIPE) {
                DisconnectNamedPipe(pending_);  // a client came and left: recycle the instance
                continue;
            }
            if (e != 0) { os_error(err, "ConnectNamedPipe", name_, e); return nullptr; }
            HANDLE h = pending_;
            pending_ = nullptr;
            ErrorInfo later;  // retried by the next accept
            pending_ = instance(false, &later);
            if (pending_) arm(&later);  // the next client's connect: what a WaitSet parks on
            return h;
        }
    }

    void wake_for_close() noexcept {
        closing_ = true;
        if (pending_) CancelIoEx(pending_, nullptr);
    }
    void close() noexcept {
        if (pending_ && armed_ && !preconnected_) {
            // The armed connect writes into cov_ until it completes: collect it first.
            CancelIoEx(pending_, &cov_);
            DWORD n = 0;
            GetOverlappedResult(pending_, &cov_, &n, TRUE);
        }
        armed_ = preconnected_ = false;
        if (pending_) CloseHandle(pending_);
        pending_ = nullptr;
        if (ev_) CloseHandle(ev_);
        ev_ = nullptr;
        if (guard_) CloseHandle(guard_);
        guard_ = nullptr;
    }
    const std::string& path() const noexcept { return path_; }
    // A WaitSet member: the armed connect's event, set when a client has connected; the
    // check is ready_now() (PipeServer::wait_source, under the server's lock).
    void wait_source_into(WaitSource& s) const { s.handle = duplicate_handle(ev_); }
    // A client is waiting to be accepted (or the server is closing: accept() reports it).
    // A connect cancelled by its thread's exit is armed again; a client that came and left
    // is recycled, as accept() does. The server's lock held.
    bool ready_now() noexcept {
        for (int i = 0; i < 8; ++i) {
            if (closing_) return true;
            if (!pending_) return false;
            ErrorInfo e;
            if (!armed_ && !arm(&e)) return true;  // accept() reports the failure
            if (preconnected_) return true;
            DWORD n = 0;
            if (GetOverlappedResult(pending_, &cov_, &n, FALSE)) return true;
            const DWORD r = GetLastError();
            if (r == ERROR_IO_INCOMPLETE) return false;
            armed_ = false;
            if (r == ERROR_NO_DATA || r == ERROR_BROKEN_PIPE) DisconnectNamedPipe(pending_);
            else if (r != ERROR_OPERATION_ABORTED) return true;
        }
        return false;
    }

private:
    HANDLE instance(bool first, ErrorInfo* err) {
        DWORD open = PIPE_ACCESS_DUPLEX | FILE_FLAG_OVERLAPPED | (first ? FILE_FLAG_FIRST_PIPE_INSTANCE : 0);
        DWORD mode = PIPE_TYPE_MESSAGE | PIPE_READMODE_MESSAGE | PIPE_WAIT | kPipeRejectRemoteClients;
        // Default security: full access for the creator, SYSTEM and Administrators; others
        // may at most read, and a client needs read+write.
        HANDLE h = CreateNamedPipeA(path_.c_str(), open, mode, PIPE_UNLIMITED_INSTANCES, kPipeBuffer, kPipeBuffer, 0, nullptr);
        if (h == INVALID_HANDLE_VALUE) {
            DWORD e = GetLastError();
            if (first && (e == ERROR_ACCESS_DENIED || e == ERROR_PIPE_BUSY))
                report(err, std::error_code(int(ERROR_ALREADY_EXISTS), std::system_category()),
                       "CreateNamedPipeA('" + path_ + "'): a server is already listening [WinError " + std::to_string(e) + "]");
            else
                os_error(err, "CreateNamedPipeA", path_, e);
            return nullptr;
        }
        return h;
    }
    // Arms ConnectNamedPipe on the waiting instance (ev_ is set when a client connects).
    bool arm(ErrorInfo* err) {
        for (;;) {
            cov_ = OVERLAPPED{};
            cov_.hEvent = ev_;
            ResetEvent(ev_);
            preconnected_ = false;
            if (ConnectNamedPipe(pending_, &cov_)) { armed_ = true; return true; }  // completed: ev_ is set
            DWORD e = GetLastError();
            if (e == ERROR_IO_PENDING) { armed_ = true; return true; }
            if (e == ERROR_PIPE_CONNECTED) {  // connected before we asked: no I/O to wait for
                armed_ = preconnected_ = true;
                SetEvent(ev_);
                return true;
            }
            if (e == ERROR_NO_DATA) {  // a client connected and left already: recycle the instance
                DisconnectNamedPipe(pending_);
                continue;
            }
            return os_error(err, "ConnectNamedPipe", name_, e);
        }
    }

    HANDLE pending_ = nullptr, ev_ = nullptr, guard_ = nullptr;
    OVERLAPPED cov_{};           // the armed connect on pending_, in flight while armed_
    bool armed_ = false;         // a connect is armed (or done: ev_ set) on pending_
    bool preconnected_ = false;  // ERROR_PIPE_CONNECTED: connected without an I/O
    std::atomic<bool> closing_{false};
    std::string name_, path_;
};

// Opens the client end. Nobody serving: ERROR_FILE_NOT_FOUND at once when the deadline is
// forever, else retried until it passes (errc::timeout). All instances busy: WaitNamedPipeA.
// nullptr (kNoPipe) with err set on failure, when err is given.
inline HANDLE pipe_connect(const std::string& name, const Deadline& dl, const Interrupt& intr, ErrorInfo* err = nullptr) {
    std::string path;
    if (!pipe_path(name, path, err)) return nullptr;
    for (;;) {
        HANDLE h = CreateFileA(path.c_str(), GENERIC_READ | GENERIC_WRITE, 0, nullptr, OPEN_EXISTING,
                               FILE_FLAG_OVERLAPPED | SECURITY_SQOS_PRESENT | SECURITY_IDENTIFICATION, nullptr);
        if (h != INVALID_HANDLE_VALUE) {
            DWORD mode = PIPE_READMODE_MESSAGE;
            if (!SetNamedPipeHandleState(h, &mode, nullptr, nullptr)) {
                DWORD e = GetLastError();
                CloseHandle(h);
                os_error(err, "SetNamedPipeHandleState", name, e);
                return nullptr;
            }
            return h;
        }
        DWORD e = GetLastError();
        if (e == ERROR_PIPE_BUSY) {
            WaitNamedPipeA(path.c_str(), slice_ms(dl) ? slice_ms(dl) : 1);
        } else if (e == ERROR_FILE_NOT_FOUND) {
            if (dl.forever()) { os_error(err, "CreateFileA", name + "' at '" + path, e); return nullptr; }
            uint64_t left = dl.left();
            Sleep(left > 2000000 ? 2 : 1);
        } else {
            os_error(err, "CreateFileA", path, e);
            return nullptr;
        }
        if (dl.left() == 0) { report(err, errc::timeout, "pipe '" + name + "': no server accepted a connection in time"); return nullptr; }
        intr();
    }
}

// ---------------------------------------------------------------- named semaphores
class NamedSemaphore {
public:
    NamedSemaphore() = default;
    NamedSemaphore(const NamedSemaphore&) = delete;
    NamedSemaphore& operator=(const NamedSemaphore&) = delete;
    ~NamedSemaphore() { close(); }

    // With err: false with *err set on failure; without: throws.
    bool create(const std::string& name, uint32_t initial, uint32_t maximum, bool /*persistent*/, ErrorInfo* err = nullptr) {
        name_ = name;
        SplitName sn;
        if (err ? !split_name(name, "semaphore", sn, *err) : (sn = split_name(name, "semaphore"), false)) return false;
        std::string path = sn.prefix + sn.base;
        h_ = CreateSemaphoreA(nullptr, LONG(initial), LONG(maximum), path.c_str());
        if (!h_) return os_error(err, "CreateSemaphoreA", name);
        if (GetLastError() == ERROR_ALREADY_EXISTS) {
            close();
            return os_error(err, "CreateSemaphoreA", name, ERROR_ALREADY_EXISTS);
        }
        return true;
    }
    bool open(const std::string& name, bool /*persistent*/, ErrorInfo* err = nullptr) {
        name_ = name;
        SplitName sn;
        if (err ? !split_name(name, "semaphore", sn, *err) : (sn = split_name(name, "semaphore"), false)) return false;
        std::string path = sn.prefix + sn.base;
        h_ = OpenSemaphoreA(SEMAPHORE_ALL_ACCESS, FALSE, path.c_str());
        if (!h_) return os_error(err, "OpenSemaphoreA", name);
        return true;
    }
    bool acquire(const Deadline& dl, const Interrupt& intr, ErrorInfo* err = nullptr) {
        for (;;) {
            DWORD r = WaitForSingleObject(h_, slice_ms(dl));
            if (r == WAIT_OBJECT_0) return true;
            if (r != WAIT_TIMEOUT) return os_error(err, "WaitForSingleObject", name_);
            if (dl.left() == 0) return false;
            intr();
        }
    }
    bool release(uint32_t n, ErrorInfo* err = nullptr) {
        if (!ReleaseSemaphore(h_, LONG(n), nullptr)) {
            DWORD e = GetLastError();
            if (e == ERROR_TOO_MANY_POSTS)
                return report(err, errc::invalid_argument,
                              "semaphore '" + name_ + "': release(" + std::to_string(n) + ") would exceed its maximum");
            return os_error(err, "ReleaseSemaphore", name_, e);
        }
        return true;
    }
    void close() noexcept {
        if (h_) CloseHandle(h_);
        h_ = nullptr;
    }
    static bool unlink(const std::string& name) {
        split_name(name, "semaphore");
        return false;  // the object goes away with its last handle
    }
    // A WaitSet member (detail/wait_source.hpp): the semaphore handle itself. Waiting on it
    // takes a count, which the set gives back at once (readiness only).
    WaitSource wait_source() const {
        WaitSource s;
        s.handle = duplicate_handle(h_);
        if (!s.handle) throw_os("DuplicateHandle", name_);
        s.handle_consumes = true;
        std::shared_ptr<void> h = s.handle;
        s.ready = [h] {
            DWORD r = WaitForSingleObject(h.get(), 0);
            if (r != WAIT_OBJECT_0) return r == WAIT_FAILED;
            ReleaseSemaphore(h.get(), 1, nullptr);
            return true;
        };
        return s;
    }
    static uint32_t value_max() { return 0x7fffffffu; }
    bool is_open() const noexcept { return h_ != nullptr; }

private:
    HANDLE h_ = nullptr;
    std::string name_;
};

}  // namespace os
}  // namespace detail
}  // namespace sharedstate
