/*
 * shmdict.h - the C core of shmdict: a dictionary in a shared-memory file.
 *
 * This API knows nothing of Python. It takes C types and returns an
 * sd_status code; the binding maps each code to an exception through one
 * table. Functions never allocate memory or call back while the dict's lock
 * is held, except for the two blocking hooks, which are called only around
 * a wait for the lock and after it is released (see sd_set_block_hooks).
 * The interrupt hook is called during a wait only while the caller holds
 * no stripe's lock at all (see sd_set_interrupt_hook).
 *
 * Thread safety: one sd_handle may be used by many threads at once. Closing
 * it while another thread is inside a call is the caller's business.
 */
#ifndef SHMDICT_H
#define SHMDICT_H

#include <stddef.h>
#include <stdint.h>

/* Marks a function whose status must not be ignored (GCC and clang). */
#if defined(__GNUC__) || defined(__clang__)
#define SD_MUST_USE __attribute__((warn_unused_result))
#else
#define SD_MUST_USE
#endif

typedef enum sd_status {
    SD_OK = 0,
    SD_NOTFOUND,  /* no such live key (not an error for most calls) */
    SD_NOMEM,     /* no room for the item; nothing changed */
    SD_NOTNUM,    /* incr on a value that is not an int or float */
    SD_OVERFLOW,  /* incr result outside int64; nothing changed */
    SD_TOOBIG,    /* the out buffer is too small; out->len says how big */
    SD_BADARG,    /* an argument is out of range (key length, size, ...) */
    SD_CORRUPT,   /* the file is damaged (found while using it) */
    SD_FORMAT,    /* the file is not a shmdict dict of this format */
    SD_TIMEDOUT,  /* the lock was not granted within the timeout */
    SD_SYSERR,    /* a system call failed; errno says why */
    SD_INTERNAL,  /* a bug in the core (undo log overflow) */
    SD_EXISTS,    /* add: the key is there; cas: the value differs */
    SD_WRONGTYPE, /* a list where a scalar is wanted, or the reverse */
    SD_NOSPACE, /* the filesystem has no page for the item; nothing changed */
    SD_TORN,    /* the file was truncated under this handle: reopen it */
    /* the interrupt hook ended a wait for the lock; nothing changed */
    SD_INTERRUPTED,
    SD_STATUS_COUNT
} sd_status;

/* A value going in. `data`/`len` are used by str and bytes; `i` by int and
 * `f` by float; the other types carry nothing. */
typedef struct sd_value_in {
    uint8_t type;  /* SD_T_* from layout.h */
    uint8_t ascii; /* str only: the UTF-8 bytes are pure ASCII */
    uint8_t tag;   /* bytes only: stored and returned with SD_META_TAG, so
                      a reader can tell these bytes from any plain value */
    int64_t i;
    double f;
    const void *data;
    size_t len;
} sd_value_in;

/* A value coming out. The caller provides buf/cap for str and bytes; the
 * core copies the bytes there, or returns SD_TOOBIG with len set. */
typedef struct sd_value_out {
    uint8_t type;
    uint8_t ascii;
    uint8_t tag; /* see sd_value_in */
    int64_t i;
    double f;
    void *buf;
    size_t cap;
    size_t len;
    /* Set by sd_get, for SD_OK and SD_NOTFOUND: seq is nonzero if what it
     * found was read without the lock, and it then stays current for as
     * long as sd_still_current(d, part, hash, seq) says so (and, if
     * `expiring`, until the value's expiry). */
    uint64_t seq;
    uint32_t part;
    uint32_t hash;
    uint32_t idx; /* sd_get, SD_OK: the entry's heap block (for sd_near) */
    int expiring;
    uint64_t exp; /* sd_get, SD_OK: the value's expiry (ms, 0: never) */
    /* sd_get, sd_get_stale, sd_pop, sd_setdefault and sd_list_pop add the
     * ns they slept waiting for the lock (0 when they didn't): a caller
     * that calls again for the same request (SD_TOOBIG) charges it to the
     * span of the retries (sd_span_charge). */
    int64_t waited_ns;
} sd_value_out;

typedef struct sd_handle sd_handle;

/* Called by a thread that is about to block on the lock, and again (with
 * what the first returned) after the operation has released the lock. The
 * binding uses them to drop and retake the GIL. */
typedef void *(*sd_block_begin_fn)(void);
typedef void (*sd_block_end_fn)(void *token);
/* Called while a thread waits for a lock, every WAIT_SLICE (20 ms) or so,
 * with what block_begin returned (NULL without block hooks). Nonzero ends
 * the wait: the call returns SD_INTERRUPTED and has changed nothing. */
typedef int (*sd_interrupted_fn)(void *token);

/* lock_timeout_ms: wait forever (but see sd_set_interrupt_hook). */
#define SD_WAIT_FOREVER (-1)
/* Longer timeouts (about 139 years) mean no limit too. */
#define SD_MAX_TIMEOUT_MS (INT64_C(1) << 42)

enum {
    SD_ATTACH = 0,  /* open an existing dict */
    SD_CREATE = 1,  /* make a new dict, owned by the handle */
    SD_OPEN_ANY = 2 /* attach, or create one with no owner if missing */
};

typedef struct sd_open_opts {
    uint64_t size;           /* create: file size in bytes */
    unsigned mode;           /* create: permission bits */
    int create;              /* SD_ATTACH, SD_CREATE or SD_OPEN_ANY */
    int reserve;             /* create: back every page of the file now */
    int allow_foreign_owner; /* attach: accept a file owned by another uid */
    int64_t lock_timeout_ms; /* 0: don't wait; SD_WAIT_FOREVER (< 0) */
    int evict;               /* create: a full dict evicts (CLOCK) */
    unsigned nparts;         /* create: stripes, a power of two; 0: auto */
} sd_open_opts;

typedef struct sd_stats {
    uint64_t count;
    uint64_t n_expiring;
    uint64_t used_bytes;
    uint64_t heap_size;
    uint64_t nbuckets;
    uint64_t recoveries;
    uint64_t lock_waits;
    uint64_t hits;
    uint64_t misses;
    uint64_t sets;
    uint64_t evictions;
    uint64_t expirations;
    uint64_t pending_free;   /* list items waiting on the gc chain */
    uint64_t reserved_bytes; /* bytes of the file backed by the filesystem */
    int evict;
    int reserved;    /* made with `reserve`: every page backed */
    unsigned nparts; /* stripes */
} sd_stats;

/* sd_set_ex flags: one mode, plus options. */
enum {
    SD_MODE_SET = 0,     /* store */
    SD_MODE_ADD = 1,     /* store only if absent (or expired): SD_EXISTS */
    SD_MODE_REPLACE = 2, /* store only if present: SD_NOTFOUND */
    SD_MODE_MASK = 3,
    SD_NOEVICT = 16, /* never evict live items: SD_NOMEM instead */
    SD_KEEPTTL = 32, /* keep the key's expiry (ttl_ms ignored) */
};

/* Open or create the dict at `path`. On SD_SYSERR, errno holds the cause
 * (EEXIST for a live dict at the name on create, ENOENT on attach, ELOOP for
 * a symlink, EACCES for a foreign owner). SD_NOSPACE: the filesystem can't
 * back the header and lock pages (or, with `reserve`, the whole file).
 * Cost: O(stripes); creating reserves and writes only the header, lock and
 * summary pages and the heap's first and last pages, unless `reserve`. */
SD_MUST_USE sd_status sd_open(const char *path, const sd_open_opts *opts,
                              sd_handle **out);

/* Unmap and free the handle. When `h` created the file, in this process,
 * and the path still names that file, the path is unlinked. */
void sd_close(sd_handle *h);

/* Unlink the dict at `path` (whoever made it). SD_SYSERR/errno on failure. */
SD_MUST_USE sd_status sd_remove(const char *path);

/* 1 if the creator recorded in the dict at `path` still runs, 0 if not,
 * -1 with errno if the file can't be read. */
int sd_creator_alive(const char *path);

void sd_set_block_hooks(sd_handle *h, sd_block_begin_fn begin,
                        sd_block_end_fn end);
/* The hook a wait for a lock polls (NULL: none). It is called only while
 * the waiting thread holds no stripe's lock, so it may run any code, this
 * dict's calls included. A call that takes several stripes and is kept
 * waiting for one while it holds others lets those go after one slice,
 * waits for that one alone (polling the hook), and starts over. */
void sd_set_interrupt_hook(sd_handle *h, sd_interrupted_fn fn);
int sd_is_owner(const sd_handle *h);
/* Whether this handle made the file (create, or an open that found none). */
int sd_created(const sd_handle *h);
/* The lock timeout of every stripe, in ms: how long one call may wait for
 * locks in all. 0: try, and return SD_TIMEDOUT at once if a lock is held
 * (after a spin of a few microseconds); SD_WAIT_FOREVER (any value < 0):
 * no limit. */
void sd_set_lock_timeout(sd_handle *h, int64_t ms);

/* A span: what one call to the caller's own user is, when the caller
 * makes several core calls for it (a retry with a bigger buffer, a scan
 * in chunks). Every lock wait this thread makes between sd_span_enter and
 * sd_span_leave counts against the span, which starts with the handle's
 * lock timeout; once that is used up, waits only try. A span may be left
 * and entered again (to run code that must not be inside it in between)
 * and keeps what is left. Inside another span, enter and leave do
 * nothing: the outer one counts. Calls that take locks several times
 * (batches, scans) make their own. Initialise with SD_SPAN_INIT. */
typedef struct sd_span {
    int64_t left_ns; /* what is left: < 0 no limit */
    int state;       /* internal */
} sd_span;
#define SD_SPAN_INIT ((sd_span){.left_ns = 0, .state = 0})
void sd_span_enter(const sd_handle *h, sd_span *s);
void sd_span_leave(sd_span *s);
/* Before its first enter: the span is for retries of a call made outside
 * it, which slept `spent_ns` waiting (sd_value_out.waited_ns); that much
 * is taken off the timeout. So the first call needs no span. */
void sd_span_charge(sd_span *s, int64_t spent_ns);
/* How many stripes (independent locks and heaps) the dict has. */
unsigned sd_nparts(const sd_handle *h);
uint64_t sd_file_size(const sd_handle *h);

/* Key operations. Keys are 1..SD_MAX_KEY bytes. `ttl_ms` > 0 sets an
 * expiry that many milliseconds from now, 0 means none. All are O(1) on
 * average. */
SD_MUST_USE sd_status sd_get(sd_handle *h, const void *key, size_t klen,
                             sd_value_out *out);
/* Is a value sd_get gave out with out->seq != 0 still the current one? (No
 * lock holder has touched its stripe since.) If so it counts as a hit, as
 * sd_get would. Lock-free: one load of the stripe's sequence counter. */
int sd_still_current(sd_handle *d, uint32_t part, uint32_t hash, uint64_t seq);
/* What a caller that keeps the values sd_get gave out (the binding's near
 * cache) knows of one, to ask sd_near_check whether it is still the key's
 * value. Filled from the sd_value_out of the read: seq, hash, idx; meta is
 * the entry's meta word (sd_value_out's type, its flags SD_META_ASCII and
 * SD_META_TAG, and exp << SD_META_EXP_SHIFT); `word` the 8 bytes of an int
 * or float (as stored: the int64 or the double's bits), or the length of
 * a str or bytes value whose bytes, as stored (UTF-8 for a str), are at
 * `data` for as long as the entry is kept. */
typedef struct sd_near {
    uint64_t seq;
    uint64_t meta;
    uint64_t word;
    const void *data;
    uint32_t hash;
    uint32_t idx;
} sd_near; /* 40 bytes: the binding's slot is one cache line */
/* Is the value `n` describes still key's value, and not expired? 1 if so
 * (and it counts as a hit, as sd_get would), 0 if it may not be (then
 * sd_get tells). Lock-free. One load when no lock holder has touched the
 * stripe since n->seq, two when none has written a key of the key's write
 * group (the keys of 64 buckets) since. Otherwise the stored
 * value is compared with n's (if equal, n->seq, n->meta and n->idx move to
 * what was read): read from the entry at n->idx when no lock holder has
 * unlinked an entry or freed a block since n->seq (the entry can't have
 * moved), else after a lookup of the key as sd_get's. A value with an expiry
 * is 1 only when the expiry is surely ahead of sd_get's clock
 * (CLOCK_MONOTONIC): a coarse clock is read, and an expiry within its
 * resolution plus SD_NEAR_CLOCK_SLACK_MS of it answers 0. key/klen are the
 * key's bytes. */
int sd_near_check(sd_handle *d, const void *key, size_t klen, sd_near *n);
/* The stripe (sd_value_out.part) of a key whose hash is sd_value_out.hash. */
uint32_t sd_stripe_index(const sd_handle *d, uint32_t hash);
#define SD_NEAR_CLOCK_SLACK_MS 100
/* The sequence counter of a stripe (odd while a writer holds it): a
 * reader that finds every counter unchanged after reading several keys
 * without the lock read them all at one moment. */
uint64_t sd_part_seq(const sd_handle *d, unsigned part);
SD_MUST_USE sd_status sd_set(sd_handle *h, const void *key, size_t klen,
                             const sd_value_in *v, int64_t ttl_ms);
/* sd_set with a mode and options (flags above). `*evicted` (may be NULL)
 * gets the number of live items evicted to make room. */
SD_MUST_USE sd_status sd_set_ex(sd_handle *h, const void *key, size_t klen,
                                const sd_value_in *v, int64_t ttl_ms,
                                unsigned flags, uint64_t *evicted);
/* sd_set_ex for a caller that keeps the values it stores as if read back
 * (the binding's near cache): on SD_OK, kept->seq, meta, idx and hash are
 * filled as from a read of the value just stored, made at the moment the
 * set ended; the caller fills word and data. kept->seq is 0 when the set
 * failed or can't say. */
SD_MUST_USE sd_status sd_set_near(sd_handle *h, const void *key, size_t klen,
                                  const sd_value_in *v, int64_t ttl_ms,
                                  unsigned flags, uint64_t *evicted,
                                  sd_near *kept);
/* An expired value that is still stored is returned with *stale = 1. */
SD_MUST_USE sd_status sd_get_stale(sd_handle *h, const void *key, size_t klen,
                                   sd_value_out *out, int *stale);
/* Compare-and-set: SD_OK if the value equalled `expected` (same type and
 * value) and is now `nv`; SD_EXISTS if it differed; SD_NOTFOUND. */
SD_MUST_USE sd_status sd_cas(sd_handle *h, const void *key, size_t klen,
                             const sd_value_in *expected,
                             const sd_value_in *nv, int ttl_mode,
                             int64_t ttl_ms);
/* Remove the key and return its value (SD_TOOBIG leaves it in place). */
SD_MUST_USE sd_status sd_pop(sd_handle *h, const void *key, size_t klen,
                             sd_value_out *out);
/* The value, or store `dflt` and return SD_NOTFOUND. */
SD_MUST_USE sd_status sd_setdefault(sd_handle *h, const void *key, size_t klen,
                                    const sd_value_in *dflt,
                                    sd_value_out *out);
SD_MUST_USE sd_status sd_delete(sd_handle *h, const void *key, size_t klen);
/* `ttl_mode`: -1 keep the expiry, otherwise `ttl_ms` as in sd_set. */
SD_MUST_USE sd_status sd_incr(sd_handle *h, const void *key, size_t klen,
                              const sd_value_in *delta, int ttl_mode,
                              int64_t ttl_ms, sd_value_out *out);
/* sd_incr that, for a missing key and a non-NULL `init`, stores
 * init + delta with expiry `init_ttl_ms` (0: none). */
SD_MUST_USE sd_status sd_incr_init(sd_handle *h, const void *key, size_t klen,
                                   const sd_value_in *delta, int ttl_mode,
                                   int64_t ttl_ms, const sd_value_in *init,
                                   int64_t init_ttl_ms, sd_value_out *out);
/* Remaining time in ns (> 0), or 0 when the key never expires. */
SD_MUST_USE sd_status sd_ttl(sd_handle *h, const void *key, size_t klen,
                             int64_t *ns_left);
SD_MUST_USE sd_status sd_expire(sd_handle *h, const void *key, size_t klen,
                                int64_t ttl_ms);
SD_MUST_USE sd_status sd_flush_all(sd_handle *h);
/* Free up to `max` expired items (0: all), a slice of the table per lock
 * hold. */
SD_MUST_USE sd_status sd_flush_expired(sd_handle *h, uint64_t max,
                                       uint64_t *freed);

/* Batches. Each runs under one hold of the lock, so no other process sees
 * part of it. sd_get_many writes one record per key into buf:
 *   u8 type (0: missing), u8 ascii, u8 tag, u8 0, u32 len, then 8 bytes for a
 *   number or len bytes for str/bytes, padded to a multiple of 8;
 * SD_TOOBIG sets *need. sd_set_many stores every item or, if the dict runs
 * out of room, as many whole items as it could: *done says how many. */
SD_MUST_USE sd_status sd_get_many(sd_handle *h, size_t n,
                                  const char *const *keys, const size_t *klens,
                                  void *buf, size_t cap, size_t *need);
SD_MUST_USE sd_status sd_set_many(sd_handle *h, size_t n,
                                  const char *const *keys, const size_t *klens,
                                  const sd_value_in *vals, int64_t ttl_ms,
                                  size_t *done, uint64_t *evicted);
SD_MUST_USE sd_status sd_delete_many(sd_handle *h, size_t n,
                                     const char *const *keys,
                                     const size_t *klens, size_t *deleted);

/* Lists. Push returns the new length; pop copies the item out (SD_TOOBIG
 * leaves it in place) and removes the key when the list becomes empty. */
SD_MUST_USE sd_status sd_push(sd_handle *h, const void *key, size_t klen,
                              int left, const sd_value_in *v, uint64_t *len);
SD_MUST_USE sd_status sd_list_pop(sd_handle *h, const void *key, size_t klen,
                                  int left, sd_value_out *out);
SD_MUST_USE sd_status sd_llen(sd_handle *h, const void *key, size_t klen,
                              uint64_t *len);
/* Copy every item of the list at key, head first, into buf as the records
 * of sd_get_many, at one moment (under the lock). *count gets the number of
 * items and *used the bytes they take; SD_TOOBIG if that is more than cap
 * (retry with *used bytes). SD_NOTFOUND, SD_WRONGTYPE for a scalar. O(n). */
SD_MUST_USE sd_status sd_list_items(sd_handle *h, const void *key, size_t klen,
                                    void *buf, size_t cap, size_t *used,
                                    uint64_t *count);

/* The largest key + value (rounded up to 8 bytes each) one item can
 * have: one stripe's heap, less the block and entry headers. */
uint64_t sd_max_item(const sd_handle *h);

/* Heap bytes in all and free, without locking. O(1). */
void sd_space(sd_handle *h, uint64_t *capacity, uint64_t *free_bytes);
/* Live entries. O(1) while no entry has an expiry, else O(n). */
SD_MUST_USE sd_status sd_count(sd_handle *h, uint64_t *n);

/* Copy the keys of buckets [*cursor, ...) into buf as records of
 * [u32 length][bytes], holding the lock for one bounded slice of the table.
 * Sets *cursor to where the next call resumes, or to 0 when the table is
 * done. SD_TOOBIG when one bucket's keys don't fit: retry with
 * `*need` bytes. */
SD_MUST_USE sd_status sd_keys_chunk(sd_handle *h, uint64_t *cursor, void *buf,
                                    size_t cap, size_t *used, size_t *need);

/* Check every structure. Writes up to `cap` bytes of newline-separated
 * problem descriptions into `buf` and the number of problems found into
 * `*problems`. O(n) under the lock. */
SD_MUST_USE sd_status sd_verify(sd_handle *h, char *buf, size_t cap,
                                size_t *problems);

SD_MUST_USE sd_status sd_get_stats(sd_handle *h, sd_stats *st);

/* Test hook: after `n` more crash points in this process (steps of a
 * write), kill it with SIGKILL. 0 turns it off. Returns what was left of
 * the previous countdown, so a caller that armed it high can tell how
 * many points a write passed. */
int sd_set_crash_countdown(int n);
/* Test hook: the signal the crash point raises (SIGKILL unless set).
 * With SIGSTOP the process stops there, holding the stripe's lock, alive,
 * until SIGCONT; then the write goes on. Returns the previous one. */
int sd_set_crash_signal(int sig);
/* Whether this build has the crash points (SD_CRASH_POINTS): without them
 * the two hooks above arm nothing. */
int sd_crash_points_built(void);

/* A static, human-readable description of a status code. */
const char *sd_strstatus(sd_status s);

#endif /* SHMDICT_H */
