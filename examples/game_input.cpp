// The game consumes input events that Python produces, through a Queue: ordered, bounded,
// no syscall on the fast path, and a producer that dies mid-message never delivers half of it.
//
//   game_input NAME
//   python send_input.py NAME      (in another terminal)
#include <chrono>
#include <cstdio>
#include <cstring>
#include <sharedstate/queue.hpp>

#include "input_events.hpp"

using namespace std::chrono_literals;

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: game_input NAME\n");
        return 2;
    }
    try {
        auto q = sharedstate::Queue::create(argv[1], 1 << 16);  // the game owns its input queue
        std::printf("ready %s\n", argv[1]);
        std::fflush(stdout);
        long events = 0, keys_down = 0, out_of_order = 0, dx = 0, dy = 0;
        uint32_t expect = 1;
        for (;;) {
            std::vector<unsigned char> msg = q.get(5s);  // errc::timeout if nobody sends
            InputEvent ev;
            if (msg.size() != sizeof ev) {
                std::fprintf(stderr, "game_input: a %zu-byte message is not an InputEvent\n", msg.size());
                return 1;
            }
            std::memcpy(&ev, msg.data(), sizeof ev);
            ++events;
            if (ev.seq != expect++) ++out_of_order;
            if (ev.type == kQuit) break;
            if (ev.type == kKeyDown) ++keys_down;
            if (ev.type == kMouseMove) { dx += ev.a; dy += ev.b; }
        }
        std::printf("game_input: %ld events, %ld keys down, mouse moved (%ld, %ld), %ld out of order\n", events,
                    keys_down, dx, dy, out_of_order);
        return out_of_order == 0 ? 0 : 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "game_input: %s\n", e.what());
        return 1;
    }
}
