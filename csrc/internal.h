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

#include "guard.h"
#include "layout.h"
#include "shmdict.h"

#define LD(p) atomic_load_explicit((p), memory_order_relaxed)
#define ST(p, v) atomic_store_explicit((p), (v), memory_order_relaxed)
#define COMPILER_BARRIER() atomic_signal_fence(memory_order_seq_cst)

#define SD_LIKELY(x) __builtin_expect(!!(x), 1)
#define SD_UNLIKELY(x) __builtin_expect(!!(x), 0)

/* One stripe, as seen by this process. The engine's functions work on a
 * stripe (sd_part); the public API (api.c) picks the stripe of a key and
 * calls them. Every layout value the core navigates by is copied here from
 * a validated header and never read from the file again, so a process
 * that scribbles on the header later can't steer us out of the mapping. */
typedef struct sd_part {
    char *base;         /* the mapping (owned by sd_handle) */
    uint64_t file_size; /* bytes mapped */
    uint64_t part_off;  /* file offset of the stripe */
    uint64_t part_size; /* bytes of the stripe */
    uint64_t heap_off;  /* file offset of heap byte 0 */
    uint64_t heap_size; /* bytes of heap, a multiple of SD_UNIT */
    uint64_t index_off; /* file offset of bucket 0 */
    uint64_t nbuckets;  /* a power of two */
    uint64_t hash_seed; /* copied from the header */
    uint64_t max_chain; /* upper bound on any chain's length */
    sd_pstate *st;      /* = base + part_off */
    sd_lock *lock;
    _Atomic uint32_t *buckets;
    _Atomic uint32_t *summary; /* bit p: bucket page p may be non-empty */
    _Atomic uint8_t *refs;     /* CLOCK marks, one per bucket */
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
    unsigned part_index; /* which stripe this is */
    unsigned part_shift; /* hash >> part_shift picks the stripe (32: one) */
} sd_part;

/* The process-local handle on a whole dict. */
struct sd_handle {
    char *base;         /* owned: the MAP_SHARED mapping of file_size */
    uint64_t file_size; /* bytes mapped */
    uint64_t hash_seed;
    unsigned nparts;     /* stripes, a power of two */
    unsigned part_shift; /* stripe = hash >> part_shift (32 if one) */
    sd_part *parts;      /* owned: nparts of them */
    sd_header *hdr;      /* = base */
    /* Ownership: set only on the handle that created the file. */
    int owner;
    int created;     /* this handle made the file (owner or not) */
    pid_t owner_pid; /* the process that created it (forks don't own) */
    dev_t dev;
    ino_t ino;
    char *path;      /* owned, malloc-ed copy */
    sd_guard *guard; /* owned: the SIGBUS net and the file descriptor */
};

/* ---- region.c: backing pages ------------------------------------------- */

/* Make the filesystem back [off, off+len) of the file (fallocate), so
 * that a first write there can't raise SIGBUS. SD_NOSPACE when it has no
 * room; SD_OK where the filesystem can't reserve at all. Idempotent. */
sd_status sd_reserve(const sd_part *h, uint64_t off, uint64_t len);
/* Back the heap up to heap byte `end` (growing in chunks). */
sd_status sd_heap_reserve_locked(sd_part *h, uint64_t end);
/* Back the index page (and CLOCK marks) of `hash`'s bucket and mark it in
 * the summary, before a key is linked there. */
sd_status sd_bucket_ready_locked(sd_part *h, uint32_t hash);
/* Whether the summary marks the page of `hash`'s bucket: only then may a
 * reader load the bucket, since an unmarked page may be a hole that a read
 * fault would have to allocate. */
static inline bool sd_bucket_marked(const sd_part *h, uint32_t hash)
{
    uint64_t page = (hash & (h->nbuckets - 1)) / SD_BUCKETS_PER_PAGE;
    return (LD(&h->summary[page / 32]) >> (page % 32)) & 1;
}

#define SD_PENDING_CAP 64u

/* An open transaction: the lock is held and the sequence counter is odd.
 * Lives on the stack of the operation that opened it.
 *
 * Blocks that become free during a transaction are only queued in
 * `pending` and freed at the commit, after every allocation of the
 * transaction. Otherwise a later allocation in the same transaction could
 * hand out, and overwrite without logging, bytes that a rollback brings
 * back to life. */
typedef struct sd_tx {
    sd_part *h;
    void *token;      /* from block_begin, when the thread blocked */
    bool blocked;     /* block_end must be called after unlock */
    bool overflow;    /* the undo log filled up: the change must be undone */
    bool log_all;     /* log every word of new entries, not just headers */
    bool merge_frees; /* free into the TLSF lists, never a quick list */
    bool one_write;   /* a single-key write: see sd_store_alone */
    bool nospace;     /* an allocation failed for want of filesystem pages */
    uint32_t prefer;  /* a free block sd_alloc_locked takes if it fits */
    uint64_t seq;     /* the odd sequence value written at begin */
    int64_t now_ms;   /* cached clock, -1 until read */
    int64_t waited;   /* ns slept waiting for the lock */
    unsigned npending;
    uint32_t pending[SD_PENDING_CAP]; /* blocks to free at the commit */
} sd_tx;

/* ---- crash points --------------------------------------------------------
 */

/* Test hook: when non-zero, every crash point counts it down and the
 * process kills itself with SIGKILL when it reaches zero. Tests use it to
 * die at each step of a write in turn and check the repair. One load and
 * a branch per point when unused. */
extern int sd_crash_countdown;
void sd_crash_now(void);
#define SD_CRASH_POINT()                                                      \
    do {                                                                      \
        if (SD_UNLIKELY(sd_crash_countdown) && --sd_crash_countdown == 0)     \
            sd_crash_now();                                                   \
    } while (0)

/* ---- lock.c: locks, transactions, undo log ---------------------------- */

/* Lock the stripe and open a transaction. SD_TIMEDOUT when the lock
 * timeout (or what is left of the thread's span) runs out, SD_INTERRUPTED
 * when the interrupt hook says so, SD_CORRUPT for a damaged lock. */
sd_status sd_tx_begin(sd_part *h, sd_tx *t);

/* How one call waits for its locks: a call that takes several stripes
 * passes the same one to each sd_tx_begin_wait, so that block_begin is
 * called once for all of them. */
typedef struct sd_wait {
    void *token;  /* what block_begin returned */
    bool blocked; /* block_begin was called: block_end is owed */
    /* The caller holds another stripe's lock. Then no code outside the
     * core may run (no interrupt hook), and a wait that lasts one slice
     * gives up with SD_BUSY_HOLDING, so the caller can let go of what it
     * holds before it waits on. */
    bool holding;
} sd_wait;

/* Never returned by the API: see sd_wait.holding. */
#define SD_BUSY_HOLDING ((sd_status)(SD_STATUS_COUNT + 1))

/* sd_tx_begin for a caller that owns the sd_wait: block_end is left to
 * the caller (w->blocked says if it is owed), even on failure. */
sd_status sd_tx_begin_wait(sd_part *h, sd_tx *t, sd_wait *w);
/* Free the queued blocks, then make the open transaction's changes
 * permanent (the commit point). If the undo log overflowed, nothing is
 * committed and sd_tx_end rolls it all back. */
void sd_tx_commit(sd_tx *t);
/* Undo the open transaction and forget its queued frees. */
void sd_tx_abort(sd_tx *t);
/* Queue a block to be freed at the commit (see sd_tx). */
sd_status sd_free_deferred(sd_tx *t, uint32_t idx);
/* Replay the undo log (recovery, and sd_tx_abort). */
void sd_tx_rollback_locked(sd_part *h);
/* Empty the dict (dict.c); redone from the start by a recoverer. */
void sd_flush_locked_raw(sd_part *h);
/* Commit (or undo, if the log overflowed), release, and call block_end. */
sd_status sd_tx_end(sd_tx *t, sd_status rc);
void sd_lock_init(sd_lock *l);
int sd_mutex_kind_of_new(void);
int64_t sd_now_ms(void);
/* getpid(), cached and refreshed in a forked child. */
extern _Atomic int sd_pid_cache; /* 0 until read, and in a fresh child */
int sd_self_pid_slow(void);
static inline int sd_self_pid(void)
{
    int pid = atomic_load_explicit(&sd_pid_cache, memory_order_relaxed);
    return SD_LIKELY(pid) ? pid : sd_self_pid_slow();
}
int64_t sd_now_ns(void);
static inline int64_t sd_tx_now(sd_tx *t)
{
    if (t->now_ms < 0)
        t->now_ms = sd_now_ms();
    return t->now_ms;
}

/* Log the word at p, then store v: undone on rollback. */
static inline void sd_log_word(sd_tx *t, const void *p, int wide, uint64_t old)
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

/* Store v at p without logging it. Only for a transaction of one write
 * (t->one_write) that has logged nothing and changes nothing else: one
 * aligned store is its own commit point, which a crash leaves either done
 * or not done, all that an undo record could give. */
static inline bool sd_may_store_alone(const sd_tx *t)
{
    return t->one_write && !t->overflow && LD(&t->h->lock->log_n) == 0;
}

static inline void sd_store_alone(_Atomic uint64_t *p, uint64_t v)
{
    SD_CRASH_POINT();
    ST(p, v);
    SD_CRASH_POINT();
}

/* Log a word that unlogged writes are about to clobber. */
static inline void sd_save64(sd_tx *t, _Atomic uint64_t *p)
{
    sd_log_word(t, p, 1, LD(p));
}

/* ---- alloc.c: the TLSF heap -------------------------------------------- */

void sd_heap_init(sd_part *h);
/* A block whose payload holds at least `payload` bytes; 0 when full. */
sd_status sd_alloc_locked(sd_tx *t, uint64_t payload, uint32_t *idx);
/* Free a block: a small one goes whole onto its quick list (unless the
 * transaction has merge_frees set or the lists are at their cap), any
 * other is merged with its free neighbours. */
sd_status sd_free_locked(sd_tx *t, uint32_t idx);
/* Free a block into the TLSF lists, merged with its free neighbours. */
sd_status sd_free_merge_locked(sd_tx *t, uint32_t idx);
/* Merge every quick-listed block back, committing after each (the caller's
 * transaction must hold nothing uncommitted). O(blocks on quick lists). */
void sd_quick_drain_locked(sd_tx *t);
/* Whether any block sits on a quick list. */
static inline bool sd_quick_held(const sd_part *h)
{
    return LD(&h->st->quick_bytes) != 0;
}
/* Called by a write before it allocates a block for `payload`, with
 * nothing uncommitted that it would mind being committed (at most the drop
 * of an expired entry). A block too big for any quick list first has the
 * quick blocks merged back, as dlmalloc consolidates its fastbins before a
 * large request: otherwise small blocks kept whole would stay as holes
 * that a run of bigger entries fills around, and a dict emptied of small
 * entries and refilled with bigger ones would hold ~10% fewer. The drain
 * is paid for by the frees that filled the lists. */
void sd_before_alloc_locked(sd_tx *t, uint64_t payload);
/* Bytes of payload an allocated block offers. */
uint64_t sd_block_payload(sd_part *h, uint32_t idx);
/* The size of the block (its header word included) a payload needs. */
static inline uint64_t sd_block_size_for(uint64_t payload)
{
    uint64_t s = (payload + 8 + SD_UNIT - 1) & ~(uint64_t)(SD_UNIT - 1);
    return s < SD_MIN_BLOCK ? SD_MIN_BLOCK : s;
}
void sd_verify_heap(sd_part *h, void (*report)(void *, const char *),
                    void *ctx, uint64_t *used_blocks);

/* ---- addressing -------------------------------------------------------- */

/* A block index is valid when a minimum block starting there lies inside
 * the heap. Index 0 is NIL. */
static inline bool sd_idx_ok(const sd_part *h, uint64_t idx)
{
    return idx != 0 && idx <= (h->heap_size - SD_MIN_BLOCK) >> SD_UNIT_SHIFT;
}

static inline char *sd_blk(const sd_part *h, uint64_t idx)
{
    return h->base + h->heap_off + (idx << SD_UNIT_SHIFT);
}

static inline _Atomic uint64_t *sd_blk_hdr(const sd_part *h, uint64_t idx)
{
    return (_Atomic uint64_t *)(void *)sd_blk(h, idx);
}

static inline sd_entry *sd_blk_entry(const sd_part *h, uint64_t idx)
{
    return (sd_entry *)(void *)(sd_blk(h, idx) + 8);
}

static inline uint64_t sd_pad8(uint64_t n)
{
    return (n + 7) & ~UINT64_C(7);
}

/* Payload bytes an entry with these lengths needs. */
static inline uint64_t sd_entry_need(uint64_t klen, uint64_t vlen)
{
    return SD_ENTRY_HDR + sd_pad8(klen) + vlen;
}

/* ---- hashing ---- */

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
    uint64_t h = seed ^ ((uint64_t)n * k1);
    while (n >= 8) {
        h = rotl64(h ^ (sd_rd64(s) * k2), 29) * k1;
        s += 8;
        n -= 8;
    }
    if (n) {
        uint64_t w = 0;
        memcpy(&w, s, n);
        h = rotl64(h ^ (w * k2), 29) * k1;
    }
    return fmix64(h);
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

/* ---- dict.c: entries and chains, shared with list.c ------------------- */

/* A checked copy of an entry's (or list item's) header. */
typedef struct sd_view {
    uint32_t idx, next, hash, klen, vlen;
    uint64_t meta;
    uint64_t payload; /* bytes the block offers */
    sd_entry *e;
    unsigned char *val;
} sd_view;

/* A key found under the lock, and the word that links to it. */
typedef struct sd_found {
    _Atomic uint32_t *link;
    sd_view v;
} sd_found;

static inline uint64_t sd_meta_exp(uint64_t meta)
{
    return meta >> SD_META_EXP_SHIFT;
}

static inline bool sd_expired(uint64_t meta, int64_t now_ms)
{
    uint64_t exp = sd_meta_exp(meta);
    return exp != 0 && exp <= (uint64_t)now_ms;
}

static inline _Atomic uint64_t *sd_val_word(const sd_view *v, size_t i)
{
    return (_Atomic uint64_t *)(void *)(v->val + 8 * i);
}

static inline bool sd_read_block(const sd_part *h, uint32_t idx, sd_view *v)
{
    if (!sd_idx_ok(h, idx))
        return false;
    uint64_t hdr = LD(sd_blk_hdr(h, idx));
    uint64_t size = hdr & ~SD_BLK_FLAGS;
    /* sd_idx_ok bounds the start; the size is compared, never added, so a
     * damaged size near 2^64 can't wrap past the check. */
    if ((hdr & (SD_BLK_FREE | SD_BLK_QUICK)) || size < SD_MIN_BLOCK ||
        size > h->heap_size - ((uint64_t)idx << SD_UNIT_SHIFT))
        return false;
    sd_entry *e = sd_blk_entry(h, idx);
    v->idx = idx;
    v->e = e;
    v->next = LD(&e->next);
    v->hash = LD(&e->hash);
    v->meta = LD(&e->meta);
    v->klen = LD(&e->klen);
    v->vlen = LD(&e->vlen);
    v->payload = size - 8;
    if (v->klen > SD_MAX_KEY || sd_entry_need(v->klen, v->vlen) > v->payload)
        return false;
    unsigned type = v->meta & SD_META_TYPE;
    if ((type == SD_T_INT || type == SD_T_FLOAT) && v->vlen != 8)
        return false;
    if (type == SD_T_LIST && v->vlen != 16)
        return false;
    v->val = e->data + sd_pad8(v->klen);
    return true;
}

/* Read and check the entry at idx. False if any field can't be right. */
static inline bool sd_read_entry(const sd_part *h, uint32_t idx, sd_view *v)
{
    unsigned type;
    return sd_read_block(h, idx, v) && v->klen != 0 &&
           (type = v->meta & SD_META_TYPE) != 0 && type <= SD_T_MAX;
}

/* Write the record of a checked entry or item's value (the format of
 * sd_get_many in shmdict.h) at out, if its size fits in `room` (out may be
 * NULL when room is 0); return that size either way. */
static inline size_t sd_put_record(unsigned char *out, size_t room,
                                   const sd_view *v)
{
    unsigned type = v->meta & SD_META_TYPE;
    bool num = type == SD_T_INT || type == SD_T_FLOAT;
    bool var = type == SD_T_STR || type == SD_T_BYTES;
    size_t body = var ? sd_pad8(v->vlen) : num ? 8 : 0;
    if (8 + body <= room) {
        memset(out, 0, 8 + body);
        out[0] = (unsigned char)type;
        out[1] = (v->meta & SD_META_ASCII) != 0;
        out[2] = (v->meta & SD_META_TAG) != 0;
        uint32_t len = v->vlen;
        memcpy(out + 4, &len, 4);
        if (var || num)
            memcpy(out + 8, v->val, var ? v->vlen : 8);
    }
    return 8 + body;
}

static inline bool sd_read_item(const sd_part *h, uint32_t idx, sd_view *v)
{
    unsigned type;
    return sd_read_block(h, idx, v) && v->klen == 0 &&
           (type = v->meta & SD_META_TYPE) != 0 && type < SD_T_LIST;
}

uint32_t sd_key_hash(const sd_part *h, const void *key, size_t klen);
/* Find a live key for a write; an expired one is reclaimed first. */
sd_status sd_find_live_locked(sd_tx *t, const void *key, size_t klen,
                              uint32_t hash, sd_found *f);
/* Lock the stripe and find a live key. *open says whether the
 * transaction was opened (then end it with sd_end_write, whatever the
 * status); a reclaimed expired entry is committed at once. */
sd_status sd_open_find(sd_part *h, sd_tx *t, const void *key, size_t klen,
                       uint32_t hash, sd_found *f, bool *open);
/* Unlink a found entry and free it (a list's items go to the gc chain). */
sd_status sd_drop_locked(sd_tx *t, sd_found *f);
/* Allocate, making room by draining the gc chain, reclaiming expired
 * entries and (on an evicting dict, unless `noevict`) evicting any key but
 * `key`, the one being written. Each reclaimed item is committed on its
 * own, so the caller's transaction must hold no changes yet (it is rolled
 * back first). */
sd_status sd_alloc_room_locked(sd_tx *t, uint64_t payload, bool noevict,
                               const void *key, size_t klen, uint32_t hash,
                               uint32_t *idx, uint64_t *evicted);
/* Whether sd_alloc_room_locked could free anything (an evicting dict,
 * items on the gc chain, or expiries that may have passed). */
bool sd_can_make_room(sd_part *h);
/* Free list items waiting on the gc chain, up to `max`. */
void sd_gc_locked(sd_tx *t, uint64_t max);
/* Change the stripe's entry and expiring-entry counts (logged). The test
 * for no change is inline, so that the common overwrite makes no call. */
void sd_count_change(sd_tx *t, int64_t entries, int64_t expiring);
static inline void sd_count_add(sd_tx *t, int64_t entries, int64_t expiring)
{
    if (entries || expiring)
        sd_count_change(t, entries, expiring);
}
/* Make a new entry at the head of its bucket's chain. */
void sd_link_new_locked(sd_tx *t, uint32_t idx, uint32_t hash, uint64_t meta,
                        const void *key, size_t klen, const sd_value_in *v);
uint64_t sd_value_len(const sd_value_in *v);
/* Fill a freshly allocated block as an entry (or, with klen 0 and the
 * previous item in `hash`, as a list item). */
void sd_write_entry(sd_tx *t, uint32_t idx, uint32_t next, uint32_t hash,
                    uint64_t meta, const void *key, size_t klen,
                    const sd_value_in *v);
sd_status sd_find_locked(sd_part *h, const void *key, size_t klen,
                         uint32_t hash, sd_found *f);
uint64_t sd_make_meta(const sd_value_in *v, uint64_t exp);
uint64_t sd_expiry_for(sd_tx *t, int64_t ttl_ms);
/* Copy a scalar value out of a checked entry or item. */
sd_status sd_copy_value(const sd_view *v, sd_value_out *out);
/* Finish a write: undo it if it failed, commit it if not, free some gc
 * items, release the lock. */
sd_status sd_end_write(sd_tx *t, sd_status rc);
/* Store v under key as one step of the open transaction, which the
 * caller commits; SD_NOMEM when it doesn't fit as things are. */
sd_status sd_set_locked(sd_tx *t, const void *key, size_t klen, uint32_t hash,
                        const sd_value_in *v, int64_t ttl_ms, unsigned flags);
/* sd_set_locked, retried after making room (which commits as it goes). */
sd_status sd_set_with_room_locked(sd_tx *t, const void *key, size_t klen,
                                  uint32_t hash, const sd_value_in *v,
                                  int64_t ttl_ms, unsigned flags,
                                  uint64_t *evicted);

/* ---- the same operations on one stripe (api.c picks the stripe) ------- */

sd_status part_get(sd_part *h, const void *key, size_t klen, uint32_t hash,
                   sd_value_out *out);
bool part_still_current(sd_part *h, uint32_t hash, uint64_t seq);
sd_status part_get_stale(sd_part *h, const void *key, size_t klen,
                         uint32_t hash, sd_value_out *out, int *stale);
sd_status part_ttl(sd_part *h, const void *key, size_t klen, uint32_t hash,
                   int64_t *ns_left);
/* Mark the key's bucket used for CLOCK (evicting dicts only). */
static inline void sd_mark_used(sd_part *h, uint32_t hash)
{
    if (h->evict)
        ST(&h->refs[hash & (h->nbuckets - 1)], (uint8_t)1);
}
sd_status part_set_ex(sd_part *h, const void *key, size_t klen, uint32_t hash,
                      const sd_value_in *v, int64_t ttl_ms, unsigned flags,
                      uint64_t *evicted);
sd_status part_delete(sd_part *h, const void *key, size_t klen, uint32_t hash);
sd_status part_incr_init(sd_part *h, const void *key, size_t klen,
                         uint32_t hash, const sd_value_in *delta, int ttl_mode,
                         int64_t ttl_ms, const sd_value_in *init,
                         int64_t init_ttl_ms, sd_value_out *out);
sd_status part_expire(sd_part *h, const void *key, size_t klen, uint32_t hash,
                      int64_t ttl_ms);
sd_status part_cas(sd_part *h, const void *key, size_t klen, uint32_t hash,
                   const sd_value_in *expected, const sd_value_in *nv,
                   int ttl_mode, int64_t ttl_ms);
sd_status part_pop(sd_part *h, const void *key, size_t klen, uint32_t hash,
                   sd_value_out *out);
sd_status part_setdefault(sd_part *h, const void *key, size_t klen,
                          uint32_t hash, const sd_value_in *dflt,
                          sd_value_out *out);
sd_status part_push(sd_part *h, const void *key, size_t klen, uint32_t hash,
                    int left, const sd_value_in *v, uint64_t *len);
sd_status part_list_pop(sd_part *h, const void *key, size_t klen,
                        uint32_t hash, int left, sd_value_out *out);
sd_status part_llen(sd_part *h, const void *key, size_t klen, uint32_t hash,
                    uint64_t *len);
sd_status part_list_items(sd_part *h, const void *key, size_t klen,
                          uint32_t hash, void *buf, size_t cap, size_t *used,
                          uint64_t *count);
void part_space(sd_part *h, uint64_t *capacity, uint64_t *free_bytes);
sd_status part_flush_expired(sd_part *h, uint64_t max, uint64_t *freed);
sd_status part_keys_chunk(sd_part *h, uint64_t *cursor, void *buf, size_t cap,
                          size_t *used, size_t *need);
sd_status part_count(sd_part *h, uint64_t *n);
sd_status part_verify(sd_part *h, char *buf, size_t cap, size_t *problems);
sd_status part_get_stats(sd_part *h, sd_stats *st);
bool sd_check_value(const sd_value_in *v);

/* Verify the items of one list; returns how many blocks they hold. */
uint64_t sd_verify_list(sd_part *h, const sd_view *v,
                        void (*report)(void *, const char *), void *ctx);
uint64_t sd_verify_gc(sd_part *h, void (*report)(void *, const char *),
                      void *ctx);

/* The first bucket at or after b whose summary bit is set (nbuckets if
 * none): scans use it to skip untouched pages of the index. */
static inline uint64_t sd_next_used_bucket(const sd_part *h, uint64_t b)
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
