// A payload's self-description: named, typed fields at fixed offsets. Written into every
// state segment's header so that SharedState.open(name) needs no layout argument.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "error.hpp"

namespace sharedstate {

// Field kinds, numpy's letters: signed, unsigned, float, bool, fixed bytes, opaque bytes.
enum class Kind : char { Int = 'i', UInt = 'u', Float = 'f', Bool = 'b', Bytes = 'S', Void = 'V' };

struct Field {
    std::string name;
    Kind kind = Kind::Void;
    uint8_t itemsize = 1;   // 1, 2, 4 or 8 (Bytes/Void: 1)
    uint32_t offset = 0;    // from the start of the payload
    uint32_t count = 1;     // array length (1 for a scalar)
    uint64_t nbytes() const { return uint64_t(itemsize) * count; }
    bool operator==(const Field& o) const {
        return name == o.name && kind == o.kind && itemsize == o.itemsize && offset == o.offset && count == o.count;
    }
    bool operator!=(const Field& o) const { return !(*this == o); }
};

inline constexpr std::size_t kMaxFieldName = 31;
inline constexpr std::size_t kMaxFields = 4096;
inline constexpr uint32_t kMaxPayload = 1u << 30;

struct Layout {
    std::vector<Field> fields;
    uint32_t size = 0;    // payload bytes, padding included (sizeof(T))
    uint32_t align = 1;   // alignof(T)

    bool operator==(const Layout& o) const { return size == o.size && fields == o.fields; }
    bool operator!=(const Layout& o) const { return !(*this == o); }

    const Field* find(const std::string& n) const {
        for (const auto& f : fields) if (f.name == n) return &f;
        return nullptr;
    }

    // A layout for a payload without field names: one opaque field of `size` bytes.
    static Layout opaque(uint32_t size) {
        Layout l;
        l.size = size;
        l.align = 8;
        l.fields.push_back(Field{"data", Kind::Void, 1, 0, size});
        return l;
    }

    // Throws errc::invalid_argument naming `what` and the offending field.
    void validate(const std::string& what) const {
        ErrorInfo err;
        if (!validate(what, err)) fail(err);
    }
    // The error-code form: false with err set (errc::invalid_argument).
    bool validate(const std::string& what, ErrorInfo& err) const {
        auto bad = [&](const std::string& why) { return err.set(errc::invalid_argument, "layout of '" + what + "': " + why); };
        if (size == 0) return bad("payload size is 0");
        if (size > kMaxPayload) return bad("payload larger than 1 GiB");
        if (fields.size() > kMaxFields) return bad("more than 4096 fields");
        if (align == 0 || (align & (align - 1)) || align > 64) return bad("alignment must be a power of two <= 64");
        for (size_t i = 0; i < fields.size(); ++i) {
            const Field& f = fields[i];
            if (f.name.empty() || f.name.size() > kMaxFieldName) return bad("field name '" + f.name + "' must be 1..31 bytes");
            if (f.name.find('\0') != std::string::npos) return bad("field name contains NUL");
            for (size_t j = 0; j < i; ++j) if (fields[j].name == f.name) return bad("duplicate field '" + f.name + "'");
            bool scalar_ok = f.itemsize == 1 || f.itemsize == 2 || f.itemsize == 4 || f.itemsize == 8;
            switch (f.kind) {
            case Kind::Int: case Kind::UInt: if (!scalar_ok) return bad("field '" + f.name + "': bad integer size"); break;
            case Kind::Float: if (f.itemsize != 4 && f.itemsize != 8) return bad("field '" + f.name + "': floats are 4 or 8 bytes"); break;
            case Kind::Bool: if (f.itemsize != 1) return bad("field '" + f.name + "': bools are 1 byte"); break;
            case Kind::Bytes: case Kind::Void: if (f.itemsize != 1) return bad("field '" + f.name + "': bytes have itemsize 1"); break;
            default: return bad("field '" + f.name + "': unknown kind");
            }
            if (f.count == 0) return bad("field '" + f.name + "': count 0");
            if (uint64_t(f.offset) + f.nbytes() > size) return bad("field '" + f.name + "' ends past the payload");
        }
        return true;
    }
};

// ---------------------------------------------------------------- C++ types -> fields
namespace detail {

template <class M, class = void> struct FieldType;  // unsupported member types fail here

template <class M> struct FieldType<M, std::enable_if_t<std::is_same<M, bool>::value>> {
    static constexpr Kind kind = Kind::Bool; static constexpr uint8_t itemsize = 1; static constexpr uint32_t count = 1;
};
template <class M> struct FieldType<M, std::enable_if_t<std::is_integral<M>::value && !std::is_same<M, bool>::value>> {
    static constexpr Kind kind = std::is_signed<M>::value ? Kind::Int : Kind::UInt;
    static constexpr uint8_t itemsize = sizeof(M); static constexpr uint32_t count = 1;
};
template <class M> struct FieldType<M, std::enable_if_t<std::is_floating_point<M>::value>> {
    static_assert(sizeof(M) == 4 || sizeof(M) == 8, "long double fields are not portable");
    static constexpr Kind kind = Kind::Float; static constexpr uint8_t itemsize = sizeof(M); static constexpr uint32_t count = 1;
};
template <class M> struct FieldType<M, std::enable_if_t<std::is_enum<M>::value>> : FieldType<std::underlying_type_t<M>> {};
template <class E, std::size_t N> struct FieldType<E[N]> {
    static constexpr bool is_text = std::is_same<E, char>::value;
    static constexpr Kind kind = is_text ? Kind::Bytes : FieldType<E>::kind;
    static constexpr uint8_t itemsize = FieldType<E>::itemsize;
    static constexpr uint32_t count = uint32_t(N) * FieldType<E>::count;
};
template <class E, std::size_t N> struct FieldType<std::array<E, N>> : FieldType<E[N]> {};

template <class M> Field make_field(const char* name, std::size_t offset) {
    using F = FieldType<std::remove_cv_t<M>>;
    return Field{name, F::kind, F::itemsize, uint32_t(offset), F::count};
}

}  // namespace detail
}  // namespace sharedstate

// SHAREDSTATE_DESCRIBE(Type, field, field, ...) names T's fields for the segment header.
// Use it at namespace scope, in T's namespace (argument-dependent lookup finds it), once.
// Up to 32 fields; each must be a scalar, an enum, or a fixed array of those.
#define SHAREDSTATE_PP_CAT_(a, b) a##b
#define SHAREDSTATE_PP_CAT(a, b) SHAREDSTATE_PP_CAT_(a, b)
#define SHAREDSTATE_PP_NARGS_(_1, _2, _3, _4, _5, _6, _7, _8, _9, _10, _11, _12, _13, _14, _15, _16, _17, _18, _19, _20, \
                              _21, _22, _23, _24, _25, _26, _27, _28, _29, _30, _31, _32, N, ...) N
#define SHAREDSTATE_PP_NARGS(...) SHAREDSTATE_PP_NARGS_(__VA_ARGS__, 32, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, \
    19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1)
#define SHAREDSTATE_F_(T, f) ::sharedstate::detail::make_field<decltype(T::f)>(#f, offsetof(T, f)),
#define SHAREDSTATE_M1(T, a) SHAREDSTATE_F_(T, a)
#define SHAREDSTATE_M2(T, a, ...) SHAREDSTATE_F_(T, a) SHAREDSTATE_M1(T, __VA_ARGS__)
#define SHAREDSTATE_M3(T, a, ...) SHAREDSTATE_F_(T, a) SHAREDSTATE_M2(T, __VA_ARGS__)
#define SHAREDSTATE_M4(T, a, ...) SHAREDSTATE_F_(T, a) SHAREDSTATE_M3(T, __VA_ARGS__)
#define SHAREDSTATE_M5(T, a, ...) SHAREDSTATE_F_(T, a) SHAREDSTATE_M4(T, __VA_ARGS__)
#define SHAREDSTATE_M6(T, a, ...) SHAREDSTATE_F_(T, a) SHAREDSTATE_M5(T, __VA_ARGS__)
#define SHAREDSTATE_M7(T, a, ...) SHAREDSTATE_F_(T, a) SHAREDSTATE_M6(T, __VA_ARGS__)
#define SHAREDSTATE_M8(T, a, ...) SHAREDSTATE_F_(T, a) SHAREDSTATE_M7(T, __VA_ARGS__)
#define SHAREDSTATE_M9(T, a, ...) SHAREDSTATE_F_(T, a) SHAREDSTATE_M8(T, __VA_ARGS__)
#define SHAREDSTATE_M10(T, a, ...) SHAREDSTATE_F_(T, a) SHAREDSTATE_M9(T, __VA_ARGS__)
#define SHAREDSTATE_M11(T, a, ...) SHAREDSTATE_F_(T, a) SHAREDSTATE_M10(T, __VA_ARGS__)
#define SHAREDSTATE_M12(T, a, ...) SHAREDSTATE_F_(T, a) SHAREDSTATE_M11(T, __VA_ARGS__)
#define SHAREDSTATE_M13(T, a, ...) SHAREDSTATE_F_(T, a) SHAREDSTATE_M12(T, __VA_ARGS__)
#define SHAREDSTATE_M14(T, a, ...) SHAREDSTATE_F_(T, a) SHAREDSTATE_M13(T, __VA_ARGS__)
#define SHAREDSTATE_M15(T, a, ...) SHAREDSTATE_F_(T, a) SHAREDSTATE_M14(T, __VA_ARGS__)
#define SHAREDSTATE_M16(T, a, ...) SHAREDSTATE_F_(T, a) SHAREDSTATE_M15(T, __VA_ARGS__)
#define SHAREDSTATE_M17(T, a, ...) SHAREDSTATE_F_(T, a) SHAREDSTATE_M16(T, __VA_ARGS__)
#define SHAREDSTATE_M18(T, a, ...) SHAREDSTATE_F_(T, a) SHAREDSTATE_M17(T, __VA_ARGS__)
#define SHAREDSTATE_M19(T, a, ...) SHAREDSTATE_F_(T, a) SHAREDSTATE_M18(T, __VA_ARGS__)
#define SHAREDSTATE_M20(T, a, ...) SHAREDSTATE_F_(T, a) SHAREDSTATE_M19(T, __VA_ARGS__)
#define SHAREDSTATE_M21(T, a, ...) SHAREDSTATE_F_(T, a) SHAREDSTATE_M20(T, __VA_ARGS__)
#define SHAREDSTATE_M22(T, a, ...) SHAREDSTATE_F_(T, a) SHAREDSTATE_M21(T, __VA_ARGS__)
#define SHAREDSTATE_M23(T, a, ...) SHAREDSTATE_F_(T, a) SHAREDSTATE_M22(T, __VA_ARGS__)
#define SHAREDSTATE_M24(T, a, ...) SHAREDSTATE_F_(T, a) SHAREDSTATE_M23(T, __VA_ARGS__)
#define SHAREDSTATE_M25(T, a, ...) SHAREDSTATE_F_(T, a) SHAREDSTATE_M24(T, __VA_ARGS__)
#define SHAREDSTATE_M26(T, a, ...) SHAREDSTATE_F_(T, a) SHAREDSTATE_M25(T, __VA_ARGS__)
#define SHAREDSTATE_M27(T, a, ...) SHAREDSTATE_F_(T, a) SHAREDSTATE_M26(T, __VA_ARGS__)
#define SHAREDSTATE_M28(T, a, ...) SHAREDSTATE_F_(T, a) SHAREDSTATE_M27(T, __VA_ARGS__)
#define SHAREDSTATE_M29(T, a, ...) SHAREDSTATE_F_(T, a) SHAREDSTATE_M28(T, __VA_ARGS__)
#define SHAREDSTATE_M30(T, a, ...) SHAREDSTATE_F_(T, a) SHAREDSTATE_M29(T, __VA_ARGS__)
#define SHAREDSTATE_M31(T, a, ...) SHAREDSTATE_F_(T, a) SHAREDSTATE_M30(T, __VA_ARGS__)
#define SHAREDSTATE_M32(T, a, ...) SHAREDSTATE_F_(T, a) SHAREDSTATE_M31(T, __VA_ARGS__)

#define SHAREDSTATE_DESCRIBE(T, ...)                                                                   \
    inline const ::sharedstate::Layout& sharedstate_layout_of(const T*) {                             \
        static_assert(std::is_trivially_copyable<T>::value, #T " must be trivially copyable");        \
        static_assert(std::is_standard_layout<T>::value, #T " must be standard-layout (offsetof)");   \
        static const ::sharedstate::Layout layout{                                                    \
            {SHAREDSTATE_PP_CAT(SHAREDSTATE_M, SHAREDSTATE_PP_NARGS(__VA_ARGS__))(T, __VA_ARGS__)},    \
            uint32_t(sizeof(T)), uint32_t(alignof(T))};                                               \
        return layout;                                                                                \
    }                                                                                                 \
    static_assert(true, "")
