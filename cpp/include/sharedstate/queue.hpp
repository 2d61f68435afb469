// Queue: a bounded, ordered message queue of variable-length messages in a named shared
// segment. Many producers (processes or threads), one consumer. docs/FORMAT.md (Queue segment) is the
// byte layout; this comment is the protocol.
//
// Ring. Positions are byte counts since creation (u64, never wrap); a position's place in
// the ring is pos & (capacity - 1). A record is a 16-byte header and the payload, padded to
// 16 bytes (so the gap before the ring's end always fits a padding record's header). `tail` is where the next record goes, `head` the first record not yet consumed;
// tail - head <= capacity always.
//
// Producers. A put first *reserves* under a tiny owner-word lock (the reserve lock): read
// head (acquire) and tail, check the space, write the record header {size, state = 0 (being
// written), owner}, then store tail + size (release), unlock. Then, holding nothing, copy the
// payload and *publish* with a release store of the record's state word. The lock is held for
// a handful of stores; the copy, however large, runs in parallel with other producers. Why a
// lock and not a CAS on the tail: a producer killed between a tail CAS and writing the record
// size leaves a record nobody can measure, so nobody can skip it. Under the lock, the size is
// written before the tail moves (release), so every record below the tail has a readable size
// and owner. A producer killed *holding* the lock left tail unmoved (it is stored last), so
// the next producer takes the lock over from the dead owner (os::owner_alive) and overwrites
// whatever half-written header lies at the tail: nothing to repair.
//
// Consumer. Reads the record at head: published -> deliver, then store head + size (release,
// so producers reuse the bytes only after the copy-out); padding -> skip; still being written
// -> wait for it, checking every ~10 ms whether its owner is alive: a dead owner's record is
// skipped, never delivered (the payload may be torn). Order is reservation order.
//
// Wake-ups, an eventcount per direction (wait.hpp): the consumer parks on `data_seq` when
// empty, producers park on `space_seq` when full. The other side changes the condition,
// issues a seq_cst fence, and reads the waiter count: only if someone is parked does it bump
// the word and make the wake syscall. No syscall on the fast path of either side.
//
// Untrusted memory: every size read from the segment is bounds-checked before use; a broken
// value is errc::corrupt_segment, never an out-of-bounds access.
//
// Threads: the producing calls (put, try_put, begin_put) may be made on one Queue object
// from many threads at once. The consuming calls (get*, try_consume, consume, get_view,
// wait_ready, next_size) are for one thread at a time per process; another process that
// tries to consume while this one lives gets errc::invalid_argument (claim_consumer).
// Do not move or destroy a Queue while a View or Slot of it is alive.
#pragma once
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "detail/lifetime.hpp"
#include "detail/os.hpp"
#include "detail/wait_source.hpp"
#include "error.hpp"
#include "format.hpp"
#include "wait.hpp"

namespace sharedstate {

namespace qformat {

using format::kCacheLine;
inline constexpr uint16_t kVersion = 1;
inline constexpr uint32_t kHeaderSize = 320;
inline constexpr uint32_t kRecordHeader = 16;
inline constexpr uint32_t kRecordAlign = 16;  // so that a padding record always has room for its header
inline constexpr uint64_t kMinCapacity = 256;
inline constexpr uint64_t kMaxCapacity = uint64_t(1) << 30;  // record sizes are u32
inline constexpr uint32_t kFlagPersistent = format::kFlagPersistent;

// Record state word (u32 at record + 4).
inline constexpr uint32_t kWriting = 0;               // reserved, payload being copied
inline constexpr uint32_t kPublished = 0x80000000u;   // | payload length (< 2^30)
inline constexpr uint32_t kPadding = 0x40000000u;     // filler up to the ring's end; skip
inline constexpr uint32_t kCancelled = 0x20000000u;   // a reserved put abandoned by its producer; skip
inline constexpr uint32_t kLengthMask = 0x3fffffffu;

// Bytes 0..63: immutable after creation. Same offsets as the state preamble for the common
// fields (magic, version, kind, header_size, segment_size, flags, checksum, creator_pid,
// created_unix_ns), so tools can tell kinds apart from the first line alone.
struct Preamble {
    std::atomic<uint64_t> magic;  //  0  "SHQUEUE1"; stored last (release) by the creator
    uint16_t version;             //  8  1
    uint16_t kind;                // 10  2 (format::kQueue)
    uint32_t header_size;         // 12  320
    uint64_t segment_size;        // 16  header_size + capacity
    uint64_t capacity;            // 24  ring bytes, a power of two, 256 .. 2^30
    uint32_t max_message;         // 32  largest payload a put accepts
    uint32_t record_align;        // 36  16
    uint32_t reserved0;           // 40  0
    uint32_t flags;               // 44  bit 0: persistent
    uint32_t checksum;            // 48  FNV-1a 32 of bytes 8..63 with this field as 0
    uint32_t creator_pid;         // 52
    uint64_t created_unix_ns;     // 56
};
static_assert(sizeof(Preamble) == 64, "queue preamble is one cache line");
static_assert(offsetof(Preamble, flags) == offsetof(format::Preamble, flags), "flags where the state has them");
static_assert(offsetof(Preamble, checksum) == offsetof(format::Preamble, checksum), "checksum where the state has it");
static_assert(offsetof(Preamble, segment_size) == offsetof(format::Preamble, segment_size), "same common fields");

struct alignas(kCacheLine) Header {
    Preamble pre;                         //   0
    // Line 1: producers. The reserve lock and what it protects.
    std::atomic<uint64_t> reserve_lock;   //  64  0 = free, else the holder's owner word
    std::atomic<uint64_t> tail;           //  72  next record position (written under the lock)
    std::atomic<uint64_t> puts;           //  80  records reserved (not padding), under the lock
    std::atomic<uint64_t> recoveries;     //  88  reserve locks taken over from dead producers
    std::atomic<uint64_t> head_cache;     //  96  a recent value of head (under the lock)
    unsigned char pad1[kCacheLine - 40];
    // Line 2: the consumer.
    std::atomic<uint64_t> head;           // 128  first record not consumed
    std::atomic<uint64_t> gets;           // 136  records consumed or skipped (not padding)
    std::atomic<uint64_t> skipped;        // 144  records of dead producers skipped
    std::atomic<uint64_t> consumer;       // 152  owner word of the consumer process, 0 = none
    unsigned char pad2[kCacheLine - 32];
    // Line 3: the consumer parks here when empty.
    std::atomic<uint32_t> data_seq;       // 192  bumped by a producer that sees a waiter
    std::atomic<uint32_t> data_waiters;   // 196
    unsigned char pad3[kCacheLine - 8];
    // Line 4: producers park here when full.
    std::atomic<uint32_t> space_seq;      // 256  bumped by the consumer when it sees a waiter
    std::atomic<uint32_t> space_waiters;  // 260
    unsigned char pad4[kCacheLine - 8];
    // 320: the ring
};
static_assert(sizeof(Header) == kHeaderSize, "queue header is 320 bytes");
static_assert(offsetof(Header, reserve_lock) == 64, "FORMAT.md queue: lock at 64");
static_assert(offsetof(Header, head_cache) == 96, "FORMAT.md queue: head_cache at 96");
static_assert(offsetof(Header, head) == 128, "FORMAT.md queue: head at 128");
static_assert(offsetof(Header, consumer) == 152, "FORMAT.md queue: consumer at 152");
static_assert(offsetof(Header, data_seq) == 192, "FORMAT.md queue: data_seq at 192");
static_assert(offsetof(Header, space_seq) == 256, "FORMAT.md queue: space_seq at 256");
static_assert(std::is_standard_layout<Header>::value, "header must be standard-layout");

struct Record {
    uint32_t size;                 //  0  bytes the record occupies (header + payload + pad)
    std::atomic<uint32_t> state;   //  4  kWriting / kPublished | length / kPadding
    uint64_t owner;                //  8  producer's owner word (pid << 32 | start token)
};
static_assert(sizeof(Record) == kRecordHeader, "record header is 16 bytes");
static_assert(std::atomic<uint32_t>::is_always_lock_free, "lock-free 32-bit atomics required");

inline uint32_t checksum(const unsigned char* base) {
    unsigned char pre[56];
    std::memcpy(pre, base + 8, sizeof pre);
    std::memset(pre + (offsetof(Preamble, checksum) - 8), 0, 4);
    return format::fnv1a(pre, sizeof pre);
}

inline uint64_t record_size(uint64_t length) { return format::round_up(kRecordHeader + length, kRecordAlign); }

inline bool is_pow2(uint64_t v) { return v && !(v & (v - 1)); }

inline uint64_t round_capacity(uint64_t c) {
    uint64_t r = kMinCapacity;
    while (r < c && r < kMaxCapacity) r <<= 1;
    return r;
}

struct Info {
    uint64_t capacity = 0;
    uint32_t max_message = 0;
    uint32_t flags = 0;
    uint32_t creator_pid = 0;
    uint64_t created_unix_ns = 0;
    uint64_t segment_size = 0;
};

// Validates the immutable header against the bytes really mapped. Never reads out of bounds.
inline bool validate(const unsigned char* base, uint64_t mapped, const std::string& name, Info& i, ErrorInfo& err) {
    auto corrupt = [&](const std::string& why) { return err.set(errc::corrupt_segment, "queue '" + name + "': " + why); };
    if (mapped < kHeaderSize) return corrupt("truncated (" + std::to_string(mapped) + " bytes, a queue header needs 320)");
    const auto* h = reinterpret_cast<const Header*>(base);
    uint64_t magic = h->pre.magic.load(std::memory_order_acquire);
    if (magic == format::kStateMagic)
        return err.set(errc::wrong_kind, "segment '" + name + "' is a sharedstate SharedState, not a Queue");
    if (magic == format::kFramesMagic)
        return err.set(errc::wrong_kind, "segment '" + name + "' is a sharedstate Frames, not a Queue");
    if (magic != format::kQueueMagic)
        return corrupt(magic == 0 ? "not initialized (its creator died or is still creating it)"
                           : "not a sharedstate segment (bad magic)");
    Preamble p;
    std::memcpy(static_cast<void*>(&p), base, sizeof p);
    if (p.version != kVersion) return corrupt("format version " + std::to_string(p.version) + ", this library reads 1");
    if (p.kind != format::kQueue) return corrupt("kind " + std::to_string(p.kind) + " is not a queue");
    if (p.header_size != kHeaderSize) return corrupt("header size is not 320");
    if (!is_pow2(p.capacity) || p.capacity < kMinCapacity || p.capacity > kMaxCapacity)
        return corrupt("capacity " + std::to_string(p.capacity) + " is not a power of two in 256..2^30");
    if (p.segment_size != uint64_t(p.header_size) + p.capacity) return corrupt("segment size field inconsistent");
    if (p.segment_size > mapped)
        return corrupt("truncated (" + std::to_string(mapped) + " bytes, needs " + std::to_string(p.segment_size) + ")");
    if (uint64_t(p.max_message) + kRecordHeader > p.capacity) return corrupt("max_message larger than the ring");
    if (p.record_align != kRecordAlign) return corrupt("record alignment is not 16");
    if (checksum(base) != p.checksum) return corrupt("header checksum mismatch");
    i = Info();
    i.capacity = p.capacity;
    i.max_message = p.max_message;
    i.flags = p.flags;
    i.creator_pid = p.creator_pid;
    i.created_unix_ns = p.created_unix_ns;
    i.segment_size = p.segment_size;
    return true;
}
inline Info validate(const unsigned char* base, uint64_t mapped, const std::string& name) {
    Info i;
    ErrorInfo err;
    if (!validate(base, mapped, name, i, err)) fail(err);
    return i;
}

}  // namespace qformat

struct QueueOptions {
    bool exist_ok = false;    // open the existing queue instead of failing
    bool persistent = false;  // outlive the last holder (Linux; Windows sections never do)
};

// Owner word of a live process that is not `self`: used when deciding about dead owners.
namespace detail {

// The reserve lock: like writer_lock.hpp, but tuned for a critical section of a few stores:
// spin first, look at the owner's liveness only after ~50 us of waiting, then nap.
enum class ReserveLock { acquired, recovered, timed_out };

inline ReserveLock lock_reserve(std::atomic<uint64_t>& word, uint64_t me, const Deadline& deadline,
                                const Interrupt& intr) {
    uint64_t cur = 0;
    if (word.compare_exchange_strong(cur, me, std::memory_order_acquire, std::memory_order_relaxed))
        return ReserveLock::acquired;
    uint64_t start = os::monotonic_ns();
    uint64_t next_check = start + 50000;
    for (unsigned spins = 1;; ++spins) {
        cur = word.load(std::memory_order_relaxed);
        if (cur == 0) {
            if (word.compare_exchange_weak(cur, me, std::memory_order_acquire, std::memory_order_relaxed))
                return ReserveLock::acquired;
            continue;
        }
        if (spins < 256) {
            cpu_relax();
            continue;
        }
        uint64_t now = os::monotonic_ns();
        if (now >= next_check) {
            next_check = now + 200000;  // a liveness check reads /proc: at most every 200 us
            if (!os::owner_alive(cur) &&
                word.compare_exchange_strong(cur, me, std::memory_order_acquire, std::memory_order_relaxed))
                return ReserveLock::recovered;
        }
        if (now >= deadline.at) return ReserveLock::timed_out;
        // The holder was preempted (it holds the lock for nanoseconds): let it run.
        os::sleep_ns(spins < 2000 ? 20000 : 500000);
        if ((spins & 63) == 0) intr();
    }
}

}  // namespace detail

class Queue {
public:
    static constexpr uint64_t kDefaultCapacity = uint64_t(1) << 20;

    Queue() = default;
    Queue(Queue&& o) noexcept { move_from(o); }
    Queue& operator=(Queue&& o) noexcept {
        if (this != &o) { close(); move_from(o); }
        return *this;
    }
    Queue(const Queue&) = delete;
    Queue& operator=(const Queue&) = delete;
    ~Queue() { close(); }

    // Creates the queue NAME. `capacity` (ring bytes) is rounded up to a power of two
    // (256 .. 1 GiB); `max_message` 0 means the largest that fits: capacity - 16.
    static Queue create(const std::string& name, uint64_t capacity = kDefaultCapacity, uint32_t max_message = 0,
                        QueueOptions opt = {}) {
        ErrorInfo err;
        Queue q = create(name, capacity, max_message, opt, err);
        if (err) fail(err);
        return q;
    }
    // The error-code forms (error.hpp): on failure a closed queue and err set.
    static Queue create(const std::string& name, uint64_t capacity, uint32_t max_message, QueueOptions opt,
                        ErrorInfo& err) noexcept {
        err.clear();
        if (capacity > qformat::kMaxCapacity) {
            err.set(errc::invalid_argument, "queue '" + name + "': capacity " + std::to_string(capacity) + " over 1 GiB");
            return Queue();
        }
        uint64_t cap = qformat::round_capacity(capacity);
        uint64_t largest = cap - qformat::kRecordHeader;
        if (max_message == 0) max_message = uint32_t(largest);
        if (max_message > largest) {
            err.set(errc::invalid_argument, "queue '" + name + "': max_message " + std::to_string(max_message) +
                                                " does not fit a ring of " + std::to_string(cap) + " bytes (at most " +
                                                std::to_string(largest) + ")");
            return Queue();
        }
        uint64_t seg = qformat::kHeaderSize + cap;
        for (int attempt = 0;; ++attempt) {
            detail::os::SegmentFile file = detail::os::SegmentFile::create(name, seg, true, err);
            if (err) {
                if (!detail::os::is_exists_error(err.code) || attempt > 3) return Queue();
                if (opt.exist_ok) return open(name, err);
                if (!remove_stale(name)) return Queue();
                err.clear();
                continue;
            }
            Queue q;
            q.name_ = name;
            q.file_ = std::move(file);
            q.closed_ = false;  // from here a failure closes q, which removes the new name
            q.map_ = q.file_.map(seg, true, err);
            if (err) return Queue();
            unsigned char* base = q.map_->data();
            auto* h = reinterpret_cast<qformat::Header*>(base);
            // The segment is zero-filled by the OS: every live word starts at 0.
            qformat::Preamble& p = h->pre;
            p.version = qformat::kVersion;
            p.kind = format::kQueue;
            p.header_size = qformat::kHeaderSize;
            p.segment_size = seg;
            p.capacity = cap;
            p.max_message = max_message;
            p.record_align = qformat::kRecordAlign;
            p.reserved0 = 0;
            p.flags = opt.persistent ? qformat::kFlagPersistent : 0;
            p.creator_pid = detail::os::current_pid();
            p.created_unix_ns = uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                             std::chrono::system_clock::now().time_since_epoch())
                                             .count());
            p.checksum = qformat::checksum(base);
            // Publish: an opener that sees the magic (acquire) sees everything above.
            p.magic.store(format::kQueueMagic, std::memory_order_release);
            qformat::Info info;
            if (!qformat::validate(base, seg, name, info, err) || !q.attach(info, err)) return Queue();
            return q;
        }
    }
    static Queue create(const std::string& name, uint64_t capacity, uint32_t max_message, ErrorInfo& err) noexcept {
        return create(name, capacity, max_message, QueueOptions{}, err);
    }

    static Queue open(const std::string& name) {
        ErrorInfo err;
        Queue q = open(name, err);
        if (err) fail(err);
        return q;
    }
    static Queue open(const std::string& name, ErrorInfo& err) noexcept {
        err.clear();
        bool others = true;
        auto file = detail::os::SegmentFile::open(name, true, true, others, err);
        if (err) return Queue();
        // A creator may be between shm_open and publishing the magic: give it a moment.
        auto waited = detail::Deadline::after(others ? 1000000000 : 0);
        uint64_t size = file.size(err);
        while (!err && size < qformat::kHeaderSize && detail::nap(waited)) size = file.size(err);
        if (err) return Queue();
        if (size < qformat::kHeaderSize) {
            err.set(errc::corrupt_segment, "queue '" + name + "': truncated (" + std::to_string(size) +
                                               " bytes, a queue header needs 320); not a sharedstate Queue?");
            return Queue();
        }
        Queue q;
        q.name_ = name;
        q.map_ = file.map(size, true, err);
        if (err) return Queue();
        q.file_ = std::move(file);
        auto* h = reinterpret_cast<const qformat::Header*>(q.map_->data());
        while (h->pre.magic.load(std::memory_order_acquire) == 0 && detail::nap(waited)) {}
        qformat::Info info;
        if (!qformat::validate(q.map_->data(), size, name, info, err)) return Queue();
        if (!others && !(info.flags & qformat::kFlagPersistent)) {
            // Every process that held it has exited: stale, as on Windows it would be gone.
            q.map_.reset();
            q.file_.close(true);
            q.closed_ = true;
            err.set(errc::not_found, "queue '" + name + "' was left behind by processes that have all exited; removed");
            return Queue();
        }
        if (!q.attach(info, err)) return Queue();
        return q;
    }

    // Removes the name (Linux); holders keep their mapping. Windows: no-op (names go with
    // their last handle).
    static void unlink(const std::string& name) { detail::os::SegmentFile::unlink(name); }

    // ------------------------------------------------------------ producing
    // Copies `len` bytes in as one message. timeout: < 0 forever, 0 = try once. Throws
    // errc::timeout when the queue stayed full, errc::message_too_large over max_message.
    void put(const void* data, size_t len, std::chrono::nanoseconds timeout = std::chrono::nanoseconds(-1),
             const Interrupt& intr = {}) {
        if (!try_put(data, len)) put_slow(data, len, timeout, intr);
    }
    void put(const std::string& s, std::chrono::nanoseconds timeout = std::chrono::nanoseconds(-1)) {
        put(s.data(), s.size(), timeout);
    }

    // One attempt, never waits (except for the reserve lock, held for nanoseconds by a live
    // producer). False when there is no room now.
    bool try_put(const void* data, size_t len) {
        check_len(len);
        uint64_t pos = 0;
        if (reserve(len, pos, kNoWait, {}) != Reserved::ok) return false;
        commit_put(pos, data, len);
        return true;
    }

    // Zero-copy put: reserve room for `len` bytes, fill data(), then commit() to publish. A
    // Slot destroyed without commit() is cancelled (the consumer skips it). While a Slot is
    // open, the consumer waits for it (later messages queue behind it): fill it promptly.
    class Slot {
    public:
        Slot() = default;
        Slot(Slot&& o) noexcept { take(o); }
        Slot& operator=(Slot&& o) noexcept {
            if (this != &o) { cancel(); take(o); }
            return *this;
        }
        Slot(const Slot&) = delete;
        Slot& operator=(const Slot&) = delete;
        ~Slot() { cancel(); }
        unsigned char* data() const noexcept { return data_; }
        size_t size() const noexcept { return size_; }
        explicit operator bool() const noexcept { return q_ != nullptr; }
        void commit() {
            if (!q_) fail(errc::closed, "put slot already committed or cancelled");
            Queue* q = q_;
            q_ = nullptr;
            q->publish(pos_, qformat::kPublished | uint32_t(size_), map_);
        }
        void cancel() noexcept {
            if (!q_) return;
            Queue* q = q_;
            q_ = nullptr;
            q->publish(pos_, qformat::kCancelled, map_);
        }
    private:
        friend class Queue;
        void take(Slot& o) {
            q_ = o.q_; pos_ = o.pos_; data_ = o.data_; size_ = o.size_; map_ = std::move(o.map_);
            o.q_ = nullptr;
        }
        Queue* q_ = nullptr;
        uint64_t pos_ = 0;
        unsigned char* data_ = nullptr;
        size_t size_ = 0;
        std::shared_ptr<detail::os::Mapping> map_;
    };

    Slot begin_put(size_t len, std::chrono::nanoseconds timeout = std::chrono::nanoseconds(-1),
                   const Interrupt& intr = {}) {
        check_len(len);
        uint64_t pos = 0;
        if (reserve(len, pos, kNoWait, {}) != Reserved::ok) pos = reserve_slow(len, timeout, intr);
        Slot s;
        s.q_ = this;
        s.pos_ = pos;
        s.data_ = reinterpret_cast<unsigned char*>(rec(pos)) + qformat::kRecordHeader;
        s.size_ = len;
        s.map_ = map_;
        return s;
    }

    // ------------------------------------------------------------ consuming (one consumer)
    // Calls fn(const unsigned char* payload, size_t len) on the next message in place, then
    // consumes it. False (fn not called) if none is ready now. If fn throws, the message
    // stays in the queue.
    template <class Fn>
    bool try_consume(Fn&& fn) {
        uint64_t pos = 0;
        const unsigned char* p = nullptr;
        uint32_t n = 0, size = 0;
        if (!peek(pos, p, n, size)) return false;
        fn(p, size_t(n));
        release_bytes(pos + size, true);
        return true;
    }

    // Blocks until a message is ready (fn is then called as by try_consume).
    template <class Fn>
    void consume(Fn&& fn, std::chrono::nanoseconds timeout = std::chrono::nanoseconds(-1), const Interrupt& intr = {}) {
        if (try_consume(fn)) return;
        wait_ready(timeout, intr);
        if (!try_consume(fn)) fail(errc::invalid_argument, "queue '" + name_ + "': message vanished (two consumers?)");
    }

    std::vector<unsigned char> get(std::chrono::nanoseconds timeout = std::chrono::nanoseconds(-1),
                                   const Interrupt& intr = {}) {
        std::vector<unsigned char> out;
        consume([&](const unsigned char* p, size_t n) { out.assign(p, p + n); }, timeout, intr);
        return out;
    }
    bool try_get(std::vector<unsigned char>& out) {
        return try_consume([&](const unsigned char* p, size_t n) { out.assign(p, p + n); });
    }
    // Copies the next message into buf (cap bytes) and returns its length. A message larger
    // than cap is errc::message_too_large and stays in the queue.
    size_t get_into(void* buf, size_t cap, std::chrono::nanoseconds timeout = std::chrono::nanoseconds(-1),
                    const Interrupt& intr = {}) {
        size_t got = 0;
        consume([&](const unsigned char* p, size_t n) {
            if (n > cap)
                fail(errc::message_too_large, "get_into('" + name_ + "'): message of " + std::to_string(n) +
                                                  " bytes, buffer of " + std::to_string(cap));
            std::memcpy(buf, p, n);
            got = n;
        }, timeout, intr);
        return got;
    }

    // Zero-copy: the next message in place, consumed when the View is destroyed (or
    // commit()ed). The bytes are valid while the View lives; hold one View at a time.
    class View {
    public:
        View() = default;
        View(View&& o) noexcept { take(o); }
        View& operator=(View&& o) noexcept {
            if (this != &o) { commit(); take(o); }
            return *this;
        }
        View(const View&) = delete;
        View& operator=(const View&) = delete;
        ~View() { commit(); }
        const unsigned char* data() const noexcept { return data_; }
        size_t size() const noexcept { return size_; }
        explicit operator bool() const noexcept { return q_ != nullptr; }
        // Consumes the message now; the bytes may be overwritten afterwards.
        void commit() noexcept {
            if (q_) {
                if (!q_->closed_ && q_->map_ == map_) q_->release_bytes(pos_ + rec_size_, true);
                q_->view_open_ = false;
            }
            q_ = nullptr;
        }
        // Leaves the message in the queue (the next get returns it again).
        void abandon() noexcept {
            if (q_) q_->view_open_ = false;
            q_ = nullptr;
        }
    private:
        friend class Queue;
        void take(View& o) {
            q_ = o.q_; pos_ = o.pos_; rec_size_ = o.rec_size_; data_ = o.data_; size_ = o.size_;
            map_ = std::move(o.map_);
            o.q_ = nullptr;
        }
        Queue* q_ = nullptr;
        uint64_t pos_ = 0;
        uint32_t rec_size_ = 0;
        const unsigned char* data_ = nullptr;
        size_t size_ = 0;
        std::shared_ptr<detail::os::Mapping> map_;  // the bytes outlive a close()
    };

    View try_get_view() {
        View v;
        uint64_t pos = 0;
        const unsigned char* p = nullptr;
        uint32_t n = 0, size = 0;
        if (!peek(pos, p, n, size)) return v;
        v.q_ = this; v.pos_ = pos; v.rec_size_ = size; v.data_ = p; v.size_ = n; v.map_ = map_;
        view_open_ = true;
        return v;
    }
    View get_view(std::chrono::nanoseconds timeout = std::chrono::nanoseconds(-1), const Interrupt& intr = {}) {
        View v = try_get_view();
        if (v) return v;
        wait_ready(timeout, intr);
        v = try_get_view();
        if (!v) fail(errc::invalid_argument, "queue '" + name_ + "': message vanished (two consumers?)");
        return v;
    }

    // Blocks until the next message is ready to consume (skipping dead producers' records).
    void wait_ready(std::chrono::nanoseconds timeout, const Interrupt& intr = {}) { wait_ready(timeout, intr, nullptr); }
    bool wait_ready(std::chrono::nanoseconds timeout, const Interrupt& intr, ErrorInfo* err) {
        if (!check_open(err)) return false;
        if (!consumer_claimed_ && !claim_consumer(err)) return false;
        auto keep = map_;
        auto deadline = detail::Deadline::after(timeout.count());
        constexpr uint64_t kNone = UINT64_MAX;
        for (;;) {
            uint64_t blocked = kNone;  // position of an unpublished record at head, if any (0 is a position)
            if (ready(&blocked)) {
                // Padding at head: consume it now (a producer may be waiting for those bytes).
                if (skip_padding(err)) continue;
                return !(err && *err);
            }
            uint64_t slice = blocked != kNone ? kWriterCheckNs : UINT64_MAX;  // re-check a writing producer every 10 ms
            detail::Deadline d = deadline;
            if (slice != UINT64_MAX) d.at = (std::min)(deadline.at, detail::os::monotonic_ns() + slice);
            unsigned polls = 0;
            auto done = [&] { return ready(nullptr, true) || (++polls % kPollsPerYield == 0 && yield_cpu()); };
            bool ok = detail::wait_until(&h_->data_seq, h_->data_waiters, data_wake_, done, d, spin_ns_, intr);
            if (ok) continue;
            if (deadline.left() == 0) {
                return failure(err, errc::timeout,
                               "get from queue '" + name_ + "': " +
                                   (blocked != kNone ? std::string("a producer (pid ") +
                                                  std::to_string(detail::os::owner_pid(owner_at(blocked))) +
                                                  ") is still writing the next message"
                                            : std::string("empty")));
            }
            if (blocked != kNone && !skip_if_dead(blocked, err) && err && *err) return false;
        }
    }

    // ------------------------------------------------------------ the error-code forms
    // The same calls, reporting failures in err instead of throwing (error.hpp): errc::timeout
    // (full / empty for all of timeout), errc::message_too_large, errc::closed,
    // errc::corrupt_segment, errc::invalid_argument (another process consumes)...
    // True when the message went in.
    bool put(const void* data, size_t len, std::chrono::nanoseconds timeout, ErrorInfo& err) noexcept {
        return put(data, len, timeout, Interrupt{}, err);
    }
    // The same with an Interrupt, which may still throw (what it throws passes through).
    bool put(const void* data, size_t len, std::chrono::nanoseconds timeout, const Interrupt& intr, ErrorInfo& err) {
        err.clear();
        if (!check_len(len, &err)) return false;
        uint64_t pos = 0;
        Reserved r = reserve(len, pos, kNoWait, {}, &err);
        if (r == Reserved::error) return false;
        if (r != Reserved::ok && !reserve_slow(len, timeout, intr, pos, &err)) return false;
        commit_put(pos, data, len);
        return true;
    }
    bool put(const std::string& s, std::chrono::nanoseconds timeout, ErrorInfo& err) noexcept {
        return put(s.data(), s.size(), timeout, err);
    }
    // False with err clear when there is no room now.
    bool try_put(const void* data, size_t len, ErrorInfo& err) noexcept {
        err.clear();
        if (!check_len(len, &err)) return false;
        uint64_t pos = 0;
        if (reserve(len, pos, kNoWait, {}, &err) != Reserved::ok) return false;
        commit_put(pos, data, len);
        return true;
    }
    // The next message (empty with err set on failure).
    std::vector<unsigned char> get(std::chrono::nanoseconds timeout, ErrorInfo& err) noexcept {
        std::vector<unsigned char> out;
        get(out, timeout, err);
        return out;
    }
    // The next message into out; false with err set on failure.
    bool get(std::vector<unsigned char>& out, std::chrono::nanoseconds timeout, ErrorInfo& err) noexcept {
        uint64_t pos = 0;
        const unsigned char* p = nullptr;
        uint32_t n = 0, size = 0;
        if (!next_message(timeout, err, pos, p, n, size)) return false;
        out.assign(p, p + n);
        release_bytes(pos + size, true);
        return true;
    }
    // False with err clear when no message is ready now.
    bool try_get(std::vector<unsigned char>& out, ErrorInfo& err) noexcept {
        err.clear();
        uint64_t pos = 0;
        const unsigned char* p = nullptr;
        uint32_t n = 0, size = 0;
        if (!peek(pos, p, n, size, &err)) return false;
        out.assign(p, p + n);
        release_bytes(pos + size, true);
        return true;
    }
    // Copies the next message into buf (cap bytes): its length, or 0 with err set. A message
    // larger than cap is errc::message_too_large and stays in the queue.
    size_t get_into(void* buf, size_t cap, std::chrono::nanoseconds timeout, ErrorInfo& err) noexcept {
        uint64_t pos = 0;
        const unsigned char* p = nullptr;
        uint32_t n = 0, size = 0;
        if (!next_message(timeout, err, pos, p, n, size)) return 0;
        if (n > cap) {
            err.set(errc::message_too_large, "get_into('" + name_ + "'): message of " + std::to_string(n) +
                                                 " bytes, buffer of " + std::to_string(cap));
            return 0;
        }
        std::memcpy(buf, p, n);
        release_bytes(pos + size, true);
        return n;
    }

    // What a WaitSet needs (detail/wait_source.hpp): ready when a message is published at
    // head (padding and cancelled records before it are looked past, not consumed; padding
    // alone counts as ready, since only the consumer can move past it). Parks on data_seq
    // and counts in data_waiters, exactly like a blocked get().
    detail::WaitSource wait_source() const {
        check_open();
        detail::WaitSource s;
        s.key = this;
        s.what = "queue '" + name_ + "'";
        qformat::Header* h = h_;
        unsigned char* ring = ring_;
        const uint64_t mask = mask_, cap = info_.capacity;
        // A producer killed mid-put never publishes its record: once one has been seen "being
        // written" at head for kWriterCheckNs, ask whether its producer lives (a dead one's
        // record is ready: get() skips it and delivers what follows). The set re-checks its
        // members at least every slice (50 ms), so this is noticed without any extra wake-up.
        struct Stuck {
            std::atomic<uint64_t> pos{UINT64_MAX}, since{0};
        };
        auto stuck = std::make_shared<Stuck>();
        s.ready = [h, ring, mask, cap, stuck] {
            const uint64_t first = h->head.load(std::memory_order_acquire);
            uint64_t hd = first;
            const uint64_t t = h->tail.load(std::memory_order_seq_cst);
            for (int i = 0; i < 8 && hd != t; ++i) {
                if (t < hd || t - hd > cap || (hd | t) % qformat::kRecordAlign) return true;  // get() reports it
                auto* r = reinterpret_cast<const qformat::Record*>(ring + (hd & mask));
                uint32_t st = r->state.load(std::memory_order_seq_cst);
                if (st == qformat::kWriting) {  // its producer wakes us when it publishes...
                    const uint64_t now = detail::os::monotonic_ns();
                    if (stuck->pos.exchange(hd) != hd) {
                        stuck->since.store(now);
                        return false;
                    }
                    if (now - stuck->since.load() < kWriterCheckNs) return false;
                    stuck->since.store(now);
                    return !detail::os::owner_alive(r->owner);  // ...unless it died
                }
                if (st != qformat::kPadding && st != qformat::kCancelled) return true;
                uint32_t size = r->size;
                if (size < qformat::kRecordHeader || size % qformat::kRecordAlign || size > t - hd) return true;
                hd += size;
            }
            return hd != first;  // padding (or a long run of skips): the consumer must move past it
        };
        s.word = &h->data_seq;
        s.waiters = &h->data_waiters;
        s.channel = detail::channel_of(data_wake_);
        s.keep = map_;
        return s;
    }

    // ------------------------------------------------------------ facts
    // Messages reserved and not yet consumed (includes puts in flight). Exact when quiet.
    size_t size() const {
        check_open();
        uint64_t g = h_->gets.load(std::memory_order_acquire);
        uint64_t p = h_->puts.load(std::memory_order_acquire);
        return p > g ? size_t(p - g) : 0;
    }
    // No message queued (ready or being written); padding does not count.
    bool empty() const { return size() == 0; }
    // Payload size of the next message if it is ready, else -1 (a non-consuming look).
    int64_t next_size() {
        uint64_t pos = 0;
        const unsigned char* p = nullptr;
        uint32_t n = 0, size = 0;
        if (!peek(pos, p, n, size)) return -1;
        return int64_t(n);
    }
    uint64_t capacity() const noexcept { return info_.capacity; }
    uint32_t max_message() const noexcept { return info_.max_message; }
    // Ring bytes in use (records and padding not yet consumed).
    uint64_t used_bytes() const {
        check_open();
        uint64_t hd = h_->head.load(std::memory_order_acquire), t = h_->tail.load(std::memory_order_acquire);
        return t >= hd ? t - hd : 0;
    }
    uint64_t skipped() const { check_open(); return h_->skipped.load(std::memory_order_relaxed); }
    uint64_t recoveries() const { check_open(); return h_->recoveries.load(std::memory_order_relaxed); }
    uint64_t consumer_owner() const { check_open(); return h_->consumer.load(std::memory_order_acquire); }
    const qformat::Info& info() const noexcept { return info_; }
    const std::string& name() const noexcept { return name_; }
    bool persistent() const noexcept { return info_.flags & qformat::kFlagPersistent; }
    bool closed() const noexcept { return closed_; }
    void set_spin(std::chrono::nanoseconds spin) { spin_ns_ = spin.count() < 0 ? 0 : uint64_t(spin.count()); }

    // Registers this process as the queue's one consumer (done by every consuming call).
    // Another live process already consuming is errc::invalid_argument; a dead one is
    // replaced. The Mailslot's reader holds it from creation to close.
    void claim_consumer() { claim_consumer(nullptr); }
    bool claim_consumer(ErrorInfo* err) {
        if (!check_open(err)) return false;
        if (consumer_claimed_) return true;
        const uint64_t me = detail::os::self_owner();
        uint64_t cur = h_->consumer.load(std::memory_order_acquire);
        for (;;) {
            if (cur == me) break;
            if (cur != 0 && detail::os::owner_alive(cur))
                return failure(err, errc::invalid_argument, "queue '" + name_ + "' already has a consumer (pid " +
                                                                std::to_string(detail::os::owner_pid(cur)) +
                                                                "); one consumer at a time");
            if (h_->consumer.compare_exchange_strong(cur, me, std::memory_order_acq_rel)) break;
        }
        consumer_claimed_ = true;
        return true;
    }
    void release_consumer() noexcept {
        if (!consumer_claimed_ || closed_ || !map_) return;
        uint64_t me = detail::os::self_owner();
        h_->consumer.compare_exchange_strong(me, 0, std::memory_order_acq_rel);
        consumer_claimed_ = false;
    }

    // Drops this holder; on Linux the last holder of a non-persistent queue removes it.
    void close() noexcept {
        if (closed_) return;
        release_consumer();
        closed_ = true;
        h_ = nullptr;
        ring_ = nullptr;
        map_.reset();
        file_.close(!(info_.flags & qformat::kFlagPersistent));  // never throws
    }

    const std::shared_ptr<detail::os::Mapping>& mapping() const { check_open(); return map_; }

private:
    static constexpr detail::Deadline kNoWait{0};  // already passed: try, never wait (no clock read)
    static constexpr uint64_t kWriterCheckNs = 10000000;  // how often a stuck record's producer is checked
    // While spinning for the other side, give the CPU away now and then: on a busy machine
    // the other side may be waiting for *our* CPU, and a spin that never yields would make
    // every hand-off cost the whole spin budget plus a kernel wake-up. Measured, Python
    // round trip of 16 B, 2 vCPUs under load: 109 us without yields, 16 us yielding every
    // 256 polls, 6.4 us every 64, 4.1 us every 16; on two separate CPUs still 0.42 us
    // (a yield with nothing else to run returns at once).
    static constexpr unsigned kPollsPerYield = 16;
    static bool yield_cpu() {
        std::this_thread::yield();
        return false;
    }

    // The message at head, waiting up to `timeout` for one: false with err set on failure.
    bool next_message(std::chrono::nanoseconds timeout, ErrorInfo& err, uint64_t& pos, const unsigned char*& p,
                      uint32_t& n, uint32_t& size) {
        err.clear();
        if (peek(pos, p, n, size, &err)) return true;
        if (err) return false;
        if (!wait_ready(timeout, Interrupt{}, &err)) return false;
        if (peek(pos, p, n, size, &err)) return true;
        if (!err) err.set(errc::invalid_argument, "queue '" + name_ + "': message vanished (two consumers?)");
        return false;
    }

    // A queue whose holders all died (and is not persistent) is removed. True if removed.
    static bool remove_stale(const std::string& name) { return detail::remove_stale_segment(name); }

    bool attach(const qformat::Info& info, ErrorInfo& err) {
        info_ = info;
        h_ = reinterpret_cast<qformat::Header*>(map_->data());
        ring_ = map_->data() + qformat::kHeaderSize;
        mask_ = info_.capacity - 1;
        if (!data_wake_.open(name_, 1, err) || !space_wake_.open(name_, 2, err)) return false;
        closed_ = false;
        return true;
    }
    void move_from(Queue& o) {
        name_ = std::move(o.name_); file_ = std::move(o.file_); map_ = std::move(o.map_);
        info_ = o.info_; h_ = o.h_; ring_ = o.ring_; mask_ = o.mask_;
        data_wake_ = std::move(o.data_wake_); space_wake_ = std::move(o.space_wake_);
        spin_ns_ = o.spin_ns_; tail_cache_ = o.tail_cache_; blocked_pos_ = o.blocked_pos_;
        blocked_checked_ = o.blocked_checked_; closed_ = o.closed_; consumer_claimed_ = o.consumer_claimed_; view_open_ = o.view_open_;
        o.closed_ = true; o.consumer_claimed_ = false; o.h_ = nullptr; o.ring_ = nullptr;
    }
    void check_open() const { check_open(nullptr); }
    void check_len(size_t len) const { check_len(len, nullptr); }
    [[noreturn]] void corrupt(const std::string& why) const {
        fail(errc::corrupt_segment, "queue '" + name_ + "': " + why);
    }
    // The internal error-code convention: with err, record and return false; without, throw.
    bool corrupt(ErrorInfo* err, const std::string& why) const {
        if (!err) corrupt(why);
        return err->set(errc::corrupt_segment, "queue '" + name_ + "': " + why);
    }
    bool failure(ErrorInfo* err, errc e, const std::string& why) const {
        if (!err) fail(e, why);
        return err->set(e, why);
    }
    bool check_open(ErrorInfo* err) const {
        if (closed_ || !map_) return failure(err, errc::closed, "queue '" + name_ + "' is closed");
        return true;
    }
    bool check_len(size_t len, ErrorInfo* err) const {
        if (!check_open(err)) return false;
        if (len > info_.max_message)
            return failure(err, errc::message_too_large, "put to queue '" + name_ + "': message of " + std::to_string(len) +
                                                             " bytes, max_message is " + std::to_string(info_.max_message));
        return true;
    }
    qformat::Record* rec(uint64_t pos) const { return reinterpret_cast<qformat::Record*>(ring_ + (pos & mask_)); }

    enum class Reserved { ok, full, lock_busy, error };

    // Reserves a record for `len` payload bytes at `pos`.
    Reserved reserve(size_t len, uint64_t& pos, const detail::Deadline& lock_deadline, const Interrupt& intr,
                     ErrorInfo* err = nullptr) {
        const uint64_t me = detail::os::self_owner();
        const uint64_t need = qformat::record_size(len);
        const uint64_t cap = info_.capacity;
        auto r = detail::lock_reserve(h_->reserve_lock, me, lock_deadline, intr);
        if (r == detail::ReserveLock::timed_out) return Reserved::lock_busy;
        if (r == detail::ReserveLock::recovered) h_->recoveries.fetch_add(1, std::memory_order_relaxed);
        struct Unlock {
            std::atomic<uint64_t>& w;
            ~Unlock() { w.store(0, std::memory_order_release); }
        } unlock{h_->reserve_lock};
        // head: acquire, pairs with the consumer's release after its copy-out, so the bytes
        // we are about to overwrite have been read.
        uint64_t t = h_->tail.load(std::memory_order_relaxed);  // only lock holders store it
        uint64_t to_end = cap - (t & mask_);
        uint64_t want = need > to_end ? to_end + need : need;
        // head_cache: the last head a producer read, on the producers' own line. head only
        // grows, so a stale value understates the room: it is safe, and reading the
        // consumer's line (a cache miss per put) is needed only when it says "full".
        uint64_t hd = h_->head_cache.load(std::memory_order_relaxed);
        if (t < hd || t - hd + want > cap) {
            hd = h_->head.load(std::memory_order_acquire);
            h_->head_cache.store(hd, std::memory_order_relaxed);
        }
        // Checked before any record header is touched: a position not on a 16-byte boundary
        // would put a header across the ring's end.
        if (t < hd || t - hd > cap || (hd | t) % qformat::kRecordAlign) {
            corrupt(err, "head/tail out of range");
            return Reserved::error;
        }
        if (need > to_end) {
            // Does not fit before the ring's end: fill the rest with a padding record (alone, so
            // that a message as large as the ring waits for the pad to be consumed, not forever).
            if (t - hd + to_end > cap) return Reserved::full;
            qformat::Record* pad = rec(t);
            pad->size = uint32_t(to_end);
            pad->owner = me;
            pad->state.store(qformat::kPadding, std::memory_order_relaxed);
            t += to_end;
            h_->tail.store(t, std::memory_order_release);
            if (t - hd + need > cap) {
                // The consumer must pass the padding before the record fits: wake it if it
                // sleeps on an empty queue (it would not notice the padding otherwise).
                wake_consumer();
                return Reserved::full;
            }
        }
        if (t - hd + need > cap) return Reserved::full;
        qformat::Record* r0 = rec(t);
        r0->size = uint32_t(need);
        r0->owner = me;
        r0->state.store(qformat::kWriting, std::memory_order_relaxed);
        // release: the header above is visible to whoever sees the new tail.
        h_->tail.store(t + need, std::memory_order_release);
        h_->puts.store(h_->puts.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
        pos = t;
        return Reserved::ok;
    }

    void commit_put(uint64_t pos, const void* data, size_t len) {
        qformat::Record* r = rec(pos);
        if (len) std::memcpy(reinterpret_cast<unsigned char*>(r) + qformat::kRecordHeader, data, len);
        // release: the payload is visible to the consumer that sees the state (acquire).
        r->state.store(qformat::kPublished | uint32_t(len), std::memory_order_release);
        wake_consumer();
    }

    void publish(uint64_t pos, uint32_t state, const std::shared_ptr<detail::os::Mapping>& m) noexcept {
        if (closed_ || map_ != m) return;  // our mapping is gone: the consumer will see us dead... or closed
        rec(pos)->state.store(state, std::memory_order_release);
        wake_consumer();
    }

    void wake_consumer() {
        // Dekker with the consumer's wait (wait.hpp): our store, then its waiter count.
        std::atomic_thread_fence(std::memory_order_seq_cst);
        if (h_->data_waiters.load(std::memory_order_relaxed)) {
            h_->data_seq.fetch_add(1, std::memory_order_seq_cst);
            detail::os::unpark_all(&h_->data_seq, h_->data_waiters.load(std::memory_order_relaxed), data_wake_);
        }
    }

    void put_slow(const void* data, size_t len, std::chrono::nanoseconds timeout, const Interrupt& intr) {
        commit_put(reserve_slow(len, timeout, intr), data, len);
    }

    uint64_t reserve_slow(size_t len, std::chrono::nanoseconds timeout, const Interrupt& intr) {
        uint64_t pos = 0;
        reserve_slow(len, timeout, intr, pos, nullptr);
        return pos;
    }
    bool reserve_slow(size_t len, std::chrono::nanoseconds timeout, const Interrupt& intr, uint64_t& pos, ErrorInfo* err) {
        auto keep = map_;
        auto deadline = detail::Deadline::after(timeout.count());
        const uint64_t need = qformat::record_size(len);
        for (;;) {
            Reserved r = reserve(len, pos, deadline, intr, err);
            if (r == Reserved::ok) return true;
            if (r == Reserved::error) return false;
            if (r == Reserved::lock_busy) {
                if (deadline.left() > 0) continue;
                return failure(err, errc::timeout, "put to queue '" + name_ + "': the reserve lock is held by pid " +
                                                       std::to_string(detail::os::owner_pid(h_->reserve_lock.load())) +
                                                       " (alive; stopped or stuck?)");
            }
            if (deadline.left() == 0)
                return failure(err, errc::timeout, "put to queue '" + name_ + "': full (" + std::to_string(used_bytes()) +
                                                       " of " + std::to_string(info_.capacity) +
                                                       " bytes used, the message needs " + std::to_string(need) + ")");
            // Room for a record (and maybe a padding record before it): at most need + what
            // is left before the ring's end. Checked again under the lock.
            unsigned polls = 0;
            auto done = [&] {
                if (++polls % kPollsPerYield == 0) yield_cpu();
                uint64_t t = h_->tail.load(std::memory_order_seq_cst);
                uint64_t hd = h_->head.load(std::memory_order_seq_cst);
                uint64_t to_end = info_.capacity - (t & mask_);
                uint64_t want = need > to_end ? to_end + need : need;
                return t >= hd && t - hd + want <= info_.capacity;
            };
            detail::wait_until(&h_->space_seq, h_->space_waiters, space_wake_, done, deadline, spin_ns_, intr);
        }
    }

    // The record at head, if it is a published message: its payload and record size.
    // Consumes padding on the way. Refuses while a View is open.
    // With err: false with err set on failure (false with err clear: nothing ready).
    bool peek(uint64_t& pos, const unsigned char*& payload, uint32_t& len, uint32_t& rec_size, ErrorInfo* err = nullptr) {
        if (!check_open(err)) return false;
        if (view_open_) return failure(err, errc::invalid_argument, "queue '" + name_ + "': a get_view() is still open");
        if (!consumer_claimed_ && !claim_consumer(err)) return false;
        for (;;) {
            uint64_t hd = h_->head.load(std::memory_order_relaxed);  // only we store it
            // tail_cache_: a tail seen earlier (acquire). Records below it are reserved and
            // their headers visible; the producers' line is re-read only when we reach it.
            uint64_t t = tail_cache_;
            if (t <= hd || t - hd > info_.capacity) {
                t = tail_cache_ = h_->tail.load(std::memory_order_acquire);
                if (hd == t) return false;
                if (t < hd || t - hd > info_.capacity || t % qformat::kRecordAlign) return corrupt(err, "head/tail out of range");
            }
            if (hd % qformat::kRecordAlign) return corrupt(err, "head " + std::to_string(hd) + " is not on a record boundary");
            qformat::Record* r = rec(hd);
            uint32_t st = r->state.load(std::memory_order_acquire);
            uint32_t size = r->size;
            if (size < qformat::kRecordHeader || size % qformat::kRecordAlign || size > t - hd ||
                (hd & mask_) + size > info_.capacity)
                return corrupt(err, "record at " + std::to_string(hd) + " has an impossible size " + std::to_string(size));
            if (st == qformat::kPadding || st == qformat::kCancelled) {
                release_bytes(hd + size, st == qformat::kCancelled);
                continue;
            }
            if (st == qformat::kWriting) {
                // A consumer that only polls (timeout 0) must get past a dead producer too.
                if (stale_writer(hd, err)) continue;
                if (err && *err) return false;
                return false;
            }
            if (!(st & qformat::kPublished)) return corrupt(err, "record at " + std::to_string(hd) + " has a bad state word");
            uint32_t n = st & qformat::kLengthMask;
            if (n > size - qformat::kRecordHeader || n > info_.max_message)
                return corrupt(err, "record at " + std::to_string(hd) + " claims " + std::to_string(n) + " bytes");
            pos = hd;
            payload = reinterpret_cast<const unsigned char*>(r) + qformat::kRecordHeader;
            len = n;
            rec_size = size;
            return true;
        }
    }

    // Is a message (or padding, which the consumer must pass) ready at head? Non-mutating
    // (safe from the waiting loop). With `blocked`, reports a record still being written.
    bool ready(uint64_t* blocked, bool seq_cst = false) {
        auto mo = seq_cst ? std::memory_order_seq_cst : std::memory_order_acquire;
        uint64_t hd = h_->head.load(std::memory_order_relaxed);
        uint64_t t = h_->tail.load(mo);
        if (hd == t) return false;
        if (t < hd || t - hd > info_.capacity || (hd | t) % qformat::kRecordAlign) return true;  // peek() reports it
        uint32_t st = rec(hd)->state.load(mo);
        if (st == qformat::kWriting) {
            if (blocked) *blocked = hd;
            return false;
        }
        return true;
    }

    // Consumes padding records at head. True if it moved head.
    bool skip_padding(ErrorInfo* err = nullptr) {
        bool moved = false;
        for (;;) {
            uint64_t hd = h_->head.load(std::memory_order_relaxed);
            uint64_t t = h_->tail.load(std::memory_order_acquire);
            if (hd == t || t < hd || t - hd > info_.capacity || (hd | t) % qformat::kRecordAlign) return moved;
            qformat::Record* r = rec(hd);
            uint32_t st = r->state.load(std::memory_order_acquire);
            if (st != qformat::kPadding && st != qformat::kCancelled) return moved;
            uint32_t size = r->size;
            if (size < qformat::kRecordHeader || size % qformat::kRecordAlign || size > t - hd ||
                (hd & mask_) + size > info_.capacity)
                return corrupt(err, "padding at " + std::to_string(hd) + " has an impossible size " + std::to_string(size));
            release_bytes(hd + size, st == qformat::kCancelled);
            moved = true;
        }
    }

    uint64_t owner_at(uint64_t pos) const { return rec(pos)->owner; }

    // The record at `pos` (head, or after padding at head) is still being written: if its
    // producer is dead, skip it (never delivered: its payload may be torn).
    // The record at `pos` (head) has been seen "being written": at most every 10 ms, ask
    // whether its producer is alive. True if it was dead and the record is skipped.
    bool stale_writer(uint64_t pos, ErrorInfo* err = nullptr) {
        uint64_t now = detail::os::monotonic_ns();
        if (pos != blocked_pos_) {
            blocked_pos_ = pos;
            blocked_checked_ = now;
            return false;
        }
        if (now - blocked_checked_ < kWriterCheckNs) return false;
        blocked_checked_ = now;
        return skip_if_dead(pos, err);
    }

    bool skip_if_dead(uint64_t pos, ErrorInfo* err = nullptr) {
        qformat::Record* r = rec(pos);
        if (r->state.load(std::memory_order_acquire) != qformat::kWriting) return false;
        if (detail::os::owner_alive(r->owner)) return false;
        uint64_t t = h_->tail.load(std::memory_order_acquire);
        uint32_t size = r->size;
        if (size < qformat::kRecordHeader || size % qformat::kRecordAlign || t < pos || size > t - pos ||
            (pos & mask_) + size > info_.capacity)
            return corrupt(err, "record at " + std::to_string(pos) + " has an impossible size " + std::to_string(size));
        if (h_->head.load(std::memory_order_relaxed) != pos) return false;  // not at head: not ours to skip
        h_->skipped.fetch_add(1, std::memory_order_relaxed);
        release_bytes(pos + size, true);
        return true;
    }

    // Moves head to `new_head` and wakes producers waiting for room.
    void release_bytes(uint64_t new_head, bool counted) {
        if (counted) h_->gets.store(h_->gets.load(std::memory_order_relaxed) + 1, std::memory_order_release);
        // release: our reads of the consumed bytes happen before a producer reuses them.
        h_->head.store(new_head, std::memory_order_release);
        std::atomic_thread_fence(std::memory_order_seq_cst);  // Dekker with the producers' wait
        if (h_->space_waiters.load(std::memory_order_relaxed)) {
            h_->space_seq.fetch_add(1, std::memory_order_seq_cst);
            detail::os::unpark_all(&h_->space_seq, h_->space_waiters.load(std::memory_order_relaxed), space_wake_);
        }
    }

    std::string name_;
    detail::os::SegmentFile file_;
    std::shared_ptr<detail::os::Mapping> map_;
    qformat::Info info_;
    qformat::Header* h_ = nullptr;
    unsigned char* ring_ = nullptr;
    uint64_t mask_ = 0;
    mutable detail::os::WakeChannel data_wake_;
    mutable detail::os::WakeChannel space_wake_;
    uint64_t spin_ns_ = uint64_t(std::chrono::nanoseconds(kDefaultSpin).count());
    uint64_t tail_cache_ = 0;  // consumer side: a tail seen earlier
    uint64_t blocked_pos_ = UINT64_MAX;  // consumer side: a record seen "being written" at head
    uint64_t blocked_checked_ = 0;       // ... and when its producer was last looked at
    bool closed_ = true;
    bool consumer_claimed_ = false;
    bool view_open_ = false;
};

}  // namespace sharedstate
