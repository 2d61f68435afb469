// _core.Peek / _core.peek: the read-only look at a segment (cpp/include/sharedstate/inspect.hpp)
// as plain Python dicts for the command line. No format knowledge here: every key comes from
// the C++ Description (its kind-specific facts are passed through by name).
#include <pybind11/pybind11.h>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <sharedstate/inspect.hpp>
#include <sharedstate/mailslot.hpp>

#include "common.hpp"

namespace sharedstate_py {
namespace {

namespace si = sharedstate::inspect;

py::object owner_obj(const si::Owner& o) {
    if (o.pid == 0) return py::none();
    py::dict d;
    d["pid"] = o.pid;
    d["alive"] = o.alive;
    return std::move(d);
}

py::list pid_list(const std::vector<uint32_t>& pids) {
    py::list l;
    for (uint32_t p : pids) l.append(p);
    return l;
}

// The Description as a dict (GIL held). Keys: see _core.pyi (Peek.describe).
py::dict to_dict(si::Description& d) {
    py::dict r;
    r["name"] = d.name;
    r["kind"] = d.kind;
    r["size"] = d.size;
    r["mode"] = d.mode;
    r["problem"] = d.problem.empty() ? py::object(py::none()) : py::object(py::str(d.problem));
    r["holders_known"] = d.holders_known;
    r["holders_alive"] = d.holders_alive;
    r["holder_pids"] = pid_list(d.holder_pids);
    if (d.kind == "other")
        r["first_bytes"] = py::bytes(reinterpret_cast<const char*>(d.first_bytes.data()), d.first_bytes.size());
    if (d.has_preamble) {
        r["format_version"] = d.format_version;
        r["persistent"] = d.persistent;
        r["creator_pid"] = d.creator_pid;
        r["created_unix_ns"] = d.created_unix_ns;
    }
    for (const auto& f : d.facts) {
        if (f.type == si::Fact::owner) r[py::str(f.key)] = owner_obj(f.who);
        else if (f.type == si::Fact::text) r[py::str(f.key)] = py::str(f.str);
        else r[py::str(f.key)] = f.value;
    }
    if (d.has_layout) {
        py::list fields;
        for (const auto& f : d.layout.fields) {
            py::dict e;
            e["name"] = f.name;
            e["kind"] = std::string(1, char(f.kind));
            e["itemsize"] = f.itemsize;
            e["offset"] = f.offset;
            e["count"] = f.count;
            fields.append(e);
        }
        r["layout"] = fields;
    }
    if (d.has_version) r["version"] = d.version;
    if (d.has_payload) {
        r["payload"] = py::bytes(reinterpret_cast<const char*>(d.payload.data()), d.payload.size());
        std::vector<unsigned char>().swap(d.payload);  // a large payload is not held twice for long
    }
    return r;
}

si::PeekOptions options(bool payload) {
    si::PeekOptions o;
    o.payload = payload;
    return o;
}

// A Python Peek owns its C++ Peek through a shared_ptr read under a per-object mutex
// (HELPERS.md's free-threading pattern): close() in one thread never frees what another
// thread's describe() is using.
struct PyPeek {
    std::mutex mu;
    std::shared_ptr<const si::Peek> p;
    std::string name;

    std::shared_ptr<const si::Peek> get() {
        std::lock_guard<std::mutex> g(mu);
        if (!p) throw py::value_error("peek of '" + name + "' is closed");
        return p;
    }
    void close() {
        std::shared_ptr<const si::Peek> last;
        {
            std::lock_guard<std::mutex> g(mu);
            last.swap(p);
        }
        without_gil([&] { last.reset(); return 0; });
    }
};

}  // namespace

void bind_peek(py::module_& m) {
    py::class_<PyPeek>(m, "Peek", "A read-only look at one segment: no holder lock, no lifetime change.")
        .def(py::init([](const std::string& name) {
                 auto self = std::make_unique<PyPeek>();
                 self->name = name;
                 self->p = without_gil([&] { return std::make_shared<const si::Peek>(si::Peek::open(name)); });
                 return self;
             }),
             py::arg("name"))
        .def("describe", [](PyPeek& self, bool payload) {
                 auto p = self.get();
                 si::Description d = without_gil([&] { return p->describe(options(payload)); });
                 return to_dict(d);
             }, py::arg("payload") = true)
        .def("still_named", [](PyPeek& self) {
                 auto p = self.get();
                 return without_gil([&] { return p->still_named(); });
             })
        .def("close", [](PyPeek& self) { self.close(); })
        .def("__enter__", [](py::object self) { return self; })
        .def("__exit__", [](PyPeek& self, py::args) { self.close(); })
        .def_property_readonly("name", [](PyPeek& self) { return self.name; })
        .def_property_readonly("size", [](PyPeek& self) { return self.get()->size(); })
        .def_property_readonly("closed", [](PyPeek& self) {
            std::lock_guard<std::mutex> g(self.mu);
            return self.p == nullptr;
        });

    m.def("peek", [](const std::string& name, bool payload) {
              si::Description d = without_gil([&] { return si::peek(name, options(payload)); });
              return to_dict(d);
          }, py::arg("name"), py::arg("payload") = true,
          "Describe the segment NAME (read-only; no holder lock). FileNotFoundError if missing.");

    py::list kinds;
    for (const auto& k : si::kinds()) kinds.append(py::str(k.kind));
    m.attr("PEEK_KINDS") = py::tuple(kinds);
    m.attr("MAILSLOT_SEGMENT_SUFFIX") = py::str(sharedstate::kMailslotSegmentSuffix);

    m.def("file_holders", [](const std::string& path) -> py::object {
#if defined(_WIN32)
              (void)path;
              return py::none();
#else
              std::vector<uint32_t> pids;
              bool ok = without_gil([&] { return sharedstate::detail::os::flock_holders(path, pids); });
              if (!ok) return py::none();
              return pid_list(pids);
#endif
          }, py::arg("path"),
          "Pids holding a flock on the file at PATH (Linux /proc/locks), or None if the OS cannot tell.");
}

}  // namespace sharedstate_py
