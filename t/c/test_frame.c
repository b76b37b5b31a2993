/* test_frame.c - unit tests for isd_frame_next (c_src/frame.c). */
// Build and run by hand from the distribution root:
//   cc -std=c99 -D_GNU_SOURCE -Wall -Wextra -Ic_src t/c/test_frame.c c_src/*.c -o /tmp/tf && /tmp/tf
//
// Every input is placed flush against a PROT_NONE page, so reading even one
// byte past p[len) crashes the program instead of passing silently.
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
#include <sys/time.h>
#include <unistd.h>

/* ------------------------------------------------------- guarded memory */

typedef struct guard {
    char  *map;
    size_t maplen;
    size_t datalen;   /* readable bytes before the PROT_NONE page */
} guard;

static size_t pagesz;

static void guard_new(guard *g, size_t capacity)
{
    size_t pages = (capacity + pagesz - 1) / pagesz;
    if (pages == 0) pages = 1;
    g->datalen = pages * pagesz;
    g->maplen = g->datalen + pagesz;
    g->map = mmap(NULL, g->maplen, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (g->map == MAP_FAILED) {
        printf("Bail out! mmap: %s\n", strerror(errno));
        exit(255);
    }
    if (mprotect(g->map + g->datalen, pagesz, PROT_NONE) != 0) {
        printf("Bail out! mprotect: %s\n", strerror(errno));
        exit(255);
    }
}

/* copy n bytes so they end exactly at the guard page; returns the copy */
static char *guard_put(guard *g, const void *src, size_t n)
{
    char *p = g->map + g->datalen - n;
    if (n > g->datalen) {
        printf("Bail out! guard_put: %zu > %zu\n", n, g->datalen);
        exit(255);
    }
    if (n) memcpy(p, src, n);
    return p;
}

static void guard_free(guard *g)
{
    munmap(g->map, g->maplen);
}

static guard G;   /* a small guarded area for short inputs */

static isd_framing line(const char *sep, size_t max)
{
    isd_framing f;
    memset(&f, 0, sizeof f);
    f.kind = ISD_FRAME_LINE;
    f.sep = sep;
    f.seplen = sep ? strlen(sep) : 0;
    f.max = max;
    return f;
}

/* one call on a guarded copy of s[0..n), fresh scan */
static ssize_t next_n(const isd_framing *f, const char *s, size_t n)
{
    size_t scan = 0;
    return isd_frame_next(f, guard_put(&G, s, n), n, &scan);
}
static ssize_t next_s(const isd_framing *f, const char *s)
{
    return next_n(f, s, strlen(s));
}
/* -1 with errno EMSGSIZE? */
static int emsgsize(const isd_framing *f, const char *s, size_t n)
{
    ssize_t r;
    errno = 0;
    r = next_n(f, s, n);
    if (r != -1 || errno != EMSGSIZE)
        diag("expected -1/EMSGSIZE, got %zd errno %d", r, errno);
    return r == -1 && errno == EMSGSIZE;
}

static double now_s(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return tv.tv_sec + tv.tv_usec / 1e6;
}

/* The reference: what isd_frame_next must answer for p[0..len). */
static ssize_t ref_next(const char *sep, size_t seplen, size_t max,
                        const char *p, size_t len)
{
    size_t i;
    for (i = 0; i + seplen <= len; i++)
        if (memcmp(p + i, sep, seplen) == 0)
            return i + seplen <= max ? (ssize_t)(i + seplen) : -1;
    /* max bytes without a terminator may be a final message at EOF */
    return len > max ? -1 : 0;
}

/* ------------------------------------------------------------ the tests */

static void test_default_sep(void)
{
    isd_framing f = line(NULL, SIZE_MAX);
    size_t scan;
    char *p;

    is_int(next_s(&f, ""), 0, "empty input: incomplete");
    {   /* len 0 with p right at the guard page: nothing may be read */
        scan = 0;
        is_int(isd_frame_next(&f, G.map + G.datalen, 0, &scan), 0,
               "len 0 at the guard page");
    }
    is_int(next_s(&f, "\n"), 1, "\"\\n\" is a 1-byte message");
    is_int(next_s(&f, "abc"), 0, "\"abc\": incomplete");
    is_int(next_s(&f, "abc\n"), 4, "\"abc\\n\": 4");
    is_int(next_s(&f, "abc\ndef\n"), 4, "first of two lines");
    is_int(next_s(&f, "abc\r\n"), 5, "\"\\r\" is just a byte");
    is_int(next_n(&f, "a\0b\nc", 5), 4, "NUL bytes are data");
    is_int(next_s(&f, "abc\rdef"), 0, "a lone \\r does not end a line");

    /* sep NULL means "\n" whatever seplen says */
    f.seplen = 7;
    is_int(next_s(&f, "xy\nz"), 3, "sep NULL ignores seplen");
    f.seplen = 0;

    /* multiple lines, consuming as a reader would */
    {
        const char *in = "one\ntwo\n\nthree\nfour";
        const char *want[] = { "one\n", "two\n", "\n", "three\n" };
        size_t len = strlen(in), k = 0, off = 0;
        ssize_t r;
        int good = 1;
        p = guard_put(&G, in, len);
        scan = 0;
        while ((r = isd_frame_next(&f, p + off, len - off, &scan)) > 0) {
            if (k >= 4 || (size_t)r != strlen(want[k]) ||
                memcmp(p + off, want[k], (size_t)r) != 0) good = 0;
            off += (size_t)r;
            k++;
            scan = 0;
        }
        ok(good && k == 4, "four lines cut in order (%zu)", k);
        is_int(r, 0, "then \"four\" is incomplete");
        is_int(off, 15, "15 bytes in complete lines");
    }
}

static void test_custom_sep(void)
{
    isd_framing f = line("\r\n", SIZE_MAX);
    is_int(next_s(&f, "abc\r\n"), 5, "\\r\\n: abc\\r\\n");
    is_int(next_s(&f, "abc\n"), 0, "\\r\\n: a bare \\n is not it");
    is_int(next_s(&f, "abc\r"), 0, "\\r\\n: half a separator at the end");
    is_int(next_s(&f, "a\rb\r\r\n"), 6, "\\r\\n: \\r\\r\\n");
    is_int(next_s(&f, "\r\n"), 2, "\\r\\n alone");
    is_int(next_s(&f, "\r"), 0, "\\r alone");
    is_int(next_s(&f, "x\r\ny\r\n"), 3, "first of two");

    f = line("END", SIZE_MAX);
    is_int(next_s(&f, "helloEND"), 8, "END: helloEND");
    is_int(next_s(&f, "ENEND"), 5, "END: overlapping prefix ENEND");
    is_int(next_s(&f, "EENDx"), 4, "END: EEND");
    is_int(next_s(&f, "EN"), 0, "END: EN incomplete");
    is_int(next_s(&f, "E"), 0, "END: E incomplete");
    is_int(next_s(&f, "END"), 3, "END alone");
    is_int(next_s(&f, "end END"), 7, "END is case sensitive");
    is_int(next_s(&f, "xEN\nD"), 0, "END: interrupted");

    f = line("\0", SIZE_MAX);
    f.seplen = 1;
    is_int(next_n(&f, "ab\0cd", 5), 3, "NUL separator");
    is_int(next_n(&f, "ab\ncd", 5), 0, "NUL separator: \\n is data");

    /* a long separator, longer than the data */
    f = line("--boundary--", SIZE_MAX);
    is_int(next_s(&f, "--bound"), 0, "long sep, short data");
    is_int(next_s(&f, "x--boundary--"), 13, "long sep found");
}

/* The separator arrives split across two (or more) feeds. */
static void test_split_sep(void)
{
    static const struct { const char *sep, *a, *b, *c; ssize_t want; } cases[] = {
        { "\r\n", "abc\r", "\n",    "",   5 },
        { "END",  "abcE",  "N",     "D",  6 },
        { "END",  "abcEN", "D",     "",   6 },
        { "END",  "abcEN", "END",   "",   8 },
        { "END",  "abE",   "ENE",   "ND", 8 },
        { "\n",   "abc",   "\n",    "",   4 },
        { "--",   "a-",    "-",     "",   3 },
        { "---",  "a--",   "-",     "",   4 },
        { "-+-",  "a-",    "+",     "-",  4 },
        { "-+-",  "a-+",   "+-+",   "-",  7 },
    };
    size_t i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        isd_framing f = line(cases[i].sep, SIZE_MAX);
        char buf[64];
        size_t la = strlen(cases[i].a), lb = strlen(cases[i].b),
               lc = strlen(cases[i].c), scan = 0;
        ssize_t r1, r2, r3 = 0;
        memcpy(buf, cases[i].a, la);
        memcpy(buf + la, cases[i].b, lb);
        memcpy(buf + la + lb, cases[i].c, lc);
        r1 = isd_frame_next(&f, guard_put(&G, buf, la), la, &scan);
        r2 = isd_frame_next(&f, guard_put(&G, buf, la + lb), la + lb, &scan);
        if (r2 == 0 && lc)
            r3 = isd_frame_next(&f, guard_put(&G, buf, la + lb + lc),
                                la + lb + lc, &scan);
        {
            char e0[64], e1[64], e2[64], e3[64];
            ok(r1 == 0 &&
               (r2 == cases[i].want || (r2 == 0 && r3 == cases[i].want)),
               "sep %s split as %s+%s+%s: %zd (got %zd, %zd, %zd)",
               tap_show_(cases[i].sep, strlen(cases[i].sep), e0, sizeof e0),
               tap_show_(cases[i].a, la, e1, sizeof e1),
               tap_show_(cases[i].b, lb, e2, sizeof e2),
               tap_show_(cases[i].c, lc, e3, sizeof e3),
               cases[i].want, r1, r2, r3);
        }
    }
}

/* Feed a long line byte by byte, keeping scan: same answers as one-shot,
 * and linear time. */
static void test_resume_long(const char *sep, const char *label)
{
    const size_t body = 1u << 20;
    size_t seplen = strlen(sep), total = body + seplen, n, scan = 0;
    isd_framing f = line(sep, SIZE_MAX);
    guard g;
    char *p, *src;
    ssize_t r = 0;
    int early = 0, slow = 0;
    double t0;

    src = malloc(total);
    /* a body full of near-misses: every byte but the last of sep, and the
     * first byte of sep, so a restart-from-zero scan would do real work */
    for (n = 0; n < body; n++)
        src[n] = (seplen > 1 && n % 3 == 0) ? sep[0] : (char)('a' + n % 23);
    if (seplen > 1)
        for (n = 0; n + seplen - 1 <= body; n += 97)
            memcpy(src + n, sep, seplen - 1);
    memcpy(src + body, sep, seplen);
    /* make sure no separator is in the body by accident */
    if (ref_next(sep, seplen, SIZE_MAX, src, body) != 0) {
        fail("%s: test data is broken", label);
        free(src);
        return;
    }
    guard_new(&g, total);
    p = guard_put(&g, src, total);

    t0 = now_s();
    for (n = 1; n <= total; n++) {
        r = isd_frame_next(&f, p, n, &scan);
        if (r != 0 && n < total) { early = 1; break; }
        if ((n & 0xFFFF) == 0 && now_s() - t0 > 4.0) { slow = 1; break; }
    }
    if (early) diag("%s: got %zd after %zu of %zu bytes", label, r, n, total);
    ok(!early, "%s: no message before the separator is complete", label);
    ok(!slow, "%s: 1 MiB line fed 1 byte at a time is scanned in linear time "
       "(%.2fs%s)", label, now_s() - t0, slow ? ", gave up" : "");
    if (!early && !slow) {
        is_int(r, total, "%s: the whole line is the message", label);
        ok(scan <= total, "%s: scan stays within the data", label);
    } else {
        fail("%s: the whole line is the message", label);
        fail("%s: scan stays within the data", label);
    }
    scan = 0;
    is_int(isd_frame_next(&f, p, total, &scan), total,
           "%s: one-shot answer is the same", label);

    /* 64 KiB steps, too, and flush against the guard each time */
    {
        size_t step = 65536 + 7;
        ssize_t last = 0;
        int bad = 0;
        scan = 0;
        for (n = step; ; n += step) {
            if (n > total) n = total;
            /* the bytes p[0..n) are the same prefix wherever they sit */
            last = isd_frame_next(&f, guard_put(&g, src, n), n, &scan);
            if (n < total && last != 0) bad = 1;
            if (n == total) break;
        }
        ok(!bad && last == (ssize_t)total,
           "%s: 64 KiB feeds of a moving buffer give the same answer", label);
    }
    guard_free(&g);
    free(src);
}

/* Random short inputs over a small alphabet, fed in random pieces with scan
 * kept, consuming messages as they are found; every answer must equal the
 * reference.  This is the *scan resume contract, exhaustively-ish. */
static void test_random_feeds(void)
{
    static const char *seps[] = { NULL, "\r\n", "END", "EE", "EEN", "\n\n" };
    static const char alpha[] = "aEND\r\nE";
    unsigned seed = 99;
    int bad = 0, iter, calls = 0;
    char s[96], where[200] = "";

    for (iter = 0; iter < 30000 && !bad; iter++) {
        const char *sep;
        size_t seplen, max, len, avail, off = 0, scan = 0;
        isd_framing f;
        seed = seed * 1103515245u + 12345u;
        sep = seps[(seed >> 16) % 6];
        seplen = sep ? strlen(sep) : 1;
        seed = seed * 1103515245u + 12345u;
        len = (seed >> 16) % sizeof s;
        max = (seed & 3) == 0 ? SIZE_MAX : 1 + (seed >> 4) % 24;
        f = line(sep, max);
        {
            size_t i;
            for (i = 0; i < len; i++) {
                seed = seed * 1103515245u + 12345u;
                s[i] = alpha[(seed >> 16) % 7];
            }
        }
        avail = 0;
        while (avail < len || (avail == len && off < len)) {
            ssize_t got, want;
            int saved;
            seed = seed * 1103515245u + 12345u;
            avail += (seed >> 16) % 5;          /* 0..4 more bytes arrive */
            if (avail > len) avail = len;
            errno = 0;
            got = isd_frame_next(&f, guard_put(&G, s + off, avail - off),
                                 avail - off, &scan);
            saved = errno;
            calls++;
            want = ref_next(sep ? sep : "\n", seplen, max, s + off, avail - off);
            if (got != want || (got == -1 && saved != EMSGSIZE)) {
                snprintf(where, sizeof where,
                         "iter %d: sep %s max %zu off %zu avail %zu: got %zd "
                         "(errno %d), want %zd", iter, sep ? sep : "NULL",
                         max, off, avail, got, saved, want);
                bad = 1;
                break;
            }
            if (got < 0) break;                 /* the stream is dead */
            if (got > 0) { off += (size_t)got; scan = 0; continue; }
            if (avail == len) break;
        }
    }
    if (bad) diag("%s", where);
    ok(!bad, "random inputs fed in random pieces match the reference (%d calls)",
       calls);
}

static void test_max(void)
{
    isd_framing f = line(NULL, 10);
    /* exactly max bytes, terminator included, is fine */
    is_int(next_s(&f, "123456789\n"), 10, "max 10: 10-byte line OK");
    is_int(next_s(&f, "123456789\nmore data after it, way past max"), 10,
           "max 10: 10-byte line OK with more data after it");
    is_int(next_s(&f, "12\n345678901234567890"), 3,
           "max 10: short line OK although len > max");
    ok(emsgsize(&f, "1234567890\n", 11), "max 10: 11-byte line is EMSGSIZE");
    ok(emsgsize(&f, "1234567890\nx", 12), "max 10: 11-byte line + more: EMSGSIZE");
    /* incomplete data */
    is_int(next_s(&f, "123456789"), 0, "max 10: 9 bytes, no \\n: incomplete");
    is_int(next_s(&f, "1234567890"), 0,
           "max 10: 10 bytes, no \\n: incomplete (a final line at EOF)");
    ok(emsgsize(&f, "12345678901", 11), "max 10: 11 bytes, no \\n: EMSGSIZE");
    ok(emsgsize(&f, "12345678901234", 14), "max 10: 14 bytes, no \\n: EMSGSIZE");

    f = line("\r\n", 10);
    is_int(next_s(&f, "12345678\r\n"), 10, "\\r\\n max 10: 10 bytes OK");
    ok(emsgsize(&f, "123456789\r\n", 11), "\\r\\n max 10: 11 bytes EMSGSIZE");
    is_int(next_s(&f, "12345678\r"), 0, "\\r\\n max 10: 9 bytes ending in \\r: "
           "incomplete (\\n would make 10)");
    is_int(next_s(&f, "123456789\r"), 0, "\\r\\n max 10: 10 bytes ending in "
           "\\r: incomplete (only a final line at EOF: \\n would make 11)");
    ok(emsgsize(&f, "123456789\rx", 11), "\\r\\n max 10: 11 bytes, no "
       "terminator: EMSGSIZE");
    ok(emsgsize(&f, "123456789\r\n", 11),
       "\\r\\n max 10: separator straddling max: EMSGSIZE");

    f = line("END", 6);
    is_int(next_s(&f, "abcEND"), 6, "END max 6: 6 bytes OK");
    ok(emsgsize(&f, "abcdEND", 7), "END max 6: 7 bytes EMSGSIZE");
    is_int(next_s(&f, "abcEN"), 0, "END max 6: 5 bytes incomplete");
    is_int(next_s(&f, "abcdEN"), 0, "END max 6: 6 bytes without END: "
           "incomplete (a final message at EOF)");
    ok(emsgsize(&f, "abcdENx", 7), "END max 6: 7 bytes without END: EMSGSIZE");

    f = line(NULL, 1);
    is_int(next_s(&f, "\n"), 1, "max 1: empty line OK");
    is_int(next_s(&f, "a"), 0, "max 1: one byte without \\n: incomplete");
    ok(emsgsize(&f, "ab", 2), "max 1: two bytes without \\n: EMSGSIZE");
    ok(emsgsize(&f, "a\n", 2), "max 1: a\\n: EMSGSIZE");

    /* the boundary reached by feeding, with scan kept */
    {
        char buf[32];
        size_t n, scan = 0;
        ssize_t r = 0;
        int e = 0;
        f = line(NULL, 16);
        memset(buf, 'q', sizeof buf);
        for (n = 1; n <= 20; n++) {
            errno = 0;
            r = isd_frame_next(&f, guard_put(&G, buf, n), n, &scan);
            e = errno;
            if (r != 0) break;
        }
        ok(n == 17 && r == -1 && e == EMSGSIZE,
           "fed byte by byte, max 16: EMSGSIZE exactly at len 17 (n=%zu r=%zd)",
           n, r);
        /* and a 16-byte line fed byte by byte is fine */
        memset(buf, 'q', 15);
        buf[15] = '\n';
        scan = 0;
        for (n = 1; n <= 16; n++) {
            r = isd_frame_next(&f, guard_put(&G, buf, n), n, &scan);
            if (r != 0) break;
        }
        ok(n == 16 && r == 16, "fed byte by byte, max 16: a 16-byte line is "
           "OK (n=%zu r=%zd)", n, r);
    }

    /* a 1 MiB max on a bigger line */
    {
        size_t big = (1u << 20) + 100;
        char *src = malloc(big);
        guard g;
        size_t scan = 0;
        ssize_t r;
        memset(src, 'z', big);
        src[big - 1] = '\n';
        f = line(NULL, 1u << 20);
        guard_new(&g, big);
        errno = 0;
        r = isd_frame_next(&f, guard_put(&g, src, big), big, &scan);
        ok(r == -1 && errno == EMSGSIZE, "1 MiB max, line of 1 MiB + 100: EMSGSIZE");
        src[(1u << 20) - 1] = '\n';
        scan = 0;
        r = isd_frame_next(&f, guard_put(&g, src, big), big, &scan);
        is_int(r, 1u << 20, "1 MiB max, line of exactly 1 MiB: OK");
        guard_free(&g);
        free(src);
    }
}

static void test_raw(void)
{
    isd_framing f;
    size_t scan = 0;
    memset(&f, 0, sizeof f);
    f.kind = ISD_FRAME_RAW;
    f.max = 100;
    is_int(next_s(&f, ""), 0, "RAW: empty is 0");
    is_int(isd_frame_next(&f, G.map + G.datalen, 0, &scan), 0,
           "RAW: len 0 at the guard page");
    is_int(next_s(&f, "a"), 1, "RAW: 1 byte");
    is_int(next_s(&f, "abc\ndef"), 7, "RAW: everything buffered, \\n or not");
    {
        char buf[300];
        memset(buf, 'r', sizeof buf);
        is_int(next_n(&f, buf, 100), 100, "RAW: len == max");
        is_int(next_n(&f, buf, 101), 100, "RAW: len max+1 gives max");
        is_int(next_n(&f, buf, 300), 100, "RAW: len 300 gives max");
        is_int(next_n(&f, buf, 99), 99, "RAW: len 99");
        f.max = 1;
        is_int(next_n(&f, buf, 300), 1, "RAW: max 1");
        f.max = SIZE_MAX;
        is_int(next_n(&f, buf, 300), 300, "RAW: max SIZE_MAX");
    }
}

static isd_framing lenf(int fmt, size_t max)
{
    isd_framing f;
    memset(&f, 0, sizeof f);
    f.kind = ISD_FRAME_LENGTH;
    f.lenfmt = fmt;
    f.max = max;
    return f;
}

static void test_length(void)
{
    static const struct { int fmt; const char *name; size_t hdr; uint64_t top; }
        fm[] = {
            { ISD_LEN_N, "N", 4, 0xffffffffu }, { ISD_LEN_n, "n", 2, 0xffffu },
            { ISD_LEN_V, "V", 4, 0xffffffffu }, { ISD_LEN_v, "v", 2, 0xffffu },
            { ISD_LEN_C, "C", 1, 0xffu },
        };
    size_t i, k;

    for (i = 0; i < sizeof fm / sizeof fm[0]; i++) {
        isd_framing f = lenf(fm[i].fmt, 1000);
        unsigned char hd[4], msg[64];
        size_t h;

        is_int((long)isd_frame_hdr(&f), (long)fm[i].hdr, "%s: prefix size", fm[i].name);
        h = isd_frame_len_put(fm[i].fmt, 5, hd);
        is_int((long)h, (long)fm[i].hdr, "%s: len_put of 5", fm[i].name);
        memcpy(msg, hd, h);
        memcpy(msg + h, "hellotail", 9);
        /* every prefix of the frame is incomplete; the whole is h + 5 */
        for (k = 0; k < h + 5; k++)
            if (next_n(&f, (char *)msg, k) != 0)
                break;
        is_int((long)k, (long)(h + 5), "%s: shorter than the frame: incomplete", fm[i].name);
        is_int(next_n(&f, (char *)msg, h + 5), (long)(h + 5), "%s: exactly one frame", fm[i].name);
        is_int(next_n(&f, (char *)msg, h + 9), (long)(h + 5), "%s: a frame and more", fm[i].name);
        /* an empty message is a frame of its prefix alone */
        h = isd_frame_len_put(fm[i].fmt, 0, hd);
        is_int(next_n(&f, (char *)hd, h), (long)h, "%s: empty message", fm[i].name);
        /* the format's top value fits, one more does not */
        ok(isd_frame_len_put(fm[i].fmt, fm[i].top, hd) == fm[i].hdr, "%s: top fits", fm[i].name);
        ok(isd_frame_len_put(fm[i].fmt, fm[i].top + 1, hd) == 0, "%s: top + 1 does not", fm[i].name);
        /* a claim over max fails as soon as the prefix is in */
        f.max = 4;
        h = isd_frame_len_put(fm[i].fmt, 5, hd);
        ok(emsgsize(&f, (char *)hd, h), "%s: 5 over max 4: EMSGSIZE from the prefix alone", fm[i].name);
        h = isd_frame_len_put(fm[i].fmt, 4, hd);
        is_int(next_n(&f, (char *)hd, h), 0, "%s: 4 at max 4: waits for the payload", fm[i].name);
    }
    {
        /* byte order */
        isd_framing f = lenf(ISD_LEN_N, 0);
        unsigned char hd[4];
        isd_frame_len_put(ISD_LEN_N, 0x01020304u, hd);
        ok(hd[0] == 1 && hd[1] == 2 && hd[2] == 3 && hd[3] == 4, "N is big endian");
        isd_frame_len_put(ISD_LEN_V, 0x01020304u, hd);
        ok(hd[0] == 4 && hd[1] == 3 && hd[2] == 2 && hd[3] == 1, "V is little endian");
        isd_frame_len_put(ISD_LEN_n, 0x0102u, hd);
        ok(hd[0] == 1 && hd[1] == 2, "n is big endian");
        isd_frame_len_put(ISD_LEN_v, 0x0102u, hd);
        ok(hd[0] == 2 && hd[1] == 1, "v is little endian");
        /* a 4 GiB claim with no max: incomplete (it would fit ssize_t on
         * 64 bits), never a read past the buffer */
        memcpy(hd, "\xff\xff\xff\xff", 4);
        if (sizeof(size_t) > 4)
            is_int(next_n(&f, (char *)hd, 4), 0, "N 4 GiB - 1, no max: incomplete");
        else
            ok(emsgsize(&f, (char *)hd, 4), "N 4 GiB - 1 on 32 bits: EMSGSIZE");
        f.max = 1048576;
        ok(emsgsize(&f, (char *)hd, 4), "N 4 GiB - 1 over max 1 MiB: EMSGSIZE");
        is_int((long)isd_frame_hdr(&(isd_framing){ .kind = ISD_FRAME_LINE }), 0,
               "LINE has no prefix");
    }
    {
        /* coalesced frames, consumed one by one */
        isd_framing f = lenf(ISD_LEN_C, 0);
        const char s[] = "\003abc\000\001x\002y";
        size_t off = 0, n = sizeof s - 1, got = 0;
        ssize_t r;
        size_t scan = 0;
        while ((r = isd_frame_next(&f, s + off, n - off, &scan)) > 0) {
            off += (size_t)r;
            got++;
        }
        is_int((long)got, 3, "C: three coalesced frames");
        is_int((long)(n - off), 2, "C: a partial fourth left");
    }
}

int main(void)
{
    alarm(20);
    pagesz = (size_t)sysconf(_SC_PAGESIZE);
    guard_new(&G, 4096);

    test_default_sep();
    test_custom_sep();
    test_split_sep();
    test_resume_long("\n", "sep \\n");
    test_resume_long("\r\n", "sep \\r\\n");
    test_resume_long("END", "sep END");
    test_random_feeds();
    test_max();
    test_raw();
    test_length();

    guard_free(&G);
    return done_testing();
}
