// Frames bindings: `_core.FramesCore` (the handle), `_core.FrameLoan` (a writable buffer over
// a loaned slot) and `_core.FramePin` (a read-only buffer over a pinned frame). No frames
// logic lives here. Free-threading: a FramesCore owns its C++ Frames through a shared_ptr
// read under a per-object mutex; every call works on its own copy, so close() from another
// thread gives the clear "closed" error, never a use-after-free. A FramePin is immutable
// after construction and unpins when it is destroyed (numpy arrays over it keep it alive,
// and through its View the mapping, never the holder lock);
// a FrameLoan serializes its few calls with its own mutex. GIL released on every wait.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>
#include <memory>
#include <mutex>
#include <sharedstate/frames.hpp>

#include "common.hpp"

namespace sharedstate_py {
namespace {

using sharedstate::Field;
using sharedstate::FrameSpec;
using sharedstate::Frames;
using sharedstate::Kind;
using sharedstate::Layout;

// Field specs <-> Layout: the state's conversion (common.hpp), the element is described the same way.

struct PyFrames {
    mutable std::mutex m;
    std::shared_ptr<Frames> f;
    std::string name;

    std::shared_ptr<Frames> get() const {
        std::lock_guard<std::mutex> g(m);
        if (!f) throw py::value_error("frames '" + name + "' is closed");
        return f;
    }
};

struct FrameLoan {
    std::mutex m;
    std::shared_ptr<Frames> f;  // declared first: destroyed after the loan
    Frames::Loan loan;
    // The context-manager form (Frames.loan() in Python, FramesCore.loan_block): the loan is
    // taken by __enter__, which returns owner._array(self); __exit__ commits or cancels and
    // makes that array read-only. A weak reference: the array's base is this object.
    std::chrono::nanoseconds timeout{0};
    py::object owner;
    py::object array_ref;
    bool entered = false;
    bool has_committed = false;
    uint64_t committed = 0;
};

// Holds the pin only (the View keeps its own share of the mapping), not the Frames: an array
// kept alive after its block must not keep the segment's holder lock, so close() still
// removes the name when this was the last holder, as SharedState views allow.
struct FramePin {
    Frames::View view;
};

std::unique_ptr<PyFrames> wrap(Frames&& fr, const std::string& name) {
    auto p = std::make_unique<PyFrames>();
    p->f = std::make_shared<Frames>(std::move(fr));
    p->name = name;
    return p;
}

}  // namespace

void register_wait_source(bool (*)(py::handle, sharedstate::detail::WaitSource&));  // bind_waitset.cpp

// A WaitSet member: the FramesCore itself, or the Python Frames that holds one as `_core`.
static bool waitset_source_frames(py::handle o, sharedstate::detail::WaitSource& out) {
    py::handle core = o;
    if (!py::isinstance<PyFrames>(core)) {
        if (!py::hasattr(o, "_core")) return false;
        core = o.attr("_core");
        if (!py::isinstance<PyFrames>(core)) return false;
    }
    out = core.cast<const PyFrames&>().get()->wait_source();
    return true;
}

// FrameLoan.commit as a plain CPython method (METH_NOARGS) instead of a pybind11 function.
// A commit follows the writer's fill, and a big fill has evicted the caches and the TLB: the
// dispatcher's generic path (function records, argument loaders, type-info lookups) then costs
// ~17 µs of misses on our 2-vCPU VM for an 8 MiB frame, against ~1 µs warm (bench/README.md,
// "Frames across sizes"). This path touches the loan, the segment's header and little else.
// The method descriptor checks that self is a FrameLoan before the call.
// The FrameLoan inside self (a FrameLoan instance: the descriptor checked its type), or
// nullptr with TypeError set when it was never constructed.
static FrameLoan* loan_of(PyObject* self, const char* what) {
    auto* inst = reinterpret_cast<py::detail::instance*>(self);
    py::detail::value_and_holder vh = inst->get_value_and_holder(nullptr, false);
    if (!vh || !vh.holder_constructed()) {
        PyErr_Format(PyExc_TypeError, "FrameLoan.%s: the loan was not made by Frames.loan()", what);
        return nullptr;
    }
    return vh.value_ptr<FrameLoan>();
}

static PyObject* loan_commit_fast(PyObject* self, PyObject*) {
    FrameLoan* lp = loan_of(self, "commit");
    if (!lp) return nullptr;
    FrameLoan& l = *lp;
    try {
        std::lock_guard<std::mutex> g(l.m);
        return PyLong_FromUnsignedLongLong(l.loan.commit());
    } catch (const std::exception& e) {
        set_python_error(e);
        return nullptr;
    }
}

static PyMethodDef loan_commit_def = {"commit", loan_commit_fast, METH_NOARGS,
                                      "Publish the frame; returns its version."};

// __exit__ of the block form, the same kind of plain method: commit (or cancel when the block
// raised) first, then make the block's array read-only. Never suppresses the exception.
static PyObject* loan_exit_fast(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
    FrameLoan* lp = loan_of(self, "__exit__");
    if (!lp) return nullptr;
    FrameLoan& l = *lp;
    const bool clean = nargs == 0 || args[0] == Py_None;
    bool ok = true;
    py::object ref;
    try {
        std::lock_guard<std::mutex> g(l.m);
        ref = std::move(l.array_ref);  // under the lock: threads may share the object (no GIL)
        if (clean) {
            l.committed = l.loan.commit();
            l.has_committed = true;
        } else {
            l.loan.cancel();
        }
    } catch (const std::exception& e) {
        set_python_error(e);
        ok = false;
    }
    try {
        py::object a = ref ? ref() : py::object();
        if (a && !a.is_none()) a.attr("setflags")(py::arg("write") = false);
    } catch (py::error_already_set& e) {
        if (ok) {
            e.restore();
            return nullptr;
        }
    }
    if (!ok) return nullptr;
    Py_RETURN_NONE;
}

static PyMethodDef loan_exit_def = {"__exit__", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(loan_exit_fast)),
                                    METH_FASTCALL, "Commit the frame (cancel it if the block raised); the array becomes read-only."};

void bind_frames(py::module_& m) {
    register_wait_source(&waitset_source_frames);
    py::class_<FrameLoan> loan_cls(m, "FrameLoan", py::buffer_protocol());
    loan_cls
        .def_buffer([](FrameLoan& l) {
            std::lock_guard<std::mutex> g(l.m);
            if (!l.loan) throw py::value_error("the frame loan was committed or cancelled");
            return py::buffer_info(l.loan.data(), 1, py::format_descriptor<uint8_t>::format(), 1,
                                   {py::ssize_t(l.loan.size())}, {1}, false);
        })
        .def("cancel", [](FrameLoan& l) {
            std::lock_guard<std::mutex> g(l.m);
            l.loan.cancel();
        }, "Drop the frame (never published).")
        .def_property_readonly("version", [](FrameLoan& l) -> py::object {
            std::lock_guard<std::mutex> g(l.m);
            if (l.has_committed) return py::int_(l.committed);
            if (l.owner && !l.loan) return py::none();  // block form: None until committed
            return py::int_(l.loan.version());
        }, "The version the frame is (or, before commit, will be) published as; None for a block not yet committed")
        .def("__enter__", [](py::object self) -> py::object {
            FrameLoan& l = self.cast<FrameLoan&>();
            std::shared_ptr<Frames> f;
            {
                std::lock_guard<std::mutex> g(l.m);
                if (!l.owner) throw py::type_error("this frame loan is not a block: use it directly (commit/cancel)");
                if (l.entered) throw py::value_error("a frame loan block is entered once: call loan() again");
                l.entered = true;
                f = l.f;
            }
            const auto ns = l.timeout;
            Frames::Loan loan = without_gil([&] { return f->loan(ns, gil_released_interrupt()); });
            if (!loan) sharedstate::fail(sharedstate::errc::timeout, "loan of frames '" + f->name() + "': the writer lock is busy");
            {
                std::lock_guard<std::mutex> g(l.m);
                l.loan = std::move(loan);
            }
            try {
                py::object a = l.owner.attr("_array")(self);
                py::object ref = py::weakref(a);
                std::lock_guard<std::mutex> g(l.m);
                l.array_ref = std::move(ref);
                return a;
            } catch (...) {
                std::lock_guard<std::mutex> g(l.m);
                l.loan.cancel();
                throw;
            }
        })
        .def("__len__", [](FrameLoan& l) {
            std::lock_guard<std::mutex> g(l.m);
            return l.loan.size();
        });

    {
        PyObject* descr = PyDescr_NewMethod(reinterpret_cast<PyTypeObject*>(loan_cls.ptr()), &loan_commit_def);
        if (!descr || PyObject_SetAttrString(loan_cls.ptr(), "commit", descr) != 0) {
            Py_XDECREF(descr);
            throw py::error_already_set();
        }
        Py_DECREF(descr);
        descr = PyDescr_NewMethod(reinterpret_cast<PyTypeObject*>(loan_cls.ptr()), &loan_exit_def);
        if (!descr || PyObject_SetAttrString(loan_cls.ptr(), "__exit__", descr) != 0) {
            Py_XDECREF(descr);
            throw py::error_already_set();
        }
        Py_DECREF(descr);
    }

    py::class_<FramePin>(m, "FramePin", py::buffer_protocol())
        .def_buffer([](FramePin& p) {
            return py::buffer_info(const_cast<unsigned char*>(p.view.data()), 1, py::format_descriptor<uint8_t>::format(),
                                   1, {py::ssize_t(p.view.size())}, {1}, true);
        })
        .def_property_readonly("version", [](const FramePin& p) { return p.view.version(); })
        .def_property_readonly("commit_ns", [](const FramePin& p) { return p.view.commit_ns(); },
                               "monotonic_ns() of the writer at commit (same clock as _core.monotonic_ns)")
        .def_property_readonly("slot", [](const FramePin& p) { return p.view.slot(); })
        .def("__len__", [](const FramePin& p) { return p.view.size(); });

    py::class_<PyFrames>(m, "FramesCore")
        .def_static("create", [](const std::string& name, std::vector<uint32_t> shape, py::sequence fields,
                                 uint32_t item_size, uint32_t align, bool scalar, uint32_t readers, bool exist_ok,
                                 bool persistent) {
            FrameSpec spec{std::move(shape), layout_from(fields, item_size, align), scalar};
            sharedstate::FramesOptions opt;
            opt.readers = readers;
            opt.exist_ok = exist_ok;
            opt.persistent = persistent;
            return wrap(without_gil([&] { return Frames::create(name, spec, opt); }), name);
        })
        .def_static("open", [](const std::string& name) {
            return wrap(without_gil([&] { return Frames::open(name); }), name);
        })
        .def_static("unlink", [](const std::string& name) { Frames::unlink(name); })
        .def("spec", [](const PyFrames& self) {
            auto f = self.get();
            const FrameSpec& s = f->spec();
            py::tuple shape(s.shape.size());
            for (size_t i = 0; i < s.shape.size(); ++i) shape[i] = py::int_(s.shape[i]);
            return py::make_tuple(shape, layout_to(s.element), s.element.size, s.element.align, s.scalar);
        }, "(shape, fields, item_size, align, scalar)")
        .def("loan", [](const PyFrames& self, py::object timeout) {
            auto f = self.get();
            auto ns = timeout_from(timeout);
            auto l = std::make_unique<FrameLoan>();
            l->f = f;
            l->loan = without_gil([&] { return f->loan(ns, gil_released_interrupt()); });
            if (!l->loan)  // timeout 0 and another writer holds the lock
                sharedstate::fail(sharedstate::errc::timeout, "loan of frames '" + f->name() + "': the writer lock is busy");
            return l;
        }, py::arg("timeout") = py::none())
        .def("loan_block", [](const PyFrames& self, py::object owner, py::object timeout) {
            auto l = std::make_unique<FrameLoan>();
            l->f = self.get();
            l->timeout = timeout_from(timeout);
            l->owner = std::move(owner);
            return l;
        }, py::arg("owner"), py::arg("timeout") = py::none(),
           "A loan taken when the block is entered: `with core.loan_block(frames, t) as a:` gives owner._array(loan)")
        .def("publish", [](const PyFrames& self, py::buffer data, py::object timeout) {
            auto f = self.get();
            auto ns = timeout_from(timeout);
            Py_buffer view;
            if (PyObject_GetBuffer(data.ptr(), &view, PyBUF_C_CONTIGUOUS) != 0) throw py::error_already_set();
            struct Release { Py_buffer* v; ~Release() { PyBuffer_Release(v); } } rel{&view};
            const void* p = view.buf;
            size_t n = size_t(view.len);
            return without_gil([&] { return f->publish(p, n, ns, gil_released_interrupt()); });
        }, py::arg("data"), py::arg("timeout") = py::none())
        .def("latest", [](const PyFrames& self) {
            auto f = self.get();
            auto p = std::make_unique<FramePin>();
            p->view = f->latest();
            return p;
        })
        .def_property_readonly("version", [](const PyFrames& self) { return self.get()->version(); })
        .def("wait", [](const PyFrames& self, uint64_t since, py::object timeout, py::object spin) {
            auto f = self.get();
            auto ns = timeout_from(timeout);
            auto sp = spin.is_none() ? std::chrono::nanoseconds(sharedstate::kDefaultSpin)
                                     : timeout_from(spin, "spin");
            if (sp.count() < 0) sp = std::chrono::nanoseconds(sharedstate::kDefaultSpin);
            return without_gil([&] { return f->wait(since, ns, sp, gil_released_interrupt()); });
        }, py::arg("since"), py::arg("timeout") = py::none(), py::arg("spin") = py::none())
        .def("info", [](const PyFrames& self) {
            auto f = self.get();
            const auto& i = f->info();
            py::dict d;
            d["name"] = f->name();
            d["kind"] = "frames";
            d["shape"] = py::cast(i.spec.shape);
            d["frame_bytes"] = i.frame_bytes;
            d["item_size"] = i.spec.element.size;
            d["readers"] = i.readers;
            d["slots"] = i.slot_count;
            d["segment_size"] = i.segment_size;
            d["persistent"] = f->persistent();
            d["creator_pid"] = i.creator_pid;
            d["created_unix_ns"] = i.created_unix_ns;
            d["version"] = f->version();
            d["pins_held"] = f->pins_held();
            d["recoveries"] = f->recoveries();
            d["reclaimed"] = f->reclaimed();
            uint64_t o = f->lock_owner();
            d["writer_pid"] = o ? py::object(py::int_(o >> 32)) : py::object(py::none());
            uint64_t lw = f->last_writer();
            d["last_writer_pid"] = lw ? py::object(py::int_(lw >> 32)) : py::object(py::none());
            return d;
        })
        .def_property_readonly("name", [](const PyFrames& self) { return self.name; })
        .def_property_readonly("closed", [](const PyFrames& self) {
            std::lock_guard<std::mutex> g(self.m);
            return !self.f;
        })
        .def("close", [](PyFrames& self) {
            std::shared_ptr<Frames> last;
            {
                std::lock_guard<std::mutex> g(self.m);
                last = std::move(self.f);
            }
            // Closes here unless a call in another thread, a loan or a pinned frame still holds it.
            without_gil([&] { last.reset(); return 0; });
        });

    // A bytearray that borrows another object's bytes for the length of one call: fn(ba).
    // zenoh-python 1.10 (one abi3 wheel) fills a payload or a shared-memory buffer only from
    // bytes or bytearray (no buffer protocol: zenoh-python#730), so without this a pinned frame
    // costs an extra 1 MiB copy into a bytearray before the copy into Zenoh's buffer. The
    // borrowed object is an ordinary bytearray whose storage pointers aim at src's buffer; it
    // cannot be resized meanwhile (one export is recorded, as a memoryview would), and after
    // fn it is emptied (size 0, no storage), so a reference fn kept sees b'' and nothing ever
    // frees or reaches the borrowed memory. If fn left a buffer export of its own on it (a
    // memoryview still alive), the bytearray and src are kept alive for good instead: a leak,
    // never a dangling pointer. Private to the bridge; src must be C-contiguous.
    m.def("_with_bytearray", [](py::handle src, py::handle fn) -> py::object {
        Py_buffer view;
        if (PyObject_GetBuffer(src.ptr(), &view, PyBUF_C_CONTIGUOUS) != 0) throw py::error_already_set();
        PyObject* ba = PyByteArray_FromStringAndSize(nullptr, 0);
        if (!ba) {
            PyBuffer_Release(&view);
            throw py::error_already_set();
        }
        auto* b = reinterpret_cast<PyByteArrayObject*>(ba);
        // what an empty bytearray has (NULL storage up to 3.14; 3.15 points into an empty bytes
        // object it holds): put back exactly, so the bytearray is an ordinary empty one again
        char* const empty_bytes = b->ob_bytes;
        char* const empty_start = b->ob_start;
        const Py_ssize_t empty_alloc = b->ob_alloc;
        b->ob_bytes = b->ob_start = static_cast<char*>(view.buf);
        b->ob_alloc = view.len;
        Py_SET_SIZE(b, view.len);
        b->ob_exports = 1;
        struct Restore {
            PyByteArrayObject* b;
            Py_buffer* view;
            char* bytes;
            char* start;
            Py_ssize_t alloc;
            ~Restore() {
                if (b->ob_exports != 1) {  // fn kept an export: keep b and src's buffer (a leak)
                    Py_INCREF(reinterpret_cast<PyObject*>(b));
                } else {
                    b->ob_bytes = bytes;
                    b->ob_start = start;
                    b->ob_alloc = alloc;
                    Py_SET_SIZE(b, 0);
                    b->ob_exports = 0;
                    PyBuffer_Release(view);
                }
                Py_DECREF(reinterpret_cast<PyObject*>(b));
            }
        } restore{b, &view, empty_bytes, empty_start, empty_alloc};
        PyObject* r = PyObject_CallOneArg(fn.ptr(), ba);
        if (!r) throw py::error_already_set();
        return py::reinterpret_steal<py::object>(r);
    }, py::arg("src"), py::arg("fn"),
       "fn(ba) with ba a bytearray borrowing src's bytes (no copy), emptied after the call (the bridge's shm path)");

    m.def("monotonic_ns", [] { return sharedstate::detail::os::monotonic_ns(); },
          "The library's monotonic clock in ns (the clock of FramePin.commit_ns), across processes.");
}

}  // namespace sharedstate_py
