// Segment format v1, as docs/FORMAT.md specifies it byte by byte. Little-endian only.
// Fields that never change after creation are copied out and validated once at open;
// the live words (lock, sequence, waiters) are the only shared state read afterwards.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>

#include "error.hpp"
#include "layout.hpp"

namespace sharedstate {
namespace format {

static_assert(std::atomic<uint32_t>::is_always_lock_free, "32-bit atomics in shared memory must be lock-free");
static_assert(std::atomic<uint64_t>::is_always_lock_free, "64-bit atomics in shared memory must be lock-free");
static_assert(sizeof(std::atomic<uint64_t>) == 8 && alignof(std::atomic<uint64_t>) == 8, "atomic<u64> must be a plain word");
static_assert(sizeof(std::atomic<uint32_t>) == 4, "atomic<u32> must be a plain word");

inline constexpr std::size_t kCacheLine = 64;  // on its own line: no false sharing (named as such)
inline constexpr uint16_t kVersion = 1;
inline constexpr uint32_t kFlagPersistent = 1u << 0;
inline constexpr uint32_t kFlagMirror = 1u << 1;  // a state mirroring a remote object: a source record follows the field table

// Magic words, read as little-endian u64: the ASCII text "SHSTATE1" / "SHQUEUE1".
inline constexpr uint64_t magic_of(const char (&s)[9]) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | uint8_t(s[i]);
    return v;
}
inline constexpr uint64_t kStateMagic = magic_of("SHSTATE1");
inline constexpr uint64_t kQueueMagic = magic_of("SHQUEUE1");
inline constexpr uint64_t kFramesMagic = magic_of("SHFRAME1");  // frames.hpp / frames_format.hpp
enum SegmentKind : uint16_t { kState = 1, kQueue = 2, kFrames = 3 };

// Bytes 0..63: written once by the creator; `magic` last, with release, so that an opener
// that sees the magic (acquire) sees a complete header.
struct Preamble {
    std::atomic<uint64_t> magic;   //  0
    uint16_t version;              //  8
    uint16_t kind;                 // 10
    uint32_t header_size;          // 12  bytes before the first payload byte; multiple of 64
    uint64_t segment_size;         // 16  total bytes the creator sized the segment to
    uint32_t payload_size;         // 24
    uint32_t payload_align;        // 28
    uint32_t slot_stride;          // 32  distance between the two copies; multiple of 64
    uint32_t field_count;          // 36
    uint32_t fields_offset;        // 40  always 256 in v1
    uint32_t flags;                // 44
    uint32_t checksum;             // 48  FNV-1a 32 of bytes 8..63 (this field as 0) + field table
    uint32_t creator_pid;          // 52
    uint64_t created_unix_ns;      // 56
};
static_assert(sizeof(Preamble) == 64, "preamble is one cache line");

// The field table entry, 48 bytes.
struct FieldEntry {
    char name[32];       //  0  UTF-8, NUL-padded, 1..31 bytes
    uint32_t offset;     // 32
    uint32_t count;      // 36
    char kind;           // 40  'i' 'u' 'f' 'b' 'S' 'V'
    uint8_t itemsize;    // 41
    uint16_t reserved0;  // 42  0
    uint32_t reserved1;  // 44  0
};
static_assert(sizeof(FieldEntry) == 48, "field entry is 48 bytes");

struct alignas(kCacheLine) StateHeader {
    Preamble pre;                                  //   0
    // Line 1: writers only. Readers never touch it.
    std::atomic<uint64_t> lock_owner;              //  64  0 = free, else (pid << 32) | start token
    std::atomic<uint64_t> last_writer;             //  72  owner word of the last committed write
    std::atomic<uint64_t> recoveries;              //  80  dead-writer takeovers so far
    unsigned char pad1[kCacheLine - 24];
    // Line 2: the sequence, alone: readers poll it, one writer stores it.
    std::atomic<uint64_t> seq;                     // 128  2 x committed writes (+1 while writing)
    unsigned char pad2[kCacheLine - 8];
    // Line 3: parked waiters, so their increments do not invalidate the readers' line.
    std::atomic<uint32_t> waiters;                 // 192
    unsigned char pad3[kCacheLine - 4];
    // 256: field table
};
static_assert(sizeof(StateHeader) == 256, "state header is 256 bytes");
static_assert(offsetof(StateHeader, lock_owner) == 64, "FORMAT.md: lock at 64");
static_assert(offsetof(StateHeader, seq) == 128, "FORMAT.md: seq at 128");
static_assert(offsetof(StateHeader, waiters) == 192, "FORMAT.md: waiters at 192");
static_assert(std::is_standard_layout<StateHeader>::value, "header must be standard-layout");

inline constexpr uint32_t kFieldsOffset = 256;

inline constexpr uint64_t round_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

inline uint32_t fnv1a(const unsigned char* p, size_t n, uint32_t h = 2166136261u) {
    for (size_t i = 0; i < n; ++i) { h ^= p[i]; h *= 16777619u; }
    return h;
}

// Checksum over the immutable preamble (bytes 8..63, checksum as 0) and the field table.
inline uint32_t header_checksum(const unsigned char* base, uint32_t field_count) {
    unsigned char pre[56];
    std::memcpy(pre, base + 8, sizeof pre);
    std::memset(pre + (offsetof(Preamble, checksum) - 8), 0, 4);
    uint32_t h = fnv1a(pre, sizeof pre);
    return fnv1a(base + kFieldsOffset, size_t(field_count) * sizeof(FieldEntry), h);
}

// The source record of a mirror (kFlagMirror): 256 bytes at source_offset(field_count), between
// the field table and the payload. The key is immutable (written before the magic, checked at
// open); `status` is live: bit 0 says the remote source is alive, bits 1..63 count the changes.
inline constexpr uint32_t kSourceRecordSize = 256;
inline constexpr uint32_t kMaxSourceKey = 240;
struct SourceRecord {
    std::atomic<uint64_t> status;  //  0  bit 0: alive; (status >> 1): liveness changes so far
    uint32_t key_len;              //  8  1..240
    uint32_t key_checksum;         // 12  FNV-1a 32 of the key bytes
    char key[kMaxSourceKey];       // 16  UTF-8, NUL-padded
};
static_assert(sizeof(SourceRecord) == kSourceRecordSize, "source record is 256 bytes");
inline constexpr uint64_t source_offset(uint32_t field_count) {
    return round_up(kFieldsOffset + uint64_t(field_count) * sizeof(FieldEntry), kCacheLine);
}

// What a state segment with this layout needs.
struct StateGeometry {
    uint32_t header_size;
    uint32_t slot_stride;
    uint64_t segment_size;
};
inline StateGeometry state_geometry(const Layout& l, bool mirror = false) {
    StateGeometry g;
    g.header_size = uint32_t(source_offset(uint32_t(l.fields.size())) + (mirror ? kSourceRecordSize : 0));
    g.slot_stride = uint32_t(round_up(l.size, kCacheLine));
    g.segment_size = uint64_t(g.header_size) + 2ull * g.slot_stride;
    return g;
}

inline void write_field_table(unsigned char* base, const Layout& l) {
    auto* e = reinterpret_cast<FieldEntry*>(base + kFieldsOffset);
    for (const Field& f : l.fields) {
        std::memset(e, 0, sizeof *e);
        std::memcpy(e->name, f.name.data(), f.name.size());
        e->offset = f.offset;
        e->count = f.count;
        e->kind = char(f.kind);
        e->itemsize = f.itemsize;
        ++e;
    }
}

// A field name from a header must be well-formed UTF-8 (FORMAT.md): Python decodes these
// names, and a hostile header must fail here as corrupt, not later in a decoder.
inline bool valid_field_name(const char* s, size_t n) {
    const auto* p = reinterpret_cast<const unsigned char*>(s);
    for (size_t i = 0; i < n;) {
        unsigned char c = p[i];
        size_t more = c < 0x80 ? 0 : (c >> 5) == 0x6 ? 1 : (c >> 4) == 0xe ? 2 : (c >> 3) == 0x1e ? 3 : 9;
        if (more == 9 || i + more >= n) return false;
        uint32_t cp = more == 0 ? c : more == 1 ? (c & 0x1fu) : more == 2 ? (c & 0x0fu) : (c & 0x07u);
        for (size_t k = 1; k <= more; ++k) {
            if ((p[i + k] & 0xc0) != 0x80) return false;
            cp = (cp << 6) | (p[i + k] & 0x3fu);
        }
        // Overlong forms, UTF-16 surrogates and code points past U+10FFFF are not UTF-8.
        static const uint32_t min_cp[4] = {0, 0x80, 0x800, 0x10000};
        if (cp < min_cp[more] || (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff) return false;
        i += more + 1;
    }
    return true;
}

// Parse the field table; every value is bounds-checked, nothing else is trusted.
inline bool read_field_table(const unsigned char* base, uint32_t count, uint32_t payload_size, uint32_t align,
                             const std::string& name, Layout& l, ErrorInfo& err) {
    l = Layout();
    l.size = payload_size;
    l.align = align;
    l.fields.reserve(count);
    for (uint32_t i = 0; i < count; ++i) {
        FieldEntry e;
        std::memcpy(&e, base + kFieldsOffset + size_t(i) * sizeof e, sizeof e);
        size_t len = strnlen(e.name, sizeof e.name);
        if (len == 0 || len > kMaxFieldName || !valid_field_name(e.name, len))
            return err.set(errc::corrupt_segment, "segment '" + name + "': field " + std::to_string(i) + " has no valid name");
        l.fields.push_back(Field{std::string(e.name, len), Kind(e.kind), e.itemsize, e.offset, e.count});
    }
    ErrorInfo bad;
    if (!l.validate(name, bad))
        return err.set(errc::corrupt_segment, std::string("segment '") + name + "': bad field table: " + bad.what());
    return true;
}
inline Layout read_field_table(const unsigned char* base, uint32_t count, uint32_t payload_size, uint32_t align,
                               const std::string& name) {
    Layout l;
    ErrorInfo err;
    if (!read_field_table(base, count, payload_size, align, name, l, err)) fail(err);
    return l;
}

// The validated, private copy of a state header's immutable part.
struct StateInfo {
    Layout layout;
    uint32_t header_size = 0;
    uint32_t slot_stride = 0;
    uint64_t segment_size = 0;
    uint32_t flags = 0;
    uint32_t creator_pid = 0;
    uint64_t created_unix_ns = 0;
    std::string source_key;      // a mirror's remote key (kFlagMirror), else empty
    uint32_t source_offset = 0;  // where its SourceRecord is, else 0
};

// Validates the header at `base` against the `mapped` bytes really there. Throws
// errc::corrupt_segment / wrong_kind with the segment's name; never reads out of bounds.
inline bool validate_state(const unsigned char* base, uint64_t mapped, const std::string& name, StateInfo& info,
                           ErrorInfo& err) {
    auto corrupt = [&](const std::string& why) { return err.set(errc::corrupt_segment, "segment '" + name + "': " + why); };
    if (mapped < sizeof(StateHeader)) return corrupt("truncated (" + std::to_string(mapped) + " bytes, header needs 256)");
    const auto* h = reinterpret_cast<const StateHeader*>(base);
    uint64_t magic = h->pre.magic.load(std::memory_order_acquire);
    if (magic == kQueueMagic) return err.set(errc::wrong_kind, "segment '" + name + "' is a sharedstate Queue, not a SharedState");
    if (magic == kFramesMagic) return err.set(errc::wrong_kind, "segment '" + name + "' is a sharedstate Frames, not a SharedState");
    if (magic != kStateMagic) return corrupt(magic == 0 ? "not initialized (its creator died or is still creating it)"
                                                 : "not a sharedstate segment (bad magic)");
    Preamble p;
    std::memcpy(static_cast<void*>(&p), base, sizeof p);
    if (p.version != kVersion) return corrupt("format version " + std::to_string(p.version) + ", this library reads 1");
    if (p.kind != kState) return corrupt("kind " + std::to_string(p.kind) + " is not a state");
    if (p.fields_offset != kFieldsOffset) return corrupt("field table offset is not 256");
    if (p.field_count == 0 || p.field_count > kMaxFields) return corrupt("field count out of range");
    uint64_t table_end = kFieldsOffset + uint64_t(p.field_count) * sizeof(FieldEntry);
    if (p.header_size % kCacheLine || p.header_size < table_end) return corrupt("header size inconsistent");
    if (p.payload_size == 0 || p.payload_size > kMaxPayload) return corrupt("payload size out of range");
    if (p.slot_stride % kCacheLine || p.slot_stride < p.payload_size || p.slot_stride > kMaxPayload + kCacheLine)
        return corrupt("slot stride inconsistent");
    uint64_t need = uint64_t(p.header_size) + 2ull * p.slot_stride;
    if (p.segment_size != need) return corrupt("segment size field inconsistent");
    if (need > mapped) return corrupt("truncated (" + std::to_string(mapped) + " bytes, needs " + std::to_string(need) + ")");
    if (header_checksum(base, p.field_count) != p.checksum) return corrupt("header checksum mismatch");
    info = StateInfo();
    if (!read_field_table(base, p.field_count, p.payload_size, p.payload_align, name, info.layout, err)) return false;
    info.header_size = p.header_size;
    info.slot_stride = p.slot_stride;
    info.segment_size = p.segment_size;
    info.flags = p.flags;
    info.creator_pid = p.creator_pid;
    info.created_unix_ns = p.created_unix_ns;
    if (p.flags & kFlagMirror) {
        uint64_t off = source_offset(p.field_count);
        if (uint64_t(p.header_size) < off + kSourceRecordSize) return corrupt("mirror flag set but no room for its source record");
        const auto* r = reinterpret_cast<const SourceRecord*>(base + off);
        uint32_t n = r->key_len;
        if (n == 0 || n > kMaxSourceKey || !valid_field_name(r->key, n) ||
            fnv1a(reinterpret_cast<const unsigned char*>(r->key), n) != r->key_checksum)
            return corrupt("mirror source record is damaged");
        info.source_key.assign(r->key, n);
        info.source_offset = uint32_t(off);
    }
    return true;
}
inline StateInfo validate_state(const unsigned char* base, uint64_t mapped, const std::string& name) {
    StateInfo info;
    ErrorInfo err;
    if (!validate_state(base, mapped, name, info, err)) fail(err);
    return info;
}

}  // namespace format
}  // namespace sharedstate
