// Semaphore across real processes: counts, timeouts, maximum, lifetime, names.
#include <sharedstate/semaphore.hpp>

#include <string>

#include "check.hpp"

#if !defined(_WIN32)
#include <unistd.h>
#endif

using namespace std::chrono;
using sharedstate::errc;
using sharedstate::Error;
using sharedstate::Semaphore;

// Acquires N times (each within 10 s), then releases the "done" semaphore once.
CHILD("taker") {
    Semaphore s = Semaphore::open(args.at(0));
    Semaphore done = Semaphore::open(args.at(1));
    int n = std::stoi(args.at(2));
    for (int i = 0; i < n; ++i)
        if (!s.acquire(seconds(10))) return 1;
    done.release();
    return 0;
}

TEST_CASE("counts_across_processes") {
    std::string a = check::unique("sem"), b = check::unique("sem");
    Semaphore s = Semaphore::create(a, 0);
    Semaphore done = Semaphore::create(b, 0);
    check::Child k1({"taker", a, b, "3"});
    check::Child k2({"taker", a, b, "2"});
    s.release(2);
    s.release(3);
    CHECK(done.acquire(seconds(10)));
    CHECK(done.acquire(seconds(10)));
    CHECK(k1.wait() == 0);
    CHECK(k2.wait() == 0);
    CHECK(!s.acquire(milliseconds(0)));  // all five were taken
}

TEST_CASE("timeouts") {
    Semaphore s = Semaphore::create(check::unique("sem"), 1);
    CHECK(s.acquire(milliseconds(0)));
    auto t0 = steady_clock::now();
    CHECK(!s.acquire(milliseconds(120)));
    auto dt = steady_clock::now() - t0;
    CHECK(dt >= milliseconds(100));
    s.release();
    CHECK(s.acquire(milliseconds(0)));
}

TEST_CASE("maximum_and_errors") {
    std::string name = check::unique("sem");
    Semaphore s = Semaphore::create(name, 1, 2);
    s.release();
    CHECK_THROWS(s.release(), const sharedstate::Error&);
    CHECK_THROWS(Semaphore::create(name), const std::system_error&);
    CHECK_THROWS(Semaphore::create(check::unique("sem"), 3, 2), const sharedstate::Error&);
    CHECK_THROWS(Semaphore::create(""), const sharedstate::Error&);
    CHECK_THROWS(Semaphore::create("a/b"), const sharedstate::Error&);
    CHECK_THROWS(Semaphore::open(check::unique("sem")), const std::system_error&);
    Semaphore o = Semaphore::open(name);
    CHECK(o.acquire(milliseconds(0)));
    CHECK(s.acquire(milliseconds(0)));
    CHECK(!o.acquire(milliseconds(0)));
    o.close();
    CHECK(o.closed());
    CHECK_THROWS(o.acquire(), const sharedstate::Error&);
}

TEST_CASE("lifetime") {
    std::string name = check::unique("sem");
    {
        Semaphore s = Semaphore::create(name, 0);
        Semaphore o = Semaphore::open(name);
        s.close();
        Semaphore again = Semaphore::open(name);  // o still holds it
        CHECK(!again.closed());
    }
    // The last holder closed: the name is gone (as on Windows).
    CHECK_THROWS(Semaphore::open(name), const std::system_error&);
#if !defined(_WIN32)
    CHECK(access(("/dev/shm/sem." + name).c_str(), F_OK) != 0);
    Semaphore p = Semaphore::create(name, 0, Semaphore::max_value(), true);
    p.close();
    Semaphore q = Semaphore::open(name, true);  // persistent: still there
    CHECK(q.unlink());
    CHECK(!q.unlink());
#endif
}

CHECK_MAIN()
