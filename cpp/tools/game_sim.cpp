// sharedstate-sim: a stand-in for the game/controller process. It creates a state segment
// with the C++ API and writes the controller's x, y and buttons at a fixed rate, with a
// frame counter and the send time so that the reader can measure its wake-up latency.
//
//   sharedstate-sim NAME [seconds=3] [rate_hz=1000]
// rate_hz 0 writes as fast as it can with checkable values (x == y == frame, is_pressing ==
// frame is odd, is_open == !is_pressing): the tests use it to look for torn snapshots.
#include <sharedstate/sharedstate.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

struct DemoController {
    int32_t x;
    int32_t y;
    bool is_open;
    bool is_running;
    bool is_pressing;
    uint32_t frame;       // increments every write
    uint64_t sent_ns;     // monotonic clock at the write (same clock as Python's time.monotonic_ns)
};
SHAREDSTATE_DESCRIBE(DemoController, x, y, is_open, is_running, is_pressing, frame, sent_ns);

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: sharedstate-sim NAME [seconds=3] [rate_hz=1000]\n");
        return 2;
    }
    const std::string name = argv[1];
    const double seconds = argc > 2 ? std::atof(argv[2]) : 3.0;
    const double rate = argc > 3 ? std::atof(argv[3]) : 1000.0;
    try {
        auto st = sharedstate::SharedState<DemoController>::create(name);
        std::printf("ready %s\n", name.c_str());
        std::fflush(stdout);
        using clock = std::chrono::steady_clock;
        const auto period = std::chrono::nanoseconds(rate > 0 ? int64_t(1e9 / rate) : 0);
        const auto start = clock::now();
        auto next = start;
        for (uint32_t frame = 1;; ++frame) {
            auto now = clock::now();
            double t = std::chrono::duration<double>(now - start).count();
            if (t >= seconds) break;
            DemoController c{};
            c.frame = frame;
            c.is_running = true;
            if (rate <= 0) {  // stress mode: every field derived from the frame
                c.x = c.y = int32_t(frame);
                c.is_pressing = frame & 1;
                c.is_open = !c.is_pressing;
                c.sent_ns = frame * 3ull;
                st.write(c);
                continue;
            }
            c.x = int32_t(400 + 300 * std::cos(t * 2.0));
            c.y = int32_t(300 + 200 * std::sin(t * 2.0));
            c.is_open = true;
            c.is_pressing = (frame / 250) % 2 == 1;
            c.sent_ns = uint64_t(sharedstate::detail::os::monotonic_ns());
            st.write(c);
            next += period;
            // Sleep most of the period, spin the rest: a steady 1 kHz without a busy core.
            auto until = next - std::chrono::microseconds(200);
            if (until > clock::now()) std::this_thread::sleep_until(until);
            while (clock::now() < next) {}
        }
        std::printf("done %s\n", name.c_str());
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "sharedstate-sim: %s\n", e.what());
        return 1;
    }
}
