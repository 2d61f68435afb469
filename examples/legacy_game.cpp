// An UNMODIFIED legacy program: it knows nothing about sharedstate. It maps a bare struct
// (no header, no seqlock) under a name and writes it in place, like the seed program did
// with CreateFileMapping. Python attaches with SharedState.attach_raw (attach_legacy.py).
//
//   legacy_game NAME [seconds=3]
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#if defined(_WIN32)
#include <windows.h>
#else
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>
#endif

struct Controller {  // the same 12 bytes as sharedstate.CONTROLLER
    int32_t x;
    int32_t y;
    bool is_open;
    bool is_running;
    bool is_pressing;
};

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: legacy_game NAME [seconds=3]\n");
        return 2;
    }
    const std::string name = argv[1];
    const double seconds = argc > 2 ? std::atof(argv[2]) : 3.0;
#if defined(_WIN32)
    HANDLE h = CreateFileMappingA(INVALID_HANDLE_VALUE, nullptr, PAGE_READWRITE, 0, sizeof(Controller), name.c_str());
    if (!h) { std::fprintf(stderr, "CreateFileMapping(%s) failed: %lu\n", name.c_str(), GetLastError()); return 1; }
    auto* c = static_cast<volatile Controller*>(MapViewOfFile(h, FILE_MAP_ALL_ACCESS, 0, 0, sizeof(Controller)));
#else
    const std::string path = "/" + name;
    int fd = shm_open(path.c_str(), O_CREAT | O_RDWR, 0600);
    if (fd < 0 || ftruncate(fd, sizeof(Controller)) != 0) { std::perror("shm_open/ftruncate"); return 1; }
    auto* c = static_cast<volatile Controller*>(
        mmap(nullptr, sizeof(Controller), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
    if (c == MAP_FAILED) { std::perror("mmap"); return 1; }
#endif
    c->is_open = true;
    c->is_running = true;
    std::printf("ready %s\n", name.c_str());
    std::fflush(stdout);
    const auto start = std::chrono::steady_clock::now();
    int32_t i = 0;
    while (std::chrono::steady_clock::now() - start < std::chrono::duration<double>(seconds)) {
        ++i;
        c->x = i;   // two plain stores: a reader between them sees x != -y (a torn value)
        c->y = -i;
        std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    c->is_running = false;
    std::printf("legacy_game: %d writes\n", int(i));
#if defined(_WIN32)
    UnmapViewOfFile(const_cast<Controller*>(c));
    CloseHandle(h);
#else
    munmap(const_cast<Controller*>(c), sizeof(Controller));
    close(fd);
    shm_unlink(path.c_str());  // a POSIX name outlives its processes unless removed
#endif
    return 0;
}
