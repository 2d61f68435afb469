// bench_state: ns per call of the C++ SharedState<Controller> (the 12-byte controller
// struct) in one process, against the floors under it. Prints a human table on stderr and
// one JSON line on stdout (bench/compare.py reads it).
//
//   bench_state [--rounds N] [--iters N]
//
// Each case runs `iters` calls per round; the figure is the median over rounds (min and
// max are reported as the spread). The value read is fed to an empty asm statement so the
// compiler cannot drop the loop; the loop itself costs < 0.5 ns a turn.
#include <sharedstate/sharedstate.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#if defined(_WIN32)
#include <process.h>
#define bench_getpid _getpid
#else
#include <unistd.h>
#define bench_getpid getpid
#endif

struct Controller {
    int32_t x;
    int32_t y;
    bool is_open;
    bool is_running;
    bool is_pressing;
};
SHAREDSTATE_DESCRIBE(Controller, x, y, is_open, is_running, is_pressing);
static_assert(sizeof(Controller) == 12, "the controller struct is 12 bytes");

template <class T>
inline void keep(const T& v) {
#if defined(__GNUC__) || defined(__clang__)
    asm volatile("" : : "r"(&v) : "memory");
#else
    static volatile const void* sink;
    sink = &v;
#endif
}

struct Stat {
    std::string name;
    double median, min, max;
};

template <class F>
Stat measure(const char* name, int rounds, long iters, F&& body) {
    std::vector<double> ns;
    for (long i = 0; i < iters / 10; ++i) body();  // warm-up
    for (int r = 0; r < rounds; ++r) {
        auto t0 = std::chrono::steady_clock::now();
        for (long i = 0; i < iters; ++i) body();
        auto t1 = std::chrono::steady_clock::now();
        ns.push_back(std::chrono::duration<double, std::nano>(t1 - t0).count() / double(iters));
    }
    std::sort(ns.begin(), ns.end());
    return Stat{name, ns[ns.size() / 2], ns.front(), ns.back()};
}

int main(int argc, char** argv) {
    int rounds = 15;
    long iters = 2000000;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!std::strcmp(argv[i], "--rounds")) rounds = (std::max)(1, std::atoi(argv[i + 1]));
        else if (!std::strcmp(argv[i], "--iters")) iters = (std::max)(1000L, std::atol(argv[i + 1]));
    }
    const std::string name = "sst-bench-cxx-" + std::to_string(bench_getpid());
    using sharedstate::SharedState;
    std::vector<Stat> out;
    try {
        auto st = SharedState<Controller>::create(name);
        st.write(Controller{200, 300, false, true, false});

        out.push_back(measure("SharedState<Controller>::read()", rounds, iters, [&] {
            Controller c = st.read();
            keep(c);
        }));
        int32_t i = 0;
        out.push_back(measure("SharedState<Controller>::write()", rounds, iters / 4, [&] {
            st.write(Controller{++i, i, true, false, true});
        }));
        out.push_back(measure("SharedState<Controller>::version()", rounds, iters, [&] {
            uint64_t v = st.version();
            keep(v);
        }));
        // Under read(): the latch alone (no open/raw checks), 12 bytes into a local.
        const auto& latch = st.block().latch();
        out.push_back(measure("floor: Latch::read of 12 bytes (no checks)", rounds, iters, [&] {
            Controller c;
            latch.read(&c, 0, sizeof c);
            keep(c);
        }));
        // The same latch protocol with the size known at compile time: what read() could
        // cost if SharedState<T>::read() loaded ceil(sizeof(T)/8) words into a local array
        // and did one fixed-size memcpy, instead of the generic byte-range loop.
        const unsigned char* slot0 = latch.slot0();
        const uint32_t stride = st.block().info().slot_stride;
        out.push_back(measure("floor: same latch protocol, size fixed at compile time", rounds, iters, [&] {
            Controller c;
            for (;;) {
                uint64_t s1 = latch.seq();  // acquire
                const auto* sw = reinterpret_cast<const std::atomic<uint64_t>*>(slot0 + (s1 & 1) * stride);
                uint64_t wv[2] = {sw[0].load(std::memory_order_relaxed), sw[1].load(std::memory_order_relaxed)};
                std::atomic_thread_fence(std::memory_order_acquire);
                if (latch.seq() == s1) {
                    std::memcpy(&c, wv, sizeof c);
                    break;
                }
            }
            keep(c);
        }));
        // Under that: two relaxed 8-byte loads, no sequence check (torn; the hardware floor).
        const auto* w = reinterpret_cast<const std::atomic<uint64_t>*>(st.block().data());
        out.push_back(measure("floor: 2 relaxed 8-byte loads (torn, no seqlock)", rounds, iters, [&] {
            uint64_t a = w[0].load(std::memory_order_relaxed), b = w[1].load(std::memory_order_relaxed);
            keep(a);
            keep(b);
        }));
        st.close();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_state: %s\n", e.what());
        return 1;
    }

    std::fprintf(stderr, "%-52s %10s %18s\n", "operation", "ns", "[min - max]");
    for (auto& s : out) std::fprintf(stderr, "%-52s %10.2f   [%.2f - %.2f]\n", s.name.c_str(), s.median, s.min, s.max);
    std::printf("{\"read_ns\": %.4f, \"write_ns\": %.4f, \"rounds\": %d, \"iters\": %ld, \"rows\": {", out[0].median,
                out[1].median, rounds, iters);
    for (size_t k = 0; k < out.size(); ++k)
        std::printf("%s\"%s\": {\"median\": %.4f, \"min\": %.4f, \"max\": %.4f}", k ? ", " : "", out[k].name.c_str(),
                    out[k].median, out[k].min, out[k].max);
    std::printf("}}\n");
    return 0;
}
