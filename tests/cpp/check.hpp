// A tiny test harness: CHECK macros, named test cases, and child processes (the test
// executable runs itself with "child NAME args..."), portable to Windows for Wine.
#pragma once
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#if defined(_WIN32)
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#ifndef NOMINMAX
#define NOMINMAX
#endif
#include <windows.h>
#else
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>
extern char** environ;
#endif

namespace check {

inline int& failures() { static int n = 0; return n; }
inline int& checks() { static int n = 0; return n; }

#define CHECK(cond)                                                                            \
    do {                                                                                       \
        ++::check::checks();                                                                   \
        if (!(cond)) {                                                                         \
            ++::check::failures();                                                             \
            std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);      \
        }                                                                                      \
    } while (0)
#define CHECK_THROWS(expr, ...)                                                                \
    do {                                                                                       \
        ++::check::checks();                                                                   \
        bool thrown_ = false;                                                                  \
        try { expr; } catch (__VA_ARGS__) { thrown_ = true; } catch (...) {}                   \
        if (!thrown_) {                                                                        \
            ++::check::failures();                                                             \
            std::fprintf(stderr, "%s:%d: expected %s from: %s\n", __FILE__, __LINE__, #__VA_ARGS__, #expr); \
        }                                                                                      \
    } while (0)

struct Case { const char* name; std::function<void()> fn; };
inline std::vector<Case>& cases() { static std::vector<Case> v; return v; }
struct Register { Register(const char* n, std::function<void()> f) { cases().push_back({n, std::move(f)}); } };
#define CHECK_CAT2(a, b) a##b
#define CHECK_CAT(a, b) CHECK_CAT2(a, b)
#define TEST_CASE(name) \
    static void CHECK_CAT(test_fn_, __LINE__)(); \
    static ::check::Register CHECK_CAT(test_reg_, __LINE__)(name, &CHECK_CAT(test_fn_, __LINE__)); \
    static void CHECK_CAT(test_fn_, __LINE__)()

// Child entry points: CHILD("writer") { ... return 0; } runs for "self child writer ...".
using ChildFn = std::function<int(const std::vector<std::string>&)>;
inline std::vector<std::pair<std::string, ChildFn>>& children() { static std::vector<std::pair<std::string, ChildFn>> v; return v; }
struct RegisterChild { RegisterChild(const char* n, ChildFn f) { children().push_back({n, std::move(f)}); } };
#define CHILD(name) \
    static int CHECK_CAT(child_fn_, __LINE__)(const std::vector<std::string>& args); \
    static ::check::RegisterChild CHECK_CAT(child_reg_, __LINE__)(name, &CHECK_CAT(child_fn_, __LINE__)); \
    static int CHECK_CAT(child_fn_, __LINE__)(const std::vector<std::string>& args)

inline std::string& self_path() { static std::string p; return p; }

// A unique object name for this run of this test.
inline std::string unique(const std::string& what) {
#if defined(_WIN32)
    unsigned long pid = GetCurrentProcessId();
#else
    unsigned long pid = (unsigned long)getpid();
#endif
    static int n = 0;
    return "sst-cpp-" + what + "-" + std::to_string(pid) + "-" + std::to_string(++n);
}

// Under Wine (its ntdll exports wine_get_version); false on Windows and on POSIX.
inline bool under_wine() {
#if defined(_WIN32)
    HMODULE ntdll = GetModuleHandleA("ntdll.dll");
    return ntdll && GetProcAddress(ntdll, "wine_get_version") != nullptr;
#else
    return false;
#endif
}

class Child {
public:
    Child() = default;
    explicit Child(const std::vector<std::string>& args) {
        std::vector<std::string> all{self_path(), "child"};
        all.insert(all.end(), args.begin(), args.end());
#if defined(_WIN32)
        std::string cmd;
        for (auto& a : all) cmd += "\"" + a + "\" ";
        STARTUPINFOA si{};
        si.cb = sizeof si;
        PROCESS_INFORMATION pi{};
        // Debian's Wine 8.0 has no preloader: about one process start in a thousand, the new
        // process's Linux heap covers 0x7ffe0000 (Windows' shared user data), it dies before
        // main ("failed to map the shared user data: c0000018") and CreateProcess fails with
        // ERROR_INTERNAL_ERROR (docs/windows.md). Only that start is repeated, only under Wine;
        // the test itself never is.
        for (int attempt = 1;; ++attempt) {
            std::string line = cmd;  // CreateProcessA may write to its command line
            if (CreateProcessA(nullptr, &line[0], nullptr, nullptr, FALSE, 0, nullptr, nullptr, &si, &pi)) break;
            DWORD err = GetLastError();
            if (err == ERROR_INTERNAL_ERROR && attempt < 3 && under_wine()) {
                std::fprintf(stderr, "  (Wine: a child died before main, CreateProcess error %lu; starting it again)\n",
                             (unsigned long)err);
                continue;
            }
            std::fprintf(stderr, "CreateProcess failed: error %lu\n", (unsigned long)err);
            std::exit(1);
        }
        CloseHandle(pi.hThread);
        h_ = pi.hProcess;
#else
        std::vector<char*> argv;
        for (auto& a : all) argv.push_back(const_cast<char*>(a.c_str()));
        argv.push_back(nullptr);
        if (posix_spawn(&pid_, self_path().c_str(), nullptr, nullptr, argv.data(), environ) != 0) {
            std::perror("posix_spawn");
            std::exit(1);
        }
#endif
    }
    // Exit code; -1 if it was killed.
    int wait() {
#if defined(_WIN32)
        WaitForSingleObject(h_, INFINITE);
        DWORD code = 0;
        GetExitCodeProcess(h_, &code);
        CloseHandle(h_);
        h_ = nullptr;
        return int(code);
#else
        int st = 0;
        waitpid(pid_, &st, 0);
        pid_ = -1;
        return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
#endif
    }
    void kill() {
#if defined(_WIN32)
        TerminateProcess(h_, 9);
#else
        ::kill(pid_, SIGKILL);
#endif
    }
#if !defined(_WIN32)
    void stop() { ::kill(pid_, SIGSTOP); }
    void cont() { ::kill(pid_, SIGCONT); }
    int pid() const { return pid_; }
#endif
private:
#if defined(_WIN32)
    HANDLE h_ = nullptr;
#else
    pid_t pid_ = -1;
#endif
};

inline void sleep_ms(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

// main(): "self" runs every case (or those named); "self child NAME ..." runs a child.
inline int run(int argc, char** argv) {
    self_path() = argv[0];
    if (argc >= 3 && std::string(argv[1]) == "child") {
        std::vector<std::string> args(argv + 3, argv + argc);
        for (auto& c : children())
            if (c.first == argv[2]) {
                try { return c.second(args); }
                catch (const std::exception& e) { std::fprintf(stderr, "child %s: %s\n", argv[2], e.what()); return 1; }
            }
        std::fprintf(stderr, "no child %s\n", argv[2]);
        return 1;
    }
    int ran = 0;
    for (auto& c : cases()) {
        if (argc >= 2 && std::string(argv[1]) != c.name) continue;
        int before = failures();
        try {
            c.fn();
        } catch (const std::exception& e) {
            ++failures();
            std::fprintf(stderr, "%s: unexpected exception: %s\n", c.name, e.what());
        }
        std::printf("%s %s\n", failures() == before ? "PASS" : "FAIL", c.name);
        ++ran;
    }
    std::printf("%d cases, %d checks, %d failed\n", ran, checks(), failures());
    return failures() == 0 && ran > 0 ? 0 : 1;
}

}  // namespace check

#define CHECK_MAIN() int main(int argc, char** argv) { return ::check::run(argc, argv); }
