// Frames through the C++ API: threads, a full-speed writer, pins, the readers+1 error, dead
// readers' pins and a dead writer's loan, across real processes; natively and under Wine.
#include <sharedstate/sharedstate.hpp>

#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

#include "check.hpp"

using sharedstate::errc;
using sharedstate::Error;
using sharedstate::Frames;
using sharedstate::FramesOptions;
using namespace std::chrono_literals;

struct Pixel {
    uint8_t r, g, b, a;
};
SHAREDSTATE_DESCRIBE(Pixel, r, g, b, a);

static FramesOptions readers(uint32_t n) {
    FramesOptions o;
    o.readers = n;
    return o;
}

// Fills a frame of u32 words with `v` everywhere; true if every word of it is `v`.
static void fill(unsigned char* p, size_t n, uint32_t v) {
    for (size_t i = 0; i + 4 <= n; i += 4) std::memcpy(p + i, &v, 4);
}
static bool constant(const unsigned char* p, size_t n, uint32_t v) {
    for (size_t i = 0; i + 4 <= n; i += 4) {
        uint32_t w;
        std::memcpy(&w, p + i, 4);
        if (w != v) return false;
    }
    return true;
}

TEST_CASE("create_open_spec") {
    auto name = check::unique("frames-spec");
    auto fr = Frames::create(name, sharedstate::frame_spec<uint8_t>({6, 8, 4}), readers(3));
    CHECK(fr.frame_bytes() == 6 * 8 * 4);
    CHECK(fr.slot_count() == 5 && fr.readers() == 3);
    CHECK(fr.version() == 0);
    {
        auto v = fr.latest();  // version 0: the zero-filled frame
        CHECK(v && v.version() == 0 && v.size() == 192);
        CHECK(constant(v.data(), v.size(), 0));
    }
    auto other = Frames::open(name);
    CHECK(other.spec().shape == (std::vector<uint32_t>{6, 8, 4}));
    CHECK(other.spec().scalar && other.spec().element.fields[0].kind == sharedstate::Kind::UInt);
    {
        auto l = fr.loan();
        CHECK(l && l.size() == 192 && l.version() == 1);
        fill(l.data(), l.size(), 0x01020304);
        CHECK(l.commit() == 1);
    }
    CHECK(other.version() == 1);
    auto v = other.latest();
    CHECK(v.version() == 1 && constant(v.data(), v.size(), 0x01020304));
    CHECK(v.commit_ns() > 0);
    // A cancelled loan is never published.
    {
        auto l = fr.loan();
        fill(l.data(), l.size(), 7);
    }
    CHECK(fr.version() == 1);
    auto spec = sharedstate::frame_spec<uint8_t>({6, 8, 4});
    CHECK_THROWS(Frames::create(name, spec), const Error&);  // exists
    FramesOptions ok;
    ok.exist_ok = true;
    auto again = Frames::create(name, spec, ok);
    CHECK(again.version() == 1);
    auto other_spec = sharedstate::frame_spec<uint8_t>({6, 8, 3});
    bool mismatch = false;
    try { Frames::create(name, other_spec, ok); } catch (const Error& e) { mismatch = e.is(errc::layout_mismatch); }
    CHECK(mismatch);
    CHECK_THROWS(fr.publish("xx", 2), const Error&);  // wrong size
}

TEST_CASE("record_element") {
    auto name = check::unique("frames-rec");
    auto fr = Frames::create(name, sharedstate::frame_spec<Pixel>({2, 3}));
    CHECK(!fr.spec().scalar && fr.spec().element.fields.size() == 4 && fr.frame_bytes() == 24);
    auto o = Frames::open(name);
    CHECK(o.spec().element == fr.spec().element && !o.spec().scalar);
}

TEST_CASE("wrong_kind_and_bad_args") {
    auto name = check::unique("frames-kind");
    auto fr = Frames::create(name, sharedstate::frame_spec<float>({16}));
    bool wk = false;
    try { sharedstate::SharedBlock::open(name); } catch (const Error& e) { wk = e.is(errc::wrong_kind); }
    CHECK(wk);
    wk = false;
    try { sharedstate::Queue::open(name); } catch (const Error& e) { wk = e.is(errc::wrong_kind); }
    CHECK(wk);
    auto sname = check::unique("frames-kind-st");
    auto st = sharedstate::SharedBlock::create(sname, sharedstate::Layout::opaque(8));
    wk = false;
    try { Frames::open(sname); } catch (const Error& e) { wk = e.is(errc::wrong_kind); }
    CHECK(wk);
    CHECK_THROWS(Frames::create(check::unique("f0"), sharedstate::frame_spec<uint8_t>({0, 4})), const Error&);
    CHECK_THROWS(Frames::create(check::unique("f1"), sharedstate::frame_spec<uint8_t>({4}), readers(0)), const Error&);
}

TEST_CASE("pins_block_reuse_and_readers_plus_one_is_an_error") {
    auto name = check::unique("frames-pins");
    const uint32_t R = 3;
    auto fr = Frames::create(name, sharedstate::frame_spec<uint32_t>({256}), readers(R));
    std::vector<Frames::View> held;
    for (uint32_t i = 0; i < R; ++i) {
        auto l = fr.loan();
        fill(l.data(), l.size(), 100 + i);
        l.commit();
        held.push_back(fr.latest());
    }
    CHECK(fr.pins_held() == R);
    bool too_many = false;
    try { auto extra = fr.latest(); } catch (const Error& e) { too_many = e.is(errc::invalid_argument); }
    CHECK(too_many);
    // The writer keeps publishing into the two slots nobody holds; held frames never change.
    for (uint32_t k = 0; k < 1000; ++k) {
        auto l = fr.loan();
        for (auto& h : held) CHECK(l.slot() != h.slot());
        fill(l.data(), l.size(), 5000 + k);
        l.commit();
    }
    for (uint32_t i = 0; i < R; ++i) CHECK(constant(held[i].data(), held[i].size(), 100 + i));
    held.pop_back();
    auto v = fr.latest();  // one pin free again
    CHECK(constant(v.data(), v.size(), 5999));
}

TEST_CASE("threads_full_speed_writer_never_torn") {
    auto name = check::unique("frames-threads");
    auto fr = Frames::create(name, sharedstate::frame_spec<uint32_t>({16384}), readers(4));  // 64 KiB
    std::atomic<bool> stop{false};
    std::atomic<uint64_t> bad{0}, seen{0};
    std::thread writer([&] {
        while (!stop.load()) {
            auto l = fr.loan();
            fill(l.data(), l.size(), uint32_t(l.version()));
            l.commit();
        }
    });
    std::vector<std::thread> rs;
    for (int t = 0; t < 3; ++t)
        rs.emplace_back([&] {
            auto r = Frames::open(name);
            uint64_t v = 0;
            for (int k = 0; k < 300; ++k) {
                v = r.wait(v, 5s);
                auto f = r.latest();
                bool ok = constant(f.data(), f.size(), uint32_t(f.version()));
                std::this_thread::yield();  // "use" it while the writer runs
                ok = ok && constant(f.data(), f.size(), uint32_t(f.version()));  // still the same after use
                if (!ok) bad.fetch_add(1);
                seen.fetch_add(1);
            }
        });
    for (auto& t : rs) t.join();
    stop = true;
    writer.join();
    CHECK(bad.load() == 0);
    CHECK(seen.load() == 900);
    CHECK(fr.pins_held() == 0);
}

TEST_CASE("wait_times_out_and_wakes") {
    auto name = check::unique("frames-wait");
    auto fr = Frames::create(name, sharedstate::frame_spec<uint8_t>({64}));
    bool to = false;
    try { fr.wait(0, 30ms); } catch (const Error& e) { to = e.is(errc::timeout); }
    CHECK(to);
    std::thread t([&] { std::this_thread::sleep_for(50ms); std::vector<unsigned char> b(64, 9); fr.publish(b.data(), 64); });
    CHECK(fr.wait(0, 5s, 0ns) == 1);  // no spin: parks in the kernel and is woken
    t.join();
}

// Children: "pin NAME" pins the latest frame and dies without unpinning; "loan NAME" takes
// a loan, half fills it and dies holding the writer lock.
CHILD("pin") {
    auto fr = Frames::open(args.at(0));
    auto v = fr.latest();
    std::fflush(stdout);
    std::_Exit(v ? 0 : 3);
}
CHILD("loan") {
    auto fr = Frames::open(args.at(0));
    auto l = fr.loan();
    fill(l.data(), l.size() / 2, 0xdead);
    std::_Exit(0);
}

TEST_CASE("dead_reader_pin_is_reclaimed") {
    auto name = check::unique("frames-deadpin");
    auto fr = Frames::create(name, sharedstate::frame_spec<uint32_t>({64}), readers(1));
    std::vector<unsigned char> b(256, 1);
    fr.publish(b.data(), b.size());
    check::Child c({"pin", name});
    CHECK(c.wait() == 0);
    CHECK(fr.pins_held() == 1);  // the dead child's entry
    // The writer sees only one free slot, looks at the owner, takes the pin back.
    for (int i = 0; i < 3; ++i) fr.publish(b.data(), b.size());
    CHECK(fr.reclaimed() == 1 && fr.pins_held() == 0);
    // A reader finding the table full takes a dead entry over too.
    check::Child c2({"pin", name});
    CHECK(c2.wait() == 0);
    CHECK(fr.pins_held() == 1);
    auto v = fr.latest();
    CHECK(v && v.version() == 4);
    CHECK(fr.reclaimed() == 2);
}

TEST_CASE("dead_writer_loan_is_never_published") {
    auto name = check::unique("frames-deadloan");
    auto fr = Frames::create(name, sharedstate::frame_spec<uint32_t>({1024}));
    std::vector<unsigned char> b(4096, 0);
    fill(b.data(), b.size(), 42);
    fr.publish(b.data(), b.size());
    check::Child c({"loan", name});
    CHECK(c.wait() == 0);
    CHECK(fr.lock_owner() != 0);  // the dead child still "holds" it
    CHECK(fr.version() == 1);
    {
        auto v = fr.latest();
        CHECK(constant(v.data(), v.size(), 42));
    }
    auto l = fr.loan(2s);  // taken over
    CHECK(fr.recoveries() == 1);
    fill(l.data(), l.size(), 43);
    CHECK(l.commit() == 2);
    auto v = fr.latest();
    CHECK(constant(v.data(), v.size(), 43));
}

TEST_CASE("corrupt_headers_are_errors") {
    auto name = check::unique("frames-corrupt");
    auto fr = Frames::create(name, sharedstate::frame_spec<uint16_t>({8, 8}), readers(2));
    auto seg = fr.info().segment_size;
    auto raw = sharedstate::SharedBlock::attach_raw(name, sharedstate::Layout::opaque(uint32_t(seg)));
    unsigned char* base = raw.data();
    std::vector<unsigned char> orig(base, base + seg);
    // Every byte of the immutable header, flipped one at a time: corrupt, never a crash.
    uint32_t imm_end = 320 + 48 * uint32_t(fr.spec().element.fields.size());  // padding after it is not read
    int bad = 0, total = 0;
    for (uint32_t off = 8; off < imm_end; ++off) {
        if (off >= 128 && off < 320) continue;  // live words
        base[off] ^= 0x5a;
        ++total;
        try {
            Frames::open(name);
        } catch (const Error& e) {
            if (e.is(errc::corrupt_segment) || e.is(errc::wrong_kind)) ++bad;
        }
        base[off] = orig[off];
    }
    CHECK(bad == total);
    // Live words out of range: latest names a slot past the ring.
    auto o = Frames::open(name);
    reinterpret_cast<std::atomic<uint64_t>*>(base + 192)->store((5ull << 16) | 77);
    bool c = false;
    try { o.latest(); } catch (const Error& e) { c = e.is(errc::corrupt_segment); }
    CHECK(c);
    c = false;
    try { o.loan(); } catch (const Error& e) { c = e.is(errc::corrupt_segment); }
    CHECK(c);
    reinterpret_cast<std::atomic<uint64_t>*>(base + 192)->store(0);
    CHECK(o.lock_owner() == 0);  // the failed loan let the lock go
    // Pin entries with garbage slots pin nothing; the writer still finds a slot.
    auto* pin = reinterpret_cast<std::atomic<uint32_t>*>(base + fr.info().pins_offset + 8);
    pin->store(12345);
    std::vector<unsigned char> b(128, 3);
    o.publish(b.data(), b.size());
    CHECK(o.version() == 1);
}

CHECK_MAIN()
