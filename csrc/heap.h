/*
 * heap.h - the TLSF heap of a stripe, with its quick lists, and the
 * filesystem pages under it.
 */
#ifndef SHMDICT_HEAP_H
#define SHMDICT_HEAP_H

#include "undo.h"

/* The index of the highest set bit of x (x != 0). */
static inline unsigned sd_fls64(uint64_t x)
{
    return 63u - (unsigned)__builtin_clzll(x);
}

/* The TLSF list (first level, second level) of a free block of `size`
 * bytes (heap.c). */
static inline void sd_tlsf_mapping(uint64_t size, unsigned *fl, unsigned *sl)
{
    if (size < SD_SMALL_LIMIT) {
        *fl = 0;
        *sl = (unsigned)(size >> SD_UNIT_SHIFT);
    } else {
        unsigned b = sd_fls64(size);
        *fl = b - 7;
        *sl = (unsigned)(size >> (b - SD_SL_LOG2)) & (SD_SL_COUNT - 1);
    }
}

/* Whether free blocks of sizes a and b go on the same TLSF list. */
static inline bool sd_same_list(uint64_t a, uint64_t b)
{
    unsigned fa, sa, fb, sb;
    sd_tlsf_mapping(a, &fa, &sa);
    sd_tlsf_mapping(b, &fb, &sb);
    return fa == fb && sa == sb;
}

/* Make the filesystem back [off, off+len) of the file (fallocate), so that
 * a first write there can't raise SIGBUS. Lock state: any. SD_NOSPACE when
 * the filesystem has no room; SD_OK where it can't reserve at all (the
 * guard is the net). Idempotent. */
SD_MUST_USE sd_status sd_reserve(const sd_stripe *s, uint64_t off,
                                 uint64_t len);

/* Back the heap up to heap byte `end`, growing the reservation in chunks of
 * 64 KiB to 1 MiB. Lock state: held (backed_pages is a hint, not logged).
 * SD_OK or SD_NOSPACE. */
SD_MUST_USE sd_status sd_heap_reserve_locked(sd_stripe *s, uint64_t end);

/* Lay out an empty heap: one free block. Plain stores: only for creation
 * and a (re)done flush, which recover by starting over. */
void sd_heap_init(sd_stripe *s);

/* Allocate a block whose payload holds at least `payload` bytes, into *idx.
 * Lock state: held, in an open transaction (every word logged). SD_NOMEM
 * when no free block fits (t->nospace set if the filesystem was what
 * failed), SD_CORRUPT for a damaged free list. */
SD_MUST_USE sd_status sd_alloc_locked(sd_tx *t, uint64_t payload,
                                      uint32_t *idx);

/* Free block idx: a small one goes whole onto its quick list (unless the
 * transaction has merge_frees set or the lists are at their cap), any other
 * is merged with its free neighbours. Lock state: held, in an open
 * transaction. Only sd_tx_commit calls it (frees are deferred, see sd_tx).
 * SD_CORRUPT if idx is not a block in use. */
SD_MUST_USE sd_status sd_free_locked(sd_tx *t, uint32_t idx);

/* Free block idx into the TLSF lists, merged with its free neighbours. Lock
 * state: held, in an open transaction. SD_CORRUPT if idx is not a block in
 * use or a neighbour's tags are damaged. */
SD_MUST_USE sd_status sd_free_merge_locked(sd_tx *t, uint32_t idx);

/* Whether any block sits on a quick list. */
static inline bool sd_quick_held(const sd_stripe *s)
{
    return LD(&s->st->quick_bytes) != 0;
}

/* One step of a drain of the quick lists: take one block off the first
 * non-empty quick list and free it merged. Returns 1 when it moved one
 * (or dropped a damaged list head), 0 when every quick list is empty (it
 * then zeroes quick_bytes: empty lists hold nothing, whatever a damaged
 * list left counted), -1 on damage (the caller aborts). Never commits:
 * the drain's loop, which commits after each step, is in room.c. */
int sd_quick_unlist_one_locked(sd_tx *t);

/* Would a block for `payload` fit where block idx is, once it is freed and
 * merged with free neighbours? Reads the boundary tags only. */
bool sd_fits_after_free(sd_stripe *s, uint32_t idx, uint64_t payload);

/* Walk every block of the heap and every free and quick list, and call
 * report(ctx, message) for each inconsistency; *used_blocks gets the count
 * of blocks in use. Lock state: held (reads only). */
void sd_verify_heap(sd_stripe *s, void (*report)(void *, const char *),
                    void *ctx, uint64_t *used_blocks);

#endif /* SHMDICT_HEAP_H */
