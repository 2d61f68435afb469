// SHIM (not Microsoft's): std::nothrow_t, align_val_t and the replaceable operator new/delete declarations.
#pragma once
#include <vcruntime.h>
#ifdef __cplusplus
extern "C++" {
namespace std {
#ifdef __cpp_aligned_new
enum class align_val_t : size_t {};
#endif
struct nothrow_t { explicit nothrow_t() = default; };
extern nothrow_t const nothrow;
}
_NODISCARD _VCRT_ALLOCATOR void* __CRTDECL operator new(size_t);
_NODISCARD _VCRT_ALLOCATOR void* __CRTDECL operator new(size_t, std::nothrow_t const&) noexcept;
_NODISCARD _VCRT_ALLOCATOR void* __CRTDECL operator new[](size_t);
_NODISCARD _VCRT_ALLOCATOR void* __CRTDECL operator new[](size_t, std::nothrow_t const&) noexcept;
void __CRTDECL operator delete(void*) noexcept;
void __CRTDECL operator delete(void*, std::nothrow_t const&) noexcept;
void __CRTDECL operator delete[](void*) noexcept;
void __CRTDECL operator delete[](void*, std::nothrow_t const&) noexcept;
void __CRTDECL operator delete(void*, size_t) noexcept;
void __CRTDECL operator delete[](void*, size_t) noexcept;
#ifdef __cpp_aligned_new
_NODISCARD _VCRT_ALLOCATOR void* __CRTDECL operator new(size_t, std::align_val_t);
_NODISCARD _VCRT_ALLOCATOR void* __CRTDECL operator new(size_t, std::align_val_t, std::nothrow_t const&) noexcept;
_NODISCARD _VCRT_ALLOCATOR void* __CRTDECL operator new[](size_t, std::align_val_t);
_NODISCARD _VCRT_ALLOCATOR void* __CRTDECL operator new[](size_t, std::align_val_t, std::nothrow_t const&) noexcept;
void __CRTDECL operator delete(void*, std::align_val_t) noexcept;
void __CRTDECL operator delete(void*, std::align_val_t, std::nothrow_t const&) noexcept;
void __CRTDECL operator delete[](void*, std::align_val_t) noexcept;
void __CRTDECL operator delete[](void*, std::align_val_t, std::nothrow_t const&) noexcept;
void __CRTDECL operator delete(void*, size_t, std::align_val_t) noexcept;
void __CRTDECL operator delete[](void*, size_t, std::align_val_t) noexcept;
#endif
#ifndef __PLACEMENT_NEW_INLINE
#define __PLACEMENT_NEW_INLINE
_NODISCARD inline void* __CRTDECL operator new(size_t, void* _Where) noexcept { return _Where; }
inline void __CRTDECL operator delete(void*, void*) noexcept {}
#endif
#ifndef __PLACEMENT_VEC_NEW_INLINE
#define __PLACEMENT_VEC_NEW_INLINE
_NODISCARD inline void* __CRTDECL operator new[](size_t, void* _Where) noexcept { return _Where; }
inline void __CRTDECL operator delete[](void*, void*) noexcept {}
#endif
}
#endif
