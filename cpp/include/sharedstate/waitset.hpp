// WaitSet: wait on many objects at once.
//
//   sharedstate::WaitSet ws;
//   auto a = ws.add(state);            // ready when its version passes the last one reported
//   auto b = ws.add(commands);         // a Queue: ready when a message is available
//   auto c = ws.add(sem);              // a Semaphore: count > 0 (readiness only)
//   for (uint64_t id : ws.wait(std::chrono::milliseconds(100))) ...   // errc::timeout
//
// Members: SharedBlock / SharedState<T> (and anything version-based with a wait_source(),
// e.g. Frames), Queue, Mailslot, Pipe (a message, or the peer gone), PipeServer (a client
// waiting), Semaphore. add() returns the member's id; wait() returns the ids of the ready
// members in the order they were added, never an empty list (errc::timeout instead;
// timeout 0 polls). A version member is reported once per change: the set then remembers
// the version it reported, and the member is ready again when the version passes it.
//
// How it waits. Like every other wait (wait.hpp): check, spin briefly, then count itself as
// a waiter of every member (each object's own waiter count, so the writers of exactly those
// objects make their wake syscall) and park, once, on all of them:
//   Linux    futex_waitv over the members' futex words and the set's control word
//            (detail/posix_waitset.hpp: the fallback for kernels without it, and how
//            descriptors join through one helper thread);
//   Windows  WaitForMultipleObjects over the members' wake handles and the set's control
//            semaphore (detail/win32_waitset.hpp): pipes by their armed read's event, servers
//            by their armed connect's (win32_channels.hpp); mailslots, which have no such
//            handle, are re-checked every 2 ms.
// The Interrupt runs at least every 50 ms and after a signal, so Ctrl-C is seen.
//
// Threads: add/remove/wait may be called from any thread; a wait in progress sees members
// added or removed (the control word wakes it). Several threads may wait on one set; each
// report goes to the thread that saw it. The objects must stay alive while they are members
// (their mappings are kept by the set: a member closed meanwhile reads as ready, and the
// object's own call then reports the closed error).
//
// Event loops: fileno() (Linux: an eventfd) / handle() (Windows: an event) is signalled while
// some member is ready; one notifier thread per set waits (without consuming reports) and
// signals it; a wait() that reports clears it, and the notifier looks again.
#pragma once
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "detail/os.hpp"
#include "detail/wait_source.hpp"
#include "error.hpp"
#include "wait.hpp"
#if defined(_WIN32)
#include "detail/win32_waitset.hpp"
#else
#include "detail/posix_waitset.hpp"
#endif

namespace sharedstate {

class WaitSet {
public:
    using nanoseconds = std::chrono::nanoseconds;
    static constexpr nanoseconds forever{-1};

    WaitSet() : s_(std::make_shared<State>()) {}
    ~WaitSet() { stop_notifier(); }
    WaitSet(const WaitSet&) = delete;
    WaitSet& operator=(const WaitSet&) = delete;

    // Adds obj (anything with a wait_source()); returns its id. A version member is ready
    // once its version passes `since` (by default: its version now). Adding an object that
    // is already a member returns its id (and sets `since` if given).
    template <class T>
    uint64_t add(const T& obj) {
        return add_source(obj.wait_source(), nullptr);
    }
    template <class T>
    uint64_t add(const T& obj, uint64_t since) {
        return add_source(obj.wait_source(), &since);
    }
    uint64_t add_source(detail::WaitSource src, const uint64_t* since = nullptr) {
        auto m = std::make_shared<Member>();
        uint64_t v = 0;
        if (src.is_version()) v = since ? *since : src.version();
        std::lock_guard<std::mutex> g(s_->mu);
        for (auto& e : s_->members)
            if (e->src.key == src.key) {
                if (since && e->src.is_version()) e->since.store(*since);
                changed_locked();
                return e->id;
            }
        m->src = std::move(src);
        m->since.store(v);
        m->id = s_->next_id++;
        s_->members.push_back(std::move(m));
        changed_locked();
        return s_->members.back()->id;
    }

    // Removes a member (by id, or by the object). False if it was not a member.
    bool remove(uint64_t id) {
        std::lock_guard<std::mutex> g(s_->mu);
        auto& ms = s_->members;
        for (size_t i = 0; i < ms.size(); ++i)
            if (ms[i]->id == id) {
                ms[i]->removed.store(true);
                ms.erase(ms.begin() + ptrdiff_t(i));
                changed_locked();
                return true;
            }
        return false;
    }
    template <class T, class = decltype(std::declval<const T&>().wait_source())>
    bool remove(const T& obj) {
        return remove_object(obj);
    }
    template <class T>
    bool remove_object(const T& obj) {
        const void* key = obj.wait_source().key;
        uint64_t id = 0;
        {
            std::lock_guard<std::mutex> g(s_->mu);
            for (auto& e : s_->members)
                if (e->src.key == key) id = e->id;
        }
        return id && remove(id);
    }

    size_t size() const {
        std::lock_guard<std::mutex> g(s_->mu);
        return s_->members.size();
    }
    bool empty() const { return size() == 0; }

    // The ids of the ready members, in the order added. errc::timeout when none became ready
    // in time (timeout < 0: forever; 0: just look).
    std::vector<uint64_t> wait(nanoseconds timeout = forever, const Interrupt& intr = {}, nanoseconds spin = kDefaultSpin) {
        auto r = s_->wait(detail::Deadline::after(timeout.count()), intr, uint64_t(spin.count() < 0 ? 0 : spin.count()), true);
        s_->consumed();
        if (r.empty()) fail(errc::timeout, "WaitSet.wait: no member became ready in time");
        return r;
    }
    // The ready members now, without reporting them (version members stay ready).
    std::vector<uint64_t> peek() { return s_->check(s_->snapshot(), false); }

#if defined(_WIN32)
    void* handle() { return notifier().handle(); }
#else
    int fileno() { return notifier().fileno(); }
#endif

private:
    struct Member {
        uint64_t id = 0;
        detail::WaitSource src;
        std::atomic<uint64_t> since{0};
        std::atomic<bool> removed{false};
    };
    using Snapshot = std::vector<std::shared_ptr<Member>>;

    struct State {
        mutable std::mutex mu;
        Snapshot members;
        uint64_t next_id = 1;
        std::atomic<uint32_t> ctl{0};       // bumped on add/remove/stop: parked waiters look again
        std::atomic<uint32_t> parked{0};    // threads parked now (Windows: how many to wake)
        std::atomic<bool> stopping{false};  // the notifier is asked to end
        // the notifier's hand-shake: it signalled the loop and waits for a consuming wait()
        std::atomic<bool> signalled{false};
        std::atomic<uint32_t> consumed_seq{0};
        std::unique_ptr<detail::os::LoopSignal> loop;
#if defined(_WIN32)
        detail::os::CtlChannel ctl_ch;
#else
        std::unique_ptr<detail::os::FdWatcher> fdw;
        std::mutex fdw_mu;
#endif

        Snapshot snapshot() const {
            std::lock_guard<std::mutex> g(mu);
            return members;
        }

        void wake_all() {
            ctl.fetch_add(1, std::memory_order_seq_cst);
#if defined(_WIN32)
            ctl_ch.wake(parked.load(std::memory_order_seq_cst));
#else
            detail::os::wake_word(&ctl, true);
#endif
        }

        // The ready ids; with `consume`, version members remember the version reported.
        std::vector<uint64_t> check(const Snapshot& snap, bool consume) {
            std::vector<uint64_t> out;
            for (auto& m : snap) {
                if (m->removed.load(std::memory_order_relaxed)) continue;
                bool ready = false;
                std::exception_ptr failed = detail::capture([&] {
                    if (m->src.is_version()) {
                        uint64_t v = m->src.version();
                        uint64_t since = m->since.load(std::memory_order_relaxed);
                        if (v > since) {
                            ready = true;
                            if (consume) {
                                // Two threads may report the same change at once: one wins.
                                if (!m->since.compare_exchange_strong(since, v)) ready = false;
                            }
                        }
                    } else if (m->src.ready) {
                        ready = m->src.ready();
                    }
                });
                if (failed) ready = true;  // the object's own call reports what is wrong
                if (ready) out.push_back(m->id);
            }
            return out;
        }

        // Counts this thread as a waiter of every member while it lives.
        struct Registered {
            const Snapshot& snap;
            explicit Registered(const Snapshot& s) : snap(s) {
                for (auto& m : snap) {
                    if (m->src.waiters) m->src.waiters->fetch_add(1, std::memory_order_seq_cst);
                    if (m->src.waiters_hi) m->src.waiters_hi->fetch_add(uint64_t(1) << 32, std::memory_order_seq_cst);
                }
            }
            ~Registered() {
                for (auto& m : snap) {
                    if (m->src.waiters) m->src.waiters->fetch_sub(1, std::memory_order_seq_cst);
#if !defined(_WIN32)
                    if (m->src.waiters_hi) {
                        // glibc's sem_post wakes one waiter: if that was us and the count is
                        // still there, pass the wake on to the next sem_wait (or set).
                        uint64_t d = m->src.waiters_hi->fetch_sub(uint64_t(1) << 32, std::memory_order_seq_cst) -
                                     (uint64_t(1) << 32);
                        if ((d >> 32) != 0 && (uint32_t(d) & 0x7fffffffu) != 0) detail::os::wake_word(m->src.word, false, 1);
                    }
#endif
                }
            }
        };

        std::vector<uint64_t> wait(detail::Deadline deadline, const Interrupt& intr, uint64_t spin_ns, bool consume) {
            bool spun = false;
            uint64_t next_intr = detail::os::monotonic_ns() + kSliceNs;
            for (;;) {  // once per change of the members
                if (stopping.load()) return {};
                const uint32_t ctl_seen = ctl.load(std::memory_order_seq_cst);
                Snapshot snap = snapshot();
                auto r = check(snap, consume);
                if (!r.empty() || deadline.left() == 0) return r;
                if (!spun && spin_ns) {
                    spun = true;
                    const uint64_t start = detail::os::monotonic_ns(), end = start + spin_ns;
                    bool again = false;
                    for (;;) {
                        r = check(snap, consume);
                        if (!r.empty()) return r;
                        if (ctl.load(std::memory_order_relaxed) != ctl_seen) { again = true; break; }
                        detail::cpu_relax();
                        uint64_t now = detail::os::monotonic_ns();
                        if (now >= end || now >= deadline.at) break;
                        if (now - start > kSpinAloneNs) std::this_thread::yield();
                    }
                    if (again) continue;
                }
                uint64_t poll_ns = UINT64_MAX;
                for (auto& m : snap)
                    if (m->src.poll_ns && m->src.poll_ns < poll_ns) poll_ns = m->src.poll_ns;
#if !defined(_WIN32)
                sync_fds(snap);
#endif
                Registered reg(snap);
                struct Parking {
                    std::atomic<uint32_t>& n;
                    explicit Parking(std::atomic<uint32_t>& x) : n(x) { n.fetch_add(1); }
                    ~Parking() { n.fetch_sub(1); }
                } parking(parked);
                for (;;) {
#if defined(_WIN32)
                    std::vector<HANDLE> hs;
                    std::vector<const Member*> who;
                    hs.push_back(ctl_ch.handle());
                    who.push_back(nullptr);
                    for (auto& m : snap) {
                        HANDLE h = m->src.handle ? m->src.handle.get() : m->src.channel ? m->src.channel.get() : nullptr;
                        if (h) { hs.push_back(h); who.push_back(m.get()); }
                    }
#else
                    std::vector<detail::os::ParkWord> ws;
                    ws.push_back(detail::os::ParkWord{&ctl, ctl_seen, true});
                    for (auto& m : snap)
                        if (m->src.word) ws.push_back(detail::os::ParkWord{m->src.word, m->src.word->load(std::memory_order_seq_cst), false});
#endif
                    if (ctl.load(std::memory_order_seq_cst) != ctl_seen || stopping.load()) break;
                    r = check(snap, consume);
                    if (!r.empty()) return r;
                    uint64_t left = deadline.left();
                    if (left == 0) return r;
                    uint64_t slice = (std::min)((std::min)(left, uint64_t(kSliceNs)), poll_ns);
#if defined(_WIN32)
                    size_t which = SIZE_MAX;
                    detail::os::Parked p = detail::os::park_handles(hs.data(), hs.size(), slice, which);
                    if (which != SIZE_MAX && which < who.size() && who[which] && who[which]->src.handle_consumes)
                        ReleaseSemaphore(hs[which], 1, nullptr);  // readiness only: give the count back
#else
                    {
                        std::lock_guard<std::mutex> g(fdw_mu);
                        if (fdw) fdw->arm();
                    }
                    detail::os::Parked p = detail::os::park_words(ws.data(), ws.size(), slice);
#endif
                    uint64_t now = detail::os::monotonic_ns();
                    if (p == detail::os::Parked::interrupted || now >= next_intr) {
                        intr();
                        next_intr = now + kSliceNs;
                    }
                }
            }
        }

#if !defined(_WIN32)
        void sync_fds(const Snapshot& snap) {
            std::vector<int> fds;
            for (auto& m : snap)
                if (m->src.fd >= 0) fds.push_back(m->src.fd);
            std::lock_guard<std::mutex> g(fdw_mu);
            if (fds.empty() && !fdw) return;
            if (!fdw) fdw.reset(new detail::os::FdWatcher(&ctl));
            fdw->set_fds(std::move(fds));
        }
#endif

        // After a consuming wait: a notifier that signalled the loop looks again.
        void consumed() {
            if (!signalled.exchange(false, std::memory_order_acq_rel)) return;
            loop->reset();
            consumed_seq.fetch_add(1, std::memory_order_seq_cst);
#if !defined(_WIN32)
            detail::os::wake_word(&consumed_seq, true);
#endif
        }

        void notify_loop() {
            for (;;) {
                auto r = wait(detail::Deadline{}, Interrupt{}, 0, false);
                if (stopping.load()) return;
                if (r.empty()) continue;
                uint32_t seen = consumed_seq.load(std::memory_order_seq_cst);
                signalled.store(true, std::memory_order_seq_cst);
                loop->set();
                while (consumed_seq.load(std::memory_order_seq_cst) == seen && !stopping.load()) {
#if defined(_WIN32)
                    Sleep(1);  // the consuming wait() is on its way (the loop saw the handle)
#else
                    detail::os::ParkWord w{&consumed_seq, seen, true};
                    detail::os::ParkWord c{&ctl, ctl.load(), true};
                    detail::os::ParkWord both[2] = {w, c};
                    if (consumed_seq.load() != seen || stopping.load()) break;
                    detail::os::park_words(both, 2, kSliceNs);
#endif
                }
            }
        }
    };

    void changed_locked() { s_->wake_all(); }

    detail::os::LoopSignal& notifier() {
        std::lock_guard<std::mutex> g(nmu_);
        if (!s_->loop) {
            s_->loop.reset(new detail::os::LoopSignal());
            std::shared_ptr<State> st = s_;
            notifier_ = std::thread([st] { st->notify_loop(); });
        }
        return *s_->loop;
    }
    void stop_notifier() noexcept {
        std::lock_guard<std::mutex> g(nmu_);
        if (!notifier_.joinable()) return;
        s_->stopping.store(true);
        s_->wake_all();
        s_->consumed_seq.fetch_add(1);
#if !defined(_WIN32)
        detail::os::wake_word(&s_->consumed_seq, true);
#endif
        notifier_.join();
    }

    std::shared_ptr<State> s_;
    std::mutex nmu_;
    std::thread notifier_;
};

}  // namespace sharedstate
