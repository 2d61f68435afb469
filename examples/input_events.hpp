// Input events sent from Python to the game through a sharedstate::Queue.
// Python packs the same 16 bytes with struct.Struct("<IiiI").
#pragma once
#include <cstdint>

enum InputType : uint32_t { kKeyDown = 1, kKeyUp = 2, kMouseMove = 3, kQuit = 4 };

struct InputEvent {
    uint32_t type;  // InputType
    int32_t a;      // key code, or mouse dx
    int32_t b;      // mouse dy
    uint32_t seq;   // sender's counter: the queue keeps order, nothing is lost
};
static_assert(sizeof(InputEvent) == 16, "struct.Struct('<IiiI')");
