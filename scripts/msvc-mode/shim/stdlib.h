// SHIM: UCRT's stdlib.h declares _strtof_l/_strtold_l (libc++'s win32 locale layer uses them) and gives
// C++ the long/long long abs and div overloads (libc++ leaves them to the CRT); mingw-w64's does neither.
#pragma once
#include_next <stdlib.h>
#ifdef __cplusplus
extern "C" {
#endif
_CRTIMP float __cdecl _strtof_l(const char*, char**, _locale_t);
_CRTIMP long double __cdecl _strtold_l(const char*, char**, _locale_t);
#ifdef __cplusplus
}
extern "C++" {
inline long __cdecl abs(long const _X) noexcept { return labs(_X); }
inline long long __cdecl abs(long long const _X) noexcept { return llabs(_X); }
inline ldiv_t __cdecl div(long const _A, long const _B) noexcept { return ldiv(_A, _B); }
inline lldiv_t __cdecl div(long long const _A, long long const _B) noexcept { return lldiv(_A, _B); }
}
#endif
