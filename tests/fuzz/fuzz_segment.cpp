// libFuzzer target: a real segment whose bytes are the fuzzer's input.
// The bytes are written to a fresh POSIX shm object, then SharedBlock::open maps and
// validates it as any process would, and read / version / write / wait run on it. The only
// acceptable outcomes are a sharedstate::Error (or std::system_error from the OS) or a
// working object; a crash, an ASan/UBSan report or a hang is a finding.
#include <sharedstate/sharedstate.hpp>

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "fuzz_common.hpp"

using sharedstate::SharedBlock;

static std::string object_name() {
    static const std::string n = "sst-fuzz-seg-" + std::to_string(::getpid());
    return n;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::vector<unsigned char> seg = fuzz::segment_bytes(data, size);
    const std::string name = object_name();
    const std::string path = "/" + name;
    shm_unlink(path.c_str());
    int fd = shm_open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) std::abort();
    size_t off = 0;
    while (off < seg.size()) {
        ssize_t n = ::write(fd, seg.data() + off, seg.size() - off);
        if (n <= 0) std::abort();
        off += size_t(n);
    }
    ::close(fd);  // nobody holds it now: open() treats it as left behind unless persistent

    try {
        SharedBlock b = SharedBlock::open(name);
        const auto& l = b.layout();
        std::vector<unsigned char> buf(l.size);
        b.read(buf.data());
        for (const auto& f : l.fields) b.read_range(buf.data(), f.offset, size_t(f.nbytes()));
        uint64_t v = b.version();
        // The lock word is input too: a live foreign owner means busy, a dead one a takeover.
        SharedBlock::Patch p{0, l.size, buf.data()};
        if (b.write_patches(&p, 1, std::chrono::nanoseconds(0))) {
            // The sequence is input too: one near 2^64 wraps (a hostile peer can set it to
            // anything anyway); any other must move forward.
            if (b.version() <= v && v < (UINT64_MAX >> 2)) std::abort();
            b.read(buf.data());
        }
        try {
            b.wait(b.version(), std::chrono::nanoseconds(0), std::chrono::nanoseconds(0));
        } catch (const sharedstate::Error& e) {
            if (!e.is(sharedstate::errc::timeout)) throw;
        }
        b.close();
    } catch (const std::system_error&) {  // sharedstate::Error derives from it
    }
    shm_unlink(path.c_str());
    return 0;
}
