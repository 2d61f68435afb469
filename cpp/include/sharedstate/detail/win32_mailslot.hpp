// The Windows mailslot: every Win32 mailslot call lives here. Included by mailslot.hpp only
// on Windows; the classes are sharedstate::Mailslot / MailslotWriter there.
//
// The reader waits in ReadFile with the mailslot's read timeout (SetMailslotInfo) set to a
// slice of at most 50 ms, so that a timeout is honoured and Ctrl-C is seen between slices.
// A message of any size is read whole: GetMailslotInfo gives the next message's size first.
#pragma once
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "../error.hpp"
#include "../name.hpp"
#include "../wait.hpp"
#include "wait_source.hpp"
#include "mailslot_types.hpp"
#include "win32.hpp"

namespace sharedstate {
namespace detail {

inline std::string mailslot_path(const std::string& name) {
    return "\\\\.\\mailslot\\" + split_name(name, "mailslot").base;
}

class Win32Mailslot {
public:
    Win32Mailslot() = default;
    // `capacity` means nothing here: Windows queues the messages itself.
    explicit Win32Mailslot(const std::string& name, uint32_t max_message = kMailslotDefaultMaxMessage,
                           uint64_t /*capacity*/ = kMailslotDefaultCapacity)
        : name_(name), max_message_(max_message) {
        std::string path = mailslot_path(name);
        h_ = CreateMailslotA(path.c_str(), max_message, 0, nullptr);
        if (h_ == INVALID_HANDLE_VALUE) {
            h_ = nullptr;
            os::throw_os("CreateMailslotA", name);
        }
        buf_.resize(max_message ? max_message : 65536);
    }
    Win32Mailslot(Win32Mailslot&& o) noexcept { *this = std::move(o); }
    Win32Mailslot& operator=(Win32Mailslot&& o) noexcept {
        if (this != &o) {
            close();
            h_ = o.h_; name_ = std::move(o.name_); max_message_ = o.max_message_; buf_ = std::move(o.buf_);
            read_timeout_ = o.read_timeout_;
            o.h_ = nullptr;
        }
        return *this;
    }
    Win32Mailslot(const Win32Mailslot&) = delete;
    Win32Mailslot& operator=(const Win32Mailslot&) = delete;
    ~Win32Mailslot() { close(); }

    std::vector<unsigned char> recv(std::chrono::nanoseconds timeout = std::chrono::nanoseconds(-1),
                                    const Interrupt& intr = {}) {
        check_open();
        auto deadline = Deadline::after(timeout.count());
        for (;;) {
            DWORD next = 0, count = 0;
            if (!GetMailslotInfo(h_, nullptr, &next, &count, nullptr)) os::throw_os("GetMailslotInfo", name_);
            if (next != MAILSLOT_NO_MESSAGE) {
                if (next > buf_.size()) buf_.resize(next);
                set_read_timeout(0);
                DWORD got = 0;
                if (ReadFile(h_, buf_.data(), DWORD(buf_.size()), &got, nullptr))
                    return std::vector<unsigned char>(buf_.begin(), buf_.begin() + got);
                DWORD err = GetLastError();
                // Wine reads a zero-length mailslot message as ERROR_BROKEN_PIPE (consuming it);
                // Windows returns 0 bytes. A mailslot reader has no pipe to break otherwise.
                if (next == 0 && err == ERROR_BROKEN_PIPE) return {};
                if (err != ERROR_SEM_TIMEOUT && err != ERROR_INSUFFICIENT_BUFFER) os::throw_os("ReadFile", name_, err);
                continue;
            }
            uint64_t left = deadline.left();
            if (left == 0) fail(errc::timeout, "recv from mailslot '" + name_ + "': no message");
            uint64_t slice = (std::min<uint64_t>)(left, kSliceNs);
            // Sleep in ReadFile until a message comes or the slice ends; a message read here
            // is returned directly.
            set_read_timeout(DWORD(std::max<uint64_t>(1, slice / 1000000u)));
            DWORD got = 0;
            if (ReadFile(h_, buf_.data(), DWORD(buf_.size()), &got, nullptr))
                return std::vector<unsigned char>(buf_.begin(), buf_.begin() + got);
            DWORD err = GetLastError();
            if (err != ERROR_SEM_TIMEOUT && err != ERROR_INSUFFICIENT_BUFFER) os::throw_os("ReadFile", name_, err);
            intr();
        }
    }
    size_t recv_into(void* buf, size_t cap, std::chrono::nanoseconds timeout = std::chrono::nanoseconds(-1),
                     const Interrupt& intr = {}) {
        wait(timeout, intr);
        DWORD next = 0;
        if (!GetMailslotInfo(h_, nullptr, &next, nullptr, nullptr)) os::throw_os("GetMailslotInfo", name_);
        if (next != MAILSLOT_NO_MESSAGE && next > cap)
            fail(errc::message_too_large, "recv_into('" + name_ + "'): message of " + std::to_string(next) +
                                              " bytes, buffer of " + std::to_string(cap));
        auto m = recv(timeout, intr);
        std::memcpy(buf, m.data(), m.size());
        return m.size();
    }
    void wait(std::chrono::nanoseconds timeout, const Interrupt& intr = {}) {
        check_open();
        auto deadline = Deadline::after(timeout.count());
        for (;;) {
            if (info().next_size >= 0) return;
            if (deadline.left() == 0) fail(errc::timeout, "wait on mailslot '" + name_ + "': no message");
            Sleep(1);
            intr();
        }
    }
    MailslotInfo info() {
        check_open();
        DWORD next = 0, count = 0;
        if (!GetMailslotInfo(h_, nullptr, &next, &count, nullptr)) os::throw_os("GetMailslotInfo", name_);
        MailslotInfo i;
        i.next_size = next == MAILSLOT_NO_MESSAGE ? -1 : int64_t(next);
        i.count = int64_t(count);
        return i;
    }
    // A WaitSet member (detail/wait_source.hpp). A mailslot has no wait handle for "a message
    // arrived": it is polled with GetMailslotInfo every 2 ms, on a duplicate of the handle.
    WaitSource wait_source() const {
        check_open();
        WaitSource s;
        s.key = this;
        s.what = "mailslot '" + name_ + "'";
        std::shared_ptr<void> h = duplicate_handle(h_);
        if (!h) os::throw_os("DuplicateHandle", name_);
        s.ready = [h] {
            DWORD next = 0;
            if (!GetMailslotInfo(h.get(), nullptr, &next, nullptr, nullptr)) return true;  // recv() reports it
            return next != MAILSLOT_NO_MESSAGE;
        };
        s.poll_ns = 2000000;
        return s;
    }
    uint32_t max_message() const { return max_message_; }
    const std::string& name() const noexcept { return name_; }
    bool closed() const noexcept { return h_ == nullptr; }
    void close() noexcept {
        if (h_) CloseHandle(h_);
        h_ = nullptr;
    }

private:
    void check_open() const {
        if (!h_) fail(errc::closed, "mailslot '" + name_ + "' is closed");
    }
    void set_read_timeout(DWORD ms) {
        if (ms == read_timeout_) return;
        if (!SetMailslotInfo(h_, ms)) os::throw_os("SetMailslotInfo", name_);
        read_timeout_ = ms;
    }
    HANDLE h_ = nullptr;
    std::string name_;
    uint32_t max_message_ = 0;
    std::vector<unsigned char> buf_;
    DWORD read_timeout_ = 0;
};

class Win32MailslotWriter {
public:
    Win32MailslotWriter() = default;
    // errc: the OS's ERROR_FILE_NOT_FOUND (FileNotFoundError) if nobody reads NAME.
    explicit Win32MailslotWriter(const std::string& name) : name_(name) {
        std::string path = mailslot_path(name);
        h_ = CreateFileA(path.c_str(), GENERIC_WRITE, FILE_SHARE_READ | FILE_SHARE_WRITE, nullptr, OPEN_EXISTING,
                         FILE_ATTRIBUTE_NORMAL, nullptr);
        if (h_ == INVALID_HANDLE_VALUE) {
            h_ = nullptr;
            os::throw_os("CreateFileA", name);
        }
    }
    Win32MailslotWriter(Win32MailslotWriter&& o) noexcept { *this = std::move(o); }
    Win32MailslotWriter& operator=(Win32MailslotWriter&& o) noexcept {
        if (this != &o) { close(); h_ = o.h_; name_ = std::move(o.name_); o.h_ = nullptr; }
        return *this;
    }
    Win32MailslotWriter(const Win32MailslotWriter&) = delete;
    Win32MailslotWriter& operator=(const Win32MailslotWriter&) = delete;
    ~Win32MailslotWriter() { close(); }

    // Windows queues the message in the kernel: WriteFile does not wait for the reader.
    void send(const void* data, size_t len, std::chrono::nanoseconds /*timeout*/ = std::chrono::nanoseconds(0),
              const Interrupt& /*intr*/ = {}) {
        if (!h_) fail(errc::closed, "mailslot writer '" + name_ + "' is closed");
        if (len > 0xffffffffu) fail(errc::message_too_large, "send to mailslot '" + name_ + "': message over 4 GiB");
        DWORD put = 0;
        if (!WriteFile(h_, data, DWORD(len), &put, nullptr)) os::throw_os("WriteFile", name_);
        if (put != len) fail(errc::broken_pipe, "send to mailslot '" + name_ + "': short write");
    }
    void send(const std::string& s, std::chrono::nanoseconds timeout = std::chrono::nanoseconds(0)) {
        send(s.data(), s.size(), timeout);
    }
    const std::string& name() const noexcept { return name_; }
    bool closed() const noexcept { return h_ == nullptr; }
    void close() noexcept {
        if (h_) CloseHandle(h_);
        h_ = nullptr;
    }

private:
    HANDLE h_ = nullptr;
    std::string name_;
};

}  // namespace detail
}  // namespace sharedstate
