/*
 * gen_corpus.c - write the seed corpus of the fuzz target: valid dicts
 * made through the C API (the same base variants the target patches),
 * each as a raw image and as a patch input, followed by op programs.
 *
 *   gen_corpus DIR     writes DIR/seed-*
 */
#include "fuzz_common.h"

static void put_u32(FILE *f, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        fputc((int)((v >> (8 * i)) & 0xff), f);
}

/* An op program: every opcode once on a known key, then a random tail. */
static void put_program(FILE *f, unsigned seed)
{
    for (unsigned code = 0; code < 26; code++) {
        fputc((int)((code * 5 + seed) % FUZZ_NKEYS), f); /* key selector */
        fputc((int)code, f);                             /* opcode */
        for (int i = 0; i < 12; i++)                     /* arguments */
            fputc((int)((seed * 31 + code * 7 + (unsigned)i * 13) & 0xff), f);
    }
    unsigned x = seed * 2654435761u + 1;
    for (int i = 0; i < 200; i++) {
        x = x * 1103515245u + 12345u;
        fputc((int)(x >> 16) & 0xff, f);
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    int n = 0;
    for (unsigned v = 0; v < FUZZ_NBASES; v++) {
        fuzz_base b;
        if (build_base(v, "/dev/shm", &b) != 0) {
            fprintf(stderr, "cannot build base %u\n", v);
            return 1;
        }
        unsigned cls = b.size == (64u << 10)    ? 0
                       : b.size == (128u << 10) ? 2
                                                : 3;
        uint64_t len = b.size;
        while (len && b.img[len - 1] == 0)
            len--; /* trailing zeros are implied */
        for (unsigned p = 0; p < 3; p++) {
            char path[4096];
            snprintf(path, sizeof path, "%s/seed-raw-%u-%u", argv[1], v, p);
            FILE *f = fopen(path, "wb");
            if (!f)
                return 1;
            fputc((int)(FUZZ_RAW | cls | (p == 1 ? FUZZ_STRICT : 0)), f);
            put_u32(f, (uint32_t)len);
            fwrite(b.img, 1, len, f);
            put_program(f, v * 3 + p);
            fclose(f);
            snprintf(path, sizeof path, "%s/seed-patch-%u-%u", argv[1], v, p);
            f = fopen(path, "wb");
            if (!f)
                return 1;
            fputc((int)(FUZZ_PATCH | v | (p == 0 ? FUZZ_STRICT : 0)), f);
            fputc((int)p, f); /* p patches of one byte at spread offsets */
            for (unsigned i = 0; i < p; i++) {
                put_u32(f, (uint32_t)(8192 + 4096 * (i + 1) + 8 * v));
                fputc(1, f);
                fputc(0xff, f);
            }
            put_program(f, v * 3 + p + 100);
            fclose(f);
            n += 2;
        }
        free(b.img);
    }
    printf("gen_corpus: %d seeds in %s\n", n, argv[1]);
    return 0;
}
