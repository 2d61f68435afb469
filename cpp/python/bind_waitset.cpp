// WaitSet for Python: ws.add(obj, since=None), ws.remove(obj), ws.wait(timeout=None) -> list,
// ws.fileno() (Linux) / ws.handle (Windows). No logic: sharedstate/waitset.hpp does the waiting.
//
// Free-threading: the C++ WaitSet is thread-safe and owned through a shared_ptr that never
// changes; the Python-side member list (id -> object, in the order added) is guarded by a
// std::mutex and only touched with the thread attached to the interpreter.
#include <pybind11/pybind11.h>

#include <algorithm>
#include <memory>
#include <mutex>
#include <sharedstate/waitset.hpp>
#include <unordered_set>
#include <utility>
#include <vector>

#include "common.hpp"

namespace sharedstate_py {

bool waitset_source_state(py::handle o, sharedstate::detail::WaitSource& out);    // state_type.cpp
bool waitset_source_queue(py::handle o, sharedstate::detail::WaitSource& out);    // bind_queue.cpp
bool waitset_source_channel(py::handle o, sharedstate::detail::WaitSource& out);  // bind_channels.cpp

// More member kinds (e.g. Frames in bind_frames.cpp) register here at bind time, with the
// declaration `void register_wait_source(bool (*)(py::handle, sharedstate::detail::WaitSource&));`:
// the function fills the source and returns true when `o` is one of its objects.
using WaitSourceFn = bool (*)(py::handle, sharedstate::detail::WaitSource&);
namespace {
std::mutex& extra_sources_mu() {
    static std::mutex m;
    return m;
}
std::vector<WaitSourceFn>& extra_sources() {
    static std::vector<WaitSourceFn> v;
    return v;
}
}  // namespace
void register_wait_source(WaitSourceFn fn) {
    std::lock_guard<std::mutex> g(extra_sources_mu());
    extra_sources().push_back(fn);
}

namespace {

using sharedstate::WaitSet;

struct PyWaitSet {
    std::shared_ptr<WaitSet> ws = std::make_shared<WaitSet>();
    std::mutex mu;
    std::vector<std::pair<uint64_t, py::object>> members;  // in the order added

    uint64_t id_of(py::handle o) {
        std::lock_guard<std::mutex> g(mu);
        for (auto& m : members)
            if (m.second.ptr() == o.ptr()) return m.first;
        return 0;
    }
};

sharedstate::detail::WaitSource source_of(py::handle o) {
    sharedstate::detail::WaitSource s;
    if (waitset_source_state(o, s) || waitset_source_queue(o, s) || waitset_source_channel(o, s)) return s;
    std::vector<WaitSourceFn> more;
    {
        std::lock_guard<std::mutex> g(extra_sources_mu());
        more = extra_sources();
    }
    for (WaitSourceFn fn : more)
        if (fn(o, s)) return s;
    // Anything else that knows how to be waited on (e.g. a Python wrapper) may say which
    // compiled object stands for it.
    if (py::hasattr(o, "_wait_target")) {
        py::object t = o.attr("_wait_target")();
        if (t.ptr() != o.ptr()) return source_of(t);
    }
    throw py::type_error("WaitSet.add: cannot wait on " + std::string(py::str(py::type::handle_of(o).attr("__name__"))) +
                         " (SharedState, Frames, Queue, Mailslot, Pipe, PipeServer or Semaphore)");
}

}  // namespace

void bind_waitset(py::module_& m) {
    m.def(
        "_wait_fd",
        [](py::object obj) -> int {
#if defined(_WIN32)
            (void)obj;
            return -1;
#else
            return source_of(obj).fd;
#endif
        },
        py::arg("obj"),
        "The descriptor an event loop can watch for obj (Linux pipes and servers), else -1 (sharedstate._aio).");
    py::class_<PyWaitSet>(m, "WaitSet",
                          "Wait on many objects at once: ws.add(obj, since=None); ws.wait(timeout=None) -> the ready "
                          "objects in the order added (TimeoutError when none became ready; timeout=0 polls).\n"
                          "Members: SharedState (ready when its version passes the one last reported, or `since`), "
                          "Queue and Mailslot (a message available), Pipe (a message, or the peer gone), PipeServer "
                          "(a client waiting), Semaphore (count > 0; readiness only: acquire it yourself).")
        .def(py::init<>())
        .def(
            "add",
            [](PyWaitSet& self, py::object obj, py::object since) {
                auto src = source_of(obj);
                uint64_t s = 0;
                if (!since.is_none()) {
                    long long v = since.cast<long long>();
                    if (v < 0) throw py::value_error("WaitSet.add: since must be >= 0");
                    if (!src.is_version()) throw py::value_error("WaitSet.add: since is only for version-based objects (SharedState, Frames)");
                    s = uint64_t(v);
                }
                std::lock_guard<std::mutex> g(self.mu);
                uint64_t id = self.ws->add_source(std::move(src), since.is_none() ? nullptr : &s);
                for (auto& e : self.members)
                    if (e.first == id) return;
                self.members.emplace_back(id, obj);
            },
            py::arg("obj"), py::arg("since") = py::none(),
            "add(obj, since=None): adds a member (again: updates `since`). A SharedState is ready once its "
            "version passes `since` (default: its version now).")
        .def(
            "remove",
            [](PyWaitSet& self, py::object obj) {
                py::object drop;  // released after the lock
                {
                    std::lock_guard<std::mutex> g(self.mu);
                    auto it = std::find_if(self.members.begin(), self.members.end(),
                                           [&](const std::pair<uint64_t, py::object>& e) { return e.second.ptr() == obj.ptr(); });
                    if (it == self.members.end()) throw py::key_error("WaitSet.remove: not a member");
                    self.ws->remove(it->first);
                    drop = std::move(it->second);
                    self.members.erase(it);
                }
            },
            py::arg("obj"), "remove(obj): KeyError if it is not a member. A wait in progress stops watching it.")
        .def(
            "discard",
            [](PyWaitSet& self, py::object obj) {
                py::object drop;
                std::lock_guard<std::mutex> g(self.mu);
                for (auto it = self.members.begin(); it != self.members.end(); ++it)
                    if (it->second.ptr() == obj.ptr()) {
                        self.ws->remove(it->first);
                        drop = std::move(it->second);
                        self.members.erase(it);
                        return;
                    }
            },
            py::arg("obj"), "discard(obj): remove(obj) if it is a member.")
        .def(
            "wait",
            [](PyWaitSet& self, py::object timeout) {
                auto t = timeout_from(timeout);
                auto ws = self.ws;
                auto deadline = sharedstate::detail::Deadline::after(t.count());
                for (;;) {
                    auto left = deadline.forever() ? std::chrono::nanoseconds(-1) : std::chrono::nanoseconds(int64_t(deadline.left()));
                    std::vector<uint64_t> ids = without_gil([&] { return ws->wait(left, gil_released_interrupt()); });
                    std::unordered_set<uint64_t> ready(ids.begin(), ids.end());
                    py::list out;
                    {
                        std::lock_guard<std::mutex> g(self.mu);
                        for (auto& e : self.members)
                            if (ready.count(e.first)) out.append(e.second);
                    }
                    if (py::len(out)) return out;
                    // Every member reported was removed meanwhile: wait on.
                }
            },
            py::arg("timeout") = py::none(),
            "wait(timeout=None) -> list: the ready members in the order added, never empty "
            "(TimeoutError; timeout=0 polls). GIL released; Ctrl-C works.")
        .def("__len__", [](PyWaitSet& self) {
            std::lock_guard<std::mutex> g(self.mu);
            return self.members.size();
        })
        .def("__contains__", [](PyWaitSet& self, py::object obj) { return self.id_of(obj) != 0; })
        .def_property_readonly(
            "members",
            [](PyWaitSet& self) {
                py::list out;
                std::lock_guard<std::mutex> g(self.mu);
                for (auto& e : self.members) out.append(e.second);
                return out;
            },
            "The members, in the order added.")
        // Both names exist everywhere (one stub for both OSes); each works on its own OS.
        .def_property_readonly(
            "handle",
            [](PyWaitSet& self) -> uintptr_t {
#if defined(_WIN32)
                return reinterpret_cast<uintptr_t>(self.ws->handle());
#else
                (void)self;
                throw py::attribute_error("WaitSet.handle is the Windows event; on Linux use fileno()");
#endif
            },
            "Windows: a waitable event (HANDLE as an int), signalled while a member is ready "
            "(QWinEventNotifier, WaitForMultipleObjects); a wait() that reports clears it.")
        .def(
            "fileno",
            [](PyWaitSet& self) -> int {
#if defined(_WIN32)
                (void)self;
                PyErr_SetString(py::module_::import("io").attr("UnsupportedOperation").ptr(),
                                "WaitSet.fileno() is the Linux descriptor; on Windows use ws.handle");
                throw py::error_already_set();
#else
                return self.ws->fileno();
#endif
            },
            "Linux: fileno() -> int, a descriptor that polls readable while a member is ready (selectors, "
            "asyncio add_reader, QSocketNotifier, GLib); a wait() that reports clears it. Do not read or close it. "
            "Windows: io.UnsupportedOperation (use handle).")
        .def("__repr__", [](PyWaitSet& self) {
            std::lock_guard<std::mutex> g(self.mu);
            return "<sharedstate.WaitSet of " + std::to_string(self.members.size()) + " members>";
        });
}

}  // namespace sharedstate_py
