/* test_proxy.c - unit tests for the PROXY protocol parser (c_src/proxy.c). */
// Build and run by hand from the distribution root:
//   cc -std=c99 -D_GNU_SOURCE -Wall -Wextra -Ic_src t/c/test_proxy.c c_src/*.c -o /tmp/tp && /tmp/tp
//
// Every input is placed flush against a PROT_NONE page, so reading even one
// byte past buf[len) crashes the program instead of passing silently.  The
// headers are built by the spec (doc/proxy-protocol.txt), byte by byte, and
// every valid one is also fed a byte at a time: each proper prefix must
// answer 0 (more needed), and every invalid one must fail at the byte the
// test names, with every shorter prefix answering 0 and every longer -1.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include "isd.h"
#include "tap.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* ------------------------------------------------------- guarded memory */

static char  *gmap;      /* GUARD bytes, then a PROT_NONE page */
static size_t pagesz;
#define GUARD (3 * 4096)

static void guard_init(void)
{
    pagesz = (size_t)sysconf(_SC_PAGESIZE);
    gmap = mmap(NULL, GUARD + pagesz, PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (gmap == MAP_FAILED || mprotect(gmap + GUARD, pagesz, PROT_NONE)) {
        printf("Bail out! mmap/mprotect: %s\n", strerror(errno));
        exit(255);
    }
}

/* parse a copy of s[0..n) that ends at the guard page */
static int parse_n(const void *s, size_t n, isd_proxy *out)
{
    char *p = gmap + GUARD - n;
    if (n > GUARD) {
        printf("Bail out! input of %zu bytes\n", n);
        exit(255);
    }
    memcpy(p, s, n);
    return isd_proxy_parse(p, n, out);
}

/* Feed s[0..n) a byte at a time: 0 until the header is complete, then its
 * length (want > 0), and the result is the same as parsing it whole. */
static int incremental_ok(const void *s, size_t n, int want)
{
    isd_proxy p;
    size_t k;
    int r;

    for (k = 0; k < n; k++) {
        r = parse_n(s, k, &p);
        if (k < (size_t)want && r != 0) {
            diag("prefix of %zu bytes: %d (%s), want 0", k, r,
                 p.err ? p.err : "");
            return 0;
        }
        if (k >= (size_t)want && r != want) {
            diag("prefix of %zu bytes: %d, want %d", k, r, want);
            return 0;
        }
    }
    return 1;
}

/* printable name: CR, LF and other bytes escaped */
static const char *esc(const char *s, size_t n)
{
    static char buf[400];
    size_t i, o = 0;
    for (i = 0; i < n && o + 5 < sizeof buf; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\r')
            o += (size_t)snprintf(buf + o, sizeof buf - o, "\\r");
        else if (c == '\n')
            o += (size_t)snprintf(buf + o, sizeof buf - o, "\\n");
        else if (c < 32 || c > 126)
            o += (size_t)snprintf(buf + o, sizeof buf - o, "\\x%02x", c);
        else
            buf[o++] = (char)c;
    }
    buf[o] = 0;
    return buf;
}

/* s[0..n) is refused, first when its first `at` bytes are in, with err. */
static int fails_at(const void *s, size_t n, size_t at, const char *err,
                    const char *name)
{
    isd_proxy p;
    size_t k;
    int r, good = 1;

    for (k = 0; k <= n; k++) {
        p.err = NULL;
        r = parse_n(s, k, &p);
        if ((k < at && r != 0) || (k >= at && r != -1)) {
            diag("%s: prefix of %zu bytes: %d (%s), want %d", name, k, r,
                 p.err ? p.err : "no error", k < at ? 0 : -1);
            good = 0;
            break;
        }
        if (r == -1 && (!p.err || (err && strcmp(p.err, err) != 0))) {
            diag("%s: prefix of %zu bytes: error \"%s\", want \"%s\"", name,
                 k, p.err ? p.err : "(null)", err);
            good = 0;
            break;
        }
    }
    return ok(good, "%s: refused at byte %zu: %s", name, at,
              err ? err : "any reason");
}
#define FAILS_S(s, at, err) \
    fails_at((s), strlen(s), (at), (err), esc((s), strlen(s)))

static const char *host(const isd_addr *a, char *buf)
{
    const void *ip = a->sa.sa_family == AF_INET ? (const void *)&a->in4.sin_addr
                                                : (const void *)&a->in6.sin6_addr;
    if (!inet_ntop(a->sa.sa_family, ip, buf, 64))
        strcpy(buf, "?");
    return buf;
}
static unsigned port(const isd_addr *a)
{
    return ntohs(a->sa.sa_family == AF_INET ? a->in4.sin_port
                                            : a->in6.sin6_port);
}

/* --------------------------------------------------- v2 header builder */

/* CRC32C bit by bit (not proxy.c's nibble table). */
static uint32_t ref_crc32c(const unsigned char *p, size_t n)
{
    uint32_t crc = 0xffffffffu;
    int b;
    while (n--) {
        crc ^= *p++;
        for (b = 0; b < 8; b++)
            crc = crc & 1 ? (crc >> 1) ^ 0x82f63b78u : crc >> 1;
    }
    return ~crc;
}

typedef struct hdr {
    unsigned char b[GUARD];
    size_t n;
} hdr;

static const unsigned char SIG[12] = {
    0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a
};

static void put16(unsigned char *p, unsigned v)
{
    p[0] = (unsigned char)(v >> 8);
    p[1] = (unsigned char)v;
}

static void v2_start(hdr *h, unsigned ver_cmd, unsigned fam)
{
    memcpy(h->b, SIG, 12);
    h->b[12] = (unsigned char)ver_cmd;
    h->b[13] = (unsigned char)fam;
    h->n = 16;
}
static void v2_bytes(hdr *h, const void *p, size_t n)
{
    memcpy(h->b + h->n, p, n);
    h->n += n;
}
static void v2_tlv(hdr *h, unsigned type, const void *v, size_t n)
{
    h->b[h->n] = (unsigned char)type;
    put16(h->b + h->n + 1, (unsigned)n);
    h->n += 3;
    v2_bytes(h, v, n);
}
/* the length field from the bytes added; returns the total */
static size_t v2_end(hdr *h)
{
    put16(h->b + 14, (unsigned)(h->n - 16));
    return h->n;
}
/* a CRC32C TLV, last, filled in (after v2_end) */
static size_t v2_crc(hdr *h)
{
    static const unsigned char zero[4] = { 0, 0, 0, 0 };
    uint32_t c;
    size_t at;
    v2_tlv(h, ISD_PP2_CRC32C, zero, 4);
    at = h->n - 4;
    v2_end(h);
    c = ref_crc32c(h->b, h->n);
    h->b[at] = (unsigned char)(c >> 24);
    h->b[at + 1] = (unsigned char)(c >> 16);
    h->b[at + 2] = (unsigned char)(c >> 8);
    h->b[at + 3] = (unsigned char)c;
    return h->n;
}

static void v2_inet4(hdr *h, const char *src, const char *dst, unsigned sp,
                     unsigned dp)
{
    unsigned char a[12];
    inet_pton(AF_INET, src, a);
    inet_pton(AF_INET, dst, a + 4);
    put16(a + 8, sp);
    put16(a + 10, dp);
    v2_bytes(h, a, 12);
}
static void v2_inet6(hdr *h, const char *src, const char *dst, unsigned sp,
                     unsigned dp)
{
    unsigned char a[36];
    inet_pton(AF_INET6, src, a);
    inet_pton(AF_INET6, dst, a + 16);
    put16(a + 32, sp);
    put16(a + 34, dp);
    v2_bytes(h, a, 36);
}

/* ------------------------------------------------------------- version 1 */

/* a valid v1 line: parsed whole, with stream bytes after it, and fed */
static void v1_valid(const char *line, int family, const char *src,
                     const char *dst, unsigned sp, unsigned dp)
{
    isd_proxy p;
    char buf[300], h1[64], h2[64];
    int n = (int)strlen(line), r;

    r = parse_n(line, (size_t)n, &p);
    if (!is_int(r, n, "v1 %.*s: its length", n - 2, line))
        diag("err: %s", p.err ? p.err : "none");
    ok(p.err == NULL, "  no error");
    is_int(p.version, 1, "  version 1");
    if (family == AF_UNSPEC) {
        is_int(p.command, ISD_PROXY_LOCAL, "  UNKNOWN: command LOCAL");
        is_int(p.flags, ISD_PROXY_F_UNKNOWN, "  flags: UNKNOWN alone");
        is_int(p.family, AF_UNSPEC, "  family AF_UNSPEC");
    } else {
        is_int(p.command, ISD_PROXY_PROXY, "  command PROXY");
        is_int(p.flags, ISD_PROXY_F_ADDRS, "  flags: ADDRS alone");
        is_int(p.family, family, "  family");
        is_int(p.transport, SOCK_STREAM, "  transport stream");
        is_int(p.src.sa.sa_family, family, "  src family");
        is_int(p.dst.sa.sa_family, family, "  dst family");
        is_str(host(&p.src, h1), src, "  src %s", src);
        is_str(host(&p.dst, h2), dst, "  dst %s", dst);
        is_int(port(&p.src), sp, "  src port %u", sp);
        is_int(port(&p.dst), dp, "  dst port %u", dp);
    }
    is_int(p.tlvlen, 0, "  no TLVs");
    {
        size_t pos = 0, l;
        unsigned t;
        const char *v;
        is_int(isd_proxy_tlv_next(&p, &pos, &t, &v, &l), 0,
               "  tlv_next: nothing");
    }
    snprintf(buf, sizeof buf, "%sGET / HTTP/1.1\r\n\r\n", line);
    is_int(parse_n(buf, strlen(buf), &p), n, "  stream after it: %d", n);
    ok(incremental_ok(buf, strlen(buf), n), "  every prefix: 0, then %d", n);
}

static void test_v1_valid(void)
{
    char line[200];

    v1_valid("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n", AF_INET,
             "192.168.0.1", "192.168.0.11", 56324, 443);
    v1_valid("PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n",
             AF_INET, "255.255.255.255", "255.255.255.255", 65535, 65535);
    v1_valid("PROXY TCP4 0.0.0.0 10.0.0.1 0 0\r\n", AF_INET, "0.0.0.0",
             "10.0.0.1", 0, 0);
    v1_valid("PROXY TCP6 2001:db8::1 ::1 65535 80\r\n", AF_INET6,
             "2001:db8::1", "::1", 65535, 80);
    v1_valid("PROXY TCP6 2001:DB8:0:0:0:0:0:A ::ffff:192.0.2.1 1 2\r\n",
             AF_INET6, "2001:db8::a", "::ffff:192.0.2.1", 1, 2);
    /* the spec's longest TCP6 line: 104 bytes */
    snprintf(line, sizeof line, "PROXY TCP6 %s %s 65535 65535\r\n",
             "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
             "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe");
    is_int(strlen(line), 104, "the longest TCP6 line is 104 bytes");
    v1_valid(line, AF_INET6, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
             "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", 65535, 65535);
    v1_valid("PROXY UNKNOWN\r\n", AF_UNSPEC, NULL, NULL, 0, 0);
    v1_valid("PROXY UNKNOWN 192.0.2.1 192.0.2.2 1 2\r\n", AF_UNSPEC, NULL,
             NULL, 0, 0);
    v1_valid("PROXY UNKNOWN whatever, even \x01 and \xff\r\n", AF_UNSPEC,
             NULL, NULL, 0, 0);
    /* the spec's worst case: 107 bytes */
    snprintf(line, sizeof line, "PROXY UNKNOWN %s %s 65535 65535\r\n",
             "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
             "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
    is_int(strlen(line), 107, "the worst-case UNKNOWN line is 107 bytes");
    v1_valid(line, AF_UNSPEC, NULL, NULL, 0, 0);
}

static void test_v1_invalid(void)
{
    const char *sig = "PROXY: neither \"PROXY \" nor the v2 signature";
    const char *proto = "PROXY v1: unknown protocol (not TCP4, TCP6 or UNKNOWN)";
    const char *bsrc = "PROXY v1: bad source address";
    const char *bdst = "PROXY v1: bad destination address";
    const char *bsp = "PROXY v1: bad source port";
    const char *bdp = "PROXY v1: bad destination port";
    const char *toolong = "PROXY v1: no CRLF within 107 bytes";
    const char *cr = "PROXY v1: CR without LF";
    const char *lf = "PROXY v1: LF without CR";
    const char *crearly = "PROXY v1: CR before the destination port";
    char line[300];

    /* not a PROXY header at all: refused at the first wrong byte */
    FAILS_S("GET / HTTP/1.1\r\n", 1, sig);
    FAILS_S("PROXZ TCP4 1.2.3.4 5.6.7.8 1 2\r\n", 5, sig);
    FAILS_S("PROXY\r\n", 6, sig);
    FAILS_S("proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", 1, sig);
    FAILS_S("\x16\x03\x01\x02\x00\x01", 1, sig);   /* a TLS ClientHello */
    FAILS_S("SSH-2.0-OpenSSH_9.2\r\n", 1, sig);
    FAILS_S("hello world\n", 1, sig);

    /* the protocol word */
    FAILS_S("PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", 10, proto);
    FAILS_S("PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", 7, proto);
    FAILS_S("PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", 8, proto);
    FAILS_S("PROXY TCP41.2.3.4 5.6.7.8 1 2\r\n", 11, proto);
    FAILS_S("PROXY UNKNOWNX\r\n", 14, proto);
    FAILS_S("PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n", 7, proto);

    /* single spaces only */
    FAILS_S("PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", 12, bsrc);
    FAILS_S("PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", 20, bdst);
    FAILS_S("PROXY TCP4 1.2.3.4 5.6.7.8  1 2\r\n", 28, bsp);
    FAILS_S("PROXY TCP4 1.2.3.4 5.6.7.8 1  2\r\n", 30, bdp);
    FAILS_S("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", 31, bdp);
    FAILS_S("PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n", 19, bsrc);

    /* IPv4 addresses */
    FAILS_S("PROXY TCP4 256.1.1.1 5.6.7.8 1 2\r\n", 14, bsrc);
    FAILS_S("PROXY TCP4 1.2.3.4 5.6.7.300 1 2\r\n", 28, bdst);
    FAILS_S("PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", 13, bsrc);
    FAILS_S("PROXY TCP4 1.2.3.00 5.6.7.8 1 2\r\n", 19, bsrc);
    FAILS_S("PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", 17, bsrc);
    FAILS_S("PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n", 19, bsrc);
    FAILS_S("PROXY TCP4 1..2.3 5.6.7.8 1 2\r\n", 14, bsrc);
    FAILS_S("PROXY TCP4 .1.2.3 5.6.7.8 1 2\r\n", 12, bsrc);
    FAILS_S("PROXY TCP4 1.2.3. 5.6.7.8 1 2\r\n", 18, bsrc);
    FAILS_S("PROXY TCP4 1.2.3.4 5.6.7.8. 1 2\r\n", 27, bdst);
    FAILS_S("PROXY TCP4 0x1.2.3.4 5.6.7.8 1 2\r\n", 13, bsrc);
    fails_at("PROXY TCP4 1.2.3.4\0 5.6.7.8 1 2\r\n", 33, 19, bsrc,
             "a NUL after the source address");
    /* IPv6 where IPv4 is announced, and the other way round */
    FAILS_S("PROXY TCP4 ::1 ::1 1 2\r\n", 12, bsrc);
    FAILS_S("PROXY TCP4 1.2.3.4 ::1 1 2\r\n", 20, bdst);
    FAILS_S("PROXY TCP6 1.2.3.4 ::1 1 2\r\n", 19, bsrc);
    FAILS_S("PROXY TCP6 ::1 5.6.7.8 1 2\r\n", 23, bdst);
    /* IPv6 addresses */
    FAILS_S("PROXY TCP6 ::g ::1 1 2\r\n", 14, bsrc);
    FAILS_S("PROXY TCP6 ::1 ::g 1 2\r\n", 18, bdst);
    FAILS_S("PROXY TCP6 1::2::3 ::1 1 2\r\n", 19, bsrc);
    FAILS_S("PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n", 29, bsrc);
    FAILS_S("PROXY TCP6 12345::1 ::1 1 2\r\n", 20, bsrc);
    FAILS_S("PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", 19, bsrc);
    FAILS_S("PROXY TCP6 [::1] ::1 1 2\r\n", 12, bsrc);
    FAILS_S("PROXY TCP6 ::ffff:1.2.3.256 ::1 1 2\r\n", 28, bsrc);
    /* 46 characters cannot be an IPv6 address: refused at the 46th */
    snprintf(line, sizeof line, "PROXY TCP6 %s ::1 1 2\r\n",
             "0000:0000:0000:0000:0000:0000:0000:0000:000000");
    fails_at(line, strlen(line), 11 + 46, bsrc, "a 46-character IPv6 field");

    /* ports */
    FAILS_S("PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", 32, bsp);
    FAILS_S("PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n", 34, bdp);
    FAILS_S("PROXY TCP4 1.2.3.4 5.6.7.8 99999 2\r\n", 32, bsp);
    FAILS_S("PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n", 29, bsp);
    FAILS_S("PROXY TCP4 1.2.3.4 5.6.7.8 1 00\r\n", 31, bdp);
    FAILS_S("PROXY TCP4 1.2.3.4 5.6.7.8 1 0443\r\n", 31, bdp);
    FAILS_S("PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", 28, bsp);
    FAILS_S("PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", 28, bsp);
    FAILS_S("PROXY TCP4 1.2.3.4 5.6.7.8 1 0x1\r\n", 31, bdp);
    FAILS_S("PROXY TCP4 1.2.3.4 5.6.7.8 1 \r\n", 30, bdp);
    FAILS_S("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", 31, bdp);

    /* CR and LF */
    FAILS_S("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX", 32, cr);
    FAILS_S("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n", 32, cr);
    FAILS_S("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", 31, lf);
    FAILS_S("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n\r", 31, lf);
    FAILS_S("PROXY TCP4 1.2.3.4 5.6.7.8\r\n", 27, crearly);
    FAILS_S("PROXY TCP4 1.2.3.4\r\n", 19, crearly);
    FAILS_S("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", 29, crearly);
    FAILS_S("PROXY TCP6 ::1\n", 15, lf);
    FAILS_S("PROXY TCP4 1.2.3.4 5.6.7.8 1\n", 29, lf);
    FAILS_S("PROXY UNKNOWN\rX", 15, cr);
    FAILS_S("PROXY UNKNOWN\n", 14, lf);
    FAILS_S("PROXY UNKNOWN 1.2.3.4\n5.6.7.8\r\n", 22, lf);
    FAILS_S("PROXY UNKNOWN a\rb\r\n", 17, cr);
    FAILS_S("PROXY \r\n", 7, proto);

    /* 107 bytes at most, CRLF included */
    memset(line, 0, sizeof line);
    strcpy(line, "PROXY UNKNOWN ");
    memset(line + 14, 'x', 91);                 /* up to index 104 */
    strcpy(line + 105, "\r\n");                 /* 107 bytes: fine */
    is_int(parse_n(line, 107, &(isd_proxy){0}), 107,
           "UNKNOWN line of exactly 107 bytes: accepted");
    line[105] = 'x';                            /* the CR at 106: no */
    strcpy(line + 106, "\r\n");
    fails_at(line, 108, 106, toolong, "UNKNOWN line of 108 bytes");
    memset(line + 14, 'x', 200);
    line[214] = 0;
    fails_at(line, 214, 106, toolong, "UNKNOWN line of 200 bytes, no CRLF");
    /* a TCP6 line made too long by IPv4-dotted tails (each valid) */
    snprintf(line, sizeof line, "PROXY TCP6 %s %s 65535 65535\r\n",
             "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255",
             "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255");
    fails_at(line, strlen(line), 106, toolong,
             "TCP6 line of 116 bytes with valid addresses");
    /* the same addresses with short ports fit: 108 - 2 ... still too long */
    snprintf(line, sizeof line, "PROXY TCP6 %s %s 1 2\r\n",
             "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255",
             "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255");
    is_int(strlen(line), 108, "(that line with 1-digit ports: 108 bytes)");
    fails_at(line, strlen(line), 106, toolong, "TCP6 line of 108 bytes");
    snprintf(line, sizeof line, "PROXY TCP6 %s %s 1 2\r\n",
             "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255",
             "ffff:ffff:ffff:ffff:ffff:ffff:255.255.25.255");
    is_int(parse_n(line, strlen(line), &(isd_proxy){0}), 107,
           "a TCP6 line of exactly 107 bytes: accepted");
}

/* ------------------------------------------------------------- version 2 */

static void test_v2_valid(void)
{
    isd_proxy p;
    hdr h;
    char b1[64], b2[64];
    size_t n;
    int r;

    /* PROXY TCP over IPv4 */
    v2_start(&h, 0x21, 0x11);
    v2_inet4(&h, "192.0.2.1", "198.51.100.7", 56324, 443);
    n = v2_end(&h);
    is_int(n, 28, "v2 TCP4 header: 28 bytes");
    r = parse_n(h.b, n, &p);
    is_int(r, 28, "v2 TCP4: parsed, 28");
    is_int(p.version, 2, "  version 2");
    is_int(p.command, ISD_PROXY_PROXY, "  PROXY");
    is_int(p.flags, ISD_PROXY_F_ADDRS, "  flags ADDRS");
    is_int(p.family, AF_INET, "  AF_INET");
    is_int(p.transport, SOCK_STREAM, "  stream");
    is_str(host(&p.src, b1), "192.0.2.1", "  src");
    is_str(host(&p.dst, b2), "198.51.100.7", "  dst");
    is_int(port(&p.src), 56324, "  src port");
    is_int(port(&p.dst), 443, "  dst port");
    is_int(p.tlvlen, 0, "  no TLVs");
    ok(incremental_ok(h.b, n, 28), "  every prefix: 0");
    memcpy(h.b + n, "\x16\x03\x01 stream", 10);
    is_int(parse_n(h.b, n + 10, &p), 28, "  with the stream after it: 28");
    ok(incremental_ok(h.b, n + 10, 28), "  ... and fed a byte at a time");

    /* PROXY UDP over IPv6 */
    v2_start(&h, 0x21, 0x22);
    v2_inet6(&h, "2001:db8::1", "2001:db8::2", 5353, 53);
    n = v2_end(&h);
    is_int(parse_n(h.b, n, &p), 52, "v2 UDP6: 52");
    is_int(p.family, AF_INET6, "  AF_INET6");
    is_int(p.transport, SOCK_DGRAM, "  dgram");
    is_str(host(&p.src, b1), "2001:db8::1", "  src");
    is_str(host(&p.dst, b2), "2001:db8::2", "  dst");
    is_int(port(&p.src), 5353, "  src port");
    is_int(port(&p.dst), 53, "  dst port");
    ok(incremental_ok(h.b, n, 52), "  every prefix: 0");

    /* PROXY over UNIX stream */
    {
        unsigned char a[216];
        memset(a, 0, sizeof a);
        memcpy(a, "/run/client.sock", 16);
        memcpy(a + 108, "/run/haproxy/app.sock", 21);
        v2_start(&h, 0x21, 0x31);
        v2_bytes(&h, a, 216);
        n = v2_end(&h);
        is_int(parse_n(h.b, n, &p), 232, "v2 UNIX stream: 232");
        is_int(p.family, AF_UNIX, "  AF_UNIX");
        is_int(p.transport, SOCK_STREAM, "  stream");
        is_int(p.flags, ISD_PROXY_F_ADDRS, "  flags ADDRS");
        is_int(p.src.sa.sa_family, AF_UNIX, "  src family AF_UNIX");
        is_mem(p.src_path, p.src_pathlen, "/run/client.sock", 16, "  src path");
        is_mem(p.dst_path, p.dst_pathlen, "/run/haproxy/app.sock", 21,
               "  dst path");
        ok(incremental_ok(h.b, n, 232), "  every prefix: 0");
        /* a path filling all 108 bytes, no NUL */
        memset(a, 'p', 108);
        v2_start(&h, 0x21, 0x32);
        v2_bytes(&h, a, 216);
        n = v2_end(&h);
        is_int(parse_n(h.b, n, &p), 232, "v2 UNIX dgram, 108-byte path: 232");
        is_int(p.transport, SOCK_DGRAM, "  dgram");
        is_int(p.src_pathlen, 108, "  src path of 108 bytes");
    }

    /* LOCAL: a health check */
    v2_start(&h, 0x20, 0x00);
    n = v2_end(&h);
    is_int(parse_n(h.b, n, &p), 16, "v2 LOCAL UNSPEC: 16");
    is_int(p.command, ISD_PROXY_LOCAL, "  LOCAL");
    is_int(p.flags, 0, "  no flags: use the real endpoints");
    is_int(p.family, AF_UNSPEC, "  AF_UNSPEC");
    ok(incremental_ok(h.b, n, 16), "  every prefix: 0");
    /* LOCAL keeping its family, no addresses */
    v2_start(&h, 0x20, 0x11);
    n = v2_end(&h);
    is_int(parse_n(h.b, n, &p), 16, "v2 LOCAL TCP4 with length 0: 16");
    is_int(p.family, AF_UNSPEC, "  no address block: AF_UNSPEC");
    /* LOCAL with addresses (for the log) and a TLV after them */
    v2_start(&h, 0x20, 0x11);
    v2_inet4(&h, "127.0.0.1", "127.0.0.2", 1, 2);
    v2_tlv(&h, ISD_PP2_NOOP, "xyz", 3);
    n = v2_end(&h);
    is_int(parse_n(h.b, n, &p), 34, "v2 LOCAL TCP4 with addresses: 34");
    is_int(p.flags, 0, "  no ADDRS for LOCAL");
    is_str(host(&p.src, b1), "127.0.0.1", "  src for the log");
    is_int(p.tlvlen, 6, "  the NOOP TLV after the addresses");
    /* PROXY UNSPEC: accepted, addresses not to be used */
    v2_start(&h, 0x21, 0x00);
    v2_bytes(&h, "junk", 4);
    n = v2_end(&h);
    r = parse_n(h.b, n, &p);
    ok(r == -1, "v2 PROXY UNSPEC with 4 bytes of junk: -1 (junk is no TLV)");
    v2_start(&h, 0x21, 0x00);
    n = v2_end(&h);
    is_int(parse_n(h.b, n, &p), 16, "v2 PROXY UNSPEC, length 0: 16");
    is_int(p.command, ISD_PROXY_PROXY, "  PROXY");
    is_int(p.flags, 0, "  but no ADDRS");
    /* PROXY TCP4 with transport UNSPEC: addresses skipped, not used */
    v2_start(&h, 0x21, 0x10);
    v2_inet4(&h, "1.2.3.4", "5.6.7.8", 1, 2);
    n = v2_end(&h);
    is_int(parse_n(h.b, n, &p), 28, "v2 PROXY AF_INET/UNSPEC: 28");
    is_int(p.flags, 0, "  no ADDRS");
    is_int(p.transport, 0, "  transport 0");
}

static void test_v2_tlvs(void)
{
    static const struct { unsigned type; const char *v; size_t n; } want[] = {
        { ISD_PP2_ALPN, "h2", 2 },
        { ISD_PP2_AUTHORITY, "www.example.com", 15 },
        { ISD_PP2_NOOP, "", 0 },
        { ISD_PP2_UNIQUE_ID, "abcdefgh", 8 },
        { ISD_PP2_NETNS, "blue", 4 },
        { 0xe0, "custom", 6 },
    };
    static const struct { unsigned type; const char *v; } subs[] = {
        { ISD_PP2_SSL_VERSION, "TLSv1.3" },
        { ISD_PP2_SSL_CN, "client.example.com" },
        { ISD_PP2_SSL_CIPHER, "TLS_AES_128_GCM_SHA256" },
        { ISD_PP2_SSL_SIG_ALG, "RSA-SHA256" },
        { ISD_PP2_SSL_KEY_ALG, "RSA2048" },
    };
    const size_t nwant = sizeof want / sizeof want[0];
    const size_t nsubs = sizeof subs / sizeof subs[0];
    unsigned char ssl[256], uid[129];
    size_t ssln, i, n, pos, l, k;
    isd_proxy p;
    hdr h, good;
    unsigned t;
    const char *v;
    int ok_all;

    is_int(isd_crc32c("123456789", 9), 0xe3069283u, "CRC32C check value");
    is_int(isd_crc32c("", 0), 0, "CRC32C of nothing");
    {
        unsigned char z[32];
        memset(z, 0, sizeof z);
        is_int(isd_crc32c(z, 32), 0x8a9136aau,
               "CRC32C of 32 zero bytes (RFC 3720 B.4)");
        is_int(ref_crc32c(z, 32), 0x8a9136aau, "(so is the test's own)");
    }

    /* the SSL TLV: client, verify, sub-TLVs */
    ssl[0] = ISD_PP2_CLIENT_SSL | ISD_PP2_CLIENT_CERT_CONN
           | ISD_PP2_CLIENT_CERT_SESS;
    ssl[1] = 0; ssl[2] = 0; ssl[3] = 0; ssl[4] = 0;
    ssln = 5;
    for (i = 0; i < nsubs; i++) {
        size_t sl = strlen(subs[i].v);
        ssl[ssln] = (unsigned char)subs[i].type;
        put16(ssl + ssln + 1, (unsigned)sl);
        memcpy(ssl + ssln + 3, subs[i].v, sl);
        ssln += 3 + sl;
    }

    v2_start(&h, 0x21, 0x11);
    v2_inet4(&h, "192.0.2.1", "192.0.2.2", 40000, 443);
    for (i = 0; i < nwant; i++)
        v2_tlv(&h, want[i].type, want[i].v, want[i].n);
    v2_tlv(&h, ISD_PP2_SSL, ssl, ssln);
    n = v2_crc(&h);
    good = h;
    is_int(parse_n(h.b, n, &p), (int)n, "v2 with ALPN, AUTHORITY, NOOP, "
           "UNIQUE_ID, NETNS, custom, SSL, CRC32C: %zu", n);
    if (p.err) diag("err: %s", p.err);
    is_int(p.flags, ISD_PROXY_F_ADDRS | ISD_PROXY_F_SSL | ISD_PROXY_F_CRC32C,
           "  flags ADDRS, SSL, CRC32C");
    is_int(p.tlvlen, n - 28, "  TLV block after the addresses");
    ok_all = 1;
    pos = 0;
    for (i = 0; i < nwant; i++) {
        if (!isd_proxy_tlv_next(&p, &pos, &t, &v, &l) || t != want[i].type
            || l != want[i].n || memcmp(v, want[i].v, l) != 0) {
            diag("TLV %zu: type %u len %zu", i, t, l);
            ok_all = 0;
        }
    }
    ok(ok_all, "  tlv_next: the six TLVs in order");
    ok(isd_proxy_tlv_next(&p, &pos, &t, &v, &l) && t == ISD_PP2_SSL
       && l == ssln, "  then SSL");
    ok(isd_proxy_tlv_next(&p, &pos, &t, &v, &l) && t == ISD_PP2_CRC32C
       && l == 4, "  then CRC32C");
    is_int(isd_proxy_tlv_next(&p, &pos, &t, &v, &l), 0, "  then the end");
    is_int(isd_proxy_tlv_next(&p, &pos, &t, &v, &l), 0, "  and it stays there");
    v = isd_proxy_tlv_get(&p, ISD_PP2_AUTHORITY, &l);
    is_mem(v, v ? l : 0, "www.example.com", 15, "  tlv_get AUTHORITY");
    ok(isd_proxy_tlv_get(&p, 0x06, &l) == NULL, "  tlv_get of an absent type: NULL");
    is_int(p.ssl_client, 7, "  SSL client bits");
    is_int(p.ssl_verify, 0, "  SSL verify 0");
    is_int(p.ssllen, ssln - 5, "  SSL sub-TLV block");
    ok_all = 1;
    pos = 0;
    for (i = 0; i < nsubs; i++) {
        if (!isd_proxy_ssl_next(&p, &pos, &t, &v, &l) || t != subs[i].type
            || l != strlen(subs[i].v) || memcmp(v, subs[i].v, l) != 0)
            ok_all = 0;
    }
    ok(ok_all, "  ssl_next: VERSION, CN, CIPHER, SIG_ALG, KEY_ALG");
    is_int(isd_proxy_ssl_next(&p, &pos, &t, &v, &l), 0, "  then the end");
    pos = 1;
    ok(isd_proxy_tlv_next(&p, &pos, &t, &v, &l) >= 0, "  a bogus pos: no crash");
    ok(incremental_ok(h.b, n, (int)n), "  every prefix: 0");

    /* the CRC: every single-bit change of the header is caught, but in the
     * CRC TLV's own type byte (which makes it another, unchecked, TLV: the
     * protocol's blind spot) */
    {
        size_t bit, caught = 0, parsed_wrong = 0;
        for (bit = 0; bit < n * 8; bit++) {
            h = good;
            h.b[bit / 8] ^= (unsigned char)(1u << (bit % 8));
            if (bit / 8 == n - 7)
                continue;       /* the CRC TLV's type: then there is none */
            if (parse_n(h.b, n, &p) > 0) {
                diag("bit %zu: parsed", bit);
                parsed_wrong++;
            }
            else
                caught++;
        }
        is_int(parsed_wrong, 0, "  each of %zu bit flips refused (CRC "
               "or otherwise)", caught);
        h = good;
        h.b[n - 7] = ISD_PP2_NOOP;
        ok(parse_n(h.b, n, &p) > 0 && !(p.flags & ISD_PROXY_F_CRC32C),
           "  (the CRC TLV's type made NOOP: accepted, flag CRC32C unset)");
    }
    h = good;
    h.b[n - 1] ^= 1;
    {
        isd_proxy q;
        is_int(parse_n(h.b, n, &q), -1, "  a wrong CRC32C: -1");
        is_str(q.err, "PROXY v2: CRC32C mismatch", "  mismatch");
        ok(fails_at(h.b, n, n, "PROXY v2: CRC32C mismatch", "wrong CRC"),
           "  refused only once complete");
    }

    /* a CRC alone, LOCAL */
    v2_start(&h, 0x20, 0x00);
    n = v2_crc(&h);
    is_int(parse_n(h.b, n, &p), 23, "v2 LOCAL with a CRC32C only: 23");
    is_int(p.flags, ISD_PROXY_F_CRC32C, "  flag CRC32C");

    /* a CRC TLV of 3 bytes; two of them */
    v2_start(&h, 0x21, 0x11);
    v2_inet4(&h, "1.2.3.4", "5.6.7.8", 1, 2);
    v2_tlv(&h, ISD_PP2_CRC32C, "abc", 3);
    n = v2_end(&h);
    fails_at(h.b, n, n, "PROXY v2: CRC32C TLV not 4 bytes long",
             "CRC32C TLV of 3 bytes");
    v2_start(&h, 0x21, 0x11);
    v2_inet4(&h, "1.2.3.4", "5.6.7.8", 1, 2);
    v2_tlv(&h, ISD_PP2_CRC32C, "abcd", 4);
    n = v2_crc(&h);
    fails_at(h.b, n, n, "PROXY v2: more than one CRC32C TLV", "two CRC32C TLVs");

    /* UNIQUE_ID: up to 128 bytes */
    memset(uid, 'u', sizeof uid);
    v2_start(&h, 0x21, 0x11);
    v2_inet4(&h, "1.2.3.4", "5.6.7.8", 1, 2);
    v2_tlv(&h, ISD_PP2_UNIQUE_ID, uid, 128);
    n = v2_end(&h);
    is_int(parse_n(h.b, n, &p), (int)n, "UNIQUE_ID of 128 bytes: fine");
    v2_start(&h, 0x21, 0x11);
    v2_inet4(&h, "1.2.3.4", "5.6.7.8", 1, 2);
    v2_tlv(&h, ISD_PP2_UNIQUE_ID, uid, 129);
    n = v2_end(&h);
    fails_at(h.b, n, n, "PROXY v2: UNIQUE_ID TLV over 128 bytes",
             "UNIQUE_ID of 129 bytes");

    /* overruns */
    v2_start(&h, 0x21, 0x11);
    v2_inet4(&h, "1.2.3.4", "5.6.7.8", 1, 2);
    v2_tlv(&h, ISD_PP2_ALPN, "h2", 2);
    n = v2_end(&h);
    put16(h.b + 29, 3);                 /* ALPN claims 3 of 2 bytes */
    fails_at(h.b, n, n, "PROXY v2: a TLV overruns the header",
             "a TLV overrunning by one byte");
    for (k = 1; k <= 2; k++) {
        v2_start(&h, 0x21, 0x11);
        v2_inet4(&h, "1.2.3.4", "5.6.7.8", 1, 2);
        v2_tlv(&h, ISD_PP2_ALPN, "h2", 2);
        v2_bytes(&h, "\x04\x00", k);
        n = v2_end(&h);
        fails_at(h.b, n, n, "PROXY v2: a TLV overruns the header",
                 k == 1 ? "1 byte after the TLVs" : "2 bytes after the TLVs");
    }
    v2_start(&h, 0x21, 0x11);
    v2_inet4(&h, "1.2.3.4", "5.6.7.8", 1, 2);
    v2_tlv(&h, ISD_PP2_SSL, ssl, 4);
    n = v2_end(&h);
    fails_at(h.b, n, n, "PROXY v2: SSL TLV shorter than its 5-byte head",
             "SSL TLV of 4 bytes");
    v2_start(&h, 0x21, 0x11);
    v2_inet4(&h, "1.2.3.4", "5.6.7.8", 1, 2);
    v2_tlv(&h, ISD_PP2_SSL, ssl, 5);
    n = v2_end(&h);
    is_int(parse_n(h.b, n, &p), (int)n, "SSL TLV of 5 bytes (no sub-TLVs): fine");
    is_int(p.ssllen, 0, "  no sub-TLVs");
    memcpy(ssl + ssln, "\x22\x00\x09short", 8);   /* CN claims 9 of 5 */
    v2_start(&h, 0x21, 0x11);
    v2_inet4(&h, "1.2.3.4", "5.6.7.8", 1, 2);
    v2_tlv(&h, ISD_PP2_SSL, ssl, ssln + 8);
    n = v2_end(&h);
    fails_at(h.b, n, n, "PROXY v2: an SSL sub-TLV overruns the SSL TLV",
             "SSL sub-TLV overrunning the SSL TLV");
    /* a sub-TLV overrunning the SSL TLV but not the header */
    v2_start(&h, 0x21, 0x11);
    v2_inet4(&h, "1.2.3.4", "5.6.7.8", 1, 2);
    v2_tlv(&h, ISD_PP2_SSL, ssl, ssln + 8);
    v2_tlv(&h, ISD_PP2_NOOP, "padding", 7);
    n = v2_end(&h);
    fails_at(h.b, n, n, "PROXY v2: an SSL sub-TLV overruns the SSL TLV",
             "SSL sub-TLV overrunning into the next TLV");
}

static void test_v2_invalid(void)
{
    const char *sig = "PROXY: neither \"PROXY \" nor the v2 signature";
    hdr h, good;
    size_t n, i;
    int ok_all = 1;

    v2_start(&good, 0x21, 0x11);
    v2_inet4(&good, "1.2.3.4", "5.6.7.8", 1, 2);
    n = v2_end(&good);

    /* each byte of the signature, wrong: refused at that byte */
    for (i = 0; i < 12; i++) {
        h = good;
        h.b[i] ^= 0x40;
        if (i == 0)
            h.b[0] = 'X';
        if (!fails_at(h.b, n, i + 1, sig, "signature byte wrong"))
            ok_all = 0;
    }
    ok(ok_all, "a wrong signature byte is refused at once, at each of the 12");
    FAILS_S("\r\n\r\n\r\n", 5, sig);

    h = good; h.b[12] = 0x11;
    fails_at(h.b, n, 13, "PROXY v2: version is not 2", "version 1 nibble");
    h = good; h.b[12] = 0x31;
    fails_at(h.b, n, 13, "PROXY v2: version is not 2", "version 3 nibble");
    h = good; h.b[12] = 0x22;
    fails_at(h.b, n, 13, "PROXY v2: unknown command (neither LOCAL nor PROXY)",
             "command 2");
    h = good; h.b[12] = 0x2f;
    fails_at(h.b, n, 13, "PROXY v2: unknown command (neither LOCAL nor PROXY)",
             "command 15");
    h = good; h.b[13] = 0x41;
    fails_at(h.b, n, 14, "PROXY v2: unknown address family", "family 4");
    h = good; h.b[13] = 0x13;
    fails_at(h.b, n, 14, "PROXY v2: unknown transport protocol", "transport 3");
    h = good; h.b[12] = 0x20; h.b[13] = 0xf0;
    fails_at(h.b, n, 14, "PROXY v2: unknown address family",
             "family 15, even for LOCAL");

    /* lengths */
    h = good; put16(h.b + 14, 4097);
    fails_at(h.b, 16, 16, "PROXY v2: length over 4096 bytes", "length 4097");
    h = good; put16(h.b + 14, 0xffff);
    fails_at(h.b, 16, 16, "PROXY v2: length over 4096 bytes", "length 65535");
    h = good; put16(h.b + 14, 11);
    fails_at(h.b, n, 16,
             "PROXY v2: length shorter than the IPv4 address block (12 bytes)",
             "TCP4 with length 11");
    v2_start(&h, 0x21, 0x21);
    v2_inet6(&h, "::1", "::2", 1, 2);
    n = v2_end(&h);
    put16(h.b + 14, 35);
    fails_at(h.b, n, 16,
             "PROXY v2: length shorter than the IPv6 address block (36 bytes)",
             "TCP6 with length 35");
    put16(h.b + 14, 12);
    fails_at(h.b, n, 16,
             "PROXY v2: length shorter than the IPv6 address block (36 bytes)",
             "TCP6 with an IPv4-sized length");
    v2_start(&h, 0x21, 0x31);
    memset(h.b + 16, 0, 216);
    h.n += 216;
    n = v2_end(&h);
    put16(h.b + 14, 215);
    fails_at(h.b, n, 16,
             "PROXY v2: length shorter than the UNIX address block (216 bytes)",
             "UNIX with length 215");
    /* the longest we take, and one over */
    v2_start(&h, 0x20, 0x00);
    {
        static const unsigned char pad[ISD_PROXY_V2_MAX];
        v2_tlv(&h, ISD_PP2_NOOP, pad, ISD_PROXY_V2_MAX - 3);
    }
    n = v2_end(&h);
    {
        isd_proxy p;
        is_int(parse_n(h.b, n, &p), 16 + ISD_PROXY_V2_MAX,
               "length 4096 (a NOOP TLV of 4093 bytes): accepted");
    }
    /* truncated headers: never accepted, 0 until the end */
    ok(incremental_ok(good.b, 28, 28), "a truncated v2 header is never "
       "accepted (0 for every prefix)");
}

/* A header and the same with one byte changed: fed a byte at a time, the
 * answer is 0 until it is not, and then it is the whole input's answer. */
static int consistent(const unsigned char *b, size_t n)
{
    isd_proxy whole, part;
    int rw = parse_n(b, n, &whole), r;
    size_t k;

    for (k = 0; k <= n; k++) {
        r = parse_n(b, k, &part);
        if (r == 0)
            continue;
        if (r != rw || (r > 0 && (size_t)r > k))
            return 0;
        if (r < 0 && strcmp(part.err, whole.err) != 0)
            return 0;
        return 1;
    }
    return rw == 0;
}

static void test_mutations(void)
{
    static const char *const lines[] = {
        "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET",
        "PROXY TCP6 2001:db8::1 ::ffff:1.2.3.4 65535 80\r\n",
        "PROXY UNKNOWN 1 2 3\r\n",
    };
    unsigned char b[400];
    unsigned seed = 12345, i, k, bad = 0, runs = 0;
    hdr h;

    for (i = 0; i < 3; i++) {
        size_t n = strlen(lines[i]);
        for (k = 0; k < 3000; k++) {
            memcpy(b, lines[i], n);
            seed = seed * 1103515245u + 12345u;
            b[(seed >> 8) % n] = (unsigned char)(seed >> 20);
            seed = seed * 1103515245u + 12345u;
            if (seed & 0x100)
                b[(seed >> 8) % n] = " .:0123456789abcdef\r\n"[(seed >> 20) % 21];
            runs++;
            if (!consistent(b, n))
                bad++;
        }
    }
    v2_start(&h, 0x21, 0x11);
    v2_inet4(&h, "1.2.3.4", "5.6.7.8", 1, 2);
    v2_tlv(&h, ISD_PP2_ALPN, "h2", 2);
    v2_tlv(&h, ISD_PP2_SSL, "\x01\0\0\0\0\x21\0\x03TLS", 11);
    v2_crc(&h);
    for (k = 0; k < 5000; k++) {
        memcpy(b, h.b, h.n);
        seed = seed * 1103515245u + 12345u;
        b[(seed >> 8) % h.n] = (unsigned char)(seed >> 20);
        runs++;
        if (!consistent(b, h.n))
            bad++;
    }
    is_int(bad, 0, "%u mutated headers: fed a byte at a time, the same "
           "answer as whole", runs);
}

int main(void)
{
    guard_init();
    test_v1_valid();
    test_v1_invalid();
    test_v2_valid();
    test_v2_tlvs();
    test_v2_invalid();
    test_mutations();
    return done_testing();
}
