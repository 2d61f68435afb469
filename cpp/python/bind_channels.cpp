// Pipe, PipeServer and Semaphore bindings.
//
// `_core.Pipe` is a small static type with CPython calling conventions: send / recv /
// recv_into are the hot path of every round trip, and pybind11's dispatcher alone would
// add 50-100 ns to each (../shared/PEERS.md). send() first tries one non-blocking send with
// the GIL held (it almost always succeeds: the message goes into the socket buffer), so the
// common case costs one syscall and no GIL hand-off. recv() releases the GIL, blocks in the
// OS, and takes the GIL back only to build the bytes object, under the pipe's receive lock
// (so the message is consumed only once Python has it). PipeServer and Semaphore are not
// on a hot path and use pybind11.
//
// Lock order: nobody blocks on a pipe lock while holding the GIL (only try_lock there), so a
// thread that holds a pipe lock may always take the GIL.
//
// Threads (common.hpp's pattern): the C++ Pipe, PipeServer and Semaphore are themselves safe
// to share between threads (close() from any thread wakes the others, which fail with
// errc::closed; see pipe.hpp, semaphore.hpp), and each binding object owns its C++ object
// for its whole life (freed only by dealloc, when no call can be in flight). So a binding
// holds no mutable state of its own; Semaphore.acquire() polls its object's closed() every
// slice, so a close() in another thread ends it promptly with the closed error.
#define PY_SSIZE_T_CLEAN  // for "s#" in PyArg_ParseTupleAndKeywords
#include <pybind11/pybind11.h>

#include <sharedstate/pipe.hpp>
#include <sharedstate/semaphore.hpp>

#include <cmath>
#include <cstring>
#include <string>

#include "common.hpp"

namespace sharedstate_py {
namespace {

using sharedstate::Pipe;
using sharedstate::PipeServer;
using sharedstate::Semaphore;
using ns = std::chrono::nanoseconds;

struct PyPipe {
    PyObject_HEAD
    Pipe* pipe;
    PyObject* weakrefs;
};

PyTypeObject PipeType = {PyVarObject_HEAD_INIT(nullptr, 0)};

// The GIL released for a scope; relock() takes it back early (idempotent).
class Unlocked {
public:
    Unlocked() : st_(PyEval_SaveThread()) {}
    ~Unlocked() { relock(); }
    void relock() {
        if (st_) { PyEval_RestoreThread(st_); st_ = nullptr; }
    }
    Unlocked(const Unlocked&) = delete;
    Unlocked& operator=(const Unlocked&) = delete;
private:
    PyThreadState* st_;
};

// Runs f(); a C++ exception becomes the Python error and nullptr. f may release the GIL
// with Unlocked; the GIL is held again when the exception arrives here.
template <class F>
PyObject* guarded(F&& f) {
    try {
        return f();
    } catch (const PythonErrorSet&) {
        return nullptr;
    } catch (const py::error_already_set& e) {
        const_cast<py::error_already_set&>(e).restore();
        return nullptr;
    } catch (const std::exception& e) {
        set_python_error(e);
        return nullptr;
    }
}

// None -> forever (-1); a number of seconds >= 0; anything else is an error (returns false).
bool parse_timeout(PyObject* o, ns& out) {
    if (!o || o == Py_None) { out = ns(-1); return true; }
    double s = PyFloat_AsDouble(o);
    if (s == -1.0 && PyErr_Occurred()) return false;
    if (std::isnan(s) || s < 0) {
        PyErr_SetString(PyExc_ValueError, "timeout must be None or >= 0 seconds");
        return false;
    }
    out = s > 1e9 ? ns(-1) : ns(int64_t(s * 1e9));
    return true;
}

// METH_FASTCALL | METH_KEYWORDS argument matching: positional then by keyword name.
bool parse_args(const char* fname, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames, const char* const* names, int n,
                int required, PyObject** out) {
    for (int i = 0; i < n; ++i) out[i] = nullptr;
    if (nargs > n) {
        PyErr_Format(PyExc_TypeError, "%s() takes at most %d arguments (%zd given)", fname, n, nargs);
        return false;
    }
    for (Py_ssize_t i = 0; i < nargs; ++i) out[i] = args[i];
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t k = 0; k < nkw; ++k) {
        PyObject* key = PyTuple_GET_ITEM(kwnames, k);
        int i = 0;
        for (; i < n; ++i)
            if (PyUnicode_CompareWithASCIIString(key, names[i]) == 0) break;
        if (i == n) {
            PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%U'", fname, key);
            return false;
        }
        if (out[i]) {
            PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%s'", fname, names[i]);
            return false;
        }
        out[i] = args[nargs + k];
    }
    for (int i = 0; i < required; ++i)
        if (!out[i]) {
            PyErr_Format(PyExc_TypeError, "%s() missing required argument '%s'", fname, names[i]);
            return false;
        }
    return true;
}

Pipe* live_pipe(PyObject* self) {
    Pipe* p = reinterpret_cast<PyPipe*>(self)->pipe;
    if (!p || p->closed()) {
        PyErr_SetString(PyExc_ValueError, "I/O operation on a closed pipe");
        return nullptr;
    }
    return p;
}

PyObject* wrap_pipe(Pipe&& p) {
    auto* o = PyObject_GC_New(PyPipe, &PipeType);
    if (!o) return nullptr;
    o->weakrefs = nullptr;
    o->pipe = new Pipe(std::move(p));
    PyObject_GC_Track(o);
    return reinterpret_cast<PyObject*>(o);
}

size_t max_message_from(PyObject* o) {
    if (!o || o == Py_None) return sharedstate::kDefaultMaxMessage;
    long long v = PyLong_AsLongLong(o);
    if (v == -1 && PyErr_Occurred()) throw PythonErrorSet{};
    if (v < 0 || uint64_t(v) > sharedstate::kLargestMaxMessage) {
        PyErr_Format(PyExc_ValueError, "max_message must be between 0 and %zu", size_t(sharedstate::kLargestMaxMessage));
        throw PythonErrorSet{};
    }
    return size_t(v);
}

// ------------------------------------------------------------------ Pipe methods
PyObject* pipe_send(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    Pipe* p = live_pipe(self);
    if (!p) return nullptr;
    PyObject* data;
    PyObject* timeout_o = nullptr;
    if (nargs == 1 && !kwnames) {
        data = args[0];
    } else {
        static const char* const names[] = {"data", "timeout"};
        PyObject* a[2];
        if (!parse_args("send", args, nargs, kwnames, names, 2, 1, a)) return nullptr;
        data = a[0];
        timeout_o = a[1];
    }
    ns timeout;
    if (!parse_timeout(timeout_o, timeout)) return nullptr;
    const char* ptr;
    Py_ssize_t len;
    Py_buffer view;
    bool have_view = false;
    if (PyBytes_CheckExact(data)) {
        ptr = PyBytes_AS_STRING(data);
        len = PyBytes_GET_SIZE(data);
    } else {
        if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) != 0) return nullptr;
        have_view = true;
        ptr = static_cast<const char*>(view.buf);
        len = view.len;
    }
    PyObject* r = guarded([&]() -> PyObject* {
        // The common case: room in the socket buffer, sent with the GIL held.
        if (p->try_send(ptr, size_t(len))) Py_RETURN_NONE;
        Unlocked u;
        p->send(ptr, size_t(len), timeout, gil_released_interrupt());
        u.relock();
        Py_RETURN_NONE;
    });
    if (have_view) PyBuffer_Release(&view);
    return r;
}

PyObject* pipe_recv(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    Pipe* p = live_pipe(self);
    if (!p) return nullptr;
    ns timeout(-1);
    if (nargs || kwnames) {
        static const char* const names[] = {"timeout"};
        PyObject* a[1];
        if (!parse_args("recv", args, nargs, kwnames, names, 1, 0, a) || !parse_timeout(a[0], timeout)) return nullptr;
    }
    return guarded([&]() -> PyObject* {
        Unlocked u;
        return p->recv_with(timeout, gil_released_interrupt(), [&](const unsigned char* d, size_t n) {
            u.relock();  // under the receive lock: see the lock order above
            PyObject* b = PyBytes_FromStringAndSize(reinterpret_cast<const char*>(d), Py_ssize_t(n));
            if (!b) throw PythonErrorSet{};  // not consumed: still the next message
            return b;
        });
    });
}

PyObject* pipe_recv_into(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    Pipe* p = live_pipe(self);
    if (!p) return nullptr;
    static const char* const names[] = {"buf", "timeout"};
    PyObject* a[2];
    ns timeout;
    if (!parse_args("recv_into", args, nargs, kwnames, names, 2, 1, a) || !parse_timeout(a[1], timeout)) return nullptr;
    Py_buffer view;
    if (PyObject_GetBuffer(a[0], &view, PyBUF_WRITABLE) != 0) return nullptr;
    PyObject* r = guarded([&]() -> PyObject* {
        size_t n;
        {
            Unlocked u;
            n = p->recv_into(view.buf, size_t(view.len), timeout, gil_released_interrupt());
        }
        return PyLong_FromSize_t(n);
    });
    PyBuffer_Release(&view);
    return r;
}

PyObject* pipe_peek(PyObject* self, PyObject*) {
    Pipe* p = live_pipe(self);
    if (!p) return nullptr;
    return guarded([&]() -> PyObject* {
        PyObject* b = nullptr;
        Unlocked u;
        bool got = p->peek_with([&](const unsigned char* d, size_t n) {
            u.relock();
            b = PyBytes_FromStringAndSize(reinterpret_cast<const char*>(d), Py_ssize_t(n));
            if (!b) throw PythonErrorSet{};
        });
        u.relock();
        if (!got) Py_RETURN_NONE;
        return b;
    });
}

PyObject* pipe_available(PyObject* self, PyObject*) {
    Pipe* p = live_pipe(self);
    if (!p) return nullptr;
    return guarded([&]() -> PyObject* {
        size_t n;
        {
            Unlocked u;
            n = p->available();
        }
        return PyLong_FromSize_t(n);
    });
}

PyObject* pipe_close(PyObject* self, PyObject*) {
    Pipe* p = reinterpret_cast<PyPipe*>(self)->pipe;
    if (p && !p->closed()) {
        Unlocked u;  // close() waits for the pipe locks: never with the GIL held
        p->close();
    }
    Py_RETURN_NONE;
}

// recv_async(timeout=None): a coroutine from sharedstate._aio (asyncio lives in Python).
PyObject* pipe_recv_async(PyObject* self, PyObject* args, PyObject* kwargs) {
    PyObject* mod = PyImport_ImportModule("sharedstate._aio");
    if (!mod) return nullptr;
    PyObject* fn = PyObject_GetAttrString(mod, "pipe_recv_async");
    Py_DECREF(mod);
    if (!fn) return nullptr;
    Py_ssize_t n = PyTuple_GET_SIZE(args);
    PyObject* all = PyTuple_New(n + 1);
    if (!all) { Py_DECREF(fn); return nullptr; }
    Py_INCREF(self);
    PyTuple_SET_ITEM(all, 0, self);
    for (Py_ssize_t i = 0; i < n; ++i) {
        PyObject* a = PyTuple_GET_ITEM(args, i);
        Py_INCREF(a);
        PyTuple_SET_ITEM(all, i + 1, a);
    }
    PyObject* r = PyObject_Call(fn, all, kwargs);
    Py_DECREF(all);
    Py_DECREF(fn);
    return r;
}

PyObject* pipe_fileno(PyObject* self, PyObject*) {
    Pipe* p = live_pipe(self);
    if (!p) return nullptr;
#if defined(_WIN32)
    PyObject* io = PyImport_ImportModule("io");
    if (!io) return nullptr;
    PyObject* exc = PyObject_GetAttrString(io, "UnsupportedOperation");
    Py_DECREF(io);
    if (!exc) return nullptr;
    PyErr_SetString(exc, "a Windows named pipe has no file descriptor");
    Py_DECREF(exc);
    return nullptr;
#else
    return PyLong_FromLong(p->fileno());
#endif
}

PyObject* pipe_enter(PyObject* self, PyObject*) {
    if (!live_pipe(self)) return nullptr;
    Py_INCREF(self);
    return self;
}

PyObject* pipe_exit(PyObject* self, PyObject*) {
    PyObject* r = pipe_close(self, nullptr);
    if (!r) return nullptr;
    Py_DECREF(r);
    Py_RETURN_FALSE;
}

PyObject* pipe_connect(PyObject* cls, PyObject* args, PyObject* kw) {
    static const char* names[] = {"name", "timeout", "max_message", nullptr};
    const char* name = nullptr;
    Py_ssize_t name_len = 0;
    PyObject* timeout_o = Py_None;
    PyObject* max_o = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "s#|OO:connect", const_cast<char**>(names), &name, &name_len, &timeout_o, &max_o))
        return nullptr;
    (void)cls;
    ns timeout;
    if (!parse_timeout(timeout_o, timeout)) return nullptr;
    std::string n(name, size_t(name_len));
    return guarded([&]() -> PyObject* {
        size_t mx = max_message_from(max_o);
        Pipe p;
        {
            Unlocked u;
            p = Pipe::connect(n, timeout, mx, gil_released_interrupt());
        }
        return wrap_pipe(std::move(p));
    });
}

PyObject* pipe_get_name(PyObject* self, void*) {
    Pipe* p = reinterpret_cast<PyPipe*>(self)->pipe;
    if (!p) Py_RETURN_NONE;
    const std::string& n = p->name();
    return PyUnicode_DecodeUTF8(n.data(), Py_ssize_t(n.size()), "surrogateescape");
}
PyObject* pipe_get_max(PyObject* self, void*) {
    Pipe* p = reinterpret_cast<PyPipe*>(self)->pipe;
    return p ? PyLong_FromSize_t(p->max_message()) : PyLong_FromLong(0);
}
PyObject* pipe_get_closed(PyObject* self, void*) {
    Pipe* p = reinterpret_cast<PyPipe*>(self)->pipe;
    return PyBool_FromLong(!p || p->closed());
}

PyObject* pipe_repr(PyObject* self) {
    Pipe* p = reinterpret_cast<PyPipe*>(self)->pipe;
    if (!p) return PyUnicode_FromString("<sharedstate.Pipe (empty)>");
    return PyUnicode_FromFormat("<sharedstate.Pipe '%s'%s>", p->name().c_str(), p->closed() ? " closed" : "");
}

void pipe_dealloc(PyObject* self) {
    auto* o = reinterpret_cast<PyPipe*>(self);
    PyObject_GC_UnTrack(self);
    if (o->weakrefs) PyObject_ClearWeakRefs(self);
    if (o->pipe) {
        Pipe* p = o->pipe;
        o->pipe = nullptr;
        Py_BEGIN_ALLOW_THREADS  // no other thread can be inside (they would hold a reference)
        delete p;
        Py_END_ALLOW_THREADS
    }
    PyObject_GC_Del(self);
}
int pipe_traverse(PyObject*, visitproc, void*) { return 0; }

PyObject* pipe_new(PyTypeObject*, PyObject*, PyObject*) {
    PyErr_SetString(PyExc_TypeError, "use Pipe.connect(name) or PipeServer(name).accept() to get a Pipe");
    return nullptr;
}

template <class F>
PyCFunction fast(F f) {
    return reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)(void)>(f));
}

PyMethodDef pipe_methods[] = {
    {"connect", fast(pipe_connect), METH_VARARGS | METH_KEYWORDS | METH_CLASS,
     "Pipe.connect(name, timeout=None, max_message=None) -> Pipe\n\nConnects to the PipeServer NAME. Nobody serving: "
     "FileNotFoundError at once (timeout=None), or retried until the timeout (TimeoutError)."},
    {"send", fast(pipe_send), METH_FASTCALL | METH_KEYWORDS,
     "send(data, timeout=None)\n\nSends one whole message (any bytes-like object). Longer than max_message: ValueError, "
     "nothing sent. Peer gone: BrokenPipeError."},
    {"recv", fast(pipe_recv), METH_FASTCALL | METH_KEYWORDS,
     "recv(timeout=None) -> bytes\n\nThe next whole message. TimeoutError on timeout; EOFError when the peer closed and "
     "nothing is left; BrokenPipeError when it died."},
    {"recv_into", fast(pipe_recv_into), METH_FASTCALL | METH_KEYWORDS,
     "recv_into(buf, timeout=None) -> int\n\nCopies the next message into a writable buffer and returns its size. A "
     "message larger than buf is a ValueError and stays the next message (see available())."},
    {"peek", pipe_peek, METH_NOARGS,
     "peek() -> bytes | None\n\nThe next message without consuming it, or None if none has arrived whole. Never blocks."},
    {"available", pipe_available, METH_NOARGS,
     "available() -> int\n\nThe size of the next message (whole or arriving), 0 if none. Never blocks."},
    {"close", pipe_close, METH_NOARGS, "close()\n\nSays goodbye to the peer (it gets EOFError after the rest) and closes."},
    {"recv_async", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)(void)>(pipe_recv_async)), METH_VARARGS | METH_KEYWORDS,
     "recv_async(timeout=None) -> bytes (a coroutine)\n\nLike recv(), for asyncio (sharedstate._aio)."},
    {"fileno", pipe_fileno, METH_NOARGS, "fileno() -> int\n\nThe socket descriptor (Linux; for select/poll)."},
    {"__enter__", pipe_enter, METH_NOARGS, nullptr},
    {"__exit__", pipe_exit, METH_VARARGS, nullptr},
    {nullptr, nullptr, 0, nullptr},
};

PyGetSetDef pipe_getset[] = {
    {"name", pipe_get_name, nullptr, "The pipe's name.", nullptr},
    {"max_message", pipe_get_max, nullptr, "The largest message this end sends or accepts.", nullptr},
    {"closed", pipe_get_closed, nullptr, "True once closed.", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

}  // namespace

void bind_channels(py::module_& m) {
    PipeType.tp_name = "sharedstate.Pipe";
    PipeType.tp_basicsize = sizeof(PyPipe);
    PipeType.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC;
    PipeType.tp_doc =
        "One end of a message pipe: every send() is one recv() on the other end, 0 bytes to max_message.\n"
        "Get one with Pipe.connect(name) or PipeServer(name).accept().";
    PipeType.tp_new = pipe_new;
    PipeType.tp_dealloc = pipe_dealloc;
    PipeType.tp_traverse = pipe_traverse;
    PipeType.tp_methods = pipe_methods;
    PipeType.tp_getset = pipe_getset;
    PipeType.tp_repr = pipe_repr;
    PipeType.tp_weaklistoffset = offsetof(PyPipe, weakrefs);
    if (PyType_Ready(&PipeType) < 0) throw py::error_already_set();
    Py_INCREF(&PipeType);
    m.add_object("Pipe", py::handle(reinterpret_cast<PyObject*>(&PipeType)));
    m.attr("DEFAULT_MAX_MESSAGE") = sharedstate::kDefaultMaxMessage;

    py::class_<PipeServer>(m, "PipeServer",
                           "A named pipe server: accept() returns a Pipe per client, any number at once.\n"
                           "PipeServer(name, max_message=None). FileExistsError if a live server has the name; "
                           "a socket left by a crashed server is replaced.")
        .def(py::init([](const std::string& name, py::object max_message) {
                 size_t mx;
                 try {
                     mx = max_message_from(max_message.ptr());
                 } catch (const PythonErrorSet&) {
                     throw py::error_already_set();
                 }
                 return without_gil([&] { return PipeServer(name, mx); });
             }),
             py::arg("name"), py::arg("max_message") = py::none())
        .def(
            "accept",
            [](PipeServer& s, py::object timeout) {
                auto t = timeout_from(timeout);
                Pipe p = without_gil([&] { return s.accept(t, gil_released_interrupt()); });
                PyObject* o = wrap_pipe(std::move(p));
                if (!o) throw py::error_already_set();
                return py::reinterpret_steal<py::object>(o);
            },
            py::arg("timeout") = py::none(), "accept(timeout=None) -> Pipe: the next client (TimeoutError on timeout).")
        .def(
            "close", [](PipeServer& s) { without_gil([&] { s.close(); return 0; }); },
            "Stops listening and frees the name; accepted pipes stay connected.")
        .def("__enter__", [](py::object self) { return self; })
        .def("__exit__", [](PipeServer& s, py::args) { without_gil([&] { s.close(); return 0; }); return false; })
        .def_property_readonly("name", [](const PipeServer& s) { return s.name(); })
        .def_property_readonly("path", [](const PipeServer& s) { return s.path(); },
                               "The OS address: the socket file (Linux) or \\\\.\\pipe\\NAME (Windows).")
        .def_property_readonly("max_message", [](const PipeServer& s) { return s.max_message(); })
        .def_property_readonly("closed", [](const PipeServer& s) { return s.closed(); })
        .def("__repr__", [](const PipeServer& s) {
            return s.closed() ? std::string("<sharedstate.PipeServer closed>") : "<sharedstate.PipeServer '" + s.name() + "'>";
        });

    py::class_<Semaphore>(m, "Semaphore",
                          "A named counting semaphore shared between processes. Semaphore.create(name, initial=0, "
                          "maximum=None) / Semaphore.open(name). The context manager closes (it does not unlink).")
        .def_static(
            "create",
            [](const std::string& name, long long initial, py::object maximum, bool persistent) {
                long long mx = maximum.is_none() ? (long long)Semaphore::max_value() : maximum.cast<long long>();
                if (initial < 0 || mx < 1 || mx > (long long)Semaphore::max_value() || initial > mx)
                    throw py::value_error("semaphore '" + name + "': need 0 <= initial <= maximum, 1 <= maximum <= " +
                                          std::to_string(Semaphore::max_value()));
                return without_gil([&] { return Semaphore::create(name, uint32_t(initial), uint32_t(mx), persistent); });
            },
            py::arg("name"), py::arg("initial") = 0, py::arg("maximum") = py::none(), py::arg("persistent") = false,
            "FileExistsError if NAME exists. The name lives while a process has it open (persistent=True: until unlink()).")
        .def_static(
            "open", [](const std::string& name, bool persistent) { return without_gil([&] { return Semaphore::open(name, persistent); }); },
            py::arg("name"), py::arg("persistent") = false, "FileNotFoundError if NAME does not exist.")
        .def(
            "acquire",
            [](Semaphore& s, py::object timeout) {
                auto t = timeout_from(timeout);
                Watch w;
                w.closed = [](const void* p) { return static_cast<const Semaphore*>(p)->closed(); };
                w.obj = &s;
                w.what = "semaphore '" + s.name() + "'";
                return without_gil([&] { return s.acquire(t, closable_interrupt(w)); });
            },
            py::arg("timeout") = py::none(), "acquire(timeout=None) -> bool: True when acquired, False on timeout.")
        .def(
            "release",
            [](Semaphore& s, long long n) {
                if (n < 1 || n > (long long)Semaphore::max_value()) throw py::value_error("release(n): n must be >= 1");
                s.release(uint32_t(n));
            },
            py::arg("n") = 1, "release(n=1): adds n to the count. Past the maximum: ValueError.")
        .def("close", [](Semaphore& s) { s.close(); })
        .def("unlink", [](Semaphore& s) { return s.unlink(); },
             "Removes the name now (openers keep their handle). False if it was already gone.")
        .def("__enter__", [](py::object self) { return self; })
        .def("__exit__", [](Semaphore& s, py::args) { s.close(); return false; })
        .def_property_readonly("name", [](const Semaphore& s) { return s.name(); })
        .def_property_readonly("closed", [](const Semaphore& s) { return s.closed(); })
        .def_property_readonly_static("MAX_VALUE", [](py::object) { return Semaphore::max_value(); })
        .def("__repr__", [](const Semaphore& s) {
            return "<sharedstate.Semaphore '" + s.name() + "'" + (s.closed() ? " closed>" : ">");
        });
}

// For bind_waitset.cpp: the WaitSet source of a Pipe, PipeServer or Semaphore (false: none).
bool waitset_source_channel(py::handle o, sharedstate::detail::WaitSource& out) {
    if (PyObject_TypeCheck(o.ptr(), &PipeType)) {
        Pipe* p = reinterpret_cast<PyPipe*>(o.ptr())->pipe;
        if (!p) throw py::value_error("operation on a closed Pipe");
        out = p->wait_source();
        return true;
    }
    if (py::isinstance<PipeServer>(o)) {
        out = py::cast<PipeServer&>(o).wait_source();
        return true;
    }
    if (py::isinstance<Semaphore>(o)) {
        out = py::cast<Semaphore&>(o).wait_source();
        return true;
    }
    return false;
}

}  // namespace sharedstate_py
