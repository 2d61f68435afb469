// Queue and Mailslot bindings (filled in by the Queue work).
#include "common.hpp"

namespace sharedstate_py {
void bind_queue(py::module_&) {}
}  // namespace sharedstate_py
