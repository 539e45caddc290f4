/*
 * entry.h - entries and list items as blocks of the heap: checked views of
 * them, their values in and out, writing a new one, and giving one back.
 */
#ifndef SHMDICT_ENTRY_H
#define SHMDICT_ENTRY_H

#include "undo.h"

/* Values up to SD_INPLACE_MAX bytes are overwritten in place (write.c); a
 * longer one is only ever written into a block just allocated for it, so
 * an entry holding one keeps its bytes for as long as it is linked: the
 * near check relies on this (read.c). */
#define SD_INPLACE_MAX 64u
#define LOGGED_BLOCK_MAX 4096u /* blocks this small can be written logged */

/* A checked copy of an entry's (or list item's) header. */
typedef struct sd_view {
    uint32_t idx, next, hash, klen, vlen;
    uint64_t meta;
    uint64_t payload; /* bytes the block offers */
    sd_entry *e;
    unsigned char *val;
} sd_view;

/* Word i of a checked entry's value. */
static inline _Atomic uint64_t *sd_val_word(const sd_view *v, size_t i)
{
    return (_Atomic uint64_t *)(void *)(v->val + 8 * i);
}

/* Read and check the header of the used block at idx into v: false if it is
 * not a block in use, or its lengths can't be right. Lock-free readers call
 * it too: it never leaves the heap. */
static inline bool sd_read_block(const sd_stripe *s, uint32_t idx, sd_view *v)
{
    if (!sd_idx_ok(s, idx))
        return false;
    uint64_t hdr = LD(sd_blk_hdr(s, idx));
    uint64_t size = hdr & ~SD_BLK_FLAGS;
    /* sd_idx_ok bounds the start; the size is compared, never added, so a
     * damaged size near 2^64 can't wrap past the check. */
    if ((hdr & (SD_BLK_FREE | SD_BLK_QUICK)) || size < SD_MIN_BLOCK ||
        size > s->heap_size - ((uint64_t)idx << SD_UNIT_SHIFT))
        return false;
    sd_entry *e = sd_blk_entry(s, idx);
    v->idx = idx;
    v->e = e;
    v->next = LD(&e->next);
    v->hash = LD(&e->hash);
    v->meta = LD(&e->meta);
    v->klen = LD(&e->klen);
    v->vlen = LD(&e->vlen);
    v->payload = size - 8;
    if (v->klen > SD_MAX_KEY || sd_entry_need(v->klen, v->vlen) > v->payload)
        return false;
    unsigned type = v->meta & SD_META_TYPE;
    if ((type == SD_T_INT || type == SD_T_FLOAT) && v->vlen != 8)
        return false;
    if (type == SD_T_LIST && v->vlen != 16)
        return false;
    v->val = e->data + sd_pad8(v->klen);
    return true;
}

/* Read and check the entry at idx. False if any field can't be right. */
static inline bool sd_read_entry(const sd_stripe *s, uint32_t idx, sd_view *v)
{
    unsigned type;
    return sd_read_block(s, idx, v) && v->klen != 0 &&
           (type = v->meta & SD_META_TYPE) != 0 && type <= SD_T_MAX;
}

/* Read and check the list item at idx (klen 0, a scalar type). */
static inline bool sd_read_item(const sd_stripe *s, uint32_t idx, sd_view *v)
{
    unsigned type;
    return sd_read_block(s, idx, v) && v->klen == 0 &&
           (type = v->meta & SD_META_TYPE) != 0 && type < SD_T_LIST;
}

/* Write the record of a checked entry or item's value (the format of
 * sd_get_many in shmdict.h) at out, if its size fits in `room` (out may be
 * NULL when room is 0); return that size either way. */
static inline size_t sd_put_record(unsigned char *out, size_t room,
                                   const sd_view *v)
{
    unsigned type = v->meta & SD_META_TYPE;
    bool num = type == SD_T_INT || type == SD_T_FLOAT;
    bool var = type == SD_T_STR || type == SD_T_BYTES;
    size_t body = var ? sd_pad8(v->vlen) : num ? 8 : 0;
    if (8 + body <= room) {
        memset(out, 0, 8 + body);
        out[0] = (unsigned char)type;
        out[1] = (v->meta & SD_META_ASCII) != 0;
        out[2] = (v->meta & SD_META_TAG) != 0;
        uint32_t len = v->vlen;
        memcpy(out + 4, &len, 4);
        if (var || num)
            memcpy(out + 8, v->val, var ? v->vlen : 8);
    }
    return 8 + body;
}

/* A list's value: its first and last item, and its length. */
static inline _Atomic uint32_t *sd_list_ends(const sd_view *v)
{
    return (_Atomic uint32_t *)(void *)v->val; /* [0] head, [1] tail */
}

static inline _Atomic uint64_t *sd_list_count(const sd_view *v)
{
    return sd_val_word(v, 1);
}

/* ---- values ------------------------------------------------------------- */

/* Copy a scalar value out of a checked entry or item. */
SD_MUST_USE static inline sd_status sd_copy_value(const sd_view *v,
                                                  sd_value_out *out)
{
    unsigned type = v->meta & SD_META_TYPE;
    out->type = (uint8_t)type;
    out->ascii = (v->meta & SD_META_ASCII) != 0;
    out->tag = (v->meta & SD_META_TAG) != 0;
    out->len = v->vlen;
    if (type == SD_T_INT) {
        out->i = (int64_t)LD(sd_val_word(v, 0));
    } else if (type == SD_T_FLOAT) {
        uint64_t bits = LD(sd_val_word(v, 0));
        memcpy(&out->f, &bits, 8);
    } else if (type == SD_T_STR || type == SD_T_BYTES) {
        if (v->vlen > out->cap)
            return SD_TOOBIG;
        memcpy(out->buf, v->val, v->vlen);
    } else if (type == SD_T_LIST) {
        return SD_WRONGTYPE;
    }
    return SD_OK;
}

/* Bytes the value takes in an entry. */
static inline uint64_t sd_value_len(const sd_value_in *v)
{
    switch (v->type) {
    case SD_T_INT:
    case SD_T_FLOAT:
        return 8;
    case SD_T_STR:
    case SD_T_BYTES:
        return v->len;
    case SD_T_LIST:
        return 16;
    default:
        return 0;
    }
}

/* The meta word of a value with expiry `exp` (ms, 0: none). */
static inline uint64_t sd_make_meta(const sd_value_in *v, uint64_t exp)
{
    uint64_t m = v->type;
    if (v->type == SD_T_STR && v->ascii)
        m |= SD_META_ASCII;
    if (v->type == SD_T_BYTES && v->tag)
        m |= SD_META_TAG;
    return m | (exp << SD_META_EXP_SHIFT);
}

/* Whether a value can be stored (a known scalar type, a length that fits
 * 32 bits). */
static inline bool sd_check_value(const sd_value_in *v)
{
    return !(v->type == 0 || v->type >= SD_T_LIST ||
             sd_value_len(v) > UINT32_MAX);
}

/* The expiry word for a TTL of ttl_ms (0 or less: none), capped at
 * SD_MAX_EXPIRY_MS, and lower the stripe's next_expiry hint to it. Lock
 * state: held, in an open transaction. */
uint64_t sd_expiry_for(sd_tx *t, int64_t ttl_ms);

/* Fill block idx, freshly allocated in this transaction, as an entry (or,
 * with klen 0 and the previous item in `hash`, as a list item). Lock state:
 * held, in an open transaction. The free block's two structural words are
 * logged first (all words, with t->log_all); on overflow nothing is
 * written. Links nothing: the caller links it with a logged store. */
void sd_write_entry(sd_tx *t, uint32_t idx, uint32_t next, uint32_t hash,
                    uint64_t meta, const void *key, size_t klen,
                    const sd_value_in *v);

/* Give back what an unlinked entry holds: a list's items go to the gc chain
 * (two logged stores, however long the list), the block is queued to be
 * freed at the commit. Lock state: held, in an open transaction. SD_CORRUPT
 * (a damaged list tail), SD_INTERNAL (the free queue is full). */
SD_MUST_USE sd_status sd_release_locked(sd_tx *t, const sd_view *v);

#endif /* SHMDICT_ENTRY_H */
