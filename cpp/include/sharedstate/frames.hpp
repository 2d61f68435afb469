// Frames: the latest frame, zero-copy and never torn. A ring of readers + 2 frame slots in
// one named segment (frames_format.hpp, docs/FORMAT.md) with latest-value semantics.
//
// Writer (one at a time: the writer lock of writer_lock.hpp, dead owners taken over). loan()
// takes the lock and picks a *free* slot: not the latest and pinned by no reader. The
// caller fills it in place; commit() stamps the slot header, makes it the latest
// (`latest` = (version << 16) | slot, one seq_cst exchange), unlocks and wakes parked
// waiters. A loan dropped without commit(), or abandoned by a writer killed mid-fill, is
// never published: `latest` still names the previous frame, and the next writer that takes
// the lock over simply reuses the slot. Nothing to repair.
//
// Readers. latest() claims an entry of the pin table (CAS of its owner word from 0 to this
// process's owner word, as the writer lock records its owner), then pins:
//
//   reader                                    writer (holds the lock)
//   R1  L  = latest.load(seq_cst)             W1  latest.exchange(new, seq_cst)   // commit
//   R2  entry.slot.store(slot(L), seq_cst)        ... later loan:
//   R3  L2 = latest.load(seq_cst)             W2  cur = latest.fetch_add(0, seq_cst)
//       L2 == L ? pinned : retry with L2      W3  entry.slot.load(seq_cst) for each entry
//                                                 pick s != slot(cur), not seen in W3
//
// Why the writer never writes a slot s = slot(L) that a reader holds: every access above
// is seq_cst, so they all sit in one total order S. A loan can pick s only if slot(cur) != s
// at W2, so some commit W1 that replaced L precedes W2, hence W3, in S. If that loan's W3
// read the entry before R2 in S, then W1 < R3 in S too, R3 reads W1's value or a later
// one (never L: versions only grow), and the reader retries instead of using s. So for a
// pin the reader keeps, every W3 that could pick s comes after R2 in S and sees the pin.
// W2 is a read-modify-write so that it reads the newest `latest` even right after a
// takeover from a dead writer (no release/acquire pair with it). Data: the writer's fill
// happens before its commit (W1 releases) and the reader's R1 acquires it; the reader's
// last read of the slot happens before its unpin (release), which the writer's W3 acquires
// before it may pick the slot again. The payload is never accessed concurrently, so it is
// plain memory (memcpy, numpy): no atomics, no copies.
//
// A free slot always exists: R entries pin at most R slots, the latest is one more, so of
// R + 2 slots at least one is free for the loan. A reader killed while pinning leaves its
// entry with its (dead) owner word: the next reader that finds the table full, or the
// writer when fewer than two slots are free, checks owners (os::owner_alive, at most every
// 100 ms for the writer) and takes dead entries back with a CAS from exactly the dead word
// (so two rescuers cannot both win), clearing the slot before freeing the owner. More
// frames held at once than `readers` is errc::invalid_argument naming the holders, never a
// wait. A stopped (SIGSTOP) reader is alive: its pin stays, and the writer uses the others.
//
// version() / wait(since, timeout) are those of SharedState: the futex word is the low half
// of `latest` (it changes on every commit), the eventcount of wait.hpp, a WakeChannel on
// Windows. Version 0 is the zero-filled slot 0 the creator leaves: latest() always has a
// frame, as SharedState::read() always has a value.
//
// Threads: loan/commit, latest and wait may be called from many threads on one Frames object;
// the writer lock serializes loans of all threads and processes. Do not move, close or
// destroy a Frames while one of its Loans is alive (Views keep what they need alive).
#pragma once
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "detail/lifetime.hpp"
#include "detail/os.hpp"
#include "detail/wait_source.hpp"
#include "error.hpp"
#include "format.hpp"
#include "frames_format.hpp"
#include "layout.hpp"
#include "state.hpp"
#include "wait.hpp"
#include "writer_lock.hpp"

namespace sharedstate {

struct FramesOptions {
    uint32_t readers = 4;     // frames that may be held (pinned) at once, by all readers together
    bool exist_ok = false;    // open the existing segment instead of failing (its spec must match)
    bool persistent = false;  // outlive the last holder (Linux; Windows sections never do)
};

using FrameSpec = fformat::Spec;

namespace detail {
template <class T, class = void> struct FrameElement {  // a SHAREDSTATE_DESCRIBE'd record
    static FrameSpec spec(std::vector<uint32_t> shape) {
        return FrameSpec{std::move(shape), sharedstate_layout_of(static_cast<const T*>(nullptr)), false};
    }
};
template <class T> struct FrameElement<T, std::enable_if_t<std::is_arithmetic<T>::value>> {  // a number
    static FrameSpec spec(std::vector<uint32_t> shape) {
        Layout l;
        l.size = uint32_t(sizeof(T));
        l.align = uint32_t(alignof(T));
        l.fields.push_back(make_field<T>("value", 0));
        return FrameSpec{std::move(shape), l, true};
    }
};
}  // namespace detail

// FrameSpec of frames of T: frame_spec<uint8_t>({1080, 1920, 4}) is a 1080x1920 RGBA image
// (numpy: shape (1080, 1920, 4), dtype uint8); a described struct T gives a structured dtype.
template <class T>
FrameSpec frame_spec(std::vector<uint32_t> shape) {
    return detail::FrameElement<T>::spec(std::move(shape));
}

class Frames {
public:
    Frames() = default;
    Frames(Frames&& o) noexcept { move_from(o); }
    Frames& operator=(Frames&& o) noexcept {
        if (this != &o) { close(); move_from(o); }
        return *this;
    }
    Frames(const Frames&) = delete;
    Frames& operator=(const Frames&) = delete;
    ~Frames() { close(); }

    // ------------------------------------------------------------ lifetime
    static Frames create(const std::string& name, const FrameSpec& spec, FramesOptions opt = {}) {
        ErrorInfo err;
        Frames f = create(name, spec, opt, err);
        if (err) fail(err);
        return f;
    }
    // The error-code form (error.hpp): on failure a closed Frames and err set.
    static Frames create(const std::string& name, const FrameSpec& spec, FramesOptions opt, ErrorInfo& err) noexcept {
        err.clear();
        if (!spec.element.validate(name, err)) return Frames();
        if (spec.shape.size() > fformat::kMaxDims)
            return failed(err, errc::invalid_argument, "frames '" + name + "': more than 8 dimensions");
        if (opt.readers == 0 || opt.readers > fformat::kMaxReaders)
            return failed(err, errc::invalid_argument,
                          "frames '" + name + "': readers must be 1..1024, got " + std::to_string(opt.readers));
        if (spec.scalar && (spec.element.fields.size() != 1 || spec.element.fields[0].offset != 0 ||
                            spec.element.fields[0].nbytes() != spec.element.size))
            return failed(err, errc::invalid_argument, "frames '" + name + "': a scalar element is one field covering it");
        uint64_t fb = fformat::frame_bytes_of(spec.shape.data(), uint32_t(spec.shape.size()), spec.element.size);
        if (fb == 0)
            return failed(err, errc::invalid_argument, "frames '" + name + "': a frame must have 1 byte .. 1 GiB (no 0 dims)");
        auto g = fformat::geometry(fb, uint32_t(spec.element.fields.size()), opt.readers);
        for (int attempt = 0;; ++attempt) {
            detail::os::SegmentFile file = detail::os::SegmentFile::create(name, g.segment_size, true, err);
            if (err) {
                if (!detail::os::is_exists_error(err.code) || attempt > 3) return Frames();
                if (opt.exist_ok) return open(name, &spec, err);
                if (!detail::remove_stale_segment(name)) return Frames();
                err.clear();
                continue;
            }
            Frames f;
            f.name_ = name;
            f.map_ = file.map(g.segment_size, true, err);
            if (err) return Frames();
            f.file_ = std::move(file);
            unsigned char* base = f.map_->data();
            auto* h = reinterpret_cast<fformat::Header*>(base);
            // The OS zero-fills the segment: latest = 0 (version 0, slot 0), locks free.
            format::Preamble& p = h->pre;
            p.version = fformat::kVersion;
            p.kind = format::kFrames;
            p.header_size = g.header_size;
            p.segment_size = g.segment_size;
            p.payload_size = uint32_t(fb);
            p.payload_align = spec.element.align;
            p.slot_stride = g.slot_stride;
            p.field_count = uint32_t(spec.element.fields.size());
            p.fields_offset = fformat::kFieldsOffset;
            p.flags = (opt.persistent ? fformat::kFlagPersistent : 0) | (spec.scalar ? fformat::kFlagScalar : 0);
            p.creator_pid = detail::os::current_pid();
            p.created_unix_ns = uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                             std::chrono::system_clock::now().time_since_epoch()).count());
            fformat::Geometry& geo = h->geo;
            geo.slot_count = opt.readers + 2;
            geo.readers = opt.readers;
            geo.ndim = uint32_t(spec.shape.size());
            geo.item_size = spec.element.size;
            geo.pins_offset = g.pins_offset;
            for (size_t i = 0; i < spec.shape.size(); ++i) geo.shape[i] = spec.shape[i];
            fformat::write_field_table_at(base, fformat::kFieldsOffset, spec.element);
            auto* pins = reinterpret_cast<fformat::PinEntry*>(base + g.pins_offset);
            for (uint32_t i = 0; i < opt.readers; ++i) pins[i].slot.store(fformat::kNoSlot, std::memory_order_relaxed);
            p.checksum = fformat::checksum(base, p.field_count);
            // Publish: an opener that sees the magic (acquire) sees everything above.
            p.magic.store(format::kFramesMagic, std::memory_order_release);
            fformat::Info info;
            if (!fformat::validate_frames(base, g.segment_size, name, info, err) || !f.attach(std::move(info), err))
                return Frames();
            return f;
        }
    }

    // Opens an existing Frames segment; shape and element come from the header. With
    // `expected`, a different spec is errc::layout_mismatch.
    static Frames open(const std::string& name, const FrameSpec* expected = nullptr) {
        ErrorInfo err;
        Frames f = open(name, expected, err);
        if (err) fail(err);
        return f;
    }
    // The error-code forms (error.hpp): on failure a closed Frames and err set.
    static Frames open(const std::string& name, ErrorInfo& err) noexcept { return open(name, nullptr, err); }
    static Frames open(const std::string& name, const FrameSpec* expected, ErrorInfo& err) noexcept {
        err.clear();
        bool others = true;
        auto file = detail::os::SegmentFile::open(name, true, true, others, err);
        if (err) return Frames();
        uint64_t size = file.size(err);
        auto waited = detail::Deadline::after(others ? 1000000000 : 0);
        while (!err && size < fformat::kFieldsOffset && detail::nap(waited)) size = file.size(err);
        if (err) return Frames();
        if (size < fformat::kFieldsOffset)
            return failed(err, errc::corrupt_segment, "frames '" + name + "': truncated (" + std::to_string(size) +
                                                          " bytes, a frames header needs 320); not sharedstate Frames?");
        Frames f;
        f.name_ = name;
        f.map_ = file.map(size, true, err);
        if (err) return Frames();
        f.file_ = std::move(file);
        auto* h = reinterpret_cast<const fformat::Header*>(f.map_->data());
        while (h->pre.magic.load(std::memory_order_acquire) == 0 && detail::nap(waited)) {}
        fformat::Info info;
        if (!fformat::validate_frames(f.map_->data(), size, name, info, err)) return Frames();
        if (!others && !(info.flags & fformat::kFlagPersistent)) {
            f.map_.reset();
            f.file_.close(true);
            return failed(err, errc::not_found,
                          "frames '" + name + "' was left behind by processes that have all exited; removed");
        }
        if (expected && (expected->shape != info.spec.shape || expected->element != info.spec.element ||
                         expected->scalar != info.spec.scalar))
            return failed(err, errc::layout_mismatch,
                          "frames '" + name + "': its shape or element differs from the one asked for");
        if (!f.attach(std::move(info), err)) return Frames();
        return f;
    }

    static void unlink(const std::string& name) { detail::os::SegmentFile::unlink(name); }
    static bool remove_if_stale(const std::string& name) { return detail::remove_stale_segment(name); }

    // Drops this holder; on Linux the last holder of a non-persistent segment removes it.
    // Views stay valid (they keep the mapping); a Loan must be gone first.
    void close() noexcept {
        if (closed_) return;
        closed_ = true;
        map_.reset();
        h_ = nullptr;
        file_.close(managed_ && !(info_.flags & fformat::kFlagPersistent));  // never throws
    }
    bool closed() const noexcept { return closed_; }

    // ------------------------------------------------------------ writing
    // A free slot, loaned under the writer lock: fill data() (size() bytes), then commit().
    // Destroyed without commit(): dropped, never published.
    class Loan {
    public:
        Loan() = default;
        Loan(Loan&& o) noexcept { take(o); }
        Loan& operator=(Loan&& o) noexcept {
            if (this != &o) { cancel(); take(o); }
            return *this;
        }
        Loan(const Loan&) = delete;
        Loan& operator=(const Loan&) = delete;
        ~Loan() { cancel(); }
        unsigned char* data() const noexcept { return data_; }
        size_t size() const noexcept { return size_; }
        uint32_t slot() const noexcept { return slot_; }
        uint64_t version() const noexcept { return version_; }  // the version commit() will publish
        explicit operator bool() const noexcept { return f_ != nullptr; }
        // Publishes the frame: it becomes latest() and version() moves to version().
        uint64_t commit() {
            ErrorInfo err;
            uint64_t v = commit(err);
            if (err) fail(err);
            return v;
        }
        // The error-code form: the version, or 0 with err set (errc::closed).
        uint64_t commit(ErrorInfo& err) noexcept {
            err.clear();
            if (!f_) {
                err.set(errc::closed, "frame loan already committed or cancelled");
                return 0;
            }
            Frames* f = f_;
            f_ = nullptr;
            if (f->closed_ || f->map_ != map_) {
                detail::unlock_writer(h_->lock_owner);
                map_.reset();
                err.set(errc::closed, "frames '" + f->name_ + "' was closed during the loan; frame dropped");
                return 0;
            }
            f->publish(slot_, version_);
            map_.reset();
            return version_;
        }
        // Drops the frame (the slot stays free); the lock is released.
        void cancel() noexcept {
            if (!f_) return;
            f_ = nullptr;
            detail::unlock_writer(h_->lock_owner);  // the mapping is ours (map_) until reset
            map_.reset();
        }
    private:
        friend class Frames;
        void take(Loan& o) {
            f_ = o.f_; h_ = o.h_; data_ = o.data_; size_ = o.size_; slot_ = o.slot_; version_ = o.version_;
            map_ = std::move(o.map_);
            o.f_ = nullptr;
        }
        Frames* f_ = nullptr;
        fformat::Header* h_ = nullptr;
        unsigned char* data_ = nullptr;
        size_t size_ = 0;
        uint32_t slot_ = 0;
        uint64_t version_ = 0;
        std::shared_ptr<detail::os::Mapping> map_;
    };

    // Takes the writer lock (waiting at most lock_timeout for a live holder; 0: try once and
    // return an empty Loan if it is busy) and loans a free slot.
    Loan loan(std::chrono::nanoseconds lock_timeout = kDefaultLockTimeout, const Interrupt& intr = {}) {
        ErrorInfo err;
        Loan l = loan_impl(lock_timeout, intr, err);
        if (err && !err.is(errc::would_block)) fail(err);
        return l;
    }
    // The error-code forms: an empty Loan with err set: errc::would_block (lock_timeout 0 and
    // another writer holds the lock), errc::timeout (it held it for all of lock_timeout),
    // closed, corrupt_segment.
    Loan loan(ErrorInfo& err) noexcept { return loan(kDefaultLockTimeout, err); }
    Loan loan(std::chrono::nanoseconds lock_timeout, ErrorInfo& err) noexcept {
        return loan_impl(lock_timeout, Interrupt{}, err);
    }

    // One copy of `len` (== frame_bytes()) bytes into a free slot, then commit. The version.
    uint64_t publish(const void* src, size_t len, std::chrono::nanoseconds lock_timeout = kDefaultLockTimeout,
                     const Interrupt& intr = {}) {
        ErrorInfo err;
        uint64_t v = publish_impl(src, len, lock_timeout, intr, err);
        if (err) fail(err);
        return v;
    }
    // The error-code forms: the version, or 0 with err set (as the throwing form: a busy
    // lock with lock_timeout 0 is errc::timeout here too).
    uint64_t publish(const void* src, size_t len, ErrorInfo& err) noexcept {
        return publish(src, len, kDefaultLockTimeout, err);
    }
    uint64_t publish(const void* src, size_t len, std::chrono::nanoseconds lock_timeout, ErrorInfo& err) noexcept {
        return publish_impl(src, len, lock_timeout, Interrupt{}, err);
    }

    // ------------------------------------------------------------ reading
    // The newest committed frame, pinned: the writer never writes it while the View lives.
    class View {
    public:
        View() = default;
        View(View&& o) noexcept { take(o); }
        View& operator=(View&& o) noexcept {
            if (this != &o) { release(); take(o); }
            return *this;
        }
        View(const View&) = delete;
        View& operator=(const View&) = delete;
        ~View() { release(); }
        const unsigned char* data() const noexcept { return data_; }
        size_t size() const noexcept { return size_; }
        uint64_t version() const noexcept { return version_; }
        uint32_t slot() const noexcept { return slot_; }
        uint64_t commit_ns() const noexcept { return commit_ns_; }  // os monotonic clock at its commit
        explicit operator bool() const noexcept { return entry_ != nullptr; }
        // Unpins: the bytes may be overwritten from now on.
        void release() noexcept {
            if (!entry_) return;
            entry_->slot.store(fformat::kNoSlot, std::memory_order_release);  // our reads happen before
            entry_->owner.store(0, std::memory_order_release);
            entry_ = nullptr;
            map_.reset();
        }
    private:
        friend class Frames;
        void take(View& o) {
            entry_ = o.entry_; data_ = o.data_; size_ = o.size_; version_ = o.version_; slot_ = o.slot_;
            commit_ns_ = o.commit_ns_; map_ = std::move(o.map_);
            o.entry_ = nullptr;
        }
        fformat::PinEntry* entry_ = nullptr;
        const unsigned char* data_ = nullptr;
        size_t size_ = 0;
        uint64_t version_ = 0;
        uint32_t slot_ = 0;
        uint64_t commit_ns_ = 0;
        std::shared_ptr<detail::os::Mapping> map_;  // the bytes outlive a close()
    };

    View latest() {
        ErrorInfo err;
        View v = latest(err);
        if (err) fail(err);
        return v;
    }
    // The error-code form: an empty View with err set (errc::invalid_argument when all pins
    // are held, closed, corrupt_segment, timeout).
    View latest(ErrorInfo& err) noexcept {
        err.clear();
        if (!check_open(err)) return View();
        fformat::PinEntry* e = claim_entry(err);
        if (!e) return View();
        View v;
        v.entry_ = e;  // from here v.release() frees the entry on every exit
        v.map_ = map_;
        uint64_t L = h_->latest.load(std::memory_order_seq_cst);  // R1
        for (uint32_t tries = 0;; ++tries) {
            uint32_t s = uint32_t(L & fformat::kSlotMask);
            if (s >= info_.slot_count) {
                corrupt(err, "latest names slot " + std::to_string(s));
                return View();
            }
            e->slot.store(s, std::memory_order_seq_cst);              // R2
            uint64_t L2 = h_->latest.load(std::memory_order_seq_cst);  // R3
            if (L2 == L) break;
            if (tries > (1u << 20)) {
                err.set(errc::timeout, "latest() of '" + name_ + "': no stable frame after 1M tries");
                return View();
            }
            L = L2;
        }
        uint32_t s = uint32_t(L & fformat::kSlotMask);
        v.slot_ = s;
        v.data_ = slot_data(s);
        v.size_ = size_t(info_.frame_bytes);
        v.version_ = L >> fformat::kSlotBits;
        v.commit_ns_ = slot_header(s)->commit_ns.load(std::memory_order_relaxed);
        return v;
    }

    uint64_t version() const {
        check_open();
        return h_->latest.load(std::memory_order_acquire) >> fformat::kSlotBits;
    }
    uint64_t version(ErrorInfo& err) const noexcept {
        err.clear();
        if (!check_open(err)) return 0;
        return h_->latest.load(std::memory_order_acquire) >> fformat::kSlotBits;
    }

    // Blocks until version() > since; returns the new version. errc::timeout; timeout < 0: forever.
    uint64_t wait(uint64_t since, std::chrono::nanoseconds timeout, std::chrono::nanoseconds spin = kDefaultSpin,
                  const Interrupt& intr = {}) {
        ErrorInfo err;
        uint64_t v = wait_impl(since, timeout, spin, intr, err);
        if (err) fail(err);
        return v;
    }
    // The error-code form: the new version, or 0 with err set (errc::timeout, closed).
    uint64_t wait(uint64_t since, std::chrono::nanoseconds timeout, ErrorInfo& err) noexcept {
        return wait_impl(since, timeout, kDefaultSpin, Interrupt{}, err);
    }

    // What a WaitSet needs (detail/wait_source.hpp): the version, exactly as a state's.
    detail::WaitSource wait_source() const {
        check_open();
        auto* h = h_;
        return detail::version_source(this, "frames '" + name_ + "'", futex_word(), &h->waiters, wake_, map_,
                                      [h] { return h->latest.load(std::memory_order_seq_cst) >> fformat::kSlotBits; });
    }

    // ------------------------------------------------------------ facts
    const std::string& name() const noexcept { return name_; }
    const fformat::Info& info() const noexcept { return info_; }
    const FrameSpec& spec() const noexcept { return info_.spec; }
    size_t frame_bytes() const noexcept { return size_t(info_.frame_bytes); }
    uint32_t readers() const noexcept { return info_.readers; }
    uint32_t slot_count() const noexcept { return info_.slot_count; }
    bool persistent() const noexcept { return info_.flags & fformat::kFlagPersistent; }
    uint64_t lock_owner() const { check_open(); return h_->lock_owner.load(std::memory_order_relaxed); }
    uint64_t last_writer() const { check_open(); return h_->last_writer.load(std::memory_order_relaxed); }
    uint64_t recoveries() const { check_open(); return h_->recoveries.load(std::memory_order_relaxed); }
    uint64_t reclaimed() const { check_open(); return h_->reclaimed.load(std::memory_order_relaxed); }
    uint32_t waiters() const { check_open(); return h_->waiters.load(std::memory_order_relaxed); }
    // Pins held now (entries whose slot is set), by anyone.
    uint32_t pins_held() const {
        check_open();
        uint32_t n = 0;
        for (uint32_t i = 0; i < info_.readers; ++i)
            if (pins()[i].slot.load(std::memory_order_relaxed) < info_.slot_count) ++n;
        return n;
    }
    const std::shared_ptr<detail::os::Mapping>& mapping() const { check_open(); return map_; }

private:
    static constexpr uint64_t kReclaimEveryNs = 100000000;  // the writer's dead-pin check: 100 ms

    bool attach(fformat::Info info, ErrorInfo& err) {
        info_ = std::move(info);
        h_ = reinterpret_cast<fformat::Header*>(map_->data());
        pinned_.assign(info_.slot_count, 0);
        if (!wake_.open(name_, 0, err)) return false;
        managed_ = true;
        closed_ = false;
        return true;
    }
    // What a failed error-code create/open returns: closed, holding nothing; err set.
    static Frames failed(ErrorInfo& err, errc e, std::string what) {
        err.set(e, std::move(what));
        return Frames();
    }
    bool check_open(ErrorInfo& err) const {
        if (closed_ || !map_) return err.set(errc::closed, "frames '" + name_ + "' is closed");
        return true;
    }
    bool corrupt(ErrorInfo& err, const std::string& why) const {
        return err.set(errc::corrupt_segment, "frames '" + name_ + "': " + why);
    }

    // The one path of loan(): lock errors go to err (Interrupt may throw: throwing form only).
    Loan loan_impl(std::chrono::nanoseconds lock_timeout, const Interrupt& intr, ErrorInfo& err) {
        err.clear();
        Loan l;
        if (!check_open(err)) return l;
        auto r = detail::lock_writer(h_->lock_owner, name_, lock_timeout.count(), intr, &err);
        if (r == detail::LockResult::timed_out) return l;
        if (r == detail::LockResult::busy) {
            err.set(errc::would_block, "write lock of frames '" + name_ + "' is held by pid " +
                                           std::to_string(detail::os::owner_pid(h_->lock_owner.load(std::memory_order_relaxed))) +
                                           ": busy");
            return l;
        }
        if (r == detail::LockResult::recovered) h_->recoveries.fetch_add(1, std::memory_order_relaxed);
        struct Unlock {
            std::atomic<uint64_t>* w;
            ~Unlock() { if (w) detail::unlock_writer(*w); }
        } unlock{&h_->lock_owner};
        const uint64_t cur = h_->latest.fetch_add(0, std::memory_order_seq_cst);  // W2
        uint32_t s = 0;
        if (!pick_free(uint32_t(cur & fformat::kSlotMask), s, err)) return l;
        l.f_ = this;
        l.h_ = h_;
        l.slot_ = s;
        l.data_ = slot_data(s);
        l.size_ = size_t(info_.frame_bytes);
        l.version_ = (cur >> fformat::kSlotBits) + 1;
        l.map_ = map_;
        unlock.w = nullptr;  // the Loan owns the lock now
        return l;
    }
    uint64_t publish_impl(const void* src, size_t len, std::chrono::nanoseconds lock_timeout, const Interrupt& intr,
                          ErrorInfo& err) {
        err.clear();
        if (!check_open(err)) return 0;
        if (len != info_.frame_bytes) {
            err.set(errc::invalid_argument, "publish to frames '" + name_ + "': " + std::to_string(len) +
                                                " bytes, a frame is " + std::to_string(info_.frame_bytes));
            return 0;
        }
        Loan l = loan_impl(lock_timeout, intr, err);
        if (err.is(errc::would_block)) {
            err.set(errc::timeout, "publish to frames '" + name_ + "': the writer lock is busy");
            return 0;
        }
        if (err) return 0;
        std::memcpy(l.data(), src, len);
        return l.commit(err);
    }
    uint64_t wait_impl(uint64_t since, std::chrono::nanoseconds timeout, std::chrono::nanoseconds spin,
                       const Interrupt& intr, ErrorInfo& err) {
        err.clear();
        if (!check_open(err)) return 0;
        auto keep = map_;
        auto* h = h_;
        uint64_t v = 0;
        auto done = [&] { return (v = h->latest.load(std::memory_order_acquire) >> fformat::kSlotBits) > since; };
        if (!detail::wait_until(futex_word(), h->waiters, wake_, done, detail::Deadline::after(timeout.count()),
                                uint64_t(spin.count()), intr)) {
            err.set(errc::timeout, "wait on frames '" + name_ + "': no frame after version " + std::to_string(since));
            return 0;
        }
        return v;
    }
    void move_from(Frames& o) {
        name_ = std::move(o.name_); file_ = std::move(o.file_); map_ = std::move(o.map_);
        info_ = std::move(o.info_); h_ = o.h_; wake_ = std::move(o.wake_); pinned_ = std::move(o.pinned_);
        next_slot_ = o.next_slot_; next_reclaim_ns_ = o.next_reclaim_ns_;
        closed_ = o.closed_; managed_ = o.managed_;
        o.closed_ = true; o.h_ = nullptr;
    }
    void check_open() const {
        if (closed_ || !map_) fail(errc::closed, "frames '" + name_ + "' is closed");
    }
    fformat::PinEntry* pins() const {
        return reinterpret_cast<fformat::PinEntry*>(map_->data() + info_.pins_offset);
    }
    unsigned char* slot_base(uint32_t s) const {
        return map_->data() + info_.header_size + uint64_t(s) * info_.slot_stride;
    }
    fformat::SlotHeader* slot_header(uint32_t s) const { return reinterpret_cast<fformat::SlotHeader*>(slot_base(s)); }
    unsigned char* slot_data(uint32_t s) const { return slot_base(s) + fformat::kSlotHeader; }
    const std::atomic<uint32_t>* futex_word() const {
        return reinterpret_cast<const std::atomic<uint32_t>*>(&h_->latest);  // the low half (little-endian)
    }

    // Under the writer lock: a slot that is not `latest_slot` and that no entry pins (W3).
    // Round robin from the last one loaned, so every free slot gets its turn.
    bool pick_free(uint32_t latest_slot, uint32_t& out, ErrorInfo& err) {
        const uint32_t n = info_.slot_count;
        if (latest_slot >= n) return corrupt(err, "latest names slot " + std::to_string(latest_slot));
        for (int pass = 0; pass < 2; ++pass) {
            std::fill(pinned_.begin(), pinned_.end(), uint8_t(0));
            const fformat::PinEntry* p = pins();
            for (uint32_t i = 0; i < info_.readers; ++i) {
                uint32_t s = p[i].slot.load(std::memory_order_seq_cst);
                if (s < n) pinned_[s] = 1;  // anything else pins nothing (kNoSlot or garbage)
            }
            pinned_[latest_slot] = 1;
            uint32_t nfree = 0, first = n;
            for (uint32_t k = 0; k < n; ++k) {
                uint32_t s = (next_slot_ + k) % n;
                if (!pinned_[s]) {
                    if (first == n) first = s;
                    ++nfree;
                }
            }
            // Fewer than two free slots: dead readers may be holding the rest. Look (rarely).
            uint64_t now = nfree < 2 ? detail::os::monotonic_ns() : 0;
            if (pass == 0 && nfree < 2 && now >= next_reclaim_ns_) {
                next_reclaim_ns_ = now + kReclaimEveryNs;
                if (reclaim_dead(nullptr)) continue;
            }
            if (first == n) return corrupt(err, "no free slot: the pin table pins more slots than it has entries");
            next_slot_ = (first + 1) % n;
            out = first;
            return true;
        }
        return corrupt(err, "no free slot");
    }

    // Takes back entries whose owner is dead. With `mine`, the first one becomes this
    // process's (returned through it, owner = self) instead of being freed. True if any.
    bool reclaim_dead(fformat::PinEntry** mine) {
        const uint64_t me = detail::os::self_owner();
        fformat::PinEntry* p = pins();
        bool any = false;
        for (uint32_t i = 0; i < info_.readers; ++i) {
            uint64_t o = p[i].owner.load(std::memory_order_acquire);
            if (o == 0 || o == me || detail::os::owner_alive(o)) continue;
            if (!p[i].owner.compare_exchange_strong(o, me, std::memory_order_acq_rel)) continue;
            h_->reclaimed.fetch_add(1, std::memory_order_relaxed);
            any = true;
            if (mine) {
                *mine = &p[i];
                return true;  // the caller stores its own slot over the dead one
            }
            p[i].slot.store(fformat::kNoSlot, std::memory_order_seq_cst);
            p[i].owner.store(0, std::memory_order_release);
        }
        return any;
    }

    // A pin entry of this process, or nullptr with err set (all held).
    fformat::PinEntry* claim_entry(ErrorInfo& err) {
        const uint64_t me = detail::os::self_owner();
        fformat::PinEntry* p = pins();
        const uint32_t n = info_.readers;
        // Start where this process's pid points, so that readers spread over the table.
        uint32_t start = uint32_t((me >> 32) % n);
        for (uint32_t k = 0; k < n; ++k) {
            fformat::PinEntry& e = p[(start + k) % n];
            uint64_t o = e.owner.load(std::memory_order_relaxed);
            if (o == 0 && e.owner.compare_exchange_strong(o, me, std::memory_order_acquire, std::memory_order_relaxed))
                return &e;
        }
        fformat::PinEntry* mine = nullptr;
        if (reclaim_dead(&mine)) return mine;
        std::string holders;
        for (uint32_t i = 0; i < n; ++i) {
            uint64_t o = p[i].owner.load(std::memory_order_relaxed);
            if (!o) continue;
            std::string pid = std::to_string(detail::os::owner_pid(o));
            if (holders.find(" " + pid + ",") == std::string::npos) holders += " " + pid + ",";
        }
        if (!holders.empty()) holders.pop_back();
        err.set(errc::invalid_argument, "latest() of frames '" + name_ + "': all " + std::to_string(n) +
                                            " pins are held (by pid" + holders + "): more frames held at once than readers=" +
                                            std::to_string(n) + "; release one, or create it with more readers");
        return nullptr;
    }

    // Under the writer lock, the loan filled: stamp, make it the latest (W1), unlock, wake.
    void publish(uint32_t slot, uint64_t version) {
        fformat::SlotHeader* sh = slot_header(slot);
        const uint64_t me = detail::os::self_owner();
        sh->version.store(version, std::memory_order_relaxed);
        sh->writer.store(me, std::memory_order_relaxed);
        sh->commit_ns.store(detail::os::monotonic_ns(), std::memory_order_relaxed);
        h_->latest.exchange((version << fformat::kSlotBits) | slot, std::memory_order_seq_cst);  // W1
        h_->last_writer.store(me, std::memory_order_relaxed);
        detail::unlock_writer(h_->lock_owner);
        // Ordered after the commit's seq_cst RMW: see wait.hpp.
        uint32_t w = h_->waiters.load(std::memory_order_seq_cst);
        if (w) detail::os::unpark_all(futex_word(), w, wake_);
    }

    std::string name_;
    detail::os::SegmentFile file_;
    std::shared_ptr<detail::os::Mapping> map_;
    fformat::Info info_;
    fformat::Header* h_ = nullptr;
    mutable detail::os::WakeChannel wake_;
    std::vector<uint8_t> pinned_;   // scratch of pick_free, used under the writer lock only
    uint32_t next_slot_ = 1;        // writer side: where the next free-slot search starts
    uint64_t next_reclaim_ns_ = 0;  // writer side: when dead pins may next be looked for
    bool closed_ = true;
    bool managed_ = false;
};

}  // namespace sharedstate
