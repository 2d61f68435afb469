// SHIM: UCRT's math.h gives C++ isnan/isinf/isfinite/isnormal/isgreater... as functions (libc++ relies on
// that under _LIBCPP_MSVCRT); mingw-w64's math.h has C99 macros. Replace them by functions.
#pragma once
#include_next <math.h>
#ifdef __cplusplus
#undef isfinite
#undef isinf
#undef isnan
#undef isnormal
#undef isgreater
#undef isgreaterequal
#undef isless
#undef islessequal
#undef islessgreater
#undef isunordered
extern "C++" {
#define _SS_CLASSIFY(_N)                                                                           \
    inline bool __cdecl _N(float _X) noexcept { return __builtin_##_N(_X); }                       \
    inline bool __cdecl _N(double _X) noexcept { return __builtin_##_N(_X); }                      \
    inline bool __cdecl _N(long double _X) noexcept { return __builtin_##_N(_X); }                 \
    template <class _Ty> inline bool __cdecl _N(_Ty _X) noexcept { return __builtin_##_N(static_cast<double>(_X)); }
_SS_CLASSIFY(isfinite) _SS_CLASSIFY(isinf) _SS_CLASSIFY(isnan) _SS_CLASSIFY(isnormal)
#undef _SS_CLASSIFY
#define _SS_COMPARE(_N) \
    template <class _T1, class _T2> inline bool __cdecl _N(_T1 _X, _T2 _Y) noexcept { return __builtin_##_N(_X, _Y); }
_SS_COMPARE(isgreater) _SS_COMPARE(isgreaterequal) _SS_COMPARE(isless) _SS_COMPARE(islessequal)
_SS_COMPARE(islessgreater) _SS_COMPARE(isunordered)
#undef _SS_COMPARE
}
#endif
