// SharedState / SharedBlock through the C++ API, across real processes; runs natively and
// under Wine (the same source, Windows backend).
#include <sharedstate/sharedstate.hpp>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "check.hpp"

struct Controller {
    int32_t x;
    int32_t y;
    bool is_open;
    bool is_running;
    bool is_pressing;
};
SHAREDSTATE_DESCRIBE(Controller, x, y, is_open, is_running, is_pressing);

struct Big {
    uint32_t tag;
    uint32_t fill[4095];
};
SHAREDSTATE_DESCRIBE(Big, tag, fill);

using sharedstate::errc;
using sharedstate::Error;
using sharedstate::SharedState;
using namespace std::chrono_literals;

static bool consistent(const Controller& c) {
    return c.x == c.y && c.is_open == bool(c.x & 1) && c.is_running == !(c.x & 1) && c.is_pressing == (c.x % 3 == 0);
}
static Controller value(int32_t i) { return Controller{i, i, bool(i & 1), !(i & 1), i % 3 == 0}; }

static_assert(sizeof(Controller) == 12, "the seed's 12-byte struct");

TEST_CASE("layout_from_describe") {
    const auto& L = SharedState<Controller>::layout();
    CHECK(L.size == 12);
    CHECK(L.fields.size() == 5);
    CHECK(L.fields[1].name == "y" && L.fields[1].offset == 4 && L.fields[1].kind == sharedstate::Kind::Int);
    CHECK(L.fields[4].name == "is_pressing" && L.fields[4].offset == 10 && L.fields[4].kind == sharedstate::Kind::Bool);
    const auto& B = SharedState<Big>::layout();
    CHECK(B.fields[1].count == 4095 && B.fields[1].itemsize == 4);
}

TEST_CASE("design_example") {
    auto name = check::unique("design");
    auto st = SharedState<Controller>::create(name);
    st.write(Controller{200, 300, false, true, false});
    st.update([](Controller& c) { c.x += 1; });
    Controller now = st.read();
    CHECK(now.x == 201 && now.y == 300 && now.is_running);
    uint64_t v = st.version();
    CHECK(v == 2);
    CHECK_THROWS(st.wait(v, std::chrono::milliseconds(50)), const Error&);
    auto other = SharedState<Controller>::open(name);
    CHECK(other.read().x == 201);
    std::thread t([&] { std::this_thread::sleep_for(20ms); other.write(value(5)); });
    CHECK(st.wait(v, std::chrono::seconds(10)) == 3);
    t.join();
    CHECK(st.read().x == 5);
}

TEST_CASE("errors") {
    auto name = check::unique("errors");
    CHECK_THROWS(SharedState<Controller>::open(name), const std::system_error&);
    auto st = SharedState<Controller>::create(name);
    try {
        SharedState<Controller>::create(name);
        CHECK(false);
    } catch (const std::system_error& e) {
        CHECK(std::string(e.what()).find(name) != std::string::npos);
    }
    try {
        SharedState<Big>::open(name);
        CHECK(false);
    } catch (const Error& e) {
        CHECK(e.is(errc::layout_mismatch));
    }
    try {
        SharedState<Controller>::create("bad/name");
        CHECK(false);
    } catch (const Error& e) {
        CHECK(e.is(errc::bad_name));
    }
    CHECK_THROWS(SharedState<Controller>::create(""), const Error&);
    CHECK_THROWS(SharedState<Controller>::create(std::string(300, 'x')), const Error&);
}

TEST_CASE("shared_block_untyped") {
    auto name = check::unique("block");
    auto b = sharedstate::SharedBlock::create(name, sharedstate::Layout::opaque(100));
    unsigned char buf[100];
    for (int i = 0; i < 100; ++i) buf[i] = (unsigned char)i;
    b.write(buf);
    unsigned char out[100] = {};
    auto o = sharedstate::SharedBlock::open(name);
    CHECK(o.layout().size == 100 && o.layout().fields[0].kind == sharedstate::Kind::Void);
    o.read(out);
    CHECK(std::memcmp(buf, out, 100) == 0);
    unsigned char mid[3];
    o.read_range(mid, 50, 3);
    CHECK(mid[0] == 50 && mid[2] == 52);
    sharedstate::detail::Patch p{98, 2, reinterpret_cast<const unsigned char*>("zz")};
    b.write_patches(&p, 1);
    o.read(out);
    CHECK(out[97] == 97 && out[98] == 'z' && out[99] == 'z');
    CHECK(o.version() == 2);
}

CHILD("writer") {
    auto st = SharedState<Controller>::open(args.at(0));
    int32_t base = std::stoi(args.at(1));
    for (int32_t i = 0; i < 200000; ++i) st.write(value(base + i));
    return 0;
}

TEST_CASE("two_writer_processes_no_torn_reads") {
    auto name = check::unique("twowriters");
    auto st = SharedState<Controller>::create(name);
    st.write(value(0));
    check::Child a({"writer", name, "1"});
    check::Child b({"writer", name, "1000000"});
    std::atomic<bool> done{false};
    long reads = 0, torn = 0;
    std::thread reader([&] {
        while (!done.load()) {
            Controller c = st.read();
            if (!consistent(c)) ++torn;
            ++reads;
        }
    });
    CHECK(a.wait() == 0);
    CHECK(b.wait() == 0);
    done = true;
    reader.join();
    std::printf("  %ld reads, %ld torn, version %llu\n", reads, torn, (unsigned long long)st.version());
    CHECK(torn == 0);
    CHECK(reads > 1000);
    CHECK(st.version() == 400001);  // every write of both processes counted, none lost
}

CHILD("big_writer") {
    auto st = SharedState<Big>::open(args.at(0));
    Big v;
    for (uint32_t i = 1;; ++i) {
        v.tag = i;
        for (auto& f : v.fill) f = i;
        st.write(v);
    }
}

TEST_CASE("killed_writer_lock_taken_over") {
    auto name = check::unique("killed");
    auto st = SharedState<Big>::create(name);
    uint64_t recovered = 0;
    for (int round = 0; round < 8; ++round) {
        check::Child w({"big_writer", name});
        while (st.version() < 50) check::sleep_ms(1);
        check::sleep_ms(1 + round * 3);
        w.kill();
        w.wait();
        Big r = st.read();
        bool same = true;
        for (auto f : r.fill) same = same && f == r.tag;
        CHECK(same);
        Big mine{};
        mine.tag = 7;
        for (auto& f : mine.fill) f = 7;
        st.write(mine);  // takes the dead owner's lock over if it held it
        CHECK(st.read().fill[4094] == 7);
        recovered = st.block().recoveries();
    }
    std::printf("  recoveries: %llu of 8 kills landed inside a write\n", (unsigned long long)recovered);
    CHECK(st.block().lock_owner() == 0);
}

CHILD("hold_and_exit") {
    auto st = SharedState<Controller>::create(args.at(0));
    st.write(value(41));
    check::sleep_ms(300);
    return 0;  // exits without unlinking: the holder in the parent keeps it alive
}

TEST_CASE("segment_outlives_its_creator_while_held") {
    auto name = check::unique("lifetime");
    check::Child c({"hold_and_exit", name});
    std::unique_ptr<SharedState<Controller>> st;
    for (int i = 0; i < 200 && !st; ++i) {
        try {
            st.reset(new SharedState<Controller>(SharedState<Controller>::open(name)));
        } catch (const std::exception&) {
            check::sleep_ms(5);
        }
    }
    CHECK(st != nullptr);
    if (!st) { c.wait(); return; }
    while (st->version() == 0) check::sleep_ms(1);
    CHECK(c.wait() == 0);
    CHECK(st->read().x == 41);
    st->close();
    st.reset();
    CHECK_THROWS(SharedState<Controller>::open(name), const std::system_error&);  // gone with its last holder
}

CHILD("waiter") {
    auto st = SharedState<Controller>::open(args.at(0));
    uint64_t v = st.wait(0, std::chrono::seconds(20));
    return v >= 1 && st.read().x == 9 ? 0 : 1;
}

TEST_CASE("wait_wakes_another_process") {
    auto name = check::unique("wake");
    auto st = SharedState<Controller>::create(name);
    check::Child c({"waiter", name});
    check::sleep_ms(200);
    st.write(value(9));
    CHECK(c.wait() == 0);
}

TEST_CASE("corrupt_header_is_an_error") {
    auto name = check::unique("corrupt");
    auto b = sharedstate::SharedBlock::attach_raw(name, sharedstate::Layout::opaque(4096), true);
    unsigned char junk[4096];
    for (int i = 0; i < 4096; ++i) junk[i] = (unsigned char)(i * 7);
    std::memcpy(junk, "SHSTATE1", 8);
    b.write(junk);
    try {
        sharedstate::SharedBlock::open(name);
        CHECK(false);
    } catch (const Error& e) {
        CHECK(e.is(errc::corrupt_segment));
    }
    std::memcpy(junk, "SHQUEUE1", 8);
    b.write(junk);
    try {
        sharedstate::SharedBlock::open(name);
        CHECK(false);
    } catch (const Error& e) {
        CHECK(e.is(errc::wrong_kind));
    }
    b.close();
    sharedstate::SharedBlock::unlink(name);
}

// Large payloads (issue 11): the word copies at every alignment and length, and a writer
// thread storming a multi-MiB payload while readers check that every copy is one write.
TEST_CASE("ranges_at_every_alignment") {
    auto name = check::unique("ranges");
    const uint32_t size = 1000 + 61;  // ends mid-word
    auto b = sharedstate::SharedBlock::create(name, sharedstate::Layout::opaque(size));
    std::vector<unsigned char> all(size), out(size + 16);
    for (uint32_t i = 0; i < size; ++i) all[i] = (unsigned char)(i * 7 + 1);
    b.write(all.data());
    bool ok = true;
    for (uint32_t off : {0u, 1u, 3u, 7u, 8u, 9u, 63u, 64u, 65u, 130u})
        for (uint32_t len : {0u, 1u, 5u, 7u, 8u, 9u, 15u, 16u, 63u, 64u, 65u, 71u, 200u, 513u, 931u}) {
            if (off + len > size) continue;
            std::fill(out.begin(), out.end(), 0xEE);
            b.read_range(out.data() + 3, off, len);  // an unaligned destination
            ok = ok && std::memcmp(out.data() + 3, all.data() + off, len) == 0 && out[2] == 0xEE && out[3 + len] == 0xEE;
            // and a patch of the same range: its neighbours keep their bytes
            std::vector<unsigned char> src(len + 1);
            for (uint32_t i = 0; i < len; ++i) src[i + 1] = (unsigned char)(255 - i);
            sharedstate::detail::Patch p{off, len, src.data() + 1};  // an unaligned source
            b.write_patches(&p, 1);
            std::vector<unsigned char> want = all;
            std::memcpy(want.data() + off, src.data() + 1, len);
            std::vector<unsigned char> got(size);
            b.read(got.data());
            ok = ok && got == want;
            b.write(all.data());
        }
    CHECK(ok);
}

struct Frame8M {
    uint64_t tag;
    uint32_t fill[(8u << 20) / 4 - 2];
};
SHAREDSTATE_DESCRIBE(Frame8M, tag, fill);

TEST_CASE("large_payload_never_torn_with_threads") {
    auto name = check::unique("large");
    auto st = SharedState<Frame8M>::create(name);
    auto frame = std::make_unique<Frame8M>();
    std::atomic<bool> done{false};
    std::atomic<long> writes{0};
    std::thread writer([&] {  // a full-speed writer thread, each write one constant fill
        auto w = std::make_unique<Frame8M>();
        for (uint32_t k = 1; !done.load(); ++k) {
            w->tag = k;
            std::fill(std::begin(w->fill), std::end(w->fill), k);
            st.write(*w);
            writes.fetch_add(1);
        }
    });
    auto other = SharedState<Frame8M>::open(name);
    auto& blk = other.block();
    long reads = 0, torn = 0, changes = 0;
    uint64_t last = ~0ull;
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(3);
    std::vector<uint32_t> part(4096);
    while (std::chrono::steady_clock::now() < until || reads < 20) {
        other.read(*frame);  // the whole 8 MiB, straight into *frame
        bool one = true;
        for (uint32_t v : frame->fill) one = one && v == uint32_t(frame->tag);
        torn += !one;
        changes += frame->tag != last;
        last = frame->tag;
        // a range from the middle, through the generic path
        uint64_t seq = 0;
        CHECK(blk.latch().read(part.data(), 8 + 4 * 100001, 4 * part.size(), &seq));
        for (uint32_t v : part) torn += v != part[0];
        ++reads;
    }
    done = true;
    writer.join();
    CHECK(torn == 0);
    CHECK(reads >= 20);
    CHECK(writes.load() > 1);
    std::fprintf(stderr, "large_payload: %ld reads, %ld writes, %ld changes seen, %ld torn\n", reads, writes.load(),
                 changes, torn);
}

CHECK_MAIN()
