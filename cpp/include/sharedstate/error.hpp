// Errors: every failure is a std::system_error whose message names the object and the
// OS call. OS failures carry the OS code (errno on POSIX, GetLastError() on Windows);
// the library's own failures carry a sharedstate::errc.
#pragma once
#include <string>
#include <system_error>

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

[[noreturn]] inline void fail(errc e, const std::string& what) { throw Error(make_error_code(e), what); }

}  // namespace sharedstate

namespace std {
template <> struct is_error_code_enum<sharedstate::errc> : true_type {};
}  // namespace std
