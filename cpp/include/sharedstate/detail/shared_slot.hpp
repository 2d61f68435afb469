// A std::shared_ptr that one thread may reset (close()) while others take their own copy of it
// (every call of the object). It replaces std::atomic_load/atomic_store on a shared_ptr, which
// C++20 deprecates (MSVC's STL4029, an error under /WX) and C++26 removes; std::atomic
// <std::shared_ptr> is C++20 only. A small mutex guards the pointer for the copy or swap only;
// the object an old pointer owned is released after the lock is dropped.
#pragma once
#include <memory>
#include <mutex>
#include <utility>

namespace sharedstate {
namespace detail {

template <class T>
class SharedSlot {
public:
    SharedSlot() = default;
    explicit SharedSlot(std::shared_ptr<T> p) noexcept : p_(std::move(p)) {}
    SharedSlot(const SharedSlot&) = delete;
    SharedSlot& operator=(const SharedSlot&) = delete;
    // Moving takes the other's pointer (under its lock); the moved-from slot is empty.
    SharedSlot(SharedSlot&& o) noexcept : p_(o.exchange(nullptr)) {}
    SharedSlot& operator=(SharedSlot&& o) noexcept {
        if (this != &o) exchange(o.exchange(nullptr));  // the old pointer is released unlocked
        return *this;
    }
    SharedSlot& operator=(std::shared_ptr<T> p) noexcept {
        exchange(std::move(p));  // the old pointer is released unlocked
        return *this;
    }

    std::shared_ptr<T> load() const noexcept {
        std::lock_guard<std::mutex> g(m_);
        return p_;
    }
    // Installs p and returns the previous pointer (released by the caller, outside the lock).
    std::shared_ptr<T> exchange(std::shared_ptr<T> p) noexcept {
        {
            std::lock_guard<std::mutex> g(m_);
            p_.swap(p);
        }
        return p;
    }
    void reset() noexcept { exchange(nullptr); }
    bool empty() const noexcept { return load() == nullptr; }

private:
    mutable std::mutex m_;
    std::shared_ptr<T> p_;
};

}  // namespace detail
}  // namespace sharedstate
