// Portable pieces of segment lifetime shared by SharedBlock and Queue: recognising "it
// exists", waiting briefly for a creator, and removing a segment whose holders all died.
#pragma once
#include <string>

#include "../error.hpp"
#include "../format.hpp"
#include "../wait.hpp"
#include "os.hpp"

namespace sharedstate {
namespace detail {

// Sleep 100 us if the deadline has not passed; false once it has (a creator's grace period).
inline bool nap(const Deadline& d) {
    if (d.left() == 0) return false;
    os::sleep_ns(100000);
    return true;
}

// Removes the sharedstate segment NAME (a state or a queue: both keep magic and flags at the
// same offsets, see queue.hpp) if no process holds it and it is not persistent. Anything
// that is not ours, or that someone holds, is left alone. True if removed.
inline bool remove_stale_segment(const std::string& name) {
    if (os::SegmentFile::held(name)) return false;
    ErrorInfo err;
    bool others = true;
    auto f = os::SegmentFile::open(name, false, true, others, err);
    if (err || others) return false;
    uint64_t size = f.size(err);
    if (err || size < sizeof(format::Preamble)) return false;
    auto m = f.map(sizeof(format::Preamble), false, err);
    if (err) return false;
    const auto* p = reinterpret_cast<const format::Preamble*>(m->data());
    uint64_t magic = p->magic.load(std::memory_order_acquire);
    if (magic != format::kStateMagic && magic != format::kQueueMagic) return false;  // not ours
    if (p->flags & format::kFlagPersistent) return false;
    m.reset();
    return f.close(true);
}

}  // namespace detail
}  // namespace sharedstate
