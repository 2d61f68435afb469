// legacy_writer: a plain Win32 program with no sharedstate code, written the way the
// unmodified game/controller programs that sharedstate must interoperate with are written:
// CreateFileMappingA with a bare name, the 12-byte Controller struct at offset 0, no header.
// tests/test_windows.py reads it with SharedState.attach_raw(name, ss.CONTROLLER).
//
//   legacy_writer NAME X Y IS_OPEN IS_RUNNING IS_PRESSING
//       creates the mapping (fails if it exists), writes the struct, prints "ready", then
//       reads commands from stdin: "dump" prints "state X Y O R P" (what it sees now), "quit"
//       or end of input exits without any cleanup (handles die with the process).
//   legacy_writer --selftest
//       create + write + OpenFileMappingA + read back in one process; exit 0 on success.
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <windows.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

struct Controller {  // 12 bytes: 4 + 4 + 3 bools + 1 padding byte
    int32_t x;
    int32_t y;
    bool is_open;
    bool is_running;
    bool is_pressing;
};
static_assert(sizeof(Controller) == 12, "the legacy layout is 12 bytes");

// One fwrite per line: output of several Wine processes can interleave otherwise.
static void say(const char* fmt, long a = 0, long b = 0, int c = 0, int d = 0, int e = 0) {
    char line[256];
    int n = std::snprintf(line, sizeof line, fmt, a, b, c, d, e);
    std::fwrite(line, 1, (size_t)n, stdout);
    std::fflush(stdout);
}

static Controller* create(const char* name, HANDLE* out) {
    SetLastError(0);
    HANDLE h = CreateFileMappingA(INVALID_HANDLE_VALUE, nullptr, PAGE_READWRITE, 0, sizeof(Controller), name);
    if (!h) {
        std::fprintf(stderr, "legacy_writer: CreateFileMappingA(%s) failed: error %lu\n", name, GetLastError());
        return nullptr;
    }
    if (GetLastError() == ERROR_ALREADY_EXISTS) {
        std::fprintf(stderr, "legacy_writer: CreateFileMappingA(%s): already exists\n", name);
        return nullptr;
    }
    void* p = MapViewOfFile(h, FILE_MAP_ALL_ACCESS, 0, 0, sizeof(Controller));
    if (!p) {
        std::fprintf(stderr, "legacy_writer: MapViewOfFile(%s) failed: error %lu\n", name, GetLastError());
        return nullptr;
    }
    *out = h;
    return static_cast<Controller*>(p);
}

static int selftest() {
    char name[64];
    std::snprintf(name, sizeof name, "sst-legacy-selftest-%lu", GetCurrentProcessId());
    HANDLE h = nullptr;
    Controller* c = create(name, &h);
    if (!c) return 1;
    *c = Controller{12345, -678, true, false, true};
    HANDLE h2 = OpenFileMappingA(FILE_MAP_READ, FALSE, name);
    if (!h2) { std::fprintf(stderr, "selftest: OpenFileMappingA failed: %lu\n", GetLastError()); return 1; }
    auto* r = static_cast<const Controller*>(MapViewOfFile(h2, FILE_MAP_READ, 0, 0, sizeof(Controller)));
    if (!r) return 1;
    bool ok = r->x == 12345 && r->y == -678 && r->is_open && !r->is_running && r->is_pressing;
    UnmapViewOfFile(r); CloseHandle(h2); UnmapViewOfFile(c); CloseHandle(h);
    // The last handle is gone: so is the name (Windows object lifetime).
    HANDLE h3 = OpenFileMappingA(FILE_MAP_READ, FALSE, name);
    bool gone = !h3 && GetLastError() == ERROR_FILE_NOT_FOUND;
    if (h3) CloseHandle(h3);
    say("legacy_writer selftest: readback ok=%ld, name gone after last handle=%ld\n", ok ? 1 : 0, gone ? 1 : 0);
    return ok && gone ? 0 : 1;
}

int main(int argc, char** argv) {
    if (argc == 2 && std::strcmp(argv[1], "--selftest") == 0) return selftest();
    if (argc != 7) {
        std::fprintf(stderr, "usage: legacy_writer NAME X Y IS_OPEN IS_RUNNING IS_PRESSING | --selftest\n");
        return 1;
    }
    HANDLE h = nullptr;
    Controller* c = create(argv[1], &h);
    if (!c) return 1;
    c->x = std::atoi(argv[2]);
    c->y = std::atoi(argv[3]);
    c->is_open = std::atoi(argv[4]) != 0;
    c->is_running = std::atoi(argv[5]) != 0;
    c->is_pressing = std::atoi(argv[6]) != 0;
    say("ready\n");
    char cmd[64];
    while (std::fgets(cmd, sizeof cmd, stdin)) {
        if (std::strncmp(cmd, "dump", 4) == 0) {
            Controller now = *c;
            say("state %ld %ld %d %d %d\n", now.x, now.y, now.is_open, now.is_running, now.is_pressing);
        } else if (std::strncmp(cmd, "quit", 4) == 0) {
            break;
        }
    }
    return 0;  // no UnmapViewOfFile/CloseHandle: like a program that just exits
}
