// The controller struct the game publishes: 12 bytes, the same layout as Python's
// sharedstate.CONTROLLER (numpy: x <i4, y <i4, three bools, align=True).
#pragma once
#include <sharedstate/sharedstate.hpp>

#include <cstdint>

struct Controller {
    int32_t x;
    int32_t y;
    bool is_open;
    bool is_running;
    bool is_pressing;
};
SHAREDSTATE_DESCRIBE(Controller, x, y, is_open, is_running, is_pressing);
static_assert(sizeof(Controller) == 12, "the layout Python's sharedstate.CONTROLLER describes");
