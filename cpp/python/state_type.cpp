// SharedState's hot calls through CPython's own calling conventions (pybind11's dispatcher
// alone costs 50-100 ns a call: ../shared/PEERS.md). `_core.StateCore` is a small static
// type: read / read_into (METH_NOARGS / METH_O), write (METH_FASTCALL | METH_KEYWORDS),
// `version` (getset), and `_core.Field`, a data descriptor per payload field (attribute
// get/set). Everything else is thin. Values are converted here; the protocol is in C++.
#include <pybind11/pybind11.h>

#include <cstring>
#include <memory>
#include <new>
#include <sharedstate/state.hpp>
#include <thread>
#include <vector>

#include "common.hpp"

// Out of line: the array-field code paths, so that the scalar hot paths stay as they were.
#if defined(__GNUC__) || defined(__clang__)
#define SHAREDSTATE_PY_COLD __attribute__((noinline))
#elif defined(_MSC_VER)
#define SHAREDSTATE_PY_COLD __declspec(noinline)
#else
#define SHAREDSTATE_PY_COLD
#endif
#if defined(__GNUC__) || defined(__clang__)
#define SHAREDSTATE_PY_RARE(x) __builtin_expect(!!(x), 0)
#else
#define SHAREDSTATE_PY_RARE(x) (x)
#endif

namespace sharedstate_py {
namespace {

using sharedstate::Field;
using sharedstate::Kind;
using sharedstate::Layout;
using sharedstate::SharedBlock;
namespace detail = sharedstate::detail;

// The C++ half of a StateCore (new'd in state_new). Threads: common.hpp's pattern.
struct CoreHalf {
    Owner<SharedBlock> blk;               // null until attached; detached by close()
    std::atomic<bool> no_cache{false};    // set once a writable view exists in this process
    std::atomic<double> lock_timeout{5.0};  // seconds a writer waits for another writer
    std::string name;                     // immutable once attached
#ifdef Py_GIL_DISABLED
    std::mutex cache_mu;                  // guards last_snap / last_seq (no GIL to do it)
#endif
};

struct StateCore {
    PyObject_HEAD
    CoreHalf* core;
    Layout* layout;                        // immutable once attached
    PyTypeObject* snap_type;               // a tuple subclass (namedtuple) or null: plain tuple
    PyObject* index;                       // {field name: position}
    PyObject* keys;                        // the interned field names, in order (pointer compares)
    PyObject* spare_snap;                  // the one before it, refilled in place when only we hold it (GIL build)
    PyObject* last_snap;                   // the last snapshot read() built, and the seq it was
    uint64_t last_seq;                     //   read at: an unchanged seq returns it again
    PyObject* weakrefs;
    PyObject* arrays;                      // null, or (numpy.ndarray, ((dtype, shape) | None per field)):
                                           //   array fields come back as read-only numpy arrays
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

// An array field: a scalar kind with count > 1 (S and V fields are bytes, whatever their size).
inline bool is_array(const Field& f) { return f.count > 1 && f.kind != Kind::Bytes && f.kind != Kind::Void; }

const char* kind_name(const Field& f) {
    switch (f.kind) {
    case Kind::Bool: return "bool";
    case Kind::Int: return f.itemsize == 1 ? "int8" : f.itemsize == 2 ? "int16" : f.itemsize == 4 ? "int32" : "int64";
    case Kind::UInt: return f.itemsize == 1 ? "uint8" : f.itemsize == 2 ? "uint16" : f.itemsize == 4 ? "uint32" : "uint64";
    case Kind::Float: return f.itemsize == 4 ? "float32" : "float64";
    default: return "bytes";
    }
}

// Does a buffer's item type (its struct-module format) fit the field? Unsigned bytes ('B',
// or no format: bytes, bytearray, a memoryview of them, a uint8 array) are the field's raw
// bytes, whatever its type; any other item type must be the field's own.
bool format_fits(const Field& f, const char* fmt, Py_ssize_t itemsize) {
    if (!fmt) fmt = "B";
    char order = '@';
    if (*fmt == '@' || *fmt == '=' || *fmt == '<' || *fmt == '>' || *fmt == '!') order = *fmt++;
    if (fmt[0] == 0 || fmt[1] != 0) return false;  // one item code, nothing else (no structs)
    char c = fmt[0];
    if (itemsize == 1 && (c == 'B' || c == 'c')) return true;
    if (itemsize != f.itemsize) return false;
    if (itemsize > 1 && (order == '>' || order == '!')) return false;  // big-endian
    switch (f.kind) {
    case Kind::Bool: return c == '?';
    case Kind::Int: return c == 'b' || c == 'h' || c == 'i' || c == 'l' || c == 'q' || c == 'n';
    case Kind::UInt: return c == 'B' || c == 'H' || c == 'I' || c == 'L' || c == 'Q' || c == 'N';
    case Kind::Float: return c == 'f' || c == 'd';
    default: return false;
    }
}

// An array field's value from an object with the buffer protocol. 1: `view` holds a buffer
// of exactly the field's bytes and item type (the caller copies from it, then releases it);
// 0: not a buffer (the caller takes it as a sequence); -1: a Python error is set.
int array_buffer(const Field& f, PyObject* o, Py_buffer* view, const char* state) {
    if (!PyObject_CheckBuffer(o)) return 0;
    if (PyObject_GetBuffer(o, view, PyBUF_RECORDS_RO) != 0) {  // an exporter of plain bytes only?
        PyErr_Clear();
        if (PyObject_GetBuffer(o, view, PyBUF_SIMPLE) != 0) return -1;
    }
    const char* why = nullptr;
    if (!format_fits(f, view->format, view->itemsize)) why = "type";
    else if (uint64_t(view->len) != f.nbytes()) why = "size";
    if (!why) return 1;
    if (why[0] == 't')
        PyErr_Format(PyExc_ValueError,
                     "'%s'.%s is %u x %s (%llu bytes): got a buffer of '%s' items of %zd bytes; convert it first "
                     "(for numpy: arr.astype(st.layout.dtype['%s'].base))",
                     state, f.name.c_str(), f.count, kind_name(f), (unsigned long long)f.nbytes(),
                     view->format ? view->format : "B", view->itemsize, f.name.c_str());
    else
        PyErr_Format(PyExc_ValueError, "'%s'.%s is %u x %s (%llu bytes): got a buffer of %zd bytes", state,
                     f.name.c_str(), f.count, kind_name(f), (unsigned long long)f.nbytes(), view->len);
    PyBuffer_Release(view);
    return -1;
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
    Py_buffer view;
    int r = array_buffer(f, o, &view, state);
    if (r < 0) return false;
    if (r > 0) {  // one copy (a strided buffer is gathered by CPython)
        bool ok = PyBuffer_ToContiguous(out, &view, view.len, 'C') == 0;
        PyBuffer_Release(&view);
        return ok;
    }
    PyObject* seq = PySequence_Fast(o, "an array field needs a buffer (numpy array, bytes, array.array) or a sequence");
    if (!seq) return false;
    bool ok = PySequence_Fast_GET_SIZE(seq) == Py_ssize_t(f.count);
    if (!ok) PyErr_Format(PyExc_ValueError, "'%s'.%s has %u elements, got %zd", state, f.name.c_str(), f.count, PySequence_Fast_GET_SIZE(seq));
    for (uint32_t i = 0; ok && i < f.count; ++i)
        ok = scalar_from_py(f, PySequence_Fast_GET_ITEM(seq, i), out + size_t(i) * f.itemsize, state);
    Py_DECREF(seq);
    return ok;
}

// Buffers held for the duration of one write: patches point straight into them, so a large
// array field crosses once from the caller's memory into each copy (no staging copy).
// (Py_buffer structs are not moved once filled: the exporter may know their address.)
struct HeldBuffers {
    Py_buffer inline_views[4];
    std::unique_ptr<Py_buffer[]> many;
    size_t cap = 4, n = 0;
    explicit HeldBuffers(size_t want) {
        if (want > 4) { many.reset(new Py_buffer[want]); cap = want; }
    }
    Py_buffer* next() { return many ? &many[n] : &inline_views[n]; }  // n < cap: one per field
    void keep() { ++n; }
    ~HeldBuffers() {
        for (size_t i = 0; i < n; ++i) PyBuffer_Release(many ? &many[i] : &inline_views[i]);
    }
    HeldBuffers(const HeldBuffers&) = delete;
    HeldBuffers& operator=(const HeldBuffers&) = delete;
};

// An array field as a snapshot value: a read-only numpy array over a new bytes object that
// the latch read fills before anybody else can see it (so the copy goes straight into the
// array's memory, and the array owns it: it never changes after a later write).
PyObject* new_array_bytes(const Field& f) {
    return PyBytes_FromStringAndSize(nullptr, Py_ssize_t(f.nbytes()));
}

// bytes (filled) -> numpy.ndarray(shape, dtype, buffer=bytes): read-only, owns its memory.
// Steals the reference to `bytes`.
PyObject* wrap_array(PyObject* arrays, size_t i, PyObject* bytes) {
    PyObject* info = PyTuple_GET_ITEM(PyTuple_GET_ITEM(arrays, 1), Py_ssize_t(i));
    PyObject* args[3] = {PyTuple_GET_ITEM(info, 1), PyTuple_GET_ITEM(info, 0), bytes};
    PyObject* a = PyObject_Vectorcall(PyTuple_GET_ITEM(arrays, 0), args, 3, nullptr);
    Py_DECREF(bytes);
    return a;
}

inline bool array_field(PyObject* arrays, size_t i) {
    return arrays && PyTuple_GET_ITEM(PyTuple_GET_ITEM(arrays, 1), Py_ssize_t(i)) != Py_None;
}
inline unsigned char* bytes_data(PyObject* b) { return reinterpret_cast<unsigned char*>(PyBytes_AS_STRING(b)); }

// ------------------------------------------------------------------ helpers
const char* name_of(StateCore* s) { return s->core->name.c_str(); }

void closed_error(StateCore* s) {
    if (s->layout) PyErr_Format(PyExc_ValueError, "operation on a closed %s", s->core->blk.what().c_str());
    else PyErr_SetString(PyExc_ValueError, "operation on a closed SharedState");
}

// A cheap early check (the pin is the real one): attached and not closed.
bool check_open(StateCore* s) {
    if (s->layout && !s->core->blk.closed()) return true;
    closed_error(s);
    return false;
}

// The block for one call (common.hpp: Pin). False with the closed error set.
using BlockPin = Pin<SharedBlock>;
inline bool pinned(StateCore* s, const BlockPin& p) {
    if (p) return true;
    closed_error(s);
    return false;
}

// A consistent copy into buf (payload size bytes). False with a Python error set.
inline bool copy_out(SharedBlock* b, unsigned char* buf, size_t off, size_t len, uint64_t* seq = nullptr) {
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

constexpr size_t kStack = 512;

// The array fields' values of one snapshot (null for the other fields), and their reading.
struct ArrayValues {
    std::vector<PyObject*> v;
    PyObject* take(size_t i) {
        if (i >= v.size()) return nullptr;
        PyObject* o = v[i];
        v[i] = nullptr;
        return o;
    }
    ~ArrayValues() { for (PyObject* o : v) Py_XDECREF(o); }
};

// One consistent read of a payload with array fields: each array field straight into its
// own new buffer, the other fields into buf at their offsets (buf sized for those only).
SHAREDSTATE_PY_COLD bool read_with_arrays(StateCore* s, SharedBlock* b, unsigned char* stack_buf,
                                          std::unique_ptr<unsigned char[]>& big, unsigned char*& buf, uint64_t* seq,
                                          ArrayValues& arr) {
    const Layout& L = *s->layout;
    const size_t n = L.fields.size();
    arr.v.assign(n, nullptr);
    size_t need = 0;
    for (size_t i = 0; i < n; ++i) {
        const Field& f = L.fields[i];
        if (array_field(s->arrays, i)) {
            if (!(arr.v[i] = new_array_bytes(f))) return false;
        } else if (f.offset + f.nbytes() > need) {
            need = size_t(f.offset + f.nbytes());
        }
    }
    buf = stack_buf;
    if (need > kStack) { big.reset(new unsigned char[need]); buf = big.get(); }
    std::vector<detail::Latch::Span> spans(n);
    for (size_t i = 0; i < n; ++i) {
        const Field& f = L.fields[i];
        spans[i] = detail::Latch::Span{f.offset, uint32_t(f.nbytes()), arr.v[i] ? bytes_data(arr.v[i]) : buf + f.offset};
    }
    if (!b->raw()) {
        if (!b->latch().read_spans(spans.data(), n, seq)) {
            PyErr_Format(PyExc_TimeoutError, "read of '%s': no consistent snapshot after 1M tries", b->name().c_str());
            return false;
        }
    } else {  // best effort, as every raw read
        for (const auto& sp : spans)
            if (!copy_out(b, sp.dst, sp.offset, sp.size)) return false;
        *seq = 0;
    }
    for (size_t i = 0; i < n; ++i) {
        if (!arr.v[i]) continue;
        PyObject* bytes = arr.v[i];
        arr.v[i] = nullptr;
        if (!(arr.v[i] = wrap_array(s->arrays, i, bytes))) return false;
    }
    return true;
}

// The write path: try the lock without waiting while holding the GIL (the common case);
// if another writer holds it, wait with the GIL released, Ctrl-C still working.
// Pins the block itself: call it after the conversions (which may run Python code).
bool commit(StateCore* s, const SharedBlock::Patch* p, size_t n) {
    BlockPin b(s->core->blk);
    if (!pinned(s, b)) return false;
    try {
        if (b->write_patches(p, n, std::chrono::nanoseconds(0))) return true;
        std::shared_ptr<SharedBlock> keep = b.keep(s->core->blk);  // alive while the GIL is released
        if (!keep) { closed_error(s); return false; }
        auto timeout = std::chrono::nanoseconds(int64_t(s->core->lock_timeout.load(std::memory_order_relaxed) * 1e9));
        Watch w = watch_of(s->core->blk);
        Py_BEGIN_ALLOW_THREADS
        try {
            keep->write_patches(p, n, timeout, closable_interrupt(w));
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
//
// Threads. With the GIL, the GIL serializes all of this. Free-threaded, the reuse of an
// unchanged snapshot stays (last_snap is read and replaced under the object's cache mutex,
// and a snapshot, once returned, is never modified); the in-place refill does not exist:
// Py_REFCNT is not a proof of exclusive ownership there (biased reference counting), and
// another thread could be reading the spare while we refill it.
#ifndef Py_GIL_DISABLED
PyObject* state_read(PyObject* self, PyObject*) {
    auto* s = reinterpret_cast<StateCore*>(self);
    BlockPin b(s->core->blk);
    if (!pinned(s, b)) return nullptr;
    if (s->last_snap && b->latch().seq() == s->last_seq) {
        Py_INCREF(s->last_snap);
        return s->last_snap;
    }
    const Layout& L = *s->layout;
    unsigned char stack_buf[kStack];
    std::unique_ptr<unsigned char[]> big;
    unsigned char* buf = stack_buf;
    uint64_t seq = 0;
    ArrayValues arr;  // array fields: numpy arrays filled by the same consistent read
    if (SHAREDSTATE_PY_RARE(s->arrays != nullptr)) {
        if (!read_with_arrays(s, b.get(), stack_buf, big, buf, &seq, arr)) return nullptr;
    } else {
        if (L.size > kStack) { big.reset(new unsigned char[L.size]); buf = big.get(); }
        if (!copy_out(b.get(), buf, 0, L.size, &seq)) return nullptr;
    }
    Py_ssize_t n = Py_ssize_t(L.fields.size());
    const bool cache = !b->raw() && !s->core->no_cache.load(std::memory_order_relaxed);
    PyObject* t = s->spare_snap;
    if (cache && t && Py_REFCNT(t) == 1) {
        s->spare_snap = nullptr;  // ours now (the cache's reference becomes the caller's)
        for (Py_ssize_t i = 0; i < n; ++i) {
            PyObject* v = arr.take(size_t(i));
            if (!v) v = field_to_py(L.fields[size_t(i)], buf);
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
            PyObject* v = arr.take(size_t(i));
            if (!v) v = field_to_py(L.fields[size_t(i)], buf);
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
#else
PyObject* state_read(PyObject* self, PyObject*) {
    auto* s = reinterpret_cast<StateCore*>(self);
    BlockPin b(s->core->blk);  // a strong reference: close() cannot free it under us
    if (!pinned(s, b)) return nullptr;
    const bool cache = !b->raw() && !s->core->no_cache.load(std::memory_order_relaxed);
    if (cache) {
        std::lock_guard<std::mutex> g(s->core->cache_mu);
        if (s->last_snap && b->latch().seq() == s->last_seq) {
            Py_INCREF(s->last_snap);  // alive: the cache's reference only changes under the lock
            return s->last_snap;
        }
    }
    const Layout& L = *s->layout;
    unsigned char stack_buf[kStack];
    std::unique_ptr<unsigned char[]> big;
    unsigned char* buf = stack_buf;
    uint64_t seq = 0;
    ArrayValues arr;  // array fields: numpy arrays filled by the same consistent read
    if (SHAREDSTATE_PY_RARE(s->arrays != nullptr)) {
        if (!read_with_arrays(s, b.get(), stack_buf, big, buf, &seq, arr)) return nullptr;
    } else {
        if (L.size > kStack) { big.reset(new unsigned char[L.size]); buf = big.get(); }
        if (!copy_out(b.get(), buf, 0, L.size, &seq)) return nullptr;
    }
    Py_ssize_t n = Py_ssize_t(L.fields.size());
    PyTypeObject* type = s->snap_type;  // set once, before the object is shared
    PyObject* t = type ? type->tp_alloc(type, n) : PyTuple_New(n);
    if (!t) return nullptr;
    for (Py_ssize_t i = 0; i < n; ++i) {
        PyObject* v = arr.take(size_t(i));
        if (!v) v = field_to_py(L.fields[size_t(i)], buf);
        if (!v) { Py_DECREF(t); return nullptr; }
        PyTuple_SET_ITEM(t, i, v);
    }
    if (cache) {
        PyObject* old = nullptr;
        {
            std::lock_guard<std::mutex> g(s->core->cache_mu);
            if (!s->last_snap || seq > s->last_seq) {  // never replace a newer one by an older
                old = s->last_snap;
                Py_INCREF(t);
                s->last_snap = t;
                s->last_seq = seq;
            }
        }
        Py_XDECREF(old);  // outside the lock: a dealloc may run anything
    }
    return t;
}
#endif

PyObject* state_read_into(PyObject* self, PyObject* arg) {
    auto* s = reinterpret_cast<StateCore*>(self);
    if (!check_open(s)) return nullptr;
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) != 0) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "read_into('%s') needs a writable contiguous buffer, not %.100s",
                     name_of(s), Py_TYPE(arg)->tp_name);
        return nullptr;
    }
    uint32_t size = s->layout->size;
    if (size_t(view.len) < size) {
        PyErr_Format(PyExc_ValueError, "read_into('%s'): buffer of %zd bytes, the payload is %u", name_of(s), view.len, size);
        PyBuffer_Release(&view);
        return nullptr;
    }
    uint64_t seq = 0;
    BlockPin b(s->core->blk);  // after GetBuffer (which may run Python code)
    bool ok = pinned(s, b) && copy_out(b.get(), static_cast<unsigned char*>(view.buf), 0, size, &seq);
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
        PyErr_Format(PyExc_TypeError, "SharedState '%s' has no field %R", name_of(s), name);
    return -1;
}

// An array field given to write() as a buffer: its patch points into the caller's buffer
// (held until the write is done), or into the staging buffer for a strided one (gathered
// once). 1: patched; 0: not a buffer (convert it as a sequence); -1: error set. Out of line:
// the scalar keywords of the controller's hot write path never pay for it.
template <class Staging>
SHAREDSTATE_PY_COLD int array_patch(const Field& f, PyObject* value, std::unique_ptr<HeldBuffers>& held, size_t nkw,
                                    SharedBlock::Patch& patch, Staging& staging, const char* nm) {
    if (!held) held.reset(new HeldBuffers(nkw));
    Py_buffer* view = held->next();
    int r = array_buffer(f, value, view, nm);
    if (r <= 0) return r;
    held->keep();
    if (PyBuffer_IsContiguous(view, 'C')) {
        patch = SharedBlock::Patch{f.offset, uint32_t(f.nbytes()), static_cast<const unsigned char*>(view->buf)};
    } else {
        unsigned char* out = staging() + f.offset;
        if (PyBuffer_ToContiguous(out, view, view->len, 'C') != 0) return -1;
        patch = SharedBlock::Patch{f.offset, uint32_t(f.nbytes()), out};
    }
    return 1;
}

// A snapshot's array field read alone (st.field): a read-only numpy array owning its copy.
SHAREDSTATE_PY_COLD PyObject* array_field_get(StateCore* s, size_t pos, const Field& f) {
    PyObject* bytes = new_array_bytes(f);
    if (!bytes) return nullptr;
    {
        BlockPin b(s->core->blk);
        if (!pinned(s, b) || !copy_out(b.get(), bytes_data(bytes), f.offset, size_t(f.nbytes()))) {
            Py_DECREF(bytes);
            return nullptr;
        }
    }
    return wrap_array(s->arrays, pos, bytes);
}

// write(**fields) or write(values): one atomic update; fields not named keep their value.
// `values` is a bytes-like object of the whole payload or a sequence of every field.
PyObject* state_write(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    auto* s = reinterpret_cast<StateCore*>(self);
    if (!check_open(s)) return nullptr;
    const Layout& L = *s->layout;
    const char* nm = name_of(s);
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    if (nargs > 1 || (nargs == 1 && nkw)) {
        PyErr_SetString(PyExc_TypeError, "write() takes fields as keywords, or one positional value for the whole payload");
        return nullptr;
    }
    // The staging buffer for converted values, allocated only when a value needs converting
    // (a buffer of the right size and type is patched from where it is).
    unsigned char stack_buf[kStack];
    std::unique_ptr<unsigned char[]> big;
    unsigned char* buf = L.size > kStack ? nullptr : stack_buf;
    auto staging = [&]() -> unsigned char* {
        if (!buf) { big.reset(new unsigned char[L.size]); buf = big.get(); }
        return buf;
    };
    if (nargs == 1) {
        PyObject* v = args[0];
        HeldBuffers held(1);
        const unsigned char* src;
        if (PyObject_CheckBuffer(v)) {
            Py_buffer* view = held.next();
            if (PyObject_GetBuffer(v, view, PyBUF_C_CONTIGUOUS) != 0) return nullptr;
            held.keep();
            if (size_t(view->len) != L.size) {
                PyErr_Format(PyExc_ValueError, "write('%s'): %zd bytes given, the payload is %u", nm, view->len, L.size);
                return nullptr;
            }
            src = static_cast<const unsigned char*>(view->buf);
        } else {
            PyObject* seq = PySequence_Fast(v, "write() needs bytes, a sequence of all fields, or keywords");
            if (!seq) return nullptr;
            if (PySequence_Fast_GET_SIZE(seq) != Py_ssize_t(L.fields.size())) {
                PyErr_Format(PyExc_ValueError, "write('%s'): %zd values given, the layout has %zu fields", nm,
                             PySequence_Fast_GET_SIZE(seq), L.fields.size());
                Py_DECREF(seq);
                return nullptr;
            }
            unsigned char* out = staging();
            std::memset(out, 0, L.size);
            for (size_t i = 0; i < L.fields.size(); ++i) {
                if (!field_from_py(L.fields[i], PySequence_Fast_GET_ITEM(seq, Py_ssize_t(i)), out + L.fields[i].offset, nm)) {
                    Py_DECREF(seq);
                    return nullptr;
                }
            }
            Py_DECREF(seq);
            src = out;
        }
        SharedBlock::Patch p{0, L.size, src};
        if (!commit(s, &p, 1)) return nullptr;
        Py_RETURN_NONE;
    }
    // Keywords: each value is converted into its place in buf first (a bad value raises
    // before anything is written), then all go in one write. An array field given as a
    // C-contiguous buffer is not converted: its patch points into the caller's buffer.
    SharedBlock::Patch small_patches[16];
    std::vector<SharedBlock::Patch> many;
    SharedBlock::Patch* patches = small_patches;
    if (nkw > 16) { many.resize(size_t(nkw)); patches = many.data(); }
    std::unique_ptr<HeldBuffers> held;  // made by the first array field given as a buffer
    for (Py_ssize_t k = 0; k < nkw; ++k) {
        Py_ssize_t i = field_pos(s, PyTuple_GET_ITEM(kwnames, k));
        if (i < 0) return nullptr;
        const Field& f = L.fields[size_t(i)];
        PyObject* value = args[nargs + k];
        if (SHAREDSTATE_PY_RARE(f.count > 1) && is_array(f)) {
            int r = array_patch(f, value, held, size_t(nkw), patches[k], staging, nm);
            if (r < 0) return nullptr;
            if (r > 0) continue;
        }
        unsigned char* out = staging() + f.offset;
        if (!field_from_py(f, value, out, nm)) return nullptr;
        patches[k] = SharedBlock::Patch{f.offset, uint32_t(f.nbytes()), out};
    }
    if (nkw && !commit(s, patches, size_t(nkw))) return nullptr;
    Py_RETURN_NONE;
}

PyObject* state_version(PyObject* self, void*) {
    auto* s = reinterpret_cast<StateCore*>(self);
    BlockPin b(s->core->blk);
    if (!pinned(s, b)) return nullptr;
    if (b->raw()) {
        PyErr_Format(PyExc_ValueError, "raw segment '%s' has no version (no header)", name_of(s));
        return nullptr;
    }
    return PyLong_FromUnsignedLongLong(b->latch().seq() >> 1);
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
    int64_t timeout_ns, spin_ns;  // (may run Python code: before the pin)
    if (!seconds_arg(a[1], "timeout", &timeout_ns) || !seconds_arg(a[2], "spin", &spin_ns)) return nullptr;
    BlockPin b(s->core->blk);
    if (!pinned(s, b)) return nullptr;
    if (b->raw()) {
        PyErr_Format(PyExc_ValueError, "raw segment '%s' has no version to wait on", name_of(s));
        return nullptr;
    }
    const detail::Latch& latch = b->latch();
    uint64_t since;
    if (a[0] == Py_None) {
        since = latch.seq() >> 1;
    } else {
        since = PyLong_AsUnsignedLongLong(a[0]);  // an int or a TypeError: runs no Python code
        if (since == (unsigned long long)-1 && PyErr_Occurred()) return nullptr;
    }
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
    std::shared_ptr<SharedBlock> keep = b.keep(s->core->blk);  // alive whatever another thread does
    if (!keep) { closed_error(s); return nullptr; }
    Watch w = watch_of(s->core->blk);  // close() in another thread ends the wait (ValueError)
    try {
        Py_BEGIN_ALLOW_THREADS
        try {
            v = keep->wait(since, std::chrono::nanoseconds(left), std::chrono::nanoseconds(spin_left),
                           closable_interrupt(w));
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
    const size_t pos = size_t(reinterpret_cast<FieldDescr*>(self)->pos);
    const Field& f = s->layout->fields[pos];
    if (SHAREDSTATE_PY_RARE(s->arrays != nullptr) && f.count > 1 && array_field(s->arrays, pos))
        return array_field_get(s, pos, f);
    unsigned char stack_buf[kStack];
    std::unique_ptr<unsigned char[]> big;
    unsigned char* buf = stack_buf;
    size_t n = size_t(f.nbytes());
    if (n > kStack) { big.reset(new unsigned char[n]); buf = big.get(); }
    {
        BlockPin b(s->core->blk);  // released before the conversion (which may run a GC)
        if (!pinned(s, b) || !copy_out(b.get(), buf, f.offset, n)) return nullptr;
    }
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
    if (!field_from_py(at0, value, buf, name_of(s))) return -1;
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
    delete s->core;  // no other thread is inside: it would hold a reference
    delete s->layout;
    Py_CLEAR(s->snap_type);
    Py_CLEAR(s->index);
    Py_CLEAR(s->keys);
    Py_CLEAR(s->last_snap);
    Py_CLEAR(s->spare_snap);
    Py_CLEAR(s->arrays);
    Py_TYPE(self)->tp_free(self);
}
int state_traverse(PyObject* self, visitproc visit, void* arg) {
    auto* s = reinterpret_cast<StateCore*>(self);
    Py_VISIT(s->snap_type);
    Py_VISIT(s->index);
    Py_VISIT(s->keys);
    Py_VISIT(s->last_snap);
    Py_VISIT(s->spare_snap);
    Py_VISIT(s->arrays);
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
    Py_CLEAR(s->arrays);
    return 0;
}
PyObject* state_new(PyTypeObject* type, PyObject*, PyObject*) {
    auto* s = reinterpret_cast<StateCore*>(type->tp_alloc(type, 0));
    if (!s) return nullptr;
    s->core = new (std::nothrow) CoreHalf();
    if (!s->core) {
        Py_DECREF(s);
        return PyErr_NoMemory();
    }
    s->layout = nullptr;
    s->snap_type = nullptr;
    s->index = nullptr;
    s->keys = nullptr;
    s->last_snap = nullptr;
    s->spare_snap = nullptr;
    s->last_seq = 0;
    s->weakrefs = nullptr;
    s->arrays = nullptr;
    return reinterpret_cast<PyObject*>(s);
}

}  // namespace

// ------------------------------------------------------------------ pybind11 part
namespace py = pybind11;

Layout layout_from(const py::sequence& fields, uint32_t size, uint32_t align) {
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

py::list layout_to(const Layout& L) {
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
    if (s->layout) throw py::value_error("StateCore already attached");
    auto blk = std::make_shared<SharedBlock>(std::move(b));
    s->core->name = blk->name();
    s->layout = new Layout(blk->layout());
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
    s->core->blk.attach(std::move(blk), "SharedState '" + s->core->name + "'");  // published last
}

// The snapshot cache emptied (under the cache mutex when there is no GIL).
static void drop_snapshots(StateCore* s) {
    PyObject* a;
    PyObject* b;
    {
#ifdef Py_GIL_DISABLED
        std::lock_guard<std::mutex> g(s->core->cache_mu);
#endif
        a = s->last_snap;
        b = s->spare_snap;
        s->last_snap = nullptr;
        s->spare_snap = nullptr;
    }
    Py_XDECREF(a);
    Py_XDECREF(b);
}

static std::shared_ptr<SharedBlock> block_of(py::handle self) {
    StateCore* s = core_of(self);
    std::shared_ptr<SharedBlock> b = s->core->blk.get();
    if (!b) throw py::value_error(s->layout ? "operation on a closed " + s->core->blk.what() : std::string("operation on a closed SharedState"));
    return b;
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
                              uint32_t align, bool exist_ok, bool persistent, const std::string& source_key) {
        Layout L = layout_from(fields, size, align);
        sharedstate::CreateOptions opt;
        opt.exist_ok = exist_ok;
        opt.persistent = persistent;
        opt.source_key = source_key;
        install(self, without_gil([&] { return SharedBlock::create(name, L, opt); }));
    }, py::arg("self"), py::arg("name"), py::arg("fields"), py::arg("size"), py::arg("align"), py::arg("exist_ok"),
       py::arg("persistent"), py::arg("source_key") = std::string());
    m.def("_state_set_source_alive", [](py::handle self, bool alive) {
        auto b = block_of(self);
        without_gil([&] { b->set_source_alive(alive); });
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
        // (set once by SharedState._adopt, before the object is shared between threads)
        PyObject* old = reinterpret_cast<PyObject*>(s->snap_type);
        s->snap_type = type.is_none() ? nullptr : reinterpret_cast<PyTypeObject*>(type.inc_ref().ptr());
        Py_XDECREF(old);
        drop_snapshots(s);
    });
    // (numpy.ndarray, per field (dtype, shape) or None): array fields read as read-only
    // numpy arrays of that dtype and shape; None: every array field as a tuple.
    m.def("_state_set_arrays", [](py::handle self, py::object arrays) {
        StateCore* s = core_of(self);
        if (!arrays.is_none()) {
            if (!s->layout) throw py::value_error("StateCore not attached");
            auto t = arrays.cast<py::tuple>();
            if (t.size() != 2 || !PyCallable_Check(t[0].ptr())) throw py::type_error("arrays is (ndarray, infos)");
            auto infos = t[1].cast<py::tuple>();
            if (infos.size() != s->layout->fields.size()) throw py::value_error("one array info per field");
            for (size_t i = 0; i < infos.size(); ++i) {
                py::handle e = infos[i];
                if (e.is_none()) continue;
                if (!is_array(s->layout->fields[i])) throw py::value_error("array info for a field that is not an array");
                if (!PyTuple_Check(e.ptr()) || PyTuple_GET_SIZE(e.ptr()) != 2 || !PyTuple_Check(PyTuple_GET_ITEM(e.ptr(), 1)))
                    throw py::type_error("array info is (dtype, shape tuple)");
            }
            arrays = py::reinterpret_steal<py::object>(PyTuple_Pack(2, t[0].ptr(), infos.ptr()));
        }
        PyObject* old = s->arrays;
        s->arrays = arrays.is_none() ? nullptr : arrays.inc_ref().ptr();
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
        // Other threads: a pinned call finishes on its own reference; a wait() in flight
        // sees the close within a slice and raises; new calls get the closed error.
        std::shared_ptr<SharedBlock> last = s->core->blk.detach();
        // If nothing else holds it (no call in flight), closing happens here, GIL released.
        if (last) without_gil([&] { last.reset(); return 0; });
    });
    m.def("_state_closed", [](py::handle self) { return !core_of(self)->core->blk.attached(); });
    m.def("_state_buffer", [](py::handle self, bool writable) {
        auto b = block_of(self);
        if (writable) {  // writes through it bypass the sequence: stop reusing snapshots
            StateCore* s = core_of(self);
            s->core->no_cache.store(true);
            drop_snapshots(s);
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
            if (!b->source_key().empty()) {
                uint64_t st = b->source_status();
                py::dict src;
                src["key"] = b->source_key();
                src["alive"] = bool(st & 1);
                src["changes"] = st >> 1;
                d["source"] = src;
            }
        }
        return d;
    });
    m.def("_state_set_lock_timeout", [](py::handle self, double seconds) {
        if (!(seconds >= 0)) throw py::value_error("lock_timeout must be >= 0 seconds");
        core_of(self)->core->lock_timeout.store(seconds);
    });
    m.def("_state_lock_timeout", [](py::handle self) { return core_of(self)->core->lock_timeout.load(); });
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
