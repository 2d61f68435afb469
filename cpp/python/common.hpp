// Shared by the binding files: C++ errors -> Python exceptions, Ctrl-C while the GIL is
// released, seconds -> nanoseconds. No library logic lives in the bindings.
#pragma once
#include <Python.h>
#include <pybind11/pybind11.h>

#include <chrono>
#include <cmath>
#include <sharedstate/error.hpp>
#include <sharedstate/wait.hpp>

namespace sharedstate_py {
namespace py = pybind11;

// The module's own exception classes (created in module.cpp).
extern PyObject* LayoutMismatchError;  // ValueError
extern PyObject* CorruptSegmentError;  // ValueError
extern PyObject* WrongKindError;       // CorruptSegmentError

// Sets the Python error for a C++ exception (GIL held). Used by the pybind11 translator
// and by the CPython fast paths alike.
void set_python_error(const std::exception& e);

// Thrown from an Interrupt check after a Python signal handler raised: the Python error is
// already set. Code that catches it must leave the error in place.
struct PythonErrorSet {};

// An Interrupt for blocking calls made with the GIL released: every slice it takes the GIL
// and runs the signal handlers; if one raised (KeyboardInterrupt), it throws.
sharedstate::Interrupt gil_released_interrupt();

// seconds (None = forever) -> a nanosecond timeout; negative or NaN is a ValueError.
std::chrono::nanoseconds timeout_from(const py::object& seconds, const char* what = "timeout");

// Runs f() with the GIL released; C++ exceptions come back as Python exceptions through
// pybind11 (PythonErrorSet as error_already_set).
template <class F>
auto without_gil(F&& f) -> decltype(f()) {
    try {
        py::gil_scoped_release nogil;
        return f();
    } catch (const PythonErrorSet&) {
        throw py::error_already_set();
    }
}

}  // namespace sharedstate_py
