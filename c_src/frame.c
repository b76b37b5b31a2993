/*
 * frame.c - cutting a byte stream into messages.
 *
 * Pure functions over caller-owned bytes: no allocation, no state but the
 * caller's scan offset.  A new framing is a new case of isd_frame_next
 * (and of isd_frame_hdr if its messages have a prefix).
 */
#include "isd_int.h"

#include <errno.h>
#include <limits.h>
#include <string.h>

/* First occurrence of sep in p[0..len), or NULL. */
static const char *find_sep(const char *p, size_t len, const char *sep,
                            size_t seplen)
{
    const char *end, *q;

    if (seplen == 1)
        return memchr(p, (unsigned char)sep[0], len);
    if (len < seplen)
        return NULL;
    end = p + len - seplen + 1;
    while (p < end) {
        q = memchr(p, (unsigned char)sep[0], (size_t)(end - p));
        if (!q)
            return NULL;
        if (memcmp(q, sep, seplen) == 0)
            return q;
        p = q + 1;
    }
    return NULL;
}

static const unsigned char len_size[] = { 4, 2, 4, 2, 1 };

size_t isd_frame_hdr(const isd_framing *f)
{
    if (f->kind != ISD_FRAME_LENGTH)
        return 0;
    return (unsigned)f->lenfmt < sizeof len_size ? len_size[f->lenfmt] : 4;
}

size_t isd_frame_len_put(int lenfmt, uint64_t n, unsigned char out[4])
{
    switch (lenfmt) {
    case ISD_LEN_C:
        if (n > 0xffu)
            return 0;
        out[0] = (unsigned char)n;
        return 1;
    case ISD_LEN_n:
    case ISD_LEN_v:
        if (n > 0xffffu)
            return 0;
        out[lenfmt == ISD_LEN_n ? 0 : 1] = (unsigned char)(n >> 8);
        out[lenfmt == ISD_LEN_n ? 1 : 0] = (unsigned char)n;
        return 2;
    case ISD_LEN_N:
    case ISD_LEN_V:
        if (n > 0xffffffffu)
            return 0;
        {
            int be = lenfmt == ISD_LEN_N, i;
            for (i = 0; i < 4; i++)
                out[be ? 3 - i : i] = (unsigned char)(n >> (8 * i));
        }
        return 4;
    default:
        return 0;
    }
}

/* The payload length a prefix of hdr bytes at p gives. */
static uint64_t len_get(int lenfmt, const unsigned char *p)
{
    switch (lenfmt) {
    case ISD_LEN_C:
        return p[0];
    case ISD_LEN_n:
        return (uint64_t)p[0] << 8 | p[1];
    case ISD_LEN_v:
        return (uint64_t)p[1] << 8 | p[0];
    case ISD_LEN_V:
        return (uint64_t)p[3] << 24 | (uint64_t)p[2] << 16
             | (uint64_t)p[1] << 8 | p[0];
    default:
        return (uint64_t)p[0] << 24 | (uint64_t)p[1] << 16
             | (uint64_t)p[2] << 8 | p[3];
    }
}

static ssize_t frame_length(const isd_framing *f, const char *p, size_t len)
{
    size_t hdr = isd_frame_hdr(f);
    uint64_t n;

    if (len < hdr)
        return 0;
    n = len_get(f->lenfmt, (const unsigned char *)p);
    /* (a 4 GiB claim fails here, before a byte of it is buffered) */
    if ((f->max && n > f->max) || n > (uint64_t)(SSIZE_MAX - hdr)) {
        errno = EMSGSIZE;
        return -1;
    }
    return len - hdr >= n ? (ssize_t)(hdr + n) : 0;
}

/* The framings that are not lines. */
static ssize_t frame_other(const isd_framing *f, const char *p, size_t len)
{
    if (f->kind == ISD_FRAME_LENGTH)
        return frame_length(f, p, len);
    if (f->max && len > f->max)             /* RAW */
        return (ssize_t)f->max;
    return (ssize_t)len;
}

ssize_t isd_frame_next(const isd_framing *f, const char *p, size_t len,
                       size_t *scan)
{
    int dflt = !f->sep || !f->seplen;
    const char *sep = dflt ? "\n" : f->sep;
    size_t seplen = dflt ? 1 : f->seplen;
    size_t max = f->max ? f->max : SIZE_MAX;
    size_t from, limit, msglen;
    const char *hit;

    if (f->kind != ISD_FRAME_LINE)
        return frame_other(f, p, len);

    if (len == 0)
        return 0;
    /* Resume where the last search stopped, minus a partial separator. */
    from = *scan;
    if (from > len)
        from = len;
    from = from >= seplen - 1 ? from - (seplen - 1) : 0;
    /* A terminator starting past max - seplen makes a message over max. */
    limit = len;
    if (max < SIZE_MAX && limit > max)
        limit = max;
    hit = limit > from ? find_sep(p + from, limit - from, sep, seplen) : NULL;
    if (hit) {
        msglen = (size_t)(hit - p) + seplen;
        if (msglen > max) {
            errno = EMSGSIZE;
            return -1;
        }
        *scan = 0;
        return (ssize_t)msglen;
    }
    /* max bytes without a terminator may still be a final message (at
     * EOF); one byte more cannot be anything. */
    if (len > max) {
        errno = EMSGSIZE;
        return -1;
    }
    *scan = len;
    return 0;
}
