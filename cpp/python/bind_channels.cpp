// Pipe, PipeServer and Semaphore bindings (filled in by the channels work).
#include "common.hpp"

namespace sharedstate_py {
void bind_channels(py::module_&) {}
}  // namespace sharedstate_py
