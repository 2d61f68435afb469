// The error-code forms, compiled with exceptions disabled (-fno-exceptions; /EHs-c- with
// MSVC): each game-side call reports each failure as the right code (and a message naming
// the object), and works on success. Self-contained (check.hpp's runner uses try/catch).
#include <sharedstate/sharedstate.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#if defined(__cpp_exceptions) || defined(__EXCEPTIONS) || defined(_CPPUNWIND)
#error "test_noexcept must be compiled with exceptions disabled"
#endif
static_assert(!sharedstate::kExceptions, "the no-exceptions mode is detected");

namespace ss = sharedstate;
using namespace std::chrono_literals;

static int g_checks = 0, g_failures = 0;
#define CHECK(cond)                                                                          \
    do {                                                                                     \
        ++g_checks;                                                                          \
        if (!(cond)) {                                                                       \
            ++g_failures;                                                                    \
            std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);    \
        }                                                                                    \
    } while (0)
// err holds exactly this errc, and a message naming the object.
#define CHECK_ERR(err, code, object)                                                                   \
    do {                                                                                               \
        CHECK((err).is(code));                                                                         \
        CHECK((err).message.find(object) != std::string::npos);                                        \
        if (!(err).is(code)) std::fprintf(stderr, "    got: %s\n", (err) ? (err).what().c_str() : "no error"); \
    } while (0)
#define CHECK_OK(err)                                                                                  \
    do {                                                                                               \
        CHECK(!(err));                                                                                 \
        if (err) std::fprintf(stderr, "    unexpected: %s\n", (err).what().c_str());                   \
    } while (0)

static std::string unique(const char* what) {
    static int n = 0;
    return std::string("ss-noexc-") + what + "-" + std::to_string(ss::detail::os::current_pid()) + "-" +
           std::to_string(++n);
}

struct Pad {
    int32_t x;
    int32_t y;
    double t;
};
SHAREDSTATE_DESCRIBE(Pad, x, y, t);
struct Other {
    int64_t a;
};
SHAREDSTATE_DESCRIBE(Other, a);

// Overwrites one byte of a segment's header through a second, raw mapping.
static void scribble(const std::string& name, size_t offset, unsigned char value) {
    auto raw = ss::SharedBlock::attach_raw(name, ss::Layout::opaque(256));  // setup: may terminate
    raw.data()[offset] ^= value;
}

static void test_state() {
    ss::ErrorInfo err;
    const std::string name = unique("state");
    auto st = ss::SharedState<Pad>::create(name, err);
    CHECK_OK(err);
    CHECK(!st.closed());
    CHECK(st.write(Pad{1, 2, 3.5}, err));
    CHECK_OK(err);
    Pad p{};
    CHECK(st.read(p, err));
    CHECK_OK(err);
    CHECK(p.x == 1 && p.y == 2 && p.t == 3.5);
    CHECK(st.update([](Pad& v) noexcept { v.x += 10; }, err));
    CHECK_OK(err);
    CHECK(st.read(p, err) && p.x == 11);
    uint64_t v = st.version(err);
    CHECK_OK(err);
    CHECK(v == 2);

    // wait: success (a write from another thread) and timeout
    std::thread w([&] {
        std::this_thread::sleep_for(20ms);
        ss::ErrorInfo e2;
        st.write(Pad{5, 6, 7}, e2);
    });
    uint64_t nv = st.wait(v, 5s, err);
    w.join();
    CHECK_OK(err);
    CHECK(nv == v + 1);
    CHECK(st.wait(nv, 30ms, err) == 0);
    CHECK_ERR(err, ss::errc::timeout, name);

    // exists (the creator holds it), through create and through the SharedBlock form
    auto again = ss::SharedState<Pad>::create(name, err);
    CHECK(err.exists());
    CHECK(err.message.find(name) != std::string::npos);
    CHECK(again.closed());
    CHECK(err.what() == err.message + ": " + err.code.message());
    // exist_ok opens it instead
    ss::CreateOptions ok;
    ok.exist_ok = true;
    auto same = ss::SharedState<Pad>::create(name, ok, err);
    CHECK_OK(err);
    CHECK(same.read(p, err) && p.x == 5);

    // layout mismatch
    auto other = ss::SharedState<Other>::open(name, err);
    CHECK_ERR(err, ss::errc::layout_mismatch, name);
    CHECK(other.closed());

    // not found
    auto missing = ss::SharedState<Pad>::open(name + "-missing", err);
    CHECK(err.not_found());
    CHECK(missing.closed());

    // bad name, invalid layout
    auto bad = ss::SharedState<Pad>::create("a/b", err);
    CHECK_ERR(err, ss::errc::bad_name, "a/b");
    ss::Layout empty;
    auto blk = ss::SharedBlock::create(unique("badlayout"), empty, {}, err);
    CHECK(err.is(ss::errc::invalid_argument));
    CHECK(blk.closed());

    // a call on a closed object
    same.close();
    CHECK(!same.write(Pad{}, err));
    CHECK_ERR(err, ss::errc::closed, name);
    CHECK(!same.read(p, err));
    CHECK(err.is(ss::errc::closed));
    CHECK(same.wait(0, 1ms, err) == 0 && err.is(ss::errc::closed));
    CHECK(!same.update([](Pad&) noexcept {}, err) && err.is(ss::errc::closed));
}

static void test_state_busy_lock() {
    ss::ErrorInfo err;
    const std::string name = unique("busy");
    auto st = ss::SharedState<Pad>::create(name, err);
    CHECK_OK(err);
    std::atomic<int> phase{0};
    // Another thread holds the writer lock (inside update) until told to let go.
    std::thread holder([&] {
        ss::ErrorInfo e2;
        st.update([&](Pad& v) noexcept {
            v.x = 42;
            phase = 1;
            while (phase.load() != 2) std::this_thread::sleep_for(1ms);
        }, e2);
    });
    while (phase.load() != 1) std::this_thread::sleep_for(1ms);
    CHECK(!st.write(Pad{1, 1, 1}, 30ms, err));
    CHECK_ERR(err, ss::errc::timeout, name);
    CHECK(!st.write(Pad{1, 1, 1}, 0ns, err));
    CHECK_ERR(err, ss::errc::would_block, name);
    CHECK(!st.update([](Pad&) noexcept {}, 10ms, err));
    CHECK(err.is(ss::errc::timeout));
    phase = 2;
    holder.join();
    CHECK(st.write(Pad{2, 2, 2}, 1s, err));
    CHECK_OK(err);
    Pad p{};
    CHECK(st.read(p, err) && p.x == 2);
}

static void test_state_corrupt_and_kind() {
    ss::ErrorInfo err;
    const std::string name = unique("corrupt");
    auto st = ss::SharedState<Pad>::create(name, err);
    CHECK_OK(err);
    // The header checksum covers bytes 8..63: flip a bit of payload_size (offset 24).
    scribble(name, 24, 0x01);
    auto bad = ss::SharedState<Pad>::open(name, err);
    CHECK_ERR(err, ss::errc::corrupt_segment, name);
    CHECK(bad.closed());
    auto blk = ss::SharedBlock::open(name, err);
    CHECK(err.is(ss::errc::corrupt_segment));
    scribble(name, 24, 0x01);  // repaired
    auto good = ss::SharedState<Pad>::open(name, err);
    CHECK_OK(err);

    // a Queue opened as a state, and a state opened as a Queue
    const std::string qname = unique("kind");
    auto q = ss::Queue::create(qname, 4096, 0, err);
    CHECK_OK(err);
    auto as_state = ss::SharedState<Pad>::open(qname, err);
    CHECK_ERR(err, ss::errc::wrong_kind, qname);
    auto as_queue = ss::Queue::open(name, err);
    CHECK_ERR(err, ss::errc::wrong_kind, name);
    CHECK(as_queue.closed());
}

static void test_queue() {
    ss::ErrorInfo err;
    const std::string name = unique("queue");
    auto q = ss::Queue::create(name, 256, 64, err);
    CHECK_OK(err);
    CHECK(q.put("hello", 5, 1s, err));
    CHECK_OK(err);
    std::vector<unsigned char> out;
    CHECK(q.get(out, 1s, err));
    CHECK_OK(err);
    CHECK(std::string(out.begin(), out.end()) == "hello");
    CHECK(q.try_put("ab", 2, err));
    CHECK(q.try_get(out, err) && out.size() == 2);
    CHECK(!q.try_get(out, err));
    CHECK_OK(err);  // nothing ready is not an error for try_get

    // empty: timeout
    auto v = q.get(20ms, err);
    CHECK(v.empty());
    CHECK_ERR(err, ss::errc::timeout, name);

    // too large
    char big[100] = {};
    CHECK(!q.put(big, sizeof big, 0ns, err));
    CHECK_ERR(err, ss::errc::message_too_large, name);

    // full: timeout (256-byte ring, 64-byte messages, 80-byte records)
    int n = 0;
    while (q.try_put(big, 64, err)) ++n;
    CHECK_OK(err);
    CHECK(n >= 2);
    CHECK(!q.put(big, 64, 20ms, err));
    CHECK_ERR(err, ss::errc::timeout, name);

    // get_into with a small buffer: message_too_large, and the message stays
    char short_buf[8];
    CHECK(q.get_into(short_buf, sizeof short_buf, 0ns, err) == 0);
    CHECK_ERR(err, ss::errc::message_too_large, name);
    char whole[64];
    CHECK(q.get_into(whole, sizeof whole, 0ns, err) == 64);
    CHECK_OK(err);

    // exists, not found, open
    auto again = ss::Queue::create(name, 256, 64, err);
    CHECK(err.exists());
    CHECK(again.closed());
    auto missing = ss::Queue::open(name + "-missing", err);
    CHECK(err.not_found());
    auto opened = ss::Queue::open(name, err);
    CHECK_OK(err);
    CHECK(opened.put("x", 1, 1s, err) || err.is(ss::errc::timeout));

    // invalid capacity
    auto huge = ss::Queue::create(unique("huge"), uint64_t(1) << 40, 0, err);
    CHECK(err.is(ss::errc::invalid_argument));

    // corrupt header through a second mapping (capacity at offset 24)
    const std::string cname = unique("qcorrupt");
    auto cq = ss::Queue::create(cname, 4096, 0, err);
    CHECK_OK(err);
    scribble(cname, 24, 0x01);
    auto bad = ss::Queue::open(cname, err);
    CHECK_ERR(err, ss::errc::corrupt_segment, cname);

    // closed
    q.close();
    CHECK(!q.put("x", 1, 0ns, err));
    CHECK_ERR(err, ss::errc::closed, name);
    CHECK(!q.get(out, 0ns, err) && err.is(ss::errc::closed));
}

static void test_semaphore() {
    ss::ErrorInfo err;
    const std::string name = unique("sem");
    auto s = ss::Semaphore::create(name, 1, err);
    CHECK_OK(err);
    CHECK(s.acquire(1s, err));
    CHECK_OK(err);
    CHECK(!s.acquire(20ms, err));
    CHECK_ERR(err, ss::errc::timeout, name);
    auto o = ss::Semaphore::open(name, err);
    CHECK_OK(err);
    CHECK(o.release(1, err));
    CHECK(s.acquire(1s, err));
    CHECK(!o.release(0, err) && err.is(ss::errc::invalid_argument));
    auto again = ss::Semaphore::create(name, 0, err);
    CHECK(err.exists());
    CHECK(again.closed());
    auto missing = ss::Semaphore::open(name + "-missing", err);
    CHECK(err.not_found());
    auto badmax = ss::Semaphore::create(unique("sem"), 5, 2, false, err);
    CHECK(err.is(ss::errc::invalid_argument));
    s.close();
    CHECK(!s.acquire(0ns, err));
    CHECK_ERR(err, ss::errc::closed, name);
}

static void test_pipe() {
    ss::ErrorInfo err;
    const std::string name = unique("pipe");
    ss::PipeServer server(name, err);
    CHECK_OK(err);
    CHECK(!server.closed());
    ss::PipeServer second(name, err);
    CHECK(err.exists());
    CHECK(second.closed());

    ss::Pipe srv;
    std::thread t([&] {
        ss::ErrorInfo e2;
        srv = server.accept(5s, e2);
    });
    auto c = ss::Pipe::connect(name, 5s, err);
    t.join();
    CHECK_OK(err);
    CHECK(!c.closed() && !srv.closed());
    CHECK(c.send("ping", 4, 1s, err));
    CHECK_OK(err);
    std::string got;
    CHECK(srv.recv(got, 1s, err));
    CHECK_OK(err);
    CHECK(got == "ping");
    CHECK(srv.send(std::string_view("pong!"), 1s, err));
    char short_buf[2];
    CHECK(c.recv_into(short_buf, sizeof short_buf, 1s, err) == 0);
    CHECK_ERR(err, ss::errc::message_too_large, name);
    char buf[16];
    CHECK(c.recv_into(buf, sizeof buf, 1s, err) == 5);  // it stayed the next message
    CHECK_OK(err);
    CHECK(std::memcmp(buf, "pong!", 5) == 0);

    // recv timeout
    CHECK(!c.recv(got, 20ms, err));
    CHECK_ERR(err, ss::errc::timeout, name);
    // too large to send
    auto small_c = ss::Pipe::connect(name, 1s, 8, err);
    CHECK_OK(err);
    CHECK(!small_c.send("0123456789", 10, 1s, err));
    CHECK(err.is(ss::errc::message_too_large));
    // accept timeout (small_c is queued at the listener, accept it first)
    ss::Pipe extra = server.accept(1s, err);
    CHECK_OK(err);
    ss::Pipe none = server.accept(20ms, err);
    CHECK_ERR(err, ss::errc::timeout, name);
    CHECK(none.closed());

    // the peer closed: end of stream
    srv.close();
    CHECK(!c.recv(got, 2s, err));
    CHECK(err.is(ss::errc::end_of_stream) || err.is(ss::errc::broken_pipe));
    CHECK(err.message.find(name) != std::string::npos);
    // our own pipe closed
    c.close();
    CHECK(!c.send("x", 1, 0ns, err));
    CHECK(err.is(ss::errc::closed));

    // nobody serving: not found at once (timeout forever), timeout with a timeout
    auto nobody = ss::Pipe::connect(name + "-missing", ss::Pipe::forever, err);
    CHECK(err.not_found());
    CHECK(nobody.closed());
    auto later = ss::Pipe::connect(name + "-missing", 30ms, err);
    CHECK_ERR(err, ss::errc::timeout, name);
    server.close();
    ss::Pipe after = server.accept(0ns, err);
    CHECK(err.is(ss::errc::closed));
}

static void test_frames() {
    ss::ErrorInfo err;
    const std::string name = unique("frames");
    ss::FramesOptions two;
    two.readers = 2;
    auto fr = ss::Frames::create(name, ss::frame_spec<uint16_t>({4, 8}), two, err);
    CHECK_OK(err);
    CHECK(!fr.closed());
    CHECK(fr.frame_bytes() == 64);
    CHECK(fr.version(err) == 0);
    CHECK_OK(err);

    // loan + commit, publish, latest
    auto l = fr.loan(err);
    CHECK_OK(err);
    CHECK(bool(l));
    std::memset(l.data(), 7, l.size());
    CHECK(l.commit(err) == 1);
    CHECK_OK(err);
    CHECK(l.commit(err) == 0);  // committed already
    CHECK(err.is(ss::errc::closed));
    unsigned char buf[64];
    std::memset(buf, 9, sizeof buf);
    CHECK(fr.publish(buf, sizeof buf, err) == 2);
    CHECK_OK(err);
    CHECK(fr.publish(buf, 3, err) == 0);
    CHECK_ERR(err, ss::errc::invalid_argument, name);
    {
        auto v = fr.latest(err);
        CHECK_OK(err);
        CHECK(bool(v) && v.version() == 2 && v.size() == 64 && v.data()[63] == 9);
    }

    // wait: success (a publish from another thread) and timeout
    std::thread w([&] {
        std::this_thread::sleep_for(20ms);
        ss::ErrorInfo e2;
        fr.publish(buf, sizeof buf, e2);
    });
    uint64_t nv = fr.wait(2, 5s, err);
    w.join();
    CHECK_OK(err);
    CHECK(nv == 3);
    CHECK(fr.wait(nv, 30ms, err) == 0);
    CHECK_ERR(err, ss::errc::timeout, name);

    // too many frames held at once: readers=2 pins
    {
        auto a = fr.latest(err);
        auto b = fr.latest(err);
        CHECK_OK(err);
        auto c = fr.latest(err);
        CHECK_ERR(err, ss::errc::invalid_argument, name);
        CHECK(!c);
    }
    auto again_view = fr.latest(err);  // released: pins free again
    CHECK_OK(err);
    again_view.release();

    // the writer lock: busy (lock_timeout 0) and timeout, while a loan holds it
    {
        auto held = fr.loan(err);
        CHECK_OK(err);
        // The lock word names the process: a second loan, from any thread, finds it held.
        ss::ErrorInfo e_busy, e_timeout, e_pub;
        auto b = fr.loan(0ns, e_busy);
        CHECK(!b);
        CHECK_ERR(e_busy, ss::errc::would_block, name);
        auto c = fr.loan(30ms, e_timeout);
        CHECK(!c);
        CHECK_ERR(e_timeout, ss::errc::timeout, name);
        CHECK(fr.publish(buf, sizeof buf, 0ns, e_pub) == 0);
        CHECK_ERR(e_pub, ss::errc::timeout, name);  // as the throwing publish: busy is a timeout
        held.cancel();
    }
    CHECK(fr.publish(buf, sizeof buf, err) == 4);
    CHECK_OK(err);

    // exists, exist_ok, spec mismatch, not found, invalid spec
    auto dup = ss::Frames::create(name, ss::frame_spec<uint16_t>({4, 8}), two, err);
    CHECK(err.exists());
    CHECK(err.message.find(name) != std::string::npos);
    CHECK(dup.closed());
    ss::FramesOptions ok = two;
    ok.exist_ok = true;
    auto same = ss::Frames::create(name, ss::frame_spec<uint16_t>({4, 8}), ok, err);
    CHECK_OK(err);
    CHECK(same.version(err) == 4);
    const ss::FrameSpec other = ss::frame_spec<uint16_t>({8, 8});
    auto mism = ss::Frames::open(name, &other, err);
    CHECK_ERR(err, ss::errc::layout_mismatch, name);
    CHECK(mism.closed());
    auto missing = ss::Frames::open(name + "-missing", err);
    CHECK(err.not_found());
    CHECK(missing.closed());
    ss::FramesOptions none;
    none.readers = 0;
    auto zero = ss::Frames::create(unique("frames0"), ss::frame_spec<uint8_t>({4}), none, err);
    CHECK(err.is(ss::errc::invalid_argument));
    CHECK(zero.closed());
    auto nodim = ss::Frames::create(unique("frames0"), ss::frame_spec<uint8_t>({0}), two, err);
    CHECK(err.is(ss::errc::invalid_argument));
    auto badname = ss::Frames::create("a/b", ss::frame_spec<uint8_t>({4}), two, err);
    CHECK_ERR(err, ss::errc::bad_name, "a/b");

    // corrupt header (checksummed geometry: readers at 68) and the wrong kind both ways
    scribble(name, 68, 0x01);
    auto bad = ss::Frames::open(name, err);
    CHECK_ERR(err, ss::errc::corrupt_segment, name);
    CHECK(bad.closed());
    scribble(name, 68, 0x01);  // repaired
    auto good = ss::Frames::open(name, err);
    CHECK_OK(err);
    const std::string sname = unique("frames-kind");
    auto st = ss::SharedState<Pad>::create(sname, err);
    CHECK_OK(err);
    auto as_frames = ss::Frames::open(sname, err);
    CHECK_ERR(err, ss::errc::wrong_kind, sname);
    CHECK(as_frames.closed());
    auto as_state = ss::SharedState<Pad>::open(name, err);
    CHECK(err.is(ss::errc::wrong_kind) || err.is(ss::errc::corrupt_segment));

    // calls on a closed Frames; a loan whose Frames closed under it
    auto pending = same.loan(err);
    CHECK_OK(err);
    same.close();
    CHECK(pending.commit(err) == 0);
    CHECK_ERR(err, ss::errc::closed, name);
    CHECK(!same.loan(err));
    CHECK_ERR(err, ss::errc::closed, name);
    CHECK(!same.latest(err) && err.is(ss::errc::closed));
    CHECK(same.wait(0, 1ms, err) == 0 && err.is(ss::errc::closed));
    CHECK(same.publish(buf, sizeof buf, err) == 0 && err.is(ss::errc::closed));
    CHECK(same.version(err) == 0 && err.is(ss::errc::closed));
    CHECK(fr.loan(0ns, err));  // the failed commit let the lock go
    CHECK_OK(err);
}

static void test_handler_setting() {
    // The handler of a failing throwing call: settable, restorable (it is not called here:
    // it must not return, so a failing throwing call would end this process).
    ss::ErrorHandler mine = [](const std::error_code&, const std::string&) { std::abort(); };
    ss::ErrorHandler old = ss::set_error_handler(mine);
    CHECK(old != nullptr);
    CHECK(ss::set_error_handler(nullptr) == mine);
    CHECK(ss::set_error_handler(nullptr) == old);  // nullptr restored the default
}

// "--handler": a failing *throwing* call with exceptions off calls the game's handler
// (which must not return: this one exits 0 after saying so). "--default-handler": the
// default one prints the message and aborts. ctest checks both outputs.
static int handler_demo(bool custom) {
    if (custom) {
        ss::set_error_handler([](const std::error_code& code, const std::string& message) {
            std::printf("handler called: %s [%s]\n", message.c_str(), code.message().c_str());
            std::fflush(stdout);
            std::_Exit(0);
        });
    }
    auto st = ss::SharedState<Pad>::open("ss-noexc-handler-missing");  // the throwing form
    std::printf("not reached: %d\n", int(st.closed()));
    return 1;
}

int main(int argc, char** argv) {
    if (argc > 1 && std::strcmp(argv[1], "--handler") == 0) return handler_demo(true);
    if (argc > 1 && std::strcmp(argv[1], "--default-handler") == 0) return handler_demo(false);
    struct Case { const char* name; void (*fn)(); };
    const Case cases[] = {
        {"state", test_state},
        {"state_busy_lock", test_state_busy_lock},
        {"state_corrupt_and_kind", test_state_corrupt_and_kind},
        {"queue", test_queue},
        {"semaphore", test_semaphore},
        {"pipe", test_pipe},
        {"frames", test_frames},
        {"handler_setting", test_handler_setting},
    };
    for (const Case& c : cases) {
        int before = g_failures;
        c.fn();
        std::printf("%s %s\n", g_failures == before ? "ok  " : "FAIL", c.name);
    }
    std::printf("%d checks, %d failures\n", g_checks, g_failures);
    return g_failures ? 1 : 0;
}
