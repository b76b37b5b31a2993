/*
 * proxy.c - the PROXY protocol header, versions 1 and 2 (HAProxy's
 * doc/proxy-protocol.txt).
 *
 * Pure functions over caller-owned bytes, like frame.c: no allocation, no
 * state between calls.  Each call reads the buffer from its start again (a
 * header is at most 107 bytes of text or 16 + ISD_PROXY_V2_MAX of binary,
 * and arrives once per connection), and decides only from the bytes it
 * needs, so feeding a header in pieces gives the same answer as feeding it
 * whole.
 *
 * Decisions where the spec leaves room:
 *   - v1 "UNKNOWN": anything up to the CRLF is ignored, as the spec says,
 *     except a lone CR or LF; the 107-byte bound holds.
 *   - v1 TCP6 addresses are what inet_pton(AF_INET6) takes (the IPv4-dotted
 *     tail "::ffff:192.0.2.1" included, a zone "%eth0" not); TCP4 ones are
 *     checked here, byte by byte: 4 decimal numbers 0-255, no leading zero.
 *   - v2 family and transport nibbles outside 0-3 and 0-2 are refused
 *     whatever the command (the spec's "must be rejected"); LOCAL ignores
 *     the family otherwise.
 *   - v2 address block size follows the family alone (IPv4 12, IPv6 36,
 *     UNIX 216, UNSPEC 0), the transport only says whether the addresses
 *     are used.  PROXY with a length shorter than it is refused; LOCAL then
 *     reads no addresses and its TLVs start at byte 16 (a LOCAL header may
 *     keep the family of its connection with length 0).
 *   - v2 TLVs are walked at parse time: one whose length overruns the
 *     header (or a trailing 1-2 bytes that cannot be a TLV) refuses the
 *     header, and so does an SSL TLV shorter than its 5 fixed bytes or with
 *     an overrunning sub-TLV, a CRC32C TLV that is not 4 bytes, is not the
 *     only one, or does not match, and a UNIQUE_ID over 128 bytes (the
 *     spec's bound).  Unknown types are skipped.
 */
#include "isd_int.h"

#include <arpa/inet.h>
#include <string.h>

static const char v2_sig[12] = {
    '\r', '\n', '\r', '\n', '\0', '\r', '\n', 'Q', 'U', 'I', 'T', '\n'
};

static const char err_sig[] =
    "PROXY: neither \"PROXY \" nor the v2 signature";

/* ------------------------------------------------------------- CRC32C */

/* Reflected Castagnoli polynomial 0x82f63b78, four bits at a time: a
 * 64-byte table instead of 1 KiB; headers are short. */
static const uint32_t crc_nibble[16] = {
    0x00000000u, 0x105ec76fu, 0x20bd8edeu, 0x30e349b1u,
    0x417b1dbcu, 0x5125dad3u, 0x61c69362u, 0x7198540du,
    0x82f63b78u, 0x92a8fc17u, 0xa24bb5a6u, 0xb21572c9u,
    0xc38d26c4u, 0xd3d3e1abu, 0xe330a81au, 0xf36e6f75u
};

/* Continue crc (pre-inverted) over p[0..n). */
static uint32_t crc_run(uint32_t crc, const unsigned char *p, size_t n)
{
    while (n--) {
        crc ^= *p++;
        crc = (crc >> 4) ^ crc_nibble[crc & 15];
        crc = (crc >> 4) ^ crc_nibble[crc & 15];
    }
    return crc;
}

uint32_t isd_crc32c(const void *p, size_t n)
{
    return ~crc_run(0xffffffffu, p, n);
}

/* ---------------------------------------------------------- version 1 */

enum { F_SRC, F_DST, F_SPORT, F_DPORT };

static const char *const v1_bad_addr[] = {
    "PROXY v1: bad source address", "PROXY v1: bad destination address"
};
static const char *const v1_bad_port[] = {
    "PROXY v1: bad source port", "PROXY v1: bad destination port"
};

#define V1_FAIL(msg) do { out->err = (msg); return -1; } while (0)

/* After "PROXY UNKNOWN" at b[i]: the CRLF (after a space, anything). */
static int v1_unknown(const char *b, size_t len, size_t i, isd_proxy *out)
{
    if (i < len && b[i] != ' ' && b[i] != '\r' && b[i] != '\n')
        V1_FAIL("PROXY v1: unknown protocol (not TCP4, TCP6 or UNKNOWN)");
    for (; i < len; i++) {
        if (b[i] == '\n')
            V1_FAIL("PROXY v1: LF without CR");
        /* the CR at 105 at the latest, the LF after it at 106 */
        if (i >= ISD_PROXY_V1_MAX - (b[i] == '\r' ? 1 : 2))
            V1_FAIL("PROXY v1: no CRLF within 107 bytes");
        if (b[i] != '\r')
            continue;
        if (i + 1 >= len)
            return 0;
        if (b[i + 1] != '\n')
            V1_FAIL("PROXY v1: CR without LF");
        memset(out, 0, sizeof *out);
        out->version = 1;
        out->command = ISD_PROXY_LOCAL;
        out->flags = ISD_PROXY_F_UNKNOWN;
        out->family = AF_UNSPEC;
        return (int)(i + 2);
    }
    return 0;
}

/* An IPv4 address ending with a space at b[i..): whether it parsed, into
 * a4.  *end: the index of the space, or len if it is not in yet (then the
 * answer only says that the bytes so far may still start one), or on
 * failure the byte that broke it. */
static int v1_ipv4(const char *b, size_t len, size_t i, size_t *end,
                   unsigned char a4[4])
{
    unsigned val = 0, digits = 0, dots = 0;

    for (; i < len; i++) {
        *end = i;
        char c = b[i];
        if (c >= '0' && c <= '9') {
            if (digits == 1 && val == 0)        /* "01": octal-looking */
                return 0;
            val = val * 10 + (unsigned)(c - '0');
            if (val > 255)
                return 0;
            digits++;
        } else if (c == '.') {
            if (!digits || dots == 3)
                return 0;
            a4[dots++] = (unsigned char)val;
            val = digits = 0;
        } else if (c == ' ') {
            if (!digits || dots != 3)
                return 0;
            a4[3] = (unsigned char)val;
            *end = i;
            return 1;
        } else {
            return 0;
        }
    }
    *end = len;
    return 1;
}

/* The same for IPv6: hex digits, colons and dots (an IPv4 tail), at most
 * 45 of them, judged whole by inet_pton when the space arrives. */
static int v1_ipv6(const char *b, size_t len, size_t i, size_t *end,
                   unsigned char a6[16])
{
    char text[46];
    size_t start = i, n;

    for (; i < len; i++) {
        char c = b[i];
        *end = i;
        if (c == ' ')
            break;
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')
              || (c >= 'A' && c <= 'F') || c == ':' || c == '.'))
            return 0;
        if (i - start >= sizeof text - 1)
            return 0;
    }
    *end = i;
    if (i == len)
        return 1;
    n = i - start;
    memcpy(text, b + start, n);
    text[n] = '\0';
    return n > 0 && inet_pton(AF_INET6, text, a6) == 1;
}

/* A port ending with term at b[i..): as v1_ipv4. */
static int v1_port(const char *b, size_t len, size_t i, char term,
                   size_t *end, unsigned *port)
{
    unsigned val = 0, digits = 0;

    for (; i < len; i++) {
        *end = i;
        char c = b[i];
        if (c >= '0' && c <= '9') {
            if (digits == 1 && val == 0)
                return 0;
            val = val * 10 + (unsigned)(c - '0');
            if (val > 65535)
                return 0;
            digits++;
        } else if (c == term && digits) {
            *port = val;
            *end = i;
            return 1;
        } else {
            return 0;
        }
    }
    *end = len;
    return 1;
}

/* Fill a with family, address bytes and port. */
static void set_addr(isd_addr *a, int family, const unsigned char *ip,
                     unsigned port)
{
    if (family == AF_INET) {
        a->in4.sin_family = AF_INET;
        memcpy(&a->in4.sin_addr, ip, 4);
        a->in4.sin_port = htons((uint16_t)port);
    } else {
        a->in6.sin6_family = AF_INET6;
        memcpy(&a->in6.sin6_addr, ip, 16);
        a->in6.sin6_port = htons((uint16_t)port);
    }
}

/* b starts with "PROXY " (or a prefix of it: checked by the caller). */
static int v1_parse(const char *b, size_t len, isd_proxy *out)
{
    static const char *const protos[] = { "TCP4 ", "TCP6 ", "UNKNOWN" };
    unsigned char ip[2][16];
    unsigned port[2] = { 0, 0 };
    size_t i = 6, end, n, k;
    int family, field, okp = 0;

    if (len <= i)
        return 0;
    /* The protocol: a prefix of one of three words. */
    for (k = 0; k < 3; k++) {
        n = strlen(protos[k]);
        if (len - i < n)
            n = len - i;
        if (memcmp(b + i, protos[k], n) == 0)
            break;
    }
    if (k == 3)
        V1_FAIL("PROXY v1: unknown protocol (not TCP4, TCP6 or UNKNOWN)");
    if (len - i < strlen(protos[k]))
        return 0;                       /* the word is not all in yet */
    if (k == 2)
        return v1_unknown(b, len, i + 7, out);
    family = k == 0 ? AF_INET : AF_INET6;
    i += 5;

    for (field = F_SRC; field <= F_DPORT; field++) {
        if (field <= F_DST)
            okp = family == AF_INET
                ? v1_ipv4(b, len, i, &end, ip[field])
                : v1_ipv6(b, len, i, &end, ip[field]);
        else
            okp = v1_port(b, len, i, field == F_SPORT ? ' ' : '\r', &end,
                          &port[field - F_SPORT]);
        if (!okp) {
            /* b[end] broke it: name CR and LF, they end lines. */
            if (b[end] == '\n')
                V1_FAIL("PROXY v1: LF without CR");
            if (b[end] == '\r' && field != F_DPORT)
                V1_FAIL("PROXY v1: CR before the destination port");
            V1_FAIL(field <= F_DST ? v1_bad_addr[field]
                                   : v1_bad_port[field - F_SPORT]);
        }
        /* The CR must be at 105 at the latest: a field byte or a space
         * there (or a CR past it) leaves no room. */
        if (end >= ISD_PROXY_V1_MAX - 1)
            V1_FAIL("PROXY v1: no CRLF within 107 bytes");
        if (end == len)
            return 0;
        i = end + 1;
    }
    /* b[end] is the CR after the destination port, at most at 105. */
    if (i >= len)
        return 0;
    if (b[i] != '\n')
        V1_FAIL("PROXY v1: CR without LF");
    memset(out, 0, sizeof *out);
    out->version = 1;
    out->command = ISD_PROXY_PROXY;
    out->flags = ISD_PROXY_F_ADDRS;
    out->family = family;
    out->transport = SOCK_STREAM;
    set_addr(&out->src, family, ip[0], port[0]);
    set_addr(&out->dst, family, ip[1], port[1]);
    return (int)(i + 1);
}

/* ---------------------------------------------------------- version 2 */

#define V2_FAIL(msg) do { out->err = (msg); return -1; } while (0)

static unsigned get16(const unsigned char *p)
{
    return (unsigned)p[0] << 8 | p[1];
}

/* Whether every TLV of p[0..n) fits in it. */
static int tlv_lengths_ok(const unsigned char *p, size_t n)
{
    size_t pos = 0;

    while (pos < n) {
        if (n - pos < 3 || get16(p + pos + 1) > n - pos - 3)
            return 0;
        pos += 3 + get16(p + pos + 1);
    }
    return 1;
}

/* Walk the TLVs of a complete header h[0..total), block at offset off. */
static int v2_tlvs(const unsigned char *h, size_t total, size_t off,
                   isd_proxy *out)
{
    const unsigned char *p = h + off;
    size_t n = total - off, pos = 0, crcat = 0;
    int crc = 0;

    if (!tlv_lengths_ok(p, n))
        V2_FAIL("PROXY v2: a TLV overruns the header");
    while (pos < n) {
        unsigned type = p[pos];
        size_t l = get16(p + pos + 1);
        const unsigned char *v = p + pos + 3;

        switch (type) {
        case ISD_PP2_CRC32C:
            if (l != 4)
                V2_FAIL("PROXY v2: CRC32C TLV not 4 bytes long");
            if (crc)
                V2_FAIL("PROXY v2: more than one CRC32C TLV");
            crc = 1;
            crcat = (size_t)(v - h);
            break;
        case ISD_PP2_UNIQUE_ID:
            if (l > 128)
                V2_FAIL("PROXY v2: UNIQUE_ID TLV over 128 bytes");
            break;
        case ISD_PP2_SSL:
            if (l < 5)
                V2_FAIL("PROXY v2: SSL TLV shorter than its 5-byte head");
            if (!tlv_lengths_ok(v + 5, l - 5))
                V2_FAIL("PROXY v2: an SSL sub-TLV overruns the SSL TLV");
            if (!(out->flags & ISD_PROXY_F_SSL)) {
                out->flags |= ISD_PROXY_F_SSL;
                out->ssl_client = v[0];
                out->ssl_verify = (uint32_t)v[1] << 24 | (uint32_t)v[2] << 16
                                | (uint32_t)v[3] << 8 | v[4];
                out->ssl = (const char *)v + 5;
                out->ssllen = l - 5;
            }
            break;
        default:
            break;
        }
        pos += 3 + l;
    }
    if (crc) {
        static const unsigned char zero[4] = { 0, 0, 0, 0 };
        uint32_t want = (uint32_t)h[crcat] << 24 | (uint32_t)h[crcat + 1] << 16
                      | (uint32_t)h[crcat + 2] << 8 | h[crcat + 3];
        uint32_t got = crc_run(0xffffffffu, h, crcat);
        got = crc_run(got, zero, 4);
        got = ~crc_run(got, h + crcat + 4, total - crcat - 4);
        if (got != want)
            V2_FAIL("PROXY v2: CRC32C mismatch");
        out->flags |= ISD_PROXY_F_CRC32C;
    }
    out->tlv = (const char *)p;
    out->tlvlen = n;
    return 1;
}

/* b[0..len) starts with the 12-byte signature. */
static int v2_parse(const unsigned char *b, size_t len, isd_proxy *out)
{
    static const int families[4] = { AF_UNSPEC, AF_INET, AF_INET6, AF_UNIX };
    static const size_t asizes[4] = { 0, 12, 36, 216 };
    static const int transports[3] = { 0, SOCK_STREAM, SOCK_DGRAM };
    static const char *const short_len[4] = {
        NULL,
        "PROXY v2: length shorter than the IPv4 address block (12 bytes)",
        "PROXY v2: length shorter than the IPv6 address block (36 bytes)",
        "PROXY v2: length shorter than the UNIX address block (216 bytes)"
    };
    unsigned cmd, fam, tr;
    size_t n, asize;
    isd_proxy res;

    if (len < 13)
        return 0;
    if (b[12] >> 4 != 2)
        V2_FAIL("PROXY v2: version is not 2");
    cmd = b[12] & 15;
    if (cmd > 1)
        V2_FAIL("PROXY v2: unknown command (neither LOCAL nor PROXY)");
    if (len < 14)
        return 0;
    fam = b[13] >> 4;
    tr = b[13] & 15;
    if (fam > 3)
        V2_FAIL("PROXY v2: unknown address family");
    if (tr > 2)
        V2_FAIL("PROXY v2: unknown transport protocol");
    if (len < 16)
        return 0;
    n = get16(b + 14);
    if (n > ISD_PROXY_V2_MAX)
        V2_FAIL("PROXY v2: length over 4096 bytes");
    asize = asizes[fam];
    if (n < asize) {
        if (cmd == ISD_PROXY_PROXY)
            V2_FAIL(short_len[fam]);
        fam = 0;                        /* LOCAL: no addresses to skip */
        asize = 0;
    }
    if (len < 16 + n)
        return 0;

    memset(&res, 0, sizeof res);
    res.version = 2;
    res.command = (int)cmd;
    res.family = families[fam];
    res.transport = transports[tr];
    if (fam == 1 || fam == 2) {
        size_t al = fam == 1 ? 4 : 16;
        const unsigned char *a = b + 16;
        set_addr(&res.src, res.family, a, get16(a + 2 * al));
        set_addr(&res.dst, res.family, a + al, get16(a + 2 * al + 2));
    } else if (fam == 3) {
        res.src.sa.sa_family = res.dst.sa.sa_family = AF_UNIX;
        res.src_path = (const char *)b + 16;
        res.dst_path = (const char *)b + 16 + 108;
        res.src_pathlen = strnlen(res.src_path, 108);
        res.dst_pathlen = strnlen(res.dst_path, 108);
    }
    if (cmd == ISD_PROXY_PROXY && fam && tr)
        res.flags |= ISD_PROXY_F_ADDRS;
    if (v2_tlvs(b, 16 + n, 16 + asize, &res) < 0) {
        out->err = res.err;
        return -1;
    }
    *out = res;
    return (int)(16 + n);
}

/* --------------------------------------------------------------- API */

int isd_proxy_parse(const char *buf, size_t len, isd_proxy *out)
{
    size_t n;

    out->err = NULL;
    if (len == 0)
        return 0;
    if (buf[0] == 'P') {
        n = len < 6 ? len : 6;
        if (memcmp(buf, "PROXY ", n) != 0) {
            out->err = err_sig;
            return -1;
        }
        return v1_parse(buf, len, out);
    }
    n = len < 12 ? len : 12;
    if (memcmp(buf, v2_sig, n) != 0) {
        out->err = err_sig;
        return -1;
    }
    if (len < 12)
        return 0;
    return v2_parse((const unsigned char *)buf, len, out);
}

/* The next TLV of block[0..n) at *pos. */
static int tlv_next(const char *block, size_t n, size_t *pos, unsigned *type,
                    const char **val, size_t *len)
{
    const unsigned char *p = (const unsigned char *)block;
    size_t at = *pos, l;

    if (!block || at >= n || n - at < 3)
        return 0;
    l = get16(p + at + 1);
    if (l > n - at - 3)
        return 0;
    *type = p[at];
    *val = block + at + 3;
    *len = l;
    *pos = at + 3 + l;
    return 1;
}

int isd_proxy_tlv_next(const isd_proxy *p, size_t *pos, unsigned *type,
                       const char **val, size_t *len)
{
    return tlv_next(p->tlv, p->tlvlen, pos, type, val, len);
}

int isd_proxy_ssl_next(const isd_proxy *p, size_t *pos, unsigned *type,
                       const char **val, size_t *len)
{
    return tlv_next(p->ssl, p->ssllen, pos, type, val, len);
}

const char *isd_proxy_tlv_get(const isd_proxy *p, unsigned type, size_t *len)
{
    size_t pos = 0, l;
    unsigned t;
    const char *v;

    while (isd_proxy_tlv_next(p, &pos, &t, &v, &l))
        if (t == type) {
            *len = l;
            return v;
        }
    return NULL;
}
