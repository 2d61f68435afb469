// sharedstate-sim: a stand-in for the game/controller process. It creates a state segment
// with the C++ API and writes the controller's x, y and buttons at a fixed rate, with a
// frame counter and the send time so that the reader can measure its wake-up latency.
//
//   sharedstate-sim NAME [seconds=3] [rate_hz=1000]
// rate_hz 0 writes as fast as it can with checkable values (x == y == frame, is_pressing ==
// frame is odd, is_open == !is_pressing): the tests use it to look for torn snapshots.
//
//   sharedstate-sim NAME [seconds=3] [rate_hz=60] --frames [WIDTHxHEIGHT=1920x1080]
// renders a moving RGBA test pattern straight into sharedstate::Frames slots (zero-copy)
// instead: `python -m sharedstate demo --frames`. Every pixel's alpha is the frame number's
// low byte, so a reader can check that a frame is whole.
#include <sharedstate/sharedstate.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

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

// The frames mode: a 1920x1080 (or WxH) RGBA image per frame, rendered in place.
static int run_frames(const std::string& name, double seconds, double rate, uint32_t w, uint32_t h) {
    using clock = std::chrono::steady_clock;
    auto fr = sharedstate::Frames::create(name, sharedstate::frame_spec<uint8_t>({h, w, 4}));
    std::printf("ready %s\n", name.c_str());
    std::fflush(stdout);
    const auto period = std::chrono::nanoseconds(rate > 0 ? int64_t(1e9 / rate) : 0);
    const auto start = clock::now();
    auto next = start;
    std::vector<uint32_t> row(w);
    uint64_t frames = 0;
    for (uint32_t frame = 1;; ++frame) {
        double t = std::chrono::duration<double>(clock::now() - start).count();
        if (t >= seconds) break;
        auto loan = fr.loan();
        // Moving diagonal gradient, a vertical bar sweeping across; alpha = frame number.
        const uint32_t shift = frame * 4, bar = uint32_t(t * 400) % w;
        for (uint32_t y = 0; y < h; ++y) {
            for (uint32_t x = 0; x < w; ++x) {
                uint32_t r = (x + shift) & 255, g = (y + shift / 2) & 255, b = (x >= bar && x < bar + 32) ? 255 : 0;
                row[x] = r | (g << 8) | (b << 16) | (uint32_t(frame & 255) << 24);
            }
            std::memcpy(loan.data() + size_t(y) * w * 4, row.data(), size_t(w) * 4);
        }
        loan.commit();
        ++frames;
        if (rate <= 0) continue;
        next += period;
        auto until = next - std::chrono::microseconds(200);
        if (until > clock::now()) std::this_thread::sleep_until(until);
        while (clock::now() < next) {}
    }
    std::printf("done %s %llu frames\n", name.c_str(), static_cast<unsigned long long>(frames));
    return 0;
}

int main(int argc, char** argv) {
    std::vector<std::string> args(argv, argv + argc);
    for (size_t i = 1; i < args.size(); ++i) {
        if (args[i] != "--frames") continue;
        uint32_t w = 1920, h = 1080;
        if (i + 1 < args.size() && std::sscanf(args[i + 1].c_str(), "%ux%u", &w, &h) == 2) args.erase(args.begin() + long(i) + 1);
        args.erase(args.begin() + long(i));
        if (args.size() < 2 || w == 0 || h == 0) {
            std::fprintf(stderr, "usage: sharedstate-sim NAME [seconds=3] [rate_hz=60] --frames [WIDTHxHEIGHT]\n");
            return 2;
        }
        try {
            return run_frames(args[1], args.size() > 2 ? std::atof(args[2].c_str()) : 3.0,
                              args.size() > 3 ? std::atof(args[3].c_str()) : 60.0, w, h);
        } catch (const std::exception& e) {
            std::fprintf(stderr, "sharedstate-sim: %s\n", e.what());
            return 1;
        }
    }
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
