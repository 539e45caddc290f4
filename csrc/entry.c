/*
 * entry.c - writing entries and list items into fresh blocks, their
 * expiry, and giving back what an unlinked one holds.
 */
#include "entry.h"
#include "tx.h"

uint64_t sd_expiry_for(sd_tx *t, int64_t ttl_ms)
{
    if (ttl_ms <= 0)
        return 0;
    uint64_t exp = (uint64_t)sd_tx_now(t) + (uint64_t)ttl_ms;
    if (exp > SD_MAX_EXPIRY_MS)
        exp = SD_MAX_EXPIRY_MS;
    /* Keep next_expiry a lower bound (a hint: not logged, only ever
     * lowered here, so a rollback can leave it low, never high). */
    if (exp < LD(&t->s->st->next_expiry))
        ST(&t->s->st->next_expiry, exp);
    return exp;
}

/* Fill a freshly allocated block. The words that held the free block's
 * list links and footer are saved to the log first; the rest is
 * unreachable until linked, so it is written plainly. */
void sd_write_entry(sd_tx *t, uint32_t idx, uint32_t next, uint32_t hash,
                    uint64_t meta, const void *key, size_t klen,
                    const sd_value_in *v)
{
    sd_stripe *s = t->s;
    if (t->overflow)
        return; /* the allocation was not made: write nothing unlogged */
    sd_entry *e = sd_blk_entry(s, idx);
    uint64_t bsize = LD(sd_blk_hdr(s, idx)) & ~SD_BLK_FLAGS;
    uint64_t vlen = sd_value_len(v);
    if (t->log_all && bsize > LOGGED_BLOCK_MAX) {
        t->overflow = true; /* can't log it all: undo the transaction */
        return;
    }
    if (t->log_all) {
        /* The block may hold bytes a rollback must bring back: build the
         * payload aside and store it word by word through the log. */
        uint64_t words[LOGGED_BLOCK_MAX / 8];
        unsigned char *p = (unsigned char *)words;
        size_t n = (size_t)(bsize - 8) / 8;
        memset(words, 0, n * 8);
        memcpy(p + 24, key, klen);
        if (v->type == SD_T_INT)
            memcpy(p + 24 + sd_pad8(klen), &v->i, 8);
        else if (v->type == SD_T_FLOAT)
            memcpy(p + 24 + sd_pad8(klen), &v->f, 8);
        else if (vlen)
            memcpy(p + 24 + sd_pad8(klen), v->data, vlen);
        _Atomic uint64_t *dst = (_Atomic uint64_t *)(void *)e;
        for (size_t i = 3; i < n; i++)
            sd_w64(t, &dst[i], words[i]);
        sd_w32(t, &e->next, next);
        sd_w32(t, &e->hash, hash);
        sd_w64(t, &e->meta, meta);
        sd_w32(t, &e->klen, (uint32_t)klen);
        sd_w32(t, &e->vlen, (uint32_t)vlen);
        SD_CRASH_POINT();
        return;
    }
    /* A free block keeps its structure in two words: the first of its
     * payload (list links) and its last (a TLSF block's footer; in a
     * 32-byte block that is where klen and vlen go). The rest is garbage
     * to it, so saving those two is all a rollback needs. */
    sd_save64(t, (_Atomic uint64_t *)(void *)(sd_blk(s, idx) + bsize - 8));
    sd_save64(t, (_Atomic uint64_t *)(void *)e);
    if (SD_UNLIKELY(t->overflow))
        return;
    ST(&e->next, next);
    ST(&e->hash, hash);
    ST(&e->meta, meta);
    ST(&e->klen, (uint32_t)klen);
    ST(&e->vlen, (uint32_t)vlen);
    unsigned char *d = e->data;
    memcpy(d, key, klen);
    memset(d + klen, 0, sd_pad8(klen) - klen);
    d += sd_pad8(klen);
    if (v->type == SD_T_INT)
        memcpy(d, &v->i, 8);
    else if (v->type == SD_T_FLOAT)
        memcpy(d, &v->f, 8);
    else if (vlen)
        memcpy(d, v->data, vlen);
    SD_CRASH_POINT();
}

/* Give back what an unlinked entry holds: a list's items go to the gc
 * chain (two stores, however long the list), the block is freed at the
 * commit. */
SD_MUST_USE sd_status sd_release_locked(sd_tx *t, const sd_view *v)
{
    sd_note_drop(t, v->hash);
    if (sd_is_list(v->meta)) {
        _Atomic uint32_t *hl = (_Atomic uint32_t *)(void *)v->val;
        uint32_t head = LD(&hl[0]), tail = LD(&hl[1]);
        if (head) {
            if (!sd_idx_ok(t->s, tail))
                return SD_CORRUPT;
            sd_w32(t, &sd_blk_entry(t->s, tail)->next, LD(&t->s->st->gc_head));
            sd_w32(t, &t->s->st->gc_head, head);
        }
    }
    return sd_free_deferred(t, v->idx);
}
