/*
 * fuzz_proxy.c - libFuzzer target for the PROXY protocol parser
 * (c_src/proxy.c).
 *
 * The input is the start of a connection's byte stream, as is.  It is
 * parsed whole, then as a connection delivers it: the growing prefix, a
 * byte more each time, until the answer is not 0.  Each prefix is parsed in
 * a heap copy of exactly its size, so reading one byte past len is an
 * AddressSanitizer report.  Checked:
 *
 *   - fed a byte at a time, the first answer that is not 0 is the whole
 *     input's (the same length and fields, or the same error), and an
 *     accepted header is accepted exactly when its last byte arrives;
 *   - an answer is -1 (with an error naming the PROXY version), 0 (then no
 *     prefix failed either), or a length <= the input, 107 at most for v1
 *     and 16 + ISD_PROXY_V2_MAX for v2;
 *   - v1: the line ends with its only CRLF; TCP4/TCP6 lines formatted anew
 *     from the parsed addresses (inet_ntop) give the same text (TCP4) or
 *     parse to the same addresses (TCP6, whose text has many spellings);
 *     UNKNOWN is LOCAL without addresses;
 *   - v2: the length is 16 + the length field; the addresses are the bytes
 *     at 16; the TLV and SSL sub-TLV iterators stay inside their blocks and
 *     cover them exactly; the CRC32C and SSL flags match the TLVs present,
 *     and a CRC32C flag is recomputed here bit by bit.
 *
 * Any disagreement aborts (a crash for libFuzzer).
 * Build: see fuzz/run (clang -fsanitize=fuzzer,address,undefined).
 */
#include "isd.h"

#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond, ...) do { if (!(cond)) { \
    fprintf(stderr, "fuzz_proxy: %s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
    fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); abort(); } } while (0)

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

/* Parse data[0..n) from a heap copy of exactly n bytes; *copy keeps it
 * (the caller frees) so the pointers in out stay valid. */
static int parse_copy(const uint8_t *data, size_t n, isd_proxy *out,
                      char **copy)
{
    char *p = malloc(n ? n : 1);
    CHECK(p != NULL, "malloc %zu", n);
    if (n)
        memcpy(p, data, n);
    *copy = p;
    return isd_proxy_parse(p, n, out);
}

/* Two results of the same header from buffers a and b agree. */
static void same(const isd_proxy *x, const char *a, const isd_proxy *y,
                 const char *b)
{
    CHECK(x->version == y->version && x->command == y->command
          && x->flags == y->flags && x->family == y->family
          && x->transport == y->transport, "header fields differ");
    CHECK(memcmp(&x->src, &y->src, sizeof x->src) == 0
          && memcmp(&x->dst, &y->dst, sizeof x->dst) == 0, "addresses differ");
    CHECK((x->src_path ? x->src_path - a : -1) == (y->src_path ? y->src_path - b : -1)
          && x->src_pathlen == y->src_pathlen && x->dst_pathlen == y->dst_pathlen,
          "UNIX paths differ");
    CHECK((x->tlv ? x->tlv - a : -1) == (y->tlv ? y->tlv - b : -1)
          && x->tlvlen == y->tlvlen, "TLV blocks differ");
    CHECK((x->ssl ? x->ssl - a : -1) == (y->ssl ? y->ssl - b : -1)
          && x->ssllen == y->ssllen && x->ssl_client == y->ssl_client
          && x->ssl_verify == y->ssl_verify, "SSL differs");
}

/* A TLV block walked by its iterator: in bounds, covered exactly. */
static void walk(const isd_proxy *p, int ssl, const char *blk, size_t blen,
                 unsigned *seen_crc, unsigned *seen_ssl)
{
    size_t pos = 0, l, covered = 0, before;
    unsigned t;
    const char *v;

    for (;;) {
        before = pos;
        if (!(ssl ? isd_proxy_ssl_next(p, &pos, &t, &v, &l)
                  : isd_proxy_tlv_next(p, &pos, &t, &v, &l)))
            break;
        CHECK(t <= 0xff, "type %u", t);
        CHECK(v == blk + before + 3 && v + l <= blk + blen && pos == before + 3 + l,
              "TLV at %zu out of its block", before);
        covered += 3 + l;
        if (!ssl && t == ISD_PP2_CRC32C) {
            (*seen_crc)++;
            CHECK(l == 4, "CRC32C TLV of %zu bytes accepted", l);
        }
        if (!ssl && t == ISD_PP2_SSL) {
            CHECK(l >= 5, "SSL TLV of %zu bytes accepted", l);
            if (!*seen_ssl)
                CHECK(p->ssl == v + 5 && p->ssllen == l - 5, "first SSL TLV not the one");
            (*seen_ssl)++;
        }
        if (!ssl && t == ISD_PP2_UNIQUE_ID)
            CHECK(l <= 128, "UNIQUE_ID of %zu bytes accepted", l);
    }
    CHECK(covered == blen, "TLVs cover %zu of %zu bytes", covered, blen);
}

static void check_v1(const uint8_t *data, int r, const isd_proxy *p)
{
    char line[200], h1[64], h2[64];
    int i;

    CHECK(r <= ISD_PROXY_V1_MAX && r >= 15, "v1 length %d", r);
    CHECK(memcmp(data, "PROXY ", 6) == 0, "v1 without PROXY");
    CHECK(data[r - 2] == '\r' && data[r - 1] == '\n', "v1 not ending in CRLF");
    for (i = 0; i < r - 2; i++)
        CHECK(data[i] != '\r' && data[i] != '\n', "CR or LF inside the line at %d", i);
    CHECK(p->tlv == NULL && p->tlvlen == 0 && p->ssl == NULL, "v1 with TLVs");
    if (p->flags & ISD_PROXY_F_UNKNOWN) {
        CHECK(p->flags == ISD_PROXY_F_UNKNOWN && p->command == ISD_PROXY_LOCAL
              && p->family == AF_UNSPEC, "UNKNOWN fields");
        CHECK(memcmp(data + 6, "UNKNOWN", 7) == 0, "UNKNOWN not said");
        return;
    }
    CHECK(p->flags == ISD_PROXY_F_ADDRS && p->command == ISD_PROXY_PROXY
          && p->transport == SOCK_STREAM, "v1 PROXY fields");
    if (p->family == AF_INET) {
        inet_ntop(AF_INET, &p->src.in4.sin_addr, h1, sizeof h1);
        inet_ntop(AF_INET, &p->dst.in4.sin_addr, h2, sizeof h2);
        snprintf(line, sizeof line, "PROXY TCP4 %s %s %u %u\r\n", h1, h2,
                 ntohs(p->src.in4.sin_port), ntohs(p->dst.in4.sin_port));
        CHECK(strlen(line) == (size_t)r && memcmp(line, data, (size_t)r) == 0,
              "TCP4 formatted anew differs: %s", line);
    } else {
        isd_proxy q;
        int rq;
        CHECK(p->family == AF_INET6, "v1 family %d", p->family);
        inet_ntop(AF_INET6, &p->src.in6.sin6_addr, h1, sizeof h1);
        inet_ntop(AF_INET6, &p->dst.in6.sin6_addr, h2, sizeof h2);
        snprintf(line, sizeof line, "PROXY TCP6 %s %s %u %u\r\n", h1, h2,
                 ntohs(p->src.in6.sin6_port), ntohs(p->dst.in6.sin6_port));
        rq = isd_proxy_parse(line, strlen(line), &q);
        if (strlen(line) <= ISD_PROXY_V1_MAX) {   /* (a canonical form can be longer) */
            CHECK(rq == (int)strlen(line), "TCP6 formatted anew: %d for %s", rq, line);
            CHECK(memcmp(&q.src, &p->src, sizeof q.src) == 0
                  && memcmp(&q.dst, &p->dst, sizeof q.dst) == 0,
                  "TCP6 formatted anew parses to other addresses: %s", line);
        }
    }
}

static void check_v2(const uint8_t *data, const char *buf, int r,
                     const isd_proxy *p)
{
    unsigned n = (unsigned)data[14] << 8 | data[15];
    unsigned seen_crc = 0, seen_ssl = 0;

    CHECK(r >= 16 && r <= 16 + ISD_PROXY_V2_MAX, "v2 length %d", r);
    CHECK((unsigned)r == 16 + n, "v2 length %d, field %u", r, n);
    CHECK(data[12] >> 4 == 2 && (data[12] & 15) == (unsigned)p->command,
          "version/command byte %02x", data[12]);
    CHECK(p->tlv >= buf + 16 && p->tlv + p->tlvlen == buf + r, "TLV block bounds");
    if (p->flags & ISD_PROXY_F_ADDRS)
        CHECK(p->command == ISD_PROXY_PROXY && p->family != AF_UNSPEC
              && p->transport != 0, "ADDRS without addresses");
    if (p->family == AF_INET) {
        CHECK(memcmp(&p->src.in4.sin_addr, data + 16, 4) == 0
              && memcmp(&p->dst.in4.sin_addr, data + 20, 4) == 0
              && memcmp(&p->src.in4.sin_port, data + 24, 2) == 0
              && memcmp(&p->dst.in4.sin_port, data + 26, 2) == 0, "IPv4 block");
        CHECK(p->tlv == buf + 28, "TLVs after IPv4");
    } else if (p->family == AF_INET6) {
        CHECK(memcmp(&p->src.in6.sin6_addr, data + 16, 16) == 0
              && memcmp(&p->dst.in6.sin6_addr, data + 32, 16) == 0
              && memcmp(&p->src.in6.sin6_port, data + 48, 2) == 0
              && memcmp(&p->dst.in6.sin6_port, data + 50, 2) == 0, "IPv6 block");
        CHECK(p->tlv == buf + 52, "TLVs after IPv6");
    } else if (p->family == AF_UNIX) {
        CHECK(p->src_path == buf + 16 && p->dst_path == buf + 124
              && p->src_pathlen <= 108 && p->dst_pathlen <= 108, "UNIX block");
        CHECK(p->tlv == buf + 232, "TLVs after UNIX");
    } else {
        CHECK(p->family == AF_UNSPEC && p->tlv == buf + 16, "UNSPEC: TLVs at 16");
    }
    walk(p, 0, p->tlv, p->tlvlen, &seen_crc, &seen_ssl);
    CHECK(seen_crc <= 1, "%u CRC32C TLVs accepted", seen_crc);
    CHECK(!!seen_crc == !!(p->flags & ISD_PROXY_F_CRC32C), "CRC32C flag");
    CHECK(!!seen_ssl == !!(p->flags & ISD_PROXY_F_SSL), "SSL flag");
    if (seen_ssl) {
        walk(p, 1, p->ssl, p->ssllen, &seen_crc, &seen_ssl);
        CHECK(p->ssl >= p->tlv && p->ssl + p->ssllen <= p->tlv + p->tlvlen,
              "SSL block outside the TLVs");
    }
    if (seen_crc) {
        size_t at, l;
        unsigned char *z = malloc((size_t)r);
        uint32_t want;
        const char *v = isd_proxy_tlv_get(p, ISD_PP2_CRC32C, &l);
        CHECK(z && v && l == 4, "CRC32C TLV");
        at = (size_t)(v - buf);
        memcpy(z, data, (size_t)r);
        memset(z + at, 0, 4);
        want = (uint32_t)data[at] << 24 | (uint32_t)data[at + 1] << 16
             | (uint32_t)data[at + 2] << 8 | data[at + 3];
        CHECK(ref_crc32c(z, (size_t)r) == want, "CRC32C accepted but wrong");
        CHECK(isd_crc32c(z, (size_t)r) == want, "isd_crc32c differs");
        free(z);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    isd_proxy whole, part;
    char *wbuf, *pbuf;
    int rw, r = 0;
    size_t k;

    rw = parse_copy(data, size, &whole, &wbuf);
    CHECK(rw >= -1 && (rw < 0 || (size_t)rw <= size), "result %d of %zu", rw, size);
    if (rw < 0)
        CHECK(whole.err && strncmp(whole.err, "PROXY", 5) == 0, "error %s",
              whole.err ? whole.err : "(null)");
    else
        CHECK(whole.err == NULL, "error %s with %d", whole.err, rw);

    /* as a connection delivers it */
    for (k = 0; k <= size; k++) {
        r = parse_copy(data, k, &part, &pbuf);
        if (r != 0)
            break;
        free(pbuf);
    }
    if (r == 0) {
        CHECK(rw == 0, "no prefix answered, the whole did: %d", rw);
    } else {
        CHECK(r == rw, "prefix of %zu answered %d, the whole %d", k, r, rw);
        if (r < 0) {
            CHECK(part.err == whole.err, "errors differ: %s / %s", part.err, whole.err);
        } else {
            CHECK(k == (size_t)r, "header of %d accepted with %zu bytes", r, k);
            same(&part, pbuf, &whole, wbuf);
        }
        free(pbuf);
    }

    if (rw > 0) {
        CHECK(whole.version == 1 || whole.version == 2, "version %d", whole.version);
        CHECK(whole.command == ISD_PROXY_LOCAL || whole.command == ISD_PROXY_PROXY,
              "command %d", whole.command);
        if (whole.version == 1)
            check_v1(data, rw, &whole);
        else
            check_v2(data, wbuf, rw, &whole);
    }
    free(wbuf);
    return 0;
}
