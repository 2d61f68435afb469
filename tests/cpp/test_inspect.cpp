// inspect.hpp: the read-only look tools use. It validates with open()'s code, reads with the
// latch, takes no holder (Linux) and reports a bad header as `problem`, never throwing for it.
#include <sharedstate/inspect.hpp>
#include <sharedstate/sharedstate.hpp>

#include <cstring>

#include "check.hpp"

struct Controller {
    int32_t x;
    int32_t y;
    bool is_open;
    bool is_running;
    bool is_pressing;
};
SHAREDSTATE_DESCRIBE(Controller, x, y, is_open, is_running, is_pressing);

namespace si = sharedstate::inspect;
using sharedstate::SharedState;

TEST_CASE("state_described") {
    auto name = check::unique("inspect-state");
    auto st = SharedState<Controller>::create(name);
    st.write(Controller{7, -7, true, false, true});
    si::Description d = si::peek(name);
    CHECK(d.kind == "state");
    CHECK(d.problem.empty());
    CHECK(d.has_preamble && d.format_version == 1 && !d.persistent);
    CHECK(d.has_layout && d.layout == SharedState<Controller>::layout());
    CHECK(d.has_version && d.version == 1);
    CHECK(d.has_payload && d.payload.size() == sizeof(Controller));
    Controller c;
    std::memcpy(&c, d.payload.data(), sizeof c);
    CHECK(c.x == 7 && c.y == -7 && c.is_open && c.is_pressing);
    const si::Fact* lw = d.fact("last_writer");
    CHECK(lw && lw->type == si::Fact::owner && lw->who.pid == sharedstate::detail::os::current_pid() && lw->who.alive);
    const si::Fact* wl = d.fact("writer_lock");
    CHECK(wl && wl->who.pid == 0);
    CHECK(d.fact("payload_size") && d.fact("payload_size")->value == sizeof(Controller));
#if !defined(_WIN32)
    CHECK(d.holders_known && d.holder_pids.size() == 1 && d.holder_pids[0] == sharedstate::detail::os::current_pid());
#endif
    si::PeekOptions no_payload;
    no_payload.payload = false;
    CHECK(!si::peek(name, no_payload).has_payload);
    st.close();
}

TEST_CASE("queue_described") {
    auto name = check::unique("inspect-queue");
    auto q = sharedstate::Queue::create(name, 4096);
    const char msg[] = "hello";
    q.put(msg, sizeof msg);
    si::Description d = si::peek(name);
    CHECK(d.kind == "queue" && d.problem.empty());
    CHECK(d.fact("capacity") && d.fact("capacity")->value == 4096);
    CHECK(d.fact("pending") && d.fact("pending")->value == 1);
    CHECK(!d.has_layout && !d.has_payload);
    q.close();
}

TEST_CASE("kinds_table") {
    CHECK(si::kind_of_magic(sharedstate::format::kStateMagic) != nullptr);
    CHECK(si::kind_of_magic(sharedstate::format::kQueueMagic) != nullptr);
    CHECK(si::kind_of_magic(0) == nullptr);
}

#if !defined(_WIN32)
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

TEST_CASE("corrupt_reported_not_thrown_and_not_removed") {
    auto name = check::unique("inspect-bad");
    auto st = SharedState<Controller>::create(name);
    // A copy of its bytes with one field-table byte flipped: the checksum no longer matches.
    auto bad = name + "-bad";
    int src = shm_open(("/" + name).c_str(), O_RDONLY, 0);
    int dst = shm_open(("/" + bad).c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
    CHECK(src >= 0 && dst >= 0);
    unsigned char buf[4096];
    ssize_t n = pread(src, buf, sizeof buf, 0);
    CHECK(n > 300);
    buf[256 + 3] ^= 1;
    CHECK(pwrite(dst, buf, size_t(n), 0) == n);
    close(src);
    close(dst);
    si::Description d = si::peek(bad);
    CHECK(d.kind == "state");
    CHECK(d.problem == "header checksum mismatch");
    if (d.problem != "header checksum mismatch") std::fprintf(stderr, "problem: %s\n", d.problem.c_str());
    CHECK(!d.has_layout && !d.has_payload && d.facts.empty());
    CHECK(sharedstate::detail::os::SegmentFile::exists(bad));
    shm_unlink(("/" + bad).c_str());
    st.close();
}
#endif

CHECK_MAIN()
