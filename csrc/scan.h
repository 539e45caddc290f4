/*
 * scan.h - listing the keys of one stripe, a slice of buckets at a time.
 */
#ifndef SHMDICT_SCAN_H
#define SHMDICT_SCAN_H

#include "core.h"

/* The live keys of up to SD_SCAN_SLICE buckets from *cursor, as records
 * {u32 len, bytes} into buf; *cursor moves past them (0: done). Takes and
 * releases the lock. SD_OK, SD_TOOBIG (one bucket's keys need *need bytes),
 * SD_CORRUPT, or the status of taking the lock. */
SD_MUST_USE sd_status stripe_keys_chunk(sd_stripe *s, uint64_t *cursor,
                                        void *buf, size_t cap, size_t *used,
                                        size_t *need);

#endif /* SHMDICT_SCAN_H */
