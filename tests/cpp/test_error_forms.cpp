// With exceptions on: each error-code form reports exactly what its throwing form throws
// (the same std::error_code and the same what() text), for the failures a game meets.
#include <sharedstate/sharedstate.hpp>

#include <string>

#include "check.hpp"

using namespace std::chrono;
namespace ss = sharedstate;

namespace {
struct Pad {
    int32_t x;
    double t;
};
SHAREDSTATE_DESCRIBE(Pad, x, t);
struct Other {
    int64_t a;
};
SHAREDSTATE_DESCRIBE(Other, a);

// Runs the throwing call, then checks err (from the ec form) against what it threw.
template <class F>
void same_error(F&& throwing, const ss::ErrorInfo& err, const char* what) {
    ++check::checks();
    bool thrown = false;
    try {
        throwing();
    } catch (const ss::Error& e) {
        thrown = true;
        if (!(e.code() == err.code) || std::string(e.what()) != err.what()) {
            ++check::failures();
            std::fprintf(stderr, "%s: threw [%s] (%s), the ec form said [%s] (%s)\n", what, e.what(),
                         e.code().message().c_str(), err.what().c_str(), err.code.message().c_str());
        }
    }
    if (!thrown) {
        ++check::failures();
        std::fprintf(stderr, "%s: the throwing form did not throw\n", what);
    }
}
}  // namespace

TEST_CASE("state") {
    ss::ErrorInfo err;
    std::string name = check::unique("ef");
    auto st = ss::SharedState<Pad>::create(name);
    auto a = ss::SharedState<Pad>::create(name, err);
    CHECK(err.exists());
    same_error([&] { ss::SharedState<Pad>::create(name); }, err, "exists");
    auto b = ss::SharedState<Other>::open(name, err);
    CHECK(err.is(ss::errc::layout_mismatch));
    same_error([&] { ss::SharedState<Other>::open(name); }, err, "layout mismatch");
    auto c = ss::SharedState<Pad>::open(name + "-none", err);
    CHECK(err.not_found());
    same_error([&] { ss::SharedState<Pad>::open(name + "-none"); }, err, "not found");
    auto d = ss::SharedState<Pad>::create("bad/name", err);
    same_error([&] { ss::SharedState<Pad>::create("bad/name"); }, err, "bad name");
    CHECK(st.wait(st.version(), milliseconds(5), err) == 0);
    same_error([&] { st.wait(st.version(), milliseconds(5)); }, err, "wait timeout");
    auto q = ss::Queue::create(check::unique("ef"), 4096);
    auto e = ss::SharedState<Pad>::open(q.name(), err);
    CHECK(err.is(ss::errc::wrong_kind));
    same_error([&] { ss::SharedState<Pad>::open(q.name()); }, err, "wrong kind");
    st.close();
    CHECK(!st.write(Pad{}, err));
    same_error([&] { st.write(Pad{}); }, err, "closed");
}

TEST_CASE("queue_semaphore_pipe") {
    ss::ErrorInfo err;
    std::string name = check::unique("ef");
    auto q = ss::Queue::create(name, 256, 64);
    std::vector<unsigned char> out;
    CHECK(!q.get(out, milliseconds(5), err));
    same_error([&] { q.get(milliseconds(5)); }, err, "queue empty");
    char big[100] = {};
    CHECK(!q.put(big, sizeof big, milliseconds(0), err));
    same_error([&] { q.put(big, sizeof big, milliseconds(0)); }, err, "too large");
    auto q2 = ss::Queue::open(name + "-none", err);
    same_error([&] { ss::Queue::open(name + "-none"); }, err, "queue not found");

    name = check::unique("ef");  // Windows: one namespace for sections and semaphores
    auto s = ss::Semaphore::create(name, 0);
    auto s2 = ss::Semaphore::create(name, 0, err);
    CHECK(err.exists());
    same_error([&] { ss::Semaphore::create(name, 0); }, err, "semaphore exists");
    auto s3 = ss::Semaphore::open(name + "-none", err);
    same_error([&] { ss::Semaphore::open(name + "-none"); }, err, "semaphore not found");

    name = check::unique("ef");
    auto p = ss::Pipe::connect(name + "-none", ss::Pipe::forever, err);
    CHECK(err.not_found());
    same_error([&] { ss::Pipe::connect(name + "-none"); }, err, "pipe not found");
    auto p2 = ss::Pipe::connect(name + "-none", milliseconds(20), err);
    CHECK(err.is(ss::errc::timeout));
    same_error([&] { ss::Pipe::connect(name + "-none", milliseconds(20)); }, err, "pipe timeout");
    ss::PipeServer server(name);
    ss::PipeServer again(name, err);
    CHECK(err.exists());
    same_error([&] { ss::PipeServer x(name); }, err, "pipe server exists");
    ss::Pipe none = server.accept(milliseconds(5), err);
    same_error([&] { server.accept(milliseconds(5)); }, err, "accept timeout");
}

TEST_CASE("frames") {
    ss::ErrorInfo err;
    std::string name = check::unique("ef");
    ss::FramesOptions two;
    two.readers = 2;
    const ss::FrameSpec spec = ss::frame_spec<uint8_t>({16});
    auto fr = ss::Frames::create(name, spec, two);
    auto a = ss::Frames::create(name, spec, two, err);
    CHECK(err.exists());
    same_error([&] { ss::Frames::create(name, spec, two); }, err, "frames exists");
    const ss::FrameSpec other = ss::frame_spec<uint8_t>({32});
    auto b = ss::Frames::open(name, &other, err);
    CHECK(err.is(ss::errc::layout_mismatch));
    same_error([&] { ss::Frames::open(name, &other); }, err, "frames mismatch");
    auto c = ss::Frames::open(name + "-none", err);
    CHECK(err.not_found());
    same_error([&] { ss::Frames::open(name + "-none"); }, err, "frames not found");
    ss::FramesOptions zero;
    zero.readers = 0;
    const std::string zname = check::unique("ef");
    auto d = ss::Frames::create(zname, spec, zero, err);
    CHECK(err.is(ss::errc::invalid_argument));
    same_error([&] { ss::Frames::create(zname, spec, zero); }, err, "frames readers 0");
    const std::string sname = check::unique("ef");
    auto st = ss::SharedState<Pad>::create(sname);
    auto e = ss::Frames::open(sname, err);
    CHECK(err.is(ss::errc::wrong_kind));
    same_error([&] { ss::Frames::open(sname); }, err, "frames wrong kind");

    CHECK(fr.wait(fr.version(), milliseconds(5), err) == 0);
    same_error([&] { fr.wait(fr.version(), milliseconds(5)); }, err, "frames wait timeout");
    unsigned char buf[16] = {};
    CHECK(fr.publish(buf, 3, err) == 0);
    same_error([&] { fr.publish(buf, 3); }, err, "frames publish size");
    {
        auto v1 = fr.latest();
        auto v2 = fr.latest();
        auto v3 = fr.latest(err);
        CHECK(err.is(ss::errc::invalid_argument));
        same_error([&] { fr.latest(); }, err, "frames pins exhausted");
    }
    {
        auto held = fr.loan();
        auto l = fr.loan(milliseconds(20), err);
        CHECK(err.is(ss::errc::timeout));
        same_error([&] { fr.loan(milliseconds(20)); }, err, "frames lock timeout");
        CHECK(fr.publish(buf, sizeof buf, milliseconds(0), err) == 0);
        same_error([&] { fr.publish(buf, sizeof buf, milliseconds(0)); }, err, "frames publish busy");
        auto busy = fr.loan(milliseconds(0), err);
        CHECK(err.is(ss::errc::would_block));
        CHECK(!fr.loan(milliseconds(0)));  // the throwing form: an empty Loan, as before
        CHECK(held.commit(err) == 1);
        CHECK(held.commit(err) == 0);
        same_error([&] { held.commit(); }, err, "frames loan committed twice");
    }
    auto pending = fr.loan();
    fr.close();
    CHECK(pending.commit(err) == 0);
    CHECK(err.is(ss::errc::closed));
    CHECK(!fr.latest(err));
    same_error([&] { fr.latest(); }, err, "frames closed latest");
    CHECK(!fr.loan(err));
    same_error([&] { fr.loan(); }, err, "frames closed loan");
    CHECK(fr.wait(0, milliseconds(1), err) == 0);
    same_error([&] { fr.wait(0, milliseconds(1)); }, err, "frames closed wait");
}

CHECK_MAIN()
