// Shared by the binding files: C++ errors -> Python exceptions, Ctrl-C while the GIL is
// released, seconds -> nanoseconds. No library logic lives in the bindings.
#pragma once
#include <Python.h>
#include <pybind11/pybind11.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>
#include <sharedstate/error.hpp>
#include <sharedstate/layout.hpp>
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

// (name, kind, itemsize, offset, count) tuples <-> Layout (state_type.cpp; Frames' element too).
sharedstate::Layout layout_from(const py::sequence& fields, uint32_t size, uint32_t align);
py::list layout_to(const sharedstate::Layout& L);

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

// ------------------------------------------------------------------ threads sharing an object
// THE PATTERN (every binding file follows it; free-threaded CPython and the GIL build alike):
//
// 1. A Python object owns its C++ object through an Owner<T> (a std::shared_ptr under a small
//    mutex). No other field of a binding object may change after construction unless it is
//    an atomic or is guarded by that mutex.
// 2. Every method first pins the object (Pin<T>): free-threaded, a strong reference copied
//    under the mutex; with the GIL, a plain pointer, valid only while this thread holds the
//    GIL and runs no Python code (conversions that may call __index__/__float__/buffers come
//    BEFORE the pin, or the pin is taken again after them). Code that releases the GIL first
//    takes pin.keep(owner): a strong reference, so close() in another thread can never free
//    what this thread is using.
// 3. close() calls owner.detach() (swaps the pointer out under the mutex, marks it closed)
//    and drops that reference with the GIL released. The C++ object is closed by whichever
//    thread drops the LAST reference: close() itself if no call is in flight, otherwise the
//    call in flight when it returns. Other threads' calls then get the "closed" ValueError.
// 4. A call blocked in another thread (wait, get, recv, acquire, accept) passes
//    closable_interrupt(watch): every slice (<= 50 ms) it checks the owner and, once closed,
//    fails with errc::closed (ValueError "... was closed by another thread").
// 5. Views (memoryview/numpy) hold a shared_ptr to the mapping (or to the C++ object), so
//    they outlive close().
// 6. No per-object cache shared between threads without synchronization: StateCore's
//    snapshot reuse stays as it was with the GIL; free-threaded it is kept under the
//    object's mutex and a snapshot, once returned, is never modified (state_type.cpp).
// 7. Lock order: nobody blocks on a binding mutex while holding the GIL (try_lock, else
//    release the GIL and wait), so a thread holding one may always take the GIL. Owner's
//    own mutex is only held for a pointer copy (no Python calls, no allocation).
template <class T>
class Owner {
public:
    Owner() = default;
    Owner(const Owner&) = delete;
    Owner& operator=(const Owner&) = delete;

    // Attaches the C++ object (once). `what` names it in errors: "Queue 'jobs'".
    void attach(std::shared_ptr<T> p, std::string what) {
        std::lock_guard<std::mutex> g(mu_);
        if (p_ || closed_.load(std::memory_order_relaxed)) throw std::logic_error(what + ": already attached");
        what_ = std::move(what);
        p_ = std::move(p);
    }
    // A strong reference, or null when closed (or never attached).
    std::shared_ptr<T> get() const {
        std::lock_guard<std::mutex> g(mu_);
        return p_;
    }
    // close(): the reference this object held (drop it with the GIL released). Idempotent.
    std::shared_ptr<T> detach() {
        std::lock_guard<std::mutex> g(mu_);
        closed_.store(true, std::memory_order_release);
        return std::move(p_);
    }
    bool closed() const noexcept { return closed_.load(std::memory_order_acquire); }
    bool attached() const {
        std::lock_guard<std::mutex> g(mu_);
        return p_ != nullptr;
    }
    // Names the object in errors; fixed once attached.
    const std::string& what() const noexcept { return what_; }
    // GIL build only (see Pin): the pointer with no lock; the GIL orders it with detach().
    T* borrow() const noexcept { return p_.get(); }

private:
    mutable std::mutex mu_;
    std::shared_ptr<T> p_;
    std::atomic<bool> closed_{false};
    std::string what_;
};

// What one call holds on an Owner's object (see the pattern above).
template <class T>
class Pin {
public:
    explicit Pin(const Owner<T>& o) {
#ifdef Py_GIL_DISABLED
        keep_ = o.get();
        p_ = keep_.get();
#else
        p_ = o.borrow();
#endif
    }
    explicit operator bool() const noexcept { return p_ != nullptr; }
    T* get() const noexcept { return p_; }
    T* operator->() const noexcept { return p_; }
    // A strong reference for code that releases the GIL. With the GIL it must be taken
    // before this thread runs Python code or releases the GIL after the pin.
    std::shared_ptr<T> keep(const Owner<T>& o) const {
#ifdef Py_GIL_DISABLED
        (void)o;
        return keep_;
#else
        return o.get();
#endif
    }

private:
#ifdef Py_GIL_DISABLED
    std::shared_ptr<T> keep_;
#endif
    T* p_ = nullptr;
};

// An Interrupt for a blocking call on an object another thread may close: every slice it
// runs the signal handlers (as gil_released_interrupt does) and, once closed() is true,
// fails with errc::closed naming the object. The Watch must outlive the blocking call.
struct Watch {
    bool (*closed)(const void* obj) = nullptr;
    const void* obj = nullptr;
    std::string what;  // "SharedState 'x'"
};
inline void watch_check(void* ctx) {
    const Watch& w = *static_cast<const Watch*>(ctx);
    if (w.closed && w.closed(w.obj)) sharedstate::fail(sharedstate::errc::closed, w.what + " was closed by another thread");
    gil_released_interrupt()();
}
inline sharedstate::Interrupt closable_interrupt(const Watch& w) {
    sharedstate::Interrupt i;
    i.check = &watch_check;
    i.ctx = const_cast<Watch*>(&w);
    return i;
}
template <class T>
Watch watch_of(const Owner<T>& o) {
    Watch w;
    w.closed = [](const void* p) { return static_cast<const Owner<T>*>(p)->closed(); };
    w.obj = &o;
    w.what = o.what();
    return w;
}

}  // namespace sharedstate_py
