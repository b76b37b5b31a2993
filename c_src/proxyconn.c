/*
 * proxyconn.c - the PROXY protocol on a listener: a connection hook
 * (isd_conn_hook) around proxy.c's parser.
 *
 * accepted() refuses a peer outside the trusted blocks before anything is
 * read; preamble() parses the header as it arrives and, when it is
 * complete, keeps a copy of it (the input it came in is consumed) and
 * makes its source and destination the connection's peer and local
 * addresses.  The parser stays pure; conn.c knows nothing of this file.
 */
#include "isd_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ CIDR */

int isd_cidr_parse(const char *s, isd_cidr *out)
{
    char host[64];
    const char *slash = strchr(s, '/');
    size_t hlen = slash ? (size_t)(slash - s) : strlen(s);
    unsigned long bits, max;
    unsigned i;

    memset(out, 0, sizeof *out);
    if (!hlen || hlen >= sizeof host)
        goto bad;
    memcpy(host, s, hlen);
    host[hlen] = '\0';
    if (inet_pton(AF_INET, host, out->addr) == 1) {
        out->family = AF_INET;
        max = 32;
    } else if (inet_pton(AF_INET6, host, out->addr) == 1) {
        out->family = AF_INET6;
        max = 128;
    } else {
        goto bad;
    }
    bits = max;
    if (slash) {
        const char *p = slash + 1;
        if (*p < '0' || *p > '9' || (p[0] == '0' && p[1]))
            goto bad;
        for (bits = 0; *p >= '0' && *p <= '9' && bits <= max; p++)
            bits = bits * 10 + (unsigned long)(*p - '0');
        if (*p || bits > max)
            goto bad;
    }
    out->bits = (unsigned)bits;
    /* the bits past the prefix: cleared ("10.1.2.3/8" is 10.0.0.0/8) */
    for (i = 0; i < max / 8; i++) {
        if (i * 8 >= bits)
            out->addr[i] = 0;
        else if (i * 8 + 8 > bits)
            out->addr[i] &= (unsigned char)(0xffu << (8 - (bits - i * 8)));
    }
    /* ::ffff:a.b.c.d/96+n is the IPv4 block a.b.c.d/n: what it matches */
    if (out->family == AF_INET6 && bits >= 96
        && IN6_IS_ADDR_V4MAPPED((const struct in6_addr *)(void *)out->addr)) {
        memmove(out->addr, out->addr + 12, 4);
        memset(out->addr + 4, 0, 12);
        out->family = AF_INET;
        out->bits -= 96;
    }
    return 0;
bad:
    memset(out, 0, sizeof *out);
    errno = EINVAL;
    return -1;
}

int isd_cidr_match(const isd_cidr *c, const isd_addr *a)
{
    isd_addr u = *a;
    const unsigned char *p;
    unsigned full, rem;

    isd_addr_unmap(&u);
    if (u.sa.sa_family != c->family)
        return 0;
    p = c->family == AF_INET ? (const unsigned char *)&u.in4.sin_addr
                             : u.in6.sin6_addr.s6_addr;
    full = c->bits / 8;
    rem = c->bits % 8;
    if (memcmp(p, c->addr, full) != 0)
        return 0;
    return !rem || !((p[full] ^ c->addr[full]) & (0xffu << (8 - rem)) & 0xffu);
}

/* ------------------------------------------------------------------ hook */

/* What a connection keeps: the info, then the header's bytes it points
 * into. */
typedef struct proxy_conn {
    isd_proxy_info info;
    char           raw[1];
} proxy_conn;

static int proxy_accepted(isd_conn *c, void *arg)
{
    const isd_proxy_opts *o = arg;
    const isd_addr *peer = isd_conn_peer(c);
    char host[64], why[128];
    size_t i;

    if (!o || !o->ntrusted || peer->sa.sa_family == AF_UNIX)
        return 0;
    for (i = 0; i < o->ntrusted; i++)
        if (isd_cidr_match(&o->trusted[i], peer))
            return 0;
    snprintf(why, sizeof why, "PROXY: source %s is not a trusted proxy",
             isd_addr_host(peer, host, sizeof host));
    isd_conn_reject(c, EACCES, why);
    return -1;
}

/* Whether a and b are the same IP address and port (a and b unmapped). */
static int same_addr(const isd_addr *a, const isd_addr *b)
{
    if (a->sa.sa_family != b->sa.sa_family)
        return 0;
    if (a->sa.sa_family == AF_INET)
        return a->in4.sin_port == b->in4.sin_port
            && a->in4.sin_addr.s_addr == b->in4.sin_addr.s_addr;
    return a->sa.sa_family == AF_INET6
        && a->in6.sin6_port == b->in6.sin6_port
        && memcmp(&a->in6.sin6_addr, &b->in6.sin6_addr,
                  sizeof a->in6.sin6_addr) == 0;
}

/* p points into base[0..); the same place in copy. */
static const char *rebase(const char *p, const char *base, const char *copy)
{
    return p ? copy + (p - base) : NULL;
}

static ssize_t proxy_preamble(isd_conn *c, const char *in, size_t len,
                              void *arg)
{
    proxy_conn *pc;
    isd_proxy h;
    int n = isd_proxy_parse(in, len, &h), own;

    ISD_UNUSED(arg);
    if (n == 0)
        return 0;
    if (n < 0) {
        isd_conn_reject(c, EPROTO, h.err ? h.err : "PROXY: bad header");
        return -1;
    }
    if (!(pc = malloc(sizeof *pc + (size_t)n))) {
        isd_conn_reject(c, ENOMEM, "PROXY: out of memory");
        return -1;
    }
    memcpy(pc->raw, in, (size_t)n);
    h.src_path = rebase(h.src_path, in, pc->raw);
    h.dst_path = rebase(h.dst_path, in, pc->raw);
    h.tlv = rebase(h.tlv, in, pc->raw);
    h.ssl = rebase(h.ssl, in, pc->raw);
    h.err = NULL;
    pc->info.hdr = h;
    pc->info.len = (size_t)n;
    pc->info.via_peer = *isd_conn_peer(c);
    pc->info.via_local = *isd_conn_local(c);
    isd_conn_set_hook_data(c, pc);
    /* A proxy speaking for itself, not for a client: a LOCAL header (v2's
     * health checks), or one whose addresses are this very connection's
     * (v1 has no LOCAL: HAProxy's v1 checks send their own).  Most likely
     * a health check: it is the embedder's only if a byte follows. */
    own = h.command == ISD_PROXY_LOCAL;
    if ((h.flags & ISD_PROXY_F_ADDRS)
        && (h.family == AF_INET || h.family == AF_INET6)) {
        isd_addr src = h.src, dst = h.dst, peer = pc->info.via_peer,
                 local = pc->info.via_local;
        isd_addr_unmap(&src);
        isd_addr_unmap(&dst);
        isd_addr_unmap(&peer);
        isd_addr_unmap(&local);
        own = same_addr(&src, &peer) && same_addr(&dst, &local);
        isd_conn_set_addrs(c, &src, &dst);
    }
    if (own)
        isd_conn_pre_defer(c);
    return n;
}

static void proxy_release(isd_conn *c, void *arg)
{
    ISD_UNUSED(arg);
    free(isd_conn_hook_data(c));
    isd_conn_set_hook_data(c, NULL);
}

void isd_proxy_hook_init(isd_conn_hook *h, const isd_proxy_opts *o)
{
    memset(h, 0, sizeof *h);
    h->accepted = proxy_accepted;
    h->preamble = proxy_preamble;
    h->release = proxy_release;
    h->timeout_ms = o ? o->timeout_ms : 0;
    h->what = "PROXY header";
}

int isd_server_listen_fd_proxy(isd_server *s, int fd, const isd_proxy_opts *o)
{
    isd_conn_hook h;

    isd_proxy_hook_init(&h, o);
    return isd_server_listen_fd_hook(s, fd, &h, (void *)o);
}

const isd_proxy_info *isd_conn_proxy(const isd_conn *c)
{
    const isd_conn_hook *h = isd_conn_hook_of(c);
    const proxy_conn *pc;

    if (!h || h->preamble != proxy_preamble)
        return NULL;
    pc = isd_conn_hook_data(c);
    return pc ? &pc->info : NULL;
}
