/*
 * scan.h - listing the keys of one stripe, a slice of buckets at a time.
 */
#ifndef SHMDICT_SCAN_H
#define SHMDICT_SCAN_H

#include "core.h"

SD_MUST_USE sd_status stripe_keys_chunk(sd_stripe *s, uint64_t *cursor,
                                        void *buf, size_t cap, size_t *used,
                                        size_t *need);

#endif /* SHMDICT_SCAN_H */
