// Looking at a segment without taking part in it: the read-only "peek" open that tools
// (the `sharedstate` command line, debuggers, dashboards) use to describe any sharedstate
// object by name.
//
// A Peek maps the object read-only and takes no holder lock, so looking never keeps a
// segment alive, never removes one, and never blocks a last closer (on Linux no flock is
// taken at all; holders are read from /proc/locks). On Windows a named section exists only
// while some handle is open, so a Peek opens it like any reader and holds it while it runs.
//
// What it shows is validated with the same code open() uses (format::validate_state,
// qformat::validate) and the payload is read with the segment's own latch (seqlock.hpp),
// so it is never torn. Nothing unvalidated is reported: a header that fails validation
// gives `problem` (the reason) and no facts.
//
// Kinds are recognised by their magic through one table (kinds()): a new kind adds its
// magic, its name and one describe function there, nothing else.
//
// Caveat (docs/threat-model.md): like every reader, a Peek maps the object; a process that
// ftruncate()s it smaller while it is being described makes the access fault (SIGBUS).
#pragma once
#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "detail/os.hpp"
#include "error.hpp"
#include "format.hpp"
#include "frames_format.hpp"
#include "layout.hpp"
#include "queue.hpp"
#include "seqlock.hpp"

namespace sharedstate {
namespace inspect {

// A process recorded in an owner word (pid << 32 | start token): its pid, and whether it is
// still that same process (os::owner_alive). pid 0: nobody.
struct Owner {
    uint32_t pid = 0;
    bool alive = false;
};

// One kind-specific fact, in the order a tool should show it: a number, an owner, or text
// (e.g. a shape or an element type a tool shows as is).
struct Fact {
    enum Type { number, owner, text };
    std::string key;
    Type type = number;
    uint64_t value = 0;  // number
    Owner who;           // owner (who.pid == 0: none)
    std::string str;     // text
};

struct PeekOptions {
    bool payload = true;         // copy a state's payload (a consistent snapshot)
    uint32_t max_tries = 1000;   // latch reads before giving up on a writer storm
};

struct Description {
    std::string name;
    std::string kind = "other";   // "state", "queue", ... (kinds()), or "other": no sharedstate magic
    uint64_t size = 0;            // bytes of the object as the OS reports them
    uint32_t mode = 0;            // permission bits (Linux; 0600 on Windows)
    std::string problem;          // empty: valid. Else why validation failed (nothing below is set)

    // Holders. holders_known: the OS told us who (Linux /proc/locks): holder_pids is the list.
    bool holders_known = false;
    bool holders_alive = false;
    std::vector<uint32_t> holder_pids;

    std::vector<unsigned char> first_bytes;  // kind "other": up to 32 leading bytes

    // The immutable preamble every kind shares (set once the header validated).
    bool has_preamble = false;
    uint16_t format_version = 0;
    bool persistent = false;
    uint32_t creator_pid = 0;
    uint64_t created_unix_ns = 0;

    std::vector<Fact> facts;      // the kind's sizes, counters and owners

    bool has_layout = false;      // a self-described payload (states)
    Layout layout;
    bool has_version = false;     // committed writes (states)
    uint64_t version = 0;
    bool has_payload = false;     // a consistent copy of the payload (states, PeekOptions::payload)
    std::vector<unsigned char> payload;

    const Fact* fact(const std::string& key) const {
        for (const auto& f : facts) if (f.key == key) return &f;
        return nullptr;
    }
};

namespace detail {

inline void add(Description& d, const char* key, uint64_t v) {
    Fact f;
    f.key = key;
    f.value = v;
    d.facts.push_back(std::move(f));
}
inline void add_owner(Description& d, const char* key, uint64_t word) {
    Fact f;
    f.key = key;
    f.type = Fact::owner;
    if (word) {
        f.who.pid = sharedstate::detail::os::owner_pid(word);
        f.who.alive = sharedstate::detail::os::owner_alive(word);
    }
    d.facts.push_back(std::move(f));
}
inline void add_text(Description& d, const char* key, std::string text) {
    Fact f;
    f.key = key;
    f.type = Fact::text;
    f.str = std::move(text);
    d.facts.push_back(std::move(f));
}
inline void set_preamble(Description& d, uint16_t version, uint32_t flags, uint32_t creator, uint64_t created) {
    d.has_preamble = true;
    d.format_version = version;
    d.persistent = (flags & format::kFlagPersistent) != 0;
    d.creator_pid = creator;
    d.created_unix_ns = created;
}

// ---- state segments (format.hpp): the validation and the latch read of SharedBlock::open/read.
inline bool describe_state(const unsigned char* base, uint64_t mapped, const std::string& name,
                           const PeekOptions& opt, Description& d, ErrorInfo& err) {
    format::StateInfo info;
    if (!format::validate_state(base, mapped, name, info, err)) return false;
    // The mapping is read-only: the latch only loads (a store would fault, none is made).
    auto* h = const_cast<format::StateHeader*>(reinterpret_cast<const format::StateHeader*>(base));
    set_preamble(d, format::kVersion, info.flags, info.creator_pid, info.created_unix_ns);
    add(d, "header_size", info.header_size);
    add(d, "payload_size", info.layout.size);
    add(d, "payload_align", info.layout.align);
    add(d, "slot_stride", info.slot_stride);
    add(d, "segment_size", info.segment_size);
    add_owner(d, "writer_lock", h->lock_owner.load(std::memory_order_relaxed));
    add_owner(d, "last_writer", h->last_writer.load(std::memory_order_relaxed));
    add(d, "recoveries", h->recoveries.load(std::memory_order_relaxed));
    add(d, "waiters", h->waiters.load(std::memory_order_relaxed));
    if (!info.source_key.empty()) {  // a bridge's mirror (FORMAT.md "Mirrors")
        const auto* r = reinterpret_cast<const format::SourceRecord*>(base + info.source_offset);
        uint64_t st = r->status.load(std::memory_order_acquire);
        add_text(d, "source", info.source_key);
        add_text(d, "source_alive", (st & 1) ? "yes" : "no");
    }
    d.has_version = true;
    d.version = h->seq.load(std::memory_order_acquire) >> 1;
    if (opt.payload) {
        sharedstate::detail::Latch latch(h, const_cast<unsigned char*>(base) + info.header_size, info.slot_stride,
                                         info.layout.size);
        d.payload.resize(info.layout.size);
        uint64_t seq = 0;
        if (!latch.read(d.payload.data(), 0, d.payload.size(), &seq, opt.max_tries))
            return err.set(errc::corrupt_segment, "segment '" + name + "': no consistent read in " +
                                                      std::to_string(opt.max_tries) + " tries (a writer storming it?)");
        d.version = seq >> 1;
        d.has_payload = true;
    }
    d.layout = std::move(info.layout);
    d.has_layout = true;
    return true;
}

// ---- queue segments (queue.hpp): the validation of Queue::open, the counters Queue reports.
inline bool describe_queue(const unsigned char* base, uint64_t mapped, const std::string& name,
                           const PeekOptions&, Description& d, ErrorInfo& err) {
    qformat::Info info;
    if (!qformat::validate(base, mapped, name, info, err)) return false;
    const auto* h = reinterpret_cast<const qformat::Header*>(base);
    set_preamble(d, qformat::kVersion, info.flags, info.creator_pid, info.created_unix_ns);
    uint64_t gets = h->gets.load(std::memory_order_acquire), puts = h->puts.load(std::memory_order_acquire);
    uint64_t head = h->head.load(std::memory_order_acquire), tail = h->tail.load(std::memory_order_acquire);
    add(d, "header_size", qformat::kHeaderSize);
    add(d, "segment_size", info.segment_size);
    add(d, "capacity", info.capacity);
    add(d, "max_message", info.max_message);
    add(d, "pending", puts > gets ? puts - gets : 0);
    add(d, "used_bytes", tail >= head ? tail - head : 0);
    add(d, "puts", puts);
    add(d, "gets", gets);
    add(d, "skipped", h->skipped.load(std::memory_order_relaxed));
    add(d, "recoveries", h->recoveries.load(std::memory_order_relaxed));
    add(d, "waiters", uint64_t(h->data_waiters.load(std::memory_order_relaxed)) +
                          h->space_waiters.load(std::memory_order_relaxed));
    add_owner(d, "consumer", h->consumer.load(std::memory_order_acquire));
    return true;
}

// ---- frames segments (frames_format.hpp): the validation of Frames::open, the facts Frames reports.
inline bool describe_frames(const unsigned char* base, uint64_t mapped, const std::string& name,
                            const PeekOptions&, Description& d, ErrorInfo& err) {
    fformat::Info info;
    if (!fformat::validate_frames(base, mapped, name, info, err)) return false;
    const auto* h = reinterpret_cast<const fformat::Header*>(base);
    set_preamble(d, fformat::kVersion, info.flags, info.creator_pid, info.created_unix_ns);
    std::string shape;
    for (uint32_t x : info.spec.shape) shape += (shape.empty() ? "" : "x") + std::to_string(x);
    std::string element;
    for (const Field& f : info.spec.element.fields)
        element += (element.empty() ? "" : ", ") + (info.spec.scalar ? std::string() : f.name + ":") + char(f.kind) +
                   std::to_string(f.itemsize) + (f.count > 1 ? "[" + std::to_string(f.count) + "]" : "");
    add_text(d, "shape", shape.empty() ? "()" : shape);
    add_text(d, "element", info.spec.scalar ? element : "{" + element + "}");
    add(d, "frame_bytes", info.frame_bytes);
    add(d, "readers", info.readers);
    add(d, "slots", info.slot_count);
    add(d, "header_size", info.header_size);
    add(d, "segment_size", info.segment_size);
    uint64_t pins = 0;
    const auto* p = reinterpret_cast<const fformat::PinEntry*>(base + info.pins_offset);
    for (uint32_t i = 0; i < info.readers; ++i)
        if (p[i].slot.load(std::memory_order_relaxed) < info.slot_count) ++pins;
    add(d, "pins_held", pins);
    add_owner(d, "writer_lock", h->lock_owner.load(std::memory_order_relaxed));
    add_owner(d, "last_writer", h->last_writer.load(std::memory_order_relaxed));
    add(d, "recoveries", h->recoveries.load(std::memory_order_relaxed));
    add(d, "reclaimed", h->reclaimed.load(std::memory_order_relaxed));
    add(d, "waiters", h->waiters.load(std::memory_order_relaxed));
    d.has_version = true;
    d.version = h->latest.load(std::memory_order_acquire) >> fformat::kSlotBits;
    return true;
}

}  // namespace detail

// A kind of sharedstate segment: its magic (the first 8 bytes, a little-endian u64), its
// name, and the function that validates it and fills a Description. On a bad header it
// returns false with `err` set as open()'s error-code form sets it (error.hpp's
// convention); the Peek reports the message as `problem`.
struct KindEntry {
    uint64_t magic;
    const char* kind;
    bool (*describe)(const unsigned char* base, uint64_t mapped, const std::string& name, const PeekOptions& opt,
                     Description& d, ErrorInfo& err);
};

// Every kind a Peek recognises. A new kind is one more line here.
inline const std::vector<KindEntry>& kinds() {
    static const std::vector<KindEntry> table = {
        {format::kStateMagic, "state", &detail::describe_state},
        {format::kQueueMagic, "queue", &detail::describe_queue},
        {format::kFramesMagic, "frames", &detail::describe_frames},
    };
    return table;
}

// The kind named by a magic word, or nullptr (not a sharedstate segment, or not yet initialized).
inline const KindEntry* kind_of_magic(uint64_t magic) {
    for (const auto& k : kinds()) if (k.magic == magic) return &k;
    return nullptr;
}

class Peek {
public:
    Peek() = default;

    // Opens NAME read-only without becoming a holder. OS errors (ENOENT, EACCES) and
    // errc::bad_name as the library's open() gives them; the ErrorInfo form returns false.
    static bool open(const std::string& name, Peek& out, ErrorInfo& err) {
        Peek p;
        p.name_ = name;
        bool others = true;
        p.file_ = sharedstate::detail::os::SegmentFile::open(name, false, false, others, err);
        if (err) return false;
        p.size_ = p.file_.size(err);
        if (err) return false;
        p.mode_ = p.file_.mode();
        if (p.size_ > 0) {
            p.map_ = p.file_.map(p.size_, false, err);
            if (err) return false;
        }
        out = std::move(p);
        return true;
    }
    static Peek open(const std::string& name) {
        Peek p;
        ErrorInfo err;
        if (!open(name, p, err)) fail(err);
        return p;
    }

    const std::string& name() const noexcept { return name_; }
    uint64_t size() const noexcept { return size_; }

    // Does NAME still name the object this Peek opened? (false once it was removed or
    // replaced; always true on Windows, where a held object cannot go away).
    bool still_named() const { return file_.still_named(); }

    // Describes the object. Never fails for what the bytes say: that is `problem`.
    Description describe(const PeekOptions& opt = {}) const {
        Description d;
        d.name = name_;
        d.size = size_;
        d.mode = mode_;
        d.holders_known = file_.holders(d.holder_pids);
        d.holders_alive = d.holders_known ? !d.holder_pids.empty()
                                          : sharedstate::detail::os::SegmentFile::held(name_);
        const unsigned char* base = map_ ? map_->data() : nullptr;
        const KindEntry* k = nullptr;
        if (size_ >= 8) k = kind_of_magic(reinterpret_cast<const std::atomic<uint64_t>*>(base)->load(std::memory_order_acquire));
        if (!k) {
            size_t n = size_t((std::min)(size_, uint64_t(32)));
            d.first_bytes.assign(base, base + n);
            return d;
        }
        d.kind = k->kind;
        ErrorInfo err;
        if (!k->describe(base, size_, name_, opt, d, err)) {
            Description bad;
            bad.name = d.name;
            bad.kind = d.kind;
            bad.size = d.size;
            bad.mode = d.mode;
            bad.holders_known = d.holders_known;
            bad.holders_alive = d.holders_alive;
            bad.holder_pids = std::move(d.holder_pids);
            bad.problem = reason(err.message);
            if (bad.problem.empty()) bad.problem = "invalid header";
            return bad;
        }
        return d;
    }

private:
    // "segment 'NAME': why" -> "why": the Description names the object already. The object
    // word is the kind's own ("segment", "queue", "frames", ...).
    std::string reason(const std::string& what) const {
        std::string named = " '" + name_ + "': ";
        size_t at = what.find(named);
        if (at != std::string::npos && at > 0 && what.find(' ') == at) return what.substr(at + named.size());
        return what;
    }

    std::string name_;
    sharedstate::detail::os::SegmentFile file_;
    std::shared_ptr<sharedstate::detail::os::Mapping> map_;
    uint64_t size_ = 0;
    uint32_t mode_ = 0;
};

// One look: open, describe, close.
inline Description peek(const std::string& name, const PeekOptions& opt = {}) {
    return Peek::open(name).describe(opt);
}
inline bool peek(const std::string& name, Description& out, ErrorInfo& err, const PeekOptions& opt = {}) {
    Peek p;
    if (!Peek::open(name, p, err)) return false;
    out = p.describe(opt);
    return true;
}

}  // namespace inspect
}  // namespace sharedstate
