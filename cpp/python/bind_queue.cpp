// Queue and Mailslot bindings. The hot calls (put, get, get_into) are CPython METH_FASTCALL
// methods of a small static type, `_core.QueueCore` (pybind11's dispatcher alone would cost
// 50-100 ns a call); they first try once with the GIL held (no wait, no syscall) and only
// when they must wait release the GIL and block, interruptible by Ctrl-C. Everything else,
// and the Mailslot classes, go through pybind11. No queue logic lives here.
#include <pybind11/pybind11.h>

#include <cstring>
#include <memory>
#include <mutex>
#include <thread>
#include <sharedstate/mailslot.hpp>
#include <sharedstate/pipe.hpp>  // detail::lock_within
#include <sharedstate/queue.hpp>

#include "common.hpp"

namespace sharedstate_py {
namespace {

using sharedstate::Queue;

// The C++ half of a QueueCore (new'd in queue_new). Threads: common.hpp's pattern, and the
// Queue's own contract: producing calls from any number of threads at once, consuming calls
// (get*, views, wait_ready) one thread at a time per process: `consumer` serializes them.
// Lock order: consumer, then the GIL (never block on `consumer` holding the GIL).
// The consumer role of this process: `mu` is held for the length of one consuming call; a
// message view (get_view) keeps the role for its thread until commit/abandon, so consumers
// in other threads wait for it (the view's own thread gets the Queue's "still open" error).
struct ConsumerLock {
    std::mutex mu;
    bool view_open = false;  // under mu
    std::thread::id view_thread;
    // With mu held by the caller.
    bool usable() const { return !view_open || view_thread == std::this_thread::get_id(); }
    // Takes mu if usable now. GIL held or not.
    bool try_take() {
        if (!mu.try_lock()) return false;
        if (usable()) return true;
        mu.unlock();
        return false;
    }
    // Waits (GIL released) until taken; false on timeout. intr runs every slice.
    bool take_within(const sharedstate::detail::Deadline& dl, const sharedstate::Interrupt& intr) {
        uint64_t nap = 20000, next_intr = sharedstate::detail::os::monotonic_ns() + sharedstate::kSliceNs;
        for (;;) {
            if (try_take()) return true;
            uint64_t left = dl.left();
            if (left == 0) return false;
            sharedstate::detail::os::sleep_ns(nap < left ? nap : left);
            if (nap < 1000000) nap *= 2;
            if (sharedstate::detail::os::monotonic_ns() >= next_intr) {
                intr();
                next_intr = sharedstate::detail::os::monotonic_ns() + sharedstate::kSliceNs;
            }
        }
    }
};

struct QueueHalf {
    Owner<Queue> q;
    std::shared_ptr<ConsumerLock> consumer_lock = std::make_shared<ConsumerLock>();  // views hold it too
    ConsumerLock& consumer = *consumer_lock;
};

struct QueueCore {
    PyObject_HEAD
    QueueHalf* core;
    PyObject* weakrefs;
};

using QueuePin = Pin<Queue>;

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

void set_closed_error(QueueCore* s) {
    if (s->core->q.closed()) PyErr_Format(PyExc_ValueError, "operation on a closed %s", s->core->q.what().c_str());
    else PyErr_SetString(PyExc_ValueError, "operation on a closed Queue");
}
// A cheap early check (the pin is the real one).
bool closed_error(QueueCore* s) {
    if (!s->core->q.closed() && !s->core->q.what().empty()) return false;
    set_closed_error(s);
    return true;
}

// Takes the consumer lock for a call that already holds a strong reference to the queue:
// at once with the GIL held, else waiting with the GIL released (the lock order).
void lock_consumer(QueueHalf& h, int64_t ns, const Watch& w) {
    if (h.consumer.try_take()) return;
    bool got = without_gil([&] {
        return h.consumer.take_within(sharedstate::detail::Deadline::after(ns), closable_interrupt(w));
    });
    if (!got) sharedstate::fail(sharedstate::errc::timeout, "get from " + h.q.what() + ": timed out (another thread is consuming)");
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
    QueuePin q(s->core->q);  // after the conversions (they may run Python code)
    if (!q) {
        PyBuffer_Release(&view);
        set_closed_error(s);
        return nullptr;
    }
    bool ok = guarded([&] {
        if (q->try_put(view.buf, size_t(view.len))) return;  // producers: any threads at once
        std::shared_ptr<Queue> keep = q.keep(s->core->q);  // alive while the GIL is released
        if (!keep) sharedstate::fail(sharedstate::errc::closed, "operation on a closed " + s->core->q.what());
        Watch w = watch_of(s->core->q);
        without_gil([&] {
            keep->put(view.buf, size_t(view.len), std::chrono::nanoseconds(ns), closable_interrupt(w));
            return 0;
        });
    });
    PyBuffer_Release(&view);
    if (!ok) return nullptr;
    Py_RETURN_NONE;
}

// Consume one message with fn(payload, len) under the GIL; wait (GIL released) while none.
// Called after the argument conversions; pins the queue and takes the consumer lock itself.
// fn runs with the GIL held and runs no Python code (it only builds bytes or copies).
template <class Fn>
bool consume(QueueCore* s, int64_t ns, Fn&& fn) {
    QueueHalf& h = *s->core;
    QueuePin q(h.q);
    if (!q) {
        set_closed_error(s);
        return false;
    }
    return guarded([&] {
        std::shared_ptr<Queue> keep;  // taken before anything releases the GIL
        if (!h.consumer.try_take()) {  // another thread is consuming: wait for it, GIL released
            keep = q.keep(h.q);
            if (!keep) sharedstate::fail(sharedstate::errc::closed, "operation on a closed " + h.q.what());
            Watch w = watch_of(h.q);
            bool got = without_gil([&] {
                return h.consumer.take_within(sharedstate::detail::Deadline::after(ns), closable_interrupt(w));
            });
            if (!got) sharedstate::fail(sharedstate::errc::timeout, "get from " + h.q.what() + ": timed out (another thread is consuming)");
        }
        std::lock_guard<std::mutex> g(h.consumer.mu, std::adopt_lock);
        if (keep && h.q.closed()) sharedstate::fail(sharedstate::errc::closed, h.q.what() + " was closed by another thread");
        if ((keep ? keep.get() : q.get())->try_consume(fn)) return;
        if (!keep) keep = q.keep(h.q);  // nothing ran since the pin (no message: fn was not called)
        if (!keep) sharedstate::fail(sharedstate::errc::closed, "operation on a closed " + h.q.what());
        Watch w = watch_of(h.q);
        auto deadline = sharedstate::detail::Deadline::after(ns);
        for (;;) {
            int64_t left = deadline.forever() ? -1 : int64_t(deadline.left());
            without_gil([&] {
                keep->wait_ready(std::chrono::nanoseconds(left), closable_interrupt(w));
                return 0;
            });
            if (keep->try_consume(fn)) return;
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
    const std::string& what = s->core->q.what();  // "Queue 'name'", fixed once attached
    bool ok = consume(s, ns, [&](const unsigned char* p, size_t n) {
        if (n > size_t(view.len))
            sharedstate::fail(sharedstate::errc::message_too_large,
                              "get_into(" + what.substr(6) + "): the next message has " + std::to_string(n) +
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
    QueuePin q(s->core->q);
    if (!q) { set_closed_error(s); return -1; }
    return Py_ssize_t(q->size());
}

PyObject* queue_empty(PyObject* self, PyObject*) {
    auto* s = reinterpret_cast<QueueCore*>(self);
    QueuePin q(s->core->q);
    if (!q) { set_closed_error(s); return nullptr; }
    return PyBool_FromLong(q->empty());
}

void queue_dealloc(PyObject* self) {
    auto* s = reinterpret_cast<QueueCore*>(self);
    if (s->weakrefs) PyObject_ClearWeakRefs(self);
    if (QueueHalf* h = s->core) {  // no other thread is inside: it would hold a reference
        s->core = nullptr;
        Py_BEGIN_ALLOW_THREADS  // closing may take a flock / unlink
        delete h;
        Py_END_ALLOW_THREADS
    }
    Py_TYPE(self)->tp_free(self);
}

PyObject* queue_new(PyTypeObject* type, PyObject*, PyObject*) {
    auto* s = reinterpret_cast<QueueCore*>(type->tp_alloc(type, 0));
    if (!s) return nullptr;
    s->weakrefs = nullptr;
    s->core = new (std::nothrow) QueueHalf();
    if (!s->core) {
        Py_DECREF(s);
        return PyErr_NoMemory();
    }
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
    std::shared_ptr<Queue> q = s->core->q.get();
    if (!q) throw py::value_error(s->core->q.closed() ? "operation on a closed " + s->core->q.what() : std::string("operation on a closed Queue"));
    return q;
}

void install(py::handle self, Queue&& q) {
    QueueCore* s = core_of(self);
    if (!s->core->q.what().empty()) throw py::value_error("QueueCore already attached");
    auto p = std::make_shared<Queue>(std::move(q));
    std::string what = "Queue '" + p->name() + "'";
    s->core->q.attach(std::move(p), std::move(what));
}

// Runs f() holding m: at once if free, else waiting for it with the GIL released.
// (A view's end: its thread holds the role, so only the consuming call in flight is waited for.)
template <class F>
void with_consumer(ConsumerLock& c, F&& f) {
    if (!c.mu.try_lock()) {
        py::gil_scoped_release nogil;
        c.mu.lock();  // a holder may need the GIL to finish: never wait for mu holding it
    }
    std::lock_guard<std::mutex> g(c.mu, std::adopt_lock);
    f();
}

// The zero-copy read: a buffer over the next message in place; commit() consumes it.
// Holds the Queue (and through the View the mapping) so that the bytes outlive close().
// Committing or abandoning it is a consuming call: under the queue's consumer lock.
struct QueueView {
    std::shared_ptr<Queue> queue;  // declared first: destroyed after the view
    std::shared_ptr<ConsumerLock> consumer;
    Queue::View view;
    QueueView() = default;
    QueueView(QueueView&&) = default;
    ~QueueView() {
        if (view && consumer) end([&] { view.commit(); });
    }
    template <class F>
    void end(F&& f) {  // commit or abandon, once
        if (!consumer) return;
        with_consumer(*consumer, [&] {
            if (!view) return;
            f();
            consumer->view_open = false;
        });
    }
};

// The zero-copy write: a writable buffer over a reserved record; commit() publishes it.
struct QueueSlot {
    std::shared_ptr<Queue> queue;
    Queue::Slot slot;
    std::unique_ptr<std::mutex> mu{new std::mutex};  // two threads may call commit/cancel
};

// Mailslot objects as held by Python (common.hpp's pattern): every call takes a strong
// reference; close() detaches it, and the last reference closes the C++ object. A mailslot
// has one reader, so its receiving calls are serialized (`recv_mu`, taken GIL released).
template <class T>
std::shared_ptr<T> live(const Owner<T>& o, const char* kind) {
    auto p = o.get();
    if (!p) throw py::value_error(std::string("operation on a closed ") + kind);
    return p;
}
struct PyMailslot {
    Owner<sharedstate::Mailslot> m;
    std::mutex recv_mu;
    std::shared_ptr<sharedstate::Mailslot> get() const { return live(m, "Mailslot"); }
};
struct PyMailslotWriter {
    Owner<sharedstate::MailslotWriter> w;
    std::shared_ptr<sharedstate::MailslotWriter> get() const { return live(w, "MailslotWriter"); }
};
// Receives with recv_mu held: f(mailslot, interrupt) with the GIL released.
template <class F>
auto mailslot_recv(PyMailslot& self, std::chrono::nanoseconds ns, F&& f) {
    auto keep = self.get();
    Watch w = watch_of(self.m);
    return without_gil([&] {
        auto dl = sharedstate::detail::Deadline::after(ns.count());
        if (!sharedstate::detail::lock_within(self.recv_mu, dl, closable_interrupt(w)))
            sharedstate::fail(sharedstate::errc::timeout, "recv from " + self.m.what() + ": no message (another thread is receiving)");
        std::lock_guard<std::mutex> g(self.recv_mu, std::adopt_lock);
        if (self.m.closed()) sharedstate::fail(sharedstate::errc::closed, self.m.what() + " was closed by another thread");
        auto left = std::chrono::nanoseconds(dl.forever() ? -1 : int64_t(dl.left()));
        return f(*keep, left, closable_interrupt(w));
    });
}

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
        // Calls in flight in other threads keep their own reference: the Queue closes when
        // the last one lets go; blocked ones see the close within a slice (ValueError).
        std::shared_ptr<Queue> last = s->core->q.detach();
        if (last) without_gil([&] { last.reset(); return 0; });  // closes here unless a call is in flight
    });
    m.def("_queue_closed", [](py::handle self) { return !core_of(self)->core->q.attached(); });
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
        .def("commit", [](QueueView& v) { v.end([&] { v.view.commit(); }); },
             "Consume the message (its bytes may be reused).")
        .def("abandon", [](QueueView& v) { v.end([&] { v.view.abandon(); }); },
             "Leave the message queued.");
    m.def("_queue_view", [](py::handle self, py::object timeout) {
        auto ns = timeout_from(timeout);  // (may run Python code: before the queue is taken)
        QueueHalf& h = *core_of(self)->core;
        auto q = queue_of(self);
        QueueView out;
        out.queue = q;
        out.consumer = h.consumer_lock;
        Watch w = watch_of(h.q);
        lock_consumer(h, ns.count(), w);
        std::lock_guard<std::mutex> g(h.consumer.mu, std::adopt_lock);
        out.view = q->try_get_view();
        if (!out.view) {
            auto deadline = sharedstate::detail::Deadline::after(ns.count());
            while (!out.view) {
                int64_t left = deadline.forever() ? -1 : int64_t(deadline.left());
                without_gil([&] {
                    q->wait_ready(std::chrono::nanoseconds(left), closable_interrupt(w));
                    return 0;
                });
                out.view = q->try_get_view();
            }
        }
        h.consumer.view_open = true;  // this thread keeps the consumer role until commit/abandon
        h.consumer.view_thread = std::this_thread::get_id();
        return out;
    });

    py::class_<QueueSlot>(m, "QueueSlot", py::buffer_protocol())
        .def_buffer([](QueueSlot& s) {
            if (!s.slot) throw py::value_error("the put slot was committed or cancelled");
            return py::buffer_info(s.slot.data(), 1, py::format_descriptor<uint8_t>::format(), 1,
                                   {py::ssize_t(s.slot.size())}, {1}, false);
        })
        .def("__len__", [](const QueueSlot& s) { return s.slot.size(); })
        .def("commit", [](QueueSlot& s) { std::lock_guard<std::mutex> g(*s.mu); s.slot.commit(); }, "Publish the message.")
        .def("cancel", [](QueueSlot& s) { std::lock_guard<std::mutex> g(*s.mu); s.slot.cancel(); },
             "Drop it: the consumer skips it.");
    m.def("_queue_slot", [](py::handle self, size_t size, py::object timeout) {
        auto ns = timeout_from(timeout);
        auto q = queue_of(self);
        QueueSlot out;
        out.queue = q;
        Watch w = watch_of(core_of(self)->core->q);
        out.slot = without_gil([&] { return q->begin_put(size, ns, closable_interrupt(w)); });
        return out;
    });

    // ---------------------------------------------------------------- Mailslot
    py::class_<PyMailslot>(m, "MailslotCore")
        .def(py::init([](const std::string& name, uint32_t max_message, uint64_t capacity) {
                 std::unique_ptr<PyMailslot> p(new PyMailslot);
                 p->m.attach(without_gil([&] { return std::make_shared<sharedstate::Mailslot>(name, max_message, capacity); }),
                             "Mailslot '" + name + "'");
                 return p;
             }),
             py::arg("name"), py::arg("max_message") = sharedstate::kMailslotDefaultMaxMessage,
             py::arg("capacity") = sharedstate::kMailslotDefaultCapacity)
        .def("recv", [](PyMailslot& self, py::object timeout) {
            auto ns = timeout_from(timeout);
            auto v = mailslot_recv(self, ns, [](sharedstate::Mailslot& m, std::chrono::nanoseconds left,
                                                const sharedstate::Interrupt& intr) { return m.recv(left, intr); });
            return py::bytes(reinterpret_cast<const char*>(v.data()), v.size());
        }, py::arg("timeout") = py::none())
        .def("recv_into", [](PyMailslot& self, py::buffer buf, py::object timeout) {
            auto ns = timeout_from(timeout);
            py::buffer_info bi = buf.request(true);
            void* p = bi.ptr;
            size_t cap = size_t(bi.size * bi.itemsize);
            return mailslot_recv(self, ns, [&](sharedstate::Mailslot& m, std::chrono::nanoseconds left,
                                               const sharedstate::Interrupt& intr) { return m.recv_into(p, cap, left, intr); });
        }, py::arg("buf"), py::arg("timeout") = py::none())
        .def("info", [](PyMailslot& self) {
            auto i = mailslot_recv(self, std::chrono::nanoseconds(-1), [](sharedstate::Mailslot& m, std::chrono::nanoseconds,
                                                                          const sharedstate::Interrupt&) { return m.info(); });
            return py::make_tuple(i.next_size < 0 ? py::object(py::none()) : py::object(py::int_(i.next_size)),
                                  i.count < 0 ? py::object(py::none()) : py::object(py::int_(i.count)));
        })
        .def_property_readonly("name", [](PyMailslot& self) { return self.get()->name(); })
        .def_property_readonly("max_message", [](PyMailslot& self) { return self.get()->max_message(); })
        .def_property_readonly("closed", [](PyMailslot& self) { return !self.m.attached(); })
        .def("close", [](PyMailslot& self) {
            auto last = self.m.detach();  // a recv in flight keeps its own reference and gives up within a slice
            without_gil([&] { last.reset(); return 0; });
        });

    py::class_<PyMailslotWriter>(m, "MailslotWriterCore")
        .def(py::init([](const std::string& name) {
                 std::unique_ptr<PyMailslotWriter> p(new PyMailslotWriter);
                 p->w.attach(without_gil([&] { return std::make_shared<sharedstate::MailslotWriter>(name); }),
                             "MailslotWriter '" + name + "'");
                 return p;
             }),
             py::arg("name"))
        .def("send", [](PyMailslotWriter& self, py::buffer data, py::object timeout) {
            auto ns = timeout_from(timeout);
            py::buffer_info bi = data.request();
            auto keep = self.get();  // after the conversions (they may run Python code)
            const void* p = bi.ptr;
            size_t n = size_t(bi.size * bi.itemsize);
            auto& w = *keep;
#if !defined(_WIN32)
            // Never waits while there is room: try first with the GIL held.
            if (ns.count() == 0) return w.send(p, n, ns);
#endif
            // Windows: WriteFile to a mailslot may block (Wine blocks after a few hundred
            // unread messages), so the GIL is always released around it.
            Watch wt = watch_of(self.w);
            without_gil([&] { w.send(p, n, ns, closable_interrupt(wt)); return 0; });
        }, py::arg("data"), py::arg("timeout") = 0.0)
        .def_property_readonly("name", [](PyMailslotWriter& self) { return self.get()->name(); })
        .def_property_readonly("closed", [](PyMailslotWriter& self) { return !self.w.attached(); })
        .def("close", [](PyMailslotWriter& self) {
            auto last = self.w.detach();
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
        std::shared_ptr<sharedstate::Mailslot> m = py::cast<PyMailslot&>(o).m.get();
        if (!m) throw py::value_error("operation on a closed Mailslot");
        out = m->wait_source();
        return true;
    }
    return false;
}

}  // namespace sharedstate_py
