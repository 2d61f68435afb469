// The mailslot types both backends share (mailslot.hpp, detail/win32_mailslot.hpp), on their
// own so that either header compiles alone.
#pragma once
#include <cstdint>

namespace sharedstate {

struct MailslotInfo {
    int64_t next_size = -1;  // payload bytes of the next message; -1: none waiting
    int64_t count = -1;      // messages waiting; -1: the OS cannot tell
};

inline constexpr uint32_t kMailslotDefaultMaxMessage = 64 * 1024;
inline constexpr uint64_t kMailslotDefaultCapacity = uint64_t(1) << 20;
// Linux: the Queue segment behind the mailslot NAME is NAME + this (docs/FORMAT.md).
inline constexpr char kMailslotSegmentSuffix[] = ".mailslot";

}  // namespace sharedstate
