// libFuzzer target: a Frames segment whose bytes (preamble, geometry, field table, live words,
// pin table, slot headers) are the fuzzer's input. Frames::open maps and validates it; then
// what a reader and a writer do runs on it: latest() (pin table, latest word), loan()/commit()
// (writer lock, pick_free over the pin table), publish(), wait(0), the facts. Only a
// sharedstate::Error / std::system_error or a working object is acceptable; a crash, an
// ASan/UBSan report or a hang (-timeout) is a finding.
//
// Input byte 0 is a mode: bit 2 starts from a real segment made by Frames::create (the input's
// bytes from 2 on overwrite it at offset 4 * byte 1), else the input is the whole segment; bit
// 0 repairs the magic and the checksum (so structural checks are reached), bit 1 sets the
// persistent flag (no holder: open() would otherwise remove it).
#include <sharedstate/frames.hpp>

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

namespace ff = sharedstate::fformat;

static const std::vector<unsigned char>& real_segment() {
    static const std::vector<unsigned char> bytes = [] {
        std::string name = "sst-fuzz-frames-seed-" + std::to_string(::getpid());
        sharedstate::FramesOptions o;
        o.readers = 2;
        o.persistent = true;
        auto fr = sharedstate::Frames::create(name, sharedstate::frame_spec<uint16_t>({3, 5}), o);
        std::vector<unsigned char> b(fr.frame_bytes(), 1);
        fr.publish(b.data(), b.size());
        auto v = fr.latest();  // a slot header and a pin entry that were used
        v.release();
        const unsigned char* p = fr.mapping()->data();
        std::vector<unsigned char> out(p, p + fr.info().segment_size);
        fr.close();
        sharedstate::Frames::unlink(name);
        return out;
    }();
    return bytes;
}

static std::vector<unsigned char> frames_bytes(const uint8_t* data, size_t size) {
    if (size == 0) return {};
    uint8_t mode = data[0];
    std::vector<unsigned char> seg;
    if ((mode & 4) && size >= 2) {
        seg = real_segment();
        size_t off = size_t(data[1]) * 4;
        for (size_t i = 2; i < size && off + i - 2 < seg.size(); ++i) seg[off + i - 2] = data[i];
    } else {
        seg.assign(data + 1, data + size);
    }
    if ((mode & 1) && seg.size() >= 128) {
        uint64_t magic = sharedstate::format::kFramesMagic;
        std::memcpy(seg.data(), &magic, 8);
        if (mode & 2) {
            uint32_t flags;
            std::memcpy(&flags, seg.data() + 44, 4);
            flags |= ff::kFlagPersistent;
            std::memcpy(seg.data() + 44, &flags, 4);
        }
        uint32_t n;
        std::memcpy(&n, seg.data() + 36, 4);
        if (n <= sharedstate::kMaxFields && ff::kFieldsOffset + uint64_t(n) * 48 <= seg.size()) {
            uint32_t c = ff::checksum(seg.data(), n);
            std::memcpy(seg.data() + 48, &c, 4);
        }
    }
    return seg;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::vector<unsigned char> seg = frames_bytes(data, size);
    static const std::string name = "sst-fuzz-frames-" + std::to_string(::getpid());
    const std::string path = "/" + name;
    shm_unlink(path.c_str());
    int fd = shm_open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) std::abort();
    for (size_t off = 0; off < seg.size();) {
        ssize_t n = ::write(fd, seg.data() + off, seg.size() - off);
        if (n <= 0) std::abort();
        off += size_t(n);
    }
    ::close(fd);
    try {
        auto fr = sharedstate::Frames::open(name);
        (void)fr.pins_held();
        (void)fr.version();
        try {
            auto v = fr.latest();
            volatile unsigned char sink = 0;
            for (size_t i = 0; i < v.size(); i += 61) sink = sink + v.data()[i];
            if (v.size() != fr.frame_bytes()) std::abort();
        } catch (const std::system_error&) {
        }
        try {
            auto l = fr.loan(std::chrono::nanoseconds(0));
            if (l) {
                std::memset(l.data(), 0xab, l.size());
                l.commit();
            }
        } catch (const std::system_error&) {
        }
        try {
            std::vector<unsigned char> b(fr.frame_bytes(), 2);
            fr.publish(b.data(), b.size(), std::chrono::nanoseconds(0));
        } catch (const std::system_error&) {
        }
        try {
            fr.wait(fr.version(), std::chrono::nanoseconds(0), std::chrono::nanoseconds(0));
        } catch (const std::system_error&) {
        }
        fr.close();
    } catch (const std::system_error&) {
    }
    shm_unlink(path.c_str());
    return 0;
}
