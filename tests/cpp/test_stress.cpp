// Stress of the seqlock against a real segment, meant to run under ThreadSanitizer and
// AddressSanitizer+UBSan (scripts/hardening.sh) as well as plainly:
//  - threads of one process: writers doing read-modify-write updates and whole writes,
//    readers checking an invariant across every field (a torn snapshot breaks it), a waiter,
//    and a thread that opens and closes its own holder of the segment all the time;
//  - processes: a writer child SIGKILLed / SIGSTOPped at random points while threads of
//    this process keep reading (never torn, never blocked) and then take the lock over.
// Sizes are chosen so the payload ends mid-word (store_range's partial-word path).
#include <sharedstate/sharedstate.hpp>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "check.hpp"

#if !defined(_WIN32)
#include <sys/wait.h>
#include <unistd.h>
#endif

namespace {

struct Payload {
    uint32_t n;          // the number of the write
    uint32_t lo;         // uint32_t(n * 3)
    uint16_t mid;        // uint16_t(n * 5)
    uint8_t u8;          // uint8_t(n * 7)
    bool odd;            // n & 1
    uint32_t words[5];   // n + i
    int32_t neg;         // -int32_t(n)
    char tail[7];        // 'a' + (n + i) % 26
};
// 44 bytes: the last 8-byte word of the payload is only half covered.
static_assert(sizeof(Payload) == 44, "payload ends mid-word");
SHAREDSTATE_DESCRIBE(Payload, n, lo, mid, u8, odd, words, neg, tail);

Payload make(uint32_t n) {
    Payload p{};
    p.n = n;
    p.lo = uint32_t(n * 3);
    p.mid = uint16_t(n * 5);
    p.u8 = uint8_t(n * 7);
    p.odd = n & 1;
    for (int i = 0; i < 5; ++i) p.words[i] = n + uint32_t(i);
    p.neg = -int32_t(n);
    for (int i = 0; i < 7; ++i) p.tail[i] = char('a' + (n + uint32_t(i)) % 26);
    return p;
}

bool consistent(const Payload& p) {
    Payload want = make(p.n);
    return std::memcmp(&want, &p, offsetof(Payload, tail) + sizeof p.tail) == 0;
}

int env_int(const char* name, int dflt) {
    const char* v = std::getenv(name);
    return v && *v ? std::atoi(v) : dflt;
}

using Block = sharedstate::SharedState<Payload>;

}  // namespace

// ------------------------------------------------------------------------------ threads
TEST_CASE("threads: writers, readers, waiter and open/close churn on one segment") {
    const std::string name = check::unique("stress");
    const int writers = 3, readers = 3;
    const int per_writer = env_int("SST_STRESS_WRITES", 20000);
    auto st = Block::create(name);
    st.write(make(0));
    const uint64_t v0 = st.version();

    std::atomic<bool> stop{false};
    std::atomic<uint64_t> reads{0}, torn{0}, backwards{0}, churns{0}, wakes{0}, errors{0};
    std::vector<std::thread> ts;
    for (int w = 0; w < writers; ++w)
        ts.emplace_back([&, w] {
            try {
                // Writer 0 shares the creator's object; the others open their own holder.
                Block own = Block::open(name);
                Block& b = w == 0 ? st : own;
                for (int i = 0; i < per_writer; ++i)
                    b.update([](Payload& p) { p = make(p.n + 1); });
            } catch (const std::exception& e) {
                std::fprintf(stderr, "writer %d: %s\n", w, e.what());
                ++errors;
            }
        });
    for (int r = 0; r < readers; ++r)
        ts.emplace_back([&, r] {
            try {
                Block own = Block::open(name);
                const Block& b = r == 0 ? st : own;
                uint64_t last_n = 0, last_v = 0;
                while (!stop.load(std::memory_order_relaxed)) {
                    Payload p = b.read();
                    uint64_t v = b.version();
                    if (!consistent(p)) ++torn;
                    if (p.n < last_n || v < last_v) ++backwards;
                    last_n = p.n;
                    last_v = v;
                    ++reads;
                }
            } catch (const std::exception& e) {
                std::fprintf(stderr, "reader %d: %s\n", r, e.what());
                ++errors;
            }
        });
    ts.emplace_back([&] {  // waiter: every wait returns a newer version or times out
        try {
            Block own = Block::open(name);
            uint64_t v = own.version();
            while (!stop.load(std::memory_order_relaxed)) {
                try {
                    uint64_t nv = own.wait(v, std::chrono::milliseconds(20));
                    if (nv <= v) ++errors;
                    v = nv;
                    ++wakes;
                } catch (const sharedstate::Error& e) {
                    if (!e.is(sharedstate::errc::timeout)) throw;
                }
            }
        } catch (const std::exception& e) {
            std::fprintf(stderr, "waiter: %s\n", e.what());
            ++errors;
        }
    });
    ts.emplace_back([&] {  // churn: open, read, close; the segment must survive it
        try {
            while (!stop.load(std::memory_order_relaxed)) {
                Block b = Block::open(name);
                if (!consistent(b.read())) ++torn;
                b.close();
                ++churns;
            }
        } catch (const std::exception& e) {
            std::fprintf(stderr, "churn: %s\n", e.what());
            ++errors;
        }
    });
    for (int w = 0; w < writers; ++w) ts[size_t(w)].join();
    stop = true;
    for (size_t i = size_t(writers); i < ts.size(); ++i) ts[i].join();

    Payload end = st.read();
    std::printf("threads: %llu reads, %llu wakes, %llu open/close, final n=%llu\n", (unsigned long long)reads.load(),
                (unsigned long long)wakes.load(), (unsigned long long)churns.load(), (unsigned long long)end.n);
    CHECK(errors == 0);
    CHECK(torn == 0);
    CHECK(backwards == 0);
    CHECK(reads > 0);
    CHECK(consistent(end));
    // The writer lock excluded every other writer: no increment was lost.
    CHECK(uint64_t(end.n) == uint64_t(writers) * uint64_t(per_writer));
    CHECK(st.version() == v0 + uint64_t(writers) * uint64_t(per_writer));
    CHECK(st.block().recoveries() == 0);
    st.close();
    CHECK(!sharedstate::detail::os::SegmentFile::exists(name));  // last holder removed it
}

// ------------------------------------------------------------------------------ processes
CHILD("writer") {
    // args: name; writes forever (until killed), each write the next n.
    auto st = Block::open(args.at(0));
    for (;;) st.update([](Payload& p) { p = make(p.n + 1); });
}

TEST_CASE("processes: writer SIGKILLed / SIGSTOPped mid-write; readers never torn, never blocked") {
#if defined(_WIN32)
    return;  // kill/stop are POSIX here; Wine runs the thread case
#else
    const std::string name = check::unique("stresskill");
    const int rounds = env_int("SST_STRESS_ROUNDS", 12);
    auto st = Block::create(name);
    st.write(make(0));
    std::mt19937 rng(unsigned(::getpid()));

    std::atomic<bool> stop{false};
    std::atomic<uint64_t> reads{0}, torn{0};
    std::vector<std::thread> rs;
    for (int r = 0; r < 2; ++r)
        rs.emplace_back([&] {
            Block own = Block::open(name);
            while (!stop.load(std::memory_order_relaxed)) {
                if (!consistent(own.read())) ++torn;
                ++reads;
            }
        });

    int kills = 0, stops = 0, takeovers = 0, timeouts = 0;
    for (int round = 0; round < rounds; ++round) {
        check::Child c({"writer", name});
        uint64_t v = st.version();
        // Let it get going (under sanitizers a child starts slowly), then a random pause.
        for (int i = 0; i < 2000 && st.version() == v; ++i) check::sleep_ms(5);
        check::sleep_ms(int(rng() % 20));
        bool do_stop = (round % 3) == 2;
        if (do_stop) {
            c.stop();
            ++stops;
            // A stopped owner is alive: either we got the lock (it was stopped between
            // writes), or we time out naming it. Readers read on meanwhile.
            uint64_t before = reads.load();
            try {
                if (st.block().write_patches(nullptr, 0, std::chrono::milliseconds(100))) ++takeovers;
                else ++timeouts;
            } catch (const sharedstate::Error& e) {
                ++timeouts;
                CHECK(std::string(e.what()).find(std::to_string(c.pid())) != std::string::npos);
            }
            check::sleep_ms(20);
            CHECK(reads.load() > before);  // readers did not wait for the stopped writer
            c.kill();
            c.cont();
        } else {
            c.kill();
            ++kills;
        }
        c.wait();
        // A new writer takes over within the lock's liveness check period.
        Payload now = st.read();
        CHECK(consistent(now));
        st.update([](Payload& p) { p = make(p.n + 1); });
        ++takeovers;
        CHECK(consistent(st.read()));
        CHECK(st.read().n == now.n + 1);
    }
    stop = true;
    for (auto& t : rs) t.join();
    std::printf("processes: %d rounds (%d SIGKILL, %d SIGSTOP: %d lock timeouts), %llu reads, %llu recoveries\n",
                rounds, kills, stops, timeouts, (unsigned long long)reads.load(),
                (unsigned long long)st.block().recoveries());
    CHECK(torn == 0);
    CHECK(takeovers >= rounds);
    st.close();
    CHECK(!sharedstate::detail::os::SegmentFile::exists(name));
#endif
}

TEST_CASE("fork: a child has its own lock identity; one that dies holding the lock is taken over") {
#if defined(_WIN32)
    return;
#else
    const std::string name = check::unique("fork");
    auto st = Block::create(name);
    st.write(make(1));  // the parent's owner word is now computed (and cached)
    const uint64_t parent = sharedstate::detail::os::self_owner();
    std::fflush(nullptr);
    pid_t pid = ::fork();
    if (pid == 0) {
        // In the child: its own identity, then die inside a write, holding the lock.
        bool own = sharedstate::detail::os::self_owner() != parent &&
                   sharedstate::detail::os::owner_pid(sharedstate::detail::os::self_owner()) == uint32_t(::getpid());
        if (!own) ::_exit(3);
        auto c = Block::open(name);
        c.update([](Payload&) { ::_exit(0); });
        ::_exit(4);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(sharedstate::detail::os::owner_pid(st.block().lock_owner()) == uint32_t(pid));
    Payload p = make(2);
    sharedstate::SharedBlock::Patch patch{0, sizeof p, reinterpret_cast<const unsigned char*>(&p)};
    bool wrote = false;
    try {
        wrote = st.block().write_patches(&patch, 1, std::chrono::seconds(2));
    } catch (const sharedstate::Error& e) {
        std::fprintf(stderr, "takeover after fork: %s\n", e.what());
    }
    CHECK(wrote);
    CHECK(st.block().recoveries() == 1);
    CHECK(consistent(st.read()) && st.read().n == 2);
    st.close();
#endif
}

CHECK_MAIN()
