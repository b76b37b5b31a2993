/* test_udp.c - unit tests for the UDP socket of the core (c_src/udp.c). */
// Build and run by hand from the distribution root:
//   cc -std=c99 -D_GNU_SOURCE -Wall -Wextra -Ic_src t/c/test_udp.c c_src/*.c -o /tmp/tu -lpthread && /tmp/tu
//
// Real sockets on 127.0.0.1 (and [::] where the host has IPv6): an echo
// handler, a client socket; every wait runs the loop with a deadline.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include "isd.h"
#include "tap.h"
#include "net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const char *BE;

typedef struct ctx {
    isd_loop *l;
    isd_udp  *u;
    int       echo;            /* send each datagram back */
    int       ndgram, nerr, lasterr, close_in_cb;
    size_t    lastlen;
    isd_addr  lastfrom, errfrom;
    int       send_errno;
} ctx;

#define T(fmt) "[%s] " fmt, BE

static void h_dgram(isd_udp *u, const isd_addr *from, const char *p, size_t n)
{
    ctx *x = isd_udp_data(u);

    x->ndgram++;
    x->lastlen = n;
    x->lastfrom = *from;
    if (x->echo && isd_udp_send(u, from, p, n) < 0)
        x->send_errno = errno;
    if (x->close_in_cb)
        isd_udp_close(u);
}

static void h_err(isd_udp *u, int err, const isd_addr *from)
{
    ctx *x = isd_udp_data(u);

    x->nerr++;
    x->lasterr = err;
    if (from)
        x->errfrom = *from;
}

static const isd_udp_handlers H = { h_dgram, h_err };

/* A client socket of family fam, connected to port on addr. */
static int client(int fam, const char *addr, unsigned port)
{
    isd_addr a;
    int fd = socket(fam, SOCK_DGRAM, 0);

    memset(&a, 0, sizeof a);
    if (fam == AF_INET) {
        a.in4.sin_family = AF_INET;
        a.in4.sin_port = htons((unsigned short)port);
        inet_pton(AF_INET, addr, &a.in4.sin_addr);
    } else {
        a.in6.sin6_family = AF_INET6;
        a.in6.sin6_port = htons((unsigned short)port);
        inet_pton(AF_INET6, addr, &a.in6.sin6_addr);
    }
    if (fd >= 0 && connect(fd, &a.sa, isd_addr_len(&a)) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* One reply on fd within ms, running the loop: its length, or -1. */
static ssize_t reply(ctx *x, int fd, char *buf, size_t cap, int ms)
{
    uint64_t end = isd_now_ms() + (uint64_t)ms;
    ssize_t r;

    do {
        r = recv(fd, buf, cap, MSG_DONTWAIT);
        if (r >= 0)
            return r;
        isd_loop_run_once(x->l, 5, NULL);
    } while (isd_now_ms() < end);
    return -1;
}

static unsigned local_port(int fd)
{
    isd_addr a;
    socklen_t len = sizeof a;

    getsockname(fd, &a.sa, &len);
    return isd_addr_port(&a);
}

static void test_echo(void)
{
    ctx x;
    char err[256], buf[2048], host[64];
    isd_addr a;
    isd_listen_opts o = { -1, -1, 0, -1, 0, 0 };
    isd_udp_stats st;
    int fd, c, i, got = 0;
    unsigned port;

    memset(&x, 0, sizeof x);
    x.echo = 1;
    x.l = isd_loop_new(BE, err, sizeof err);
    memset(&a, 0, sizeof a);
    a.in4.sin_family = AF_INET;
    a.in4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fd = isd_listen_udp(&a, &o, err, sizeof err);
    ok(fd >= 0, T("isd_listen_udp 127.0.0.1:0 (%s)"), fd < 0 ? err : "ok");
    if (fd < 0) return;
    port = local_port(fd);
    x.u = isd_udp_new(x.l, fd, &H, 100, 1000, &x);
    ok(x.u != NULL, T("isd_udp_new"));
    c = client(AF_INET, "127.0.0.1", port);
    ok(c >= 0, T("client"));
    send(c, "hello", 5, 0);
    is_int(reply(&x, c, buf, sizeof buf, 2000), 5, T("an echo of 5 bytes"));
    ok(memcmp(buf, "hello", 5) == 0, T("the same bytes"));
    is_str(isd_addr_host(&x.lastfrom, host, sizeof host), "127.0.0.1", T("from 127.0.0.1"));
    is_int(isd_addr_port(&x.lastfrom), local_port(c), T("from the client's port"));
    send(c, "", 0, 0);
    is_int(reply(&x, c, buf, sizeof buf, 2000), 0, T("an empty datagram, and its empty echo"));
    /* bursts of 50 (more than fit one read of a small batch), each answered
     * before the next (the client's receive buffer holds ~250 small
     * datagrams: more at once would be the client's loss, not ours) */
    for (i = 0; i < 300; i++) {
        char m[16];
        int n = snprintf(m, sizeof m, "m%d", i);
        send(c, m, (size_t)n, 0);
        if (i % 50 == 49) {
            int k;
            for (k = 0; k < 50; k++) {
                if (reply(&x, c, buf, sizeof buf, 2000) <= 0)
                    break;
                got++;
            }
        }
    }
    is_int(got, 300, T("300 datagrams in a burst, 300 echoes"));
    /* over max: dropped and reported */
    memset(buf, 'x', 101);
    x.nerr = 0;
    send(c, buf, 101, 0);
    send(c, buf, 100, 0);
    is_int(reply(&x, c, buf, sizeof buf, 2000), 100, T("100 bytes (max) echoed"));
    is_int(x.nerr, 1, T("101 bytes: one error"));
    is_int(x.lasterr, EMSGSIZE, T("EMSGSIZE"));
    is_int(isd_addr_port(&x.errfrom), local_port(c), T("naming the sender"));
    isd_udp_stats_get(x.u, &st);
    is_int((long)st.datagrams_in, 303, T("stats: datagrams in"));
    is_int((long)st.dropped_in, 1, T("stats: dropped in"));
    is_int((long)st.datagrams_out, 303, T("stats: datagrams out"));
    /* max_output: a reply that does not fit the queue */
    {
        char big[1001];
        memset(big, 'b', sizeof big);
        is_int(isd_udp_send(x.u, &x.lastfrom, big, sizeof big), -1, T("a reply over max_output"));
        is_int(errno, ENOBUFS, T("ENOBUFS"));
        is_int(isd_udp_send(x.u, &x.lastfrom, big, 70000), -1, T("a reply over 65507 bytes"));
        is_int(errno, EMSGSIZE, T("EMSGSIZE"));
    }
    /* outside a batch (a timer, tick): sent at once */
    ok(isd_udp_send(x.u, &x.lastfrom, "late", 4) == 0, T("a reply from outside the loop"));
    is_int(reply(&x, c, buf, sizeof buf, 2000), 4, T("arrives"));
    /* closed in its own callback: the batch stops, no crash */
    x.close_in_cb = 1;
    send(c, "a", 1, 0);
    send(c, "b", 1, 0);
    x.ndgram = 0;
    pump(&x, 50);
    is_int(x.ndgram, 1, T("closed in the callback: no more datagrams"));
    is_int(isd_udp_fd(x.u), -1, T("fd -1 once closed"));
    ok(isd_udp_send(x.u, &x.lastfrom, "x", 1) < 0 && errno == ENOTCONN, T("send after close: ENOTCONN"));
    isd_udp_unref(x.u);
    close(c);
    isd_loop_free(x.l);
}

/* An IPv4 sender of a dual-stack socket: plain IPv4, and its reply goes
 * back through the IPv6 socket. */
static void test_dual(void)
{
    ctx x;
    char err[256], buf[64], host[64];
    isd_listen_opts o = { -1, -1, 0, -1, 0, 0 };
    int fds[2], n, c;
    unsigned port;

    memset(&x, 0, sizeof x);
    x.echo = 1;
    x.l = isd_loop_new(BE, err, sizeof err);
    n = isd_listen_any_type(0, SOCK_DGRAM, &o, fds, err, sizeof err);
    ok(n >= 1, T("isd_listen_any_type UDP (%s)"), n < 0 ? err : "ok");
    if (n < 1) { isd_loop_free(x.l); return; }
    port = local_port(fds[0]);
    x.u = isd_udp_new(x.l, fds[0], &H, 0, 0, &x);
    if (n > 1)
        close(fds[1]);
    c = client(AF_INET, "127.0.0.1", port);
    send(c, "v4", 2, 0);
    is_int(reply(&x, c, buf, sizeof buf, 2000), 2, T("an IPv4 sender gets its echo"));
    is_int(x.lastfrom.sa.sa_family, AF_INET, T("seen as AF_INET"));
    is_str(isd_addr_host(&x.lastfrom, host, sizeof host), "127.0.0.1", T("127.0.0.1, not ::ffff:"));
    close(c);
    {
        int fd = isd_udp_take_fd(x.u);
        ok(fd >= 0, T("take_fd hands the socket back"));
        is_int(local_port(fd), port, T("the same socket"));
        close(fd);
    }
    isd_udp_unref(x.u);
    isd_loop_free(x.l);
}

#define RUN(fn) do { \
        char name_[96]; \
        snprintf(name_, sizeof name_, "%s: %s", BE, #fn); \
        tap_subtest(fn, name_); \
    } while (0)

int main(void)
{
    char list[256], *save = NULL, *name;

    alarm(60);
    signal(SIGPIPE, SIG_DFL);
    snprintf(list, sizeof list, "%s", isd_backends());
    for (name = strtok_r(list, " ", &save); name; name = strtok_r(NULL, " ", &save)) {
        BE = name;
        RUN(test_echo);
        RUN(test_dual);
    }
    return done_testing();
}
