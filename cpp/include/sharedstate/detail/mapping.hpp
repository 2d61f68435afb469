// A mapped view, shared (std::shared_ptr) between the object that mapped it and every
// zero-copy view handed out, so memory is unmapped only when the last user lets go.
// Portable: the backend that maps passes its unmap function (munmap / UnmapViewOfFile), so
// this header compiles on its own and never names an OS call.
#pragma once
#include <cstddef>

namespace sharedstate {
namespace detail {
namespace os {

class Mapping {
public:
    using Unmap = void (*)(void* addr, std::size_t size) noexcept;
    Mapping(void* addr, std::size_t size, Unmap unmap) : addr_(addr), size_(size), unmap_(unmap) {}
    ~Mapping() { if (addr_ && unmap_) unmap_(addr_, size_); }
    Mapping(const Mapping&) = delete;
    Mapping& operator=(const Mapping&) = delete;
    unsigned char* data() const noexcept { return static_cast<unsigned char*>(addr_); }
    std::size_t size() const noexcept { return size_; }

private:
    void* addr_;
    std::size_t size_;
    Unmap unmap_;
};

}  // namespace os
}  // namespace detail
}  // namespace sharedstate
