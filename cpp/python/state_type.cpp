// SharedState's hot calls through CPython's own calling conventions (pybind11's dispatcher
// alone costs 50-100 ns a call: ../shared/PEERS.md). `_core.StateCore` is a small static
// type: read / read_into (METH_NOARGS / METH_O), write (METH_FASTCALL | METH_KEYWORDS),
// `version` (getset), and `_core.Field`, a data descriptor per payload field (attribute
// get/set). Everything else is thin. Values are converted here; the protocol is in C++.
#include <pybind11/pybind11.h>

#include <cstring>
#include <memory>
#include <sharedstate/state.hpp>
#include <thread>
#include <vector>

#include "common.hpp"

namespace sharedstate_py {
namespace {

using sharedstate::Field;
using sharedstate::Kind;
using sharedstate::Layout;
using sharedstate::SharedBlock;
namespace detail = sharedstate::detail;

struct StateCore {
    PyObject_HEAD
    std::shared_ptr<SharedBlock>* holder;  // null until attached; reset by close()
    SharedBlock* blk;                      // == holder->get(), cached for the fast paths
    Layout* layout;
    PyTypeObject* snap_type;               // a tuple subclass (namedtuple) or null: plain tuple
    PyObject* index;                       // {field name: position}
    PyObject* keys;                        // the interned field names, in order (pointer compares)
    PyObject* spare_snap;                  // the one before it, refilled in place when only we hold it
    PyObject* last_snap;                   // the last snapshot read() built, and the seq it was
    uint64_t last_seq;                     //   read at: an unchanged seq returns it again
    bool no_cache;                         // set once a writable view exists in this process
    double lock_timeout;                   // seconds a writer waits for another writer
    PyObject* weakrefs;
};

struct FieldDescr {
    PyObject_HEAD
    Py_ssize_t pos;
    PyObject* name;
};

PyTypeObject StateCoreType = {PyVarObject_HEAD_INIT(nullptr, 0)};
PyTypeObject FieldType = {PyVarObject_HEAD_INIT(nullptr, 0)};

// ------------------------------------------------------------------ value conversion
PyObject* scalar_to_py(const Field& f, const unsigned char* p) {
    switch (f.kind) {
    case Kind::Bool: return PyBool_FromLong(*p != 0);
    case Kind::Int:
        switch (f.itemsize) {
        case 1: { int8_t v; std::memcpy(&v, p, 1); return PyLong_FromLong(v); }
        case 2: { int16_t v; std::memcpy(&v, p, 2); return PyLong_FromLong(v); }
        case 4: { int32_t v; std::memcpy(&v, p, 4); return PyLong_FromLong(v); }
        default: { int64_t v; std::memcpy(&v, p, 8); return PyLong_FromLongLong(v); }
        }
    case Kind::UInt:
        switch (f.itemsize) {
        case 1: return PyLong_FromUnsignedLong(*p);
        case 2: { uint16_t v; std::memcpy(&v, p, 2); return PyLong_FromUnsignedLong(v); }
        case 4: { uint32_t v; std::memcpy(&v, p, 4); return PyLong_FromUnsignedLong(v); }
        default: { uint64_t v; std::memcpy(&v, p, 8); return PyLong_FromUnsignedLongLong(v); }
        }
    case Kind::Float:
        if (f.itemsize == 4) { float v; std::memcpy(&v, p, 4); return PyFloat_FromDouble(v); }
        else { double v; std::memcpy(&v, p, 8); return PyFloat_FromDouble(v); }
    default: return nullptr;
    }
}

PyObject* field_to_py(const Field& f, const unsigned char* payload) {
    const unsigned char* p = payload + f.offset;
    if (f.kind == Kind::Bytes)  // numpy's 'S': trailing NULs are not part of the value
        return PyBytes_FromStringAndSize(reinterpret_cast<const char*>(p), Py_ssize_t(strnlen(reinterpret_cast<const char*>(p), f.count)));
    if (f.kind == Kind::Void) return PyBytes_FromStringAndSize(reinterpret_cast<const char*>(p), Py_ssize_t(f.count));
    if (f.count == 1) return scalar_to_py(f, p);
    PyObject* t = PyTuple_New(Py_ssize_t(f.count));
    if (!t) return nullptr;
    for (uint32_t i = 0; i < f.count; ++i) {
        PyObject* v = scalar_to_py(f, p + size_t(i) * f.itemsize);
        if (!v) { Py_DECREF(t); return nullptr; }
        PyTuple_SET_ITEM(t, i, v);
    }
    return t;
}

// Python value -> bytes of one scalar. False with a Python error set on a bad value.
bool scalar_from_py(const Field& f, PyObject* o, unsigned char* out, const char* state) {
    switch (f.kind) {
    case Kind::Bool: {
        if (!PyBool_Check(o) && !PyLong_Check(o) && !PyIndex_Check(o)) {
            PyErr_Format(PyExc_TypeError, "'%s'.%s is a bool, not %.100s", state, f.name.c_str(), Py_TYPE(o)->tp_name);
            return false;
        }
        int t = PyObject_IsTrue(o);
        if (t < 0) return false;
        *out = uint8_t(t);
        return true;
    }
    case Kind::Int: {
        long long v = PyLong_AsLongLong(o);
        if (v == -1 && PyErr_Occurred()) return false;
        long long lo = f.itemsize == 8 ? INT64_MIN : -(1ll << (8 * f.itemsize - 1));
        long long hi = f.itemsize == 8 ? INT64_MAX : (1ll << (8 * f.itemsize - 1)) - 1;
        if (v < lo || v > hi) {
            PyErr_Format(PyExc_OverflowError, "'%s'.%s: %lld does not fit in int%d", state, f.name.c_str(), v, 8 * f.itemsize);
            return false;
        }
        std::memcpy(out, &v, f.itemsize);  // little-endian: the low bytes
        return true;
    }
    case Kind::UInt: {
        PyObject* idx = PyNumber_Index(o);
        if (!idx) return false;
        unsigned long long v = PyLong_AsUnsignedLongLong(idx);
        Py_DECREF(idx);
        if (v == (unsigned long long)-1 && PyErr_Occurred()) return false;
        if (f.itemsize < 8 && v >> (8 * f.itemsize)) {
            PyErr_Format(PyExc_OverflowError, "'%s'.%s: %llu does not fit in uint%d", state, f.name.c_str(), v, 8 * f.itemsize);
            return false;
        }
        std::memcpy(out, &v, f.itemsize);
        return true;
    }
    case Kind::Float: {
        double d = PyFloat_AsDouble(o);
        if (d == -1.0 && PyErr_Occurred()) return false;
        if (f.itemsize == 4) { float x = float(d); std::memcpy(out, &x, 4); }
        else std::memcpy(out, &d, 8);
        return true;
    }
    default: return false;
    }
}

bool field_from_py(const Field& f, PyObject* o, unsigned char* out, const char* state) {
    if (f.kind == Kind::Bytes || f.kind == Kind::Void) {
        Py_buffer view;
        PyObject* enc = nullptr;
        if (PyUnicode_Check(o) && f.kind == Kind::Bytes) {
            enc = PyUnicode_AsUTF8String(o);
            if (!enc) return false;
            o = enc;
        }
        if (PyObject_GetBuffer(o, &view, PyBUF_SIMPLE) != 0) { Py_XDECREF(enc); return false; }
        bool ok = size_t(view.len) <= f.count;
        if (ok) {
            std::memcpy(out, view.buf, size_t(view.len));
            std::memset(out + view.len, 0, f.count - size_t(view.len));
        } else {
            PyErr_Format(PyExc_ValueError, "'%s'.%s holds %u bytes, got %zd", state, f.name.c_str(), f.count, view.len);
        }
        PyBuffer_Release(&view);
        Py_XDECREF(enc);
        return ok;
    }
    if (f.count == 1) return scalar_from_py(f, o, out, state);
    PyObject* seq = PySequence_Fast(o, "an array field needs a sequence");
    if (!seq) return false;
    bool ok = PySequence_Fast_GET_SIZE(seq) == Py_ssize_t(f.count);
    if (!ok) PyErr_Format(PyExc_ValueError, "'%s'.%s has %u elements, got %zd", state, f.name.c_str(), f.count, PySequence_Fast_GET_SIZE(seq));
    for (uint32_t i = 0; ok && i < f.count; ++i)
        ok = scalar_from_py(f, PySequence_Fast_GET_ITEM(seq, i), out + size_t(i) * f.itemsize, state);
    Py_DECREF(seq);
    return ok;
}

// ------------------------------------------------------------------ helpers
bool check_open(StateCore* s) {
    if (s->blk) return true;
    PyErr_SetString(PyExc_ValueError, "operation on a closed SharedState");
    return false;
}

// A consistent copy into buf (payload size bytes). False with a Python error set.
inline bool copy_out(StateCore* s, unsigned char* buf, size_t off, size_t len, uint64_t* seq = nullptr) {
    SharedBlock* b = s->blk;
    if (!b->raw()) {
        if (b->latch().read(buf, off, len, seq)) return true;
        PyErr_Format(PyExc_TimeoutError, "read of '%s': no consistent snapshot after 1M tries", b->name().c_str());
        return false;
    }
    try {
        b->read_range(buf, off, len);
        if (seq) *seq = 0;
        return true;
    } catch (const std::exception& e) {
        set_python_error(e);
        return false;
    }
}

// The write path: try the lock without waiting while holding the GIL (the common case);
// if another writer holds it, wait with the GIL released, Ctrl-C still working.
bool commit(StateCore* s, const SharedBlock::Patch* p, size_t n) {
    try {
        if (s->blk->write_patches(p, n, std::chrono::nanoseconds(0))) return true;
        std::shared_ptr<SharedBlock> keep = *s->holder;  // alive while the GIL is released
        auto timeout = std::chrono::nanoseconds(int64_t(s->lock_timeout * 1e9));
        Py_BEGIN_ALLOW_THREADS
        try {
            keep->write_patches(p, n, timeout, gil_released_interrupt());
        } catch (...) {
            Py_BLOCK_THREADS
            throw;
        }
        Py_END_ALLOW_THREADS
        return true;
    } catch (const PythonErrorSet&) {
        return false;
    } catch (const std::exception& e) {
        set_python_error(e);
        return false;
    }
}

constexpr size_t kStack = 512;

// ------------------------------------------------------------------ StateCore methods
// Snapshots are immutable: when the sequence has not moved since the last read() (no write
// committed or begun since), that snapshot is the answer again, with no copy and no
// allocation. Any write moves the 64-bit sequence forward, so an equal value means equal
// bytes (writable views bypass the sequence: having one turns this off, see view()).
//
// A fresh value needs a new snapshot. Like CPython's own zip() and enumerate(), we refill a
// result tuple in place when nobody else can see it: the snapshot before the last one is
// kept as a spare, and if its reference count says only we hold it (the caller has dropped
// it), its items are replaced instead of allocating. In a loop `snap = st.read()` the two
// objects alternate and a fresh read allocates nothing but the field values.
PyObject* state_read(PyObject* self, PyObject*) {
    auto* s = reinterpret_cast<StateCore*>(self);
    if (!check_open(s)) return nullptr;
    if (s->last_snap && s->blk->latch().seq() == s->last_seq) {
        Py_INCREF(s->last_snap);
        return s->last_snap;
    }
    const Layout& L = *s->layout;
    unsigned char stack_buf[kStack];
    std::unique_ptr<unsigned char[]> big;
    unsigned char* buf = stack_buf;
    if (L.size > kStack) { big.reset(new unsigned char[L.size]); buf = big.get(); }
    uint64_t seq = 0;
    if (!copy_out(s, buf, 0, L.size, &seq)) return nullptr;
    Py_ssize_t n = Py_ssize_t(L.fields.size());
    const bool cache = !s->blk->raw() && !s->no_cache;
    PyObject* t = s->spare_snap;
    if (cache && t && Py_REFCNT(t) == 1) {
        s->spare_snap = nullptr;  // ours now (the cache's reference becomes the caller's)
        for (Py_ssize_t i = 0; i < n; ++i) {
            PyObject* v = field_to_py(L.fields[size_t(i)], buf);
            if (!v) { Py_DECREF(t); return nullptr; }
            PyObject* old = PyTuple_GET_ITEM(t, i);
            PyTuple_SET_ITEM(t, i, v);
            Py_DECREF(old);
        }
        if (!PyObject_GC_IsTracked(t)) PyObject_GC_Track(t);  // the GC may have untracked it
    } else {
        t = s->snap_type ? s->snap_type->tp_alloc(s->snap_type, n) : PyTuple_New(n);
        if (!t) return nullptr;
        for (Py_ssize_t i = 0; i < n; ++i) {
            PyObject* v = field_to_py(L.fields[size_t(i)], buf);
            if (!v) { Py_DECREF(t); return nullptr; }
            PyTuple_SET_ITEM(t, i, v);
        }
    }
    if (cache) {
        Py_XSETREF(s->spare_snap, s->last_snap);  // moves our reference
        Py_INCREF(t);
        s->last_snap = t;
        s->last_seq = seq;
    }
    return t;
}

PyObject* state_read_into(PyObject* self, PyObject* arg) {
    auto* s = reinterpret_cast<StateCore*>(self);
    if (!check_open(s)) return nullptr;
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) != 0) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "read_into('%s') needs a writable contiguous buffer, not %.100s",
                     s->blk->name().c_str(), Py_TYPE(arg)->tp_name);
        return nullptr;
    }
    uint32_t size = s->layout->size;
    if (size_t(view.len) < size) {
        PyErr_Format(PyExc_ValueError, "read_into('%s'): buffer of %zd bytes, the payload is %u", s->blk->name().c_str(), view.len, size);
        PyBuffer_Release(&view);
        return nullptr;
    }
    uint64_t seq = 0;
    bool ok = copy_out(s, static_cast<unsigned char*>(view.buf), 0, size, &seq);
    PyBuffer_Release(&view);
    if (!ok) return nullptr;
    return PyLong_FromUnsignedLongLong(seq >> 1);
}

Py_ssize_t field_pos(StateCore* s, PyObject* name) {
    // Keyword names at a call site are interned constants, like our keys: compare pointers
    // first (small layouts), then fall back to the dict.
    Py_ssize_t n = PyTuple_GET_SIZE(s->keys);
    for (Py_ssize_t i = 0; i < n && i < 16; ++i)
        if (PyTuple_GET_ITEM(s->keys, i) == name) return i;
    PyObject* i = PyDict_GetItemWithError(s->index, name);
    if (i) return PyLong_AsSsize_t(i);
    if (!PyErr_Occurred())
        PyErr_Format(PyExc_TypeError, "SharedState '%s' has no field %R", s->blk->name().c_str(), name);
    return -1;
}

// write(**fields) or write(values): one atomic update; fields not named keep their value.
// `values` is a bytes-like object of the whole payload or a sequence of every field.
PyObject* state_write(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    auto* s = reinterpret_cast<StateCore*>(self);
    if (!check_open(s)) return nullptr;
    const Layout& L = *s->layout;
    const char* nm = s->blk->name().c_str();
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    if (nargs > 1 || (nargs == 1 && nkw)) {
        PyErr_SetString(PyExc_TypeError, "write() takes fields as keywords, or one positional value for the whole payload");
        return nullptr;
    }
    unsigned char stack_buf[kStack];
    std::unique_ptr<unsigned char[]> big;
    unsigned char* buf = stack_buf;
    if (L.size > kStack) { big.reset(new unsigned char[L.size]); buf = big.get(); }
    if (nargs == 1) {
        PyObject* v = args[0];
        if (PyObject_CheckBuffer(v)) {
            Py_buffer view;
            if (PyObject_GetBuffer(v, &view, PyBUF_C_CONTIGUOUS) != 0) return nullptr;
            bool ok = size_t(view.len) == L.size;
            if (ok) std::memcpy(buf, view.buf, L.size);
            else PyErr_Format(PyExc_ValueError, "write('%s'): %zd bytes given, the payload is %u", nm, view.len, L.size);
            PyBuffer_Release(&view);
            if (!ok) return nullptr;
        } else {
            PyObject* seq = PySequence_Fast(v, "write() needs bytes, a sequence of all fields, or keywords");
            if (!seq) return nullptr;
            if (PySequence_Fast_GET_SIZE(seq) != Py_ssize_t(L.fields.size())) {
                PyErr_Format(PyExc_ValueError, "write('%s'): %zd values given, the layout has %zu fields", nm,
                             PySequence_Fast_GET_SIZE(seq), L.fields.size());
                Py_DECREF(seq);
                return nullptr;
            }
            std::memset(buf, 0, L.size);
            for (size_t i = 0; i < L.fields.size(); ++i) {
                if (!field_from_py(L.fields[i], PySequence_Fast_GET_ITEM(seq, Py_ssize_t(i)), buf + L.fields[i].offset, nm)) {
                    Py_DECREF(seq);
                    return nullptr;
                }
            }
            Py_DECREF(seq);
        }
        SharedBlock::Patch p{0, L.size, buf};
        if (!commit(s, &p, 1)) return nullptr;
        Py_RETURN_NONE;
    }
    // Keywords: each value is converted into its place in buf first (a bad value raises
    // before anything is written), then all go in one write.
    SharedBlock::Patch small_patches[16];
    std::vector<SharedBlock::Patch> many;
    SharedBlock::Patch* patches = small_patches;
    if (nkw > 16) { many.resize(size_t(nkw)); patches = many.data(); }
    for (Py_ssize_t k = 0; k < nkw; ++k) {
        Py_ssize_t i = field_pos(s, PyTuple_GET_ITEM(kwnames, k));
        if (i < 0) return nullptr;
        const Field& f = L.fields[size_t(i)];
        if (!field_from_py(f, args[nargs + k], buf + f.offset, nm)) return nullptr;
        patches[k] = SharedBlock::Patch{f.offset, uint32_t(f.nbytes()), buf + f.offset};
    }
    if (nkw && !commit(s, patches, size_t(nkw))) return nullptr;
    Py_RETURN_NONE;
}

PyObject* state_version(PyObject* self, void*) {
    auto* s = reinterpret_cast<StateCore*>(self);
    if (!check_open(s)) return nullptr;
    if (s->blk->raw()) {
        PyErr_Format(PyExc_ValueError, "raw segment '%s' has no version (no header)", s->blk->name().c_str());
        return nullptr;
    }
    return PyLong_FromUnsignedLongLong(s->blk->latch().seq() >> 1);
}

// wait(since=None, timeout=None, *, spin=None) -> version. A C method because the round
// trip write -> wait -> reply is where microseconds matter: the first few microseconds of
// spinning keep the GIL (releasing and re-taking it costs about as much as a cross-core
// handoff), then the GIL is released for the rest of the spin and the park.
constexpr uint64_t kGilSpinNs = 10000;

bool seconds_arg(PyObject* o, const char* what, int64_t* ns) {  // None -> -1 (forever)
    if (o == Py_None) { *ns = -1; return true; }
    double d = PyFloat_AsDouble(o);
    if (d == -1.0 && PyErr_Occurred()) return false;
    if (!(d >= 0)) {
        PyErr_Format(PyExc_ValueError, "%s must be None or >= 0 seconds", what);
        return false;
    }
    *ns = d > 1e9 ? -1 : int64_t(d * 1e9);
    return true;
}

PyObject* state_wait(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    auto* s = reinterpret_cast<StateCore*>(self);
    PyObject* a[3] = {Py_None, Py_None, Py_None};  // since, timeout, spin
    static const char* const names[3] = {"since", "timeout", "spin"};
    if (nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "wait() takes at most 2 positional arguments (since, timeout)");
        return nullptr;
    }
    for (Py_ssize_t i = 0; i < nargs; ++i) a[i] = args[i];
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t k = 0; k < nkw; ++k) {
        PyObject* key = PyTuple_GET_ITEM(kwnames, k);
        int j = 0;
        while (j < 3 && PyUnicode_CompareWithASCIIString(key, names[j]) != 0) ++j;
        if (j == 3 || (j < nargs)) {
            PyErr_Format(PyExc_TypeError, "wait() got an unexpected or repeated keyword argument %R", key);
            return nullptr;
        }
        a[j] = args[nargs + k];
    }
    if (!check_open(s)) return nullptr;
    SharedBlock* b = s->blk;
    if (b->raw()) {
        PyErr_Format(PyExc_ValueError, "raw segment '%s' has no version to wait on", b->name().c_str());
        return nullptr;
    }
    const detail::Latch& latch = b->latch();
    uint64_t since;
    if (a[0] == Py_None) {
        since = latch.seq() >> 1;
    } else {
        since = PyLong_AsUnsignedLongLong(a[0]);
        if (since == (unsigned long long)-1 && PyErr_Occurred()) return nullptr;
    }
    int64_t timeout_ns, spin_ns;
    if (!seconds_arg(a[1], "timeout", &timeout_ns) || !seconds_arg(a[2], "spin", &spin_ns)) return nullptr;
    if (spin_ns < 0) spin_ns = int64_t(std::chrono::nanoseconds(sharedstate::kDefaultSpin).count());
    uint64_t v = latch.seq() >> 1;
    if (v > since) return PyLong_FromUnsignedLongLong(v);
    // Phase 1: spin holding the GIL.
    const uint64_t t0 = detail::os::monotonic_ns();
    uint64_t gil_spin = uint64_t(spin_ns) < kGilSpinNs ? uint64_t(spin_ns) : kGilSpinNs;
    if (timeout_ns >= 0 && uint64_t(timeout_ns) < gil_spin) gil_spin = uint64_t(timeout_ns);
    for (;;) {
        for (int i = 0; i < 32; ++i) {
            v = latch.seq() >> 1;
            if (v > since) return PyLong_FromUnsignedLongLong(v);
            detail::cpu_relax();
        }
        uint64_t spent = detail::os::monotonic_ns() - t0;
        if (spent >= gil_spin) break;
        if (spent > sharedstate::kSpinAloneNs) std::this_thread::yield();  // see wait.hpp
    }
    // Phase 2: the rest of the spin and the park, GIL released.
    uint64_t spent = detail::os::monotonic_ns() - t0;
    int64_t left = timeout_ns < 0 ? -1 : (timeout_ns > int64_t(spent) ? timeout_ns - int64_t(spent) : 0);
    int64_t spin_left = spin_ns > int64_t(spent) ? spin_ns - int64_t(spent) : 0;
    std::shared_ptr<SharedBlock> keep = *s->holder;  // alive whatever another thread does
    try {
        Py_BEGIN_ALLOW_THREADS
        try {
            v = keep->wait(since, std::chrono::nanoseconds(left), std::chrono::nanoseconds(spin_left),
                           gil_released_interrupt());
        } catch (...) {
            Py_BLOCK_THREADS
            throw;
        }
        Py_END_ALLOW_THREADS
    } catch (const PythonErrorSet&) {
        return nullptr;
    } catch (const std::exception& e) {
        set_python_error(e);
        return nullptr;
    }
    return PyLong_FromUnsignedLongLong(v);
}

// ------------------------------------------------------------------ Field descriptor
PyObject* field_get(PyObject* self, PyObject* obj, PyObject*) {
    if (!obj || obj == Py_None) { Py_INCREF(self); return self; }
    if (!PyObject_TypeCheck(obj, &StateCoreType)) {
        PyErr_SetString(PyExc_TypeError, "sharedstate field descriptor used on a non-SharedState object");
        return nullptr;
    }
    auto* s = reinterpret_cast<StateCore*>(obj);
    if (!check_open(s)) return nullptr;
    const Field& f = s->layout->fields[size_t(reinterpret_cast<FieldDescr*>(self)->pos)];
    unsigned char stack_buf[kStack];
    std::unique_ptr<unsigned char[]> big;
    unsigned char* buf = stack_buf;
    size_t n = size_t(f.nbytes());
    if (n > kStack) { big.reset(new unsigned char[n]); buf = big.get(); }
    if (!copy_out(s, buf, f.offset, n)) return nullptr;
    Field at0 = f;  // converted from buf, where the field starts at 0
    at0.offset = 0;
    return field_to_py(at0, buf);
}

int field_set(PyObject* self, PyObject* obj, PyObject* value) {
    auto* d = reinterpret_cast<FieldDescr*>(self);
    if (!value) {
        PyErr_Format(PyExc_AttributeError, "field %R of a SharedState cannot be deleted", d->name);
        return -1;
    }
    if (!PyObject_TypeCheck(obj, &StateCoreType)) {
        PyErr_SetString(PyExc_TypeError, "sharedstate field descriptor used on a non-SharedState object");
        return -1;
    }
    auto* s = reinterpret_cast<StateCore*>(obj);
    if (!check_open(s)) return -1;
    const Field& f = s->layout->fields[size_t(d->pos)];
    unsigned char stack_buf[kStack];
    std::unique_ptr<unsigned char[]> big;
    unsigned char* buf = stack_buf;
    size_t n = size_t(f.nbytes());
    if (n > kStack) { big.reset(new unsigned char[n]); buf = big.get(); }
    Field at0 = f;
    at0.offset = 0;
    if (!field_from_py(at0, value, buf, s->blk->name().c_str())) return -1;
    SharedBlock::Patch p{f.offset, uint32_t(n), buf};
    return commit(s, &p, 1) ? 0 : -1;
}

PyObject* field_new(PyTypeObject* type, PyObject* args, PyObject*) {
    Py_ssize_t pos;
    PyObject* name;
    if (!PyArg_ParseTuple(args, "nU:Field", &pos, &name)) return nullptr;
    auto* d = reinterpret_cast<FieldDescr*>(type->tp_alloc(type, 0));
    if (!d) return nullptr;
    d->pos = pos;
    Py_INCREF(name);
    d->name = name;
    return reinterpret_cast<PyObject*>(d);
}
void field_dealloc(PyObject* self) {
    Py_XDECREF(reinterpret_cast<FieldDescr*>(self)->name);
    Py_TYPE(self)->tp_free(self);
}
PyObject* field_repr(PyObject* self) {
    auto* d = reinterpret_cast<FieldDescr*>(self);
    return PyUnicode_FromFormat("<sharedstate field %R>", d->name);
}

// ------------------------------------------------------------------ lifecycle (not hot)
void state_dealloc(PyObject* self) {
    auto* s = reinterpret_cast<StateCore*>(self);
    PyObject_GC_UnTrack(self);
    if (s->weakrefs) PyObject_ClearWeakRefs(self);
    delete s->holder;
    delete s->layout;
    Py_CLEAR(s->snap_type);
    Py_CLEAR(s->index);
    Py_CLEAR(s->keys);
    Py_CLEAR(s->last_snap);
    Py_CLEAR(s->spare_snap);
    Py_TYPE(self)->tp_free(self);
}
int state_traverse(PyObject* self, visitproc visit, void* arg) {
    auto* s = reinterpret_cast<StateCore*>(self);
    Py_VISIT(s->snap_type);
    Py_VISIT(s->index);
    Py_VISIT(s->keys);
    Py_VISIT(s->last_snap);
    Py_VISIT(s->spare_snap);
    Py_VISIT(Py_TYPE(self));
    return 0;
}
int state_clear(PyObject* self) {
    auto* s = reinterpret_cast<StateCore*>(self);
    Py_CLEAR(s->snap_type);
    Py_CLEAR(s->index);
    Py_CLEAR(s->keys);
    Py_CLEAR(s->last_snap);
    Py_CLEAR(s->spare_snap);
    return 0;
}
PyObject* state_new(PyTypeObject* type, PyObject*, PyObject*) {
    auto* s = reinterpret_cast<StateCore*>(type->tp_alloc(type, 0));
    if (!s) return nullptr;
    s->holder = nullptr;
    s->blk = nullptr;
    s->layout = nullptr;
    s->snap_type = nullptr;
    s->index = nullptr;
    s->keys = nullptr;
    s->last_snap = nullptr;
    s->spare_snap = nullptr;
    s->last_seq = 0;
    s->no_cache = false;
    s->lock_timeout = 5.0;
    s->weakrefs = nullptr;
    return reinterpret_cast<PyObject*>(s);
}

}  // namespace

// ------------------------------------------------------------------ pybind11 part
namespace py = pybind11;

static Layout layout_from(py::sequence fields, uint32_t size, uint32_t align) {
    Layout L;
    L.size = size;
    L.align = align;
    for (auto item : fields) {
        auto t = item.cast<py::tuple>();
        if (t.size() != 5) throw py::value_error("field spec is (name, kind, itemsize, offset, count)");
        Field f;
        f.name = t[0].cast<std::string>();
        std::string k = t[1].cast<std::string>();
        if (k.size() != 1) throw py::value_error("field kind is one letter");
        f.kind = Kind(k[0]);
        f.itemsize = t[2].cast<uint8_t>();
        f.offset = t[3].cast<uint32_t>();
        f.count = t[4].cast<uint32_t>();
        L.fields.push_back(f);
    }
    return L;
}

static py::list layout_to(const Layout& L) {
    py::list out;
    for (const Field& f : L.fields)
        out.append(py::make_tuple(f.name, std::string(1, char(f.kind)), int(f.itemsize), f.offset, f.count));
    return out;
}

static StateCore* core_of(py::handle h) {
    if (!PyObject_TypeCheck(h.ptr(), &StateCoreType)) throw py::type_error("not a StateCore");
    return reinterpret_cast<StateCore*>(h.ptr());
}

static void install(py::handle self, SharedBlock&& b) {
    StateCore* s = core_of(self);
    if (s->holder) throw py::value_error("StateCore already attached");
    s->holder = new std::shared_ptr<SharedBlock>(std::make_shared<SharedBlock>(std::move(b)));
    s->blk = s->holder->get();
    s->layout = new Layout(s->blk->layout());
    PyObject* index = PyDict_New();
    if (!index) throw py::error_already_set();
    for (size_t i = 0; i < s->layout->fields.size(); ++i) {
        py::int_ pos(i);
        if (PyDict_SetItemString(index, s->layout->fields[i].name.c_str(), pos.ptr()) != 0) {
            Py_DECREF(index);
            throw py::error_already_set();
        }
    }
    s->index = index;
    PyObject* keys = PyTuple_New(Py_ssize_t(s->layout->fields.size()));
    if (!keys) throw py::error_already_set();
    for (size_t i = 0; i < s->layout->fields.size(); ++i) {
        PyObject* k = PyUnicode_InternFromString(s->layout->fields[i].name.c_str());
        if (!k) { Py_DECREF(keys); throw py::error_already_set(); }
        PyTuple_SET_ITEM(keys, Py_ssize_t(i), k);
    }
    s->keys = keys;
}

static std::shared_ptr<SharedBlock> block_of(py::handle self) {
    StateCore* s = core_of(self);
    if (!s->holder || !s->blk) throw py::value_error("operation on a closed SharedState");
    return *s->holder;
}

// A buffer over the live mapping that keeps the mapping alive (views outlive close()).
struct MappedBuffer {
    std::shared_ptr<sharedstate::detail::os::Mapping> mapping;
    unsigned char* ptr;
    size_t size;
    bool readonly;
};

static PyMethodDef state_methods[] = {
    {"read", state_read, METH_NOARGS, "read() -> snapshot: one consistent copy of every field."},
    {"read_into", state_read_into, METH_O, "read_into(buf) -> version: a consistent copy into a writable buffer."},
    {"write", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)(void)>(state_write)), METH_FASTCALL | METH_KEYWORDS,
     "write(**fields) or write(values): one atomic update; fields not named keep their value."},
    {"wait", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)(void)>(state_wait)), METH_FASTCALL | METH_KEYWORDS,
     "wait(since=None, timeout=None, *, spin=None) -> version\n\n"
     "Block until version > since (default: the version now) and return the new version.\n"
     "Spins `spin` seconds (default 50 us; the first 10 us keep the GIL) before parking in the\n"
     "kernel with the GIL released; Ctrl-C interrupts. TimeoutError after `timeout` seconds."},
    {nullptr, nullptr, 0, nullptr}};

static PyGetSetDef state_getset[] = {
    {"version", state_version, nullptr, "Number of committed writes.", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr}};

void bind_state(py::module_& m) {
    StateCoreType.tp_name = "sharedstate._core.StateCore";
    StateCoreType.tp_basicsize = sizeof(StateCore);
    StateCoreType.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC;
    StateCoreType.tp_doc = "The compiled half of sharedstate.SharedState.";
    StateCoreType.tp_new = state_new;
    StateCoreType.tp_dealloc = state_dealloc;
    StateCoreType.tp_traverse = state_traverse;
    StateCoreType.tp_clear = state_clear;
    StateCoreType.tp_methods = state_methods;
    StateCoreType.tp_getset = state_getset;
    StateCoreType.tp_weaklistoffset = offsetof(StateCore, weakrefs);
    if (PyType_Ready(&StateCoreType) < 0) throw py::error_already_set();

    FieldType.tp_name = "sharedstate._core.Field";
    FieldType.tp_basicsize = sizeof(FieldDescr);
    FieldType.tp_flags = Py_TPFLAGS_DEFAULT;
    FieldType.tp_doc = "Field(position, name): a SharedState payload field, read and written atomically.";
    FieldType.tp_new = field_new;
    FieldType.tp_dealloc = field_dealloc;
    FieldType.tp_repr = field_repr;
    FieldType.tp_descr_get = field_get;
    FieldType.tp_descr_set = field_set;
    if (PyType_Ready(&FieldType) < 0) throw py::error_already_set();

    Py_INCREF(&StateCoreType);
    m.add_object("StateCore", py::handle(reinterpret_cast<PyObject*>(&StateCoreType)));
    Py_INCREF(&FieldType);
    m.add_object("Field", py::handle(reinterpret_cast<PyObject*>(&FieldType)));

    py::class_<MappedBuffer>(m, "MappedBuffer", py::buffer_protocol())
        .def_buffer([](MappedBuffer& b) {
            return py::buffer_info(b.ptr, 1, py::format_descriptor<uint8_t>::format(), 1, {py::ssize_t(b.size)}, {1},
                                   b.readonly);
        })
        .def("__len__", [](const MappedBuffer& b) { return b.size; });

    m.def("_state_create", [](py::handle self, const std::string& name, py::sequence fields, uint32_t size,
                              uint32_t align, bool exist_ok, bool persistent) {
        Layout L = layout_from(fields, size, align);
        sharedstate::CreateOptions opt;
        opt.exist_ok = exist_ok;
        opt.persistent = persistent;
        install(self, without_gil([&] { return SharedBlock::create(name, L, opt); }));
    });
    m.def("_state_open", [](py::handle self, const std::string& name, py::object fields, uint32_t size, uint32_t align) {
        std::unique_ptr<Layout> want;
        if (!fields.is_none()) want.reset(new Layout(layout_from(fields, size, align)));
        install(self, without_gil([&] { return SharedBlock::open(name, want.get()); }));
    });
    m.def("_state_attach_raw", [](py::handle self, const std::string& name, py::sequence fields, uint32_t size,
                                  uint32_t align, bool create) {
        Layout L = layout_from(fields, size, align);
        install(self, without_gil([&] { return SharedBlock::attach_raw(name, L, create); }));
    });
    m.def("_state_set_snapshot_type", [](py::handle self, py::object type) {
        StateCore* s = core_of(self);
        if (!type.is_none() && !PyType_IsSubtype(reinterpret_cast<PyTypeObject*>(type.ptr()), &PyTuple_Type))
            throw py::type_error("snapshot type must be a tuple subclass");
        PyObject* old = reinterpret_cast<PyObject*>(s->snap_type);
        s->snap_type = type.is_none() ? nullptr : reinterpret_cast<PyTypeObject*>(type.inc_ref().ptr());
        Py_XDECREF(old);
        Py_CLEAR(s->last_snap);
        Py_CLEAR(s->spare_snap);
    });
    m.def("_state_layout", [](py::handle self) {
        auto b = block_of(self);
        const Layout& L = b->layout();
        return py::make_tuple(layout_to(L), L.size, L.align);
    });
    m.def("_state_close", [](py::handle self) {
        StateCore* s = core_of(self);
        s->blk = nullptr;
        if (s->holder) {
            std::shared_ptr<SharedBlock> last = std::move(*s->holder);
            delete s->holder;
            s->holder = nullptr;
            // If nothing else holds it (no wait in flight), closing happens here, GIL released.
            without_gil([&] { last.reset(); return 0; });
        }
    });
    m.def("_state_closed", [](py::handle self) { return core_of(self)->blk == nullptr; });
    m.def("_state_buffer", [](py::handle self, bool writable) {
        auto b = block_of(self);
        if (writable) {  // writes through it bypass the sequence: stop reusing snapshots
            StateCore* s = core_of(self);
            s->no_cache = true;
            Py_CLEAR(s->last_snap);
            Py_CLEAR(s->spare_snap);
        }
        return MappedBuffer{b->mapping(), b->data(), b->layout().size, !writable};
    });
    m.def("_state_info", [](py::handle self) {
        auto b = block_of(self);
        py::dict d;
        d["name"] = b->name();
        d["raw"] = b->raw();
        d["persistent"] = b->persistent();
        d["size"] = b->layout().size;
        if (!b->raw()) {
            const auto& i = b->info();
            d["version"] = b->version();
            d["header_size"] = i.header_size;
            d["slot_stride"] = i.slot_stride;
            d["segment_size"] = i.segment_size;
            d["creator_pid"] = i.creator_pid;
            d["created_unix_ns"] = i.created_unix_ns;
            uint64_t lo = b->lock_owner(), lw = b->last_writer();
            d["lock_owner_pid"] = lo ? py::object(py::int_(lo >> 32)) : py::object(py::none());
            d["last_writer_pid"] = lw ? py::object(py::int_(lw >> 32)) : py::object(py::none());
            d["recoveries"] = b->recoveries();
            d["waiters"] = b->waiters();
        }
        return d;
    });
    m.def("_state_set_lock_timeout", [](py::handle self, double seconds) {
        if (!(seconds >= 0)) throw py::value_error("lock_timeout must be >= 0 seconds");
        core_of(self)->lock_timeout = seconds;
    });
    m.def("_state_lock_timeout", [](py::handle self) { return core_of(self)->lock_timeout; });
    m.def("_state_name", [](py::handle self) { return block_of(self)->name(); });
    m.def("state_unlink", [](const std::string& name) { SharedBlock::unlink(name); }, py::arg("name"));
    m.def("state_remove_if_stale", [](const std::string& name) { return SharedBlock::remove_if_stale(name); },
          py::arg("name"));
    m.def("segment_exists", [](const std::string& name) { return sharedstate::detail::os::SegmentFile::exists(name); });
    m.def("segment_held", [](const std::string& name) { return sharedstate::detail::os::SegmentFile::held(name); });
}

// For bind_waitset.cpp: the WaitSet source of a SharedState (false: `o` is not one).
bool waitset_source_state(py::handle o, sharedstate::detail::WaitSource& out) {
    if (!PyObject_TypeCheck(o.ptr(), &StateCoreType)) return false;
    out = block_of(o)->wait_source();
    return true;
}

}  // namespace sharedstate_py
