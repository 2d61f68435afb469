// The game side: publishes its controller state for Python, torn-free.
//
//   game_writer NAME [seconds=5] [rate_hz=100]
//   python read_game.py NAME          (in another terminal)
//
// What the seed program did with CreateFileMapping + a raw struct, done right: readers never
// see half a write, a killed game leaves the last complete value, and the segment goes away
// when the last process holding it exits.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "controller.hpp"

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: game_writer NAME [seconds=5] [rate_hz=100]\n");
        return 2;
    }
    const double seconds = argc > 2 ? std::atof(argv[2]) : 5.0;
    const double rate = argc > 3 ? std::atof(argv[3]) : 100.0;
    try {
        auto st = sharedstate::SharedState<Controller>::create(argv[1]);
        st.write(Controller{0, 0, true, true, false});
        std::printf("ready %s\n", argv[1]);
        std::fflush(stdout);
        const auto period = std::chrono::duration<double>(1.0 / rate);
        const auto start = std::chrono::steady_clock::now();
        int frame = 0;
        for (;; ++frame) {
            double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
            if (t >= seconds) break;
            // One atomic update: x and y always belong to the same frame for every reader.
            st.update([&](Controller& c) {
                c.x = int32_t(400 + 300 * std::cos(t));
                c.y = int32_t(300 + 200 * std::sin(t));
                c.is_pressing = (frame / 50) % 2 == 1;
            });
            std::this_thread::sleep_until(start + period * (frame + 1));
        }
        st.update([](Controller& c) { c.is_running = false; });  // tell readers we are done
        std::printf("game_writer: %d frames, version %llu\n", frame, (unsigned long long)st.version());
        return 0;
    } catch (const std::exception& e) {  // sharedstate::Error names the object and the OS call
        std::fprintf(stderr, "game_writer: %s\n", e.what());
        return 1;
    }
}
