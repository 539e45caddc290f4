/*
 * layout.h - the byte layout of a shmdict file.
 *
 * Everything in this header describes bytes that live in a file under
 * /dev/shm and are mapped MAP_SHARED by every process that opens the dict.
 * Nothing here is a pointer: every reference is an offset from the start of
 * the file or a block index into the heap, and every such value is checked
 * against the process-local copy of the layout before it is used.
 *
 * Byte order is the host's (the file never leaves the machine); the format
 * word below encodes the sizes and offsets of the structures, so a build
 * with another layout (other word size, other pthread_mutex_t) refuses to
 * attach instead of misreading the file.
 *
 * The file, for a dict of `file_size` bytes split into `nparts` stripes
 * (a power of two: the top bits of a key's hash pick its stripe):
 *
 *   offset 0         +-------------------------------------------------+
 *                    | sd_header (4 KiB): magic, version, format word, |
 *                    | sizes, hash seed, stripe count, creator (pid,   |
 *                    | start time, pid namespace, nonce), state        |
 *   4096             +-------------------------------------------------+
 *                    | sd_slot[64]: hit/miss/set counters, one cache   |
 *                    | line per slot, slot = pid % 64, so processes    |
 *                    | don't share a line                              |
 *   8192             +-------------------------------------------------+
 *                    | stripe 0 | stripe 1 | ... (part_size bytes each)  |
 *                    +-------------------------------------------------+
 *
 * Each stripe is a dict of its own, with its own lock, index and heap, so
 * writers of different stripes never touch the same cache line. A stripe
 * of `part_size` bytes, offsets relative to its start:
 *
 *   0                +-------------------------------------------------+
 *                    | sd_pstate (4 KiB): entry counters, gc chain,    |
 *                    | clock hand, TLSF bitmaps and free-list heads,   |
 *                    | quick-list heads, write groups                  |
 *   lock_off         +-------------------------------------------------+
 *                    | sd_lock: robust pthread mutex, sequence counter |
 *                    | and undo log count on one line; the undo log    |
 *   summary_off      +-------------------------------------------------+
 *                    | bucket summary: one bit per 4 KiB page of       |
 *                    | buckets, set before the page's first entry is   |
 *                    | linked; scans skip pages whose bit is clear, so |
 *                    | they never fault in the untouched index of a    |
 *                    | big sparse dict                                 |
 *   refs_off         +-------------------------------------------------+
 *                    | uint8_t[nbuckets]: CLOCK reference marks for    |
 *                    | eviction, set by a hit only when clear; then    |
 *                    | sd_group[nbuckets / 64]: the write groups, the  |
 *                    | seq of the last write to a key of 64 buckets,   |
 *                    | by which readers tell a kept value still good.  |
 *                    | A page of either is backed with the first index |
 *                    | page it serves, and read only once that is      |
 *                    | marked in the summary                           |
 *   index_off        +-------------------------------------------------+
 *                    | buckets: uint32_t[nbuckets], block index of the |
 *                    | first entry of each chain, 0 = empty            |
 *   heap_off         +-------------------------------------------------+
 *                    | 16 reserved bytes (so block index 0 means NIL)  |
 *                    | block | block | block | ...        (16-aligned) |
 *   heap_off+heap_size +-----------------------------------------------+
 *
 * Every region above is a pure function of file_size and nparts (see
 * layout_for in file.c), so a reader recomputes it and compares instead
 * of trusting the header.
 *
 * A heap block (TLSF-style boundary tags, sizes are multiples of 16):
 *
 *   allocated:  [u64 size|flags][entry ..................................]
 *   free:       [u64 size|flags][u32 next][u32 prev] ........ [u64 size]
 *                                                     footer ^
 *   quick:      [u64 size|flags][u32 next] ...........................
 *
 *   flags: bit 0 SD_BLK_FREE      this block is free
 *          bit 1 SD_BLK_PREV_FREE the block just before this one is free,
 *                                 so its footer (the 8 bytes before this
 *                                 header) holds its size
 *          bit 2 SD_BLK_QUICK     a small freed block kept whole on its
 *                                 size's quick list; to its neighbours it
 *                                 is still in use, so nothing merges it
 *
 * An entry, the payload of an allocated block:
 *
 *   +0   u32 next    block index of the next entry in the chain (0 = end)
 *   +4   u32 hash    32-bit hash of the key; bucket = hash & (nbuckets-1)
 *   +8   u64 meta    bits 0-3 value type, bits 4-7 flags,
 *                    bits 8-63 expiry in ms on CLOCK_MONOTONIC (0 = never)
 *   +16  u32 klen    key length in bytes (UTF-8)
 *   +20  u32 vlen    value length in bytes (8 for int and float)
 *   +24  key bytes, zero-padded to a multiple of 8
 *   +24+pad8(klen)   value bytes (8-aligned, so numbers are aligned words)
 *
 * A list is an entry of type SD_T_LIST whose 16-byte value is
 * {u32 head, u32 tail, u64 count}; its items are blocks of their own,
 * laid out like entries with klen = 0 and the hash field holding the
 * previous item's block index. Items of a list that was deleted wait on
 * the header's gc chain and are freed a few at a time by later writes.
 *
 * A 16-byte key with a 16-byte value takes 8 + 24 + 16 + 16 = 64 bytes of
 * heap plus 4 bytes of bucket.
 */
#ifndef SHMDICT_LAYOUT_H
#define SHMDICT_LAYOUT_H

#include <assert.h>
#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define SD_MAGIC UINT64_C(0x31544349444d4853) /* "SHMDICT1" little-endian */
#define SD_VERSION                                                            \
    4u /* 2: quick lists; 3: reserved pages, shared dicts;                    \
           4: write groups */

#define SD_PAGE 4096u
#define SD_LINE 64u
#define SD_UNIT 16u /* heap granularity; block index = offset / 16 */
#define SD_UNIT_SHIFT 4u
#define SD_MIN_BLOCK 32u
#define SD_BLK_FREE UINT64_C(1)
#define SD_BLK_PREV_FREE UINT64_C(2)
#define SD_BLK_QUICK UINT64_C(4)
#define SD_BLK_FLAGS UINT64_C(15)

/* TLSF: first level = power of two, second level = 16 linear steps.
 * Sizes below SD_SMALL_LIMIT map to exact 16-byte classes in row 0. */
#define SD_FL_COUNT 32u
#define SD_SL_LOG2 4u
#define SD_SL_COUNT (1u << SD_SL_LOG2)
#define SD_SMALL_LIMIT (SD_UNIT * SD_SL_COUNT) /* 256 */
/* One quick list per small block size, 32..240. */
#define SD_QUICK_CLASSES (SD_SMALL_LIMIT / SD_UNIT - 2)

#define SD_LOG_CAP 1016u     /* undo entries per transaction */
#define SD_GROUP_BUCKETS 64u /* buckets per write group (sd_group) */
/* The bytes of write groups a stripe of nb buckets has (nb >= 16). */
#define SD_GROUPS_BYTES(nb) ((nb) < SD_GROUP_BUCKETS ? 16 : (nb) / 4)
#define SD_NSLOTS 64u
#define SD_MAX_PARTS 64u
#define SD_PARTS_OFF (2 * SD_PAGE) /* header page, slots page */
#define SD_ENTRY_HDR 24u
#define SD_BUCKET_BYTES_PER 64u /* one bucket per 64 bytes of file */
#define SD_BUCKETS_PER_PAGE (SD_PAGE / 4u) /* one summary bit covers these */

#define SD_MIN_SIZE (UINT64_C(64) << 10)
#define SD_MAX_SIZE (UINT64_C(64) << 30)
#define SD_MAX_KEY (UINT32_C(1) << 20)

/* Value types (meta bits 0-3). 0 never appears in a live entry. */
enum {
    SD_T_NONE = 1,
    SD_T_FALSE = 2,
    SD_T_TRUE = 3,
    SD_T_INT = 4,
    SD_T_FLOAT = 5,
    SD_T_STR = 6,
    SD_T_BYTES = 7,
    SD_T_LIST = 8,
    SD_T_MAX = 8
};
#define SD_META_TYPE 0x0fu
#define SD_META_ASCII 0x10u /* a str value that is pure ASCII */
#define SD_META_TAG 0x20u   /* a bytes value tagged by the caller (pickled) */
#define SD_META_FLAGS 0xf0u
#define SD_META_EXP_SHIFT 8u
#define SD_MAX_EXPIRY_MS ((UINT64_C(1) << 56) - 1)

/* Creation flags (sd_header.create_flags). */
#define SD_CREATE_EVICT 1u
#define SD_CREATE_RESERVED 2u /* every page was reserved at creation */
#define SD_CREATE_SHARED 4u   /* made by open(): no process owns it */

/* Header states (sd_header.state). */
enum { SD_STATE_LIVE = 1, SD_STATE_RETIRED = 2 };

/* One undo record: `where` is the file offset of the word that was changed,
 * with bit 0 set for a 64-bit word and clear for a 32-bit one (all logged
 * words are at least 4-aligned, so bit 0 of a real offset is free). */
typedef struct sd_undo {
    _Atomic uint64_t where;
    _Atomic uint64_t old;
} sd_undo;

/* A lock stripe. The mutex and the sequence counter sit on their own cache
 * lines: lockers write the first, optimistic readers only read the second. */
typedef struct sd_lock {
    /* The first cache line holds all a writer touches on every write, so
     * that a lock changing hands moves one line, not three. Readers only
     * read seq, which changes on every write anyway. */
    pthread_mutex_t mutex;          /* robust, process-shared */
    _Atomic uint64_t seq;           /* odd while a writer works */
    _Atomic uint32_t log_n;         /* undo records of the open transaction */
    _Atomic uint32_t flush_pending; /* flush_all in progress: redo it */
    /* 1 + the write group (sd_group) the holders are writing: its `wrote`
     * is not kept up to date while it stays so, readers take it as just
     * written. 0: none. One key written again and again (a counter) then
     * costs no store but on this line, which the holder owns anyway. */
    _Atomic uint32_t hot_group;
    /* Rarely written. */
    alignas(SD_LINE) _Atomic uint64_t recoveries; /* dead holders repaired */
    _Atomic uint64_t lock_waits; /* times a locker had to block */
    alignas(SD_LINE) sd_undo log[SD_LOG_CAP];
} sd_lock;

#define SD_LOCK_STRIDE (((sizeof(sd_lock) + SD_PAGE - 1) / SD_PAGE) * SD_PAGE)

typedef struct sd_header {
    /* Identity: written once at creation, before the file gets its name. */
    uint64_t magic;
    uint32_t version;
    uint32_t format; /* SD_FORMAT_WORD of the build that made the file */
    uint64_t file_size;
    uint64_t hash_seed;
    uint32_t nparts; /* stripes, a power of two */
    uint32_t create_flags;
    uint64_t part_size; /* bytes per stripe */
    /* The layout of every stripe, relative to its start. */
    uint64_t lock_off;
    uint64_t summary_off;
    uint64_t refs_off;
    uint64_t index_off;
    uint64_t nbuckets; /* per stripe */
    uint64_t heap_off;
    uint64_t heap_size;
    /* Creator: used to tell a dict whose owner was killed. */
    uint64_t creator_pid;
    uint64_t creator_start; /* process start time, clock ticks since boot */
    uint64_t creator_pidns; /* inode of the creator's pid namespace */
    uint64_t nonce;
    _Atomic uint32_t state; /* SD_STATE_*: CAS-ed once when taken over */
    uint32_t reserved0;
} sd_header;

/* A write group: the keys of SD_GROUP_BUCKETS consecutive buckets (after
 * the CLOCK marks, see the diagram; read.c, sd_near). `wrote` is the odd
 * seq (sd_lock) of the last lock hold that may have changed a key of the
 * group, `dropped` of the last that unlinked one (or either for all keys:
 * a flush, a repair). A reader that kept a key's value at an even seq
 * above `wrote` knows it is still good; above `dropped`, that the key's
 * entry is still in the block it was in. Unlogged, only ever raised. */
typedef struct sd_group {
    _Atomic uint64_t wrote;
    _Atomic uint64_t dropped;
} sd_group;

/* The mutable state of one stripe, protected by the stripe's lock. */
typedef struct sd_pstate {
    _Atomic uint64_t count;      /* entries stored */
    _Atomic uint64_t n_expiring; /* entries with an expiry */
    _Atomic uint64_t used_bytes; /* heap bytes in used blocks */
    _Atomic uint32_t gc_head;    /* list items waiting to be freed, or 0 */
    /* Heap pages [0, backed_pages) are reserved in the filesystem
     * (fallocate), so writes there can't fault. A hint: a wrong value
     * costs a refused write or a CorruptError, never a crash. */
    _Atomic uint32_t backed_pages;
    /* Statistics and hints: plain atomics, not logged (a crash may lose a
     * count, never structure). */
    _Atomic uint64_t evictions;
    _Atomic uint64_t expirations;
    _Atomic uint64_t clock_hand;  /* next bucket the evictor looks at */
    _Atomic uint64_t next_expiry; /* ms; no stored expiry is earlier */

    /* Allocator state. */
    alignas(SD_LINE) _Atomic uint32_t fl_bitmap;
    _Atomic uint32_t sl_bitmap[SD_FL_COUNT];
    _Atomic uint32_t heads[SD_FL_COUNT][SD_SL_COUNT];
    /* Quick lists (heap.c): small blocks freed whole, by exact size. They
     * count in used_bytes; quick_bytes says how much of that they are. */
    _Atomic uint32_t quick[SD_QUICK_CLASSES];
    _Atomic uint64_t quick_bytes;
} sd_pstate;

static_assert(sizeof(sd_header) <= SD_PAGE, "header must fit its page");
static_assert(sizeof(sd_pstate) <= SD_PAGE, "stripe state fits its page");
static_assert(offsetof(sd_header, magic) == 0, "magic first");
static_assert(offsetof(sd_pstate, fl_bitmap) % SD_LINE == 0, "alloc aligned");
static_assert(offsetof(sd_lock, hot_group) + 4 <= SD_LINE,
              "mutex, seq, log_n and hot_group share the first line");
static_assert(offsetof(sd_lock, recoveries) == SD_LINE, "counters line");
static_assert(offsetof(sd_lock, log) == 2 * SD_LINE, "log after counters");
static_assert(sizeof(pthread_mutex_t) <= SD_LINE, "mutex fits a line");
static_assert(sizeof(sd_undo) == 16, "undo record size");
static_assert(sizeof(sd_group) == 16, "a write group: two words");
static_assert(SD_SMALL_LIMIT == 256, "small classes cover 16..240");
static_assert(sizeof(_Atomic uint64_t) == 8 && alignof(_Atomic uint64_t) == 8,
              "lock-free 64-bit words");
static_assert(sizeof(_Atomic uint32_t) == 4, "lock-free 32-bit words");

/* Per-process counters, one cache line each. */
typedef struct sd_slot {
    _Atomic uint64_t hits;
    _Atomic uint64_t misses;
    _Atomic uint64_t sets;
    char pad[SD_LINE - 24];
} sd_slot;

static_assert(sizeof(sd_slot) == SD_LINE, "one slot per line");

/* The payload of an allocated block. */
typedef struct sd_entry {
    _Atomic uint32_t next;
    _Atomic uint32_t hash;
    _Atomic uint64_t meta;
    _Atomic uint32_t klen;
    _Atomic uint32_t vlen;
    unsigned char data[]; /* key, zero pad to 8, value */
} sd_entry;

/* The start of a free block (the footer is at the block's last 8 bytes). */
typedef struct sd_freeblk {
    _Atomic uint64_t hdr;
    _Atomic uint32_t next;
    _Atomic uint32_t prev;
} sd_freeblk;

static_assert(offsetof(sd_entry, meta) == 8, "entry meta word");
static_assert(offsetof(sd_entry, klen) == 16, "entry lengths");
static_assert(offsetof(sd_entry, data) == SD_ENTRY_HDR, "entry header size");
static_assert(sizeof(sd_freeblk) == 16, "free block links");
static_assert(SD_MIN_BLOCK >= sizeof(sd_freeblk) + 8, "room for footer");

/* The format word: mixes every size and offset a reader depends on. */
#define SD_FORMAT_WORD                                                        \
    ((uint32_t)(SD_VERSION * 0x9e3779b1u) ^                                   \
     (uint32_t)(sizeof(sd_header) * 131u) ^                                   \
     (uint32_t)(sizeof(sd_lock) * 8191u) ^                                    \
     (uint32_t)(offsetof(sd_lock, seq) << 8) ^                                \
     (uint32_t)(sizeof(pthread_mutex_t) << 24) ^                              \
     (uint32_t)(offsetof(sd_pstate, heads) << 12) ^                           \
     (uint32_t)(sizeof(sd_header) << 4) ^ (uint32_t)(SD_ENTRY_HDR << 20) ^    \
     (uint32_t)(SD_UNIT << 28))

#endif /* SHMDICT_LAYOUT_H */
