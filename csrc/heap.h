/*
 * heap.h - the TLSF heap of a stripe, with its quick lists, and the
 * filesystem pages under it.
 */
#ifndef SHMDICT_HEAP_H
#define SHMDICT_HEAP_H

#include "undo.h"

/* Make the filesystem back [off, off+len) of the file (fallocate), so
 * that a first write there can't raise SIGBUS. SD_NOSPACE when it has no
 * room; SD_OK where the filesystem can't reserve at all. Idempotent. */
SD_MUST_USE sd_status sd_reserve(const sd_stripe *s, uint64_t off,
                                 uint64_t len);

/* Back the heap up to heap byte `end` (growing in chunks). */
SD_MUST_USE sd_status sd_heap_reserve_locked(sd_stripe *s, uint64_t end);

void sd_heap_init(sd_stripe *s);

/* A block whose payload holds at least `payload` bytes; 0 when full. */
SD_MUST_USE sd_status sd_alloc_locked(sd_tx *t, uint64_t payload,
                                      uint32_t *idx);

/* Free a block: a small one goes whole onto its quick list (unless the
 * transaction has merge_frees set or the lists are at their cap), any
 * other is merged with its free neighbours. */
SD_MUST_USE sd_status sd_free_locked(sd_tx *t, uint32_t idx);

/* Free a block into the TLSF lists, merged with its free neighbours. */
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

void sd_verify_heap(sd_stripe *s, void (*report)(void *, const char *),
                    void *ctx, uint64_t *used_blocks);

#endif /* SHMDICT_HEAP_H */
