// WaitSet across real processes: states, queues, mailslots, semaphores, pipes; order of the
// report, once per change, waiter counts, removal while another thread waits, interrupts.
#include <sharedstate/sharedstate.hpp>

#include <atomic>
#include <string>
#include <thread>

#include "check.hpp"

#if !defined(_WIN32)
#include <poll.h>
#endif

using namespace std::chrono;
using sharedstate::errc;
using sharedstate::Error;
using sharedstate::Layout;
using sharedstate::SharedBlock;
using sharedstate::WaitSet;

static void put_u32(SharedBlock& b, uint32_t v) { b.write(&v); }

static bool times_out(WaitSet& ws, milliseconds t) {
    try {
        ws.wait(t);
    } catch (const Error& e) {
        return e.is(errc::timeout);
    }
    return false;
}

// Opens the states named in args[1..] and writes each once, in the order given, after
// waiting for the go semaphore args[0] before each write.
CHILD("writer") {
    auto go = sharedstate::Semaphore::open(args.at(0));
    for (size_t i = 1; i < args.size(); ++i) {
        auto b = SharedBlock::open(args[i]);
        if (!go.acquire(seconds(10))) return 2;
        put_u32(b, uint32_t(i));
    }
    return 0;
}

// Puts one message into the queue args[0] after the semaphore args[1].
CHILD("putter") {
    auto q = sharedstate::Queue::open(args.at(0));
    auto go = sharedstate::Semaphore::open(args.at(1));
    if (!go.acquire(seconds(10))) return 2;
    q.put(std::string("hello"));
    return 0;
}

TEST_CASE("states_in_order_added_once_per_change") {
    std::string a = check::unique("ws"), b = check::unique("ws"), g = check::unique("ws");
    auto A = SharedBlock::create(a, Layout::opaque(4));
    auto B = SharedBlock::create(b, Layout::opaque(4));
    auto go = sharedstate::Semaphore::create(g, 0);
    WaitSet ws;
    uint64_t ia = ws.add(A), ib = ws.add(B);
    CHECK(ia != ib);
    CHECK(ws.add(A) == ia);  // already a member
    CHECK(times_out(ws, milliseconds(0)));
    // The child writes B then A; the parent reports in the order added whatever the order of writes.
    check::Child w({"writer", g, b, a});
    go.release();
    auto r = ws.wait(seconds(10));
    CHECK(r.size() == 1 && r[0] == ib);
    CHECK(times_out(ws, milliseconds(20)));  // reported once
    go.release();
    r = ws.wait(seconds(10));
    CHECK(r.size() == 1 && r[0] == ia);
    CHECK(w.wait() == 0);
    put_u32(A, 7);
    put_u32(B, 8);
    r = ws.wait(seconds(1));
    CHECK(r.size() == 2 && r[0] == ia && r[1] == ib);
    CHECK(times_out(ws, milliseconds(0)));
    // since: ready at once when the version already passed it
    WaitSet ws2;
    uint64_t i2 = ws2.add(A, 0);
    r = ws2.wait(milliseconds(0));
    CHECK(r.size() == 1 && r[0] == i2);
}

TEST_CASE("parked_set_counts_as_waiter") {
    std::string a = check::unique("ws");
    auto A = SharedBlock::create(a, Layout::opaque(4));
    auto q = sharedstate::Queue::create(check::unique("wsq"), 4096);
    WaitSet ws;
    ws.add(A);
    ws.add(q);
    std::atomic<int> got{0};
    std::thread t([&] {
        try {
            got = int(ws.wait(seconds(10)).size());
        } catch (...) {
            got = -1;
        }
    });
    for (int i = 0; i < 1000 && A.waiters() == 0; ++i) std::this_thread::sleep_for(milliseconds(2));
    CHECK(A.waiters() == 1);  // the parked set is a waiter of A (so the writer wakes it)
    q.put(std::string("x"));
    t.join();
    CHECK(got == 1);
    CHECK(A.waiters() == 0);
    CHECK(q.get(milliseconds(0)).size() == 1);
}

TEST_CASE("queue_cross_process_and_semaphore") {
    std::string qn = check::unique("wsq"), g = check::unique("ws"), sn = check::unique("ws");
    auto q = sharedstate::Queue::create(qn, 4096);
    auto go = sharedstate::Semaphore::create(g, 0);
    auto sem = sharedstate::Semaphore::create(sn, 0);
    WaitSet ws;
    uint64_t iq = ws.add(q), is = ws.add(sem);
    CHECK(times_out(ws, milliseconds(0)));
    check::Child c({"putter", qn, g});
    go.release();
    auto r = ws.wait(seconds(10));
    CHECK(r.size() == 1 && r[0] == iq);
    r = ws.wait(milliseconds(0));  // still ready: a message is there until it is taken
    CHECK(r.size() == 1 && r[0] == iq);
    CHECK(q.get(milliseconds(0)).size() == 5);
    CHECK(times_out(ws, milliseconds(10)));
    CHECK(c.wait() == 0);
    std::thread t([&] {
        std::this_thread::sleep_for(milliseconds(30));
        sem.release();
    });
    r = ws.wait(seconds(10));
    t.join();
    CHECK(r.size() == 1 && r[0] == is);
    CHECK(sem.acquire(milliseconds(0)));  // readiness only: the count is still there
    CHECK(times_out(ws, milliseconds(10)));
}

TEST_CASE("mailslot_member") {
    std::string n = check::unique("wsm");
    sharedstate::Mailslot box(n);
    sharedstate::MailslotWriter w(n);
    WaitSet ws;
    uint64_t id = ws.add(box);
    CHECK(times_out(ws, milliseconds(0)));
    std::thread t([&] {
        std::this_thread::sleep_for(milliseconds(30));
        w.send(std::string("m"));
    });
    auto r = ws.wait(seconds(10));
    t.join();
    CHECK(r.size() == 1 && r[0] == id);
    CHECK(box.recv(milliseconds(0)).size() == 1);
}

#if !defined(_WIN32)
TEST_CASE("pipes_and_server_mixed_with_states") {
    std::string pn = check::unique("wsp"), a = check::unique("ws");
    sharedstate::PipeServer srv(pn);
    auto A = SharedBlock::create(a, Layout::opaque(4));
    WaitSet ws;
    uint64_t ia = ws.add(A), is = ws.add(srv);
    CHECK(times_out(ws, milliseconds(0)));
    std::thread t([&] {
        std::this_thread::sleep_for(milliseconds(30));
        auto cli = sharedstate::Pipe::connect(pn, seconds(5));
        cli.send(std::string("hi"));
        std::this_thread::sleep_for(milliseconds(50));
        cli.close();
    });
    auto r = ws.wait(seconds(10));
    CHECK(r.size() == 1 && r[0] == is);
    auto conn = srv.accept(milliseconds(0));
    uint64_t ic = ws.add(conn);
    r = ws.wait(seconds(10));
    CHECK(!r.empty() && r.back() == ic);
    CHECK(conn.recv(milliseconds(0)) == "hi");
    // the futex member still works in a mixed set
    put_u32(A, 1);
    r = ws.wait(seconds(10));
    CHECK(!r.empty() && r[0] == ia);
    // the peer gone: ready (recv then reports it)
    t.join();
    r = ws.wait(seconds(10));
    CHECK(!r.empty() && r.back() == ic);
    CHECK_THROWS(conn.recv(milliseconds(0)), const Error&);
    ws.remove(ic);
    CHECK(times_out(ws, milliseconds(10)));
}
#endif

TEST_CASE("remove_and_add_while_another_thread_waits") {
    auto A = SharedBlock::create(check::unique("ws"), Layout::opaque(4));
    auto B = SharedBlock::create(check::unique("ws"), Layout::opaque(4));
    WaitSet ws;
    uint64_t ia = ws.add(A);
    std::atomic<uint64_t> got{0};
    std::thread t([&] {
        try {
            got = ws.wait(seconds(10)).at(0);
        } catch (...) {
            got = 999;
        }
    });
    std::this_thread::sleep_for(milliseconds(30));
    CHECK(ws.remove(A));   // by the object
    CHECK(!ws.remove(ia));  // by the id: already gone
    CHECK(!ws.remove(A));
    uint64_t ib = ws.add(B);
    put_u32(A, 1);  // no longer a member: not reported
    std::this_thread::sleep_for(milliseconds(30));
    CHECK(got == 0);
    put_u32(B, 1);
    t.join();
    CHECK(got == ib);
    CHECK(A.waiters() == 0 && B.waiters() == 0);
}

TEST_CASE("interrupt_ends_the_wait") {
    auto A = SharedBlock::create(check::unique("ws"), Layout::opaque(4));
    WaitSet ws;
    ws.add(A);
    struct Flag { std::atomic<bool> on{false}; } flag;
    sharedstate::Interrupt intr;
    intr.ctx = &flag;
    intr.check = [](void* c) {
        if (static_cast<Flag*>(c)->on.load()) throw std::runtime_error("interrupted");
    };
    std::thread t([&] {
        std::this_thread::sleep_for(milliseconds(30));
        flag.on = true;
    });
    bool interrupted = false;
    try {
        ws.wait(seconds(10), intr);
    } catch (const std::runtime_error&) {
        interrupted = true;
    }
    t.join();
    CHECK(interrupted);
    CHECK(A.waiters() == 0);
}

TEST_CASE("empty_set_times_out") {
    WaitSet ws;
    CHECK(times_out(ws, milliseconds(0)));
    CHECK(times_out(ws, milliseconds(5)));
}

#if !defined(_WIN32)
TEST_CASE("fileno_readable_while_ready") {
    auto A = SharedBlock::create(check::unique("ws"), Layout::opaque(4));
    WaitSet ws;
    uint64_t ia = ws.add(A);
    int fd = ws.fileno();
    pollfd p{fd, POLLIN, 0};
    CHECK(poll(&p, 1, 20) == 0);
    put_u32(A, 1);
    p.revents = 0;
    CHECK(poll(&p, 1, 5000) == 1);
    auto r = ws.wait(milliseconds(0));
    CHECK(r.size() == 1 && r[0] == ia);
    p.revents = 0;
    CHECK(poll(&p, 1, 30) == 0);  // cleared by the report, nothing new
    put_u32(A, 2);
    p.revents = 0;
    CHECK(poll(&p, 1, 5000) == 1);
}
#endif

#if defined(__linux__)
TEST_CASE("futex_waitv_in_use") {
    // This machine's kernel has futex_waitv (>= 5.16): after a park the state says so.
    auto A = SharedBlock::create(check::unique("ws"), Layout::opaque(4));
    WaitSet ws;
    ws.add(A);
    CHECK(times_out(ws, milliseconds(5)));
    std::printf("futex_waitv state: %d (1 = in use, 2 = ENOSYS fallback)\n",
                sharedstate::detail::os::futex_waitv_state().load());
    CHECK(sharedstate::detail::os::futex_waitv_state().load() != 0);
}
#endif

CHECK_MAIN()
