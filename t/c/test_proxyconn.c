/* test_proxyconn.c - unit tests for the connection hook of listeners
 * (c_src/conn.c) and the PROXY protocol on it (c_src/proxyconn.c), with
 * real sockets on 127.0.0.1 through the loop, on every backend, with
 * on_message and on_ready delivery. */
// Build and run by hand from the distribution root:
//   cc -std=c99 -D_GNU_SOURCE -Wall -Wextra -Ic_src t/c/test_proxyconn.c c_src/*.c -o /tmp/tpc && /tmp/tpc
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include "isd.h"
#include "tap.h"
#include "net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0
#endif

static const char *BE;
static int PULL;
#define T(fmt) "[%s%s] " fmt, BE ? BE : "-", PULL ? " pull" : ""

/* ---------------------------------------------------------- the server */

typedef struct ctx {
    isd_loop   *l;
    isd_server *s;
    unsigned    pport;             /* the PROXY listener's port */
    unsigned    port;              /* a plain listener's port */
    isd_proxy_opts opts;
    isd_cidr    trusted[4];
    char        log[4096];
    size_t      loglen;
    int         naccept, nmsg, nclose, nreject, nerror;
    int         rej_err;
    char        rej_reason[256];
    char        rej_peer[64];      /* isd_conn_peer during on_reject */
    /* seen in on_accept */
    char        peer[80], local[80];
    int         pversion, pcommand, has_info;
    char        authority[64], alpn[16], via[64];
    int         ntlv;
    size_t      nconns_seen;       /* isd_server_nconns in on_accept */
    isd_conn   *held;              /* a reference taken in on_accept */
    uint64_t    treject;
} ctx;

static void logf_(ctx *x, const char *kind, const char *p, size_t n)
{
    size_t room = sizeof x->log - x->loglen - 1;
    int w;
    if (x->loglen && room) { x->log[x->loglen++] = ' '; room--; }
    w = snprintf(x->log + x->loglen, room + 1, "%s%.*s", kind, (int)n, p);
    if (w > 0) x->loglen += (size_t)w > room ? room : (size_t)w;
}

static void hostport(const isd_addr *a, char *buf, size_t len)
{
    char h[64];
    snprintf(buf, len, "%s:%u", isd_addr_host(a, h, sizeof h), isd_addr_port(a));
}

static int hold_first;                 /* take a reference to the first conn */

static void h_accept(isd_server *s, isd_conn *c)
{
    ctx *x = isd_server_data(s);
    const isd_proxy_info *pi = isd_conn_proxy(c);
    char b[200];

    isd_conn_set_data(c, x);
    x->naccept++;
    x->nconns_seen = isd_server_nconns(s);
    hostport(isd_conn_peer(c), x->peer, sizeof x->peer);
    hostport(isd_conn_local(c), x->local, sizeof x->local);
    snprintf(b, sizeof b, "%s>%s", x->peer, x->local);
    logf_(x, "A", b, strlen(b));
    x->has_info = pi != NULL;
    x->authority[0] = x->alpn[0] = x->via[0] = '\0';
    x->ntlv = 0;
    if (pi) {
        size_t pos = 0, len;
        unsigned type;
        const char *v;
        x->pversion = pi->hdr.version;
        x->pcommand = pi->hdr.command;
        hostport(&pi->via_peer, x->via, sizeof x->via);
        while (isd_proxy_tlv_next(&pi->hdr, &pos, &type, &v, &len)) {
            x->ntlv++;
            if (type == ISD_PP2_AUTHORITY && len < sizeof x->authority) {
                memcpy(x->authority, v, len);
                x->authority[len] = '\0';
            }
        }
        if ((v = isd_proxy_tlv_get(&pi->hdr, ISD_PP2_ALPN, &len))
            && len < sizeof x->alpn) {
            memcpy(x->alpn, v, len);
            x->alpn[len] = '\0';
        }
    }
    if (hold_first && !x->held) {
        isd_conn_ref(c);
        x->held = c;
    }
}

static void h_message(isd_conn *c, const char *msg, size_t len)
{
    ctx *x = isd_conn_data(c);
    x->nmsg++;
    logf_(x, "M", msg, len && msg[len - 1] == '\n' ? len - 1 : len);
    isd_conn_write(c, msg, len);
}

static void h_close(isd_conn *c, int err)
{
    ctx *x = isd_conn_data(c);
    char b[16];
    x->nclose++;
    snprintf(b, sizeof b, "%d", err);
    logf_(x, "C", b, strlen(b));
}

static void h_error(isd_server *s, int err, const char *what)
{
    ctx *x = isd_server_data(s);
    char b[300];
    x->nerror++;
    x->rej_err = err;
    snprintf(x->rej_reason, sizeof x->rej_reason, "%s", what);
    snprintf(b, sizeof b, "%d:%s", err, what);
    logf_(x, "E", b, strlen(b));
}

static void h_reject(isd_server *s, isd_conn *c, int err, const char *reason)
{
    ctx *x = isd_server_data(s);
    char b[300];
    x->nreject++;
    x->rej_err = err;
    x->treject = isd_now_ms();
    snprintf(x->rej_reason, sizeof x->rej_reason, "%s", reason);
    hostport(isd_conn_peer(c), x->rej_peer, sizeof x->rej_peer);
    snprintf(b, sizeof b, "%d:%s", err, reason);
    logf_(x, "R", b, strlen(b));
}

static void h_ready(isd_server *s)
{
    isd_conn *c;
    const char *m;
    size_t len;
    while ((c = isd_server_ready(s)) != NULL) {
        while (isd_conn_take(c, &m, &len))
            h_message(c, m, len);
        isd_conn_done(c);
    }
}

static const isd_handlers H = { h_accept, h_message, h_close, h_error, NULL,
                                NULL, h_reject };
static const isd_handlers H_PULL = { h_accept, NULL, h_close, h_error, h_ready,
                                     NULL, h_reject };
static const isd_handlers H_NOREJ = { h_accept, h_message, h_close, h_error,
                                      NULL, NULL, NULL };
static const isd_handlers H_NOREJ_PULL = { h_accept, NULL, h_close, h_error,
                                           h_ready, NULL, NULL };

static unsigned fd_port(int fd)
{
    isd_addr a;
    socklen_t len = sizeof a;
    getsockname(fd, &a.sa, &len);
    return isd_addr_port(&a);
}

/* A server with a PROXY listener (trusting the blocks in trust, a
 * NULL-ended list; NULL: everybody) and a plain one. */
static int setup_h(ctx *x, const char *const *trust, unsigned timeout_ms,
                   size_t max_conns, const isd_handlers *h)
{
    char err[256] = "";
    isd_server_cfg cfg;
    int fd, fd2;

    memset(x, 0, sizeof *x);
    memset(&cfg, 0, sizeof cfg);
    cfg.framing.kind = ISD_FRAME_LINE;
    cfg.linger_ms = 1000;
    cfg.max_conns = max_conns;
    x->l = isd_loop_new(BE, err, sizeof err);
    if (!x->l) { diag("loop: %s", err); return -1; }
    x->s = isd_server_new(x->l, h, &cfg, x);
    if (!x->s) return -1;
    x->opts.timeout_ms = timeout_ms;
    while (trust && trust[x->opts.ntrusted]) {
        if (isd_cidr_parse(trust[x->opts.ntrusted],
                           &x->trusted[x->opts.ntrusted]) < 0)
            return -1;
        x->opts.ntrusted++;
    }
    x->opts.trusted = x->trusted;
    fd = isd_listen_tcp("127.0.0.1", 0, AF_INET, 64, err, sizeof err);
    fd2 = isd_listen_tcp("127.0.0.1", 0, AF_INET, 64, err, sizeof err);
    if (fd < 0 || fd2 < 0) { diag("listen: %s", err); return -1; }
    x->pport = fd_port(fd);
    x->port = fd_port(fd2);
    if (isd_server_listen_fd_proxy(x->s, fd, &x->opts) < 0
        || isd_server_listen_fd(x->s, fd2) < 0)
        return -1;
    return 0;
}

static int setup(ctx *x, const char *const *trust, unsigned timeout_ms,
                 size_t max_conns)
{
    return setup_h(x, trust, timeout_ms, max_conns, PULL ? &H_PULL : &H);
}

static void teardown(ctx *x)
{
    if (x->s) isd_server_free(x->s);
    if (x->held) isd_conn_unref(x->held);
    if (x->l) isd_loop_free(x->l);
    x->s = NULL;
    x->l = NULL;
}

/* ---------------------------------------------------------- the client */

static int cli_send(int fd, const void *p, size_t n)
{
    return send(fd, p, n, MSG_NOSIGNAL) == (ssize_t)n ? 0 : -1;
}

static int cli_sends(int fd, const char *s) { return cli_send(fd, s, strlen(s)); }

/* Receive until want bytes, EOF (*eof 1) or an error (*eof -errno). */
static size_t cli_recv(ctx *x, int fd, char *buf, size_t cap, size_t want,
                       int ms, int *eof)
{
    size_t got = 0;
    uint64_t end = isd_now_ms() + (uint64_t)ms;
    *eof = 0;
    while (got < want && got < cap && isd_now_ms() < end) {
        ssize_t r = recv(fd, buf + got, cap - got, MSG_DONTWAIT);
        if (r > 0) { got += (size_t)r; continue; }
        if (r == 0) { *eof = 1; break; }
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            *eof = -errno;
            break;
        }
        isd_loop_run_once(x->l, 5, NULL);
    }
    return got;
}

/* the client's view of a refused connection: EOF or a reset, no bytes */
static int cli_refused(ctx *x, int fd)
{
    char buf[64];
    int eof;
    size_t n = cli_recv(x, fd, buf, sizeof buf, sizeof buf, 2000, &eof);
    return n == 0 && eof != 0;
}

/* ------------------------------------------------------------ headers */

static const char SIG[12] = { '\r', '\n', '\r', '\n', '\0', '\r', '\n', 'Q',
                              'U', 'I', 'T', '\n' };

/* v2 PROXY TCP4 192.0.2.1:56324 -> 198.51.100.7:443 with TLVs ALPN "h2"
 * and AUTHORITY "example.com"; returns its length */
static size_t v2_tcp4(unsigned char *b)
{
    size_t n = 0, len;
    memcpy(b, SIG, 12); n = 12;
    b[n++] = 0x21;              /* v2, PROXY */
    b[n++] = 0x11;              /* INET, STREAM */
    n += 2;                     /* length, below */
    b[n++] = 192; b[n++] = 0; b[n++] = 2; b[n++] = 1;
    b[n++] = 198; b[n++] = 51; b[n++] = 100; b[n++] = 7;
    b[n++] = 56324 >> 8; b[n++] = 56324 & 0xff;
    b[n++] = 443 >> 8; b[n++] = 443 & 0xff;
    b[n++] = ISD_PP2_ALPN; b[n++] = 0; b[n++] = 2;
    memcpy(b + n, "h2", 2); n += 2;
    b[n++] = ISD_PP2_AUTHORITY; b[n++] = 0; b[n++] = 11;
    memcpy(b + n, "example.com", 11); n += 11;
    len = n - 16;
    b[14] = (unsigned char)(len >> 8);
    b[15] = (unsigned char)len;
    return n;
}

/* v2 PROXY TCP6 [2001:db8::1]:1234 -> [::ffff:198.51.100.9]:80 */
static size_t v2_tcp6(unsigned char *b)
{
    size_t n = 0;
    memcpy(b, SIG, 12); n = 12;
    b[n++] = 0x21;
    b[n++] = 0x21;              /* INET6, STREAM */
    b[n++] = 0; b[n++] = 36;
    inet_pton(AF_INET6, "2001:db8::1", b + n); n += 16;
    inet_pton(AF_INET6, "::ffff:198.51.100.9", b + n); n += 16;
    b[n++] = 1234 >> 8; b[n++] = 1234 & 0xff;
    b[n++] = 0; b[n++] = 80;
    return n;
}

/* v2 LOCAL, no addresses */
static size_t v2_local(unsigned char *b)
{
    memcpy(b, SIG, 12);
    b[12] = 0x20; b[13] = 0x00; b[14] = 0; b[15] = 0;
    return 16;
}

/* ------------------------------------------------------------- tests */

static void test_cidr(void)
{
    isd_cidr c;
    isd_addr a;

    memset(&a, 0, sizeof a);
    ok(isd_cidr_parse("10.0.0.0/8", &c) == 0 && c.family == AF_INET
       && c.bits == 8 && c.addr[0] == 10, "10.0.0.0/8");
    ok(isd_cidr_parse("127.0.0.1", &c) == 0 && c.bits == 32, "127.0.0.1 is a /32");
    ok(isd_cidr_parse("::1", &c) == 0 && c.family == AF_INET6 && c.bits == 128,
       "::1 is a /128");
    ok(isd_cidr_parse("fd00::/8", &c) == 0 && c.bits == 8 && c.addr[0] == 0xfd,
       "fd00::/8");
    ok(isd_cidr_parse("10.1.2.3/8", &c) == 0 && c.addr[1] == 0 && c.addr[3] == 0,
       "host bits past the prefix are cleared");
    ok(isd_cidr_parse("192.168.77.1/20", &c) == 0 && c.addr[2] == 64
       && c.addr[3] == 0, "... within a byte too (/20)");
    ok(isd_cidr_parse("::ffff:10.0.0.0/104", &c) == 0 && c.family == AF_INET
       && c.bits == 8 && c.addr[0] == 10, "an IPv4-mapped block is the IPv4 one");
    ok(isd_cidr_parse("0.0.0.0/0", &c) == 0 && c.bits == 0, "0.0.0.0/0");
    {
        static const char *const bad[] = { "", "/8", "x", "10.0.0.0/", "10.0.0.0/33",
            "::1/129", "10.0.0.0/08", "10.0.0.0/8x", "10.0.0.0/-1", "10.0.0/8",
            "1.2.3.4 ", "fd00::/+8", "10.0.0.0/99999999999999999999", NULL };
        int i, nbad = 0;
        for (i = 0; bad[i]; i++) {
            errno = 0;
            if (isd_cidr_parse(bad[i], &c) == 0 || errno != EINVAL) {
                diag("accepted: \"%s\"", bad[i]);
                nbad++;
            }
        }
        is_int(nbad, 0, "%d malformed blocks refused with EINVAL", i);
    }

    isd_cidr_parse("10.0.0.0/8", &c);
    a.in4.sin_family = AF_INET;
    inet_pton(AF_INET, "10.200.3.4", &a.in4.sin_addr);
    ok(isd_cidr_match(&c, &a), "10.200.3.4 in 10.0.0.0/8");
    inet_pton(AF_INET, "11.0.0.1", &a.in4.sin_addr);
    ok(!isd_cidr_match(&c, &a), "11.0.0.1 not");
    memset(&a, 0, sizeof a);
    a.in6.sin6_family = AF_INET6;
    inet_pton(AF_INET6, "::ffff:10.9.9.9", &a.in6.sin6_addr);
    ok(isd_cidr_match(&c, &a), "::ffff:10.9.9.9 (a dual-stack socket's IPv4 peer) in 10.0.0.0/8");
    isd_cidr_parse("192.168.64.0/20", &c);
    inet_pton(AF_INET6, "::ffff:192.168.79.255", &a.in6.sin6_addr);
    ok(isd_cidr_match(&c, &a), "::ffff:192.168.79.255 in 192.168.64.0/20");
    inet_pton(AF_INET6, "::ffff:192.168.80.0", &a.in6.sin6_addr);
    ok(!isd_cidr_match(&c, &a), "::ffff:192.168.80.0 not");
    isd_cidr_parse("fd00::/8", &c);
    inet_pton(AF_INET6, "fd12:3456::1", &a.in6.sin6_addr);
    ok(isd_cidr_match(&c, &a), "fd12:3456::1 in fd00::/8");
    inet_pton(AF_INET6, "fe80::1", &a.in6.sin6_addr);
    ok(!isd_cidr_match(&c, &a), "fe80::1 not");
    isd_cidr_parse("::1", &c);
    inet_pton(AF_INET6, "::1", &a.in6.sin6_addr);
    ok(isd_cidr_match(&c, &a), "::1 in ::1");
    memset(&a, 0, sizeof a);
    a.in4.sin_family = AF_INET;
    inet_pton(AF_INET, "0.0.0.1", &a.in4.sin_addr);
    ok(!isd_cidr_match(&c, &a), "an IPv4 address is not in an IPv6 block");
    isd_cidr_parse("0.0.0.0/0", &c);
    ok(isd_cidr_match(&c, &a), "0.0.0.0/0 matches any IPv4");
}

static void test_v1(void)
{
    ctx x;
    int fd, eof;
    char buf[64];
    size_t n;
    isd_server_stats st;

    if (setup(&x, NULL, 0, 0) < 0) { fail(T("setup")); teardown(&x); return; }
    fd = cli_connect(x.pport);
    pump(&x, 50);
    is_int(x.naccept, 0, T("no on_accept before the header"));
    is_int((int)isd_server_nconns(x.s), 0, T("nconns 0 meanwhile"));
    ok(isd_server_next_conn(x.s, NULL) == NULL, T("nor listed"));
    cli_sends(fd, "PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\nhello\nworld\n");
    n = cli_recv(&x, fd, buf, sizeof buf, 12, 3000, &eof);
    is_mem(buf, n, "hello\nworld\n", 12,
           T("the lines in the header's write are delivered at once"));
    is_str(x.log, "A192.0.2.1:56324>198.51.100.7:443 Mhello Mworld",
           T("on_accept sees the header's addresses, then the lines"));
    ok(x.has_info && x.pversion == 1 && x.pcommand == ISD_PROXY_PROXY,
       T("isd_conn_proxy: v1 PROXY"));
    ok(strncmp(x.via, "127.0.0.1:", 10) == 0, T("via_peer is the socket's (%s)"), x.via);
    is_int((int)x.nconns_seen, 1, T("nconns 1 in on_accept"));
    cli_sends(fd, "more\n");
    n = cli_recv(&x, fd, buf, sizeof buf, 5, 3000, &eof);
    is_mem(buf, n, "more\n", 5, T("and later ones"));
    isd_server_stats_get(x.s, &st);
    ok(st.accepted == 1 && st.rejected == 0, T("stats: accepted 1, rejected 0"));
    close(fd);
    ok(pump_until(&x, &x.nclose, 1, 3000), T("EOF: on_close"));
    is_int(x.nreject, 0, T("no on_reject"));
    teardown(&x);
}

static void test_v2(void)
{
    ctx x;
    int fd, eof;
    char buf[64];
    unsigned char h[128];
    size_t n, hl;

    if (setup(&x, NULL, 0, 0) < 0) { fail(T("setup")); teardown(&x); return; }
    hl = v2_tcp4(h);
    memcpy(h + hl, "one\ntwo\n", 8);
    fd = cli_connect(x.pport);
    cli_send(fd, h, hl + 8);
    n = cli_recv(&x, fd, buf, sizeof buf, 8, 3000, &eof);
    is_mem(buf, n, "one\ntwo\n", 8, T("v2: the lines after the header are delivered"));
    is_str(x.log, "A192.0.2.1:56324>198.51.100.7:443 Mone Mtwo",
           T("v2: on_accept sees the header's addresses"));
    ok(x.has_info && x.pversion == 2 && x.pcommand == ISD_PROXY_PROXY,
       T("isd_conn_proxy: v2 PROXY"));
    is_int(x.ntlv, 2, T("two TLVs, walked on the kept copy"));
    is_str(x.authority, "example.com", T("AUTHORITY"));
    is_str(x.alpn, "h2", T("ALPN (isd_proxy_tlv_get)"));
    close(fd);
    pump_until(&x, &x.nclose, 1, 3000);

    /* IPv6, with an IPv4-mapped destination */
    x.loglen = 0;
    x.log[0] = '\0';
    hl = v2_tcp6(h);
    memcpy(h + hl, "six\n", 4);
    fd = cli_connect(x.pport);
    cli_send(fd, h, hl + 4);
    n = cli_recv(&x, fd, buf, sizeof buf, 4, 3000, &eof);
    is_mem(buf, n, "six\n", 4, T("v2 TCP6: delivered"));
    is_str(x.log, "A2001:db8::1:1234>198.51.100.9:80 Msix",
           T("v2 TCP6: the peer is 2001:db8::1, ::ffff:198.51.100.9 is IPv4"));
    close(fd);
    pump_until(&x, &x.nclose, 2, 3000);
    teardown(&x);
}

static void test_bytewise(void)
{
    ctx x;
    int fd, eof, early = 0;
    char buf[64];
    unsigned char h[128];
    size_t n, hl, i;
    static const char v1[] = "PROXY TCP4 192.0.2.5 198.51.100.7 4000 25\r\n";

    if (setup(&x, NULL, 0, 0) < 0) { fail(T("setup")); teardown(&x); return; }
    hl = v2_tcp4(h);
    fd = cli_connect(x.pport);
    for (i = 0; i < hl; i++) {
        cli_send(fd, h + i, 1);
        pump(&x, 2);
        if ((x.naccept && i + 1 < hl) || x.nreject) early++;
    }
    pump(&x, 20);
    is_int(early, 0, T("v2 a byte per write: nothing happens before the last byte"));
    is_int(x.naccept, 1, T("on_accept after it"));
    is_str(x.peer, "192.0.2.1:56324", T("with the header's source"));
    cli_sends(fd, "after\n");
    n = cli_recv(&x, fd, buf, sizeof buf, 6, 3000, &eof);
    is_mem(buf, n, "after\n", 6, T("then the stream"));
    close(fd);

    fd = cli_connect(x.pport);
    early = 0;
    for (i = 0; i + 1 < sizeof v1; i++) {
        cli_send(fd, v1 + i, 1);
        pump(&x, 2);
        if ((x.naccept > 1 && i + 2 < sizeof v1) || x.nreject) early++;
    }
    cli_sends(fd, "x\n");
    n = cli_recv(&x, fd, buf, sizeof buf, 2, 3000, &eof);
    is_int(early, 0, T("v1 a byte per write: nothing before the CRLF"));
    is_str(x.peer, "192.0.2.5:4000", T("v1 bytewise: the header's source"));
    is_mem(buf, n, "x\n", 2, T("then the stream"));
    is_int(x.nreject, 0, T("no on_reject"));
    close(fd);
    teardown(&x);
}

static void test_untrusted(void)
{
    static const char *const trust[] = { "10.0.0.0/8", "::1", NULL };
    static const char *const trust_lo[] = { "fd00::/8", "127.0.0.0/8", NULL };
    ctx x;
    int fd;
    isd_server_stats st;

    if (setup(&x, trust, 0, 0) < 0) { fail(T("setup")); teardown(&x); return; }
    fd = cli_connect(x.pport);
    ok(pump_until(&x, &x.nreject, 1, 3000),
       T("an untrusted source is refused without sending anything"));
    is_int(x.rej_err, EACCES, T("EACCES"));
    is_str(x.rej_reason, "PROXY: source 127.0.0.1 is not a trusted proxy",
           T("the reason names the source"));
    ok(strncmp(x.rej_peer, "127.0.0.1:", 10) == 0,
       T("on_reject can read c's peer (%s)"), x.rej_peer);
    ok(cli_refused(&x, fd), T("the client sees the connection closed"));
    ok(x.naccept == 0 && x.nclose == 0, T("no on_accept, no on_close"));
    isd_server_stats_get(x.s, &st);
    ok(st.accepted == 0 && st.rejected == 1 && st.closed == 0,
       T("stats: accepted 0, rejected 1, closed 0"));
    is_int((int)isd_server_nconns(x.s), 0, T("nconns 0"));
    close(fd);
    teardown(&x);

    if (setup(&x, trust_lo, 0, 0) < 0) { fail(T("setup")); teardown(&x); return; }
    fd = cli_connect(x.pport);
    cli_sends(fd, "PROXY TCP4 192.0.2.1 198.51.100.7 1 2\r\n");
    ok(pump_until(&x, &x.naccept, 1, 3000) && x.nreject == 0,
       T("127.0.0.0/8 trusted: accepted"));
    close(fd);
    teardown(&x);
}

/* bytes that cannot start a header: one on_reject with the parser's
 * reason, nothing else */
static void bad_one(const char *what, const void *p, size_t n, int eof_after)
{
    ctx x;
    isd_proxy ref;
    int fd;

    if (setup(&x, NULL, 0, 0) < 0) { fail(T("setup")); teardown(&x); return; }
    fd = cli_connect(x.pport);
    cli_send(fd, p, n);
    if (eof_after) shutdown(fd, SHUT_WR);
    ok(pump_until(&x, &x.nreject, 1, 3000), T("%s: on_reject"), what);
    pump(&x, 30);
    is_int(isd_proxy_parse(p, n, &ref), -1, T("%s: (the parser refuses it)"), what);
    is_int(x.rej_err, EPROTO, T("%s: EPROTO"), what);
    is_str(x.rej_reason, ref.err ? ref.err : "?", T("%s: the parser's reason"), what);
    ok(x.nreject == 1 && x.naccept == 0 && x.nclose == 0 && x.nerror == 0,
       T("%s: once; no on_accept, on_close or on_error"), what);
    ok(cli_refused(&x, fd), T("%s: closed"), what);
    close(fd);
    teardown(&x);
}

static void test_bad(void)
{
    static const unsigned char badv2[] = { '\r', '\n', '\r', '\n', '\0', '\r',
        '\n', 'Q', 'U', 'I', 'T', '\n', 0x31, 0x11, 0, 12 };
    bad_one("HTTP", "GET / HTTP/1.0\r\n\r\n", 18, 0);
    bad_one("plain text", "hello\n", 6, 0);
    bad_one("TLS ClientHello", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11, 0);
    bad_one("v1 bad port", "PROXY TCP4 1.2.3.4 5.6.7.8 99999 80\r\n", 37, 0);
    bad_one("v1 bad address", "PROXY TCP4 1.2.3.256 5.6.7.8 1 80\r\n", 35, 0);
    bad_one("v2 version 3", badv2, sizeof badv2, 0);
    bad_one("text then EOF", "nope", 4, 1);
}

static void test_eof(void)
{
    ctx x;
    int fd, eof;
    char buf[64];
    size_t n;

    if (setup(&x, NULL, 0, 0) < 0) { fail(T("setup")); teardown(&x); return; }
    fd = cli_connect(x.pport);
    cli_sends(fd, "PROXY TCP4 1.2");
    pump(&x, 20);
    shutdown(fd, SHUT_WR);
    ok(pump_until(&x, &x.nreject, 1, 3000), T("EOF mid-header: on_reject"));
    is_int(x.rej_err, ECONNABORTED, T("ECONNABORTED"));
    is_str(x.rej_reason, "PROXY header not complete at EOF", T("reason"));
    ok(x.naccept == 0 && x.nclose == 0, T("no on_accept, no on_close"));
    close(fd);

    /* EOF right after a complete header and a last unterminated line */
    x.loglen = 0;
    x.log[0] = '\0';
    fd = cli_connect(x.pport);
    cli_sends(fd, "PROXY TCP4 192.0.2.1 198.51.100.7 1 2\r\nlast");
    shutdown(fd, SHUT_WR);
    ok(pump_until(&x, &x.nclose, 1, 3000), T("header, a line, EOF in one go"));
    is_str(x.log, "A192.0.2.1:1>198.51.100.7:2 Mlast C0",
           T("on_accept, the message, on_close(0)"));
    n = cli_recv(&x, fd, buf, sizeof buf, 4, 3000, &eof);
    is_mem(buf, n, "last", 4, T("answered"));
    close(fd);

    /* a reset mid-header */
    fd = cli_connect(x.pport);
    cli_sends(fd, "PROXY ");
    pump(&x, 20);
    {
        struct linger lg = { 1, 0 };
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        close(fd);
    }
    ok(pump_until(&x, &x.nreject, 2, 3000), T("a reset mid-header: on_reject"));
    is_int(x.rej_err, ECONNRESET, T("ECONNRESET"));
    is_int(x.nclose, 1, T("no on_close for it"));
    teardown(&x);
}

static void test_timeout(void)
{
    ctx x;
    int fd, fd2;
    uint64_t t0;
    isd_server_stats st;

    if (setup(&x, NULL, 200, 0) < 0) { fail(T("setup")); teardown(&x); return; }
    t0 = isd_now_ms();
    fd = cli_connect(x.pport);
    fd2 = cli_connect(x.pport);
    cli_sends(fd, "PROXY TCP4 ");
    ok(pump_until(&x, &x.nreject, 2, 3000), T("timeout_ms 200: both refused"));
    ok(x.treject - t0 >= 190, T("after 200 ms (%d)"), (int)(x.treject - t0));
    is_int(x.rej_err, ETIMEDOUT, T("ETIMEDOUT"));
    is_str(x.rej_reason, "PROXY header not complete within 200 ms",
           T("the reason names what timed out"));
    ok(x.naccept == 0 && x.nclose == 0, T("no on_accept, no on_close"));
    ok(cli_refused(&x, fd) && cli_refused(&x, fd2), T("closed"));
    isd_server_stats_get(x.s, &st);
    ok(st.rejected == 2 && st.accepted == 0, T("stats: rejected 2"));
    close(fd);
    close(fd2);

    /* a header in time: the deadline is gone, the idle timer is back */
    fd = cli_connect(x.pport);
    cli_sends(fd, "PROXY TCP4 192.0.2.1 198.51.100.7 1 2\r\n");
    ok(pump_until(&x, &x.naccept, 1, 3000), T("a header in time: accepted"));
    pump(&x, 400);
    ok(x.nreject == 2 && x.nclose == 0, T("and not timed out after"));
    close(fd);
    teardown(&x);
}

static void test_local(void)
{
    ctx x;
    int fd, eof;
    char buf[64], want[80];
    unsigned char h[64];
    size_t n, hl;

    if (setup(&x, NULL, 0, 0) < 0) { fail(T("setup")); teardown(&x); return; }
    hl = v2_local(h);
    memcpy(h + hl, "hc\n", 3);
    fd = cli_connect(x.pport);
    cli_send(fd, h, hl + 3);
    n = cli_recv(&x, fd, buf, sizeof buf, 3, 3000, &eof);
    is_mem(buf, n, "hc\n", 3, T("v2 LOCAL: the stream follows"));
    {
        struct sockaddr_in sin;
        socklen_t len = sizeof sin;
        getsockname(fd, (struct sockaddr *)&sin, &len);
        snprintf(want, sizeof want, "127.0.0.1:%u", ntohs(sin.sin_port));
    }
    is_str(x.peer, want, T("LOCAL keeps the real peer"));
    snprintf(want, sizeof want, "127.0.0.1:%u", x.pport);
    is_str(x.local, want, T("and the real local address"));
    ok(x.has_info && x.pversion == 2 && x.pcommand == ISD_PROXY_LOCAL,
       T("isd_conn_proxy: v2 LOCAL"));
    close(fd);

    fd = cli_connect(x.pport);
    cli_sends(fd, "PROXY UNKNOWN whatever\r\nu\n");
    n = cli_recv(&x, fd, buf, sizeof buf, 2, 3000, &eof);
    is_mem(buf, n, "u\n", 2, T("v1 UNKNOWN: the stream follows"));
    ok(strncmp(x.peer, "127.0.0.1:", 10) == 0 && x.pversion == 1
       && x.pcommand == ISD_PROXY_LOCAL, T("v1 UNKNOWN keeps the real peer"));
    close(fd);
    teardown(&x);
}

/* Probes go without a word: a connection that ends having sent nothing (a
 * TCP port check), and a LOCAL header followed by nothing (a PROXY health
 * check); a LOCAL connection is the embedder's at its first stream byte,
 * or when timeout_ms is up. */
static void test_probe(void)
{
    ctx x;
    int fd, eof;
    char buf[64];
    unsigned char h[64];
    size_t n, hl;
    uint64_t t0;
    isd_server_stats st;
    struct linger lg = { 1, 0 };

    if (setup(&x, NULL, 300, 0) < 0) { fail(T("setup")); teardown(&x); return; }
    hl = v2_local(h);
    fd = cli_connect(x.pport);          /* connect, close */
    pump(&x, 20);
    close(fd);
    fd = cli_connect(x.pport);          /* connect, reset */
    pump(&x, 20);
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
    fd = cli_connect(x.pport);          /* LOCAL, close */
    cli_send(fd, h, hl);
    pump(&x, 20);
    close(fd);
    fd = cli_connect(x.pport);          /* LOCAL and EOF at once */
    cli_send(fd, h, hl);
    shutdown(fd, SHUT_WR);
    pump(&x, 20);
    close(fd);
    fd = cli_connect(x.pport);          /* LOCAL, reset */
    cli_send(fd, h, hl);
    pump(&x, 20);
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
    fd = cli_connect(x.pport);          /* v1 UNKNOWN, close */
    cli_sends(fd, "PROXY UNKNOWN\r\n");
    pump(&x, 20);
    close(fd);
    fd = cli_connect(x.pport);          /* v1 of its own addresses, close */
    {
        struct sockaddr_in sin;
        socklen_t sl = sizeof sin;
        getsockname(fd, (struct sockaddr *)&sin, &sl);
        snprintf(buf, sizeof buf, "PROXY TCP4 127.0.0.1 127.0.0.1 %u %u\r\n",
                 ntohs(sin.sin_port), x.pport);
    }
    cli_sends(fd, buf);
    pump(&x, 20);
    close(fd);
    pump(&x, 100);
    ok(x.naccept == 0 && x.nreject == 0 && x.nclose == 0 && x.nerror == 0,
       T("probes: no on_accept, on_reject, on_close or on_error"));
    isd_server_stats_get(x.s, &st);
    ok(st.rejected == 0 && st.accepted == 0 && isd_server_nconns(x.s) == 0,
       T("probes: not counted"));

    /* LOCAL, then the stream a while later: the embedder's at its byte */
    fd = cli_connect(x.pport);
    cli_send(fd, h, hl);
    pump(&x, 100);
    is_int(x.naccept, 0, T("LOCAL alone: not accepted yet"));
    cli_sends(fd, "late\n");
    ok(pump_until(&x, &x.naccept, 1, 3000), T("LOCAL, then a byte: on_accept"));
    n = cli_recv(&x, fd, buf, sizeof buf, 5, 3000, &eof);
    is_mem(buf, n, "late\n", 5, T("and the stream is delivered"));
    ok(x.has_info && x.pcommand == ISD_PROXY_LOCAL, T("its header kept"));
    close(fd);

    /* LOCAL and silence: the embedder's when timeout_ms is up (a server
     * that speaks first) */
    t0 = isd_now_ms();
    fd = cli_connect(x.pport);
    cli_send(fd, h, hl);
    ok(pump_until(&x, &x.naccept, 2, 3000), T("LOCAL and silence: on_accept"));
    ok(isd_now_ms() - t0 >= 290, T("after timeout_ms (%d ms)"),
       (int)(isd_now_ms() - t0));
    is_int(x.nreject, 0, T("not refused"));
    cli_sends(fd, "hi\n");
    n = cli_recv(&x, fd, buf, sizeof buf, 3, 3000, &eof);
    is_mem(buf, n, "hi\n", 3, T("then served"));
    close(fd);

    /* a client's v1 header and EOF: the embedder's, at once */
    fd = cli_connect(x.pport);
    cli_sends(fd, "PROXY TCP4 192.0.2.1 127.0.0.1 5 6\r\n");
    ok(pump_until(&x, &x.naccept, 3, 3000), T("a client's header alone: on_accept"));
    close(fd);
    ok(pump_until(&x, &x.nclose, 3, 3000), T("and on_close at its EOF"));

    /* half a header, then EOF: refused, as before */
    fd = cli_connect(x.pport);
    cli_send(fd, h, 10);
    shutdown(fd, SHUT_WR);
    ok(pump_until(&x, &x.nreject, 1, 3000), T("half a header, EOF: refused"));
    close(fd);
    teardown(&x);
}

static void test_plain(void)
{
    ctx x;
    int fd, fdp, eof;
    char buf[128];
    size_t n;
    static const char hdr[] = "PROXY TCP4 192.0.2.1 198.51.100.7 1 2\r\n";

    if (setup(&x, NULL, 100, 0) < 0) { fail(T("setup")); teardown(&x); return; }
    fdp = cli_connect(x.pport);         /* a pending one meanwhile */
    fd = cli_connect(x.port);
    cli_sends(fd, "plain\n");
    n = cli_recv(&x, fd, buf, sizeof buf, 6, 3000, &eof);
    is_mem(buf, n, "plain\n", 6, T("the plain listener of the same server serves"));
    ok(!x.has_info && strncmp(x.peer, "127.0.0.1:", 10) == 0,
       T("its connection: no PROXY info, the real peer"));
    cli_sends(fd, hdr);
    n = cli_recv(&x, fd, buf, sizeof buf, sizeof hdr - 1, 3000, &eof);
    is_mem(buf, n, hdr, sizeof hdr - 1, T("a PROXY line there is just a message"));
    pump(&x, 200);
    ok(x.nreject == 1, T("the pending one timed out meanwhile"));
    cli_sends(fd, "still\n");
    n = cli_recv(&x, fd, buf, sizeof buf, 6, 3000, &eof);
    is_mem(buf, n, "still\n", 6, T("the plain one is unaffected"));
    is_int(x.naccept, 1, T("one on_accept in all"));
    close(fd);
    close(fdp);
    teardown(&x);
}

static void test_max_conns(void)
{
    ctx x;
    int fd[3], eof, i;
    char buf[64];
    size_t n;
    isd_server_stats st;

    if (setup(&x, NULL, 0, 2) < 0) { fail(T("setup")); teardown(&x); return; }
    fd[0] = cli_connect(x.pport);
    fd[1] = cli_connect(x.pport);
    pump(&x, 50);
    fd[2] = cli_connect(x.port);        /* plain: would be served at once */
    cli_sends(fd[2], "third\n");
    pump(&x, 100);
    is_int(x.naccept, 0, T("max_conns 2, two pending: the third waits"));
    is_int((int)isd_server_nconns(x.s), 0, T("nconns 0 (pending ones are not the embedder's)"));
    isd_server_stats_get(x.s, &st);
    ok(st.accepted == 0, T("stats: accepted 0"));
    cli_sends(fd[0], "PROXY TCP4 192.0.2.1 198.51.100.7 1 2\r\n");
    ok(pump_until(&x, &x.naccept, 1, 3000), T("a header: accepted"));
    pump(&x, 100);
    is_int(x.naccept, 1, T("still two open: the third waits"));
    close(fd[1]);
    ok(pump_until(&x, &x.naccept, 2, 3000),
       T("a pending one leaves: the third is accepted"));
    is_int(x.nreject, 0, T("(it sent nothing: gone without on_reject)"));
    n = cli_recv(&x, fd[2], buf, sizeof buf, 6, 3000, &eof);
    is_mem(buf, n, "third\n", 6, T("and served"));
    isd_server_stats_get(x.s, &st);
    ok(st.accepted == 2 && st.rejected == 0 && st.closed == 0,
       T("stats: accepted 2, rejected 0, closed 0"));
    for (i = 0; i < 3; i++) if (i != 1) close(fd[i]);
    ok(pump_until(&x, &x.nclose, 2, 3000), T("both close"));
    isd_server_stats_get(x.s, &st);
    ok(st.closed == 2, T("stats: closed 2"));
    teardown(&x);
}

/* on_reject NULL: on_error has the reason */
static void test_no_on_reject(void)
{
    ctx x;
    int fd;

    if (setup_h(&x, NULL, 0, 0, PULL ? &H_NOREJ_PULL : &H_NOREJ) < 0) {
        fail(T("setup"));
        teardown(&x);
        return;
    }
    fd = cli_connect(x.pport);
    cli_sends(fd, "GET /\r\n");
    ok(pump_until(&x, &x.nerror, 1, 3000), T("without on_reject: on_error"));
    is_int(x.rej_err, EPROTO, T("EPROTO"));
    ok(strncmp(x.rej_reason, "PROXY", 5) == 0, T("the reason (%s)"), x.rej_reason);
    ok(x.naccept == 0 && x.nclose == 0, T("no on_accept, no on_close"));
    close(fd);
    teardown(&x);
}

/* the info goes with the connection: NULL once closed; pending
 * connections at isd_server_free and isd_server_close_conns go quietly */
static void test_lifetime(void)
{
    ctx x;
    int fd, fd2, fd3;

    hold_first = 1;
    if (setup(&x, NULL, 0, 0) < 0) { fail(T("setup")); teardown(&x); hold_first = 0; return; }
    fd = cli_connect(x.pport);
    cli_sends(fd, "PROXY TCP4 192.0.2.1 198.51.100.7 1 2\r\n");
    ok(pump_until(&x, &x.naccept, 1, 3000) && x.held, T("accepted, held"));
    ok(isd_conn_proxy(x.held) != NULL, T("isd_conn_proxy while open"));
    isd_conn_close(x.held);
    pump(&x, 20);
    ok(isd_conn_proxy(x.held) == NULL, T("NULL once closed"));
    {
        char h[64];
        is_str(isd_addr_host(isd_conn_peer(x.held), h, sizeof h), "192.0.2.1",
               T("the header's peer stays"));
    }
    fd2 = cli_connect(x.pport);
    fd3 = cli_connect(x.pport);
    cli_sends(fd3, "PROXY TCP4 1.2");
    pump(&x, 50);
    isd_server_close_conns(x.s);
    pump(&x, 20);
    ok(x.nreject == 0 && x.nclose == 0, T("close_conns drops pending ones quietly"));
    ok(cli_refused(&x, fd2) && cli_refused(&x, fd3), T("closed"));
    close(fd2);
    close(fd3);
    fd2 = cli_connect(x.pport);
    pump(&x, 50);
    teardown(&x);       /* with one pending: no leak (ASan, valgrind) */
    hold_first = 0;
    close(fd);
    close(fd2);
    pass(T("freed with a pending connection"));
}

/* the generic hook: accepted() only; a preamble refusing without a
 * reason; release once per connection */
static int g_accepted, g_released, g_refuse_all;
static int g_acc(isd_conn *c, void *arg)
{
    (void)c;
    g_accepted++;
    if (arg != &g_accepted) return -1;
    return g_refuse_all ? -1 : 0;
}
static ssize_t g_pre(isd_conn *c, const char *in, size_t len, void *arg)
{
    (void)c; (void)arg;
    if (len >= 3 && memcmp(in, "OK\n", 3) == 0) return 3;
    if (memchr(in, '\n', len)) return -1;
    return 0;
}
static void g_rel(isd_conn *c, void *arg)
{
    (void)arg;
    if (isd_conn_hook_data(c) == &g_released) g_released += 100;
    g_released++;
}

static void test_generic(void)
{
    ctx x;
    int fd, fd2, eof;
    char buf[32], err[128];
    size_t n;
    isd_conn_hook h;

    memset(&h, 0, sizeof h);
    h.accepted = g_acc;
    h.release = g_rel;
    g_accepted = g_released = g_refuse_all = 0;
    if (setup(&x, NULL, 0, 0) < 0) { fail(T("setup")); teardown(&x); return; }
    fd = isd_listen_tcp("127.0.0.1", 0, AF_INET, 8, err, sizeof err);
    ok(isd_server_listen_fd_hook(x.s, fd, &h, &g_accepted) == 0,
       T("isd_server_listen_fd_hook: accepted() and release() only"));
    n = fd_port(fd);
    fd = cli_connect((unsigned)n);
    ok(pump_until(&x, &x.naccept, 1, 3000) && g_accepted == 1,
       T("accepted(), then on_accept at once"));
    cli_sends(fd, "hi\n");
    n = cli_recv(&x, fd, buf, sizeof buf, 3, 3000, &eof);
    is_mem(buf, n, "hi\n", 3, T("served"));
    close(fd);
    ok(pump_until(&x, &x.nclose, 1, 3000), T("closed"));
    pump(&x, 20);
    is_int(g_released, 1, T("release() once"));
    teardown(&x);

    /* a preamble of its own, refusing with no reason: the core's */
    h.preamble = g_pre;
    h.what = "greeting";
    h.timeout_ms = 0;
    g_accepted = g_released = 0;
    if (setup(&x, NULL, 0, 0) < 0) { fail(T("setup")); teardown(&x); return; }
    fd = isd_listen_tcp("127.0.0.1", 0, AF_INET, 8, err, sizeof err);
    isd_server_listen_fd_hook(x.s, fd, &h, &g_accepted);
    n = fd_port(fd);
    fd = cli_connect((unsigned)n);
    fd2 = cli_connect((unsigned)n);
    cli_sends(fd, "OK\nline\n");
    cli_sends(fd2, "no\n");
    ok(pump_until(&x, &x.nreject, 1, 3000) && pump_until(&x, &x.nmsg, 1, 3000),
       T("one refused, one served"));
    is_int(x.rej_err, EPROTO, T("-1 without isd_conn_reject: EPROTO"));
    is_str(x.rej_reason, "greeting: refused", T("the core's reason names the hook"));
    n = cli_recv(&x, fd, buf, sizeof buf, 5, 3000, &eof);
    is_mem(buf, n, "line\n", 5, T("the preamble's bytes consumed, the rest delivered"));
    close(fd);
    close(fd2);
    pump_until(&x, &x.nclose, 1, 3000);
    pump(&x, 20);
    is_int(g_released, 2, T("release() for the refused one too"));
    teardown(&x);

    /* accepted() -1 without a reason */
    g_refuse_all = 1;
    if (setup(&x, NULL, 0, 0) < 0) { fail(T("setup")); teardown(&x); return; }
    fd = isd_listen_tcp("127.0.0.1", 0, AF_INET, 8, err, sizeof err);
    isd_server_listen_fd_hook(x.s, fd, &h, &g_accepted);
    n = fd_port(fd);
    fd = cli_connect((unsigned)n);
    ok(pump_until(&x, &x.nreject, 1, 3000), T("accepted() -1: refused"));
    ok(x.rej_err == EACCES && strcmp(x.rej_reason, "greeting: refused") == 0,
       T("EACCES, the core's reason"));
    close(fd);
    teardown(&x);
    g_refuse_all = 0;
}

#define RUN(fn) do { \
        char name_[64]; \
        snprintf(name_, sizeof name_, "[%s%s] %s", BE ? BE : "-", \
                 PULL ? " pull" : "", #fn); \
        tap_subtest(fn, name_); \
    } while (0)

int main(void)
{
    char list[256], *save = NULL, *name;

    alarm(120);
    signal(SIGPIPE, SIG_DFL);
    RUN(test_cidr);
    snprintf(list, sizeof list, "%s", isd_backends());
    for (name = strtok_r(list, " ", &save); name; name = strtok_r(NULL, " ", &save))
    for (PULL = 0; PULL < 2; PULL++) {
        BE = name;
        RUN(test_v1);
        RUN(test_v2);
        RUN(test_bytewise);
        RUN(test_untrusted);
        RUN(test_bad);
        RUN(test_eof);
        RUN(test_timeout);
        RUN(test_local);
        RUN(test_probe);
        RUN(test_plain);
        RUN(test_max_conns);
        RUN(test_no_on_reject);
        RUN(test_lifetime);
        RUN(test_generic);
    }
    return done_testing();
}
