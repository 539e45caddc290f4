/*
 * internal.h - what the core's source files share and callers don't see.
 *
 * Naming rule, after nginx: a function whose name ends in `_locked` expects
 * its caller to hold the dict's lock inside an open transaction (sd_tx);
 * every other function takes and releases the lock itself, or needs none.
 */
#ifndef SHMDICT_INTERNAL_H
#define SHMDICT_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <sys/types.h>

#include "layout.h"
#include "shmdict.h"

#define LD(p) atomic_load_explicit((p), memory_order_relaxed)
#define ST(p, v) atomic_store_explicit((p), (v), memory_order_relaxed)
#define COMPILER_BARRIER() atomic_signal_fence(memory_order_seq_cst)

#define SD_LIKELY(x) __builtin_expect(!!(x), 1)
#define SD_UNLIKELY(x) __builtin_expect(!!(x), 0)

/* The process-local handle. Every layout value the core navigates by is
 * copied here from a validated header and never read from the file again,
 * so a process that scribbles on the header later can't steer us out of
 * the mapping. */
struct sd_handle {
    char *base;          /* owned: the MAP_SHARED mapping of file_size */
    uint64_t file_size;  /* bytes mapped */
    uint64_t heap_off;   /* file offset of heap byte 0 */
    uint64_t heap_size;  /* bytes of heap, a multiple of SD_UNIT */
    uint64_t index_off;  /* file offset of bucket 0 */
    uint64_t nbuckets;   /* a power of two */
    uint64_t hash_seed;  /* copied from the header */
    uint64_t max_chain;  /* upper bound on any chain's length */
    sd_header *hdr;      /* = base */
    sd_lock *lock;       /* = base + lock_off; one stripe today */
    _Atomic uint32_t *buckets;
    _Atomic uint32_t *summary; /* bit p: bucket page p may be non-empty */
    uint64_t summary_off;
    uint64_t summary_bytes;
    int64_t lock_timeout_ms;
    int mutex_kind;      /* glibc's __kind of a healthy mutex, or -1 */
    sd_block_begin_fn block_begin; /* borrowed, may be NULL */
    sd_block_end_fn block_end;
    /* Ownership: set only on the handle that created the file. */
    int owner;
    pid_t owner_pid; /* the process that created it (forks don't own) */
    dev_t dev;
    ino_t ino;
    char *path; /* owned, malloc-ed copy */
};

/* An open transaction: the lock is held and the sequence counter is odd.
 * Lives on the stack of the operation that opened it. */
typedef struct sd_tx {
    sd_handle *h;
    void *token;   /* from block_begin, when the thread blocked */
    bool blocked;  /* block_end must be called after unlock */
    bool overflow; /* the undo log filled up: the change must be undone */
    uint64_t seq;  /* the odd sequence value written at begin */
    int64_t now_ms; /* cached clock, -1 until read */
} sd_tx;

/* ---- crash points -------------------------------------------------------- */

/* Test hook: when non-zero, every crash point counts it down and the
 * process kills itself with SIGKILL when it reaches zero. Tests use it to
 * die at each step of a write in turn and check the repair. One load and
 * a branch per point when unused. */
extern int sd_crash_countdown;
void sd_crash_now(void);
#define SD_CRASH_POINT()                                                     \
    do {                                                                     \
        if (SD_UNLIKELY(sd_crash_countdown) && --sd_crash_countdown == 0)    \
            sd_crash_now();                                                  \
    } while (0)

/* ---- lock.c: locks, transactions, undo log ---------------------------- */

sd_status sd_tx_begin(sd_handle *h, sd_tx *t);
/* Make the open transaction's changes permanent (the commit point). */
static inline void sd_tx_commit(sd_tx *t)
{
    SD_CRASH_POINT();
    COMPILER_BARRIER();
    ST(&t->h->lock->log_n, 0u);
    COMPILER_BARRIER();
    SD_CRASH_POINT();
}
void sd_tx_rollback_locked(sd_handle *h);
/* Empty the dict (dict.c); redone from the start by a recoverer. */
void sd_flush_locked_raw(sd_handle *h);
/* Commit (or undo, if the log overflowed), release, and call block_end. */
sd_status sd_tx_end(sd_tx *t, sd_status rc);
void sd_lock_init(sd_lock *l);
int sd_mutex_kind_of_new(void);
int64_t sd_now_ms(void);
int64_t sd_now_ns(void);
static inline int64_t sd_tx_now(sd_tx *t)
{
    if (t->now_ms < 0)
        t->now_ms = sd_now_ms();
    return t->now_ms;
}

/* Log the word at p, then store v: undone on rollback. */
static inline void sd_log_word(sd_tx *t, const void *p, int wide,
                               uint64_t old)
{
    sd_lock *l = t->h->lock;
    uint32_t n = LD(&l->log_n);
    if (SD_UNLIKELY(n >= SD_LOG_CAP)) {
        t->overflow = true;
        return;
    }
    uint64_t off = (uint64_t)((const char *)p - t->h->base);
    ST(&l->log[n].where, off | (uint64_t)(wide != 0));
    ST(&l->log[n].old, old);
    SD_CRASH_POINT();
    COMPILER_BARRIER();
    ST(&l->log_n, n + 1);
    COMPILER_BARRIER();
    SD_CRASH_POINT();
}

static inline void sd_w32(sd_tx *t, _Atomic uint32_t *p, uint32_t v)
{
    uint32_t old = LD(p);
    if (old == v)
        return;
    sd_log_word(t, p, 0, old);
    if (SD_LIKELY(!t->overflow))
        ST(p, v);
    SD_CRASH_POINT();
}

static inline void sd_w64(sd_tx *t, _Atomic uint64_t *p, uint64_t v)
{
    uint64_t old = LD(p);
    if (old == v)
        return;
    sd_log_word(t, p, 1, old);
    if (SD_LIKELY(!t->overflow))
        ST(p, v);
    SD_CRASH_POINT();
}

/* Log a word that unlogged writes are about to clobber. */
static inline void sd_save64(sd_tx *t, _Atomic uint64_t *p)
{
    sd_log_word(t, p, 1, LD(p));
}

/* ---- alloc.c: the TLSF heap -------------------------------------------- */

void sd_heap_init(sd_handle *h);
/* A block whose payload holds at least `payload` bytes; 0 when full. */
sd_status sd_alloc_locked(sd_tx *t, uint64_t payload, uint32_t *idx);
sd_status sd_free_locked(sd_tx *t, uint32_t idx);
/* Bytes of payload an allocated block offers. */
uint64_t sd_block_payload(sd_handle *h, uint32_t idx);
uint64_t sd_block_size_for(uint64_t payload);
void sd_verify_heap(sd_handle *h, void (*report)(void *, const char *),
                    void *ctx, uint64_t *used_blocks);

/* ---- addressing -------------------------------------------------------- */

/* A block index is valid when a minimum block starting there lies inside
 * the heap. Index 0 is NIL. */
static inline bool sd_idx_ok(const sd_handle *h, uint64_t idx)
{
    return idx != 0 &&
           idx <= (h->heap_size - SD_MIN_BLOCK) >> SD_UNIT_SHIFT;
}

static inline char *sd_blk(const sd_handle *h, uint64_t idx)
{
    return h->base + h->heap_off + (idx << SD_UNIT_SHIFT);
}

static inline _Atomic uint64_t *sd_blk_hdr(const sd_handle *h, uint64_t idx)
{
    return (_Atomic uint64_t *)(void *)sd_blk(h, idx);
}

static inline sd_entry *sd_blk_entry(const sd_handle *h, uint64_t idx)
{
    return (sd_entry *)(void *)(sd_blk(h, idx) + 8);
}

static inline uint64_t sd_pad8(uint64_t n) { return (n + 7) & ~UINT64_C(7); }

/* Payload bytes an entry with these lengths needs. */
static inline uint64_t sd_entry_need(uint64_t klen, uint64_t vlen)
{
    return SD_ENTRY_HDR + sd_pad8(klen) + vlen;
}

uint64_t sd_hash_bytes(const void *p, size_t n, uint64_t seed);

/* The first bucket at or after b whose summary bit is set (nbuckets if
 * none): scans use it to skip untouched pages of the index. */
static inline uint64_t sd_next_used_bucket(const sd_handle *h, uint64_t b)
{
    while (b < h->nbuckets) {
        uint64_t page = b / SD_BUCKETS_PER_PAGE;
        uint32_t word = LD(&h->summary[page / 32]) >> (page % 32);
        if (word & 1)
            return b;
        uint64_t skip = word ? (uint64_t)__builtin_ctz(word) : 32 - page % 32;
        b = (page + skip) * SD_BUCKETS_PER_PAGE;
    }
    return h->nbuckets;
}

#endif /* SHMDICT_INTERNAL_H */
