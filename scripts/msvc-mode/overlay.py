#!/usr/bin/env python3
"""Copies five mingw-w64 headers into an overlay folder, patched to behave like the real Windows
SDK under _MSC_VER (used by scripts/check-msvc-mode.sh; plumbing only, see the README there).

    python3 overlay.py MINGW_INCLUDE_DIR OVERLAY_DIR

Each replacement must match exactly once: a changed mingw-w64 version fails loudly.
"""
import sys

src, dst = sys.argv[1:]


def patch(f, pairs):
    s = open(f"{src}/{f}").read()
    for a, b in pairs:
        assert s.count(a) == 1, (f, a)
        s = s.replace(a, b, 1)
    open(f"{dst}/{f}", "w").write(s)


# _mingw.h: keep GCC attributes (clang has them; mingw-w64 hides __attribute__ entirely under
# _MSC_VER, which would also hide attributes in our code); drop MSVC-only declspecs clang-cl rejects.
patch("_mingw.h", [
    ("# define __attribute__(x) /* nothing */\n", ""),
    ("#define __MINGW_ATTRIB_NORETURN __declspec(noreturn)", "#define __MINGW_ATTRIB_NORETURN __attribute__ ((__noreturn__))"),
    ("#define __MINGW_ATTRIB_MALLOC __declspec(noalias) __declspec(restrict)", "#define __MINGW_ATTRIB_MALLOC __attribute__ ((__malloc__))"),
    ("#define __MINGW_ATTRIB_DEPRECATED __declspec(deprecated)", "#define __MINGW_ATTRIB_DEPRECATED __attribute__ ((__deprecated__))"),
    ("#elif __MINGW_MSC_PREREQ(12, 0) && defined (__cplusplus)\n#define __MINGW_NOTHROW __declspec(nothrow)",
     "#elif 0\n#define __MINGW_NOTHROW __declspec(nothrow)"),
])
# winnt.h: YieldProcessor is _mm_pause on x86/x64 under _MSC_VER too (mingw-w64 keys it on __SSE2__).
# On ARM64 the SDK's YieldProcessor is the __yield intrinsic (mingw-w64: GNU asm, which cl.exe lacks).
patch("winnt.h", [("#ifdef __SSE2__\n#include <emmintrin.h>\n#define YieldProcessor _mm_pause",
                   "#if defined(__SSE2__) || defined(_MSC_VER)\n#include <emmintrin.h>\n#define YieldProcessor _mm_pause"),
                  ('#define YieldProcessor() __asm__ __volatile__("dmb ishst\\n\\tyield":::"memory")\n'
                   '#define MemoryBarrier() __asm__ __volatile__("dmb sy":::"memory")',
                   '#ifdef _MSC_VER\n#define YieldProcessor __yield\n#else\n'
                   '#define YieldProcessor() __asm__ __volatile__("dmb ishst\\n\\tyield":::"memory")\n#endif\n'
                   '#define MemoryBarrier() __asm__ __volatile__("dmb sy":::"memory")')])
# vadefs.h: mingw-w64 has the MSVC va_list macros for x86/x64 only; on ARM64/ARM the compiler's
# builtins (clang's own vadefs.h replaces the x86 ones by the same builtins anyway).
patch("vadefs.h", [("#else\n\n#error VARARGS not implemented for this TARGET",
                    "#elif defined(_M_ARM64) || defined(_M_ARM)\n\n"
                    "#define _crt_va_start(v,l)\t__builtin_va_start(v,l)\n"
                    "#define _crt_va_arg(v,l)\t__builtin_va_arg(v,l)\n"
                    "#define _crt_va_end(v)\t\t__builtin_va_end(v)\n"
                    "#define _crt_va_copy(d,s)\t__builtin_va_copy(d,s)\n\n"
                    "#else\n\n#error VARARGS not implemented for this TARGET")])
# minwindef.h: the real SDK defines min/max in C++ too (unless NOMINMAX); mingw-w64 only for C.
patch("minwindef.h", [("#ifndef __cplusplus\n#ifndef NOMINMAX\n#ifndef max", "#if 1\n#ifndef NOMINMAX\n#ifndef max")])
# rpcndr.h: the real SDK defines `small` always; mingw-w64 only under RC_INVOKED.
patch("rpcndr.h", [("#ifdef RC_INVOKED\n#define small char\n#endif", "#define small char")])
