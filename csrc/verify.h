/*
 * verify.h - every structural check of a stripe, and its statistics.
 */
#ifndef SHMDICT_VERIFY_H
#define SHMDICT_VERIFY_H

#include "core.h"

void stripe_space(sd_stripe *s, uint64_t *capacity, uint64_t *free_bytes);

SD_MUST_USE sd_status stripe_verify(sd_stripe *s, char *buf, size_t cap,
                                    size_t *problems);

SD_MUST_USE sd_status stripe_get_stats(sd_stripe *s, sd_stats *st);

#endif /* SHMDICT_VERIFY_H */
