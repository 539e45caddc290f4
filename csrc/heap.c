/*
 * heap.c - a two-level segregated-fit (TLSF) heap inside the file.
 *
 * Why TLSF: allocation and free are O(1) (two bitmap scans, a few list
 * operations), neighbouring free blocks are merged at once through boundary
 * tags, so churn with mixed sizes doesn't strand memory in per-size free
 * lists, and the first fit it picks is always big enough, so there is no
 * list walk on the fast path.
 *
 * Free blocks are kept in SD_FL_COUNT x SD_SL_COUNT lists. Row 0 holds the
 * exact small sizes 32..240 (16-byte steps); row f >= 1 covers
 * [2^(f+7), 2^(f+8)) split into 16 equal steps. A request is rounded up to
 * the next step boundary before the bitmap search, so any block in the list
 * found fits. When that search fails, the request's own list is walked for a
 * block that fits exactly, so a value that fits in a free block is never
 * refused (this is the path a nearly full dict takes).
 *
 * Quick lists sit in front of that (as dlmalloc's fastbins do). A freed
 * block under 256 bytes is not merged: it keeps its size, gets the
 * SD_BLK_QUICK flag and goes on the list for that exact size, and the next
 * request of that size pops it. That is 4-5 logged words each way instead
 * of the 10-15 that a split or a merge with the big free block costs, and
 * entries of one shape that come and go (counters, sessions, rate-limit
 * keys) stay on the quick path. What they hold is bounded (quick_cap). A
 * write that needs a bigger block, or can't find room otherwise, first puts
 * every quick block back through the merging free (sd_quick_drain_commits,
 * room.c), so small blocks don't stay behind as holes among bigger entries.
 *
 * Costs: sd_alloc_locked and sd_free_locked are O(1), except the fallback
 * walk, which is O(blocks in one list). Every word they change is logged
 * (undo.h, sd_w32/sd_w64), so a crash at any point rolls back cleanly.
 *
 * Memory: a fresh heap is one free block; only its header and footer pages
 * are touched. Splitting takes blocks from the front, so every page a block
 * or a remainder header may touch lies below the highest end any
 * allocation reached (the footer page aside, reserved at creation). That
 * mark, st->backed_pages, is where the filesystem's reservation stands:
 * an allocation that would cross it first extends the reservation
 * (sd_heap_reserve_locked) in chunks, and a filesystem with no room makes
 * it fail as a full heap would, with t->nospace set to say why.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>

#include "heap.h"

#define SL_MASK ((1u << SD_SL_COUNT) - 1)

/* The free-list links of block idx. */
static inline sd_freeblk *fblk(const sd_stripe *s, uint64_t idx)
{
    return (sd_freeblk *)(void *)sd_blk(s, idx);
}

/* The size in a block header, or 0 if the header can't be right for a
 * block at idx. */
static uint64_t hdr_size(const sd_stripe *s, uint64_t idx, uint64_t hdr)
{
    uint64_t size = hdr & ~SD_BLK_FLAGS, start = idx << SD_UNIT_SHIFT;
    /* No sum: a damaged size near 2^64 must not wrap past the check. */
    if (size < SD_MIN_BLOCK || start > s->heap_size ||
        size > s->heap_size - start)
        return 0;
    return size;
}

/* The block after the one at idx of `size` bytes. */
static inline uint64_t next_idx(uint64_t idx, uint64_t size)
{
    return idx + (size >> SD_UNIT_SHIFT);
}

/* Whether a block may start at idx (a minimum block fits before the heap's
 * end). */
static inline bool has_block(const sd_stripe *s, uint64_t idx)
{
    return (idx << SD_UNIT_SHIFT) < s->heap_size;
}

/* ---- quick lists -------------------------------------------------------- */

static inline unsigned quick_class(uint64_t size)
{
    return (unsigned)(size >> SD_UNIT_SHIFT) - 2; /* 32 -> 0 */
}

/* The block size of quick list c. */
static inline uint64_t quick_size(unsigned c)
{
    return (uint64_t)(c + 2) << SD_UNIT_SHIFT;
}

/* At most 1/32 of the heap, and at most 256 KiB, sits on quick lists: a
 * drain is then at most 8k blocks (about a millisecond). */
static uint64_t quick_cap(const sd_stripe *s)
{
    uint64_t cap = s->heap_size / 32;
    return cap < (UINT64_C(256) << 10) ? cap : UINT64_C(256) << 10;
}

/* Take the first block off the quick list for `size` (an exact block
 * size below SD_SMALL_LIMIT), or return 0. A list whose head can't be
 * right is dropped rather than followed; verify() names the blocks that
 * were on it. */
static uint32_t quick_pop(sd_tx *t, uint64_t size)
{
    sd_stripe *s = t->s;
    _Atomic uint32_t *head = &s->st->quick[quick_class(size)];
    uint32_t idx = LD(head);
    if (!idx)
        return 0;
    if (!sd_idx_ok(s, idx)) {
        sd_w32(t, head, 0);
        return 0;
    }
    _Atomic uint64_t *hp = sd_blk_hdr(s, idx);
    uint64_t hdr = LD(hp);
    uint32_t next = LD(&fblk(s, idx)->next);
    if ((hdr & (SD_BLK_FREE | SD_BLK_QUICK)) != SD_BLK_QUICK ||
        hdr_size(s, idx, hdr) != size || (next && !sd_idx_ok(s, next))) {
        sd_w32(t, head, 0);
        return 0;
    }
    sd_w32(t, head, next);
    sd_w64(t, hp, hdr & ~SD_BLK_QUICK);
    uint64_t qb = LD(&s->st->quick_bytes);
    sd_w64(t, &s->st->quick_bytes, qb >= size ? qb - size : 0);
    return idx;
}

/* ---- free lists --------------------------------------------------------- */

SD_MUST_USE static sd_status list_remove(sd_tx *t, uint32_t idx, uint64_t size)
{
    sd_stripe *s = t->s;
    sd_pstate *ps = s->st;
    unsigned fl, sl;
    sd_tlsf_mapping(size, &fl, &sl);
    sd_freeblk *b = fblk(s, idx);
    uint32_t next = LD(&b->next), prev = LD(&b->prev);
    if ((next && !sd_idx_ok(s, next)) || (prev && !sd_idx_ok(s, prev)))
        return SD_CORRUPT;
    if (prev) {
        if (LD(&fblk(s, prev)->next) != idx)
            return SD_CORRUPT;
        sd_w32(t, &fblk(s, prev)->next, next);
    } else {
        if (LD(&ps->heads[fl][sl]) != idx)
            return SD_CORRUPT;
        sd_w32(t, &ps->heads[fl][sl], next);
        if (!next) {
            uint32_t slm = LD(&ps->sl_bitmap[fl]) & ~(1u << sl);
            sd_w32(t, &ps->sl_bitmap[fl], slm);
            if (!slm)
                sd_w32(t, &ps->fl_bitmap, LD(&ps->fl_bitmap) & ~(1u << fl));
        }
    }
    if (next)
        sd_w32(t, &fblk(s, next)->prev, prev);
    return SD_OK;
}

/* Push free block idx of `size` onto its TLSF list (logged). */
static void list_insert(sd_tx *t, uint32_t idx, uint64_t size)
{
    sd_stripe *s = t->s;
    sd_pstate *ps = s->st;
    unsigned fl, sl;
    sd_tlsf_mapping(size, &fl, &sl);
    uint32_t head = LD(&ps->heads[fl][sl]);
    if (head && !sd_idx_ok(s, head))
        head = 0; /* drop a damaged list rather than follow it */
    sd_freeblk *b = fblk(s, idx);
    sd_w32(t, &b->next, head);
    sd_w32(t, &b->prev, 0);
    if (head)
        sd_w32(t, &fblk(s, head)->prev, idx);
    sd_w32(t, &ps->heads[fl][sl], idx);
    sd_w32(t, &ps->sl_bitmap[fl], LD(&ps->sl_bitmap[fl]) | (1u << sl));
    sd_w32(t, &ps->fl_bitmap, LD(&ps->fl_bitmap) | (1u << fl));
}

/* Head of the first non-empty list at or above (fl, sl), or 0. */
static uint32_t find_list(sd_stripe *s, unsigned fl, unsigned sl)
{
    sd_pstate *ps = s->st;
    /* Bits past the row's 16 lists can only come from damage. */
    uint32_t slm = LD(&ps->sl_bitmap[fl]) & SL_MASK & (~0u << sl);
    if (!slm) {
        if (fl + 1 >= SD_FL_COUNT)
            return 0;
        uint32_t flm = LD(&ps->fl_bitmap) & (~0u << (fl + 1));
        if (!flm)
            return 0;
        fl = (unsigned)__builtin_ctz(flm);
        slm = LD(&ps->sl_bitmap[fl]) & SL_MASK;
        if (!slm)
            return 0;
    }
    sl = (unsigned)__builtin_ctz(slm);
    return LD(&ps->heads[fl][sl]);
}

/* Where a block of `want` bytes at idx stops touching the heap: its end,
 * plus the header and links of the remainder split off after it. */
static inline uint64_t block_end(uint64_t idx, uint64_t want)
{
    return (idx << SD_UNIT_SHIFT) + want + SD_UNIT;
}

/* Walk the free list of `want`'s own class for a block of at least `want`
 * bytes that ends below heap byte `limit`; *idx = 0 if none. */
SD_MUST_USE static sd_status walk_own_list(sd_stripe *s, uint64_t want,
                                           uint64_t limit, uint32_t *idx)
{
    unsigned fl, sl;
    sd_tlsf_mapping(want, &fl, &sl);
    uint32_t cur = LD(&s->st->heads[fl][sl]);
    for (uint64_t steps = 0; cur && steps < s->max_chain; steps++) {
        if (!sd_idx_ok(s, cur))
            return SD_CORRUPT;
        uint64_t sz = hdr_size(s, cur, LD(sd_blk_hdr(s, cur)));
        if (sz >= want && block_end(cur, want) <= limit) {
            *idx = cur;
            return SD_OK;
        }
        cur = LD(&fblk(s, cur)->next);
    }
    return SD_OK;
}

/* ---- alloc and free ----------------------------------------------------- */

SD_MUST_USE sd_status sd_alloc_locked(sd_tx *t, uint64_t payload,
                                      uint32_t *out)
{
    sd_stripe *s = t->s;
    *out = 0;
    if (t->overflow)
        return SD_INTERNAL; /* the undo log is full: nothing more may change */
    uint64_t want = sd_block_size_for(payload);
    if (want > s->heap_size - SD_UNIT)
        return SD_NOMEM;
    if (want < SD_SMALL_LIMIT && LD(&s->st->quick[quick_class(want)])) {
        uint32_t q = quick_pop(t, want);
        if (q) {
            *out = q; /* it stayed in used_bytes */
            return SD_OK;
        }
    }
    unsigned fl, sl;
    uint64_t rounded = want;
    if (want >= SD_SMALL_LIMIT)
        rounded += (UINT64_C(1) << (sd_fls64(want) - SD_SL_LOG2)) - 1;
    uint32_t idx = 0;
    if (t->prefer && sd_idx_ok(s, t->prefer)) {
        uint64_t ph = LD(sd_blk_hdr(s, t->prefer));
        if ((ph & SD_BLK_FREE) && hdr_size(s, t->prefer, ph) >= want)
            idx = t->prefer;
    }
    if (!idx && rounded < (UINT64_C(1) << (SD_FL_COUNT + 7))) {
        sd_tlsf_mapping(rounded, &fl, &sl);
        idx = find_list(s, fl, sl);
    }
    if (!idx && want >= SD_SMALL_LIMIT) {
        /* Good fit failed: walk the request's own list for a block that
         * is big enough after all. */
        sd_status rc = walk_own_list(s, want, UINT64_MAX, &idx);
        if (rc)
            return rc;
    }
    if (!idx)
        return SD_NOMEM;
    if (!sd_idx_ok(s, idx))
        return SD_CORRUPT;
    /* The block, and the header and links of the remainder after it, must
     * lie in reserved pages. If the filesystem can't give more, a block
     * of the request's own list that already does is as good (room that
     * an eviction just made, say); else the heap counts as full. */
    uint64_t backed = (uint64_t)LD(&s->st->backed_pages) * SD_PAGE;
    if (SD_UNLIKELY(block_end(idx, want) > backed) &&
        sd_heap_reserve_locked(s, block_end(idx, want)) != SD_OK) {
        idx = 0;
        sd_status rc = walk_own_list(s, want, backed, &idx);
        if (rc)
            return rc;
        if (!idx) {
            t->nospace = true;
            return SD_NOMEM;
        }
    }
    _Atomic uint64_t *hp = sd_blk_hdr(s, idx);
    uint64_t hdr = LD(hp);
    uint64_t size = hdr_size(s, idx, hdr);
    if (!size || !(hdr & SD_BLK_FREE) || size < want)
        return SD_CORRUPT;
    sd_status rc = list_remove(t, idx, size);
    if (rc)
        return rc;
    if (size - want >= SD_MIN_BLOCK) {
        uint64_t rem = next_idx(idx, want), rsize = size - want;
        sd_w64(t, sd_blk_hdr(s, rem), rsize | SD_BLK_FREE);
        sd_w64(t, (_Atomic uint64_t *)(void *)(sd_blk(s, rem) + rsize - 8),
               rsize);
        list_insert(t, (uint32_t)rem, rsize);
        size = want;
    } else {
        uint64_t nx = next_idx(idx, size);
        if (has_block(s, nx)) {
            _Atomic uint64_t *np = sd_blk_hdr(s, nx);
            sd_w64(t, np, LD(np) & ~SD_BLK_PREV_FREE);
        }
    }
    sd_w64(t, hp, size | (hdr & SD_BLK_PREV_FREE));
    sd_w64(t, &s->st->used_bytes, LD(&s->st->used_bytes) + size);
    *out = idx;
    return SD_OK;
}

/* Free the in-use block idx of `size` (header hdr) into the TLSF lists,
 * merged with its free neighbours. Lock state: held, in an open
 * transaction. SD_CORRUPT for damaged boundary tags. */
SD_MUST_USE static sd_status merge_free(sd_tx *t, uint32_t idx, uint64_t hdr,
                                        uint64_t size);

/* The size of the in-use block at idx (its header in *hdr), or 0 if idx
 * can't be a block in use: freeing it would damage the heap. */
static uint64_t used_block(const sd_stripe *s, uint32_t idx, uint64_t *hdr)
{
    if (!sd_idx_ok(s, idx))
        return 0;
    *hdr = LD(sd_blk_hdr(s, idx));
    uint64_t size = hdr_size(s, idx, *hdr);
    return *hdr & (SD_BLK_FREE | SD_BLK_QUICK) ? 0 : size;
}

SD_MUST_USE sd_status sd_free_locked(sd_tx *t, uint32_t idx)
{
    sd_stripe *s = t->s;
    uint64_t hdr;
    uint64_t size = used_block(s, idx, &hdr);
    if (!size)
        return SD_CORRUPT;
    uint64_t qb = LD(&s->st->quick_bytes);
    uint64_t cap = quick_cap(s);
    if (size < SD_SMALL_LIMIT && !t->merge_frees && size <= cap &&
        qb <= cap - size) {
        _Atomic uint32_t *head = &s->st->quick[quick_class(size)];
        uint32_t old = LD(head);
        sd_w32(t, &fblk(s, idx)->next, sd_idx_ok(s, old) ? old : 0);
        sd_w64(t, sd_blk_hdr(s, idx), hdr | SD_BLK_QUICK);
        sd_w32(t, head, idx);
        sd_w64(t, &s->st->quick_bytes, qb + size);
        return SD_OK;
    }
    return merge_free(t, idx, hdr, size);
}

SD_MUST_USE sd_status sd_free_merge_locked(sd_tx *t, uint32_t idx)
{
    uint64_t hdr;
    uint64_t size = used_block(t->s, idx, &hdr);
    return size ? merge_free(t, idx, hdr, size) : SD_CORRUPT;
}

/* Free the in-use block idx of `size` (header hdr) into the TLSF lists,
 * merged with its free neighbours. */
SD_MUST_USE static sd_status merge_free(sd_tx *t, uint32_t idx, uint64_t hdr,
                                        uint64_t size)
{
    sd_stripe *s = t->s;
    uint64_t used = LD(&s->st->used_bytes);
    sd_w64(t, &s->st->used_bytes, used >= size ? used - size : 0);
    uint64_t start = idx, total = size;
    sd_status rc;

    uint64_t ns = 0, ps = 0, pidx = 0, nx = next_idx(idx, size);
    if (has_block(s, nx) && (LD(sd_blk_hdr(s, nx)) & SD_BLK_FREE)) {
        if (!(ns = hdr_size(s, nx, LD(sd_blk_hdr(s, nx)))))
            return SD_CORRUPT;
        if ((rc = list_remove(t, (uint32_t)nx, ns)))
            return rc;
        total += ns;
    }
    if (hdr & SD_BLK_PREV_FREE) {
        ps = LD((_Atomic uint64_t *)(void *)(sd_blk(s, idx) - 8));
        pidx = idx - (ps >> SD_UNIT_SHIFT);
        if (ps < SD_MIN_BLOCK || ps % SD_UNIT ||
            (ps >> SD_UNIT_SHIFT) >= idx || !sd_idx_ok(s, pidx))
            return SD_CORRUPT;
        uint64_t ph = LD(sd_blk_hdr(s, pidx));
        if (!(ph & SD_BLK_FREE) || hdr_size(s, pidx, ph) != ps)
            return SD_CORRUPT;
        start = pidx;
        total += ps;
    }
    /* The free block before keeps its place in its list if the merged one
     * is of the same list (most frees next to a big free block). */
    bool stays = ps && sd_same_list(ps, total);
    if (ps && !stays && (rc = list_remove(t, (uint32_t)pidx, ps)))
        return rc;
    sd_w64(t, sd_blk_hdr(s, start), total | SD_BLK_FREE);
    sd_w64(t, (_Atomic uint64_t *)(void *)(sd_blk(s, start) + total - 8),
           total);
    uint64_t after = next_idx(start, total);
    if (has_block(s, after)) {
        _Atomic uint64_t *ap = sd_blk_hdr(s, after);
        sd_w64(t, ap, LD(ap) | SD_BLK_PREV_FREE);
    }
    if (!stays)
        list_insert(t, (uint32_t)start, total);
    return SD_OK;
}

int sd_quick_unlist_one_locked(sd_tx *t)
{
    sd_stripe *s = t->s;
    for (unsigned c = 0; c < SD_QUICK_CLASSES; c++) {
        if (!LD(&s->st->quick[c]))
            continue;
        uint32_t idx = quick_pop(t, quick_size(c));
        if (idx && (sd_free_merge_locked(t, idx) != SD_OK || t->overflow))
            return -1; /* damage: verify() names it */
        return 1;
    }
    sd_w64(t, &s->st->quick_bytes, 0);
    return 0;
}

/* Would a block for `payload` fit where block idx is, once it is freed and
 * merged with free neighbours? */
bool sd_fits_after_free(sd_stripe *s, uint32_t idx, uint64_t payload)
{
    uint64_t hdr = LD(sd_blk_hdr(s, idx));
    uint64_t size = hdr & ~SD_BLK_FLAGS;
    uint64_t want = sd_block_size_for(payload);
    uint64_t nx = idx + (size >> SD_UNIT_SHIFT);
    if ((nx << SD_UNIT_SHIFT) < s->heap_size) {
        uint64_t nh = LD(sd_blk_hdr(s, nx)), ns = nh & ~SD_BLK_FLAGS;
        if ((nh & SD_BLK_FREE) && ns <= s->heap_size)
            size += ns;
    }
    if (hdr & SD_BLK_PREV_FREE) {
        uint64_t ps = LD((_Atomic uint64_t *)(void *)(sd_blk(s, idx) - 8));
        if (ps <= s->heap_size) /* damaged sizes must not wrap the sum */
            size += ps;
    }
    return size >= want;
}

/* ---- backing pages ------------------------------------------------------ */

SD_MUST_USE sd_status sd_reserve(const sd_stripe *s, uint64_t off,
                                 uint64_t len)
{
    if (len == 0 || off >= s->file_size)
        return SD_OK;
    if (len > s->file_size - off)
        len = s->file_size - off;
    /* KEEP_SIZE: a file someone truncated must stay short, so that the
     * guard sees it, not grow back full of zeros. */
    if (fallocate(s->fd, FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) == 0)
        return SD_OK;
    if (errno == ENOSPC || errno == EFBIG || errno == EDQUOT)
        return SD_NOSPACE;
    /* EOPNOTSUPP (a filesystem that can't reserve), EINTR, ...: go on as
     * before reservation existed; the guard is the net. */
    return SD_OK;
}

#define RESERVE_MIN (UINT64_C(64) << 10)

#define RESERVE_MAX (UINT64_C(1) << 20)

SD_MUST_USE sd_status sd_heap_reserve_locked(sd_stripe *s, uint64_t end)
{
    uint64_t limit = (s->heap_size + SD_PAGE - 1) / SD_PAGE * SD_PAGE;
    uint64_t have = (uint64_t)LD(&s->st->backed_pages) * SD_PAGE;
    if (have > limit)
        have = limit; /* a damaged mark: the guard catches what it hides */
    if (end > limit)
        end = limit;
    if (end <= have)
        return SD_OK;
    /* Grow by an eighth of what is there, 64 KiB to 1 MiB at a time: few
     * fallocate calls, and little reserved that isn't used. */
    uint64_t step = have / 8;
    step = step < RESERVE_MIN   ? RESERVE_MIN
           : step > RESERVE_MAX ? RESERVE_MAX
                                : step;
    uint64_t need = (end + SD_PAGE - 1) / SD_PAGE * SD_PAGE;
    uint64_t want = have + step > need ? have + step : need;
    if (want > limit)
        want = limit;
    sd_status rc = sd_reserve(s, s->heap_off + have, want - have);
    if (rc != SD_OK && want > need) /* then just what this block needs */
        rc = sd_reserve(s, s->heap_off + have, (want = need) - have);
    if (rc == SD_OK)
        ST(&s->st->backed_pages, (uint32_t)(want / SD_PAGE));
    return rc;
}

/* Lay out an empty heap: one free block from index 1 to the end. Plain
 * stores: callers are creating the file or redoing a flush, both of which
 * recover by starting over. */
void sd_heap_init(sd_stripe *s)
{
    sd_pstate *ps = s->st;
    ST(&ps->fl_bitmap, 0u);
    for (unsigned c = 0; c < SD_QUICK_CLASSES; c++)
        ST(&ps->quick[c], 0u);
    ST(&ps->quick_bytes, UINT64_C(0));
    for (unsigned f = 0; f < SD_FL_COUNT; f++) {
        ST(&ps->sl_bitmap[f], 0u);
        for (unsigned sl = 0; sl < SD_SL_COUNT; sl++)
            ST(&ps->heads[f][sl], 0u);
    }
    uint64_t size = s->heap_size - SD_UNIT;
    ST(sd_blk_hdr(s, 1), size | SD_BLK_FREE);
    ST((_Atomic uint64_t *)(void *)(sd_blk(s, 1) + size - 8), size);
    sd_freeblk *b = fblk(s, 1);
    ST(&b->next, 0u);
    ST(&b->prev, 0u);
    unsigned fl, sl;
    sd_tlsf_mapping(size, &fl, &sl);
    ST(&ps->heads[fl][sl], 1u);
    ST(&ps->sl_bitmap[fl], 1u << sl);
    ST(&ps->fl_bitmap, 1u << fl);
    ST(&ps->used_bytes, UINT64_C(0));
}

/* ---- verification ------------------------------------------------------- */

#define REPORT(...)                                                           \
    do {                                                                      \
        char msg_[160];                                                       \
        snprintf(msg_, sizeof msg_, __VA_ARGS__);                             \
        report(ctx, msg_);                                                    \
    } while (0)

void sd_verify_heap(sd_stripe *s, void (*report)(void *, const char *),
                    void *ctx, uint64_t *used_blocks)
{
    sd_pstate *ps = s->st;
    uint64_t idx = 1, free_blocks = 0, used_bytes = 0, used = 0;
    uint64_t quick_blocks = 0, quick_bytes = 0;
    bool prev_free = false;
    while (has_block(s, idx)) {
        uint64_t hdr = LD(sd_blk_hdr(s, idx));
        uint64_t size = hdr_size(s, idx, hdr);
        if (!size || size % SD_UNIT) {
            REPORT("heap: bad block header %#llx at block %llu",
                   (unsigned long long)hdr, (unsigned long long)idx);
            return; /* the walk can't go on */
        }
        bool is_free = hdr & SD_BLK_FREE;
        if (is_free && (hdr & SD_BLK_QUICK))
            REPORT("heap: block %llu is both free and quick",
                   (unsigned long long)idx);
        if (!!(hdr & SD_BLK_PREV_FREE) != prev_free)
            REPORT("heap: block %llu prev-free flag is wrong",
                   (unsigned long long)idx);
        if (is_free && prev_free)
            REPORT("heap: free blocks %llu and its predecessor not merged",
                   (unsigned long long)idx);
        if (is_free) {
            free_blocks++;
            uint64_t foot =
                LD((_Atomic uint64_t *)(void *)(sd_blk(s, idx) + size - 8));
            if (foot != size)
                REPORT("heap: free block %llu footer %llu != size %llu",
                       (unsigned long long)idx, (unsigned long long)foot,
                       (unsigned long long)size);
        } else if (hdr & SD_BLK_QUICK) {
            quick_blocks++;
            quick_bytes += size;
            used_bytes += size;
            if (size >= SD_SMALL_LIMIT)
                REPORT("heap: quick block %llu is too big (%llu)",
                       (unsigned long long)idx, (unsigned long long)size);
        } else {
            used++;
            used_bytes += size;
        }
        prev_free = is_free;
        idx = next_idx(idx, size);
    }
    if ((idx << SD_UNIT_SHIFT) != s->heap_size)
        REPORT("heap: blocks end at %llu, heap ends at %llu",
               (unsigned long long)(idx << SD_UNIT_SHIFT),
               (unsigned long long)s->heap_size);
    if (used_bytes != LD(&ps->used_bytes))
        REPORT("heap: used_bytes says %llu, blocks hold %llu",
               (unsigned long long)LD(&ps->used_bytes),
               (unsigned long long)used_bytes);
    *used_blocks = used;
    if (quick_bytes != LD(&ps->quick_bytes))
        REPORT("heap: quick_bytes says %llu, quick blocks hold %llu",
               (unsigned long long)LD(&ps->quick_bytes),
               (unsigned long long)quick_bytes);
    uint64_t quick_listed = 0;
    for (unsigned c = 0; c < SD_QUICK_CLASSES; c++) {
        uint64_t want = quick_size(c);
        uint32_t cur = LD(&ps->quick[c]);
        for (uint64_t n = 0; cur; n++) {
            if (n >= quick_blocks || !sd_idx_ok(s, cur)) {
                REPORT("alloc: quick list %u is cyclic or leaves the heap", c);
                break;
            }
            uint64_t hdr = LD(sd_blk_hdr(s, cur));
            if ((hdr & (SD_BLK_FREE | SD_BLK_QUICK)) != SD_BLK_QUICK ||
                hdr_size(s, cur, hdr) != want) {
                REPORT("alloc: block %u on quick list %u is not a quick "
                       "block of %llu bytes",
                       cur, c, (unsigned long long)want);
                break;
            }
            quick_listed++;
            cur = LD(&fblk(s, cur)->next);
        }
    }
    if (quick_listed != quick_blocks)
        REPORT("alloc: %llu quick blocks in the heap, %llu on quick lists",
               (unsigned long long)quick_blocks,
               (unsigned long long)quick_listed);

    uint64_t listed = 0;
    uint32_t flm = LD(&ps->fl_bitmap);
    for (unsigned f = 0; f < SD_FL_COUNT; f++) {
        uint32_t slm = LD(&ps->sl_bitmap[f]);
        if (!!(flm & (1u << f)) != !!slm)
            REPORT("alloc: first-level bit %u disagrees with row", f);
        for (unsigned sl = 0; sl < SD_SL_COUNT; sl++) {
            uint32_t cur = LD(&ps->heads[f][sl]), prev = 0;
            if (!!(slm & (1u << sl)) != !!cur)
                REPORT("alloc: bitmap bit (%u,%u) disagrees with list", f, sl);
            for (uint64_t n = 0; cur; n++) {
                if (n > free_blocks || !sd_idx_ok(s, cur)) {
                    REPORT("alloc: list (%u,%u) is cyclic or leaves the heap",
                           f, sl);
                    break;
                }
                uint64_t hdr = LD(sd_blk_hdr(s, cur));
                uint64_t size = hdr_size(s, cur, hdr);
                unsigned mf, ms;
                sd_tlsf_mapping(size, &mf, &ms);
                if (!size || !(hdr & SD_BLK_FREE) || mf != f || ms != sl)
                    REPORT("alloc: block %u in list (%u,%u) is not a free "
                           "block of that class",
                           cur, f, sl);
                if (LD(&fblk(s, cur)->prev) != prev)
                    REPORT("alloc: block %u has a wrong back link", cur);
                listed++;
                prev = cur;
                cur = LD(&fblk(s, cur)->next);
            }
        }
    }
    if (listed != free_blocks)
        REPORT("alloc: %llu free blocks in the heap, %llu in the lists",
               (unsigned long long)free_blocks, (unsigned long long)listed);
}
