// The Windows SDK's hostile macros, spelled exactly as the SDK headers define them, for
// translation units that check our headers survive them on any compiler (g++ included, which
// has no SDK). A game's precompiled header includes the standard headers first and
// <windows.h> after them; libstdc++ #undefs min/max inside its own headers, so these must be
// defined AFTER the standard headers to be seen at all.
//
// Under mingw-w64 the real <windows.h> is included first (the includer does that), and only
// what mingw-w64 leaves out in C++ is added, exactly as the SDK has it: min/max (minwindef.h,
// which mingw-w64 defines for C only) and small (rpcndr.h, mingw-w64: RC_INVOKED only).
// Every definition is guarded, so an identical definition from the real headers stays.
#pragma once

// minwindef.h. The SDK guards these two with #ifndef NOMINMAX; here they are defined even so,
// because mingw-w64's libstdc++ defines NOMINMAX itself (bits/os_defines.h), which would
// otherwise hide them from exactly the compilers this test is for.
#ifndef max
#define max(a,b)            (((a) > (b)) ? (a) : (b))
#endif
#ifndef min
#define min(a,b)            (((a) < (b)) ? (a) : (b))
#endif
#ifndef far
#define far
#endif
#ifndef near
#define near
#endif
#ifndef IN
#define IN
#endif
#ifndef OUT
#define OUT
#endif
#ifndef OPTIONAL
#define OPTIONAL
#endif
// combaseapi.h
#ifndef interface
#define __STRUCT__ struct
#define interface __STRUCT__
#endif
// rpcndr.h
#ifndef small
#define small char
#endif
// wingdi.h
#ifndef ERROR
#define ERROR               0
#endif
// winnt.h
#ifndef DELETE
#define DELETE                           (0x00010000L)
#endif
// fileapi.h, winuser.h: the UNICODE renames (the A names without UNICODE)
#ifndef CreateFile
#ifdef UNICODE
#define CreateFile  CreateFileW
#else
#define CreateFile  CreateFileA
#endif
#endif
#ifndef GetMessage
#ifdef UNICODE
#define GetMessage  GetMessageW
#else
#define GetMessage  GetMessageA
#endif
#endif

// The checks that the macros are really there for what follows (a drifted header would
// otherwise make the test pass vacuously).
#if !defined(min) || !defined(max)
#error "min/max are not defined"
#endif
#if !defined(near) || !defined(far) || !defined(interface) || !defined(small) || !defined(ERROR) || !defined(DELETE) \
    || !defined(IN) || !defined(OUT) || !defined(OPTIONAL) || !defined(CreateFile) || !defined(GetMessage)
#error "an SDK macro is missing"
#endif
