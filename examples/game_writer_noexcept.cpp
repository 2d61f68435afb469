// The game side built as many engines build it: exceptions off (-fno-exceptions, or
// /EHs-c- /D_HAS_EXCEPTIONS=0 with MSVC). Every call takes a sharedstate::ErrorInfo& and
// reports failures there; nothing throws, nothing terminates behind the game's back.
//
//   game_writer_noexcept NAME [seconds=5] [rate_hz=100] [--check]
//   python read_game.py NAME          (in another terminal)
//
// --check (CI): at the end, open NAME again as a reader and verify the last frame landed;
// also show that a second writer's create reports "exists" and a wrong layout
// errc::layout_mismatch, by error code. Exit 0 on success.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "controller.hpp"

#if defined(__cpp_exceptions) || defined(__EXCEPTIONS) || defined(_CPPUNWIND)
#error "this example is meant to be compiled with exceptions disabled"
#endif

namespace ss = sharedstate;

// Some other struct: opening NAME with it is a layout mismatch.
struct Other {
    double a;
};
SHAREDSTATE_DESCRIBE(Other, a);

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: game_writer_noexcept NAME [seconds=5] [rate_hz=100] [--check]\n");
        return 2;
    }
    const char* name = argv[1];
    const double seconds = argc > 2 ? std::atof(argv[2]) : 5.0;
    const double rate = argc > 3 ? std::atof(argv[3]) : 100.0;
    const bool check = argc > 4 && std::strcmp(argv[4], "--check") == 0;

    ss::ErrorInfo err;
    auto st = ss::SharedState<Controller>::create(name, err);
    if (err.exists()) {
        // Still held by a reader of an earlier run (a dead game's segment is replaced by
        // create itself): carry on with it, if its layout is ours.
        std::printf("'%s' exists; opening it\n", name);
        st = ss::SharedState<Controller>::open(name, err);
    }
    if (err.is(ss::errc::layout_mismatch)) {
        std::fprintf(stderr, "game_writer_noexcept: '%s' holds another struct: %s\n", name, err.what().c_str());
        return 3;
    }
    if (err) {  // bad name, corrupt segment, wrong kind, an OS error: the message says which
        std::fprintf(stderr, "game_writer_noexcept: %s\n", err.what().c_str());
        return 1;
    }
    st.write(Controller{0, 0, true, true, false}, err);
    std::printf("ready %s\n", name);
    std::fflush(stdout);

    const auto period = std::chrono::duration<double>(1.0 / rate);
    const auto start = std::chrono::steady_clock::now();
    int frame = 0, skipped = 0;
    Controller last{};
    for (;; ++frame) {
        double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        if (t >= seconds) break;
        Controller c{int32_t(400 + 300 * std::cos(t)), int32_t(300 + 200 * std::sin(t)), true, true,
                     (frame / 50) % 2 == 1};
        // A frame must never stall on another writer: wait 1 ms for the lock at most.
        if (!st.write(c, std::chrono::milliseconds(1), err)) {
            if (err.is(ss::errc::timeout) || err.is(ss::errc::would_block)) {
                ++skipped;  // another writer holds the lock (stopped in a debugger?): next frame
            } else {
                std::fprintf(stderr, "game_writer_noexcept: %s\n", err.what().c_str());
                return 1;
            }
        } else {
            last = c;
        }
        std::this_thread::sleep_until(start + period * (frame + 1));
    }
    // Tell readers we are done: read-modify-write under the lock.
    if (!st.update([](Controller& c) noexcept { c.is_running = false; }, err)) {
        std::fprintf(stderr, "game_writer_noexcept: %s\n", err.what().c_str());
        return 1;
    }
    last.is_running = false;
    uint64_t version = st.version(err);
    std::printf("game_writer_noexcept: %d frames (%d skipped), version %llu\n", frame, skipped,
                (unsigned long long)version);

    if (check) {
        int bad = 0;
        auto reader = ss::SharedState<Controller>::open(name, err);
        Controller got{};
        if (err || !reader.read(got, err) || std::memcmp(&got, &last, sizeof got) != 0) {
            std::fprintf(stderr, "check: reading back failed: %s\n", err ? err.what().c_str() : "different value");
            ++bad;
        }
        auto second = ss::SharedState<Controller>::create(name, err);
        if (!err.exists() || !second.closed()) {
            std::fprintf(stderr, "check: a second create did not report 'exists' (%s)\n", err.what().c_str());
            ++bad;
        }
        auto other = ss::SharedState<Other>::open(name, err);
        if (!err.is(ss::errc::layout_mismatch) || !other.closed()) {
            std::fprintf(stderr, "check: opening with another struct did not report layout_mismatch (%s)\n",
                         err.what().c_str());
            ++bad;
        }
        auto missing = ss::SharedState<Controller>::open(std::string(name) + "-missing", err);
        if (!err.not_found()) {
            std::fprintf(stderr, "check: opening a missing name did not report not found (%s)\n", err.what().c_str());
            ++bad;
        }
        std::printf("check: %s\n", bad ? "FAILED" : "ok");
        return bad ? 1 : 0;
    }
    return 0;
}
