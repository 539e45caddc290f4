/*
 * verify.h - every structural check of a stripe, and its statistics.
 */
#ifndef SHMDICT_VERIFY_H
#define SHMDICT_VERIFY_H

#include "core.h"

void part_space(sd_part *h, uint64_t *capacity, uint64_t *free_bytes);

sd_status part_verify(sd_part *h, char *buf, size_t cap, size_t *problems);

sd_status part_get_stats(sd_part *h, sd_stats *st);

#endif /* SHMDICT_VERIFY_H */
