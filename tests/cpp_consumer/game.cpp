// The game side, as a consumer project writes it: one include, one target, no Python.
//   game NAME   -> creates NAME, writes, reads it back through a second handle, prints "ok"
#include <sharedstate/sharedstate.hpp>

#include <chrono>
#include <cstdint>
#include <cstdio>

struct Controller {
    int32_t x;
    int32_t y;
    bool is_open;
    bool is_running;
    bool is_pressing;
};
SHAREDSTATE_DESCRIBE(Controller, x, y, is_open, is_running, is_pressing);

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: game NAME\n");
        return 2;
    }
    try {
        auto st = sharedstate::SharedState<Controller>::create(argv[1]);
        st.write(Controller{200, 300, false, true, false});
        st.update([](Controller& c) { c.x += 1; });
        auto other = sharedstate::SharedState<Controller>::open(argv[1]);
        Controller now = other.read();
        uint64_t v = other.version();
        try {
            other.wait(v, std::chrono::milliseconds(10));
            return 1;  // nobody wrote: a wait that returns is wrong
        } catch (const sharedstate::Error& e) {
            if (e.code() != sharedstate::errc::timeout) throw;
        }
        if (now.x != 201 || now.y != 300 || !now.is_running || v != 2) {
            std::fprintf(stderr, "game: read back x=%d y=%d version=%llu\n", now.x, now.y, (unsigned long long)v);
            return 1;
        }
        std::printf("ok x=%d y=%d version=%llu\n", now.x, now.y, (unsigned long long)v);
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "game: %s\n", e.what());
        return 1;
    }
}
