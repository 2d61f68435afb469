// The Linux backend: every POSIX/Linux call the library makes lives in this file.
// The same small interface exists in win32.hpp:
//   throw_os, Mapping, SegmentFile, Process (self_owner / owner_alive), WakeChannel,
//   park / unpark, NamedSemaphore, monotonic_ns.
#pragma once
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <climits>
#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "../error.hpp"
#include "../name.hpp"
#include "mapping.hpp"

namespace sharedstate {
namespace detail {
namespace os {

[[noreturn]] inline void throw_os(const std::string& call, const std::string& object, int err = errno) {
    fail(std::error_code(err, std::generic_category()), call + "('" + object + "')");
}
// The error-code form of throw_os: records the same error, returns false.
inline bool os_error(ErrorInfo& out, const std::string& call, const std::string& object, int err = errno) {
    return out.set(std::error_code(err, std::generic_category()), call + "('" + object + "')");
}
// With out: os_error; without: throw_os.
inline bool os_error(ErrorInfo* out, const std::string& call, const std::string& object, int err = errno) {
    if (!out) throw_os(call, object, err);
    return os_error(*out, call, object, err);
}

inline uint64_t monotonic_ns() noexcept {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return uint64_t(ts.tv_sec) * 1000000000u + uint64_t(ts.tv_nsec);
}

inline void sleep_ns(uint64_t ns) noexcept {
    timespec ts{time_t(ns / 1000000000u), long(ns % 1000000000u)};
    nanosleep(&ts, nullptr);
}

// ---------------------------------------------------------------- names
// "/NAME" for shm_open and sem_open; the Windows prefixes mean nothing here and are dropped.
inline std::string shm_path(const std::string& name, const char* what) {
    return "/" + split_name(name, what).base;
}

// ---------------------------------------------------------------- process identity
// An owner word is (pid << 32) | token, where token is the low 32 bits of the process's
// start time (clock ticks since boot, /proc/PID/stat field 22). A recycled pid has another
// start time, so a lock whose owner died is never mistaken for one held by a newcomer.
inline bool read_start_time(long pid, uint64_t& start, char& state) {
    char path[64];
    std::snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE* f = std::fopen(path, "re");
    if (!f) return false;
    char buf[1024];
    size_t n = std::fread(buf, 1, sizeof buf - 1, f);
    std::fclose(f);
    buf[n] = 0;
    // The command name (field 2) may contain spaces and ')': parse from the last ')'.
    const char* p = std::strrchr(buf, ')');
    if (!p) return false;
    p += 2;  // field 3, state
    state = *p;
    for (int field = 3; field < 22; ++field) {
        p = std::strchr(p, ' ');
        if (!p) return false;
        ++p;
    }
    start = std::strtoull(p, nullptr, 10);
    return true;
}

inline uint32_t token_of(uint64_t start) { return uint32_t(start) ? uint32_t(start) : 1u; }

// Cached per process. A forked child must not inherit the cache, or its locks would carry
// its parent's identity (a child killed holding the lock would then look alive to the
// parent forever): an atfork handler clears it in every child.
inline std::atomic<uint64_t>& self_owner_cache() {
    static std::atomic<uint64_t> cache{0};
    return cache;
}
inline uint64_t self_owner() {
    uint64_t me = self_owner_cache().load(std::memory_order_relaxed);
    if (me) return me;
    static const bool hooked = [] {
        return pthread_atfork(nullptr, nullptr, [] { self_owner_cache().store(0, std::memory_order_relaxed); }) == 0;
    }();
    (void)hooked;
    uint64_t start = 0;
    char state = 0;
    read_start_time(long(getpid()), start, state);
    me = (uint64_t(uint32_t(getpid())) << 32) | token_of(start);
    self_owner_cache().store(me, std::memory_order_relaxed);
    return me;
}

inline uint32_t owner_pid(uint64_t owner) { return uint32_t(owner >> 32); }

// True unless the owner is certainly gone (no such pid, a zombie, or a recycled pid).
inline bool owner_alive(uint64_t owner) {
    long pid = long(owner_pid(owner));
    if (pid <= 0) return false;
    if (owner == self_owner()) return true;
    uint64_t start = 0;
    char state = 0;
    if (!read_start_time(pid, start, state)) {
        // No /proc entry: dead, unless /proc is not mounted (then ask kill()).
        if (access("/proc/self/stat", R_OK) == 0) return false;
        return kill(pid_t(pid), 0) == 0 || errno == EPERM;
    }
    if (state == 'Z' || state == 'X') return false;
    return token_of(start) == uint32_t(owner);
}

inline uint32_t current_pid() { return uint32_t(getpid()); }

// ---------------------------------------------------------------- mappings
inline void unmap(void* addr, size_t size) noexcept { munmap(addr, size); }
inline bool is_exists_error(const std::error_code& ec) { return ec == std::error_code(EEXIST, std::generic_category()); }

// ---------------------------------------------------------------- who holds a file
// Pids holding a flock() on the file open as `fd`, from /proc/locks (holders keep a shared
// flock; waiters, marked "->", are not holders). False if /proc/locks cannot be read.
inline bool flock_holders(int fd, std::vector<uint32_t>& pids) {
    pids.clear();
    struct stat st;
    if (fstat(fd, &st) != 0) return false;
    char want[64];
    // Linux's dev_t encoding (what <sys/sysmacros.h> computes, without its major/minor macros).
    uint64_t dev = uint64_t(st.st_dev);
    unsigned maj = unsigned(((dev >> 8) & 0xfffu) | ((dev >> 32) & ~uint64_t(0xfffu)));
    unsigned mnr = unsigned((dev & 0xffu) | ((dev >> 12) & ~uint64_t(0xffu)));
    std::snprintf(want, sizeof want, "%02x:%02x:%llu", maj, mnr, static_cast<unsigned long long>(st.st_ino));
    FILE* f = std::fopen("/proc/locks", "re");
    if (!f) return false;
    char line[512];
    while (std::fgets(line, sizeof line, f)) {
        char type[32], dev[64];
        unsigned long pid = 0;
        // "N: FLOCK  ADVISORY  READ  PID MAJ:MIN:INODE START END"; a waiter has "->" after "N:".
        if (std::strstr(line, "->")) continue;
        if (std::sscanf(line, "%*s %31s %*s %*s %lu %63s", type, &pid, dev) != 3) continue;
        if (std::strcmp(type, "FLOCK") != 0 || std::strcmp(dev, want) != 0) continue;
        bool seen = false;
        for (uint32_t p : pids) seen = seen || p == uint32_t(pid);
        if (!seen) pids.push_back(uint32_t(pid));
    }
    std::fclose(f);
    for (size_t i = 1; i < pids.size(); ++i)  // sorted, for stable output
        for (size_t j = i; j > 0 && pids[j - 1] > pids[j]; --j) { uint32_t t = pids[j]; pids[j] = pids[j - 1]; pids[j - 1] = t; }
    return true;
}

// The same for a path (a semaphore's or a pipe's lock file). False if it cannot be told.
inline bool flock_holders(const std::string& path, std::vector<uint32_t>& pids) {
    pids.clear();
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) return false;
    bool ok = flock_holders(fd, pids);
    ::close(fd);
    return ok;
}

// ---------------------------------------------------------------- segment files
// A POSIX shm object plus its holder lock. Every holder keeps a shared flock() on its
// descriptor; the kernel drops it when the process dies. Whoever can take the lock
// exclusively is alone: the last closer (or an opener/cleanup finding no holder) unlinks.
class SegmentFile {
public:
    SegmentFile() = default;
    SegmentFile(SegmentFile&& o) noexcept { *this = std::move(o); }
    SegmentFile& operator=(SegmentFile&& o) noexcept {
        if (this != &o) {
            drop();
            fd_ = o.fd_; path_ = std::move(o.path_); name_ = std::move(o.name_);
            o.fd_ = -1;
        }
        return *this;
    }
    ~SegmentFile() { drop(); }

    // O_CREAT|O_EXCL, mode 0600, sized and backed (posix_fallocate: a full /dev/shm is an
    // ENOSPC here, not a SIGBUS on first touch). Throws EEXIST as FileExistsError.
    static SegmentFile create(const std::string& name, uint64_t size, bool holder = true) {
        ErrorInfo err;
        SegmentFile f = create(name, size, holder, err);
        if (err) fail(err);
        return f;
    }
    static SegmentFile create(const std::string& name, uint64_t size, bool holder, ErrorInfo& err) {
        SplitName sn;
        if (!split_name(name, "segment", sn, err)) return SegmentFile();
        SegmentFile f;
        f.name_ = name;
        f.path_ = "/" + sn.base;
        f.fd_ = shm_open(f.path_.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (f.fd_ < 0) { os_error(err, "shm_open", name); return SegmentFile(); }
        // Hold the shared lock from the first instant: nobody may judge us stale.
        if (holder && flock(f.fd_, LOCK_SH) != 0) {
            int e = errno; f.unlink_quiet(); os_error(err, "flock", name, e); return SegmentFile();
        }
        // fchmod: the mode given to shm_open is filtered by the umask; 0600 is the contract.
        if (fchmod(f.fd_, 0600) != 0 || ftruncate(f.fd_, off_t(size)) != 0) {
            int e = errno; f.unlink_quiet(); os_error(err, "ftruncate", name, e); return SegmentFile();
        }
        int e = posix_fallocate(f.fd_, 0, off_t(size));
        if (e != 0 && e != EINVAL && e != EOPNOTSUPP) {
            f.unlink_quiet(); os_error(err, "posix_fallocate", name, e); return SegmentFile();
        }
        return f;
    }

    // Opens an existing object. `others` tells whether another process held it at open
    // time (false: its creator and every user are gone, or it is a foreign object).
    static SegmentFile open(const std::string& name, bool writable, bool holder, bool& others) {
        ErrorInfo err;
        SegmentFile f = open(name, writable, holder, others, err);
        if (err) fail(err);
        return f;
    }
    static SegmentFile open(const std::string& name, bool writable, bool holder, bool& others, ErrorInfo& err) {
        SplitName sn;
        if (!split_name(name, "segment", sn, err)) return SegmentFile();
        SegmentFile f;
        f.name_ = name;
        f.path_ = "/" + sn.base;
        for (int attempt = 0;; ++attempt) {
            f.fd_ = shm_open(f.path_.c_str(), (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC, 0);
            if (f.fd_ < 0) { os_error(err, "shm_open", name); return SegmentFile(); }
            others = true;
            if (!holder) return f;
            // Probe: an exclusive lock succeeds only when no holder is left.
            if (flock(f.fd_, LOCK_EX | LOCK_NB) == 0) others = false;
            // Take (or convert to) the shared lock; it may be briefly blocked by a closer
            // probing with LOCK_EX, which then unlinks: the check below catches that.
            uint64_t t0 = monotonic_ns();
            while (flock(f.fd_, LOCK_SH | LOCK_NB) != 0) {
                if (errno != EWOULDBLOCK && errno != EINTR) { os_error(err, "flock", name); return SegmentFile(); }
                if (monotonic_ns() - t0 > 2000000000ull) {
                    err.set(errc::timeout, "flock('" + name + "'): held exclusively for 2 s");
                    return SegmentFile();
                }
                sleep_ns(50000);
            }
            // Did a last closer unlink the name while we were opening? Then our descriptor
            // is an orphan: start again (and meet ENOENT, or a new object).
            if (f.same_as_name()) return f;
            ::close(f.fd_);
            f.fd_ = -1;
            if (attempt > 100) { os_error(err, "shm_open", name, ENOENT); return SegmentFile(); }
        }
    }

    uint64_t size() const {
        ErrorInfo err;
        uint64_t n = size(err);
        if (err) fail(err);
        return n;
    }
    uint64_t size(ErrorInfo& err) const {
        struct stat st;
        if (fstat(fd_, &st) != 0) { os_error(err, "fstat", name_); return 0; }
        return uint64_t(st.st_size);
    }
    uint32_t mode() const {
        struct stat st;
        if (fstat(fd_, &st) != 0) throw_os("fstat", name_);
        return uint32_t(st.st_mode & 07777);
    }

    std::shared_ptr<Mapping> map(uint64_t size, bool writable) const {
        ErrorInfo err;
        auto m = map(size, writable, err);
        if (err) fail(err);
        return m;
    }
    std::shared_ptr<Mapping> map(uint64_t size, bool writable, ErrorInfo& err) const {
        if (size == 0) { err.set(errc::corrupt_segment, "mmap('" + name_ + "'): empty segment"); return nullptr; }
        // Reserve every page we may touch: an object another process only ftruncate'd is
        // sparse, and in a full /dev/shm the first touch of a hole is a SIGBUS. Cheap when
        // the creator already reserved it (ours always do); ENOSPC here is a clear error.
        if (writable) {
            int e = posix_fallocate(fd_, 0, off_t(size));
            if (e != 0 && e != EINVAL && e != EOPNOTSUPP) { os_error(err, "posix_fallocate", name_, e); return nullptr; }
        }
        void* p = mmap(nullptr, size_t(size), PROT_READ | (writable ? PROT_WRITE : 0), MAP_SHARED, fd_, 0);
        if (p == MAP_FAILED) { os_error(err, "mmap", name_); return nullptr; }
        return std::make_shared<Mapping>(p, size_t(size), &unmap);
    }

    // Drop our holder lock; if nobody else holds the object, remove its name.
    // Returns true when this call unlinked it.
    bool close(bool unlink_if_last) noexcept {
        bool unlinked = false;
        if (fd_ >= 0 && unlink_if_last) {
            // flock conversion is not atomic: SH is dropped, then EX is tried. If two
            // closers race, at least one of them gets EX once the other has dropped SH.
            if (flock(fd_, LOCK_EX | LOCK_NB) == 0 && same_as_name()) {
                shm_unlink(path_.c_str());
                unlinked = true;
            }
        }
        drop();
        return unlinked;
    }

    static void unlink(const std::string& name) {
        std::string path = shm_path(name, "segment");
        if (shm_unlink(path.c_str()) != 0) throw_os("shm_unlink", name);
    }
    static bool exists(const std::string& name) {
        std::string path = shm_path(name, "segment");
        int fd = shm_open(path.c_str(), O_RDONLY | O_CLOEXEC, 0);
        if (fd < 0) return false;
        ::close(fd);
        return true;
    }
    // Is anybody holding it? (cleanup's question) Returns false for a missing name.
    static bool held(const std::string& name) {
        std::string path = shm_path(name, "segment");
        int fd = shm_open(path.c_str(), O_RDONLY | O_CLOEXEC, 0);
        if (fd < 0) return false;
        bool busy = flock(fd, LOCK_EX | LOCK_NB) != 0;
        ::close(fd);
        return busy;
    }

    // Does the name still refer to this object? (false once removed or replaced)
    bool still_named() const { return same_as_name(); }
    // Pids holding it (shared flocks, from /proc/locks); false if the OS cannot tell.
    bool holders(std::vector<uint32_t>& pids) const { return flock_holders(fd_, pids); }

    const std::string& name() const { return name_; }
    int fd() const { return fd_; }

private:
    bool same_as_name() const {
        struct stat a, b;
        int fd2 = shm_open(path_.c_str(), O_RDONLY | O_CLOEXEC, 0);
        if (fd2 < 0) return false;
        bool same = fstat(fd_, &a) == 0 && fstat(fd2, &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev;
        ::close(fd2);
        return same;
    }
    void unlink_quiet() { shm_unlink(path_.c_str()); drop(); }
    void drop() { if (fd_ >= 0) ::close(fd_); fd_ = -1; }

    int fd_ = -1;
    std::string path_;
    std::string name_;
};

// ---------------------------------------------------------------- waiting on a word
// Linux needs no named object to wait: a shared futex (no FUTEX_PRIVATE_FLAG) keys on the
// physical page, so waiters in every process that maps the segment meet on the same word.
class WakeChannel {
public:
    WakeChannel() = default;
    WakeChannel(const std::string& /*segment*/, int /*index*/) {}
    bool open(const std::string& /*segment*/, int /*index*/, ErrorInfo& /*err*/) { return true; }
};

// Sleep while *word == expected, at most timeout_ns. Returns false on EINTR (a signal:
// the caller checks for Ctrl-C), true otherwise (woken, value changed, or timed out).
inline bool park(const std::atomic<uint32_t>* word, uint32_t expected, uint64_t timeout_ns, WakeChannel&) {
    static_assert(sizeof(std::atomic<uint32_t>) == 4, "futex word must be 32 bits");
    timespec ts{time_t(timeout_ns / 1000000000u), long(timeout_ns % 1000000000u)};
    long r = syscall(SYS_futex, reinterpret_cast<const uint32_t*>(word), FUTEX_WAIT, expected, &ts, nullptr, 0);
    return !(r != 0 && errno == EINTR);
}

inline void unpark_all(const std::atomic<uint32_t>* word, uint32_t /*waiters*/, WakeChannel&) {
    syscall(SYS_futex, reinterpret_cast<const uint32_t*>(word), FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
}

}  // namespace os
}  // namespace detail
}  // namespace sharedstate
