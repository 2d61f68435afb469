// The body of each include-order translation unit (include_order.cmake generates one per
// variant: what comes before <sharedstate/sharedstate.hpp>, then this file). It checks that
// our headers left the translation unit as they found it, and runs a little of the API so the
// code compiled under the macros is also proven to work.
#pragma once
// What the translation unit had before our headers. The toolchain may define some of these
// itself (mingw-w64's libstdc++ defines NOMINMAX in bits/os_defines.h, which every standard
// header includes): one standard header first, so that is counted as the toolchain's.
#include <cstddef>
#ifdef NOMINMAX
#define SHAREDSTATE_IO_HAD_NOMINMAX 1
#endif
#ifdef WIN32_LEAN_AND_MEAN
#define SHAREDSTATE_IO_HAD_LEAN 1
#endif
#ifdef min
#define SHAREDSTATE_IO_HAD_MIN 1
#endif

#include <sharedstate/sharedstate.hpp>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

#ifndef SHAREDSTATE_IO_VARIANT
#error "define SHAREDSTATE_IO_VARIANT (the function name of this variant)"
#endif

// Our headers must leave the game's translation unit as they found it.
#if defined(NOMINMAX) && !defined(SHAREDSTATE_IO_HAD_NOMINMAX)
#error "sharedstate defined NOMINMAX in the user's translation unit"
#endif
#if defined(WIN32_LEAN_AND_MEAN) && !defined(SHAREDSTATE_IO_HAD_LEAN)
#error "sharedstate defined WIN32_LEAN_AND_MEAN in the user's translation unit"
#endif
#if defined(SHAREDSTATE_IO_HAD_MIN) && (!defined(min) || !defined(max))
#error "sharedstate undefined the SDK's min/max macros"
#endif

#if defined(SHAREDSTATE_IO_SDK_MACROS)
static_assert(max(1, 2) == 2 && min(1, 2) == 1, "the SDK's min/max macros are still the SDK's");
#endif

#if defined(_WIN32) && defined(SHAREDSTATE_IO_LATE_WINDOWS_H)
// sharedstate came first: the game's own <windows.h> afterwards still gives it everything a
// full (not lean) <windows.h> declares (shellapi.h and mmsystem.h are what lean drops), and the
// SDK's min/max unless the toolchain itself defines NOMINMAX.
#include <windows.h>
#if !defined(WIN32_LEAN_AND_MEAN)
[[maybe_unused]] static const auto io_shell = &ShellExecuteA;
[[maybe_unused]] static const auto io_mm = &timeGetTime;
#endif
#if defined(_MSC_VER) && !defined(NOMINMAX)
static_assert(max(1, 2) == 2, "the game's later <windows.h> still defines max");
#endif
#endif

struct IoPoint {
    int32_t x;
    int32_t y;
};
SHAREDSTATE_DESCRIBE(IoPoint, x, y);

// 0 when the round trip works; the name is unique per variant and process.
int SHAREDSTATE_IO_VARIANT(const std::string& tag) {
    using namespace sharedstate;
    const std::string name = "ss-io-" + tag + "-" + std::to_string(detail::os::current_pid());
    auto st = SharedState<IoPoint>::create(name);
    st.write(IoPoint{3, 4});
    IoPoint p = st.read();
    auto sem = Semaphore::create(name + "-sem", 0);
    sem.release();
    bool got = sem.acquire(std::chrono::milliseconds(1000));
    sem.close();
    bool closed = sem.closed();
    if (p.x != 3 || p.y != 4 || !got || !closed) {
        std::fprintf(stderr, "%s: round trip failed (x=%d y=%d got=%d closed=%d)\n", tag.c_str(), int(p.x), int(p.y),
                     int(got), int(closed));
        return 1;
    }
    std::printf("%s: ok\n", tag.c_str());
    return 0;
}
