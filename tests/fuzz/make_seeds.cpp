// Writes the fuzzers' seed corpus: real state segments made by SharedBlock::create (so the
// seeds are exactly what the library writes), each with the mode byte of fuzz_common.hpp
// in front, plus truncated variants.   make_seeds OUT_DIR
#include <sharedstate/queue.hpp>
#include <sharedstate/sharedstate.hpp>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <unistd.h>
#include <vector>

using namespace sharedstate;

static std::vector<unsigned char> segment_of(const Layout& l, bool persistent, int writes) {
    std::string name = "sst-fuzz-seed-" + std::to_string(::getpid());
    CreateOptions o;
    o.persistent = persistent;
    SharedBlock b = SharedBlock::create(name, l, o);
    std::vector<unsigned char> v(l.size, 0x5a);
    for (int i = 0; i < writes; ++i) { v[0] = (unsigned char)i; b.write(v.data()); }
    std::ifstream in("/dev/shm/" + name, std::ios::binary);
    std::vector<unsigned char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    b.close();
    if (persistent) SharedBlock::unlink(name);
    return bytes;
}

int main(int argc, char** argv) {
    if (argc != 2) { std::fprintf(stderr, "usage: make_seeds OUT_DIR\n"); return 2; }
    std::string out = argv[1];
    Layout controller;
    controller.size = 12;
    controller.align = 4;
    controller.fields = {{"x", Kind::Int, 4, 0, 1}, {"y", Kind::Int, 4, 4, 1}, {"is_open", Kind::Bool, 1, 8, 1},
                         {"is_running", Kind::Bool, 1, 9, 1}, {"is_pressing", Kind::Bool, 1, 10, 1}};
    Layout mixed;
    mixed.size = 72;
    mixed.align = 8;
    mixed.fields = {{"t", Kind::Float, 8, 0, 1}, {"v", Kind::Float, 4, 8, 4}, {"id", Kind::UInt, 8, 24, 1},
                    {"name", Kind::Bytes, 1, 32, 16}, {"raw", Kind::Void, 1, 48, 20}, {"k", Kind::Int, 2, 68, 2}};
    int n = 0;
    auto put = [&](const std::vector<unsigned char>& seg, size_t len, unsigned char mode) {
        std::vector<unsigned char> f{mode};
        f.insert(f.end(), seg.begin(), seg.begin() + long(std::min(len, seg.size())));
        std::ofstream o(out + "/seed-" + std::to_string(n++), std::ios::binary);
        o.write(reinterpret_cast<const char*>(f.data()), long(f.size()));
    };
    for (const Layout* l : {static_cast<const Layout*>(&controller), static_cast<const Layout*>(&mixed), static_cast<const Layout*>(nullptr)}) {
        Layout big = Layout::opaque(4096 + 3);
        const Layout& lay = l ? *l : big;
        for (bool persistent : {false, true}) {
            auto seg = segment_of(lay, persistent, persistent ? 3 : 0);
            for (unsigned char mode : {(unsigned char)0, (unsigned char)1, (unsigned char)3}) put(seg, seg.size(), mode);
            for (size_t cut : {size_t(0), size_t(8), size_t(63), size_t(64), size_t(255), size_t(256),
                               size_t(300), seg.size() / 2, seg.size() - 1})
                put(seg, cut, persistent ? 0 : 3);
        }
    }
    // Queue segments: empty, with messages waiting, and wrapped around the ring.
    for (int variant = 0; variant < 3; ++variant) {
        std::string name = "sst-fuzz-seedq-" + std::to_string(::getpid());
        QueueOptions o;
        o.persistent = true;
        Queue q = Queue::create(name, 1024, 0, o);
        std::vector<unsigned char> got;
        for (int i = 0; i < variant * 20; ++i) {
            std::string m(size_t(1 + i * 7 % 90), char('a' + i % 26));
            if (!q.try_put(m.data(), m.size())) { q.try_get(got); q.try_put(m.data(), m.size()); }
            if (variant == 2 && i % 2) q.try_get(got);
        }
        std::ifstream in("/dev/shm/" + name, std::ios::binary);
        std::vector<unsigned char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        q.close();
        Queue::unlink(name);
        for (unsigned char mode : {(unsigned char)0, (unsigned char)3}) put(bytes, bytes.size(), mode);
        for (size_t cut : {size_t(64), size_t(319), size_t(320), size_t(600), bytes.size() - 1}) put(bytes, cut, 3);
    }
    std::printf("%d seeds in %s\n", n, out.c_str());
    return 0;
}
