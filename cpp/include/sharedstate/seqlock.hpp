// The two-copy seqlock ("latch", the Linux kernel's raw_write_seqcount_latch).
//
// Memory-model argument (Boehm, "Can Seqlocks Get Along with Programming Language Memory
// Models?", MSPC 2012; Abseil's sequence_lock.h makes the same one). The payload is read and
// written only through relaxed atomic 64-bit words, so the race between a reader and a
// writer is not undefined behaviour: a reader may see a mix of old and new words, and the
// sequence check below is what throws such a mix away.
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

// Copy bytes [off, off+len) of an 8-aligned slot into dst, loading whole words.
inline void load_range(unsigned char* dst, const unsigned char* slot, size_t off, size_t len) noexcept {
    const Word* w = words(slot);
    size_t i = off / 8, skip = off % 8;
    while (len) {
        uint64_t v = w[i++].load(std::memory_order_relaxed);
        size_t n = 8 - skip < len ? 8 - skip : len;
        std::memcpy(dst, reinterpret_cast<const unsigned char*>(&v) + skip, n);
        dst += n;
        len -= n;
        skip = 0;
    }
}

// Store bytes [off, off+len) of a slot from src. Words only partly covered keep their other
// bytes (read-modify-write is safe: the writer lock excludes other writers, readers never store).
inline void store_range(unsigned char* slot, const unsigned char* src, size_t off, size_t len) noexcept {
    Word* w = words(slot);
    size_t i = off / 8, skip = off % 8;
    while (len) {
        size_t n = 8 - skip < len ? 8 - skip : len;
        uint64_t v;
        if (n == 8) {
            std::memcpy(&v, src, 8);
        } else {
            v = w[i].load(std::memory_order_relaxed);
            std::memcpy(reinterpret_cast<unsigned char*>(&v) + skip, src, n);
        }
        w[i++].store(v, std::memory_order_relaxed);
        src += n;
        len -= n;
        skip = 0;
    }
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

    // The same for a payload whose size is known at compile time (SharedState<T>::read()):
    // the word count is a constant, so the copy unrolls into a few loads and one memcpy.
    template <size_t N>
    bool read_fixed(void* dst, uint32_t max_tries = 1u << 20) const noexcept {
        constexpr size_t W = (N + 7) / 8;
        uint64_t tmp[W];
        for (uint32_t t = 0; t < max_tries; ++t) {
            uint64_t s1 = h_->seq.load(std::memory_order_acquire);
            const Word* w = words(slot0_ + (s1 & 1) * stride_);
            for (size_t i = 0; i < W; ++i) tmp[i] = w[i].load(std::memory_order_relaxed);
            std::atomic_thread_fence(std::memory_order_acquire);
            if (h_->seq.load(std::memory_order_relaxed) == s1) {
                std::memcpy(dst, tmp, N);
                return true;
            }
        }
        return false;
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
    void copy_words(unsigned char* dst, const unsigned char* src) noexcept {
        const Word* s = words(src);
        Word* d = words(dst);
        for (size_t i = 0; i < stride_ / 8; ++i) d[i].store(s[i].load(std::memory_order_relaxed), std::memory_order_relaxed);
    }

    format::StateHeader* h_ = nullptr;
    unsigned char* slot0_ = nullptr;
    uint32_t stride_ = 0;
    uint32_t size_ = 0;
};

}  // namespace detail
}  // namespace sharedstate
