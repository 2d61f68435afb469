// The game reads what Python writes: waits for each update (no polling, no busy core)
// and checks that every snapshot is consistent.
//
//   python py_writer.py ControllerMemory &
//   cpp_reader ControllerMemory
#include <chrono>
#include <cstdio>
#include <thread>

#include "controller.hpp"

using namespace std::chrono_literals;

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: cpp_reader NAME\n");
        return 2;
    }
    try {
        // The writer may start after us: retry while the name does not exist yet.
        auto open = [&] {
            for (int i = 0;; ++i) {
                try {
                    return sharedstate::SharedState<Controller>::open(argv[1]);
                } catch (const sharedstate::Error& e) {
                    bool missing = e.code() == std::errc::no_such_file_or_directory || e.is(sharedstate::errc::not_found);
                    if (i > 200 || !missing) throw;
                    std::this_thread::sleep_for(50ms);
                }
            }
        };
        auto st = open();
        st.update([](Controller& c) { c.is_open = true; });  // tell the writer we are here
        uint64_t v = st.version();
        long updates = 0, torn = 0;
        Controller c = st.read();
        while (c.is_running) {
            v = st.wait(v, 2s);  // throws errc::timeout if the writer went quiet
            c = st.read();
            ++updates;
            if (c.x != -c.y) ++torn;  // the writer always stores x == -y in one write
        }
        std::printf("cpp_reader: %ld updates, last x=%d y=%d, %ld inconsistent\n", updates, c.x, c.y, torn);
        return torn == 0 ? 0 : 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "cpp_reader: %s\n", e.what());
        return 1;
    }
}
