/*
 * fuzz_frame.c - libFuzzer target for the line splitter (c_src/frame.c).
 *
 * The input is a framing plus a byte stream:
 *
 *   byte 0      flags: bit 0 raw framing, bit 1 NULL separator (default),
 *               bits 2-7: seed of the feed splits
 *   byte 1      separator length 0..4 (0: default "\n") in bits 0-3; bit 7
 *               length framing instead, with the length format (bits 4-6,
 *               modulo 5) and no separator
 *   bytes ...   the separator
 *   2 bytes     max (little endian; 0 = no limit)
 *   rest        the stream
 *
 * The stream is fed in random pieces (1..64 bytes, from the seed) into an
 * isd_buf, and after every piece isd_frame_next is asked for messages until
 * it has none, exactly as the core does (scan carried between calls, reset
 * after a consume).  Every answer is cross-checked against a naive reference
 * that searches the whole buffered input from the start each time (for
 * length framing: that decodes the prefix its own way); at the end the
 * messages plus what is left must be the stream, byte for byte.
 * Any disagreement aborts (a crash for libFuzzer).
 *
 * Build: see fuzz/run (clang -fsanitize=fuzzer,address,undefined).
 */
#include "isd.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond, ...) do { if (!(cond)) { \
    fprintf(stderr, "fuzz_frame: %s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
    fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); abort(); } } while (0)

/* The length reference: prefix decoded byte by byte, the other way round
 * from frame.c (sum of shifted bytes, in the format's order). */
static ssize_t ref_len(int fmt, size_t max, const unsigned char *p, size_t len)
{
    static const int size[] = { 4, 2, 4, 2, 1 };
    static const int big[] = { 1, 1, 0, 0, 1 };
    size_t h = (size_t)size[fmt], i;
    unsigned long long n = 0;

    if (len < h)
        return 0;
    for (i = 0; i < h; i++)
        n += (unsigned long long)p[i] << (8 * (big[fmt] ? h - 1 - i : i));
    if (max && n > max)
        return -1;
    return len - h >= n ? (ssize_t)(h + n) : 0;
}

/* The reference: what the first message of p[0..len) is. */
static ssize_t ref_next(int raw, const char *sep, size_t seplen, size_t max,
                        const char *p, size_t len)
{
    size_t i;

    if (!max)
        max = SIZE_MAX;
    if (raw)
        return (ssize_t)(len < max ? len : max);
    if (len == 0)
        return 0;
    for (i = 0; i + seplen <= len; i++)
        if (memcmp(p + i, sep, seplen) == 0) {
            if (i + seplen > max)
                return -1;
            return (ssize_t)(i + seplen);
        }
    /* no terminator yet: any later one ends past len, so past max if
     * len >= max; max bytes may still be a final message at EOF, one more
     * cannot */
    return len > max ? -1 : 0;
}

static uint32_t rng(uint32_t *s)
{
    uint32_t x = *s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *s = x ? x : 0x9e3779b9u;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    isd_framing f;
    isd_buf in, outcat;
    char sepbuf[4];
    const char *stream;
    size_t pos = 0, slen, fed = 0, scan = 0, seplen, max, delivered = 0;
    uint32_t seed;
    int raw, nullsep, dead = 0, length, lenfmt;

    if (size < 4)
        return 0;
    raw = data[0] & 1;
    nullsep = (data[0] >> 1) & 1;
    seed = (uint32_t)(data[0] >> 2) * 2654435761u + 1;
    length = (data[1] & 0x80) != 0;
    lenfmt = ((data[1] >> 4) & 7) % 5;
    seplen = length ? 0 : (size_t)(data[1] & 0x0f) % 5;
    if (length)
        raw = 0;
    pos = 2;
    if (size < pos + seplen + 2)
        return 0;
    memcpy(sepbuf, data + pos, seplen);
    pos += seplen;
    max = (size_t)data[pos] | ((size_t)data[pos + 1] << 8);
    pos += 2;
    stream = (const char *)data + pos;
    slen = size - pos;

    memset(&f, 0, sizeof f);
    f.kind = length ? ISD_FRAME_LENGTH : raw ? ISD_FRAME_RAW : ISD_FRAME_LINE;
    f.lenfmt = lenfmt;
    f.sep = (nullsep || !seplen) ? NULL : sepbuf;
    f.seplen = seplen;      /* a NULL sep with seplen > 0 means "\n" too */
    f.max = max;
    {
        /* what the reference uses: the default is "\n" */
        int dflt = !f.sep || !f.seplen;
        const char *rsep = dflt ? "\n" : sepbuf;
        size_t rseplen = dflt ? 1 : seplen;

        isd_buf_init(&in);
        isd_buf_init(&outcat);
        while (fed < slen && !dead) {
            size_t piece = 1 + rng(&seed) % 64;
            if (piece > slen - fed)
                piece = slen - fed;
            CHECK(isd_buf_append(&in, stream + fed, piece) == 0, "append %zu", piece);
            fed += piece;
            for (;;) {
                size_t len = isd_buf_len(&in);
                const char *p = isd_buf_head(&in);
                ssize_t want = length
                    ? ref_len(lenfmt, max, (const unsigned char *)p, len)
                    : ref_next(raw, rsep, rseplen, max, p, len);
                ssize_t got;

                errno = 0;
                got = isd_frame_next(&f, p, len, &scan);
                CHECK(got == want, "len %zu max %zu seplen %zu raw %d: got %zd, want %zd",
                      len, max, rseplen, raw, got, want);
                if (got < 0) {
                    CHECK(errno == EMSGSIZE, "errno %d", errno);
                    dead = 1;       /* the core drops the connection */
                    break;
                }
                if (got == 0)
                    break;
                CHECK(!max || (size_t)got - isd_frame_hdr(&f) <= max,
                      "message %zd over max %zu", got, max);
                if (length)
                    CHECK((size_t)got >= isd_frame_hdr(&f), "frame shorter than its prefix");
                else if (!raw)
                    CHECK(memcmp(p + got - rseplen, rsep, rseplen) == 0,
                          "message does not end with the separator");
                CHECK(isd_buf_append(&outcat, p, (size_t)got) == 0, "outcat");
                delivered++;
                isd_buf_consume(&in, (size_t)got);
                scan = 0;
            }
        }
        if (!dead) {
            /* messages + the rest = the stream */
            CHECK(isd_buf_len(&outcat) + isd_buf_len(&in) == slen, "lengths %zu + %zu != %zu",
                  isd_buf_len(&outcat), isd_buf_len(&in), slen);
            CHECK(memcmp(isd_buf_head(&outcat), stream, isd_buf_len(&outcat)) == 0, "messages differ");
            CHECK(memcmp(isd_buf_head(&in), stream + isd_buf_len(&outcat), isd_buf_len(&in)) == 0,
                  "rest differs");
            if (length && isd_buf_len(&in))
                CHECK(ref_len(lenfmt, max, (const unsigned char *)isd_buf_head(&in),
                              isd_buf_len(&in)) == 0, "a complete message was left behind");
            else if (!raw && isd_buf_len(&in))
                CHECK(ref_next(0, rsep, rseplen, 0, isd_buf_head(&in), isd_buf_len(&in)) == 0,
                      "a complete message was left behind");
        }
        isd_buf_free(&in);
        isd_buf_free(&outcat);
    }
    (void)delivered;
    return 0;
}
