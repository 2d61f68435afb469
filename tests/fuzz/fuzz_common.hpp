// Shared by the libFuzzer targets: turning fuzzer input into segment bytes.
//
// Input byte 0 is a mode, the rest is the segment. Mode bit 0 "repairs" the bytes before
// use: the state magic, a recomputed checksum and (bit 1) the persistent flag, so that the
// fuzzer gets past the cheap checks and explores the structural ones and what follows a
// successful validation. Without it, the raw bytes are used as they are.
#pragma once
#include <sharedstate/format.hpp>

#include <cstdint>
#include <cstring>
#include <vector>

namespace fuzz {

namespace fmt = sharedstate::format;

inline std::vector<unsigned char> segment_bytes(const uint8_t* data, size_t size) {
    if (size == 0) return {};
    uint8_t mode = data[0];
    std::vector<unsigned char> seg(data + 1, data + size);
    if ((mode & 1) && seg.size() >= sizeof(fmt::Preamble)) {
        fmt::Preamble p;
        std::memcpy(static_cast<void*>(&p), seg.data(), sizeof p);
        if (mode & 2) p.flags |= fmt::kFlagPersistent;
        std::memcpy(seg.data(), static_cast<const void*>(&p), sizeof p);
        uint64_t magic = (mode & 4) ? fmt::kQueueMagic : fmt::kStateMagic;
        std::memcpy(seg.data(), &magic, 8);
        // The checksum covers the field table: only when the table lies inside the bytes.
        uint64_t table_end = fmt::kFieldsOffset + uint64_t(p.field_count) * sizeof(fmt::FieldEntry);
        if (p.field_count <= sharedstate::kMaxFields && table_end <= seg.size()) {
            uint32_t c = fmt::header_checksum(seg.data(), p.field_count);
            std::memcpy(seg.data() + offsetof(fmt::Preamble, checksum), &c, 4);
        }
    }
    return seg;
}

}  // namespace fuzz
