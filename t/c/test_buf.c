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
#include <sys/mman.h>
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

/* -------------------------------------------------------------- blobs */

/* Where buf.c keeps a block of BIG_MIN (128 KiB) bytes or more in pages of
 * its own (not under AddressSanitizer, which gets malloc for everything):
 * there a blob that is freed is unmapped at once, and mincore() tells. */
#if defined(__SANITIZE_ADDRESS__)
#  define TB_ASAN 1
#elif defined(__has_feature)
#  if __has_feature(address_sanitizer)
#    define TB_ASAN 1
#  endif
#endif
#if (defined(MAP_ANONYMOUS) || defined(MAP_ANON)) && !defined(TB_ASAN) && defined(__linux__)
#  define TB_MAPPED 1
#endif
#define TB_BIG ((size_t)200000)     /* > BIG_MIN: a mapping of its own */

/* Is the page holding p mapped?  1 yes, 0 no, -1 cannot tell. */
static int page_mapped(const void *p)
{
#ifdef TB_MAPPED
    long pg = sysconf(_SC_PAGESIZE);
    unsigned char vec[1];
    void *page = (void *)((uintptr_t)p & ~(uintptr_t)(pg - 1));
    if (mincore(page, (size_t)pg, vec) == 0)
        return 1;
    return errno == ENOMEM ? 0 : -1;
#else
    (void)p;
    return -1;
#endif
}

/* the first iovec of q: its base, or NULL when q is empty */
static const char *first_iov(const isd_outq *q, size_t *len)
{
    struct iovec iov[1];
    if (isd_outq_iov(q, iov, 1) != 1) { *len = 0; return NULL; }
    *len = iov[0].iov_len;
    return iov[0].iov_base;
}

/* A blob appended to several queues is one block of memory, shared: every
 * queue's iovec points at the same bytes (not a copy); it lives while any
 * queue holds it and goes with the last one (ASan: use after free, or a
 * leak at exit; elsewhere its pages are unmapped). */
static void test_blob_shared(void)
{
    unsigned char *src = malloc(TB_BIG), *want = malloc(TB_BIG);
    isd_outq qa, qb, qc;
    isd_blob *b;
    const char *pa, *pb, *pc, *data;
    struct iovec iov[4];
    size_t la, lb, lc;
    int n;

    fill_pat(src, 0, TB_BIG);
    memcpy(want, src, TB_BIG);
    b = isd_blob_new(src, TB_BIG);
    ok(b != NULL, "isd_blob_new of %zu bytes", TB_BIG);
    if (!b) { free(src); free(want); return; }
    is_int(isd_blob_len(b), TB_BIG, "isd_blob_len");
    memset(src, 0, TB_BIG);            /* the blob has copied them */

    isd_outq_init(&qa);
    isd_outq_init(&qb);
    isd_outq_init(&qc);
    is_int(isd_outq_append(&qa, "hdr:", 4), 0, "qa: 4 bytes of its own first");
    is_int(isd_outq_append_blob(&qa, b), 0, "blob appended to qa");
    is_int(isd_outq_append_blob(&qb, b), 0, "... to qb");
    is_int(isd_outq_append_blob(&qc, b), 0, "... to qc");
    is_int(qa.bytes, 4 + TB_BIG, "qa.bytes counts the blob");
    is_int(qb.bytes, TB_BIG, "qb.bytes is the blob's length");
    isd_blob_unref(b);                 /* the queues hold their own references */
    b = NULL;

    n = isd_outq_iov(&qa, iov, 4);
    is_int(n, 2, "qa: two iovecs, its own bytes and the blob's");
    pa = n == 2 ? iov[1].iov_base : NULL;
    la = n == 2 ? iov[1].iov_len : 0;
    if (n >= 1)
        is_mem(iov[0].iov_base, iov[0].iov_len, "hdr:", 4, "qa: its own bytes first");
    else
        fail("qa: its own bytes first");
    pb = first_iov(&qb, &lb);
    pc = first_iov(&qc, &lc);
    is_int(isd_outq_iov(&qb, iov, 4), 1, "qb: one iovec");
    ok(pa && pa == pb && pb == pc, "the three queues point at the same bytes (%p %p %p)",
       (const void *)pa, (const void *)pb, (const void *)pc);
    ok(la == TB_BIG && lb == TB_BIG && lc == TB_BIG, "each iovec is the whole blob");
    ok(pb && memcmp(pb, want, TB_BIG) == 0,
       "the iovec holds the bytes given to isd_blob_new (copied there)");
    data = pb;
    if (page_mapped(data) >= 0)
        is_int(page_mapped(data), 1, "the blob's pages are mapped");

    isd_outq_clear(&qa);
    is_int(qa.bytes, 0, "qa cleared");
    pb = first_iov(&qb, &lb);
    ok(pb == data && lb == TB_BIG && memcmp(pb, want, TB_BIG) == 0,
       "after qa let go, qb still reads every byte");
    if (page_mapped(data) >= 0)
        is_int(page_mapped(data), 1, "not freed while qb and qc hold it");

    isd_outq_consume(&qb, 1000);
    pb = first_iov(&qb, &lb);
    ok(pb == data + 1000 && lb == TB_BIG - 1000, "qb consumed 1000: its iovec moves on in the blob");
    pc = first_iov(&qc, &lc);
    ok(pc == data && lc == TB_BIG, "qc's entry is its own: still at offset 0");
    isd_outq_consume(&qb, TB_BIG - 1000);
    is_int(qb.bytes, 0, "qb consumed it all (the blob entry freed by consume)");
    is_int(isd_outq_iov(&qb, iov, 4), 0, "qb: no iovec left");
    pc = first_iov(&qc, &lc);
    ok(pc == data && lc == TB_BIG && memcmp(pc, want, TB_BIG) == 0,
       "qc, the last holder, still reads every byte");
    if (page_mapped(data) >= 0)
        is_int(page_mapped(data), 1, "not freed while qc holds it");

    isd_outq_clear(&qc);
    if (page_mapped(data) >= 0)
        is_int(page_mapped(data), 0, "freed with the last queue: its pages are unmapped");
    else
        note("(no mincore check here: ASan or no mapped blocks; LeakSanitizer "
             "and use-after-free checks stand for it)");

    /* the caller's reference may also be the last one */
    b = isd_blob_new(want, TB_BIG);
    isd_outq_init(&qa);
    isd_outq_append_blob(&qa, b);
    data = first_iov(&qa, &la);
    isd_outq_clear(&qa);
    ok(data && memcmp(data, want, TB_BIG) == 0 && page_mapped(data) != 0,
       "a queue letting go does not free a blob the caller still holds");
    isd_blob_unref(b);
    if (page_mapped(data) >= 0)
        is_int(page_mapped(data), 0, "the caller's unref, the last, frees it");

    /* the same blob twice in one queue: two entries, two references */
    b = isd_blob_new(want, 300);
    isd_outq_init(&qa);
    is_int(isd_outq_append_blob(&qa, b), 0, "a blob appended to a queue");
    is_int(isd_outq_append_blob(&qa, b), 0, "... and again to the same queue");
    isd_blob_unref(b);
    n = isd_outq_iov(&qa, iov, 4);
    ok(n == 2 && iov[0].iov_base == iov[1].iov_base && iov[0].iov_len == 300
       && iov[1].iov_len == 300, "two iovecs over the same 300 bytes");
    isd_outq_consume(&qa, 300);
    pa = first_iov(&qa, &la);
    ok(pa && la == 300 && memcmp(pa, want, 300) == 0,
       "the first entry consumed, the second still reads the bytes");
    isd_outq_clear(&qa);
    pass("(released by clear: LeakSanitizer would tell otherwise)");

    isd_blob_unref(NULL);
    pass("isd_blob_unref(NULL) is harmless");
    free(src);
    free(want);
}

/* Partial consumes across normal chunks and a blob chunk, and iov over
 * them, checked against the expected stream. */
static void test_blob_consume(void)
{
    unsigned char blob_bytes[1000], exp[2000];
    size_t elen = 0, eoff = 0, len;
    isd_outq q;
    isd_blob *b;
    struct iovec iov[8];
    const char *bp, *p;
    int n;

    fill_pat(blob_bytes, 5000, sizeof blob_bytes);
    b = isd_blob_new(blob_bytes, sizeof blob_bytes);
    ok(b != NULL, "a 1000-byte blob");
    if (!b) return;
    isd_outq_init(&q);
    isd_outq_append(&q, "abc", 3);
    isd_outq_append_blob(&q, b);
    isd_outq_append(&q, "xyz", 3);
    isd_blob_unref(b);
    memcpy(exp, "abc", 3);
    memcpy(exp + 3, blob_bytes, 1000);
    memcpy(exp + 1003, "xyz", 3);
    elen = 1006;
    ok(outq_is(&q, exp, elen), "abc + blob + xyz, in order (%zu bytes)", q.bytes);
    n = isd_outq_iov(&q, iov, 8);
    is_int(n, 3, "three iovecs: chunk, blob, chunk");
    bp = n == 3 ? iov[1].iov_base : NULL;

    isd_outq_consume(&q, 2);
    eoff += 2;
    ok(outq_is(&q, exp + eoff, elen - eoff), "consume 2: c + blob + xyz");
    isd_outq_consume(&q, 1 + 400);      /* the rest of "abc", into the blob */
    eoff += 401;
    ok(outq_is(&q, exp + eoff, elen - eoff), "consume 401, across into the blob");
    p = first_iov(&q, &len);
    ok(bp && p == bp + 400 && len == 600, "the first iovec is the blob from offset 400, 600 bytes");
    n = isd_outq_iov(&q, iov, 1);
    is_int(n, 1, "iov max 1 over a blob chunk: one");
    isd_outq_consume(&q, 599);
    eoff += 599;
    ok(outq_is(&q, exp + eoff, elen - eoff), "consume 599: the blob's last byte, then xyz");
    p = first_iov(&q, &len);
    ok(bp && p == bp + 999 && len == 1, "the first iovec is the blob's last byte");
    isd_outq_consume(&q, 2);            /* the blob's last byte and "x" */
    eoff += 2;
    ok(outq_is(&q, exp + eoff, elen - eoff), "consume 2, out of the blob: yz");
    is_int(isd_outq_iov(&q, iov, 8), 1, "one iovec left");
    isd_outq_consume(&q, 2);
    is_int(q.bytes, 0, "all consumed");

    /* one consume that swallows a whole blob chunk and ends in the next */
    b = isd_blob_new(blob_bytes, 500);
    isd_outq_append(&q, "12", 2);
    isd_outq_append_blob(&q, b);
    isd_outq_append_blob(&q, b);
    isd_outq_append(&q, "34", 2);
    isd_blob_unref(b);
    memcpy(exp, "12", 2);
    memcpy(exp + 2, blob_bytes, 500);
    memcpy(exp + 502, blob_bytes, 500);
    memcpy(exp + 1002, "34", 2);
    elen = 1004;
    isd_outq_consume(&q, 1);
    isd_outq_consume(&q, 1 + 500 + 10);
    ok(outq_is(&q, exp + 512, elen - 512),
       "consume 511: the rest of a chunk, a whole blob entry, 10 bytes of the next");
    /* consume that ends exactly at a blob entry's end */
    isd_outq_consume(&q, 490);
    ok(outq_is(&q, "34", 2), "consume exactly to the end of a blob entry");
    is_int(isd_outq_iov(&q, iov, 8), 1, "the emptied blob entry is gone");
    isd_outq_clear(&q);

    /* a partly consumed blob entry is released by clear */
    b = isd_blob_new(blob_bytes, 1000);
    isd_outq_append_blob(&q, b);
    isd_blob_unref(b);
    isd_outq_consume(&q, 10);
    isd_outq_clear(&q);
    is_int(q.bytes, 0, "a partly consumed blob entry, cleared");
}

/* Bytes appended after a blob go to a new chunk of their own: the blob,
 * which other queues share, is never written into; nor do they go into
 * a chunk before the blob, which would change the order. */
static void test_blob_append_after(void)
{
    unsigned char blob_bytes[300], exp[400];
    isd_outq q, other;
    isd_chunk *spare = NULL;
    isd_blob *b;
    struct iovec iov[8];
    const char *bp;
    size_t len;
    int n, i;

    fill_pat(blob_bytes, 77, sizeof blob_bytes);
    b = isd_blob_new(blob_bytes, sizeof blob_bytes);
    ok(b != NULL, "a 300-byte blob");
    if (!b) return;
    isd_outq_init(&q);
    isd_outq_init(&other);
    isd_outq_append_blob(&q, b);
    isd_outq_append_blob(&other, b);
    bp = first_iov(&q, &len);
    is_int(isd_outq_append(&q, "tail", 4), 0, "4 bytes appended after the blob");
    n = isd_outq_iov(&q, iov, 8);
    is_int(n, 2, "two iovecs: the blob, then a new chunk");
    ok(n == 2 && iov[0].iov_base == bp && iov[0].iov_len == 300,
       "the blob entry is unchanged (300 bytes at the same place)");
    if (n == 2)
        is_mem(iov[1].iov_base, iov[1].iov_len, "tail", 4, "the new chunk holds them");
    else
        fail("the new chunk holds them");
    ok(iov[1].iov_base != bp + 300, "... not the bytes right after the blob's");
    is_mem(bp, 300, blob_bytes, 300, "the blob's bytes are untouched");
    ok(outq_is(&other, blob_bytes, 300), "the other queue sharing it still has just the blob");
    for (i = 0; i < 200; i++)           /* many more small appends */
        isd_outq_append(&q, "0123456789", 10);
    is_mem(bp, 300, blob_bytes, 300, "2000 more bytes later: the blob untouched");
    ok(outq_is(&other, blob_bytes, 300), "... and the other queue too");
    isd_outq_clear(&q);

    /* a chunk with room before the blob: later bytes go after the blob */
    isd_outq_append(&q, "x", 1);
    isd_outq_append_blob(&q, b);
    isd_outq_append(&q, "y", 1);
    exp[0] = 'x';
    memcpy(exp + 1, blob_bytes, 300);
    exp[301] = 'y';
    ok(outq_is(&q, exp, 302), "x + blob + y: y after the blob, not in x's chunk");
    is_int(isd_outq_iov(&q, iov, 8), 3, "three iovecs");
    isd_outq_clear(&q);

    /* with a spare: an emptied blob entry never becomes the spare (it has
     * no room of its own), and a new small chunk after a blob is whole */
    isd_outq_append_blob(&q, b);
    isd_outq_consume_spare(&q, 300, &spare);
    ok(spare == NULL, "an emptied blob entry is not kept as the spare");
    isd_outq_append_blob(&q, b);
    is_int(isd_outq_append_spare(&q, "after", 5, &spare), 0, "append_spare after a blob");
    n = isd_outq_iov(&q, iov, 8);
    ok(n == 2 && iov[0].iov_len == 300 && iov[1].iov_len == 5
       && memcmp(iov[1].iov_base, "after", 5) == 0, "a chunk of its own after the blob");
    isd_outq_consume_spare(&q, 305, &spare);
    ok(spare != NULL, "that chunk, emptied, is the spare");
    is_int(isd_outq_append_spare(&q, "again", 5, &spare), 0, "and is taken again");
    ok(outq_is(&q, "again", 5), "with the new bytes only");
    isd_outq_clear(&q);
    isd_outq_spare_free(&spare);
    isd_outq_clear(&other);
    isd_blob_unref(b);
}

/* A zero-length blob: appending it is a no-op (no entry, no empty iovec);
 * clear releases the references a queue holds. */
static void test_blob_zero_and_clear(void)
{
    isd_outq q, r;
    isd_blob *z, *b;
    struct iovec iov[4];
    unsigned char big[5000];
    int n;

    z = isd_blob_new("", 0);
    ok(z != NULL, "a zero-length blob");
    if (z) {
        is_int(isd_blob_len(z), 0, "of length 0");
        isd_outq_init(&q);
        is_int(isd_outq_append_blob(&q, z), 0, "appended to an empty queue: 0");
        ok(q.bytes == 0 && q.head == NULL && q.tail == NULL, "the queue stays empty");
        is_int(isd_outq_iov(&q, iov, 4), 0, "no iovec");
        isd_outq_append(&q, "ab", 2);
        is_int(isd_outq_append_blob(&q, z), 0, "appended after bytes: 0");
        isd_outq_append(&q, "cd", 2);
        n = isd_outq_iov(&q, iov, 4);
        is_int(n, 1, "no entry for it: ab and cd share a chunk");
        ok(outq_is(&q, "abcd", 4), "abcd");
        isd_outq_clear(&q);
        isd_blob_unref(z);
        pass("its only reference released (LeakSanitizer would tell otherwise)");
    }
    z = isd_blob_new(NULL, 0);
    ok(z != NULL && isd_blob_len(z) == 0, "isd_blob_new(NULL, 0) is fine too");
    isd_blob_unref(z);

    /* clear releases every reference of the queues it empties */
    fill_pat(big, 9, sizeof big);
    b = isd_blob_new(big, sizeof big);
    isd_outq_init(&q);
    isd_outq_init(&r);
    isd_outq_append_blob(&q, b);
    isd_outq_append(&q, "mid", 3);
    isd_outq_append_blob(&q, b);
    isd_outq_append_blob(&r, b);
    isd_blob_unref(b);
    isd_outq_clear(&q);
    ok(q.bytes == 0 && q.head == NULL && q.tail == NULL, "clear empties a queue holding a blob twice");
    ok(outq_is(&r, big, sizeof big), "the other queue still reads the blob");
    isd_outq_clear(&r);
    is_int(r.bytes, 0, "clear of the last holder (frees it: LeakSanitizer would tell otherwise)");
    isd_outq_clear(&r);
    pass("clear twice is harmless");
}

/* Random ops over two queues that share blobs, against two models. */
static void test_blob_model(void)
{
    isd_outq q[2];
    isd_buf model[2];
    unsigned seed = 777;
    size_t next = 0;
    int k, i, bad = 0;
    unsigned char *tmp = malloc(70000);

    for (i = 0; i < 2; i++) {
        isd_outq_init(&q[i]);
        memset(&model[i], 0, sizeof model[i]);
    }
    for (k = 0; k < 3000 && !bad; k++) {
        unsigned op;
        int w;
        seed = seed * 1103515245u + 12345u;
        op = (seed >> 16) % 7;
        w = (seed >> 24) & 1;
        if (op <= 1) {                  /* bytes of its own */
            size_t sz = (seed >> 4) % (op ? 600 : 20000);
            fill_pat(tmp, next, sz);
            next += sz;
            if (isd_outq_append(&q[w], tmp, sz) || isd_buf_append(&model[w], tmp, sz))
                bad = 1;
        } else if (op <= 3) {           /* a blob, to one or both */
            size_t sz = (seed >> 4) % (op == 2 ? 300 : 70000);
            isd_blob *b;
            fill_pat(tmp, next, sz);
            next += sz;
            if (!(b = isd_blob_new(tmp, sz))) { bad = 2; break; }
            for (i = 0; i < 2; i++) {
                if (i != w && (seed & 0x100)) continue;
                if (isd_outq_append_blob(&q[i], b) || isd_buf_append(&model[i], tmp, sz))
                    bad = 3;
            }
            isd_blob_unref(b);
        } else if (op <= 5) {           /* consume, sometimes to an iovec's end */
            size_t sz = q[w].bytes ? (seed >> 4) % (q[w].bytes + 1) : 0;
            if (op == 5 && q[w].bytes) {
                struct iovec iov[2];
                int n = isd_outq_iov(&q[w], iov, 2);
                sz = iov[0].iov_len + ((seed & 2) && n == 2 ? 1 : 0);
            }
            isd_outq_consume(&q[w], sz);
            isd_buf_consume(&model[w], sz);
        } else if ((seed & 0x7000) == 0) {
            isd_outq_clear(&q[w]);
            isd_buf_consume(&model[w], isd_buf_len(&model[w]));
        }
        for (i = 0; i < 2 && !bad; i++) {
            struct iovec iov[1024];
            int n, j;
            if (q[i].bytes != isd_buf_len(&model[i])) { bad = 4; break; }
            if (!outq_is(&q[i], isd_buf_len(&model[i]) ? isd_buf_head(&model[i]) : "",
                         isd_buf_len(&model[i]))) { bad = 5; break; }
            n = isd_outq_iov(&q[i], iov, 1024);
            for (j = 0; j < n; j++)
                if (iov[j].iov_len == 0) { bad = 6; break; }
        }
    }
    if (bad) diag("blob model test failed at op %d (code %d)", k, bad);
    is_int(bad, 0, "3000 random ops over two queues sharing blobs match the models");
    for (i = 0; i < 2; i++) {
        isd_outq_clear(&q[i]);
        isd_buf_free(&model[i]);
    }
    free(tmp);
}

static int enomem_blob(void)
{
    static const char junk[16];
    isd_blob *b;
    int good = 1;

    errno = 0;
    b = isd_blob_new(junk, SIZE_MAX - 8);
    if (b || errno != ENOMEM) { diag("blob_new(SIZE_MAX-8): %p, errno %d", (void *)b, errno); good = 0; }
    errno = 0;
    b = isd_blob_new(junk, SIZE_MAX);
    if (b || errno != ENOMEM) { diag("blob_new(SIZE_MAX): %p, errno %d", (void *)b, errno); good = 0; }
    errno = 0;
    b = isd_blob_new(junk, SIZE_MAX / 2);
    if (b || errno != ENOMEM) { diag("blob_new(SIZE_MAX/2): %p, errno %d", (void *)b, errno); good = 0; }
    return good;
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
    tap_subtest(test_blob_shared, "blob shared by queues");
    tap_subtest(test_blob_consume, "blob: partial consumes");
    tap_subtest(test_blob_append_after, "blob: appends after it");
    tap_subtest(test_blob_zero_and_clear, "blob: zero length, clear");
    tap_subtest(test_blob_model, "blob: model");
    ok(in_child(enomem_blob, "enomem_blob"),
       "isd_blob_new: NULL/ENOMEM for impossible sizes (overflow-safe)");
    return done_testing();
}
