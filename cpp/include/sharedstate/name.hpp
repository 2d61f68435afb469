// Object names, validated once before any OS call. The same name is valid on both OSes:
// `Local\` and `Global\` prefixes pass through on Windows and are dropped on Linux; the rest
// may not contain '/', '\' or NUL and is at most kMaxName bytes.
#pragma once
#include <string>
#include "error.hpp"

namespace sharedstate {

inline constexpr std::size_t kMaxName = 200;  // leaves room for "/", "sem." and our suffixes

namespace detail {

inline bool starts_with(const std::string& s, const char* p) { return s.rfind(p, 0) == 0; }

struct SplitName {
    std::string prefix;  // "", "Local\\" or "Global\\"
    std::string base;    // what is left, validated
};

// The error-code form: false (err set to errc::bad_name) for a bad name.
inline bool split_name(const std::string& name, const char* what, SplitName& r, ErrorInfo& err) {
    r = SplitName();
    if (starts_with(name, "Local\\")) r.prefix = "Local\\";
    else if (starts_with(name, "Global\\")) r.prefix = "Global\\";
    r.base = name.substr(r.prefix.size());
    auto bad = [&](const std::string& why) {
        return err.set(errc::bad_name, std::string(what) + " name '" + name + "': " + why);
    };
    if (r.base.empty()) return bad("empty");
    if (r.base.size() > kMaxName) return bad("longer than " + std::to_string(kMaxName) + " bytes");
    if (r.base == "." || r.base == "..") return bad("not a name");
    for (char c : r.base) {
        if (c == '/' || c == '\\') return bad("contains '/' or '\\'");
        if (c == '\0') return bad("contains NUL");
        if (static_cast<unsigned char>(c) < 0x20) return bad("contains a control character");
    }
    return true;
}

inline SplitName split_name(const std::string& name, const char* what) {
    SplitName r;
    ErrorInfo err;
    if (!split_name(name, what, r, err)) fail(err);
    return r;
}

}  // namespace detail
}  // namespace sharedstate
