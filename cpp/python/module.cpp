// PYBIND11_MODULE(_core): exception classes, the translator, and each binding file's part.
#include <pybind11/pybind11.h>

#include <sharedstate/detail/os.hpp>

#include "common.hpp"

namespace sharedstate_py {

PyObject* LayoutMismatchError = nullptr;
PyObject* CorruptSegmentError = nullptr;
PyObject* WrongKindError = nullptr;

void bind_state(py::module_& m);     // state_type.cpp
void bind_queue(py::module_& m);     // bind_queue.cpp
void bind_channels(py::module_& m);  // bind_channels.cpp
void bind_frames(py::module_& m);    // bind_frames.cpp
void bind_waitset(py::module_& m);   // bind_waitset.cpp
void bind_peek(py::module_& m);      // bind_peek.cpp

static void set_os_error(int code, const char* msg, bool windows) {
    PyObject* args = windows ? Py_BuildValue("(isOi)", 0, msg, Py_None, code) : Py_BuildValue("(is)", code, msg);
    if (!args) return;
    PyObject* exc = PyObject_Call(PyExc_OSError, args, nullptr);  // picks FileNotFoundError etc.
    Py_DECREF(args);
    if (!exc) return;
    PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(exc)), exc);
    Py_DECREF(exc);
}

void set_python_error(const std::exception& e) {
    using sharedstate::errc;
    const auto* se = dynamic_cast<const std::system_error*>(&e);
    if (!se) {
        if (dynamic_cast<const std::bad_alloc*>(&e)) { PyErr_NoMemory(); return; }
        PyErr_SetString(PyExc_RuntimeError, e.what());
        return;
    }
    const std::error_code& ec = se->code();
    if (ec.category() == sharedstate::error_category()) {
        PyObject* type = PyExc_ValueError;
        switch (static_cast<errc>(ec.value())) {
        case errc::layout_mismatch: type = LayoutMismatchError; break;
        case errc::corrupt_segment: type = CorruptSegmentError; break;
        case errc::wrong_kind: type = WrongKindError; break;
        case errc::timeout: type = PyExc_TimeoutError; break;
        case errc::not_found: type = PyExc_FileNotFoundError; break;
        case errc::already_exists: type = PyExc_FileExistsError; break;
        case errc::broken_pipe: type = PyExc_BrokenPipeError; break;
        case errc::end_of_stream: type = PyExc_EOFError; break;
        case errc::would_block: type = PyExc_BlockingIOError; break;
        default: break;  // bad_name, invalid_argument, message_too_large, closed: ValueError
        }
        PyErr_SetString(type, e.what());
        return;
    }
#if defined(_WIN32)
    set_os_error(ec.value(), e.what(), ec.category() == std::system_category());
#else
    set_os_error(ec.value(), e.what(), false);
#endif
}

static void check_signals(void*) {
    PyGILState_STATE g = PyGILState_Ensure();
    int r = PyErr_CheckSignals();
    PyGILState_Release(g);
    if (r != 0) throw PythonErrorSet{};
}

sharedstate::Interrupt gil_released_interrupt() {
    sharedstate::Interrupt i;
    i.check = &check_signals;
    return i;
}

std::chrono::nanoseconds timeout_from(const py::object& seconds, const char* what) {
    if (seconds.is_none()) return std::chrono::nanoseconds(-1);
    double s = py::cast<double>(seconds);
    if (std::isnan(s) || s < 0) throw py::value_error(std::string(what) + " must be None or >= 0 seconds");
    if (s > 1e9) return std::chrono::nanoseconds(-1);
    return std::chrono::nanoseconds(int64_t(s * 1e9));
}

}  // namespace sharedstate_py

// Free-threaded CPython: every binding is safe with threads sharing an object and no GIL
// (common.hpp: the pattern; tests/test_threads.py), so the module says so (Py_mod_gil_not_used).
PYBIND11_MODULE(_core, m, pybind11::mod_gil_not_used()) {
    using namespace sharedstate_py;
    m.doc() = "sharedstate's compiled core (private: use the sharedstate package)";
#ifdef SHAREDSTATE_VERSION
    m.attr("__version__") = SHAREDSTATE_VERSION;
#endif
    LayoutMismatchError = PyErr_NewExceptionWithDoc("sharedstate.LayoutMismatchError",
        "The segment's layout is not the one asked for.", PyExc_ValueError, nullptr);
    CorruptSegmentError = PyErr_NewExceptionWithDoc("sharedstate.CorruptSegmentError",
        "The segment's header fails validation; nothing in it was used.", PyExc_ValueError, nullptr);
    WrongKindError = PyErr_NewExceptionWithDoc("sharedstate.WrongKindError",
        "The name belongs to another kind of sharedstate object (e.g. a Queue opened as a SharedState).",
        CorruptSegmentError, nullptr);
    m.add_object("LayoutMismatchError", py::handle(LayoutMismatchError));
    m.add_object("CorruptSegmentError", py::handle(CorruptSegmentError));
    m.add_object("WrongKindError", py::handle(WrongKindError));

    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const sharedstate::Error& e) {
            set_python_error(e);
        } catch (const std::system_error& e) {
            set_python_error(e);
        }
    });
    m.attr("PLATFORM") = py::str(
#if defined(_WIN32)
        "win32"
#else
        "posix"
#endif
    );
    bind_state(m);
    bind_queue(m);
    bind_channels(m);
    bind_frames(m);
    bind_waitset(m);
    bind_peek(m);
}
