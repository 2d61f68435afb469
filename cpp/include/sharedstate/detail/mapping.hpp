// A mapped view, shared (std::shared_ptr) between the object that mapped it and every
// zero-copy view handed out, so memory is unmapped only when the last user lets go.
// Portable: the backend defines os::unmap (munmap / UnmapViewOfFile).
#pragma once
#include <cstddef>

namespace sharedstate {
namespace detail {
namespace os {

inline void unmap(void* addr, size_t size) noexcept;  // defined by the OS backend

class Mapping {
public:
    Mapping(void* addr, size_t size) : addr_(addr), size_(size) {}
    ~Mapping() { if (addr_) unmap(addr_, size_); }
    Mapping(const Mapping&) = delete;
    Mapping& operator=(const Mapping&) = delete;
    unsigned char* data() const noexcept { return static_cast<unsigned char*>(addr_); }
    size_t size() const noexcept { return size_; }

private:
    void* addr_;
    size_t size_;
};

}  // namespace os
}  // namespace detail
}  // namespace sharedstate
