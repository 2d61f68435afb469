// SHIM: mingw-w64 keys the x86 _malloca marker size on _X86_, which only windows.h defines; MSVC x86 uses 8.
#pragma once
#if defined(_M_IX86) && !defined(_ALLOCA_S_MARKER_SIZE)
#define _ALLOCA_S_MARKER_SIZE 8
#endif
#include_next <malloc.h>
