// SHIM (not Microsoft's): the vcruntime.h plumbing that libc++'s vcruntime ABI and the shims below use.
#pragma once
#include <vadefs.h>
#ifndef _HAS_EXCEPTIONS
#  if defined(__cplusplus) && defined(__cpp_exceptions)
#    define _HAS_EXCEPTIONS 1
#  else
#    define _HAS_EXCEPTIONS 0
#  endif
#endif
#ifndef _CRT_PACKING
#  define _CRT_PACKING 8
#endif
#ifndef _VCRTIMP
#  define _VCRTIMP
#endif
#ifndef __CRTDECL
#  define __CRTDECL __cdecl
#endif
#ifndef _NODISCARD
#  define _NODISCARD [[nodiscard]]
#endif
#define _VCRT_ALLOCATOR __declspec(allocator)
