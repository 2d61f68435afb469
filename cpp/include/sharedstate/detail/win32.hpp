// The Windows backend: every Win32 call the library makes lives in this file.
// Same interface as posix.hpp. Windows keeps a named object alive while any handle or view
// is open, so segment lifetime needs no help from us; waits use a named semaphore per
// wake channel (`NAME.sharedstate-wakeN`), released once per parked waiter.
//
// <windows.h> is included as the game's translation unit has configured it: this header
// defines no WIN32_LEAN_AND_MEAN / NOMINMAX of its own (<windows.h> has include guards, so
// whatever the first inclusion sees is what the game gets). The code here and in every other
// header survives the SDK's macros (min, max, near, far, interface, small, ERROR, DELETE, IN,
// OUT, OPTIONAL, the UNICODE renames): calls are spelled (std::min)(a, b) and the A functions
// are named explicitly.
#pragma once
#include <windows.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "../error.hpp"
#include "../name.hpp"
#include "mapping.hpp"

namespace sharedstate {
namespace detail {
namespace os {

inline std::string win_message(DWORD err) {
    char* buf = nullptr;
    DWORD n = FormatMessageA(FORMAT_MESSAGE_ALLOCATE_BUFFER | FORMAT_MESSAGE_FROM_SYSTEM | FORMAT_MESSAGE_IGNORE_INSERTS,
                             nullptr, err, 0, reinterpret_cast<char*>(&buf), 0, nullptr);
    std::string s = n && buf ? std::string(buf, n) : "Windows error " + std::to_string(err);
    if (buf) LocalFree(buf);
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == '.')) s.pop_back();
    return s;
}

// The error-code form of throw_os: records the same error, returns false.
inline bool os_error(ErrorInfo& out, const std::string& call, const std::string& object, DWORD err = GetLastError()) {
    // system_category() carries the Win32 code; the text is Windows' own message.
    return out.set(std::error_code(int(err), std::system_category()),
                   call + "('" + object + "'): " + win_message(err) + " [WinError " + std::to_string(err) + "]");
}
[[noreturn]] inline void throw_os(const std::string& call, const std::string& object, DWORD err = GetLastError()) {
    ErrorInfo e;
    os_error(e, call, object, err);
    fail(e);
}
// With out: os_error; without: throw_os.
inline bool os_error(ErrorInfo* out, const std::string& call, const std::string& object, DWORD err = GetLastError()) {
    if (!out) throw_os(call, object, err);
    return os_error(*out, call, object, err);
}

inline uint64_t monotonic_ns() noexcept {
    static const uint64_t freq = [] { LARGE_INTEGER f; QueryPerformanceFrequency(&f); return uint64_t(f.QuadPart); }();
    LARGE_INTEGER c;
    QueryPerformanceCounter(&c);
    uint64_t t = uint64_t(c.QuadPart);
    return (t / freq) * 1000000000u + (t % freq) * 1000000000u / freq;
}

inline void sleep_ns(uint64_t ns) noexcept { Sleep(DWORD(ns / 1000000u)); }

// The user's name as given (so `ControllerMemory` meets an unmodified C++ program).
inline std::string shm_path(const std::string& name, const char* what) {
    auto s = split_name(name, what);
    return s.prefix + s.base;
}
inline std::string derived_name(const std::string& name, const char* suffix) {
    return shm_path(name, "segment") + suffix;
}

// ---------------------------------------------------------------- process identity
// (pid << 32) | token, token = low bits of the process creation time (against pid reuse).
inline uint32_t creation_token(HANDLE process) {
    FILETIME c, e, k, u;
    if (!GetProcessTimes(process, &c, &e, &k, &u)) return 0;
    uint32_t t = c.dwLowDateTime ^ c.dwHighDateTime;
    return t ? t : 1u;
}

inline uint64_t self_owner() {
    static const uint64_t me = (uint64_t(GetCurrentProcessId()) << 32) | creation_token(GetCurrentProcess());
    return me;
}
inline uint32_t owner_pid(uint64_t owner) { return uint32_t(owner >> 32); }
inline uint32_t current_pid() { return uint32_t(GetCurrentProcessId()); }

inline bool owner_alive(uint64_t owner) {
    if (owner == self_owner()) return true;
    DWORD pid = owner_pid(owner);
    if (pid == 0) return false;
    HANDLE h = OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, FALSE, pid);
    if (!h) return GetLastError() == ERROR_ACCESS_DENIED;  // exists, but not ours to query
    DWORD code = 0;
    bool alive = GetExitCodeProcess(h, &code) && code == STILL_ACTIVE && creation_token(h) == uint32_t(owner);
    CloseHandle(h);
    return alive;
}

// ---------------------------------------------------------------- mappings
inline void unmap(void* addr, size_t) noexcept { UnmapViewOfFile(addr); }
inline bool is_exists_error(const std::error_code& ec) {
    return ec == std::error_code(int(ERROR_ALREADY_EXISTS), std::system_category());
}

class SegmentFile {
public:
    SegmentFile() = default;
    SegmentFile(SegmentFile&& o) noexcept { *this = std::move(o); }
    SegmentFile& operator=(SegmentFile&& o) noexcept {
        if (this != &o) {
            drop();
            h_ = o.h_; name_ = std::move(o.name_); writable_ = o.writable_;
            o.h_ = nullptr;
        }
        return *this;
    }
    ~SegmentFile() { drop(); }

    // Pagefile-backed section. The default security descriptor gives access to the
    // creating user (and SYSTEM/Administrators) only: the Windows counterpart of 0600.
    static SegmentFile create(const std::string& name, uint64_t size, bool holder = true) {
        ErrorInfo err;
        SegmentFile f = create(name, size, holder, err);
        if (err) fail(err);
        return f;
    }
    static SegmentFile create(const std::string& name, uint64_t size, bool /*holder*/, ErrorInfo& err) {
        SplitName sn;
        if (!split_name(name, "segment", sn, err)) return SegmentFile();
        SegmentFile f;
        f.name_ = name;
        std::string path = sn.prefix + sn.base;
        f.h_ = CreateFileMappingA(INVALID_HANDLE_VALUE, nullptr, PAGE_READWRITE | SEC_COMMIT,
                                  DWORD(size >> 32), DWORD(size & 0xffffffffu), path.c_str());
        if (!f.h_) { os_error(err, "CreateFileMappingA", name); return SegmentFile(); }
        if (GetLastError() == ERROR_ALREADY_EXISTS) {
            f.drop();
            os_error(err, "CreateFileMappingA", name, ERROR_ALREADY_EXISTS);
            return SegmentFile();
        }
        f.writable_ = true;
        return f;
    }

    static SegmentFile open(const std::string& name, bool writable, bool holder, bool& others) {
        ErrorInfo err;
        SegmentFile f = open(name, writable, holder, others, err);
        if (err) fail(err);
        return f;
    }
    static SegmentFile open(const std::string& name, bool writable, bool /*holder*/, bool& others, ErrorInfo& err) {
        SplitName sn;
        if (!split_name(name, "segment", sn, err)) return SegmentFile();
        SegmentFile f;
        f.name_ = name;
        std::string path = sn.prefix + sn.base;
        f.h_ = OpenFileMappingA(writable ? FILE_MAP_READ | FILE_MAP_WRITE : FILE_MAP_READ, FALSE, path.c_str());
        if (!f.h_) { os_error(err, "OpenFileMappingA", name); return SegmentFile(); }
        f.writable_ = writable;
        others = true;  // a named section exists only while somebody holds it
        return f;
    }

    // The section's size is not exposed by Win32; a whole view's region size (page-rounded)
    // is the accessible size, which is what bounds checks need.
    uint64_t size() const {
        ErrorInfo err;
        uint64_t n = size(err);
        if (err) fail(err);
        return n;
    }
    uint64_t size(ErrorInfo& err) const {
        void* p = MapViewOfFile(h_, FILE_MAP_READ, 0, 0, 0);
        if (!p) { os_error(err, "MapViewOfFile", name_); return 0; }
        MEMORY_BASIC_INFORMATION mi;
        SIZE_T n = VirtualQuery(p, &mi, sizeof mi);
        DWORD e = GetLastError();
        UnmapViewOfFile(p);
        if (n == 0) { os_error(err, "VirtualQuery", name_, e); return 0; }
        return uint64_t(mi.RegionSize);
    }
    uint32_t mode() const { return 0600; }

    std::shared_ptr<Mapping> map(uint64_t size, bool writable) const {
        ErrorInfo err;
        auto m = map(size, writable, err);
        if (err) fail(err);
        return m;
    }
    std::shared_ptr<Mapping> map(uint64_t size, bool writable, ErrorInfo& err) const {
        void* p = MapViewOfFile(h_, writable ? FILE_MAP_READ | FILE_MAP_WRITE : FILE_MAP_READ, 0, 0, SIZE_T(size));
        if (!p) { os_error(err, "MapViewOfFile", name_); return nullptr; }
        return std::make_shared<Mapping>(p, size_t(size), &unmap);
    }

    bool close(bool /*unlink_if_last*/) noexcept { drop(); return false; }

    // Windows has no unlink: a name goes with its last handle. Closing ours is all we can do.
    static void unlink(const std::string&) {}
    static bool exists(const std::string& name) {
        std::string path = shm_path(name, "segment");
        HANDLE h = OpenFileMappingA(FILE_MAP_READ, FALSE, path.c_str());
        if (!h) return false;
        CloseHandle(h);
        return true;
    }
    static bool held(const std::string& name) { return exists(name); }
    // A held section cannot go away or be replaced; Windows does not say who holds it.
    bool still_named() const { return h_ != nullptr; }
    bool holders(std::vector<uint32_t>& pids) const { pids.clear(); return false; }

    const std::string& name() const { return name_; }

private:
    void drop() { if (h_) CloseHandle(h_); h_ = nullptr; }
    HANDLE h_ = nullptr;
    std::string name_;
    bool writable_ = false;
};

// ---------------------------------------------------------------- waiting on a word
// A named semaphore per (segment, channel). Waiters register in the segment's waiter
// count before parking; a writer that sees waiters releases that many permits. A permit
// released before its waiter parks is kept by the semaphore, so no wake-up is lost; a
// surplus permit only causes one spurious wake, after which the waiter re-checks.
class WakeChannel {
public:
    WakeChannel() = default;
    WakeChannel(const std::string& segment, int index) {
        ErrorInfo err;
        if (!open(segment, index, err)) fail(err);
    }
    // The error-code form: opens (creating if needed) the channel's semaphore.
    bool open(const std::string& segment, int index, ErrorInfo& err) {
        SplitName sn;
        if (!split_name(segment, "segment", sn, err)) return false;
        std::string n = sn.prefix + sn.base + ".sharedstate-wake" + std::to_string(index);
        HANDLE h = CreateSemaphoreA(nullptr, 0, 0x7fffffff, n.c_str());
        if (!h) return os_error(err, "CreateSemaphoreA", n);
        if (h_) CloseHandle(h_);
        h_ = h;
        return true;
    }
    WakeChannel(WakeChannel&& o) noexcept : h_(o.h_) { o.h_ = nullptr; }
    WakeChannel& operator=(WakeChannel&& o) noexcept {
        if (this != &o) { if (h_) CloseHandle(h_); h_ = o.h_; o.h_ = nullptr; }
        return *this;
    }
    WakeChannel(const WakeChannel&) = delete;
    WakeChannel& operator=(const WakeChannel&) = delete;
    ~WakeChannel() { if (h_) CloseHandle(h_); }
    HANDLE handle() const { return h_; }
private:
    HANDLE h_ = nullptr;
};

inline bool park(const std::atomic<uint32_t>* word, uint32_t expected, uint64_t timeout_ns, WakeChannel& ch) {
    if (word->load(std::memory_order_seq_cst) != expected) return true;
    DWORD ms = DWORD(timeout_ns / 1000000u);
    if (ms == 0) ms = 1;
    WaitForSingleObject(ch.handle(), ms);
    return true;
}

inline void unpark_all(const std::atomic<uint32_t>*, uint32_t waiters, WakeChannel& ch) {
    if (waiters == 0) return;
    if (waiters > 1024) waiters = 1024;  // a hostile count must not overflow the semaphore
    ReleaseSemaphore(ch.handle(), LONG(waiters), nullptr);
}

}  // namespace os
}  // namespace detail
}  // namespace sharedstate
