// The Frames segment format, as docs/FORMAT.md (Frames segment) specifies it byte by byte.
// Little-endian only. The immutable part (preamble, geometry, element field table) is
// validated once at open and copied out; afterwards only the live words are read (the
// writer lock, `latest`, the waiter count, the pin table and the per-slot headers), and each
// value read from them is bounds-checked before use.
//
//   0    preamble (format::Preamble, the same struct as a state's: magic "SHFRAME1", kind 3,
//        payload_size = bytes of one frame, payload_align = the element's alignment,
//        slot_stride, field_count/fields_offset of the element's field table, flags)
//   64   geometry: slot_count, readers, ndim, item_size, pins_offset, shape[8]
//   128  writer line: lock_owner, last_writer, recoveries, reclaimed
//   192  latest: (version << 16) | slot of the newest committed frame; alone on its line
//   256  waiters: parked wait() callers (eventcount, wait.hpp)
//   320  the element's field table (48 bytes per field, as in a state segment)
//   pins_offset: the pin table, `readers` entries of 16 bytes {owner u64, slot u32, 0 u32}
//   header_size: slot_count slots of slot_stride bytes: a 64-byte slot header
//                {version u64, commit_ns u64, writer u64, 0...}, then the frame
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "error.hpp"
#include "format.hpp"
#include "layout.hpp"

namespace sharedstate {
namespace fformat {

using format::kCacheLine;
inline constexpr uint16_t kVersion = 1;
inline constexpr uint32_t kFieldsOffset = 320;
inline constexpr uint32_t kMaxDims = 8;
inline constexpr uint32_t kMaxReaders = 1024;
inline constexpr uint32_t kSlotHeader = 64;
inline constexpr uint32_t kPinEntry = 16;
inline constexpr uint32_t kNoSlot = 0xffffffffu;  // a pin entry that pins nothing
inline constexpr unsigned kSlotBits = 16;         // latest = (version << 16) | slot
inline constexpr uint64_t kSlotMask = (uint64_t(1) << kSlotBits) - 1;
inline constexpr uint32_t kFlagPersistent = format::kFlagPersistent;  // bit 0, as everywhere
inline constexpr uint32_t kFlagScalar = 1u << 1;  // the element is its one field's type, not a record
inline constexpr uint32_t kKnownFlags = kFlagPersistent | kFlagScalar;

// Bytes 64..127: immutable after creation, covered by the checksum.
struct Geometry {
    uint32_t slot_count;   //  64  readers + 2
    uint32_t readers;      //  68  pin table entries: frames that may be held at once
    uint32_t ndim;         //  72  0..8
    uint32_t item_size;    //  76  bytes of one element (the field table's payload size)
    uint32_t pins_offset;  //  80  round_up(320 + 48 * field_count, 64)
    uint32_t reserved0;    //  84  0
    uint32_t shape[kMaxDims];  // 88  dims in use >= 1, the rest 0
    uint64_t reserved1;    // 120  0
};
static_assert(sizeof(Geometry) == 64, "geometry is one cache line");

struct alignas(kCacheLine) Header {
    format::Preamble pre;                   //   0
    Geometry geo;                           //  64
    // Line 2: writers only (readers never touch it).
    std::atomic<uint64_t> lock_owner;       // 128  the writer lock (writer_lock.hpp)
    std::atomic<uint64_t> last_writer;      // 136  owner word of the last commit
    std::atomic<uint64_t> recoveries;       // 144  writer locks taken over from dead writers
    std::atomic<uint64_t> reclaimed;        // 152  pins taken back from dead readers
    unsigned char pad2[kCacheLine - 32];
    // Line 3: the newest committed frame, alone: readers poll it, one writer stores it.
    std::atomic<uint64_t> latest;           // 192
    unsigned char pad3[kCacheLine - 8];
    // Line 4: parked waiters.
    std::atomic<uint32_t> waiters;          // 256
    unsigned char pad4[kCacheLine - 4];
    // 320: field table
};
static_assert(sizeof(Header) == kFieldsOffset, "frames header is 320 bytes before the field table");
static_assert(offsetof(Header, geo) == 64, "FORMAT.md frames: geometry at 64");
static_assert(offsetof(Header, lock_owner) == 128, "FORMAT.md frames: lock at 128");
static_assert(offsetof(Header, latest) == 192, "FORMAT.md frames: latest at 192");
static_assert(offsetof(Header, waiters) == 256, "FORMAT.md frames: waiters at 256");
static_assert(std::is_standard_layout<Header>::value, "header must be standard-layout");

struct PinEntry {
    std::atomic<uint64_t> owner;  // 0 = free, else the pinning process's owner word
    std::atomic<uint32_t> slot;   // the pinned slot, kNoSlot while claimed but not pinning
    uint32_t reserved;
};
static_assert(sizeof(PinEntry) == kPinEntry, "pin entry is 16 bytes");

struct SlotHeader {
    std::atomic<uint64_t> version;    // the version this slot was committed as
    std::atomic<uint64_t> commit_ns;  // monotonic clock at commit (os::monotonic_ns)
    std::atomic<uint64_t> writer;     // owner word of the committing writer
    uint64_t reserved[5];
};
static_assert(sizeof(SlotHeader) == kSlotHeader, "slot header is 64 bytes");

// What a Frames segment holds: the element (a record layout, or one scalar field), the shape.
struct Spec {
    std::vector<uint32_t> shape;  // 0..8 dims, each >= 1
    Layout element;               // element.size = bytes of one element
    bool scalar = true;           // the element is element.fields[0]'s type (a plain numpy dtype)
};

struct Geom {
    uint64_t frame_bytes = 0;
    uint32_t pins_offset = 0;
    uint32_t header_size = 0;
    uint32_t slot_stride = 0;
    uint64_t segment_size = 0;
};

inline Geom geometry(uint64_t frame_bytes, uint32_t field_count, uint32_t readers) {
    Geom g;
    g.frame_bytes = frame_bytes;
    g.pins_offset = uint32_t(format::round_up(kFieldsOffset + uint64_t(field_count) * sizeof(format::FieldEntry), kCacheLine));
    g.header_size = uint32_t(format::round_up(uint64_t(g.pins_offset) + uint64_t(readers) * kPinEntry, kCacheLine));
    g.slot_stride = uint32_t(kSlotHeader + format::round_up(frame_bytes, kCacheLine));
    g.segment_size = uint64_t(g.header_size) + uint64_t(readers + 2) * g.slot_stride;
    return g;
}

// Product of the dims times item_size, or 0 if it is not 1 .. kMaxPayload (no overflow).
inline uint64_t frame_bytes_of(const uint32_t* shape, uint32_t ndim, uint64_t item_size) {
    uint64_t n = item_size;
    if (n == 0 || n > kMaxPayload) return 0;
    for (uint32_t i = 0; i < ndim; ++i) {
        if (shape[i] == 0) return 0;
        n *= shape[i];
        if (n > kMaxPayload) return 0;
    }
    return n;
}

// FNV-1a 32 of bytes 8..127 (the checksum field as 0) and the field table.
inline uint32_t checksum(const unsigned char* base, uint32_t field_count) {
    unsigned char imm[120];
    std::memcpy(imm, base + 8, sizeof imm);
    std::memset(imm + (offsetof(format::Preamble, checksum) - 8), 0, 4);
    uint32_t h = format::fnv1a(imm, sizeof imm);
    return format::fnv1a(base + kFieldsOffset, size_t(field_count) * sizeof(format::FieldEntry), h);
}

// Writes the field table of `l` at `off` (the state's writer writes it at 256).
inline void write_field_table_at(unsigned char* base, uint32_t off, const Layout& l) {
    auto* e = reinterpret_cast<format::FieldEntry*>(base + off);
    for (const Field& f : l.fields) {
        std::memset(static_cast<void*>(e), 0, sizeof *e);
        std::memcpy(e->name, f.name.data(), f.name.size());
        e->offset = f.offset;
        e->count = f.count;
        e->kind = char(f.kind);
        e->itemsize = f.itemsize;
        ++e;
    }
}

// The validated, private copy of a frames header's immutable part.
struct Info {
    Spec spec;
    uint32_t slot_count = 0;
    uint32_t readers = 0;
    uint64_t frame_bytes = 0;
    uint32_t pins_offset = 0;
    uint32_t header_size = 0;
    uint32_t slot_stride = 0;
    uint64_t segment_size = 0;
    uint32_t flags = 0;
    uint32_t creator_pid = 0;
    uint64_t created_unix_ns = 0;
};

// Validates the header at `base` against the `mapped` bytes really there. False with err
// set (errc::corrupt_segment / wrong_kind naming the segment); never reads out of bounds.
inline bool validate_frames(const unsigned char* base, uint64_t mapped, const std::string& name, Info& info,
                            ErrorInfo& err) {
    auto corrupt = [&](const std::string& why) { return err.set(errc::corrupt_segment, "frames '" + name + "': " + why); };
    if (mapped < kFieldsOffset)
        return corrupt("truncated (" + std::to_string(mapped) + " bytes, a frames header needs 320)");
    const auto* h = reinterpret_cast<const Header*>(base);
    uint64_t magic = h->pre.magic.load(std::memory_order_acquire);
    if (magic == format::kStateMagic) return err.set(errc::wrong_kind, "segment '" + name + "' is a sharedstate SharedState, not Frames");
    if (magic == format::kQueueMagic) return err.set(errc::wrong_kind, "segment '" + name + "' is a sharedstate Queue, not Frames");
    if (magic != format::kFramesMagic)
        return corrupt(magic == 0 ? "not initialized (its creator died or is still creating it)"
                           : "not a sharedstate segment (bad magic)");
    format::Preamble p;
    std::memcpy(static_cast<void*>(&p), base, sizeof p);
    Geometry g;
    std::memcpy(&g, base + 64, sizeof g);
    if (p.version != kVersion) return corrupt("format version " + std::to_string(p.version) + ", this library reads 1");
    if (p.kind != format::kFrames) return corrupt("kind " + std::to_string(p.kind) + " is not frames");
    if (p.flags & ~kKnownFlags) return corrupt("unknown flags");
    if (p.fields_offset != kFieldsOffset) return corrupt("field table offset is not 320");
    if (p.field_count == 0 || p.field_count > kMaxFields) return corrupt("field count out of range");
    if (g.readers == 0 || g.readers > kMaxReaders) return corrupt("readers " + std::to_string(g.readers) + " out of range 1..1024");
    if (g.slot_count != g.readers + 2) return corrupt("slot count is not readers + 2");
    if (g.ndim > kMaxDims) return corrupt("more than 8 dimensions");
    for (uint32_t i = g.ndim; i < kMaxDims; ++i)
        if (g.shape[i] != 0) return corrupt("unused dimension not 0");
    if (g.reserved0 != 0 || g.reserved1 != 0) return corrupt("reserved geometry bytes not 0");
    uint64_t fb = frame_bytes_of(g.shape, g.ndim, g.item_size);
    if (fb == 0 || fb != p.payload_size) return corrupt("frame size inconsistent with shape and element size");
    Geom want = geometry(fb, p.field_count, g.readers);
    if (g.pins_offset != want.pins_offset) return corrupt("pin table offset inconsistent");
    if (p.header_size != want.header_size) return corrupt("header size inconsistent");
    if (p.slot_stride != want.slot_stride) return corrupt("slot stride inconsistent");
    if (p.segment_size != want.segment_size) return corrupt("segment size field inconsistent");
    if (want.segment_size > mapped)
        return corrupt("truncated (" + std::to_string(mapped) + " bytes, needs " + std::to_string(want.segment_size) + ")");
    if (checksum(base, p.field_count) != p.checksum) return corrupt("header checksum mismatch");
    info = Info();
    // read_field_table reads at format::kFieldsOffset (256): parse from a shifted base.
    if (!format::read_field_table(base + (kFieldsOffset - format::kFieldsOffset), p.field_count, g.item_size,
                                  p.payload_align, name, info.spec.element, err))
        return false;
    info.spec.scalar = (p.flags & kFlagScalar) != 0;
    if (info.spec.scalar) {
        const Field& f = info.spec.element.fields[0];
        if (p.field_count != 1 || f.offset != 0 || f.nbytes() != g.item_size)
            return corrupt("a scalar element must be one field covering the element");
    }
    info.spec.shape.assign(g.shape, g.shape + g.ndim);
    info.slot_count = g.slot_count;
    info.readers = g.readers;
    info.frame_bytes = fb;
    info.pins_offset = g.pins_offset;
    info.header_size = p.header_size;
    info.slot_stride = p.slot_stride;
    info.segment_size = p.segment_size;
    info.flags = p.flags;
    info.creator_pid = p.creator_pid;
    info.created_unix_ns = p.created_unix_ns;
    return true;
}
// The throwing form.
inline Info validate_frames(const unsigned char* base, uint64_t mapped, const std::string& name) {
    Info info;
    ErrorInfo err;
    if (!validate_frames(base, mapped, name, info, err)) fail(err);
    return info;
}

}  // namespace fformat
}  // namespace sharedstate
