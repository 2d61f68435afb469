// crash_helper: faults on purpose so that ctest proves a crashing test fails the run
// (crash_is_detected, WILL_FAIL). "--no-crash" exits 0 instead (crash_control), which shows the
// executable itself starts fine under the emulator. Wine turns an access violation into exit
// code 0xC0000005 & 0xFF = 5 as long as winedbg.exe is disabled (see the toolchain file).
#include <cstdio>
#include <cstring>

int main(int argc, char** argv) {
    if (argc > 1 && std::strcmp(argv[1], "--no-crash") == 0) {
        std::fputs("crash_helper: no crash requested\n", stdout);
        return 0;
    }
    std::fputs("crash_helper: writing through a null pointer\n", stdout);
    std::fflush(stdout);
    volatile int* volatile p = nullptr;
    *p = 42;  // access violation / SIGSEGV
    std::fputs("crash_helper: survived the fault (the emulator hid the crash)\n", stdout);
    return 0;  // if the fault were swallowed, ctest would see 0 and WILL_FAIL would report it
}
