// SHIM: UCRT's new.h declares std::new_handler/set_new_handler and includes vcruntime_new.h (libc++'s
// <new> relies on it in the vcruntime ABI); mingw-w64's new.h expects libstdc++'s <new> to do that.
#pragma once
#include <vcruntime_new.h>
#ifdef __cplusplus
namespace std {
typedef void(__cdecl* new_handler)();
new_handler __cdecl set_new_handler(new_handler) noexcept;
}
#endif
#include_next <new.h>
