// Pipe / PipeServer across real processes: message boundaries for every size class, peek,
// available, many clients, a killed client, a server restarted after a crash, errors.
#include <sharedstate/pipe.hpp>

#include <atomic>
#include <cstring>
#include <thread>
#include <string>
#include <vector>

#include "check.hpp"

#if !defined(_WIN32)
#include <sys/stat.h>
#endif

using namespace std::chrono;
using sharedstate::errc;
using sharedstate::Error;
using sharedstate::Pipe;
using sharedstate::PipeServer;

static std::string pattern(size_t n, unsigned seed) {
    std::string s(n, '\0');
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; ++i) { x = x * 1103515245u + 12345u; s[i] = char(x >> 24); }
    return s;
}

static const std::vector<size_t> kSizes = {0, 1, 4095, 4096, 65535, 65536, 65537, 1u << 20, 16u << 20};

// Echoes every message back until the parent closes.
CHILD("echo") {
    Pipe p = Pipe::connect(args.at(0), seconds(10));
    for (;;) {
        std::string m;
        try { m = p.recv(seconds(30)); } catch (const Error& e) { return e.is(errc::end_of_stream) ? 0 : 1; }
        p.send(m);
    }
}

// Sends "first", a 200000-byte message and an empty one, then waits for "done".
CHILD("sender") {
    Pipe p = Pipe::connect(args.at(0), seconds(10));
    p.send("first");
    p.send(pattern(200000, 7));
    p.send("");
    return p.recv(seconds(30)) == "done" ? 0 : 1;
}

// Says hello, then waits to be killed.
CHILD("hold") {
    Pipe p = Pipe::connect(args.at(0), seconds(10));
    p.send("hi");
    check::sleep_ms(60000);
    return 0;
}

// A server that waits to be killed.
CHILD("server") {
    PipeServer s(args.at(0));
    Pipe c = s.accept(seconds(30));
    c.send("up");
    check::sleep_ms(60000);
    return 0;
}

TEST_CASE("boundaries") {
    std::string name = check::unique("pipe");
    PipeServer srv(name);
    check::Child child({"echo", name});
    Pipe c = srv.accept(seconds(10));
    for (size_t n : kSizes) {
        std::string m = pattern(n, unsigned(n));
        c.send(m, seconds(30));
        std::string back = c.recv(seconds(30));
        CHECK(back.size() == n);
        CHECK(back == m);
    }
    // Several in flight at once: none runs into the next. (Only sizes that fit the pipe's
    // buffer: with larger ones both processes would wait in send() for the other to read.)
    std::vector<size_t> short_sizes;
    for (size_t n : kSizes)
        if (n <= 65536) short_sizes.push_back(n);
    for (size_t n : short_sizes) c.send(pattern(n, 3), seconds(30));
    for (size_t n : short_sizes) {
        std::string back = c.recv(seconds(30));
        CHECK(back == pattern(n, 3));
    }
    // recv_into: fits, and too small (the message stays the next one).
    c.send("12345");
    char buf[8];
    while (c.available() == 0) check::sleep_ms(1);
    CHECK_THROWS(c.recv_into(buf, 4, seconds(5)), const sharedstate::Error&);
    CHECK(c.recv_into(buf, sizeof buf, seconds(5)) == 5);
    CHECK(std::memcmp(buf, "12345", 5) == 0);
    c.close();
    CHECK(child.wait() == 0);
}

TEST_CASE("peek_and_available") {
    std::string name = check::unique("pipe");
    PipeServer srv(name);
    check::Child child({"sender", name});
    Pipe c = srv.accept(seconds(10));
    CHECK(c.recv(seconds(10)) == "first");
    auto deadline = steady_clock::now() + seconds(10);
    std::optional<std::string> a;
    while (!(a = c.peek()) && steady_clock::now() < deadline) check::sleep_ms(1);
    auto b = c.peek();
    CHECK(a && b && *a == *b && a->size() == 200000);
    CHECK(c.available() == 200000);
    CHECK(c.recv(seconds(5)) == pattern(200000, 7));
#if !defined(_WIN32)  // PeekNamedPipe cannot see a queued 0-byte message
    while (!(a = c.peek()) && steady_clock::now() < deadline) check::sleep_ms(1);
    CHECK(a && a->empty());
    CHECK(c.available() == 0);
#endif
    CHECK(c.recv(seconds(5)).empty());
    CHECK(!c.peek());
    c.send("done");
    CHECK(child.wait() == 0);
}

TEST_CASE("many_clients") {
    std::string name = check::unique("pipe");
    PipeServer srv(name);
    std::vector<check::Child> kids;
    for (int i = 0; i < 5; ++i) kids.emplace_back(std::vector<std::string>{"echo", name});
    std::vector<Pipe> conns;
    for (int i = 0; i < 5; ++i) conns.push_back(srv.accept(seconds(10)));
    for (int i = 0; i < 5; ++i) conns[size_t(i)].send("client " + std::to_string(i));
    for (int i = 0; i < 5; ++i) CHECK(conns[size_t(i)].recv(seconds(10)) == "client " + std::to_string(i));
    for (auto& c : conns) c.close();
    for (auto& k : kids) CHECK(k.wait() == 0);
}

TEST_CASE("killed_client") {
    std::string name = check::unique("pipe");
    PipeServer srv(name);
    check::Child child({"hold", name});
    Pipe c = srv.accept(seconds(10));
    CHECK(c.recv(seconds(10)) == "hi");
    child.kill();
    child.wait();
    auto t0 = steady_clock::now();
    bool gone = false;
    try {
        c.recv(seconds(5));
    } catch (const Error& e) {
        gone = e.is(errc::broken_pipe) || e.is(errc::end_of_stream);
    }
    CHECK(gone);
    CHECK(steady_clock::now() - t0 < seconds(2));
    CHECK_THROWS(c.send("x"), const sharedstate::Error&);
}

TEST_CASE("server_restart_after_crash") {
    std::string name = check::unique("pipe");
    check::Child server({"server", name});
    Pipe c = Pipe::connect(name, seconds(10));
    CHECK(c.recv(seconds(10)) == "up");
    server.kill();
    server.wait();
    bool ended = false;
    try { c.recv(seconds(5)); } catch (const Error& e) { ended = e.is(errc::broken_pipe) || e.is(errc::end_of_stream); }
    CHECK(ended);
    // The crashed server's socket file is still there: nobody serves it.
    CHECK_THROWS(Pipe::connect(name), const std::system_error&);
    PipeServer again(name);  // replaces the stale file
    check::Child child({"echo", name});
    Pipe d = again.accept(seconds(10));
    d.send("again");
    CHECK(d.recv(seconds(10)) == "again");
    d.close();
    CHECK(child.wait() == 0);
}

TEST_CASE("errors") {
    std::string name = check::unique("pipe");
    try {
        Pipe::connect(name);
        CHECK(false);
    } catch (const Error& e) {
        CHECK(e.code() == std::errc::no_such_file_or_directory || e.code().value() == 2);
    }
    CHECK_THROWS(Pipe::connect(name, milliseconds(100)), const sharedstate::Error&);
    CHECK_THROWS(PipeServer{""}, const sharedstate::Error&);
    CHECK_THROWS(PipeServer{"a/b"}, const sharedstate::Error&);
    CHECK_THROWS(Pipe::connect("a\\b"), const sharedstate::Error&);
    PipeServer srv(name, 100);
    CHECK(srv.max_message() == 100);
    CHECK_THROWS(PipeServer{name}, const std::system_error&);  // already served
    try {
        srv.accept(milliseconds(50));
        CHECK(false);
    } catch (const Error& e) {
        CHECK(e.is(errc::timeout));
    }
    Pipe cli = Pipe::connect(name, seconds(5), 100);
    Pipe conn = srv.accept(seconds(5));
    try {
        conn.send(std::string(101, 'x'));
        CHECK(false);
    } catch (const Error& e) {
        CHECK(e.is(errc::message_too_large));
    }
    try {
        cli.recv(milliseconds(50));
        CHECK(false);
    } catch (const Error& e) {
        CHECK(e.is(errc::timeout));
    }
    conn.send(std::string(100, 'y'));
    CHECK(cli.recv(seconds(5)) == std::string(100, 'y'));
    conn.send("last words");
    conn.close();  // what was sent before close() is still delivered
    CHECK(cli.recv(seconds(5)) == "last words");
    try {
        cli.recv(seconds(5));
        CHECK(false);
    } catch (const Error& e) {
        CHECK(e.is(errc::end_of_stream));
    }
    CHECK_THROWS(conn.send("x"), const sharedstate::Error&);
#if !defined(_WIN32)
    struct stat st;
    std::string dir = srv.path().substr(0, srv.path().rfind('/'));
    CHECK(lstat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 0777) == 0700);
#endif
    srv.close();
    CHECK_THROWS(Pipe::connect(name), const std::system_error&);
}

TEST_CASE("close_wakes_blocked_threads") {
    std::string name = check::unique("pipe");
    PipeServer srv(name);
    Pipe cli = Pipe::connect(name, seconds(5));
    Pipe conn = srv.accept(seconds(5));
    std::atomic<int> woke{0};
    std::thread r([&] {
        try { cli.recv(); } catch (const Error& e) { if (e.is(errc::closed)) woke += 1; }
    });
    std::thread a([&] {
        try { srv.accept(); } catch (const Error& e) { if (e.is(errc::closed)) woke += 1; }
    });
    check::sleep_ms(150);
    auto t0 = steady_clock::now();
    cli.close();
    srv.close();
    r.join();
    a.join();
    CHECK(woke == 2);
    CHECK(steady_clock::now() - t0 < seconds(2));
    bool ended = false;  // the peer of a closed pipe sees the end of the stream
    try { conn.recv(seconds(5)); } catch (const Error& e) { ended = e.is(errc::end_of_stream); }
    CHECK(ended);
}

CHECK_MAIN()
