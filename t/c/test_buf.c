/* test_buf.c - unit tests for isd_buf and isd_outq (c_src/buf.c). */
// Build and run by hand from the distribution root:
//   cc -std=c99 -D_GNU_SOURCE -Wall -Wextra -Ic_src t/c/test_buf.c c_src/*.c -o /tmp/tb && /tmp/tb
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1    /* the POSIX and BSD bits of libc, where hidden */
#endif
#include "isd.h"
#include "tap.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

/* deterministic byte pattern, so content can be checked anywhere */
static unsigned char pat(size_t i)
{
    return (unsigned char)((i * 131u) ^ (i >> 9) ^ (i >> 17));
}

static void fill_pat(unsigned char *p, size_t from, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) p[i] = pat(from + i);
}

/* is b's unread data exactly pat(from..from+n)? */
static int buf_is_pat(const isd_buf *b, size_t from, size_t n)
{
    const unsigned char *h = (const unsigned char *)isd_buf_head(b);
    size_t i;
    if (isd_buf_len(b) != n) return 0;
    for (i = 0; i < n; i++)
        if (h[i] != pat(from + i)) return 0;
    return 1;
}

/* sanity of the public fields */
static int buf_sane(const isd_buf *b)
{
    if (b->rpos > b->wpos || b->wpos > b->cap) return 0;
    if (b->cap && !b->data) return 0;
    return 1;
}

/* Run fn in a child, so a crash (or a sanitizer abort) is a failed test, not
 * the end of the program.  The child's exit status is the verdict. */
static int in_child(int (*fn)(void), const char *what)
{
    int st;
    pid_t pid;
    fflush(stdout);
    fflush(stderr);
    pid = fork();
    if (pid < 0) { diag("fork: %s", strerror(errno)); return 0; }
    if (pid == 0) _exit(fn() ? 0 : 1);
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) ;
    if (WIFSIGNALED(st)) {
        diag("%s: child killed by signal %d", what, WTERMSIG(st));
        return 0;
    }
    return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

/* ------------------------------------------------------------- isd_buf */

static void test_buf_basics(void)
{
    isd_buf b;
    memset(&b, 0xAB, sizeof b);
    isd_buf_init(&b);
    is_int(isd_buf_len(&b), 0, "init: empty");
    ok(b.rpos == 0 && b.wpos == 0, "init: positions at 0");

    /* a zeroed struct is an empty buffer too */
    {
        isd_buf z;
        memset(&z, 0, sizeof z);
        is_int(isd_buf_append(&z, "xyz", 3), 0, "zeroed buffer: append works");
        is_mem(isd_buf_head(&z), isd_buf_len(&z), "xyz", 3,
               "zeroed buffer: content");
        isd_buf_free(&z);
    }

    is_int(isd_buf_append(&b, "hello", 5), 0, "append 5");
    is_int(isd_buf_len(&b), 5, "len 5");
    is_mem(isd_buf_head(&b), isd_buf_len(&b), "hello", 5, "content hello");
    is_int(isd_buf_append(&b, " world", 6), 0, "append 6");
    is_mem(isd_buf_head(&b), isd_buf_len(&b), "hello world", 11,
           "content hello world");
    is_int(isd_buf_append(&b, "", 0), 0, "append 0 bytes is fine");
    is_int(isd_buf_len(&b), 11, "len unchanged by empty append");
    ok(buf_sane(&b), "fields sane");

    isd_buf_consume(&b, 6);
    is_mem(isd_buf_head(&b), isd_buf_len(&b), "world", 5, "consume 6");
    isd_buf_consume(&b, 0);
    is_mem(isd_buf_head(&b), isd_buf_len(&b), "world", 5, "consume 0");

    /* prepend with room in front (rpos = 6) */
    is_int(isd_buf_prepend(&b, "new ", 4), 0, "prepend 4 (fits in front)");
    is_mem(isd_buf_head(&b), isd_buf_len(&b), "new world", 9,
           "prepend content");
    /* prepend with less room in front than needed */
    is_int(isd_buf_prepend(&b, "a brand ", 8), 0, "prepend 8 (no room in front)");
    is_mem(isd_buf_head(&b), isd_buf_len(&b), "a brand new world", 17,
           "prepend content 2");
    ok(buf_sane(&b), "fields sane after prepends");
    is_int(isd_buf_append(&b, "!", 1), 0, "append after prepend");
    is_mem(isd_buf_head(&b), isd_buf_len(&b), "a brand new world!", 18,
           "append after prepend: content");

    /* empty rewind */
    isd_buf_consume(&b, 18);
    is_int(isd_buf_len(&b), 0, "consumed everything");
    ok(b.rpos == 0 && b.wpos == 0, "emptied buffer rewinds to 0 (rpos %zu wpos %zu)",
       b.rpos, b.wpos);
    is_int(isd_buf_append(&b, "x", 1), 0, "append after rewind");
    ok(b.rpos == 0 && b.wpos == 1, "append after rewind starts at 0");
    isd_buf_consume(&b, 1);

    /* prepend into an empty buffer */
    is_int(isd_buf_prepend(&b, "pp", 2), 0, "prepend into empty buffer");
    is_mem(isd_buf_head(&b), isd_buf_len(&b), "pp", 2, "content pp");
    is_int(isd_buf_prepend(&b, "", 0), 0, "prepend 0 bytes");
    is_mem(isd_buf_head(&b), isd_buf_len(&b), "pp", 2, "content still pp");

    isd_buf_free(&b);
    is_int(isd_buf_len(&b), 0, "free: empty");
    ok(b.data == NULL && b.cap == 0, "free: memory released");
    is_int(isd_buf_append(&b, "again", 5), 0, "reusable after free");
    is_mem(isd_buf_head(&b), isd_buf_len(&b), "again", 5, "content again");
    isd_buf_free(&b);
    isd_buf_free(&b);
    pass("double free of an empty buffer is harmless");

    /* prepend into a freed (never allocated) buffer */
    isd_buf_init(&b);
    is_int(isd_buf_prepend(&b, "front", 5), 0, "prepend into fresh buffer");
    is_mem(isd_buf_head(&b), isd_buf_len(&b), "front", 5, "content front");
    isd_buf_free(&b);
}

static void test_buf_reserve(void)
{
    isd_buf b;
    size_t cap, i;
    char *p;
    int bad;

    isd_buf_init(&b);
    is_int(isd_buf_reserve(&b, 0), 0, "reserve 0 on empty");
    is_int(isd_buf_reserve(&b, 100), 0, "reserve 100");
    ok(b.cap - b.wpos >= 100, "at least 100 bytes free at the tail");
    /* writing into the reserved space by hand, then bumping wpos, is how
     * the reader uses it */
    memset(b.data + b.wpos, 'r', 100);
    b.wpos += 100;
    is_int(isd_buf_len(&b), 100, "filled the reserved room by hand");

    /* compaction: fill to capacity, consume most of it; reserving what
     * fits in the free front part must not lose data */
    isd_buf_free(&b);
    is_int(isd_buf_reserve(&b, 4096), 0, "reserve 4096");
    cap = b.cap;
    p = malloc(cap);
    fill_pat((unsigned char *)p, 0, cap);
    is_int(isd_buf_append(&b, p, cap - b.wpos), 0, "fill to capacity");
    is_int(b.cap, cap, "no growth while filling to capacity");
    isd_buf_consume(&b, cap - 10);
    ok(buf_is_pat(&b, cap - 10, 10), "10 bytes left");
    is_int(isd_buf_reserve(&b, cap - 20), 0, "reserve cap-20 with rpos=cap-10");
    ok(b.cap - b.wpos >= cap - 20, "room at the tail");
    ok(buf_is_pat(&b, cap - 10, 10), "data intact after compaction");
    is_int(b.cap, cap, "compacted instead of growing (cap %zu)", b.cap);
    ok(buf_sane(&b), "fields sane");
    free(p);

    /* growth to many MiB in odd-sized appends, content checked */
    isd_buf_free(&b);
    {
        const size_t total = 48u << 20, step = 65521;
        unsigned char *chunk = malloc(step);
        size_t done = 0, consumed = 0;
        bad = 0;
        while (done < total) {
            size_t n = total - done < step ? total - done : step;
            fill_pat(chunk, done, n);
            if (isd_buf_append(&b, chunk, n) != 0) { bad = 1; break; }
            done += n;
            /* consume a little now and then so rpos is not always 0 */
            if ((done / step) % 7 == 0) {
                isd_buf_consume(&b, 1000);
                consumed += 1000;
            }
            if (!buf_sane(&b)) { bad = 2; break; }
        }
        is_int(bad, 0, "48 MiB of appends succeeded");
        ok(buf_is_pat(&b, consumed, total - consumed),
           "48 MiB content intact (len %zu)", isd_buf_len(&b));
        /* reserve a lot more */
        is_int(isd_buf_reserve(&b, 16u << 20), 0, "reserve 16 MiB more");
        ok(b.cap - b.wpos >= (16u << 20), "16 MiB free at the tail");
        ok(buf_is_pat(&b, consumed, total - consumed), "content intact");
        /* consume all but the last byte, then append: data stays right */
        isd_buf_consume(&b, isd_buf_len(&b) - 1);
        ok(buf_is_pat(&b, total - 1, 1), "one byte left");
        fill_pat(chunk, total, 100);
        is_int(isd_buf_append(&b, chunk, 100), 0, "append after big consume");
        ok(buf_is_pat(&b, total - 1, 101), "content intact");
        isd_buf_consume(&b, 101);
        ok(b.rpos == 0 && b.wpos == 0, "rewound after consuming everything");
        free(chunk);
    }
    isd_buf_free(&b);

    /* many small appends/consumes, checked against a model */
    {
        size_t mlen = 0, next = 0, first = 0;
        unsigned seed = 12345;
        bad = 0;
        isd_buf_init(&b);
        for (i = 0; i < 20000 && !bad; i++) {
            unsigned op;
            seed = seed * 1103515245u + 12345u;
            op = (seed >> 16) % 4;
            if (op <= 1) {                 /* append */
                unsigned char tmp[700];
                size_t n = (seed >> 8) % 700;
                if (mlen + n > 65536) continue;
                fill_pat(tmp, next, n);
                if (isd_buf_append(&b, tmp, n)) bad = 1;
                next += n;
                mlen += n;
            } else if (op == 2) {          /* consume */
                size_t n = mlen ? (seed >> 8) % (mlen + 1) : 0;
                isd_buf_consume(&b, n);
                first += n;
                mlen -= n;
            } else {                       /* reserve */
                if (isd_buf_reserve(&b, (seed >> 8) % 3000)) bad = 3;
            }
            if (!buf_is_pat(&b, first, mlen)) bad = 4;
            if (!buf_sane(&b)) bad = 5;
        }
        is_int(bad, 0, "20000 random append/consume/reserve ops match the model");
        isd_buf_free(&b);
    }

    /* prepend of data larger than everything there */
    {
        unsigned char big[100000];
        isd_buf_init(&b);
        isd_buf_append(&b, "tail", 4);
        isd_buf_consume(&b, 2);            /* rpos = 2: some room in front */
        fill_pat(big, 0, sizeof big);
        is_int(isd_buf_prepend(&b, big, sizeof big), 0, "prepend 100000 bytes");
        is_int(isd_buf_len(&b), sizeof big + 2, "length");
        ok(memcmp(isd_buf_head(&b), big, sizeof big) == 0 &&
           memcmp(isd_buf_head(&b) + sizeof big, "il", 2) == 0,
           "prepended data in front of the old data");
        ok(buf_sane(&b), "fields sane");
        isd_buf_free(&b);
    }
}

/* -1/ENOMEM (buffer unchanged) for sizes that cannot be allocated, and for
 * sizes that would overflow size_t arithmetic. */
static int enomem_buf(void)
{
    isd_buf b, save;
    int good = 1, r;
    static const char junk[16];
    isd_buf_init(&b);
    isd_buf_append(&b, "0123456789", 10);
    isd_buf_consume(&b, 3);
    save = b;

    errno = 0;
    r = isd_buf_reserve(&b, SIZE_MAX);
    if (r != -1 || errno != ENOMEM) {
        diag("reserve(SIZE_MAX) = %d, errno %d", r, errno); good = 0;
    }
    errno = 0;
    r = isd_buf_reserve(&b, SIZE_MAX - 5);
    if (r != -1 || errno != ENOMEM) {
        diag("reserve(SIZE_MAX-5) = %d, errno %d", r, errno); good = 0;
    }
    errno = 0;
    r = isd_buf_reserve(&b, SIZE_MAX / 2 + 1);
    if (r != -1 || errno != ENOMEM) {
        diag("reserve(SIZE_MAX/2+1) = %d, errno %d", r, errno); good = 0;
    }
    if (memcmp(&b, &save, sizeof b) != 0 ||
        memcmp(isd_buf_head(&b), "3456789", 7) != 0) {
        diag("buffer changed by failed reserve"); good = 0;
    }
    errno = 0;
    r = isd_buf_append(&b, junk, SIZE_MAX - 2);
    if (r != -1 || errno != ENOMEM) {
        diag("append(SIZE_MAX-2) = %d, errno %d", r, errno); good = 0;
    }
    errno = 0;
    r = isd_buf_prepend(&b, junk, SIZE_MAX - 2);
    if (r != -1 || errno != ENOMEM) {
        diag("prepend(SIZE_MAX-2) = %d, errno %d", r, errno); good = 0;
    }
    if (isd_buf_len(&b) != 7 || memcmp(isd_buf_head(&b), "3456789", 7) != 0) {
        diag("buffer changed by failed append/prepend"); good = 0;
    }
    isd_buf_free(&b);
    return good;
}

/* ------------------------------------------------------------ isd_outq */

/* gather the queue through isd_outq_iov into a malloc'd block */
static unsigned char *gather(const isd_outq *q, size_t *len, int *niov)
{
    struct iovec iov[1024];
    int n = isd_outq_iov(q, iov, 1024), i;
    size_t tot = 0;
    unsigned char *p;
    for (i = 0; i < n; i++) tot += iov[i].iov_len;
    p = malloc(tot + 1);
    tot = 0;
    for (i = 0; i < n; i++) {
        memcpy(p + tot, iov[i].iov_base, iov[i].iov_len);
        tot += iov[i].iov_len;
    }
    *len = tot;
    if (niov) *niov = n;
    return p;
}

static int outq_is(const isd_outq *q, const void *want, size_t wlen)
{
    size_t len;
    unsigned char *p = gather(q, &len, NULL);
    int r = len == wlen && q->bytes == wlen &&
            (wlen == 0 || memcmp(p, want, wlen) == 0);
    free(p);
    return r;
}

static void test_outq(void)
{
    isd_outq q;
    struct iovec iov[64];
    int n, i, empty_iovs;
    size_t len, tot;
    unsigned char *g, *big;
    const size_t bigsz = 3u << 20;

    memset(&q, 0x5A, sizeof q);
    isd_outq_init(&q);
    is_int(q.bytes, 0, "outq init: 0 bytes");
    is_int(isd_outq_iov(&q, iov, 64), 0, "outq init: no iovecs");

    /* small appends fill one chunk */
    is_int(isd_outq_append(&q, "hello", 5), 0, "append small");
    is_int(isd_outq_append(&q, ", ", 2), 0, "append small");
    is_int(isd_outq_append(&q, "world", 5), 0, "append small");
    is_int(isd_outq_append(&q, "", 0), 0, "append 0 bytes");
    is_int(q.bytes, 12, "bytes = 12");
    n = isd_outq_iov(&q, iov, 64);
    is_int(n, 1, "small appends share one chunk");
    if (n >= 1)
        is_mem(iov[0].iov_base, iov[0].iov_len, "hello, world", 12,
               "iov content");
    else
        fail("iov content");
    is_int(isd_outq_iov(&q, iov, 0), 0, "max 0: no iovecs");

    /* a large append gets a chunk of its own */
    big = malloc(bigsz);
    fill_pat(big, 0, bigsz);
    is_int(isd_outq_append(&q, big, bigsz), 0, "append 3 MiB");
    is_int(q.bytes, 12 + bigsz, "bytes accounting");
    is_int(isd_outq_append(&q, "tail", 4), 0, "append small after large");
    is_int(q.bytes, 16 + bigsz, "bytes accounting");
    g = gather(&q, &len, &n);
    ok(n >= 2, "large append is in another chunk (%d iovecs)", n);
    ok(len == 16 + bigsz && memcmp(g, "hello, world", 12) == 0 &&
       memcmp(g + 12, big, bigsz) == 0 && memcmp(g + 12 + bigsz, "tail", 4) == 0,
       "iovecs hold the bytes in order (len %zu)", len);
    free(g);

    /* iov with a max smaller than the number of chunks */
    n = isd_outq_iov(&q, iov, 1);
    is_int(n, 1, "max 1: one iovec");
    if (n == 1)
        is_mem(iov[0].iov_base, iov[0].iov_len, "hello, world", 12,
               "max 1: the oldest bytes");
    else
        fail("max 1: the oldest bytes");

    /* partial consume within the first chunk */
    isd_outq_consume(&q, 7);
    is_int(q.bytes, 9 + bigsz, "consume 7: bytes");
    n = isd_outq_iov(&q, iov, 64);
    ok(n >= 1 && iov[0].iov_len == 5 && memcmp(iov[0].iov_base, "world", 5) == 0,
       "consume 7: first iovec is \"world\"");
    /* consume across a chunk boundary: rest of chunk 1 + 1000 bytes of big */
    isd_outq_consume(&q, 5 + 1000);
    is_int(q.bytes, 4 + bigsz - 1000, "consume across boundary: bytes");
    n = isd_outq_iov(&q, iov, 64);
    ok(n >= 1 && iov[0].iov_len > 0 &&
       memcmp(iov[0].iov_base, big + 1000, iov[0].iov_len < 64 ? iov[0].iov_len : 64) == 0,
       "first iovec starts at offset 1000 of the big chunk");
    g = gather(&q, &len, NULL);
    ok(len == bigsz - 1000 + 4 && memcmp(g, big + 1000, bigsz - 1000) == 0 &&
       memcmp(g + bigsz - 1000, "tail", 4) == 0, "remaining content right");
    free(g);
    /* consume to the middle of "tail" */
    isd_outq_consume(&q, bigsz - 1000 + 2);
    ok(outq_is(&q, "il", 2), "consume into the last chunk");
    n = isd_outq_iov(&q, iov, 64);
    is_int(n, 1, "one iovec left");
    /* append after partial consume */
    is_int(isd_outq_append(&q, "!!", 2), 0, "append after partial consume");
    ok(outq_is(&q, "il!!", 4), "content il!!");
    isd_outq_consume(&q, 4);
    is_int(q.bytes, 0, "consumed everything");
    is_int(isd_outq_iov(&q, iov, 64), 0, "no iovecs when empty");
    is_int(isd_outq_append(&q, "again", 5), 0, "append after emptying");
    ok(outq_is(&q, "again", 5), "content again");
    isd_outq_consume(&q, 0);
    ok(outq_is(&q, "again", 5), "consume 0 is a no-op");

    /* clear */
    isd_outq_append(&q, big, bigsz);
    isd_outq_append(&q, "x", 1);
    isd_outq_clear(&q);
    is_int(q.bytes, 0, "clear: 0 bytes");
    is_int(isd_outq_iov(&q, iov, 64), 0, "clear: no iovecs");
    is_int(isd_outq_append(&q, "reuse", 5), 0, "append after clear");
    ok(outq_is(&q, "reuse", 5), "content after clear");
    isd_outq_clear(&q);
    isd_outq_clear(&q);
    pass("clear twice is harmless");

    /* many small appends: few iovecs (chunks are filled), none empty */
    tot = 0;
    for (i = 0; i < 100000; i++) {
        unsigned char c[3];
        fill_pat(c, tot, 3);
        if (isd_outq_append(&q, c, 3)) break;
        tot += 3;
    }
    is_int(tot, 300000, "100000 appends of 3 bytes");
    g = gather(&q, &len, &n);
    ok(len == tot, "all bytes in the iovecs");
    {
        size_t k;
        int good = 1;
        for (k = 0; k < len; k++) if (g[k] != pat(k)) { good = 0; break; }
        ok(good, "content in order");
    }
    free(g);
    n = isd_outq_iov(&q, iov, 64);
    empty_iovs = 0;
    for (i = 0; i < n; i++) if (iov[i].iov_len == 0) empty_iovs++;
    is_int(empty_iovs, 0, "no empty iovecs");
    ok(n < 64, "300000 bytes of small appends use few chunks (%d iovecs)", n);
    ok(n > 0 && n <= 64, "iov respects max 64 (%d)", n);
    n = isd_outq_iov(&q, iov, 3);
    ok(n >= 1 && n <= 3, "iov respects max 3 (%d)", n);
    isd_outq_clear(&q);

    free(big);
}

/* Random appends (small and large), consumes (also exactly at chunk
 * boundaries) and clears, checked against a model buffer. */
/* A shared spare chunk: an emptied small chunk is kept instead of freed,
 * and the next queue's first small append takes it; big chunks are never
 * kept, a full spare is not overwritten. */
static void test_outq_spare(void)
{
    isd_outq a, b;
    isd_chunk *spare = NULL, *kept;
    struct iovec iov[4];
    unsigned char *big = malloc(20000);

    isd_outq_init(&a);
    isd_outq_init(&b);
    is_int(isd_outq_append_spare(&a, "one\n", 4, &spare), 0, "append with an empty spare");
    ok(spare == NULL, "nothing to take: spare still empty");
    kept = a.head;
    isd_outq_consume_spare(&a, 2, &spare);
    ok(spare == NULL && a.bytes == 2, "partly consumed: the chunk stays queued");
    isd_outq_consume_spare(&a, 2, &spare);
    ok(spare == kept && a.head == NULL && a.tail == NULL && a.bytes == 0,
       "emptied: its chunk became the spare");
    is_int(isd_outq_append_spare(&b, "two\n", 4, &spare), 0, "another queue appends");
    ok(b.head == kept && spare == NULL, "and takes the spare");
    if (isd_outq_iov(&b, iov, 4) == 1)
        is_mem(iov[0].iov_base, iov[0].iov_len, "two\n", 4, "with the new bytes only");
    else
        fail("with the new bytes only");
    is_int(isd_outq_append_spare(&a, "three\n", 6, &spare), 0, "no spare left: a new chunk");
    ok(a.head && a.head != kept, "a chunk of its own");
    isd_outq_consume_spare(&b, 4, &spare);
    ok(spare == kept, "b's emptied chunk is the spare");
    isd_outq_consume_spare(&a, 6, &spare);
    ok(spare == kept, "a full spare is kept, a's chunk freed");
    memset(big, 'x', 20000);
    is_int(isd_outq_append_spare(&a, big, 20000, &spare), 0, "a large append");
    ok(spare == kept, "does not take the small spare");
    isd_outq_consume_spare(&a, 20000, &spare);
    isd_outq_spare_free(&spare);
    ok(spare == NULL, "spare_free empties it");
    isd_outq_consume_spare(&a, 0, &spare);
    is_int(isd_outq_append_spare(&a, big, 20000, &spare), 0, "large chunk again");
    isd_outq_consume_spare(&a, 20000, &spare);
    ok(spare == NULL, "an emptied large chunk is freed, not kept");
    isd_outq_clear(&a);
    isd_outq_clear(&b);
    isd_outq_spare_free(&spare);
    free(big);
}

static void test_outq_model(void)
{
    isd_outq q;
    isd_buf model;                  /* the reference: what must be queued */
    unsigned seed = 4242;
    size_t next = 0;
    int k, bad = 0;
    unsigned char *tmp = malloc(200000);

    isd_outq_init(&q);
    memset(&model, 0, sizeof model);
    for (k = 0; k < 4000 && !bad; k++) {
        unsigned op;
        seed = seed * 1103515245u + 12345u;
        op = (seed >> 16) % 6;
        if (op <= 2) {
            size_t sz = (op == 2 && (seed & 0x700) == 0)
                      ? 10000 + (seed >> 3) % 190000
                      : (seed >> 8) % 900;
            fill_pat(tmp, next, sz);
            next += sz;
            if (isd_outq_append(&q, tmp, sz)) { bad = 1; break; }
            /* the model must not fail either */
            if (isd_buf_append(&model, tmp, sz)) { bad = 9; break; }
        } else if (op <= 4) {
            size_t sz = q.bytes ? (seed >> 8) % (q.bytes + 1) : 0;
            if (op == 4 && q.bytes) {
                /* consume exactly up to the end of the first iovec, or one
                 * past it: the chunk boundary cases */
                struct iovec iov[2];
                int n = isd_outq_iov(&q, iov, 2);
                if (n >= 1) {
                    sz = iov[0].iov_len;
                    if ((seed & 1) && n == 2) sz++;
                }
            }
            isd_outq_consume(&q, sz);
            isd_buf_consume(&model, sz);
        } else if ((seed & 0xF000) == 0) {
            isd_outq_clear(&q);
            isd_buf_consume(&model, isd_buf_len(&model));
        }
        if (q.bytes != isd_buf_len(&model)) { bad = 2; break; }
        if (k % 50 == 0 || q.bytes < 5000) {
            if (!outq_is(&q, isd_buf_len(&model) ? isd_buf_head(&model) : "",
                         isd_buf_len(&model))) {
                bad = 3; break;
            }
            /* iovecs are never empty */
            {
                struct iovec iov[1024];
                int n = isd_outq_iov(&q, iov, 1024), i;
                for (i = 0; i < n; i++)
                    if (iov[i].iov_len == 0) { bad = 4; break; }
            }
        }
    }
    if (bad) diag("model test failed at op %d (code %d)", k, bad);
    is_int(bad, 0, "4000 random outq ops match the model");
    isd_outq_clear(&q);
    isd_buf_free(&model);
    free(tmp);
}

static int enomem_outq(void)
{
    isd_outq q;
    int r, good = 1;
    static const char junk[16];
    isd_outq_init(&q);
    isd_outq_append(&q, "keep", 4);
    errno = 0;
    r = isd_outq_append(&q, junk, SIZE_MAX - 8);
    if (r != -1 || errno != ENOMEM) {
        diag("outq_append(SIZE_MAX-8) = %d, errno %d", r, errno); good = 0;
    }
    errno = 0;
    r = isd_outq_append(&q, junk, SIZE_MAX);
    if (r != -1 || errno != ENOMEM) {
        diag("outq_append(SIZE_MAX) = %d, errno %d", r, errno); good = 0;
    }
    if (!outq_is(&q, "keep", 4)) { diag("queue changed"); good = 0; }
    isd_outq_clear(&q);
    return good;
}

int main(void)
{
    alarm(20);
    test_buf_basics();
    test_buf_reserve();
    ok(in_child(enomem_buf, "enomem_buf"),
       "isd_buf: -1/ENOMEM for impossible sizes (overflow-safe), buffer unchanged");
    test_outq();
    test_outq_spare();
    test_outq_model();
    ok(in_child(enomem_outq, "enomem_outq"),
       "isd_outq: -1/ENOMEM for impossible sizes, queue unchanged");
    return done_testing();
}
