// The two-copy seqlock ("latch", the Linux kernel's raw_write_seqcount_latch).
//
// Memory-model argument (Boehm, "Can Seqlocks Get Along with Programming Language Memory
// Models?", MSPC 2012; Abseil's sequence_lock.h makes the same one). The payload is read and
// written only through relaxed atomic 64-bit words, so the race between a reader and a
// writer is not undefined behaviour: a reader may see a mix of old and new words, and the
// sequence check below is what throws such a mix away. (On x86-64 with GCC/Clang, runs of
// 64 bytes or more are copied by an SSE2 asm loop instead: "the word copies" below says why
// the same argument holds for it.)
//
//   writer (holds the writer lock, seq == s, s even)      reader
//   seq.store(s+1, relaxed)                               s1 = seq.load(acquire)
//   fence(release)      // A                              copy[s1 & 1] -> buf (relaxed words)
//   copy[0] <- new (relaxed words)                        fence(acquire)      // B
//   seq.fetch_add(1, seq_cst) -> s+2  // commit, release  s2 = seq.load(relaxed)
//   fence(release)      // C                              s1 == s2 ? done : retry
//   copy[1] <- new (relaxed words)
//
// If the reader saw any word the writer stored after fence A (or C), fence B synchronizes
// with that fence, so its second load sees a seq at least s+1 (or s+2) and the reader
// retries. A reader that sees s1 = s+2 (acquire) sees all of copy[0]. The low bit of seq
// tells readers which copy is stable: while copy[0] is written, seq is odd and readers use
// copy[1], which still holds the last committed value; while copy[1] is written, seq is
// even and readers use copy[0]. A writer killed at any instruction therefore leaves a seq
// whose stable copy is complete: readers never wait for a writer, dead or alive.
//
// The commit is a seq_cst read-modify-write (on x86 one `lock xadd`, the full barrier that
// the wake-up protocol in wait.hpp needs anyway: the writer's seq store must be ordered
// before its load of the waiter count).
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "format.hpp"

namespace sharedstate {
namespace detail {

using Word = std::atomic<uint64_t>;

inline const Word* words(const unsigned char* p) { return reinterpret_cast<const Word*>(p); }
inline Word* words(unsigned char* p) { return reinterpret_cast<Word*>(p); }

// ------------------------------------------------------------------ the word copies
// Every payload byte crosses between a slot and private memory (or between the two slots)
// through the three loops below. Whole aligned words go through a tight loop; a partial word
// exists only at the two ends of a range (load_range/store_range).
//
// What the loops compile to. The portable loop, four relaxed 64-bit loads and four stores per
// turn, is plain `mov rax, [src+8i]` / `mov [dst+8i], rax` on x86-64 (GCC 12 and Clang 19,
// -O2; `ldr`/`str` on ARM64): relaxed atomics cost nothing there, but compilers never merge
// or vectorize atomic accesses, so it moves 8 bytes a store, about half of memcpy's speed on
// data in cache (measured: 2.0x memcpy at 4-64 KiB, 1.5x at 1 MiB, 1.1x at 8 MiB).
//
// So on x86-64 with GCC or Clang (mingw included; not MSVC, which has no inline asm there)
// runs of 64 bytes or more go through `wide_copy`: an asm loop of SSE2 16-byte moves
// (`movdqu`, in every x86-64 CPU), 64 bytes a turn, as fast as memcpy (1.0-1.3x). Why that
// keeps the argument at the top of this file true, without undefined behaviour:
//  - An asm statement is not a C++ access at all ([dcl.asm]: its meaning is the compiler's
//    and the ISA's), so it cannot be a data race in the C++ sense. `volatile` + the "memory"
//    clobber make it a compiler barrier: no load or store of the sequence (or of anything)
//    moves across it, exactly like the relaxed atomic words it replaces.
//  - The ordering the argument needs is then the hardware's: x86-TSO does not reorder a
//    load with an earlier load, nor a store with an earlier store, and SSE2 `movdqu` (unlike
//    the non-temporal and fast-string forms, which we do not use) is an ordinary access
//    under those rules. So a reader's copy is loaded after its acquire load of seq and
//    before its second load of seq, and a writer's copy is stored after `seq = s+1` and
//    before the commit's `lock xadd`: the two fences' job, done by TSO itself (on x86 both
//    fences compile to nothing but a compiler barrier anyway).
//  - A 16-byte SSE access is not promised to be one atomic access; each aligned 8-byte half
//    is as good as a relaxed word. Either way a reader that overlaps a write sees the
//    sequence move and throws its copy away: the check never depended on the width of an
//    access, only on the order of the accesses, which is unchanged.
// Segments written one way and read the other (a GCC game, an MSVC tool) agree: both are
// ordinary aligned accesses on the same hardware.
#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__) && !defined(_MSC_VER)
inline constexpr bool kWideCopy = true;
// Copies n64 64-byte blocks (n64 > 0); either side may be shared, neither need be 16-aligned.
inline void wide_copy(void* dst, const void* src, size_t n64) noexcept {
    __asm__ __volatile__(
        "1:\n\t"
        "movdqu   (%[s]), %%xmm0\n\t"
        "movdqu 16(%[s]), %%xmm1\n\t"
        "movdqu 32(%[s]), %%xmm2\n\t"
        "movdqu 48(%[s]), %%xmm3\n\t"
        "movdqu %%xmm0,   (%[d])\n\t"
        "movdqu %%xmm1, 16(%[d])\n\t"
        "movdqu %%xmm2, 32(%[d])\n\t"
        "movdqu %%xmm3, 48(%[d])\n\t"
        "addq $64, %[s]\n\t"
        "addq $64, %[d]\n\t"
        "decq %[n]\n\t"
        "jnz 1b\n\t"
        : [s] "+r"(src), [d] "+r"(dst), [n] "+r"(n64)
        :
        : "xmm0", "xmm1", "xmm2", "xmm3", "memory", "cc");
}
#else
inline constexpr bool kWideCopy = false;
inline void wide_copy(void*, const void*, size_t) noexcept {}
#endif
inline constexpr size_t kWideMinWords = 8;  // up to one 64-byte block, the word loop
// (The shared side of a wide run starts 16-aligned: slots are 64-aligned, so one leading word
// at most; 16-byte stores that straddle cache lines would cost a quarter of the speed.)

// n whole words from a slot into private memory (dst needs no alignment).
inline void load_words(unsigned char* dst, const Word* w, size_t n) noexcept {
    size_t i = 0;
    if constexpr (kWideCopy) {
        if (n > kWideMinWords) {
            if (reinterpret_cast<uintptr_t>(w) & 8) {  // the shared side 16-aligned: no split lines
                uint64_t a = w[0].load(std::memory_order_relaxed);
                std::memcpy(dst, &a, 8);
                i = 1;
            }
            wide_copy(dst + 8 * i, w + i, (n - i) / 8);
            i += (n - i) / 8 * 8;
        }
    }
    for (; i + 4 <= n; i += 4) {
        uint64_t a = w[i].load(std::memory_order_relaxed), b = w[i + 1].load(std::memory_order_relaxed);
        uint64_t c = w[i + 2].load(std::memory_order_relaxed), d = w[i + 3].load(std::memory_order_relaxed);
        std::memcpy(dst + 8 * i, &a, 8);
        std::memcpy(dst + 8 * i + 8, &b, 8);
        std::memcpy(dst + 8 * i + 16, &c, 8);
        std::memcpy(dst + 8 * i + 24, &d, 8);
    }
    for (; i < n; ++i) {
        uint64_t a = w[i].load(std::memory_order_relaxed);
        std::memcpy(dst + 8 * i, &a, 8);
    }
}

// n whole words from private memory (src needs no alignment) into a slot.
inline void store_words(Word* w, const unsigned char* src, size_t n) noexcept {
    size_t i = 0;
    if constexpr (kWideCopy) {
        if (n > kWideMinWords) {
            if (reinterpret_cast<uintptr_t>(w) & 8) {  // the shared side 16-aligned: no split lines
                uint64_t a;
                std::memcpy(&a, src, 8);
                w[0].store(a, std::memory_order_relaxed);
                i = 1;
            }
            wide_copy(w + i, src + 8 * i, (n - i) / 8);
            i += (n - i) / 8 * 8;
        }
    }
    for (; i + 4 <= n; i += 4) {
        uint64_t a, b, c, d;
        std::memcpy(&a, src + 8 * i, 8);
        std::memcpy(&b, src + 8 * i + 8, 8);
        std::memcpy(&c, src + 8 * i + 16, 8);
        std::memcpy(&d, src + 8 * i + 24, 8);
        w[i].store(a, std::memory_order_relaxed);
        w[i + 1].store(b, std::memory_order_relaxed);
        w[i + 2].store(c, std::memory_order_relaxed);
        w[i + 3].store(d, std::memory_order_relaxed);
    }
    for (; i < n; ++i) {
        uint64_t a;
        std::memcpy(&a, src + 8 * i, 8);
        w[i].store(a, std::memory_order_relaxed);
    }
}

// n whole words from one slot to the other (repair, under the writer lock).
inline void move_words(Word* d, const Word* s, size_t n) noexcept {
    size_t i = 0;
    if constexpr (kWideCopy) {
        if (n > kWideMinWords) {
            if (reinterpret_cast<uintptr_t>(d) & 8) {  // the shared side 16-aligned: no split lines
                d[0].store(s[0].load(std::memory_order_relaxed), std::memory_order_relaxed);
                i = 1;
            }
            wide_copy(d + i, s + i, (n - i) / 8);
            i += (n - i) / 8 * 8;
        }
    }
    for (; i < n; ++i) d[i].store(s[i].load(std::memory_order_relaxed), std::memory_order_relaxed);
}

// GCC 12 reports -Warray-bounds on the tail copies below when it inlines them for a payload whose
// size is a multiple of 8 (the tail branch is then dead, but it still looks at it). Hiding the
// pointer's origin from the optimizer keeps the copy exactly as it is and silences that false
// positive; other compilers see the plain pointer.
template <class P>
inline P opaque_ptr(P p) noexcept {
#if defined(__GNUC__) || defined(__clang__)
    __asm__("" : "+r"(p));
#endif
    return p;
}

// The general case of load_range below: a partial first word, whole words, a partial last word.
inline void load_span(unsigned char* dst, const unsigned char* slot, size_t off, size_t len) noexcept {
    const Word* w = words(slot) + off / 8;
    if (size_t skip = off % 8) {
        uint64_t v = (w++)->load(std::memory_order_relaxed);
        size_t n = (8 - skip) & 7;  // 1..7, < len here
        std::memcpy(dst, reinterpret_cast<const unsigned char*>(&v) + skip, n);
        dst += n;
        len -= n;
    }
    size_t nw = len / 8;
    load_words(dst, w, nw);
    if (size_t rest = len % 8) {
        uint64_t v = w[nw].load(std::memory_order_relaxed);
        std::memcpy(opaque_ptr(dst + 8 * nw), &v, rest);
    }
}

// Copy bytes [off, off+len) of an 8-aligned slot into dst. A range within one word (a scalar
// field: the hot case) is one load; longer ones go through load_span. (A partial word is
// loaded whole: the slot is sized in words.)
inline void load_range(unsigned char* dst, const unsigned char* slot, size_t off, size_t len) noexcept {
    if (off % 8 + len <= 8) {
        if (!len) return;
        uint64_t v = words(slot)[off / 8].load(std::memory_order_relaxed);
        std::memcpy(dst, reinterpret_cast<const unsigned char*>(&v) + off % 8, len & 15);  // & 15: a bound
        // that the compiler sees (len <= 8 here), so this is an inline move, not a memcpy call
        return;
    }
    load_span(dst, slot, off, len);
}

// The general case of store_range below. Words only partly covered keep their other bytes
// (read-modify-write is safe: the writer lock excludes other writers, readers never store).
inline void store_span(unsigned char* slot, const unsigned char* src, size_t off, size_t len) noexcept {
    Word* w = words(slot) + off / 8;
    if (size_t skip = off % 8) {
        size_t n = (8 - skip) & 7;  // 1..7, < len here
        uint64_t v = w->load(std::memory_order_relaxed);
        std::memcpy(reinterpret_cast<unsigned char*>(&v) + skip, src, n);
        (w++)->store(v, std::memory_order_relaxed);
        src += n;
        len -= n;
    }
    size_t nw = len / 8;
    store_words(w, src, nw);
    if (size_t rest = len % 8) {
        uint64_t v = w[nw].load(std::memory_order_relaxed);
        std::memcpy(&v, opaque_ptr(src + 8 * nw), rest);
        w[nw].store(v, std::memory_order_relaxed);
    }
}

// Store bytes [off, off+len) of a slot from src: within one word, one read-modify-write
// (none for a whole word); longer ranges through store_span.
inline void store_range(unsigned char* slot, const unsigned char* src, size_t off, size_t len) noexcept {
    if (off % 8 + len <= 8) {
        if (!len) return;
        Word& w = words(slot)[off / 8];
        uint64_t v = len == 8 ? 0 : w.load(std::memory_order_relaxed);
        std::memcpy(reinterpret_cast<unsigned char*>(&v) + off % 8, src, len & 15);  // (as in load_range)
        w.store(v, std::memory_order_relaxed);
        return;
    }
    store_span(slot, src, off, len);
}

struct Patch {
    uint32_t offset;
    uint32_t size;
    const unsigned char* data;
};

// The latch over one state segment: the sequence word and two copies `stride` bytes apart.
class Latch {
public:
    Latch() = default;
    Latch(format::StateHeader* h, unsigned char* slot0, uint32_t stride, uint32_t size) noexcept
        : h_(h), slot0_(slot0), stride_(stride), size_(size) {}

    uint64_t seq() const noexcept { return h_->seq.load(std::memory_order_acquire); }
    bool ready() const noexcept { return h_ != nullptr; }

    // A consistent copy of bytes [off, off+len), and the seq it was read at; never waits
    // for a writer. False if `max_tries` reads all raced with writes (only a writer storming
    // a large payload, or a hostile process bumping the sequence, can cause that).
    bool read(void* dst, size_t off, size_t len, uint64_t* seq_out = nullptr, uint32_t max_tries = 1u << 20) const noexcept {
        auto* out = static_cast<unsigned char*>(dst);
        for (uint32_t t = 0; t < max_tries; ++t) {
            uint64_t s1 = h_->seq.load(std::memory_order_acquire);
            load_range(out, slot0_ + (s1 & 1) * stride_, off, len);
            std::atomic_thread_fence(std::memory_order_acquire);
            uint64_t s2 = h_->seq.load(std::memory_order_relaxed);
            if (s1 == s2) {
                if (seq_out) *seq_out = s1;
                return true;
            }
        }
        return false;
    }

    // One consistent read of several ranges into several places (a snapshot whose array
    // fields go straight into their own buffers): every span is copied from the same copy
    // between the same two loads of seq, so together they are one snapshot.
    struct Span {
        uint32_t offset;
        uint32_t size;
        unsigned char* dst;
    };
    bool read_spans(const Span* spans, size_t n, uint64_t* seq_out = nullptr, uint32_t max_tries = 1u << 20) const noexcept {
        for (uint32_t t = 0; t < max_tries; ++t) {
            uint64_t s1 = h_->seq.load(std::memory_order_acquire);
            const unsigned char* slot = slot0_ + (s1 & 1) * stride_;
            for (size_t i = 0; i < n; ++i) load_range(spans[i].dst, slot, spans[i].offset, spans[i].size);
            std::atomic_thread_fence(std::memory_order_acquire);
            uint64_t s2 = h_->seq.load(std::memory_order_relaxed);
            if (s1 == s2) {
                if (seq_out) *seq_out = s1;
                return true;
            }
        }
        return false;
    }

    // The same for a payload whose size is known at compile time (SharedState<T>::read()):
    // the word count is a constant, so the copy unrolls into W loads and one memcpy into the
    // caller's T. What made this slower than the same protocol written inline (3.6 ns against
    // 1.0 ns for the 12-byte controller): after the acquire load of seq the compiler must
    // reload every member it reads (h_, slot0_, stride_: another thread may have changed them
    // before a release that the acquire synchronizes with), and it picked copy (s1 & 1) with a
    // 3-cycle imul, both on the path from the seq load to the payload loads. So the members
    // are read once into locals before the loop, and the copy is picked with a mask.
    template <size_t N>
    bool read_fixed(void* dst, uint32_t max_tries = 1u << 20) const noexcept {
        // No segment (raw, closed, moved-from): false. size_ == N is the caller's promise, not
        // checked here (one load and one branch fewer on a path of about four cycles): the
        // only caller, SharedState<T>, compared the whole layout when it opened the block, and
        // its constructor from a block is private.
        format::StateHeader* const h = h_;
        if (!h) return false;
        if constexpr (N > 256) {
            return read(dst, 0, N, nullptr, max_tries);  // large: straight into dst, no staging
        } else {
            constexpr size_t W = (N + 7) / 8;
            const Word* const seq = &h->seq;
            const unsigned char* const s0 = slot0_;
            const size_t stride = stride_;
            uint64_t tmp[W];
            for (uint32_t t = 0; t < max_tries; ++t) {
                uint64_t s1 = seq->load(std::memory_order_acquire);
                const Word* w = words(s0 + (stride & (0 - size_t(s1 & 1))));
                for (size_t i = 0; i < W; ++i) tmp[i] = w[i].load(std::memory_order_relaxed);
                std::atomic_thread_fence(std::memory_order_acquire);
                if (seq->load(std::memory_order_relaxed) == s1) {
                    std::memcpy(dst, tmp, N);
                    return true;
                }
            }
            return false;
        }
    }

    // One committed write of the given patches, copy 0 then copy 1. The caller holds the
    // writer lock, and both copies are equal on entry (see repair()).
    // Returns the new sequence value.
    uint64_t write(const Patch* patches, size_t n) noexcept {
        uint64_t s = h_->seq.load(std::memory_order_relaxed);
        h_->seq.store(s + 1, std::memory_order_relaxed);
        std::atomic_thread_fence(std::memory_order_release);  // A
        for (size_t i = 0; i < n; ++i) store_range(slot0_, patches[i].data, patches[i].offset, patches[i].size);
        uint64_t committed = h_->seq.fetch_add(1, std::memory_order_seq_cst) + 1;
        std::atomic_thread_fence(std::memory_order_release);  // C
        for (size_t i = 0; i < n; ++i) store_range(slot0_ + stride_, patches[i].data, patches[i].offset, patches[i].size);
        return committed;
    }

    // After taking the lock from a dead writer: make both copies equal again.
    // Odd seq: the dead writer was in copy 0; copy 1 is the committed value. Copy it back
    // into copy 0 and step seq to even. This counts as one write (seq never goes back: a
    // reader that began before the dead write must still see its seq change).
    // Even seq: copy 0 is committed, copy 1 may be torn: copy 0 -> copy 1, unseen by readers.
    // Returns true if the sequence moved.
    bool repair() noexcept {
        uint64_t s = h_->seq.load(std::memory_order_relaxed);
        bool moved = false;
        unsigned char* a = slot0_;
        unsigned char* b = slot0_ + stride_;
        if (s & 1) {
            copy_words(a, b);
            h_->seq.fetch_add(1, std::memory_order_seq_cst);
            std::atomic_thread_fence(std::memory_order_release);
            moved = true;
        }
        copy_words(b, a);
        return moved;
    }

    // The stable copy while the writer lock is held (no writer can move it).
    const unsigned char* stable_locked() const noexcept {
        return slot0_ + (h_->seq.load(std::memory_order_relaxed) & 1) * stride_;
    }
    unsigned char* slot0() const noexcept { return slot0_; }
    uint32_t size() const noexcept { return size_; }

private:
    void copy_words(unsigned char* dst, const unsigned char* src) noexcept { move_words(words(dst), words(src), stride_ / 8); }

    format::StateHeader* h_ = nullptr;
    unsigned char* slot0_ = nullptr;
    uint32_t stride_ = 0;
    uint32_t size_ = 0;
};

}  // namespace detail
}  // namespace sharedstate
