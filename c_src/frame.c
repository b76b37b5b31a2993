/*
 * frame.c - cutting a byte stream into messages.
 *
 * Pure functions over caller-owned bytes: no allocation, no state but the
 * caller's scan offset.  New framings (length-prefixed, ...) are new cases
 * of isd_frame_next.
 */
#include "isd_int.h"

#include <string.h>
#include <errno.h>

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

ssize_t isd_frame_next(const isd_framing *f, const char *p, size_t len,
                       size_t *scan)
{
    int dflt = !f->sep || !f->seplen;
    const char *sep = dflt ? "\n" : f->sep;
    size_t seplen = dflt ? 1 : f->seplen;
    size_t max = f->max ? f->max : SIZE_MAX;
    size_t from, limit, msglen;
    const char *hit;

    if (f->kind == ISD_FRAME_RAW)
        return (ssize_t)(len < max ? len : max);

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
