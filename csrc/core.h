/*
 * core.h - the types every unit of the core works on (a stripe, the
 * handle), relaxed atomic access, addressing inside the file, the one key
 * hash, the meta word, the summary bits and the statistics slots.
 *
 * Names
 * -----
 * A stripe is `sd_stripe *s`, the handle `sd_handle *d`, an open
 * transaction `sd_tx *t`, a stripe's state page `sd_pstate *ps`, the file
 * header `sd_header *fh`, an entry's checked copy `sd_view *v`, a key found
 * under the lock `sd_found *f`, a lock area `sd_lock *l`. Functions named
 * stripe_* do one public operation on one stripe; sd_* are shared helpers.
 *
 * The lock and transaction rule is in the name:
 *
 *   name_locked   the caller holds the stripe's lock inside an open
 *                 transaction (sd_tx). The function adds its changes to that
 *                 transaction and never commits or undoes it: the caller
 *                 does, with sd_tx_commit, sd_tx_abort or the end of the
 *                 transaction.
 *   name_commits  the caller holds the lock inside an open transaction, and
 *                 the function may commit it, or roll it back, as it goes:
 *                 whatever the caller changed before the call is committed
 *                 (or undone) with it. Call it with nothing uncommitted that
 *                 must stay undoable. The transaction stays open.
 *   lock pairs    sd_tx_begin/sd_tx_begin_wait take the lock and open a
 *                 transaction; sd_find_and_lock does that and finds a key.
 *                 sd_tx_end ends (commits or undoes) and releases it;
 *                 sd_tx_end_write also undoes a failed write and frees a few
 *                 list items first. Every stripe_* function and every
 *                 public function takes and releases the lock itself, or
 *                 needs none (the lock-free reads).
 *
 * Every function that returns an sd_status is SD_MUST_USE; SD_IGNORE marks
 * the few places that drop one on purpose.
 */
#ifndef SHMDICT_CORE_H
#define SHMDICT_CORE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <sys/types.h>

#include "guard.h"
#include "layout.h"
#include "shmdict.h"
#include "util.h"

#define LD(p) atomic_load_explicit((p), memory_order_relaxed)

#define ST(p, v) atomic_store_explicit((p), (v), memory_order_relaxed)

#define COMPILER_BARRIER() atomic_signal_fence(memory_order_seq_cst)

/* Drop a status on purpose, where a comment beside the call says why. (A
 * plain (void) cast does not silence warn_unused_result in GCC.) */
#define SD_IGNORE(status) ((void)!(status))

/* ---- stripe and handle -------------------------------------------------- */

/* One stripe, as seen by this process. The engine's functions work on a
 * stripe (sd_stripe); the public API (api.c) picks the stripe of a key and
 * calls them. Every layout value the core navigates by is copied here from
 * a validated header and never read from the file again, so a process
 * that scribbles on the header later can't steer us out of the mapping. */
typedef struct sd_stripe {
    char *base;         /* the mapping (owned by sd_handle) */
    uint64_t file_size; /* bytes mapped */
    uint64_t off;       /* file offset of the stripe */
    uint64_t size;      /* bytes of the stripe */
    uint64_t heap_off;  /* file offset of heap byte 0 */
    uint64_t heap_size; /* bytes of heap, a multiple of SD_UNIT */
    uint64_t index_off; /* file offset of bucket 0 */
    uint64_t nbuckets;  /* a power of two */
    uint64_t hash_seed; /* copied from the header */
    uint64_t max_chain; /* upper bound on any chain's length */
    sd_pstate *st;      /* = base + off */
    sd_lock *lock;
    _Atomic uint32_t *buckets;
    _Atomic uint32_t *summary; /* bit p: bucket page p may be non-empty */
    _Atomic uint8_t *refs;     /* CLOCK marks, one per bucket */
    sd_group *groups;          /* write groups: after the marks */
    sd_slot *slots;            /* hit/miss/set counters (shared) */
    bool evict;                /* full dict: evict instead of NOMEM */
    bool reserved;             /* every page of the file is backed */
    int fd;                    /* the file (owned by the handle's guard) */
    sd_guard *guard;           /* SD_GUARD_OK until a fault was repaired */
    uint64_t summary_off;
    uint64_t summary_bytes;
    uint64_t refs_off;
    int64_t lock_timeout_ms; /* 0: don't wait; < 0: no limit */
    int mutex_kind;          /* glibc's __kind of a healthy mutex, or -1 */
    sd_block_begin_fn block_begin; /* borrowed, may be NULL */
    sd_block_end_fn block_end;
    /* may be NULL, as may the block hooks */
    sd_interrupted_fn interrupted;
    unsigned index; /* which stripe this is */
    unsigned shift; /* hash >> shift picks the stripe (32: one) */
} sd_stripe;

/* The process-local handle on a whole dict. */
struct sd_handle {
    char *base;         /* owned: the MAP_SHARED mapping of file_size */
    uint64_t file_size; /* bytes mapped */
    uint64_t hash_seed;
    unsigned nstripes;     /* a power of two */
    unsigned stripe_shift; /* stripe = hash >> stripe_shift (32 if one) */
    sd_stripe *stripes;    /* owned: nstripes of them */
    sd_header *hdr;        /* = base */
    /* Ownership: set only on the handle that created the file. */
    int owner;
    int created;     /* this handle made the file (owner or not) */
    pid_t owner_pid; /* the process that created it (forks don't own) */
    dev_t dev;
    ino_t ino;
    char *path;      /* owned, malloc-ed copy */
    sd_guard *guard; /* owned: the SIGBUS net and the file descriptor */
};

/* ---- addressing --------------------------------------------------------- */

/* A block index is valid when a minimum block starting there lies inside
 * the heap. Index 0 is NIL. */
static inline bool sd_idx_ok(const sd_stripe *s, uint64_t idx)
{
    return idx != 0 && idx <= (s->heap_size - SD_MIN_BLOCK) >> SD_UNIT_SHIFT;
}

/* The address of block idx (its header word). */
static inline char *sd_blk(const sd_stripe *s, uint64_t idx)
{
    return s->base + s->heap_off + (idx << SD_UNIT_SHIFT);
}

/* Block idx's header word: size and flags. */
static inline _Atomic uint64_t *sd_blk_hdr(const sd_stripe *s, uint64_t idx)
{
    return (_Atomic uint64_t *)(void *)sd_blk(s, idx);
}

/* The entry (or list item) in block idx, after its header word. */
static inline sd_entry *sd_blk_entry(const sd_stripe *s, uint64_t idx)
{
    return (sd_entry *)(void *)(sd_blk(s, idx) + 8);
}

/* n rounded up to a multiple of 8. */
static inline uint64_t sd_pad8(uint64_t n)
{
    return (n + 7) & ~UINT64_C(7);
}

/* Payload bytes an entry with these lengths needs. */
static inline uint64_t sd_entry_need(uint64_t klen, uint64_t vlen)
{
    return SD_ENTRY_HDR + sd_pad8(klen) + vlen;
}

/* The size of the block (its header word included) a payload needs. */
static inline uint64_t sd_block_size_for(uint64_t payload)
{
    uint64_t s = (payload + 8 + SD_UNIT - 1) & ~(uint64_t)(SD_UNIT - 1);
    return s < SD_MIN_BLOCK ? SD_MIN_BLOCK : s;
}

/* ---- hashing ------------------------------------------------------------ */

/* Unaligned loads of a little-endian word (memcpy: no aliasing rules). */
static inline uint64_t sd_rd64(const unsigned char *s)
{
    uint64_t w;
    memcpy(&w, s, 8);
    return w;
}

static inline uint64_t sd_rd32(const unsigned char *s)
{
    uint32_t w;
    memcpy(&w, s, 4);
    return w;
}

static inline uint64_t rotl64(uint64_t x, unsigned r)
{
    return (x << r) | (x >> (64 - r));
}

/* MurmurHash3's 64-bit finalizer. */
static inline uint64_t fmix64(uint64_t k)
{
    k ^= k >> 33;
    k *= UINT64_C(0xff51afd7ed558ccd);
    k ^= k >> 33;
    k *= UINT64_C(0xc4ceb9fe1a85ec53);
    k ^= k >> 33;
    return k;
}

/* A keyed multiply-rotate hash over 8-byte words; the tail is read as one
 * partial word. Not cryptographic: the seed only keeps chains short against
 * keys chosen without access to the file. */
static inline uint64_t sd_hash_bytes(const void *p, size_t n, uint64_t seed)
{
    const unsigned char *s = p;
    const uint64_t k1 = UINT64_C(0x9e3779b97f4a7c15);
    const uint64_t k2 = UINT64_C(0xbf58476d1ce4e5b9);
    uint64_t x = seed ^ ((uint64_t)n * k1);
    while (n >= 8) {
        x = rotl64(x ^ (sd_rd64(s) * k2), 29) * k1;
        s += 8;
        n -= 8;
    }
    if (n) {
        uint64_t w = 0;
        memcpy(&w, s, n);
        x = rotl64(x ^ (w * k2), 29) * k1;
    }
    return fmix64(x);
}

/* The one key hash: 32 bits, whose top bits pick the stripe and low bits
 * the bucket. */
static inline uint32_t sd_key_hash(uint64_t seed, const void *key, size_t klen)
{
    uint64_t x = sd_hash_bytes(key, klen, seed);
    return (uint32_t)(x ^ (x >> 32));
}

/* memcmp(a, b, n) == 0, without a call for keys of 4 to 16 bytes: two
 * loads from each side, overlapping when n is not 8 or 16. */
static inline bool sd_bytes_eq(const void *a, const void *b, size_t n)
{
    const unsigned char *x = a, *y = b;
    if (n >= 8 && n <= 16)
        return sd_rd64(x) == sd_rd64(y) &&
               sd_rd64(x + n - 8) == sd_rd64(y + n - 8);
    if (n >= 4 && n < 8)
        return sd_rd32(x) == sd_rd32(y) &&
               sd_rd32(x + n - 4) == sd_rd32(y + n - 4);
    return memcmp(x, y, n) == 0;
}

/* ---- meta word ---------------------------------------------------------- */

static inline uint64_t sd_meta_exp(uint64_t meta)
{
    return meta >> SD_META_EXP_SHIFT;
}

/* Whether a meta word's expiry has passed at now_ms. */
static inline bool sd_expired(uint64_t meta, int64_t now_ms)
{
    uint64_t exp = sd_meta_exp(meta);
    return exp != 0 && exp <= (uint64_t)now_ms;
}

/* Whether an entry's meta word says it is a list. */
static inline bool sd_is_list(uint64_t meta)
{
    return (meta & SD_META_TYPE) == SD_T_LIST;
}

/* ---- summary bits ------------------------------------------------------- */

/* Whether the summary marks the page of `hash`'s bucket: only then may a
 * reader load the bucket, since an unmarked page may be a hole that a read
 * fault would have to allocate. */
static inline bool sd_bucket_marked(const sd_stripe *s, uint32_t hash)
{
    uint64_t page = (hash & (s->nbuckets - 1)) / SD_BUCKETS_PER_PAGE;
    return (LD(&s->summary[page / 32]) >> (page % 32)) & 1;
}

/* The first bucket at or after b whose summary bit is set (nbuckets if
 * none): scans use it to skip untouched pages of the index. */
static inline uint64_t sd_next_used_bucket(const sd_stripe *s, uint64_t b)
{
    while (b < s->nbuckets) {
        uint64_t page = b / SD_BUCKETS_PER_PAGE;
        uint32_t word = LD(&s->summary[page / 32]) >> (page % 32);
        if (word & 1)
            return b;
        uint64_t skip = word ? (uint64_t)__builtin_ctz(word) : 32 - page % 32;
        b = (page + skip) * SD_BUCKETS_PER_PAGE;
    }
    return s->nbuckets;
}

/* Buckets a scan visits per hold of the lock. */
#define SD_SCAN_SLICE 4096u

/* ---- statistics slots --------------------------------------------------- */

static inline sd_slot *sd_my_slot(const sd_stripe *s)
{
    return &s->slots[(uint32_t)sd_self_pid() % SD_NSLOTS];
}

/* Statistics only: a plain load and store, no locked instruction. Threads
 * of one process, or processes whose pids share a slot, may lose a count
 * now and then. */
static inline void sd_slot_inc(_Atomic uint64_t *c)
{
    ST(c, LD(c) + 1);
}

#endif /* SHMDICT_CORE_H */
