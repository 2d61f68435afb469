// Errors: every failure is a std::system_error whose message names the object and the
// OS call. OS failures carry the OS code (errno on POSIX, GetLastError() on Windows);
// the library's own failures carry a sharedstate::errc.
//
// Exceptions off (-fno-exceptions, /EHs-c- /D_HAS_EXCEPTIONS=0): the headers still compile;
// the mode is detected, never chosen by a macro of ours. The game-side calls then have a
// non-throwing form (see "The error-code forms" below), and a throwing call that fails
// calls the error handler (set_error_handler), which by default prints the message to
// stderr and calls std::abort(). A handler that returns is followed by std::abort().
#pragma once
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <system_error>
#include <utility>

namespace sharedstate {

enum class errc {
    bad_name = 1,         // empty, too long, or a character the OS forbids
    invalid_argument,     // a size, layout or option that cannot work
    layout_mismatch,      // the segment's layout is not the one asked for
    corrupt_segment,      // the header fails validation: never trusted, never used
    wrong_kind,           // e.g. a Queue opened as a SharedState
    timeout,              // a blocking call ran out of time
    not_found,            // no such object (where no OS error says so)
    already_exists,       // the object exists (where no OS error says so)
    broken_pipe,          // the peer closed or died mid-conversation
    end_of_stream,        // the peer closed cleanly and nothing is left
    message_too_large,    // a message over the channel's max_message
    closed,               // the object was closed by this process
    would_block,          // a non-blocking call that could not proceed at once
};

class ErrorCategory final : public std::error_category {
public:
    const char* name() const noexcept override { return "sharedstate"; }
    std::string message(int c) const override {
        switch (static_cast<errc>(c)) {
        case errc::bad_name: return "bad name";
        case errc::invalid_argument: return "invalid argument";
        case errc::layout_mismatch: return "layout mismatch";
        case errc::corrupt_segment: return "corrupt segment";
        case errc::wrong_kind: return "wrong kind of object";
        case errc::timeout: return "timed out";
        case errc::not_found: return "not found";
        case errc::already_exists: return "already exists";
        case errc::broken_pipe: return "broken pipe";
        case errc::end_of_stream: return "end of stream";
        case errc::message_too_large: return "message too large";
        case errc::closed: return "closed";
        case errc::would_block: return "would block";
        }
        return "unknown error";
    }
};

inline const std::error_category& error_category() noexcept {
    static const ErrorCategory cat;
    return cat;
}
inline std::error_code make_error_code(errc e) noexcept {
    return {static_cast<int>(e), error_category()};
}

// The one exception type: catch sharedstate::Error, or std::system_error, and look at code().
class Error : public std::system_error {
public:
    using std::system_error::system_error;
    bool is(errc e) const noexcept { return code() == make_error_code(e); }
};

// ---------------------------------------------------------------- the error-code forms
// Every game-side call X(args...) that throws has a form X(args..., ErrorInfo& err) noexcept
// that reports the same failure instead: err.code is the code the Error would carry (an
// errc, or the OS code in std::generic_category() / std::system_category()) and
// err.message the text before ": <code message>" in Error::what(); err.what() is exactly
// Error::what(). On success err is cleared. A create/open that fails returns a closed
// object; a value-returning call returns a zero/empty value. (Out of memory still
// terminates: the forms are noexcept.)
//
//     sharedstate::ErrorInfo err;
//     auto st = sharedstate::SharedState<Pad>::create("pad", {}, err);
//     if (err.exists()) ...  // else err.is(errc::layout_mismatch), err.not_found(), ...
//
// Pattern, for a new primitive (Frames...): write the ec form first, all the way down (its
// internal helpers take `ErrorInfo& err`, return false / an empty value after err.set(...),
// and never call fail()); the throwing form is then the thin wrapper
//
//     T f(args) { ErrorInfo err; T r = f(args, err); if (err) fail(err); return r; }
//
// so both forms report the same code and the same text. Keep Interrupt (which may throw,
// e.g. KeyboardInterrupt from Python) on the throwing forms only. Where one internal path
// serves both forms and takes an Interrupt (Queue, the pipe backends), it takes
// `ErrorInfo* err` instead: nullptr means "throw" (detail::report / os::os_error with a
// pointer do that), non-null means "record and return false". The building blocks with
// error-code forms: os::SegmentFile::create/open/size/map, os::WakeChannel::open,
// Layout::validate, format::validate_state, qformat::validate, detail::split_name.
// Conventions: bool calls return false with err set; try_* calls return false with err
// clear when there is simply nothing to do now; a write whose lock_timeout is 0 and finds
// the lock held is errc::would_block (the throwing form returns false there).
class ErrorInfo {
public:
    std::error_code code;  // empty on success
    std::string message;   // names the object and the call, as Error's message does

    explicit operator bool() const noexcept { return bool(code); }  // true when it failed
    bool ok() const noexcept { return !code; }
    bool is(errc e) const noexcept { return code == make_error_code(e); }
    void clear() noexcept { code.clear(); message.clear(); }
    // The object exists (EEXIST / ERROR_ALREADY_EXISTS: what Python sees as FileExistsError).
    bool exists() const noexcept {
        if (is(errc::already_exists) || code == std::errc::file_exists) return true;
#if defined(_WIN32)
        if (code.category() == std::system_category() && (code.value() == 183 || code.value() == 80)) return true;
#endif
        return false;
    }
    // No such object (ENOENT / ERROR_FILE_NOT_FOUND: FileNotFoundError).
    bool not_found() const noexcept {
        if (is(errc::not_found) || code == std::errc::no_such_file_or_directory) return true;
#if defined(_WIN32)
        if (code.category() == std::system_category() && (code.value() == 2 || code.value() == 3)) return true;
#endif
        return false;
    }
    // The full text, as Error::what() would give it.
    std::string what() const { return message + ": " + code.message(); }

    // Records a failure. Returns false, so that `return err.set(...);` ends a bool function.
    bool set(std::error_code c, std::string what) {
        code = c;
        message = std::move(what);
        return false;
    }
    bool set(errc e, std::string what) { return set(make_error_code(e), std::move(what)); }
};

// The handler a failing throwing call invokes when exceptions are disabled.
using ErrorHandler = void (*)(const std::error_code& code, const std::string& message);

namespace detail {
inline void default_error_handler(const std::error_code& code, const std::string& message) {
    std::fprintf(stderr, "sharedstate: %s: %s\n", message.c_str(), code.message().c_str());
    std::fflush(stderr);
    std::abort();
}
inline std::atomic<ErrorHandler>& error_handler_slot() noexcept {
    static std::atomic<ErrorHandler> h{&default_error_handler};
    return h;
}
}  // namespace detail

// Sets the handler of the no-exceptions mode (nullptr restores the default); returns the
// previous one. The handler must not return (a game logs, flushes and exits or aborts); it
// runs on the thread whose call failed. With exceptions enabled it is never called: calls
// throw Error.
inline ErrorHandler set_error_handler(ErrorHandler h) noexcept {
    return detail::error_handler_slot().exchange(h ? h : &detail::default_error_handler);
}

#if defined(__cpp_exceptions) || defined(__EXCEPTIONS) || defined(_CPPUNWIND)
inline constexpr bool kExceptions = true;

[[noreturn]] inline void fail(const std::error_code& code, const std::string& what) { throw Error(code, what); }

namespace detail {
// Runs f(); if it throws, runs cleanup() and rethrows. (Without exceptions: just f().)
template <class F, class C>
auto on_throw(F&& f, C&& cleanup) -> decltype(f()) {
    try {
        return f();
    } catch (...) {
        cleanup();
        throw;
    }
}
// Runs f() and returns what it threw (null if nothing).
template <class F>
std::exception_ptr capture(F&& f) {
    try {
        f();
    } catch (...) {
        return std::current_exception();
    }
    return nullptr;
}
[[noreturn]] inline void rethrow(const std::exception_ptr& e) { std::rethrow_exception(e); }
}  // namespace detail
#else
inline constexpr bool kExceptions = false;

[[noreturn]] inline void fail(const std::error_code& code, const std::string& what) {
    detail::error_handler_slot().load()(code, what);
    std::abort();
}

namespace detail {
template <class F, class C>
auto on_throw(F&& f, C&&) -> decltype(f()) { return f(); }
template <class F>
std::exception_ptr capture(F&& f) {
    f();
    return nullptr;
}
[[noreturn]] inline void rethrow(const std::exception_ptr&) { std::abort(); }
}  // namespace detail
#endif

[[noreturn]] inline void fail(errc e, const std::string& what) { fail(make_error_code(e), what); }
[[noreturn]] inline void fail(const ErrorInfo& err) { fail(err.code, err.message); }

namespace detail {
// The internal convention of code shared by both forms: with err, record the failure and
// return false; without (nullptr: the throwing form), throw it.
inline bool report(ErrorInfo* err, const std::error_code& code, const std::string& what) {
    if (!err) fail(code, what);
    return err->set(code, what);
}
inline bool report(ErrorInfo* err, errc e, const std::string& what) { return report(err, make_error_code(e), what); }
inline bool failed(const ErrorInfo* err) noexcept { return err && *err; }
}  // namespace detail

}  // namespace sharedstate

namespace std {
template <> struct is_error_code_enum<sharedstate::errc> : true_type {};
}  // namespace std
