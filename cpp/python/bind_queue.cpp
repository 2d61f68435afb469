// Queue and Mailslot bindings. The hot calls (put, get, get_into) are CPython METH_FASTCALL
// methods of a small static type, `_core.QueueCore` (pybind11's dispatcher alone would cost
// 50-100 ns a call); they first try once with the GIL held (no wait, no syscall) and only
// when they must wait release the GIL and block, interruptible by Ctrl-C. Everything else,
// and the Mailslot classes, go through pybind11. No queue logic lives here.
#include <pybind11/pybind11.h>

#include <cstring>
#include <memory>
#include <sharedstate/mailslot.hpp>
#include <sharedstate/queue.hpp>

#include "common.hpp"

namespace sharedstate_py {
namespace {

using sharedstate::Queue;

struct QueueCore {
    PyObject_HEAD
    std::shared_ptr<Queue>* holder;  // null until attached; reset by close()
    Queue* q;                        // == holder->get(), cached for the fast paths
    PyObject* weakrefs;
};

PyTypeObject QueueCoreType = {PyVarObject_HEAD_INIT(nullptr, 0)};

// Runs f(), turning C++ exceptions into a Python error. Returns false on error.
template <class F>
bool guarded(F&& f) {
    try {
        f();
        return true;
    } catch (const PythonErrorSet&) {
    } catch (py::error_already_set& e) {
        e.restore();
    } catch (const py::builtin_exception& e) {
        e.set_error();
    } catch (const std::exception& e) {
        set_python_error(e);
    }
    return false;
}

bool closed_error(QueueCore* s) {
    if (s->q) return false;
    PyErr_SetString(PyExc_ValueError, "operation on a closed Queue");
    return true;
}

// None -> -1 (forever); seconds -> ns. False with a Python error on a bad value.
bool parse_timeout(PyObject* o, int64_t& ns) {
    if (!o || o == Py_None) {
        ns = -1;
        return true;
    }
    double s = PyFloat_AsDouble(o);
    if (s == -1.0 && PyErr_Occurred()) return false;
    if (!(s >= 0)) {
        PyErr_SetString(PyExc_ValueError, "timeout must be None or >= 0 seconds");
        return false;
    }
    ns = s > 1e9 ? -1 : int64_t(s * 1e9);
    return true;
}

// (a, timeout=None) from FASTCALL arguments: `first` required, `timeout` positional or keyword.
bool parse_args(const char* fn, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames, int nfirst,
                PyObject** first, PyObject** timeout) {
    *timeout = nullptr;
    if (nargs > nfirst + 1) {
        PyErr_Format(PyExc_TypeError, "%s() takes at most %d arguments", fn, nfirst + 1);
        return false;
    }
    for (int i = 0; i < nfirst && i < nargs; ++i) first[i] = args[i];
    if (nargs == nfirst + 1) *timeout = args[nfirst];
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t i = 0; i < nkw; ++i) {
        PyObject* k = PyTuple_GET_ITEM(kwnames, i);
        if (PyUnicode_CompareWithASCIIString(k, "timeout") == 0 && !*timeout) {
            *timeout = args[nargs + i];
        } else {
            PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument %R", fn, k);
            return false;
        }
    }
    if (nargs < nfirst) {
        PyErr_Format(PyExc_TypeError, "%s() missing a required argument", fn);
        return false;
    }
    return true;
}

// put(data, timeout=None): one whole message, copied in.
PyObject* queue_put(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    auto* s = reinterpret_cast<QueueCore*>(self);
    PyObject* data = nullptr;
    PyObject* tmo = nullptr;
    if (!parse_args("put", args, nargs, kwnames, 1, &data, &tmo)) return nullptr;
    if (closed_error(s)) return nullptr;
    int64_t ns = -1;
    if (!parse_timeout(tmo, ns)) return nullptr;
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) != 0) return nullptr;
    bool ok = guarded([&] {
        Queue* q = s->q;
        if (q->try_put(view.buf, size_t(view.len))) return;
        std::shared_ptr<Queue> keep = *s->holder;  // alive while the GIL is released
        without_gil([&] {
            keep->put(view.buf, size_t(view.len), std::chrono::nanoseconds(ns), gil_released_interrupt());
            return 0;
        });
    });
    PyBuffer_Release(&view);
    if (!ok) return nullptr;
    Py_RETURN_NONE;
}

// Consume one message with fn(payload, len) under the GIL; wait (GIL released) while none.
template <class Fn>
bool consume(QueueCore* s, int64_t ns, Fn&& fn) {
    return guarded([&] {
        if (s->q->try_consume(fn)) return;
        std::shared_ptr<Queue> keep = *s->holder;
        auto deadline = sharedstate::detail::Deadline::after(ns);
        for (;;) {
            int64_t left = deadline.forever() ? -1 : int64_t(deadline.left());
            without_gil([&] {
                keep->wait_ready(std::chrono::nanoseconds(left), gil_released_interrupt());
                return 0;
            });
            if (keep->try_consume(fn)) return;  // another thread may have taken it: wait again
        }
    });
}

PyObject* queue_get(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    auto* s = reinterpret_cast<QueueCore*>(self);
    PyObject* tmo = nullptr;
    if (!parse_args("get", args, nargs, kwnames, 0, nullptr, &tmo)) return nullptr;
    if (closed_error(s)) return nullptr;
    int64_t ns = -1;
    if (!parse_timeout(tmo, ns)) return nullptr;
    PyObject* out = nullptr;
    bool ok = consume(s, ns, [&](const unsigned char* p, size_t n) {
        out = PyBytes_FromStringAndSize(reinterpret_cast<const char*>(p), Py_ssize_t(n));
        if (!out) throw PythonErrorSet{};  // the message stays queued
    });
    if (!ok) {
        Py_XDECREF(out);
        return nullptr;
    }
    return out;
}

PyObject* queue_get_into(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    auto* s = reinterpret_cast<QueueCore*>(self);
    PyObject* buf = nullptr;
    PyObject* tmo = nullptr;
    if (!parse_args("get_into", args, nargs, kwnames, 1, &buf, &tmo)) return nullptr;
    if (closed_error(s)) return nullptr;
    int64_t ns = -1;
    if (!parse_timeout(tmo, ns)) return nullptr;
    Py_buffer view;
    if (PyObject_GetBuffer(buf, &view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) != 0) return nullptr;
    size_t got = 0;
    const std::string* name = &s->q->name();  // the Queue outlives the call (GIL or `keep`)
    bool ok = consume(s, ns, [&](const unsigned char* p, size_t n) {
        if (n > size_t(view.len))
            sharedstate::fail(sharedstate::errc::message_too_large,
                              "get_into('" + *name + "'): the next message has " + std::to_string(n) +
                                  " bytes, the buffer " + std::to_string(view.len) + " (it stays queued)");
        std::memcpy(view.buf, p, n);
        got = n;
    });
    PyBuffer_Release(&view);
    if (!ok) return nullptr;
    return PyLong_FromSize_t(got);
}

Py_ssize_t queue_len(PyObject* self) {
    auto* s = reinterpret_cast<QueueCore*>(self);
    if (closed_error(s)) return -1;
    return Py_ssize_t(s->q->size());
}

PyObject* queue_empty(PyObject* self, PyObject*) {
    auto* s = reinterpret_cast<QueueCore*>(self);
    if (closed_error(s)) return nullptr;
    return PyBool_FromLong(s->q->empty());
}

void queue_dealloc(PyObject* self) {
    auto* s = reinterpret_cast<QueueCore*>(self);
    if (s->weakrefs) PyObject_ClearWeakRefs(self);
    if (s->holder) {
        std::shared_ptr<Queue>* h = s->holder;
        s->holder = nullptr;
        s->q = nullptr;
        Py_BEGIN_ALLOW_THREADS  // closing may take a flock / unlink
        delete h;
        Py_END_ALLOW_THREADS
    }
    Py_TYPE(self)->tp_free(self);
}

PyObject* queue_new(PyTypeObject* type, PyObject*, PyObject*) {
    auto* s = reinterpret_cast<QueueCore*>(type->tp_alloc(type, 0));
    if (!s) return nullptr;
    s->holder = nullptr;
    s->q = nullptr;
    s->weakrefs = nullptr;
    return reinterpret_cast<PyObject*>(s);
}

PyMethodDef queue_methods[] = {
    {"put", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)(void)>(queue_put)), METH_FASTCALL | METH_KEYWORDS,
     "put(data, timeout=None): append one message (a bytes-like object); blocks while the queue is full.\n"
     "TimeoutError when it stayed full for `timeout` seconds (0: do not wait)."},
    {"get", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)(void)>(queue_get)), METH_FASTCALL | METH_KEYWORDS,
     "get(timeout=None) -> bytes: the oldest message; blocks while empty (TimeoutError)."},
    {"get_into", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)(void)>(queue_get_into)),
     METH_FASTCALL | METH_KEYWORDS,
     "get_into(buf, timeout=None) -> int: copy the oldest message into a writable buffer; its length.\n"
     "A buffer too small is a ValueError and the message stays queued."},
    {"empty", queue_empty, METH_NOARGS, "empty() -> bool: no message (ready or being written) is queued."},
    {nullptr, nullptr, 0, nullptr}};

PySequenceMethods queue_as_sequence = {};

QueueCore* core_of(py::handle h) {
    if (!PyObject_TypeCheck(h.ptr(), &QueueCoreType)) throw py::type_error("not a QueueCore");
    return reinterpret_cast<QueueCore*>(h.ptr());
}

std::shared_ptr<Queue> queue_of(py::handle self) {
    QueueCore* s = core_of(self);
    if (!s->holder || !s->q) throw py::value_error("operation on a closed Queue");
    return *s->holder;
}

void install(py::handle self, Queue&& q) {
    QueueCore* s = core_of(self);
    if (s->holder) throw py::value_error("QueueCore already attached");
    s->holder = new std::shared_ptr<Queue>(std::make_shared<Queue>(std::move(q)));
    s->q = s->holder->get();
}

// The zero-copy read: a buffer over the next message in place; commit() consumes it.
// Holds the Queue (and through the View the mapping) so that the bytes outlive close().
struct QueueView {
    std::shared_ptr<Queue> queue;  // declared first: destroyed after the view
    Queue::View view;
};

// The zero-copy write: a writable buffer over a reserved record; commit() publishes it.
struct QueueSlot {
    std::shared_ptr<Queue> queue;
    Queue::Slot slot;
};

// Mailslot objects as held by Python: the shared_ptr keeps one alive through a blocking call.
struct PyMailslot {
    std::shared_ptr<sharedstate::Mailslot> m;
    sharedstate::Mailslot& get() const {
        if (!m) throw py::value_error("operation on a closed Mailslot");
        return *m;
    }
};
struct PyMailslotWriter {
    std::shared_ptr<sharedstate::MailslotWriter> w;
    sharedstate::MailslotWriter& get() const {
        if (!w) throw py::value_error("operation on a closed MailslotWriter");
        return *w;
    }
};

}  // namespace

void bind_queue(py::module_& m) {
    QueueCoreType.tp_name = "sharedstate._core.QueueCore";
    QueueCoreType.tp_basicsize = sizeof(QueueCore);
    QueueCoreType.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE;
    QueueCoreType.tp_doc = "The compiled half of sharedstate.Queue.";
    QueueCoreType.tp_new = queue_new;
    QueueCoreType.tp_dealloc = queue_dealloc;
    QueueCoreType.tp_methods = queue_methods;
    queue_as_sequence.sq_length = queue_len;
    QueueCoreType.tp_as_sequence = &queue_as_sequence;
    QueueCoreType.tp_weaklistoffset = offsetof(QueueCore, weakrefs);
    if (PyType_Ready(&QueueCoreType) < 0) throw py::error_already_set();
    Py_INCREF(&QueueCoreType);
    m.add_object("QueueCore", py::handle(reinterpret_cast<PyObject*>(&QueueCoreType)));

    m.def("_queue_create", [](py::handle self, const std::string& name, uint64_t capacity, uint32_t max_message,
                              bool exist_ok, bool persistent) {
        sharedstate::QueueOptions opt;
        opt.exist_ok = exist_ok;
        opt.persistent = persistent;
        install(self, without_gil([&] { return Queue::create(name, capacity, max_message, opt); }));
    });
    m.def("_queue_open", [](py::handle self, const std::string& name) {
        install(self, without_gil([&] { return Queue::open(name); }));
    });
    m.def("_queue_close", [](py::handle self) {
        QueueCore* s = core_of(self);
        s->q = nullptr;
        if (s->holder) {
            std::shared_ptr<Queue> last = std::move(*s->holder);
            delete s->holder;
            s->holder = nullptr;
            without_gil([&] { last.reset(); return 0; });  // closes here unless a call is in flight
        }
    });
    m.def("_queue_closed", [](py::handle self) { return core_of(self)->q == nullptr; });
    m.def("_queue_name", [](py::handle self) { return queue_of(self)->name(); });
    m.def("_queue_info", [](py::handle self) {
        auto q = queue_of(self);
        const auto& i = q->info();
        py::dict d;
        d["name"] = q->name();
        d["capacity"] = i.capacity;
        d["max_message"] = i.max_message;
        d["segment_size"] = i.segment_size;
        d["persistent"] = q->persistent();
        d["creator_pid"] = i.creator_pid;
        d["created_unix_ns"] = i.created_unix_ns;
        d["count"] = q->size();
        d["used_bytes"] = q->used_bytes();
        d["skipped"] = q->skipped();
        d["recoveries"] = q->recoveries();
        uint64_t c = q->consumer_owner();
        d["consumer_pid"] = c ? py::object(py::int_(c >> 32)) : py::object(py::none());
        return d;
    });
    m.def("_queue_set_spin", [](py::handle self, double seconds) {
        if (!(seconds >= 0)) throw py::value_error("spin must be >= 0 seconds");
        queue_of(self)->set_spin(std::chrono::nanoseconds(int64_t(seconds * 1e9)));
    });
    m.def("queue_unlink", [](const std::string& name) { Queue::unlink(name); }, py::arg("name"));

    py::class_<QueueView>(m, "QueueView", py::buffer_protocol())
        .def_buffer([](QueueView& v) {
            if (!v.view) throw py::value_error("the message view was released");
            return py::buffer_info(const_cast<unsigned char*>(v.view.data()), 1,
                                   py::format_descriptor<uint8_t>::format(), 1, {py::ssize_t(v.view.size())}, {1},
                                   true);
        })
        .def("__len__", [](const QueueView& v) { return v.view.size(); })
        .def("commit", [](QueueView& v) { v.view.commit(); }, "Consume the message (its bytes may be reused).")
        .def("abandon", [](QueueView& v) { v.view.abandon(); }, "Leave the message queued.");
    m.def("_queue_view", [](py::handle self, py::object timeout) {
        auto q = queue_of(self);
        auto ns = timeout_from(timeout);
        QueueView out;
        out.queue = q;
        out.view = q->try_get_view();
        if (!out.view) {
            auto deadline = sharedstate::detail::Deadline::after(ns.count());
            while (!out.view) {
                int64_t left = deadline.forever() ? -1 : int64_t(deadline.left());
                without_gil([&] {
                    q->wait_ready(std::chrono::nanoseconds(left), gil_released_interrupt());
                    return 0;
                });
                out.view = q->try_get_view();
            }
        }
        return out;
    });

    py::class_<QueueSlot>(m, "QueueSlot", py::buffer_protocol())
        .def_buffer([](QueueSlot& s) {
            if (!s.slot) throw py::value_error("the put slot was committed or cancelled");
            return py::buffer_info(s.slot.data(), 1, py::format_descriptor<uint8_t>::format(), 1,
                                   {py::ssize_t(s.slot.size())}, {1}, false);
        })
        .def("__len__", [](const QueueSlot& s) { return s.slot.size(); })
        .def("commit", [](QueueSlot& s) { s.slot.commit(); }, "Publish the message.")
        .def("cancel", [](QueueSlot& s) { s.slot.cancel(); }, "Drop it: the consumer skips it.");
    m.def("_queue_slot", [](py::handle self, size_t size, py::object timeout) {
        auto q = queue_of(self);
        auto ns = timeout_from(timeout);
        QueueSlot out;
        out.queue = q;
        out.slot = without_gil([&] { return q->begin_put(size, ns, gil_released_interrupt()); });
        return out;
    });

    // ---------------------------------------------------------------- Mailslot
    py::class_<PyMailslot>(m, "MailslotCore")
        .def(py::init([](const std::string& name, uint32_t max_message, uint64_t capacity) {
                 PyMailslot p;
                 p.m = without_gil([&] { return std::make_shared<sharedstate::Mailslot>(name, max_message, capacity); });
                 return p;
             }),
             py::arg("name"), py::arg("max_message") = sharedstate::kMailslotDefaultMaxMessage,
             py::arg("capacity") = sharedstate::kMailslotDefaultCapacity)
        .def("recv", [](PyMailslot& self, py::object timeout) {
            auto keep = self.m;
            self.get();
            auto ns = timeout_from(timeout);
            auto v = without_gil([&] { return keep->recv(ns, gil_released_interrupt()); });
            return py::bytes(reinterpret_cast<const char*>(v.data()), v.size());
        }, py::arg("timeout") = py::none())
        .def("recv_into", [](PyMailslot& self, py::buffer buf, py::object timeout) {
            auto keep = self.m;
            self.get();
            auto ns = timeout_from(timeout);
            py::buffer_info bi = buf.request(true);
            void* p = bi.ptr;
            size_t cap = size_t(bi.size * bi.itemsize);
            return without_gil([&] { return keep->recv_into(p, cap, ns, gil_released_interrupt()); });
        }, py::arg("buf"), py::arg("timeout") = py::none())
        .def("info", [](PyMailslot& self) {
            auto i = self.get().info();
            return py::make_tuple(i.next_size < 0 ? py::object(py::none()) : py::object(py::int_(i.next_size)),
                                  i.count < 0 ? py::object(py::none()) : py::object(py::int_(i.count)));
        })
        .def_property_readonly("name", [](PyMailslot& self) { return self.get().name(); })
        .def_property_readonly("max_message", [](PyMailslot& self) { return self.get().max_message(); })
        .def_property_readonly("closed", [](PyMailslot& self) { return !self.m; })
        .def("close", [](PyMailslot& self) {
            auto last = std::move(self.m);
            without_gil([&] { last.reset(); return 0; });
        });

    py::class_<PyMailslotWriter>(m, "MailslotWriterCore")
        .def(py::init([](const std::string& name) {
                 PyMailslotWriter p;
                 p.w = without_gil([&] { return std::make_shared<sharedstate::MailslotWriter>(name); });
                 return p;
             }),
             py::arg("name"))
        .def("send", [](PyMailslotWriter& self, py::buffer data, py::object timeout) {
            auto keep = self.w;
            self.get();
            auto ns = timeout_from(timeout);
            py::buffer_info bi = data.request();
            const void* p = bi.ptr;
            size_t n = size_t(bi.size * bi.itemsize);
            auto& w = *keep;
#if !defined(_WIN32)
            // Never waits while there is room: try first with the GIL held.
            if (ns.count() == 0) return w.send(p, n, ns);
#endif
            // Windows: WriteFile to a mailslot may block (Wine blocks after a few hundred
            // unread messages), so the GIL is always released around it.
            without_gil([&] { w.send(p, n, ns, gil_released_interrupt()); return 0; });
        }, py::arg("data"), py::arg("timeout") = 0.0)
        .def_property_readonly("name", [](PyMailslotWriter& self) { return self.get().name(); })
        .def_property_readonly("closed", [](PyMailslotWriter& self) { return !self.w; })
        .def("close", [](PyMailslotWriter& self) {
            auto last = std::move(self.w);
            without_gil([&] { last.reset(); return 0; });
        });
}

// For bind_waitset.cpp: the WaitSet source of a Queue or Mailslot (false: neither).
bool waitset_source_queue(py::handle o, sharedstate::detail::WaitSource& out) {
    if (PyObject_TypeCheck(o.ptr(), &QueueCoreType)) {
        auto q = queue_of(o);
        out = q->wait_source();
        return true;
    }
    if (py::isinstance<PyMailslot>(o)) {
        std::shared_ptr<sharedstate::Mailslot> m = py::cast<PyMailslot&>(o).m;
        if (!m) throw py::value_error("operation on a closed Mailslot");
        out = m->wait_source();
        return true;
    }
    return false;
}

}  // namespace sharedstate_py
