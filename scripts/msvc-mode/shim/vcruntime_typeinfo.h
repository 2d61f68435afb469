// SHIM (not Microsoft's): ::type_info (the class clang's MS ABI typeid yields), std::bad_cast, bad_typeid.
#pragma once
#include <vcruntime_exception.h>
#ifdef __cplusplus
#pragma pack(push, _CRT_PACKING)
extern "C" {
struct __type_info_node;
extern __type_info_node __type_info_root_node;
struct __std_type_info_data { char const* _UndecoratedName; char const _DecoratedName[1]; };
_VCRTIMP int __cdecl __std_type_info_compare(__std_type_info_data const*, __std_type_info_data const*);
_VCRTIMP size_t __cdecl __std_type_info_hash(__std_type_info_data const*);
_VCRTIMP char const* __cdecl __std_type_info_name(__std_type_info_data*, __type_info_node*);
}
class type_info {
public:
    type_info(const type_info&) = delete;
    type_info& operator=(const type_info&) = delete;
    size_t hash_code() const noexcept { return __std_type_info_hash(&_Data); }
    bool operator==(const type_info& _O) const noexcept { return __std_type_info_compare(&_Data, &_O._Data) == 0; }
    bool operator!=(const type_info& _O) const noexcept { return __std_type_info_compare(&_Data, &_O._Data) != 0; }
    bool before(const type_info& _O) const noexcept { return __std_type_info_compare(&_Data, &_O._Data) < 0; }
    const char* name() const noexcept { return __std_type_info_name(&_Data, &__type_info_root_node); }
    const char* raw_name() const noexcept { return _Data._DecoratedName; }
    virtual ~type_info() noexcept;
private:
    mutable __std_type_info_data _Data;
};
namespace std {
using ::type_info;
#if _HAS_EXCEPTIONS
class bad_cast : public exception {
public:
    bad_cast() noexcept : exception("bad cast", 1) {}
    static bad_cast __construct_from_string_literal(const char* const _M) noexcept { return bad_cast(_M, 1); }
private:
    bad_cast(const char* const _M, int) noexcept : exception(_M, 1) {}
};
class bad_typeid : public exception {
public:
    bad_typeid() noexcept : exception("bad typeid", 1) {}
    static bad_typeid __construct_from_string_literal(const char* const _M) noexcept { return bad_typeid(_M, 1); }
private:
    bad_typeid(const char* const _M, int) noexcept : exception(_M, 1) {}
};
#endif
}
#pragma pack(pop)
#endif
