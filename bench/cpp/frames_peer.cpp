// The C++ writer of bench/frames_bench.py's "ss_frames_cxx" mechanism: the game side
// of "a C++ writer commits a frame -> a Python reader holds it as a numpy array".
//
//   frames_peer FRAMES_NAME CTRL_NAME N
//
// CTRL_NAME is the parent's multiprocessing.shared_memory block (/dev/shm/CTRL_NAME), eight
// int64 words: [0] the frame the reader asks for, [1] the writer's t0 for it (CLOCK_MONOTONIC
// ns, the clock of Python's time.monotonic_ns), [2] the frame the writer has ready. Exactly the
// protocol of the Python writer in frames_bench.py: frame i is rendered into a loaned slot
// (not timed: the game's work), then the writer waits for the request, takes t0 and commits.
#include <sharedstate/sharedstate.hpp>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#ifdef _WIN32
#include <windows.h>
#else
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>
#endif

// The parent's control block: POSIX shm_open("/NAME"), or the named file mapping that
// multiprocessing.shared_memory makes on Windows.
static void* map_ctrl(const char* name) {
#ifdef _WIN32
    HANDLE h = OpenFileMappingA(FILE_MAP_ALL_ACCESS, FALSE, name);
    if (!h) return nullptr;
    void* p = MapViewOfFile(h, FILE_MAP_ALL_ACCESS, 0, 0, 64);
    CloseHandle(h);
    return p;
#else
    int fd = shm_open((std::string("/") + name).c_str(), O_RDWR, 0);
    if (fd < 0) return nullptr;
    void* p = mmap(nullptr, 64, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    return p == MAP_FAILED ? nullptr : p;
#endif
}

int main(int argc, char** argv) {
    if (argc != 4) {
        std::fprintf(stderr, "usage: frames_peer FRAMES_NAME CTRL_NAME N\n");
        return 2;
    }
    const long n = std::atol(argv[3]);
    void* p = map_ctrl(argv[2]);
    if (!p) { std::fprintf(stderr, "frames_peer: cannot map the control block '%s'\n", argv[2]); return 1; }
    auto* a = static_cast<std::atomic<int64_t>*>(p);
    try {
        auto fr = sharedstate::Frames::open(argv[1]);
        std::printf("ready\n");
        std::fflush(stdout);
        for (long i = 1; i <= n; ++i) {
            auto loan = fr.loan();
            std::memset(loan.data(), 7, loan.size());  // rendered in place
            std::memset(loan.data(), int(i & 255), loan.size() < 8 ? loan.size() : 8);
            a[2].store(i, std::memory_order_release);
            while (a[0].load(std::memory_order_acquire) != i) {
            }
            // The clock of Python's time.monotonic_ns (CLOCK_MONOTONIC; QueryPerformanceCounter).
            a[1].store(int64_t(sharedstate::detail::os::monotonic_ns()), std::memory_order_relaxed);
            loan.commit();
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "frames_peer: %s\n", e.what());
        return 1;
    }
    return 0;
}
