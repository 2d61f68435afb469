// libFuzzer target: the state header parser on arbitrary bytes, in memory.
//   format::validate_state(bytes, size)  must throw sharedstate::Error or return a StateInfo
//   whose geometry fits the bytes; then the latch (read, write, repair) runs over those
//   bytes, so ASan proves that everything validation accepted stays inside the buffer.
//   format::read_field_table on a table of any count that fits the buffer.
// The buffer is exactly the input's size (heap): one byte past it is an ASan report.
#include <sharedstate/format.hpp>
#include <sharedstate/seqlock.hpp>

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <vector>

#include "fuzz_common.hpp"

namespace fmt = sharedstate::format;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::vector<unsigned char> seg = fuzz::segment_bytes(data, size);
    // A heap block of exactly seg.size() bytes, so that ASan sees a one-byte overrun
    // (operator new's alignment, 16, is what the atomics in the header need).
    std::unique_ptr<unsigned char[]> block(new unsigned char[seg.size() ? seg.size() : 1]);
    unsigned char* base = block.get();
    if (!seg.empty()) std::memcpy(base, seg.data(), seg.size());

    try {
        fmt::StateInfo info = fmt::validate_state(base, seg.size(), "fuzz");
        // Validation accepted it: the geometry must be inside the bytes.
        if (uint64_t(info.header_size) + 2ull * info.slot_stride > seg.size()) std::abort();
        if (info.layout.size > info.slot_stride || info.slot_stride % 8) std::abort();
        for (const auto& f : info.layout.fields)
            if (uint64_t(f.offset) + f.nbytes() > info.layout.size) std::abort();
        auto* h = reinterpret_cast<fmt::StateHeader*>(base);
        sharedstate::detail::Latch latch(h, base + info.header_size, info.slot_stride, info.layout.size);
        std::vector<unsigned char> out(info.layout.size);
        if (!latch.read(out.data(), 0, out.size(), nullptr, 4)) std::abort();  // nobody writes: must succeed
        latch.repair();
        sharedstate::detail::Patch p{0, info.layout.size, out.data()};
        latch.write(&p, 1);
        for (const auto& f : info.layout.fields) latch.read(out.data(), f.offset, size_t(f.nbytes()), nullptr, 4);
    } catch (const sharedstate::Error&) {
    }

    // The field table parser alone, with any count whose table fits the bytes.
    if (seg.size() >= fmt::kFieldsOffset + 8) {
        uint32_t count = uint32_t((seg.size() - fmt::kFieldsOffset) / sizeof(fmt::FieldEntry));
        uint32_t want = 0, payload = 0, align = 0;
        std::memcpy(&want, base + 0, 2);
        std::memcpy(&payload, base + 2, 4);
        std::memcpy(&align, base + 6, 2);
        if (count > 0) count = want % (count + 1);
        try {
            sharedstate::Layout l = fmt::read_field_table(base, count, payload, align, "fuzz");
            for (const auto& f : l.fields)
                if (uint64_t(f.offset) + f.nbytes() > l.size) std::abort();
        } catch (const sharedstate::Error&) {
        }
    }
    return 0;
}
