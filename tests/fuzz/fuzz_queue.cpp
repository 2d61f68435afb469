// libFuzzer target: a Queue segment whose bytes (header, live words, ring records) are the
// fuzzer's input. Queue::open maps and validates it; then what a consumer and a producer do
// runs on it: try_get (records parsed from the ring: sizes, states, padding, owners),
// try_put, size/used_bytes. Only a sharedstate::Error / std::system_error or a working queue
// is acceptable; a crash, an ASan/UBSan report or a hang (-timeout) is a finding.
//
// Input byte 0 is a mode (as fuzz_common.hpp): bit 0 repairs the magic and the preamble
// checksum, bit 1 sets the persistent flag (no holder: open() would otherwise remove it).
#include <sharedstate/queue.hpp>

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

namespace q = sharedstate::qformat;

static std::vector<unsigned char> queue_bytes(const uint8_t* data, size_t size) {
    if (size == 0) return {};
    uint8_t mode = data[0];
    std::vector<unsigned char> seg(data + 1, data + size);
    if ((mode & 1) && seg.size() >= sizeof(q::Preamble)) {
        uint64_t magic = sharedstate::format::kQueueMagic;
        std::memcpy(seg.data(), &magic, 8);
        if (mode & 2) {
            uint32_t flags;
            std::memcpy(&flags, seg.data() + offsetof(q::Preamble, flags), 4);
            flags |= q::kFlagPersistent;
            std::memcpy(seg.data() + offsetof(q::Preamble, flags), &flags, 4);
        }
        uint32_t c = q::checksum(seg.data());
        std::memcpy(seg.data() + offsetof(q::Preamble, checksum), &c, 4);
    }
    return seg;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::vector<unsigned char> seg = queue_bytes(data, size);
    static const std::string name = "sst-fuzz-queue-" + std::to_string(::getpid());
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
        sharedstate::Queue qu = sharedstate::Queue::open(name);
        (void)qu.size();
        (void)qu.used_bytes();
        std::vector<unsigned char> out;
        for (int i = 0; i < 8; ++i) {
            try {
                if (!qu.try_get(out)) break;
            } catch (const std::system_error&) {
                break;
            }
        }
        const char msg[] = "fuzz message";
        for (int i = 0; i < 3; ++i) {
            try {
                if (!qu.try_put(msg, sizeof msg)) break;
            } catch (const std::system_error&) {
                break;
            }
        }
        try {
            if (qu.try_get(out) && out.size() > qu.capacity()) std::abort();
        } catch (const std::system_error&) {
        }
        qu.close();
    } catch (const std::system_error&) {
    }
    shm_unlink(path.c_str());
    return 0;
}
