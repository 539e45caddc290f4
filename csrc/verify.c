/*
 * verify.c - checking a stripe's structure (the index, the lists, the gc
 * chain and, through heap.c, the heap), and its statistics.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <sys/mman.h>

#include "heap.h"
#include "index.h"
#include "tx.h"
#include "verify.h"

/* Heap bytes in use: quick-listed blocks count in used_bytes, but are
 * free to the user. */
static uint64_t in_use(sd_stripe *s)
{
    uint64_t used = LD(&s->st->used_bytes), quick = LD(&s->st->quick_bytes);
    return used >= quick ? used - quick : 0;
}

void stripe_space(sd_stripe *s, uint64_t *capacity, uint64_t *free_bytes)
{
    uint64_t cap = s->heap_size - SD_UNIT;
    uint64_t used = in_use(s);
    *capacity = cap;
    *free_bytes = used < cap ? cap - used : 0;
}

/* ---- verify ------------------------------------------------------------- */

typedef struct report_buf {
    char *buf;
    size_t cap, len;
    size_t problems;
} report_buf;

/* Count a problem and append its line to the report, while it fits. */
static void report(void *ctx, const char *msg)
{
    report_buf *r = ctx;
    r->problems++;
    size_t n = strlen(msg);
    if (r->len + n + 2 <= r->cap) {
        memcpy(r->buf + r->len, msg, n);
        r->buf[r->len + n] = '\n';
        r->len += n + 1;
        r->buf[r->len] = '\0';
    }
}

/* A page of the index whose summary bit is clear must hold only empty
 * buckets: scans skip it, but lookups read its buckets all the same. Pages
 * never touched are holes in the file and read as zeros, so only the ones
 * in memory (mincore) are read, which keeps verify from committing the
 * whole index of a sparse dict. */
static void verify_clear_pages(sd_stripe *s, report_buf *r)
{
    uint64_t npages =
        (s->nbuckets + SD_BUCKETS_PER_PAGE - 1) / SD_BUCKETS_PER_PAGE;
    char *index = (char *)(void *)s->buckets;
    if ((uintptr_t)index % SD_PAGE)
        return; /* mincore needs a page boundary; the layout gives one */
    unsigned char vec[256];
    for (uint64_t p0 = 0; p0 < npages; p0 += sizeof vec) {
        uint64_t n = npages - p0 < sizeof vec ? npages - p0 : sizeof vec;
        if (mincore(index + p0 * SD_PAGE, n * SD_PAGE, vec) != 0)
            return; /* can't tell what is resident: read nothing */
        for (uint64_t i = 0; i < n; i++) {
            uint64_t page = p0 + i;
            if (!(vec[i] & 1) ||
                (LD(&s->summary[page / 32]) >> (page % 32)) & 1)
                continue;
            uint64_t b = page * SD_BUCKETS_PER_PAGE;
            uint64_t end = b + SD_BUCKETS_PER_PAGE;
            for (; b < end && b < s->nbuckets; b++) {
                uint32_t idx = LD(&s->buckets[b]);
                if (idx) {
                    char msg[160];
                    snprintf(msg, sizeof msg,
                             "index: bucket %llu holds block %u, but its "
                             "page is marked empty",
                             (unsigned long long)b, idx);
                    report(r, msg);
                    break; /* one report per page */
                }
            }
        }
    }
}

/* Check the items of one list (links both ways, count, tail); returns how
 * many blocks they hold. */
static uint64_t verify_list(sd_stripe *s, const sd_view *v, report_buf *ctx)
{
    char msg[160];
    _Atomic uint32_t *ends = sd_list_ends(v);
    uint32_t idx = LD(&ends[0]), prev = 0;
    uint64_t n = 0;
    while (idx) {
        sd_view it;
        if (n > s->max_chain || !sd_read_item(s, idx, &it)) {
            snprintf(msg, sizeof msg, "list at block %u: bad item at %u",
                     v->idx, idx);
            report(ctx, msg);
            return n;
        }
        if (it.hash != prev) {
            snprintf(msg, sizeof msg, "list at block %u: item %u back link",
                     v->idx, idx);
            report(ctx, msg);
        }
        n++;
        prev = idx;
        idx = it.next;
    }
    if (prev != LD(&ends[1]) || n != LD(sd_list_count(v)) || n == 0) {
        snprintf(msg, sizeof msg,
                 "list at block %u: %llu items, count %llu, tail mismatch %d",
                 v->idx, (unsigned long long)n,
                 (unsigned long long)LD(sd_list_count(v)),
                 prev != LD(&ends[1]));
        report(ctx, msg);
    }
    return n;
}

/* Walk the gc chain; returns how many blocks it holds. */
static uint64_t verify_gc(sd_stripe *s, report_buf *ctx)
{
    uint32_t idx = LD(&s->st->gc_head);
    uint64_t n = 0;
    while (idx) {
        sd_view it;
        if (n > s->max_chain || !sd_read_item(s, idx, &it)) {
            report(ctx, "gc: the chain of list items to free is damaged");
            return n;
        }
        n++;
        idx = it.next;
    }
    return n;
}

SD_MUST_USE sd_status stripe_verify(sd_stripe *s, char *buf, size_t cap,
                                    size_t *problems)
{
    report_buf r = {buf, cap, 0, 0};
    char msg[200];
    if (cap)
        buf[0] = '\0';
    sd_tx t;
    sd_status rc = sd_tx_begin(s, &t);
    if (rc)
        return rc;
    sd_pstate *ps = s->st;
    uint64_t entries = 0, expiring = 0, items = 0;
    /* Chains are walked from the pages whose summary bit is set; the other
     * pages are checked to be empty by verify_clear_pages. */
    for (uint64_t b = sd_next_used_bucket(s, 0); b < s->nbuckets;
         b = sd_next_used_bucket(s, b + 1)) {
        uint32_t idx = LD(&s->buckets[b]);
        for (uint64_t steps = 0; idx; steps++) {
            sd_view v;
            if (steps > s->max_chain) {
                snprintf(msg, sizeof msg, "index: bucket %llu chain is cyclic",
                         (unsigned long long)b);
                report(&r, msg);
                break;
            }
            if (!sd_read_entry(s, idx, &v)) {
                snprintf(msg, sizeof msg,
                         "index: bucket %llu links to a bad entry at block %u",
                         (unsigned long long)b, idx);
                report(&r, msg);
                break;
            }
            if ((v.hash & (s->nbuckets - 1)) != b ||
                (s->shift < 32 && v.hash >> s->shift != s->index) ||
                sd_key_hash(s->hash_seed, v.e->data, v.klen) != v.hash) {
                snprintf(msg, sizeof msg,
                         "index: entry at block %u is in the wrong bucket or "
                         "has a wrong hash",
                         idx);
                report(&r, msg);
            }
            entries++;
            expiring += sd_meta_exp(v.meta) != 0;
            if (sd_is_list(v.meta))
                items += verify_list(s, &v, &r);
            idx = v.next;
        }
    }
    verify_clear_pages(s, &r);
    if (entries != LD(&ps->count)) {
        snprintf(msg, sizeof msg, "index: count says %llu, chains hold %llu",
                 (unsigned long long)LD(&ps->count),
                 (unsigned long long)entries);
        report(&r, msg);
    }
    if (expiring != LD(&ps->n_expiring)) {
        snprintf(msg, sizeof msg,
                 "index: n_expiring says %llu, chains hold %llu",
                 (unsigned long long)LD(&ps->n_expiring),
                 (unsigned long long)expiring);
        report(&r, msg);
    }
    items += verify_gc(s, &r);
    uint64_t used_blocks = 0;
    sd_verify_heap(s, report, &r, &used_blocks);
    if (used_blocks != entries + items) {
        snprintf(msg, sizeof msg,
                 "heap: %llu blocks in use, %llu entries and %llu list items "
                 "reachable (leak)",
                 (unsigned long long)used_blocks, (unsigned long long)entries,
                 (unsigned long long)items);
        report(&r, msg);
    }
    *problems = r.problems;
    return sd_tx_end(&t, SD_OK);
}

/* ---- statistics --------------------------------------------------------- */

SD_MUST_USE sd_status stripe_get_stats(sd_stripe *s, sd_stats *st)
{
    sd_tx t;
    sd_status rc = sd_tx_begin(s, &t);
    if (rc)
        return rc;
    st->count = LD(&s->st->count);
    st->n_expiring = LD(&s->st->n_expiring);
    st->used_bytes = in_use(s);
    st->heap_size = s->heap_size - SD_UNIT;
    st->nbuckets = s->nbuckets;
    st->recoveries = LD(&s->lock->recoveries);
    st->lock_waits = LD(&s->lock->lock_waits);
    st->evictions = LD(&s->st->evictions);
    st->expirations = LD(&s->st->expirations);
    st->evict = s->evict;
    st->pending_free = 0;
    for (uint32_t idx = LD(&s->st->gc_head);
         idx && st->pending_free <= s->max_chain; st->pending_free++) {
        sd_view v;
        if (!sd_read_item(s, idx, &v))
            break;
        idx = v.next;
    }
    return sd_tx_end(&t, SD_OK);
}
