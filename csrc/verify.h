/*
 * verify.h - every structural check of a stripe, and its statistics.
 */
#ifndef SHMDICT_VERIFY_H
#define SHMDICT_VERIFY_H

#include "core.h"

/* The stripe's heap capacity and free bytes (quick-listed blocks count as
 * free). Lock-free: a snapshot of two counters. */
void stripe_space(sd_stripe *s, uint64_t *capacity, uint64_t *free_bytes);

/* Check every structure of the stripe under its lock; describe each problem
 * as a line in buf (cap bytes, NUL-terminated) and count them in *problems.
 * SD_OK (even with problems), or the status of taking the lock. */
SD_MUST_USE sd_status stripe_verify(sd_stripe *s, char *buf, size_t cap,
                                    size_t *problems);

/* The stripe's counters into *st, under its lock. SD_OK or the status of
 * taking the lock. */
SD_MUST_USE sd_status stripe_get_stats(sd_stripe *s, sd_stats *st);

#endif /* SHMDICT_VERIFY_H */
