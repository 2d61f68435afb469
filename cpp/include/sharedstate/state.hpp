// SharedBlock: a named seqlock segment with a self-described layout (untyped bytes), and
// SharedState<T>: the same for a trivially copyable T described by SHAREDSTATE_DESCRIBE.
#pragma once
#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "detail/lifetime.hpp"
#include "detail/os.hpp"
#include "detail/wait_source.hpp"
#include "format.hpp"
#include "layout.hpp"
#include "seqlock.hpp"
#include "wait.hpp"
#include "writer_lock.hpp"

namespace sharedstate {

struct CreateOptions {
    bool exist_ok = false;    // open the existing segment instead of failing (its layout must match)
    bool persistent = false;  // outlive the last holder (Linux; Windows sections never do)
    std::string source_key;   // non-empty: the state mirrors this remote key (bridge): FORMAT.md "Mirrors"
};

inline constexpr std::chrono::seconds kDefaultLockTimeout{5};

class SharedBlock {
public:
    using Patch = detail::Patch;

    SharedBlock() = default;
    SharedBlock(SharedBlock&&) noexcept = default;
    SharedBlock& operator=(SharedBlock&& o) noexcept {
        if (this != &o) { close(); move_from(o); }
        return *this;
    }
    ~SharedBlock() { close(); }

    // Creates the segment NAME with this layout (FileExistsError-style errc if it exists and
    // is in use; a stale one whose holders all died is replaced).
    static SharedBlock create(const std::string& name, const Layout& layout, CreateOptions opt = {}) {
        ErrorInfo err;
        SharedBlock b = create(name, layout, opt, err);
        if (err) fail(err);
        return b;
    }
    // The error-code form (error.hpp): on failure a closed block and err set.
    static SharedBlock create(const std::string& name, const Layout& layout, CreateOptions opt, ErrorInfo& err) noexcept {
        err.clear();
        if (!layout.validate(name, err)) return failed();
        const bool mirror = !opt.source_key.empty();
        if (opt.source_key.size() > format::kMaxSourceKey ||
            (mirror && !format::valid_field_name(opt.source_key.data(), opt.source_key.size()))) {
            err.set(errc::invalid_argument, "segment '" + name + "': source key must be 1.." +
                                                std::to_string(format::kMaxSourceKey) + " bytes of UTF-8");
            return failed();
        }
        auto g = format::state_geometry(layout, mirror);
        for (int attempt = 0;; ++attempt) {
            detail::os::SegmentFile file = detail::os::SegmentFile::create(name, g.segment_size, true, err);
            if (err) {
                if (!detail::os::is_exists_error(err.code) || attempt > 3) return failed();
                if (opt.exist_ok) return open(name, &layout, err);
                if (!remove_if_stale(name)) return failed();
                err.clear();
                continue;
            }
            SharedBlock b;
            b.name_ = name;
            b.map_ = file.map(g.segment_size, true, err);
            if (err) return failed();
            b.file_ = std::move(file);
            unsigned char* base = b.map_->data();
            auto* h = reinterpret_cast<format::StateHeader*>(base);
            format::Preamble& p = h->pre;
            p.version = format::kVersion;
            p.kind = format::kState;
            p.header_size = g.header_size;
            p.segment_size = g.segment_size;
            p.payload_size = layout.size;
            p.payload_align = layout.align;
            p.slot_stride = g.slot_stride;
            p.field_count = uint32_t(layout.fields.size());
            p.fields_offset = format::kFieldsOffset;
            p.flags = (opt.persistent ? format::kFlagPersistent : 0) | (mirror ? format::kFlagMirror : 0);
            p.creator_pid = detail::os::current_pid();
            p.created_unix_ns = uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                             std::chrono::system_clock::now().time_since_epoch()).count());
            format::write_field_table(base, layout);
            if (mirror) {
                auto* r = reinterpret_cast<format::SourceRecord*>(base + format::source_offset(p.field_count));
                r->key_len = uint32_t(opt.source_key.size());
                std::memcpy(r->key, opt.source_key.data(), opt.source_key.size());
                r->key_checksum = format::fnv1a(reinterpret_cast<const unsigned char*>(r->key), r->key_len);
            }
            p.checksum = format::header_checksum(base, p.field_count);
            // Publish: an opener that sees the magic (acquire) sees everything above.
            p.magic.store(format::kStateMagic, std::memory_order_release);
            format::StateInfo info;
            if (!format::validate_state(base, g.segment_size, name, info, err) || !b.attach(std::move(info), err))
                return failed();
            return b;
        }
    }

    // Opens an existing segment; its layout comes from the header. With `expected`, a
    // different layout is errc::layout_mismatch.
    static SharedBlock open(const std::string& name, const Layout* expected = nullptr) {
        ErrorInfo err;
        SharedBlock b = open(name, expected, err);
        if (err) fail(err);
        return b;
    }
    // The error-code forms (error.hpp): on failure a closed block and err set.
    static SharedBlock open(const std::string& name, ErrorInfo& err) noexcept { return open(name, nullptr, err); }
    static SharedBlock open(const std::string& name, const Layout* expected, ErrorInfo& err) noexcept {
        err.clear();
        bool others = true;
        auto file = detail::os::SegmentFile::open(name, true, true, others, err);
        if (err) return failed();
        SharedBlock b;
        b.name_ = name;
        // A creator may be between shm_open and publishing the magic: give it a moment.
        uint64_t size = file.size(err);
        auto waited = detail::Deadline::after(others ? 1000000000 : 0);
        while (!err && size < sizeof(format::StateHeader) && detail::nap(waited)) size = file.size(err);
        if (err) return failed();
        if (size < sizeof(format::StateHeader)) {
            err.set(errc::corrupt_segment, "segment '" + name + "': truncated (" + std::to_string(size) +
                                               " bytes, a header needs 256); not made by sharedstate? (attach_raw reads those)");
            return failed();
        }
        b.map_ = file.map(size, true, err);
        if (err) return failed();
        b.file_ = std::move(file);
        auto* h = reinterpret_cast<format::StateHeader*>(b.map_->data());
        while (h->pre.magic.load(std::memory_order_acquire) == 0 && detail::nap(waited)) {}
        format::StateInfo info;
        if (!format::validate_state(b.map_->data(), size, name, info, err)) return failed();
        if (!others && !(info.flags & format::kFlagPersistent)) {
            // Every process that held it has exited: it is stale, as on Windows it would be gone.
            b.map_.reset();
            b.file_.close(true);
            err.set(errc::not_found, "segment '" + name + "' was left behind by processes that have all exited; removed");
            return failed();
        }
        if (expected && *expected != info.layout) {
            err.set(errc::layout_mismatch, "segment '" + name + "': " + describe_mismatch(*expected, info.layout));
            return failed();
        }
        if (!b.attach(std::move(info), err)) return failed();
        return b;
    }

    // Maps an existing segment with no header at all (what an unmodified C++ program, or
    // multiprocessing.shared_memory, creates): payload at offset 0. No seqlock is possible
    // there: reads and writes are best-effort and may tear. Never unlinked unless asked.
    static SharedBlock attach_raw(const std::string& name, const Layout& layout, bool create = false) {
        layout.validate(name);
        bool others = true;
        detail::os::SegmentFile file = create ? detail::os::SegmentFile::create(name, layout.size, false)
                                              : detail::os::SegmentFile::open(name, true, false, others);
        uint64_t size = file.size();
        if (size < layout.size)
            fail(errc::layout_mismatch, "raw segment '" + name + "' has " + std::to_string(size) +
                                            " bytes, the layout needs " + std::to_string(layout.size));
        SharedBlock b;
        b.name_ = name;
        b.map_ = file.map(layout.size, true);
        b.file_ = std::move(file);
        b.raw_ = true;
        b.info_.layout = layout;
        b.data_ = b.map_->data();
        return b;
    }

    // Removes a stale segment NAME (holders all dead, not persistent). True if removed.
    static bool remove_if_stale(const std::string& name) { return detail::remove_stale_segment(name); }

    static void unlink(const std::string& name) { detail::os::SegmentFile::unlink(name); }

    // ------------------------------------------------------------ reading
    // A consistent copy of the whole payload into dst (layout().size bytes).
    void read(void* dst) const { read_range(dst, 0, info_.layout.size); }

    void read_range(void* dst, size_t off, size_t len) const {
        check_open();
        if (raw_) return raw_read(dst, off, len);
        if (!latch_.read(dst, off, len))
            fail(errc::timeout, "read of '" + name_ + "': no consistent snapshot after 1M tries (writer storm?)");
    }

    uint64_t version() const {
        check_open();
        if (raw_) fail(errc::invalid_argument, "raw segment '" + name_ + "' has no version (no header)");
        return header()->seq.load(std::memory_order_acquire) >> 1;
    }

    // Blocks until version() > since; returns the new version. Throws errc::timeout.
    // timeout < 0: forever.
    uint64_t wait(uint64_t since, std::chrono::nanoseconds timeout, std::chrono::nanoseconds spin = kDefaultSpin,
                  const Interrupt& intr = {}) {
        check_open();
        if (raw_) fail(errc::invalid_argument, "raw segment '" + name_ + "' has no version to wait on");
        auto keep = map_;  // the mapping outlives this call whatever another thread does
        auto* h = header();
        uint64_t v = 0;
        auto done = [&] { return (v = h->seq.load(std::memory_order_acquire) >> 1) > since; };
        if (!detail::wait_until(futex_word(), h->waiters, wake_, done, detail::Deadline::after(timeout.count()),
                                uint64_t(spin.count()), intr))
            fail(errc::timeout, "wait on '" + name_ + "': no write after version " + std::to_string(since));
        return v;
    }

    // What a WaitSet needs to wait on this segment (detail/wait_source.hpp): its version.
    detail::WaitSource wait_source() const {
        check_open();
        if (raw_) fail(errc::invalid_argument, "raw segment '" + name_ + "' has no version to wait on");
        auto* h = header();
        return detail::version_source(this, "state '" + name_ + "'", futex_word(), &h->waiters, wake_, map_,
                                      [h] { return h->seq.load(std::memory_order_seq_cst) >> 1; });
    }

    // ------------------------------------------------------------ writing
    // One atomic update made of byte patches (fields not covered keep their value).
    // lock_timeout 0: return false at once if another writer holds the lock.
    bool write_patches(const Patch* patches, size_t n, std::chrono::nanoseconds lock_timeout = kDefaultLockTimeout,
                       const Interrupt& intr = {}) {
        check_open();
        for (size_t i = 0; i < n; ++i)
            if (uint64_t(patches[i].offset) + patches[i].size > info_.layout.size)
                fail(errc::invalid_argument, "write to '" + name_ + "': patch past the payload");
        if (raw_) {
            for (size_t i = 0; i < n; ++i) raw_write(patches[i]);
            return true;
        }
        if (!lock(lock_timeout, intr)) return false;
        latch_.write(patches, n);
        unlock_and_wake();
        return true;
    }

    void write(const void* src) {
        Patch p{0, info_.layout.size, static_cast<const unsigned char*>(src)};
        write_patches(&p, 1);
    }

    // Read-modify-write under the writer lock: fn(unsigned char* payload_copy).
    template <class Fn>
    void update_bytes(Fn&& fn, std::chrono::nanoseconds lock_timeout = kDefaultLockTimeout) {
        check_open();
        std::vector<unsigned char> buf(info_.layout.size);
        if (raw_) {
            raw_read(buf.data(), 0, buf.size());
            fn(buf.data());
            raw_write(Patch{0, uint32_t(buf.size()), buf.data()});
            return;
        }
        lock(lock_timeout, {});
        struct Unlock { SharedBlock* b; bool armed = true; ~Unlock() { if (armed) detail::unlock_writer(b->header()->lock_owner); } } guard{this};
        detail::load_range(buf.data(), latch_.stable_locked(), 0, buf.size());
        fn(buf.data());
        Patch p{0, uint32_t(buf.size()), buf.data()};
        latch_.write(&p, 1);
        guard.armed = false;
        unlock_and_wake();
    }

    // ------------------------------------------------------------ mirrors (bridge)
    // A mirror's remote key ("" if this state is not a mirror), and its source's liveness as
    // the importer last recorded it: bit 0 alive, (status >> 1) the number of changes.
    const std::string& source_key() const noexcept { return info_.source_key; }
    uint64_t source_status() const {
        check_open();
        return source() ? source()->status.load(std::memory_order_acquire) : 0;
    }
    // Records the source's liveness and commits an empty write, so that the version moves and
    // every waiter wakes to see the change (the payload is unchanged).
    void set_source_alive(bool alive, std::chrono::nanoseconds lock_timeout = kDefaultLockTimeout) {
        check_open();
        if (!source()) fail(errc::invalid_argument, "'" + name_ + "' is not a mirror");
        if (!lock(lock_timeout, Interrupt{}))
            fail(errc::timeout, "'" + name_ + "': writer lock busy");
        uint64_t s = source()->status.load(std::memory_order_relaxed);
        if (bool(s & 1) != alive) {
            source()->status.store(((s >> 1) + 1) << 1 | uint64_t(alive), std::memory_order_release);
            latch_.write(nullptr, 0);
        }
        unlock_and_wake();
    }

    // ------------------------------------------------------------ the error-code forms
    // The same calls, reporting failures in err instead of throwing (error.hpp).
    bool read(void* dst, ErrorInfo& err) const noexcept { return read_range(dst, 0, info_.layout.size, err); }
    bool read_range(void* dst, size_t off, size_t len, ErrorInfo& err) const noexcept {
        err.clear();
        if (!check_open(err)) return false;
        if (raw_) { raw_read(dst, off, len); return true; }
        if (!latch_.read(dst, off, len))
            return err.set(errc::timeout, "read of '" + name_ + "': no consistent snapshot after 1M tries (writer storm?)");
        return true;
    }
    uint64_t version(ErrorInfo& err) const noexcept {
        err.clear();
        if (!check_open(err)) return 0;
        if (raw_) { err.set(errc::invalid_argument, "raw segment '" + name_ + "' has no version (no header)"); return 0; }
        return header()->seq.load(std::memory_order_acquire) >> 1;
    }
    // The new version, or 0 with err set (errc::timeout, closed...). timeout < 0: forever.
    uint64_t wait(uint64_t since, std::chrono::nanoseconds timeout, ErrorInfo& err) noexcept {
        err.clear();
        if (!check_open(err)) return 0;
        if (raw_) { err.set(errc::invalid_argument, "raw segment '" + name_ + "' has no version to wait on"); return 0; }
        auto keep = map_;
        auto* h = header();
        uint64_t v = 0;
        auto done = [&] { return (v = h->seq.load(std::memory_order_acquire) >> 1) > since; };
        if (!detail::wait_until(futex_word(), h->waiters, wake_, done, detail::Deadline::after(timeout.count()),
                                uint64_t(kDefaultSpin.count()), Interrupt{})) {
            err.set(errc::timeout, "wait on '" + name_ + "': no write after version " + std::to_string(since));
            return 0;
        }
        return v;
    }
    // True when written. False with err set: errc::would_block (lock_timeout 0 and another
    // writer holds the lock), errc::timeout (it held it for all of lock_timeout), closed...
    bool write_patches(const Patch* patches, size_t n, std::chrono::nanoseconds lock_timeout, ErrorInfo& err) noexcept {
        err.clear();
        if (!check_open(err)) return false;
        for (size_t i = 0; i < n; ++i)
            if (uint64_t(patches[i].offset) + patches[i].size > info_.layout.size)
                return err.set(errc::invalid_argument, "write to '" + name_ + "': patch past the payload");
        if (raw_) {
            for (size_t i = 0; i < n; ++i) raw_write(patches[i]);
            return true;
        }
        if (!lock(lock_timeout, err)) return false;
        latch_.write(patches, n);
        unlock_and_wake();
        return true;
    }
    bool write(const void* src, ErrorInfo& err) noexcept { return write(src, kDefaultLockTimeout, err); }
    bool write(const void* src, std::chrono::nanoseconds lock_timeout, ErrorInfo& err) noexcept {
        Patch p{0, info_.layout.size, static_cast<const unsigned char*>(src)};
        return write_patches(&p, 1, lock_timeout, err);
    }
    // fn(unsigned char* payload_copy) under the writer lock; false with err set as write's.
    template <class Fn>
    bool update_bytes(Fn&& fn, std::chrono::nanoseconds lock_timeout, ErrorInfo& err) noexcept(noexcept(fn(nullptr))) {
        err.clear();
        if (!check_open(err)) return false;
        std::vector<unsigned char> buf(info_.layout.size);
        if (raw_) {
            raw_read(buf.data(), 0, buf.size());
            fn(buf.data());
            raw_write(Patch{0, uint32_t(buf.size()), buf.data()});
            return true;
        }
        if (!lock(lock_timeout, err)) return false;
        struct Unlock { SharedBlock* b; bool armed = true; ~Unlock() { if (armed) detail::unlock_writer(b->header()->lock_owner); } } guard{this};
        detail::load_range(buf.data(), latch_.stable_locked(), 0, buf.size());
        fn(buf.data());
        Patch p{0, uint32_t(buf.size()), buf.data()};
        latch_.write(&p, 1);
        guard.armed = false;
        unlock_and_wake();
        return true;
    }

    // ------------------------------------------------------------ lifetime and facts
    // Drops this holder; on Linux the last holder of a non-persistent segment removes it.
    // Zero-copy views (mapping()) stay valid: they keep the mapping alive.
    void close() noexcept {
        if (closed_) return;
        closed_ = true;
        latch_ = detail::Latch();  // SharedState<T>::read()'s only check (see there)
        map_.reset();
        // Only a segment we validated as ours is ever removed: a foreign or corrupt object
        // that failed open() is left exactly as it was found.
        file_.close(managed_ && !(info_.flags & format::kFlagPersistent));  // never throws
    }
    bool closed() const noexcept { return closed_; }

    const std::string& name() const noexcept { return name_; }
    const Layout& layout() const noexcept { return info_.layout; }
    const format::StateInfo& info() const noexcept { return info_; }
    bool raw() const noexcept { return raw_; }
    bool persistent() const noexcept { return info_.flags & format::kFlagPersistent; }
    uint64_t lock_owner() const { return raw_ ? 0 : header()->lock_owner.load(std::memory_order_relaxed); }
    uint64_t last_writer() const { return raw_ ? 0 : header()->last_writer.load(std::memory_order_relaxed); }
    uint64_t recoveries() const { return raw_ ? 0 : header()->recoveries.load(std::memory_order_relaxed); }
    uint32_t waiters() const { return raw_ ? 0 : header()->waiters.load(std::memory_order_relaxed); }

    // The live payload (copy 0: the newest committed value once no write is in flight).
    // Unsynchronized; hold `mapping()` as long as the pointer is used.
    unsigned char* data() const { check_open(); return data_; }
    const std::shared_ptr<detail::os::Mapping>& mapping() const { check_open(); return map_; }

    // For the fast paths: the latch itself (no checks, the caller did them). A raw, closed or
    // moved-from block has an empty latch (ready() false).
    const detail::Latch& latch() const noexcept { return latch_; }

private:
    static std::string describe_mismatch(const Layout& want, const Layout& have) {
        if (want.size != have.size)
            return "payload is " + std::to_string(have.size) + " bytes, expected " + std::to_string(want.size);
        if (want.fields.size() != have.fields.size())
            return std::to_string(have.fields.size()) + " fields, expected " + std::to_string(want.fields.size());
        for (size_t i = 0; i < want.fields.size(); ++i) {
            const Field& a = want.fields[i];
            const Field& b = have.fields[i];
            if (a != b)
                return "field " + std::to_string(i) + " is '" + b.name + "' (" + char(b.kind) + std::to_string(b.itemsize) +
                       " x" + std::to_string(b.count) + " at " + std::to_string(b.offset) + "), expected '" + a.name + "' (" +
                       char(a.kind) + std::to_string(a.itemsize) + " x" + std::to_string(a.count) + " at " +
                       std::to_string(a.offset) + ")";
        }
        return "layouts differ";
    }

    bool attach(format::StateInfo info, ErrorInfo& err) {
        info_ = std::move(info);
        unsigned char* base = map_->data();
        data_ = base + info_.header_size;
        latch_ = detail::Latch(header(), data_, info_.slot_stride, info_.layout.size);
        if (!wake_.open(name_, 0, err)) return false;
        managed_ = true;
        return true;
    }
    // What a failed error-code create/open returns: closed, holding nothing.
    static SharedBlock failed() noexcept {
        SharedBlock b;
        b.closed_ = true;
        return b;
    }
    bool check_open(ErrorInfo& err) const {
        if (closed_ || !map_) return err.set(errc::closed, "'" + name_ + "' is closed");
        return true;
    }
    void move_from(SharedBlock& o) {
        name_ = std::move(o.name_); file_ = std::move(o.file_); map_ = std::move(o.map_);
        info_ = std::move(o.info_); latch_ = o.latch_; data_ = o.data_; wake_ = std::move(o.wake_);
        raw_ = o.raw_; closed_ = o.closed_; managed_ = o.managed_;
        o.closed_ = true;
        o.latch_ = detail::Latch();
    }
    void check_open() const {
        if (closed_ || !map_) fail(errc::closed, "'" + name_ + "' is closed");
    }
    format::StateHeader* header() const { return reinterpret_cast<format::StateHeader*>(map_->data()); }
    format::SourceRecord* source() const {
        return info_.source_offset ? reinterpret_cast<format::SourceRecord*>(map_->data() + info_.source_offset) : nullptr;
    }
    // The futex word: the low half of the little-endian 64-bit sequence.
    const std::atomic<uint32_t>* futex_word() const {
        return reinterpret_cast<const std::atomic<uint32_t>*>(&header()->seq);
    }

    bool lock(std::chrono::nanoseconds timeout, const Interrupt& intr) {
        auto r = detail::lock_writer(header()->lock_owner, name_, timeout.count(), intr);
        if (r == detail::LockResult::busy) return false;
        if (r == detail::LockResult::recovered) {
            latch_.repair();
            header()->recoveries.fetch_add(1, std::memory_order_relaxed);
        }
        return true;
    }
    // The error-code lock: false with err set (would_block when timeout is 0, else timeout).
    bool lock(std::chrono::nanoseconds timeout, ErrorInfo& err) {
        auto r = detail::lock_writer(header()->lock_owner, name_, timeout.count(), Interrupt{}, &err);
        if (r == detail::LockResult::timed_out) return false;
        if (r == detail::LockResult::busy)
            return err.set(errc::would_block, "write lock of '" + name_ + "' is held by pid " +
                                                  std::to_string(detail::os::owner_pid(lock_owner())) + ": busy");
        if (r == detail::LockResult::recovered) {
            latch_.repair();
            header()->recoveries.fetch_add(1, std::memory_order_relaxed);
        }
        return true;
    }
    void unlock_and_wake() {
        auto* h = header();
        h->last_writer.store(detail::os::self_owner(), std::memory_order_relaxed);
        detail::unlock_writer(h->lock_owner);
        // Ordered after the commit's seq_cst RMW: see wait.hpp.
        uint32_t w = h->waiters.load(std::memory_order_seq_cst);
        if (w) detail::os::unpark_all(futex_word(), w, wake_);
    }

    // Raw segments: best-effort. Re-read until two copies agree (fewer torn reads, no promise).
    void raw_read(void* dst, size_t off, size_t len) const {
        auto* out = static_cast<unsigned char*>(dst);
        std::vector<unsigned char> again(len);
        for (int i = 0; i < 16; ++i) {
            raw_copy_out(out, off, len);
            raw_copy_out(again.data(), off, len);
            if (std::memcmp(out, again.data(), len) == 0) return;
        }
    }
    void raw_copy_out(unsigned char* out, size_t off, size_t len) const {
        // Relaxed atomics (another process writes without any protocol): whole aligned
        // words where they lie inside the payload, which keeps each copy short, and single
        // bytes at the ends (the payload may end mid-word; its mapping is page-aligned).
        size_t i = 0;
        for (; i < len && ((off + i) % 8 || len - i < 8); ++i)
            out[i] = reinterpret_cast<const std::atomic<unsigned char>*>(data_ + off + i)->load(std::memory_order_relaxed);
        for (; len - i >= 8; i += 8) {
            uint64_t w = reinterpret_cast<const std::atomic<uint64_t>*>(data_ + off + i)->load(std::memory_order_relaxed);
            std::memcpy(out + i, &w, 8);
        }
        for (; i < len; ++i)
            out[i] = reinterpret_cast<const std::atomic<unsigned char>*>(data_ + off + i)->load(std::memory_order_relaxed);
    }
    void raw_write(const Patch& p) {
        for (size_t i = 0; i < p.size; ++i)
            reinterpret_cast<std::atomic<unsigned char>*>(data_ + p.offset + i)->store(p.data[i], std::memory_order_relaxed);
    }

    std::string name_;
    detail::os::SegmentFile file_;
    std::shared_ptr<detail::os::Mapping> map_;
    format::StateInfo info_;
    detail::Latch latch_;
    unsigned char* data_ = nullptr;
    mutable detail::os::WakeChannel wake_;
    bool raw_ = false;
    bool closed_ = false;
    bool managed_ = false;  // a validated sharedstate segment: its lifetime is ours to manage
};

// Typed state: T is trivially copyable and described by SHAREDSTATE_DESCRIBE(T, ...).
template <class T>
class SharedState {
    static_assert(std::is_trivially_copyable<T>::value, "SharedState<T> needs a trivially copyable T");

public:
    static const Layout& layout() { return sharedstate_layout_of(static_cast<const T*>(nullptr)); }

    static SharedState create(const std::string& name, CreateOptions opt = {}) {
        return SharedState(SharedBlock::create(name, layout(), opt));
    }
    static SharedState open(const std::string& name) { return SharedState(SharedBlock::open(name, &layout())); }
    // The error-code forms (error.hpp): on failure a closed state and err set
    // (FileExists / not found as err.exists() / err.not_found(), errc::layout_mismatch,
    // errc::corrupt_segment, errc::wrong_kind, the OS error...).
    static SharedState create(const std::string& name, CreateOptions opt, ErrorInfo& err) noexcept {
        return SharedState(SharedBlock::create(name, layout(), opt, err));
    }
    static SharedState create(const std::string& name, ErrorInfo& err) noexcept { return create(name, CreateOptions{}, err); }
    static SharedState open(const std::string& name, ErrorInfo& err) noexcept {
        return SharedState(SharedBlock::open(name, &layout(), err));
    }
    // A consistent copy into out; false with err set (errc::closed, errc::timeout).
    bool read(T& out, ErrorInfo& err) const noexcept {
        if (block_.latch().template read_fixed<sizeof(T)>(&out)) {  // see read() below
            err.clear();
            return true;
        }
        return block_.read(&out, err);
    }
    // False with err set: errc::timeout (the writer lock stayed held for lock_timeout),
    // errc::would_block (lock_timeout 0 and the lock is held), errc::closed...
    bool write(const T& v, ErrorInfo& err) noexcept { return block_.write(&v, err); }
    bool write(const T& v, std::chrono::nanoseconds lock_timeout, ErrorInfo& err) noexcept {
        return block_.write(&v, lock_timeout, err);
    }
    template <class Fn>
    bool update(Fn&& fn, ErrorInfo& err) noexcept(noexcept(fn(std::declval<T&>()))) {
        return update(std::forward<Fn>(fn), kDefaultLockTimeout, err);
    }
    template <class Fn>
    bool update(Fn&& fn, std::chrono::nanoseconds lock_timeout, ErrorInfo& err) noexcept(noexcept(fn(std::declval<T&>()))) {
        return block_.update_bytes([&](unsigned char* p) noexcept(noexcept(fn(std::declval<T&>()))) {
            T v;
            std::memcpy(&v, p, sizeof v);
            fn(v);
            std::memcpy(p, &v, sizeof v);
        }, lock_timeout, err);
    }
    uint64_t version(ErrorInfo& err) const noexcept { return block_.version(err); }
    // The new version, or 0 with err set (errc::timeout...). timeout < 0: forever.
    template <class Rep, class Period>
    uint64_t wait(uint64_t since, std::chrono::duration<Rep, Period> timeout, ErrorInfo& err) noexcept {
        return block_.wait(since, std::chrono::duration_cast<std::chrono::nanoseconds>(timeout), err);
    }
    bool closed() const noexcept { return block_.closed(); }

    // The fast path is the latch alone: read_fixed fails at once on an empty latch (raw,
    // closed or moved-from block), and the payload size was checked when the block was
    // opened (open() compares the whole layout; create() writes this one).
    T read() const {
        T v;
        read(v);
        return v;
    }
    // The same into the caller's T (for a large T: no copy on the stack, one copy in all).
    void read(T& out) const {
        if (!block_.latch().template read_fixed<sizeof(T)>(&out))
            block_.read(&out);  // the general path: raw segments, errors, writer storms
    }
    void write(const T& v) { block_.write(&v); }
    // fn(T&) under the writer lock, starting from the current value.
    template <class Fn>
    void update(Fn&& fn) {
        block_.update_bytes([&](unsigned char* p) {
            T v;
            std::memcpy(&v, p, sizeof v);
            fn(v);
            std::memcpy(p, &v, sizeof v);
        });
    }
    uint64_t version() const { return block_.version(); }
    template <class Rep, class Period>
    uint64_t wait(uint64_t since, std::chrono::duration<Rep, Period> timeout) {
        return block_.wait(since, std::chrono::duration_cast<std::chrono::nanoseconds>(timeout));
    }
    uint64_t wait(uint64_t since) { return block_.wait(since, std::chrono::nanoseconds(-1)); }
    void close() noexcept { block_.close(); }
    static void unlink(const std::string& name) { SharedBlock::unlink(name); }

    detail::WaitSource wait_source() const { return block_.wait_source(); }
    SharedBlock& block() noexcept { return block_; }
    const SharedBlock& block() const noexcept { return block_; }

private:
    explicit SharedState(SharedBlock b) : block_(std::move(b)) {}
    SharedBlock block_;
};

}  // namespace sharedstate
