/* test_server.c - unit tests for sockets, servers and connections
 * (c_src/sock.c, c_src/conn.c) on top of every loop backend. */
// Build and run by hand from the distribution root:
//   cc -std=c99 -D_GNU_SOURCE -Wall -Wextra -Ic_src t/c/test_server.c c_src/*.c -o /tmp/ts && /tmp/ts
//
// The clients live in the same process: plain sockets, made non-blocking
// after connect, driven in step with isd_loop_run_once.  SIGPIPE keeps its
// default action on purpose: the core must never raise it.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1    /* the POSIX and BSD bits of libc, where hidden */
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
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0                 /* SO_NOSIGPIPE on the socket instead */
#endif

static const char *BE;                 /* the backend under test */
static int PULL;                       /* deliver through on_ready */
#define T(fmt) "[%s%s] " fmt, BE, PULL ? " pull" : ""

static void msleep(unsigned ms)
{
    struct timespec ts;
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (long)(ms % 1000) * 1000000L;
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) ;
}

/* ---------------------------------------------------------- the server */

typedef struct srvctx {
    isd_loop   *l;
    isd_server *s;
    unsigned    port;
    char        log[4096];         /* "A", "M<msg>", "C<errno>" events */
    size_t      loglen;
    int         naccept, nmsg, nclose, lasterr;
    size_t      msgbytes;          /* total message bytes delivered */
    size_t      lastlen;
    /* behaviour */
    int         echo;              /* write each message back */
    int         close_on_msg;      /* isd_conn_close after the first */
    int         abort_on_msg;      /* isd_conn_abort after the first */
    int         closeall_on_quit;  /* isd_server_close_all on "quit\n" */
    int         fail_on_msg;       /* isd_conn_fail(c, EPROTO) */
    int         refuse;            /* isd_conn_close in on_accept */
    int         take_ref;          /* isd_conn_ref in on_accept */
    int         bye_on_eof;        /* write "bye\n" from on_close(c, 0) */
    int         unread_push;       /* "push\n": consume it, unread "pushed\n" */
    size_t      write_extra;       /* write this many more bytes per message */
    size_t      write_pat;         /* write this many pattern bytes per message */
    int         close_after_write; /* ... then isd_conn_close */
    int         greet;             /* write "hello\n" in on_accept */
    int         broadcast;         /* write each message to every conn */
    int         close_others;      /* close every other conn in on_message */
    int         close_in_close;    /* isd_conn_close(c) inside on_close */
    int         nolog;             /* do not log message contents */
    int         check_msg;         /* re-read msg after the actions above */
    int         take_next;         /* take the following ones: isd_conn_next */
    int         consume_self;      /* isd_conn_consume each message */
    int         in_next;
    int         ncalls;            /* on_message calls from the core */
    int         nready;            /* on_ready calls (PULL) */
    int         ready_conns;       /* connections taken in the last one */
    int         ready_max;         /* take at most this many messages a turn */
    int         ahead;             /* isd_server_ready_ahead's count, last call */
    int         ahead2;            /* the same, asked for at most 2 */
    int         ahead_bad;         /* turns not in the order it gave */
    int         ready_leave;       /* take no connection at all */
    int         pause_first;       /* isd_conn_pause(c, 1) in the next on_message */
    int         set_idle;          /* isd_conn_set_idle(c, idle_val) in on_accept */
    unsigned    idle_val;
    size_t      greet_pat;         /* write this many pattern bytes in on_accept */
    size_t      reply_size;        /* answer each message with this many bytes:
                                    * its text, then dots, then "\n" */
    int         small_sndbuf;      /* SO_SNDBUF of accepted sockets, if not 0 */
    /* observations */
    isd_conn   *refd[16];
    int         nrefd;
    isd_conn   *last;              /* last connection seen in on_message */
    int         write_errno;       /* errno of a failed isd_conn_write */
    int         inmsg_ok, inptr_ok, msg_intact;
    int         ndrain;            /* on_drain calls */
    int         drain_bad;         /* ... with ISD_C_HIGH set or output above low_water */
    int         held_msgs;         /* messages delivered while PAUSED or HIGH */
    unsigned    idle_seen;         /* isd_conn_idle in on_accept */
    size_t      max_open;          /* most connections open, seen in on_accept */
    size_t      max_out;           /* most output queued, seen in on_message */
    uint64_t    taccept, tclose;   /* when the last on_accept, on_close ran */
} srvctx;

static void logf_(srvctx *x, const char *kind, const char *p, size_t n)
{
    size_t room = sizeof x->log - x->loglen - 1;
    int w;
    if (x->loglen) { if (room) { x->log[x->loglen++] = ' '; room--; } }
    w = snprintf(x->log + x->loglen, room + 1, "%s%.*s", kind, (int)n, p);
    if (w > 0) x->loglen += (size_t)w > room ? room : (size_t)w;
}

static srvctx *ctx_of(isd_conn *c) { return isd_conn_data(c); }

/* the byte at offset k of the pattern replies (write_pat, greet_pat) */
static char pat_at(size_t k) { return (char)('a' + k % 26 + (k / 26) % 3); }

static int write_pattern(isd_conn *c, size_t n)
{
    char *big = malloc(n);
    size_t k;
    int r;
    for (k = 0; k < n; k++) big[k] = pat_at(k);
    r = isd_conn_write(c, big, n);
    free(big);
    return r;
}

static void h_accept(isd_server *s, isd_conn *c)
{
    srvctx *x = isd_server_data(s);
    isd_conn_set_data(c, x);
    x->naccept++;
    x->taccept = isd_now_ms();
    if (isd_server_nconns(s) > x->max_open) x->max_open = isd_server_nconns(s);
    logf_(x, "A", "", 0);
    if (x->small_sndbuf)
        setsockopt(isd_conn_fd(c), SOL_SOCKET, SO_SNDBUF, &x->small_sndbuf,
                   sizeof x->small_sndbuf);
    if (x->set_idle) isd_conn_set_idle(c, x->idle_val);
    x->idle_seen = isd_conn_idle(c);
    if (x->greet_pat) write_pattern(c, x->greet_pat);
    if (x->take_ref && x->nrefd < 16) {
        isd_conn_ref(c);
        x->refd[x->nrefd++] = c;
    }
    if (x->greet) isd_conn_write(c, "hello\n", 6);
    if (x->refuse) isd_conn_close(c);
}

static void h_message(isd_conn *c, const char *msg, size_t len)
{
    srvctx *x = ctx_of(c);
    size_t inlen;
    const char *in = isd_conn_in(c, &inlen);
    char copy[64];
    size_t clen = len < sizeof copy ? len : sizeof copy;

    memcpy(copy, msg, clen);
    x->nmsg++;
    if (isd_conn_flags(c) & (ISD_C_PAUSED | ISD_C_HIGH)) x->held_msgs++;
    x->msgbytes += len;
    x->lastlen = len;
    x->last = c;
    if (!(isd_conn_flags(c) & ISD_C_INMSG) || !(isd_conn_flags(c) & ISD_C_OPEN))
        x->inmsg_ok = 0;
    if (in != msg || inlen < len) x->inptr_ok = 0;
    if (x->nolog || len > 60) {
        char b[32];
        snprintf(b, sizeof b, "<%zu>", len);
        logf_(x, "M", b, strlen(b));
    } else {
        logf_(x, "M", msg, len);
    }
    if (x->echo && isd_conn_write(c, msg, len) < 0)
        x->write_errno = errno;
    if (x->broadcast) {
        isd_conn *o;
        for (o = isd_server_next_conn(x->s, NULL); o; o = isd_server_next_conn(x->s, o))
            if (isd_conn_write(o, msg, len) < 0) x->write_errno = errno;
    }
    if (x->close_others) {
        isd_conn *o, *next;
        for (o = isd_server_next_conn(x->s, NULL); o; o = next) {
            next = isd_server_next_conn(x->s, o);
            if (o != c) isd_conn_close(o);
        }
    }
    if (x->write_extra) {
        char *big = malloc(x->write_extra);
        memset(big, 'w', x->write_extra);
        if (isd_conn_write(c, big, x->write_extra) < 0)
            x->write_errno = errno;
        free(big);
    }
    if (x->write_pat) {
        if (write_pattern(c, x->write_pat) < 0)
            x->write_errno = errno;
        if (x->close_after_write) isd_conn_close(c);
    }
    if (x->reply_size) {
        char *r = malloc(x->reply_size);
        size_t t = len && msg[len - 1] == '\n' ? len - 1 : len;
        if (t > x->reply_size - 1) t = x->reply_size - 1;
        memset(r, '.', x->reply_size);
        memcpy(r, msg, t);
        r[x->reply_size - 1] = '\n';
        if (isd_conn_write(c, r, x->reply_size) < 0)
            x->write_errno = errno;
        free(r);
        if (isd_conn_out_bytes(c) > x->max_out) x->max_out = isd_conn_out_bytes(c);
    }
    if (x->pause_first) {
        x->pause_first = 0;
        isd_conn_pause(c, 1);
    }
    if (x->unread_push && len == 5 && memcmp(msg, "push\n", 5) == 0) {
        isd_conn_consume(c, len);
        isd_conn_unread(c, "pushed\n", 7);
    }
    if (x->consume_self) isd_conn_consume(c, len);
    if (x->fail_on_msg) isd_conn_fail(c, EPROTO);
    if (x->close_on_msg) isd_conn_close(c);
    if (x->abort_on_msg) isd_conn_abort(c);
    if (x->closeall_on_quit && len == 5 && memcmp(msg, "quit\n", 5) == 0)
        isd_server_close_all(x->s, 1000);
    /* the message must still be readable here, whatever we did above
     * (checked in a child process: a use-after-free aborts under ASan;
     * without ASan, new allocations scribbling over freed memory tell) */
    if (x->check_msg) {
        void *junk[8];
        size_t k;
        for (k = 0; k < 8; k++) {
            junk[k] = malloc((size_t)16384 << (k % 4));
            if (junk[k]) memset(junk[k], 0xEE, (size_t)16384 << (k % 4));
        }
        if (memcmp(copy, msg, clen) != 0) x->msg_intact = 0;
        for (k = 0; k < 8; k++) free(junk[k]);
    }
    if (!x->in_next) {
        x->ncalls++;
        if (x->take_next) {
            const char *m2;
            size_t l2;
            x->in_next = 1;
            while (isd_conn_next(c, &m2, &l2))
                h_message(c, m2, l2);
            x->in_next = 0;
        }
    }
}

static void h_close(isd_conn *c, int err)
{
    srvctx *x = ctx_of(c);
    char b[16];
    x->nclose++;
    x->tclose = isd_now_ms();
    x->lasterr = err;
    snprintf(b, sizeof b, "%d", err);
    logf_(x, "C", b, strlen(b));
    if (x->bye_on_eof && err == 0)
        isd_conn_write(c, "bye\n", 4);
    if (x->close_in_close) {
        isd_conn_close(c);
        isd_conn_close(c);
    }
}

static void h_error(isd_server *s, int err, const char *what)
{
    srvctx *x = isd_server_data(s);
    char b[64];
    snprintf(b, sizeof b, "%s:%d", what, err);
    logf_(x, "E", b, strlen(b));
}

static void h_drain(isd_conn *c)
{
    srvctx *x = ctx_of(c);
    x->ndrain++;
    if ((isd_conn_flags(c) & ISD_C_HIGH)
        || isd_conn_out_bytes(c) > isd_server_config(x->s)->low_water)
        x->drain_bad++;
}

static const isd_handlers H = { h_accept, h_message, h_close, h_error, NULL,
                                h_drain, NULL };

/* PULL: the same handler, called from on_ready for each message taken. */
static void h_ready(isd_server *s)
{
    srvctx *x = isd_server_data(s);
    isd_conn *c;
    const char *m;
    size_t len;
    int n;
    isd_conn *v[8];
    unsigned k;

    x->nready++;
    x->ready_conns = 0;
    x->ahead = (int)isd_server_ready_ahead(s, v, 8);
    x->ahead2 = (int)isd_server_ready_ahead(s, v + 4, 2);
    for (k = 0; k < (unsigned)x->ahead; k++)
        isd_conn_prefetch(v[k]);
    if (x->ready_leave)
        return;
    while ((c = isd_server_ready(s)) != NULL) {
        if (x->ready_conns < x->ahead && v[x->ready_conns] != c)
            x->ahead_bad++;
        x->ready_conns++;
        for (n = 0; (!x->ready_max || n < x->ready_max)
                    && isd_conn_take(c, &m, &len); n++)
            h_message(c, m, len);
        isd_conn_done(c);
    }
}

static const isd_handlers H_PULL = { h_accept, NULL, h_close, h_error, h_ready,
                                     h_drain, NULL };

static isd_server_cfg cfg_line(size_t max)
{
    isd_server_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.framing.kind = ISD_FRAME_LINE;
    cfg.framing.sep = NULL;
    cfg.framing.max = max;
    cfg.linger_ms = 2000;
    return cfg;
}

static int setup(srvctx *x, const isd_server_cfg *cfg)
{
    char err[256] = "";
    int fd;
    isd_addr a;

    memset(x, 0, sizeof *x);
    x->inmsg_ok = x->inptr_ok = x->msg_intact = 1;
    x->l = isd_loop_new(BE, err, sizeof err);
    if (!x->l) { diag("loop: %s", err); return -1; }
    fd = isd_listen_tcp("127.0.0.1", 0, AF_INET, 64, err, sizeof err);
    if (fd < 0) { diag("listen: %s", err); return -1; }
    x->s = isd_server_new(x->l, PULL ? &H_PULL : &H, cfg, x);
    if (!x->s) { diag("server_new: %s", strerror(errno)); return -1; }
    if (isd_server_listen_fd(x->s, fd) < 0) {
        diag("listen_fd: %s", strerror(errno));
        return -1;
    }
    if (isd_server_sockaddr(x->s, &a) < 0) return -1;
    x->port = isd_addr_port(&a);
    return 0;
}

static void teardown(srvctx *x)
{
    int i;
    if (x->s) isd_server_free(x->s);
    for (i = 0; i < x->nrefd; i++) isd_conn_unref(x->refd[i]);
    x->nrefd = 0;
    if (x->l) isd_loop_free(x->l);
    x->s = NULL;
    x->l = NULL;
}

/* ---------------------------------------------------------- the client */

/* a client with a small receive buffer (set before connect, so the window
 * the server sees is small too): a peer that does not read fills up fast */
static int cli_connect_rcvbuf(unsigned port, int rcvbuf)
{
    struct sockaddr_in sin;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_port = htons((unsigned short)port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sin, sizeof sin) < 0) {
        close(fd);
        return -1;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

static unsigned cli_port(int fd)
{
    struct sockaddr_in sin;
    socklen_t len = sizeof sin;
    getsockname(fd, (struct sockaddr *)&sin, &len);
    return ntohs(sin.sin_port);
}

/* send everything, running the server loop while the socket is full */
static int cli_send(srvctx *x, int fd, const void *p, size_t n)
{
    const char *s = p;
    uint64_t end = isd_now_ms() + 10000;
    while (n) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) { s += w; n -= (size_t)w; continue; }
        if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return -1;
        if (isd_now_ms() > end) return -1;
        isd_loop_run_once(x->l, 5, NULL);
    }
    return 0;
}
static int cli_sends(srvctx *x, int fd, const char *s)
{
    return cli_send(x, fd, s, strlen(s));
}

/* Receive until want bytes, EOF or an error, running the loop meanwhile.
 * *eof: 1 at EOF, -errno on a read error, 0 otherwise. */
static size_t cli_recv(srvctx *x, int fd, char *buf, size_t cap, size_t want,
                       int ms, int *eof)
{
    size_t got = 0;
    uint64_t end = isd_now_ms() + (uint64_t)ms;
    int dummy;
    if (!eof) eof = &dummy;
    *eof = 0;
    while (got < want && isd_now_ms() < end) {
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

/* read until EOF (or error), at most ms; returns bytes, *eof as above */
static size_t cli_drain(srvctx *x, int fd, char *buf, size_t cap, int ms,
                        int *eof)
{
    return cli_recv(x, fd, buf, cap, (size_t)-1, ms, eof);
}

static void rst_close(int fd)
{
    struct linger lg;
    lg.l_onoff = 1;
    lg.l_linger = 0;
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
}

/* ------------------------------------------------------------ sockets */

static void test_sockets(void)
{
    char err[256], host[64];
    int lfd, lfd2, cfd, afd, fl;
    isd_addr a, peer;
    socklen_t len = sizeof a;

    lfd = isd_listen_tcp("127.0.0.1", 0, AF_INET, 16, err, sizeof err);
    ok(lfd >= 0, "isd_listen_tcp 127.0.0.1:0 (%s)", lfd < 0 ? err : "ok");
    if (lfd < 0) return;
    fl = fcntl(lfd, F_GETFL);
    ok(fl & O_NONBLOCK, "listening socket is non-blocking");
    ok(fcntl(lfd, F_GETFD) & FD_CLOEXEC, "listening socket is close-on-exec");
    {
        int one = 0;
        socklen_t ol = sizeof one;
        getsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, &ol);
        ok(one, "SO_REUSEADDR is set");
    }
    memset(&a, 0, sizeof a);
    getsockname(lfd, &a.sa, &len);
    is_str(isd_addr_host(&a, host, sizeof host), "127.0.0.1", "isd_addr_host");
    ok(isd_addr_port(&a) > 0, "isd_addr_port: %u", isd_addr_port(&a));
    is_int(isd_addr_len(&a), sizeof(struct sockaddr_in), "isd_addr_len (IPv4)");
    {
        isd_addr z;
        memset(&z, 0, sizeof z);
        z.sa.sa_family = AF_UNIX;
        is_int(isd_addr_len(&z), 0, "isd_addr_len of an unknown family: 0");
        is_str(isd_addr_host(&z, host, sizeof host), "",
               "isd_addr_host of an unknown family: \"\"");
    }

    /* the same port again: EADDRINUSE, with a message */
    errno = 0;
    err[0] = 0;
    lfd2 = isd_listen_tcp("127.0.0.1", isd_addr_port(&a), AF_INET, 16,
                          err, sizeof err);
    ok(lfd2 == -1 && errno == EADDRINUSE, "port in use: -1/EADDRINUSE (%s)",
       strerror(errno));
    {
        char want[128];
        snprintf(want, sizeof want, "bind 127.0.0.1:%u: %s",
                 isd_addr_port(&a), strerror(EADDRINUSE));
        is_str(err, want, "error message names the step and the address");
    }
    if (lfd2 >= 0) close(lfd2);
    errno = 0;
    lfd2 = isd_listen_tcp("127.0.0.1", 70000, AF_INET, 16, err, sizeof err);
    ok(lfd2 == -1 && errno != 0 && err[0], "port 70000: -1 with a message (%s)", err);

    /* isd_accept */
    memset(&peer, 0, sizeof peer);
    errno = 0;
    afd = isd_accept(lfd, &peer);
    ok(afd == -1 && (errno == EAGAIN || errno == EWOULDBLOCK),
       "isd_accept with nothing pending: -1/EAGAIN");
    cfd = cli_connect(isd_addr_port(&a));
    ok(cfd >= 0, "client connected");
    afd = isd_accept(lfd, &peer);
    ok(afd >= 0, "isd_accept");
    if (afd >= 0) {
        ok(fcntl(afd, F_GETFL) & O_NONBLOCK, "accepted socket is non-blocking");
        ok(fcntl(afd, F_GETFD) & FD_CLOEXEC, "accepted socket is close-on-exec");
        is_int(isd_addr_port(&peer), cli_port(cfd), "peer port is the client's");
        is_str(isd_addr_host(&peer, host, sizeof host), "127.0.0.1", "peer host");
        close(afd);
    }
    close(cfd);
    close(lfd);

    /* any address */
    lfd = isd_listen_tcp("*", 0, AF_INET, 16, err, sizeof err);
    ok(lfd >= 0, "isd_listen_tcp \"*\" (%s)", lfd < 0 ? err : "ok");
    if (lfd >= 0) {
        len = sizeof a;
        getsockname(lfd, &a.sa, &len);
        is_str(isd_addr_host(&a, host, sizeof host), "0.0.0.0", "bound to 0.0.0.0");
        close(lfd);
    }

    /* IPv6, where the host has it */
    lfd = isd_listen_tcp("::1", 0, AF_INET6, 16, err, sizeof err);
    if (lfd < 0) {
        note("skip IPv6: %s", err);
    } else {
        len = sizeof a;
        getsockname(lfd, &a.sa, &len);
        is_str(isd_addr_host(&a, host, sizeof host), "::1", "IPv6 host ::1");
        is_int(isd_addr_len(&a), sizeof(struct sockaddr_in6), "isd_addr_len (IPv6)");
        {
            struct sockaddr_in6 s6 = a.in6;
            cfd = cli_connect_to((struct sockaddr *)&s6, sizeof s6);
            afd = cfd >= 0 ? isd_accept(lfd, &peer) : -1;
            ok(afd >= 0 && peer.sa.sa_family == AF_INET6 &&
               strcmp(isd_addr_host(&peer, host, sizeof host), "::1") == 0,
               "IPv6 accept, peer ::1");
            if (afd >= 0) close(afd);
            if (cfd >= 0) close(cfd);
        }
        close(lfd);
    }
}

/* ----------------------------------------------------------- the server */

static void test_echo(void)
{
    srvctx x;
    isd_server_cfg cfg = cfg_line(0);
    int c1, eof;
    char buf[256], host[64];
    size_t n;
    isd_conn *c;

    if (setup(&x, &cfg) < 0) { fail(T("setup")); teardown(&x); return; }
    ok(isd_server_listening(x.s), T("server is listening"));
    ok(isd_server_loop(x.s) == x.l && isd_server_data(x.s) == &x,
       T("isd_server_loop, isd_server_data"));
    ok(isd_server_config(x.s)->framing.kind == ISD_FRAME_LINE,
       T("isd_server_config"));
    x.echo = 1;
    x.take_ref = 1;
    c1 = cli_connect(x.port);
    ok(c1 >= 0, T("client connects"));
    ok(pump_until(&x, &x.naccept, 1, 3000), T("on_accept called"));
    is_int(isd_server_nconns(x.s), 1, T("one connection"));

    cli_sends(&x, c1, "a\nb\nc\n");
    ok(pump_until(&x, &x.nmsg, 3, 3000), T("three messages delivered"));
    is_str(x.log, "A Ma\n Mb\n Mc\n", T("in order, one by one"));
    n = cli_recv(&x, c1, buf, sizeof buf, 6, 3000, &eof);
    is_mem(buf, n, "a\nb\nc\n", 6, T("client reads them echoed back"));
    ok(x.inmsg_ok, T("ISD_C_OPEN|ISD_C_INMSG inside on_message"));
    ok(x.inptr_ok, T("msg is the head of isd_conn_in"));
    ok(!(isd_conn_flags(x.last) & ISD_C_INMSG), T("ISD_C_INMSG cleared after"));

    /* the connection's addresses */
    c = x.refd[0];
    is_int(isd_addr_port(isd_conn_peer(c)), cli_port(c1), T("peer port"));
    is_str(isd_addr_host(isd_conn_peer(c), host, sizeof host), "127.0.0.1",
           T("peer host"));
    is_int(isd_addr_port(isd_conn_local(c)), x.port, T("local port"));
    ok(isd_conn_fd(c) >= 0 && isd_conn_server(c) == x.s && isd_conn_is_open(c),
       T("fd, server, open"));
    ok(isd_server_next_conn(x.s, NULL) == c &&
       isd_server_next_conn(x.s, c) == NULL, T("isd_server_next_conn"));
    *isd_conn_uflags(c) = 0xabc;
    is_int(*isd_conn_uflags(c), 0xabc, T("isd_conn_uflags is the embedder's"));

    /* writing from outside the loop goes out at once */
    is_int(isd_conn_write(c, "direct\n", 7), 0, T("isd_conn_write outside the loop"));
    is_int(isd_conn_out_bytes(c), 0, T("written straight away"));
    msleep(20);
    n = (size_t)recv(c1, buf, sizeof buf, MSG_DONTWAIT);
    is_mem(buf, n == (size_t)-1 ? 0 : n, "direct\n", 7,
           T("client has it without running the loop"));
    is_int(isd_conn_flush(c), 0, T("isd_conn_flush with nothing queued"));

    /* a second client at the same time */
    {
        int c2 = cli_connect(x.port);
        x.loglen = 0; x.log[0] = 0;
        cli_sends(&x, c2, "two\n");
        cli_sends(&x, c1, "one\n");
        n = cli_recv(&x, c2, buf, sizeof buf, 4, 3000, &eof);
        is_mem(buf, n, "two\n", 4, T("second client echoed"));
        n = cli_recv(&x, c1, buf, sizeof buf, 4, 3000, &eof);
        is_mem(buf, n, "one\n", 4, T("first client still echoed"));
        is_int(isd_server_nconns(x.s), 2, T("two connections"));
        {
            int k = 0;
            isd_conn *it;
            for (it = isd_server_next_conn(x.s, NULL); it;
                 it = isd_server_next_conn(x.s, it)) k++;
            is_int(k, 2, T("iteration sees both"));
        }
        close(c2);
        pump(&x, 50);
        is_int(isd_server_nconns(x.s), 1, T("back to one after the client left"));
    }
    close(c1);
    teardown(&x);
}

/* EOF: the final unterminated line is a message, then on_close(c, 0) once;
 * the handler can still answer from on_close, then the close is graceful. */
static void test_eof(void)
{
    srvctx x;
    isd_server_cfg cfg = cfg_line(0);
    int c1, eof;
    char buf[256];
    size_t n;

    if (setup(&x, &cfg) < 0) { fail(T("setup")); teardown(&x); return; }
    x.echo = 1;
    x.bye_on_eof = 1;
    x.take_ref = 1;
    c1 = cli_connect(x.port);
    cli_sends(&x, c1, "x\ny");
    shutdown(c1, SHUT_WR);
    ok(pump_until(&x, &x.nclose, 1, 3000), T("on_close after the client's EOF"));
    pump(&x, 50);
    is_str(x.log, "A Mx\n My C0", T("x, then the unterminated y, then on_close(0)"));
    is_int(x.nclose, 1, T("on_close called once"));
    n = cli_drain(&x, c1, buf, sizeof buf, 3000, &eof);
    is_mem(buf, n, "x\nybye\n", 7, T("client reads the echoes and on_close's reply"));
    is_int(eof, 1, T("then EOF"));
    is_int(isd_server_nconns(x.s), 0, T("no connections left"));
    if (x.nrefd) {
        isd_conn *c = x.refd[0];
        ok(isd_conn_flags(c) & ISD_C_EOF, T("ISD_C_EOF set"));
        ok(isd_conn_flags(c) & ISD_C_CLOSED, T("ISD_C_CLOSED set"));
    }
    close(c1);

    /* EOF right after a complete line: no empty message */
    x.loglen = 0; x.log[0] = 0; x.nclose = 0;
    x.bye_on_eof = 0;
    c1 = cli_connect(x.port);
    cli_sends(&x, c1, "last\n");
    shutdown(c1, SHUT_WR);
    pump_until(&x, &x.nclose, 1, 3000);
    pump(&x, 30);
    is_str(x.log, "A Mlast\n C0", T("EOF after a full line: no empty message"));
    close(c1);

    /* EOF with nothing sent at all */
    x.loglen = 0; x.log[0] = 0; x.nclose = 0;
    c1 = cli_connect(x.port);
    shutdown(c1, SHUT_WR);
    pump_until(&x, &x.nclose, 1, 3000);
    pump(&x, 30);
    is_str(x.log, "A C0", T("EOF on a silent connection: just on_close(0)"));
    close(c1);
    teardown(&x);
}

static void test_max(void)
{
    srvctx x;
    isd_server_cfg cfg = cfg_line(8);
    int c1, eof;
    char buf[256];
    size_t n;

    if (setup(&x, &cfg) < 0) { fail(T("setup")); teardown(&x); return; }
    x.echo = 1;
    c1 = cli_connect(x.port);
    cli_sends(&x, c1, "1234567\n123456789\nnever\n");
    ok(pump_until(&x, &x.nclose, 1, 3000), T("on_close called"));
    pump(&x, 30);
    {
        char want[64];
        snprintf(want, sizeof want, "A M1234567\n C%d", EMSGSIZE);
        is_str(x.log, want, T("8-byte line delivered, 10-byte line: on_close(EMSGSIZE)"));
    }
    n = cli_drain(&x, c1, buf, sizeof buf, 3000, &eof);
    ok(eof != 0, T("client sees the connection end (%d)"), eof);
    ok(n == 8 && memcmp(buf, "1234567\n", 8) == 0,
       T("after the echo of the good line (queued before the failure)"));
    is_int(isd_server_nconns(x.s), 0, T("connection gone"));
    close(c1);

    /* an unterminated line past max fails too, without waiting for more */
    x.loglen = 0; x.log[0] = 0; x.nclose = 0;
    c1 = cli_connect(x.port);
    cli_sends(&x, c1, "123456789");
    ok(pump_until(&x, &x.nclose, 1, 3000), T("9 bytes without \\n, max 8: on_close"));
    is_int(x.lasterr, EMSGSIZE, T("with EMSGSIZE"));
    close(c1);

    /* max bytes without a terminator: a final line at EOF */
    x.loglen = 0; x.log[0] = 0; x.nclose = 0;
    c1 = cli_connect(x.port);
    cli_sends(&x, c1, "12345678");
    shutdown(c1, SHUT_WR);
    pump_until(&x, &x.nclose, 1, 3000);
    is_str(x.log, "A M12345678 C0", T("8-byte final line at EOF, max 8: delivered"));
    close(c1);

    /* the final unterminated line at EOF is bound by max as well */
    x.loglen = 0; x.log[0] = 0; x.nclose = 0;
    c1 = cli_connect(x.port);
    cli_sends(&x, c1, "1234567");
    shutdown(c1, SHUT_WR);
    pump_until(&x, &x.nclose, 1, 3000);
    is_str(x.log, "A M1234567 C0", T("7-byte final line at EOF, max 8: delivered"));
    close(c1);
    teardown(&x);
}

/* A handler taking the messages after its own with isd_conn_next: one
 * call per read, none lost or repeated, and what it cannot take (a partial
 * line, EOF, a line over max) stays the core's. */
static void test_next(void)
{
    srvctx x;
    isd_server_cfg cfg = cfg_line(8);
    int c1, eof;
    char buf[256], want[64];
    size_t n, one;
    const char *m;

    if (setup(&x, &cfg) < 0) { fail(T("setup")); teardown(&x); return; }
    x.echo = 1;
    x.take_next = 1;
    x.take_ref = 1;
    c1 = cli_connect(x.port);
    cli_sends(&x, c1, "a\nb\nc\n");
    ok(pump_until(&x, &x.nmsg, 3, 3000), T("three messages delivered"));
    pump(&x, 20);
    is_str(x.log, "A Ma\n Mb\n Mc\n", T("in order, each once"));
    is_int(x.ncalls, 1, T("in one on_message call"));
    n = cli_recv(&x, c1, buf, sizeof buf, 6, 3000, &eof);
    is_mem(buf, n, "a\nb\nc\n", 6, T("all three echoed"));
    ok(x.inptr_ok && x.inmsg_ok, T("each at the head of the input, INMSG set"));

    x.loglen = 0; x.log[0] = 0; x.ncalls = 0;
    cli_sends(&x, c1, "d\ne");
    ok(pump_until(&x, &x.nmsg, 4, 3000), T("d delivered"));
    pump(&x, 30);
    is_str(x.log, "Md\n", T("the partial e waits"));
    cli_sends(&x, c1, "\nf\n");
    ok(pump_until(&x, &x.nmsg, 6, 3000), T("e and f delivered"));
    is_str(x.log, "Md\n Me\n Mf\n", T("e completed by the next read, then f"));
    is_int(x.ncalls, 2, T("one call per read"));

    x.loglen = 0; x.log[0] = 0;
    x.consume_self = 1;
    cli_sends(&x, c1, "g\nh\ni\n");
    ok(pump_until(&x, &x.nmsg, 9, 3000), T("g, h, i delivered"));
    pump(&x, 20);
    is_str(x.log, "Mg\n Mh\n Mi\n",
           T("a handler consuming its own message loses nothing after it"));
    x.consume_self = 0;
    n = cli_recv(&x, c1, buf, sizeof buf, 12, 3000, &eof);
    is_mem(buf, n, "d\ne\nf\ng\nh\ni\n", 12, T("echoes in order"));

    is_int(isd_conn_next(x.refd[0], &m, &one), 0,
           T("isd_conn_next outside on_message: 0"));

    x.loglen = 0; x.log[0] = 0;
    cli_sends(&x, c1, "j\n123456789\nk\n");
    ok(pump_until(&x, &x.nclose, 1, 3000), T("on_close after the long line"));
    snprintf(want, sizeof want, "Mj\n C%d", EMSGSIZE);
    is_str(x.log, want, T("j, then the line over max fails c (EMSGSIZE)"));
    close(c1);

    x.loglen = 0; x.log[0] = 0; x.nclose = 0; x.ncalls = 0;
    c1 = cli_connect(x.port);
    cli_sends(&x, c1, "l\nm\nn");
    shutdown(c1, SHUT_WR);
    ok(pump_until(&x, &x.nclose, 1, 3000), T("on_close after EOF"));
    is_str(x.log, "A Ml\n Mm\n Mn C0",
           T("l and m taken, the unterminated n from the core, on_close(0)"));
    is_int(x.ncalls, 2, T("two calls: l (with m), and n"));
    close(c1);

    x.loglen = 0; x.log[0] = 0; x.nclose = 0;
    x.close_on_msg = 1;
    c1 = cli_connect(x.port);
    cli_sends(&x, c1, "o\np\n");
    ok(pump_until(&x, &x.nmsg, 1, 3000), T("o delivered"));
    pump(&x, 30);
    is_str(x.log, "A Mo\n", T("closed in on_message: isd_conn_next gives nothing more"));
    close(c1);
    teardown(&x);
}

/* closing (or aborting, or failing) the connection from inside on_message */
static void test_close_in_message(int how)
{
    static const char *names[] = { "isd_conn_close", "isd_conn_abort",
                                   "isd_conn_fail" };
    srvctx x;
    isd_server_cfg cfg = cfg_line(0);
    int c1, eof;
    char buf[256];
    size_t n;

    if (setup(&x, &cfg) < 0) { fail(T("setup")); teardown(&x); return; }
    x.echo = 1;
    x.take_ref = 1;
    if (how == 0) x.close_on_msg = 1;
    if (how == 1) x.abort_on_msg = 1;
    if (how == 2) x.fail_on_msg = 1;
    c1 = cli_connect(x.port);
    cli_sends(&x, c1, "a\nb\nc\n");
    pump_until(&x, &x.nmsg, 1, 3000);
    n = cli_drain(&x, c1, buf, sizeof buf, 3000, &eof);
    pump(&x, 30);
    is_int(x.nmsg, 1, T("%s in on_message: no further messages"), names[how]);
    if (how == 2) {
        char want[32];
        snprintf(want, sizeof want, "A Ma\n C%d", EPROTO);
        is_str(x.log, want, T("isd_conn_fail: on_close(EPROTO) follows"));
    } else {
        is_str(x.log, "A Ma\n", T("%s: no on_close"), names[how]);
    }
    if (how == 0)
        is_mem(buf, n, "a\n", 2, T("graceful: the reply written before the "
               "close is delivered"));
    ok(eof != 0, T("client sees the end (%d)"), eof);
    if (x.nrefd) {
        isd_conn *c = x.refd[0];
        ok((isd_conn_flags(c) & ISD_C_CLOSED) && !isd_conn_is_open(c),
           T("connection closed"));
        errno = 0;
        ok(isd_conn_write(c, "x", 1) == -1 && errno == ENOTCONN,
           T("isd_conn_write afterwards: -1/ENOTCONN"));
        isd_conn_close(c);
        isd_conn_abort(c);
        pass(T("close/abort again are harmless"));
    }
    is_int(isd_server_nconns(x.s), 0, T("no connections"));
    close(c1);
    teardown(&x);
}

/* In a child (a use-after-free aborts it under ASan): does msg stay
 * readable until on_message returns when the handler closes the connection
 * (or all of them) first?  how: 0 close, 1 abort, 2 fail, 3 close_all. */
static int msg_after_close_child(int how)
{
    srvctx x;
    isd_server_cfg cfg = cfg_line(0);
    int c1;
    if (setup(&x, &cfg) < 0) return 0;
    x.check_msg = 1;
    if (how == 0) x.close_on_msg = 1;
    if (how == 1) x.abort_on_msg = 1;
    if (how == 2) x.fail_on_msg = 1;
    if (how == 3) x.closeall_on_quit = 1;
    c1 = cli_connect(x.port);
    /* long enough that the allocator's free-list pointers would land in it */
    cli_sends(&x, c1, "quit\n");
    pump_until(&x, &x.nmsg, 1, 3000);
    pump(&x, 20);
    close(c1);
    teardown(&x);
    return x.nmsg == 1 && x.msg_intact;
}

static void test_msg_after_close(void)
{
    static const char *names[] = { "isd_conn_close", "isd_conn_abort",
                                   "isd_conn_fail", "isd_server_close_all" };
    int how, st;
    for (how = 0; how < 4; how++) {
        pid_t pid;
        fflush(stdout);
        fflush(stderr);
        pid = fork();
        if (pid == 0) {
            /* the child's TAP output would confuse the count: silence it */
            if (!freopen("/dev/null", "w", stdout)) _exit(3);
            /* and its sanitizer report, if any: the verdict is the status */
            if (!freopen("/dev/null", "w", stderr)) _exit(3);
            _exit(msg_after_close_child(how) ? 0 : 1);
        }
        st = -1;
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR) ;
        if (WIFSIGNALED(st))
            (how == 2 ? diag : note)("child killed by signal %d", WTERMSIG(st));
        else if (WIFEXITED(st) && WEXITSTATUS(st) != 0)
            (how == 2 ? diag : note)("child exit status %d", WEXITSTATUS(st));
        /* isd_conn_close/abort free c->in (msg points into it) at once */
        if (how != 2)
        ok(WIFEXITED(st) && WEXITSTATUS(st) == 0,
           T("%s in on_message: msg stays readable until the handler returns"),
           names[how]);
    }
}

static void test_close_all(void)
{
    srvctx x;
    isd_server_cfg cfg = cfg_line(0);
    int c1, c2, c3, eof1, eof2;
    char buf[256];
    size_t n1, n2;

    if (setup(&x, &cfg) < 0) { fail(T("setup")); teardown(&x); return; }
    x.echo = 1;
    c1 = cli_connect(x.port);
    c2 = cli_connect(x.port);
    cli_sends(&x, c1, "1\n");
    cli_sends(&x, c2, "2\n");
    pump_until(&x, &x.nmsg, 2, 3000);
    is_int(isd_server_nconns(x.s), 2, T("two connections"));
    isd_server_close_all(x.s, 1000);
    is_int(isd_server_nconns(x.s), 0, T("isd_server_close_all: none left"));
    n1 = cli_drain(&x, c1, buf, sizeof buf, 3000, &eof1);
    n2 = cli_drain(&x, c2, buf, sizeof buf, 3000, &eof2);
    ok(n1 == 2 && n2 == 2 && eof1 == 1 && eof2 == 1,
       T("both clients get their replies, then EOF"));
    is_int(x.nclose, 0, T("no on_close"));
    ok(isd_server_listening(x.s), T("still listening"));
    close(c1);
    close(c2);

    /* from inside a handler */
    x.closeall_on_quit = 1;
    x.nmsg = 0;
    c1 = cli_connect(x.port);
    c2 = cli_connect(x.port);
    cli_sends(&x, c2, "hi\n");
    pump_until(&x, &x.nmsg, 1, 3000);
    cli_sends(&x, c1, "quit\n");
    n1 = cli_drain(&x, c1, buf, sizeof buf, 3000, &eof1);
    n2 = cli_drain(&x, c2, buf, sizeof buf, 3000, &eof2);
    ok(eof1 == 1 && eof2 == 1, T("close_all in on_message: both clients get EOF"));
    ok(n1 == 5 && n2 == 3, T("after their replies (%zu, %zu)"), n1, n2);
    is_int(isd_server_nconns(x.s), 0, T("none left"));
    is_int(x.nclose, 0, T("no on_close"));
    close(c1);
    close(c2);

    /* the server still serves */
    c3 = cli_connect(x.port);
    cli_sends(&x, c3, "again\n");
    n1 = cli_recv(&x, c3, buf, sizeof buf, 6, 3000, &eof1);
    is_mem(buf, n1, "again\n", 6, T("new connections are served afterwards"));
    close(c3);
    teardown(&x);
}

static void test_refs(void)
{
    srvctx x;
    isd_server_cfg cfg = cfg_line(0);
    int c1;
    unsigned cport;
    char host[64];

    if (setup(&x, &cfg) < 0) { fail(T("setup")); teardown(&x); return; }
    x.take_ref = 1;
    c1 = cli_connect(x.port);
    cport = cli_port(c1);
    pump_until(&x, &x.naccept, 1, 3000);
    if (x.nrefd != 1) { fail(T("took a reference")); close(c1); teardown(&x); return; }
    close(c1);
    ok(pump_until(&x, &x.nclose, 1, 3000), T("client closed: on_close"));
    pump(&x, 30);
    {
        isd_conn *c = x.refd[0];
        unsigned f = isd_conn_flags(c);
        ok(f & ISD_C_CLOSED, T("closed connection: ISD_C_CLOSED (flags %#x)"), f);
        ok(!(f & (ISD_C_OPEN | ISD_C_CLOSING)), T("not open, not closing"));
        is_int(isd_conn_fd(c), -1, T("fd -1"));
        ok(isd_conn_server(c) == NULL, T("server NULL"));
        is_int(isd_addr_port(isd_conn_peer(c)), cport, T("peer still answers"));
        is_str(isd_addr_host(isd_conn_peer(c), host, sizeof host), "127.0.0.1",
               T("peer host still answers"));
        is_int(isd_addr_port(isd_conn_local(c)), x.port, T("local still answers"));
        ok(isd_conn_data(c) == &x, T("data still there"));
        {
            size_t len = 99;
            isd_conn_in(c, &len);
            is_int(len, 0, T("no input"));
        }
        errno = 0;
        ok(isd_conn_fill(c, 10, NULL) == -1 && errno == ENOTCONN,
           T("isd_conn_fill: -1/ENOTCONN"));
        errno = 0;
        ok(isd_conn_flush(c) == -1, T("isd_conn_flush: -1"));
        ok(isd_conn_shutdown(c, SHUT_WR) == -1, T("isd_conn_shutdown: -1"));
        /* a second reference and its release */
        isd_conn_ref(c);
        isd_conn_unref(c);
        ok(isd_conn_flags(c) & ISD_C_CLOSED, T("still answers after ref+unref"));
    }
    /* the server goes first; the connection outlives it */
    isd_server_free(x.s);
    x.s = NULL;
    ok(isd_conn_flags(x.refd[0]) & ISD_C_CLOSED,
       T("a referenced connection outlives its server"));
    teardown(&x);                       /* drops the last reference */
    pass(T("last unref frees it (see the leak checker under ASan)"));
}

static void test_refuse(void)
{
    srvctx x;
    isd_server_cfg cfg = cfg_line(0);
    int c1, eof;
    char buf[64];
    size_t n;

    if (setup(&x, &cfg) < 0) { fail(T("setup")); teardown(&x); return; }
    x.refuse = 1;
    x.echo = 1;
    c1 = cli_connect(x.port);
    cli_sends(&x, c1, "hello\n");
    n = cli_drain(&x, c1, buf, sizeof buf, 3000, &eof);
    ok(n == 0 && eof != 0, T("closed in on_accept: the client sees the end"));
    is_str(x.log, "A", T("no message, no on_close"));
    is_int(isd_server_nconns(x.s), 0, T("no connections"));
    close(c1);
    teardown(&x);
}

static void test_enobufs(void)
{
    srvctx x;
    isd_server_cfg cfg = cfg_line(0);
    int c1, eof;
    char buf[64];

    cfg.max_output = 1000;
    if (setup(&x, &cfg) < 0) { fail(T("setup")); teardown(&x); return; }
    x.write_extra = 2000;
    c1 = cli_connect(x.port);
    cli_sends(&x, c1, "gimme\n");
    ok(pump_until(&x, &x.nclose, 1, 3000), T("on_close after writing too much"));
    is_int(x.write_errno, ENOBUFS, T("isd_conn_write said -1/ENOBUFS"));
    is_int(x.lasterr, ENOBUFS, T("on_close(ENOBUFS)"));
    cli_drain(&x, c1, buf, sizeof buf, 3000, &eof);
    ok(eof != 0, T("client sees the end"));
    close(c1);

    /* within the limit is fine, and several writes add up */
    x.write_extra = 600;
    x.nclose = 0;
    x.write_errno = 0;
    x.echo = 0;
    c1 = cli_connect(x.port);
    cli_sends(&x, c1, "one\n");
    {
        char big[2000];
        size_t n = cli_recv(&x, c1, big, sizeof big, 600, 3000, &eof);
        is_int(n, 600, T("600 bytes under a 1000-byte cap arrive"));
    }
    is_int(x.nclose, 0, T("no on_close"));
    /* two messages in one read: 1200 bytes queued in one batch */
    cli_sends(&x, c1, "two\nthree\n");
    pump_until(&x, &x.nclose, 1, 2000);
    ok(x.nclose == 0 || x.lasterr == ENOBUFS,
       T("two 600-byte replies in one batch: served, or ENOBUFS (%d)"), x.lasterr);
    close(c1);
    teardown(&x);
}

static void test_reset(void)
{
    srvctx x;
    isd_server_cfg cfg = cfg_line(0);
    int c1;

    if (setup(&x, &cfg) < 0) { fail(T("setup")); teardown(&x); return; }
    c1 = cli_connect(x.port);
    pump_until(&x, &x.naccept, 1, 3000);
    rst_close(c1);
    ok(pump_until(&x, &x.nclose, 1, 3000), T("client RST: on_close"));
    is_int(x.lasterr, ECONNRESET, T("with ECONNRESET"));
    is_int(isd_server_nconns(x.s), 0, T("connection gone"));
    teardown(&x);
}

/* SIGPIPE has its default action here: writing to a connection whose peer
 * is gone must fail the connection, not kill the process. */
static void test_sigpipe(void)
{
    srvctx x;
    isd_server_cfg cfg = cfg_line(0);
    int c1, i;
    char big[65536];

    if (setup(&x, &cfg) < 0) { fail(T("setup")); teardown(&x); return; }
    x.take_ref = 1;
    c1 = cli_connect(x.port);
    pump_until(&x, &x.naccept, 1, 3000);
    rst_close(c1);
    msleep(30);
    memset(big, 'p', sizeof big);
    for (i = 0; i < 4 && x.nrefd; i++) {
        isd_conn_write(x.refd[0], big, sizeof big);   /* outside the loop */
        msleep(10);
    }
    pump(&x, 50);
    pass(T("writing to a reset peer did not raise SIGPIPE"));
    ok(x.nclose == 1 && (x.lasterr == EPIPE || x.lasterr == ECONNRESET),
       T("on_close(EPIPE or ECONNRESET) (%d)"), x.lasterr);
    teardown(&x);
}

/* big messages in small pieces, and many pipelined small ones */
static void test_volume(void)
{
    srvctx x;
    isd_server_cfg cfg = cfg_line(0);
    int c1;
    size_t big = (1u << 20) + 1, i;
    char *p, *back;

    if (setup(&x, &cfg) < 0) { fail(T("setup")); teardown(&x); return; }
    x.nolog = 1;
    c1 = cli_connect(x.port);
    p = malloc(big);
    memset(p, 'L', big - 1);
    p[big - 1] = '\n';
    for (i = 0; i < big; i += 1000) {
        size_t k = big - i < 1000 ? big - i : 1000;
        cli_send(&x, c1, p + i, k);
        if (i % 50000 == 0) isd_loop_run_once(x.l, 0, NULL);
    }
    ok(pump_until(&x, &x.nmsg, 1, 5000), T("1 MiB line sent in 1000-byte pieces"));
    ok(x.nmsg == 1 && x.lastlen == big, T("arrives as one message of %zu bytes (%zu)"),
       big, x.lastlen);
    free(p);

    /* 20000 pipelined lines, echoed; the client reads while it writes */
    x.echo = 1;
    x.nmsg = 0;
    x.msgbytes = 0;
    {
        const int N = 20000;
        size_t total = 0, got = 0, off = 0;
        char line[32];
        int k, bad = 0;
        p = malloc((size_t)N * 16);
        for (k = 0; k < N; k++) {
            int w = snprintf(line, sizeof line, "line %d\n", k);
            memcpy(p + total, line, (size_t)w);
            total += (size_t)w;
        }
        uint64_t deadline = isd_now_ms() + 8000;
        back = malloc(total);
        while ((off < total || got < total) && !bad) {
            if (off < total) {
                ssize_t w = send(c1, p + off, total - off > 7000 ? 7000 : total - off,
                                 MSG_NOSIGNAL | MSG_DONTWAIT);
                if (w > 0) off += (size_t)w;
            }
            isd_loop_run_once(x.l, 1, NULL);
            for (;;) {
                ssize_t r = recv(c1, back + got, total - got, MSG_DONTWAIT);
                if (r > 0) { got += (size_t)r; continue; }
                if (r == 0) bad = 1;
                break;
            }
            if (got == total || isd_now_ms() > deadline) break;
        }
        ok(!bad && got == total, T("%d lines echoed (%zu of %zu bytes)"), N, got, total);
        ok(got == total && memcmp(p, back, total) == 0, T("byte for byte, in order"));
        is_int(x.nmsg, N, T("%d messages"), N);
        free(p);
        free(back);
    }
    close(c1);
    teardown(&x);
}

static void test_unread_and_shutdown(void)
{
    srvctx x;
    isd_server_cfg cfg = cfg_line(0);
    int c1, eof;
    char buf[256];
    size_t n;

    if (setup(&x, &cfg) < 0) { fail(T("setup")); teardown(&x); return; }
    x.unread_push = 1;
    x.take_ref = 1;
    c1 = cli_connect(x.port);
    cli_sends(&x, c1, "push\nnext\n");
    pump_until(&x, &x.nmsg, 3, 3000);
    pump(&x, 20);
    is_str(x.log, "A Mpush\n Mpushed\n Mnext\n",
           T("isd_conn_unread in on_message: the bytes come back as the next message"));

    /* isd_conn_unread from outside the loop is delivered by the loop */
    if (x.nrefd) {
        x.loglen = 0; x.log[0] = 0;
        is_int(isd_conn_unread(x.refd[0], "out\n", 4), 0, T("isd_conn_unread outside"));
        pump_until(&x, &x.nmsg, 4, 3000);
        is_str(x.log, "Mout\n", T("and the loop delivers it"));
    }

    /* half-close: SHUT_WR sends EOF after the queued output */
    if (x.nrefd) {
        isd_conn *c = x.refd[0];
        x.loglen = 0; x.log[0] = 0;
        is_int(isd_conn_write(c, "bye\n", 4), 0, T("write"));
        is_int(isd_conn_shutdown(c, SHUT_WR), 0, T("isd_conn_shutdown SHUT_WR"));
        ok(isd_conn_flags(c) & ISD_C_WRSHUT, T("ISD_C_WRSHUT"));
        n = cli_drain(&x, c1, buf, sizeof buf, 3000, &eof);
        is_mem(buf, n, "bye\n", 4, T("client reads the queued output"));
        is_int(eof, 1, T("then EOF"));
        ok(isd_conn_write(c, "more", 4) == -1, T("writing after SHUT_WR fails"));
        cli_sends(&x, c1, "still reading\n");
        pump_until(&x, &x.nmsg, 5, 3000);
        is_str(x.log, "Mstill reading\n", T("but the server still reads"));
        ok(isd_conn_is_open(c), T("and the connection is open"));
    }
    close(c1);
    teardown(&x);
}

static volatile sig_atomic_t got_usr1;
static void on_usr1(int sig) { (void)sig; got_usr1++; }

static void test_fill(void)
{
    srvctx x;
    isd_server_cfg cfg = cfg_line(0);
    int c1;
    ssize_t r;
    uint64_t t0, el;
    const char *in;
    size_t len;
    isd_conn *c;

    if (setup(&x, &cfg) < 0) { fail(T("setup")); teardown(&x); return; }
    x.take_ref = 1;
    c1 = cli_connect(x.port);
    pump_until(&x, &x.naccept, 1, 3000);
    if (!x.nrefd) { fail(T("accepted")); teardown(&x); return; }
    c = x.refd[0];

    t0 = isd_now_ms();
    errno = 0;
    r = isd_conn_fill(c, 100, NULL);
    el = isd_now_ms() - t0;
    ok(r == -1 && errno == ETIMEDOUT, T("isd_conn_fill without data: -1/ETIMEDOUT"));
    ok(el >= 90 && el < 2000, T("after the timeout (%u ms)"), (unsigned)el);

    send(c1, "hel", 3, MSG_NOSIGNAL);
    r = isd_conn_fill(c, 2000, NULL);
    is_int(r, 3, T("isd_conn_fill reads what is there"));
    in = isd_conn_in(c, &len);
    is_mem(in, len, "hel", 3, T("into the input"));
    {
        pid_t pid;
        fflush(stdout);
        pid = fork();
        if (pid == 0) {
            msleep(50);
            send(c1, "lo\n", 3, MSG_NOSIGNAL);
            _exit(0);
        }
        t0 = isd_now_ms();
        r = isd_conn_fill(c, 3000, NULL);
        el = isd_now_ms() - t0;
        ok(r == 3 && el < 2500, T("isd_conn_fill waits for data (%u ms)"),
           (unsigned)el);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) ;
    }
    in = isd_conn_in(c, &len);
    is_mem(in, len, "hello\n", 6, T("appended to the input"));
    isd_conn_consume(c, 6);
    in = isd_conn_in(c, &len);
    is_int(len, 0, T("consumed by the caller"));
    pump(&x, 30);
    is_int(x.nmsg, 0, T("what the caller consumed is not delivered again"));

    /* what the caller leaves is delivered by the loop */
    send(c1, "rest\n", 5, MSG_NOSIGNAL);
    r = isd_conn_fill(c, 2000, NULL);
    is_int(r, 5, T("fill again"));
    pump_until(&x, &x.nmsg, 1, 2000);
    is_str(x.log, "A Mrest\n", T("unconsumed input is delivered by the loop"));

    /* a signal during the wait */
    {
        struct sigaction sa, old;
        sigset_t block, orig, waitmask;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_usr1;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGUSR1, &sa, &old);
        sigemptyset(&block);
        sigaddset(&block, SIGUSR1);
        sigprocmask(SIG_BLOCK, &block, &orig);
        sigprocmask(SIG_SETMASK, NULL, &waitmask);
        sigdelset(&waitmask, SIGUSR1);
        got_usr1 = 0;
        raise(SIGUSR1);
        t0 = isd_now_ms();
        errno = 0;
        r = isd_conn_fill(c, 3000, &waitmask);
        el = isd_now_ms() - t0;
        ok(r == -1 && errno == EINTR && got_usr1 == 1 && el < 1500,
           T("pending signal, waitmask unblocks it: -1/EINTR at once (%u ms)"),
           (unsigned)el);
        sigprocmask(SIG_SETMASK, &orig, NULL);
        sigaction(SIGUSR1, &old, NULL);
    }

    /* EOF */
    shutdown(c1, SHUT_WR);
    r = isd_conn_fill(c, 2000, NULL);
    is_int(r, 0, T("isd_conn_fill at EOF: 0"));
    ok(isd_conn_flags(c) & ISD_C_EOF, T("ISD_C_EOF set"));
    pump_until(&x, &x.nclose, 1, 2000);
    is_int(x.nclose, 1, T("the loop then calls on_close"));
    is_int(x.lasterr, 0, T("with 0"));
    close(c1);
    teardown(&x);
}

static void test_linger(void)
{
    srvctx x;
    isd_server_cfg cfg = cfg_line(0);
    int c1;
    size_t big = 16u << 20;
    char *p;
    isd_conn *c;
    uint64_t t0;

    cfg.linger_ms = 100;
    if (setup(&x, &cfg) < 0) { fail(T("setup")); teardown(&x); return; }
    x.take_ref = 1;
    c1 = cli_connect(x.port);
    pump_until(&x, &x.naccept, 1, 3000);
    if (!x.nrefd) { fail(T("accepted")); teardown(&x); return; }
    c = x.refd[0];
    p = calloc(1, big);
    isd_conn_write(c, p, big);           /* the client never reads */
    free(p);
    ok(isd_conn_out_bytes(c) > 0, T("output queued (%zu)"), isd_conn_out_bytes(c));
    t0 = isd_now_ms();                  /* the linger timer starts here */
    isd_conn_close(c);
    ok(isd_conn_flags(c) & ISD_C_CLOSING, T("closing, flushing"));
    ok(!isd_conn_is_open(c), T("no longer open"));
    is_int(isd_server_nconns(x.s), 0, T("not counted as open"));
    while (!(isd_conn_flags(c) & ISD_C_CLOSED) && isd_now_ms() - t0 < 3000)
        isd_loop_run_once(x.l, 10, NULL);
    ok(isd_conn_flags(c) & ISD_C_CLOSED,
       T("aborted after linger_ms (%u ms)"), (unsigned)(isd_now_ms() - t0));
    ok(isd_now_ms() - t0 >= 90, T("not before"));
    is_int(x.nclose, 0, T("no on_close"));
    close(c1);
    teardown(&x);
}

static void test_unlisten(void)
{
    srvctx x;
    isd_server_cfg cfg = cfg_line(0);
    int c1, c2, eof;
    char buf[64];
    size_t n;
    isd_addr a;

    if (setup(&x, &cfg) < 0) { fail(T("setup")); teardown(&x); return; }
    x.echo = 1;
    c1 = cli_connect(x.port);
    pump_until(&x, &x.naccept, 1, 3000);
    isd_server_unlisten(x.s);
    ok(!isd_server_listening(x.s), T("unlisten: not listening"));
    errno = 0;
    ok(isd_server_sockaddr(x.s, &a) == -1 && errno == ENOTCONN,
       T("isd_server_sockaddr: -1/ENOTCONN"));
    c2 = cli_connect(x.port);
    ok(c2 < 0, T("new connections are refused"));
    if (c2 >= 0) close(c2);
    cli_sends(&x, c1, "still\n");
    n = cli_recv(&x, c1, buf, sizeof buf, 6, 3000, &eof);
    is_mem(buf, n, "still\n", 6, T("the existing connection is still served"));
    isd_server_unlisten(x.s);
    pass(T("unlisten twice is harmless"));
    close(c1);
    teardown(&x);
}

/* After fork, the child abandons the server and the loop: the parent's
 * connections and listening socket must not notice. */
static void test_abandon(void)
{
    srvctx x;
    isd_server_cfg cfg = cfg_line(0);
    int c1, c2, eof, st = -1;
    char buf[64];
    size_t n;
    pid_t pid;

    if (setup(&x, &cfg) < 0) { fail(T("setup")); teardown(&x); return; }
    x.echo = 1;
    c1 = cli_connect(x.port);
    cli_sends(&x, c1, "before\n");
    n = cli_recv(&x, c1, buf, sizeof buf, 7, 3000, &eof);
    is_mem(buf, n, "before\n", 7, T("served before fork"));

    fflush(stdout);
    fflush(stderr);
    pid = fork();
    if (pid == 0) {
        int good;
        close(c1);
        isd_server_abandon(x.s);
        good = isd_server_nconns(x.s) == 0 && !isd_server_listening(x.s);
        isd_server_free(x.s);
        isd_loop_abandon(x.l);
        _exit(good ? 0 : 1);
    }
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) ;
    ok(WIFEXITED(st) && WEXITSTATUS(st) == 0,
       T("child: isd_server_abandon leaves no connections, no listener"));

    cli_sends(&x, c1, "after\n");
    n = cli_recv(&x, c1, buf, sizeof buf, 6, 3000, &eof);
    is_mem(buf, n, "after\n", 6, T("parent: the connection still works"));
    c2 = cli_connect(x.port);
    cli_sends(&x, c2, "new\n");
    n = cli_recv(&x, c2, buf, sizeof buf, 4, 3000, &eof);
    is_mem(buf, n, "new\n", 4, T("parent: still accepting"));
    close(c1);
    close(c2);
    teardown(&x);
}

static void test_free_with_conns(void)
{
    srvctx x;
    isd_server_cfg cfg = cfg_line(0);
    int c1, eof;
    char buf[64];

    if (setup(&x, &cfg) < 0) { fail(T("setup")); teardown(&x); return; }
    c1 = cli_connect(x.port);
    cli_sends(&x, c1, "partial");
    pump(&x, 30);
    isd_server_free(x.s);
    x.s = NULL;
    {
        size_t n = 0;
        uint64_t end = isd_now_ms() + 2000;
        ssize_t r;
        eof = 0;
        while (isd_now_ms() < end) {
            r = recv(c1, buf, sizeof buf, MSG_DONTWAIT);
            if (r == 0 || (r < 0 && errno != EAGAIN)) { eof = 1; break; }
            if (r > 0) n += (size_t)r;
            msleep(5);
        }
        ok(eof && n == 0, T("isd_server_free closes the connections"));
    }
    is_int(x.nclose, 0, T("without on_close"));
    close(c1);
    teardown(&x);
}

/* a big reply to a slow reader: partial writes, then the rest as the peer
 * reads; and a graceful close delivers all of it */
static void test_backpressure(void)
{
    srvctx x;
    isd_server_cfg cfg = cfg_line(0);
    int c1, eof, bad = 0;
    size_t big = 8u << 20, n, k;
    char *buf;

    if (setup(&x, &cfg) < 0) { fail(T("setup")); teardown(&x); return; }
    x.write_pat = big;
    x.take_ref = 1;
    c1 = cli_connect(x.port);
    cli_sends(&x, c1, "go\n");
    pump_until(&x, &x.nmsg, 1, 3000);
    pump(&x, 10);
    ok(x.nrefd && isd_conn_out_bytes(x.refd[0]) > 0,
       T("8 MiB reply: some of it is still queued (%zu)"),
       x.nrefd ? isd_conn_out_bytes(x.refd[0]) : 0);
    buf = malloc(big + 16);
    n = cli_recv(&x, c1, buf, big + 16, big, 8000, &eof);
    is_int(n, big, T("the client reads all of it"));
    for (k = 0; k < n; k++)
        if (buf[k] != (char)('a' + k % 26 + (k / 26) % 3)) { bad = 1; break; }
    ok(!bad, T("in order"));
    pump(&x, 10);
    ok(x.nrefd && isd_conn_out_bytes(x.refd[0]) == 0, T("nothing left queued"));
    ok(x.nrefd && isd_conn_is_open(x.refd[0]), T("connection still open"));

    /* again, closing right after the write: graceful close flushes it */
    x.close_after_write = 1;
    cli_sends(&x, c1, "go\n");
    n = cli_drain(&x, c1, buf, big + 16, 8000, &eof);
    is_int(n, big, T("isd_conn_close after an 8 MiB write: all of it arrives"));
    is_int(eof, 1, T("then EOF"));
    bad = 0;
    for (k = 0; k < n; k++)
        if (buf[k] != (char)('a' + k % 26 + (k / 26) % 3)) { bad = 1; break; }
    ok(!bad, T("in order"));
    is_int(x.nclose, 0, T("no on_close"));
    free(buf);
    close(c1);
    teardown(&x);
}

static void test_framings(void)
{
    srvctx x;
    isd_server_cfg cfg = cfg_line(0);
    int c1;

    cfg.framing.sep = "\r\n";
    cfg.framing.seplen = 2;
    if (setup(&x, &cfg) < 0) { fail(T("setup")); teardown(&x); return; }
    c1 = cli_connect(x.port);
    cli_sends(&x, c1, "GET / HTTP/1.0\r\nHost: x\r\n\r\nrest\n");
    pump_until(&x, &x.nmsg, 3, 3000);
    pump(&x, 20);
    is_str(x.log, "A MGET / HTTP/1.0\r\n MHost: x\r\n M\r\n",
           T("\\r\\n framing"));
    close(c1);
    teardown(&x);

    cfg = cfg_line(0);
    cfg.framing.kind = ISD_FRAME_RAW;
    cfg.framing.max = 4;
    if (setup(&x, &cfg) < 0) { fail(T("setup")); teardown(&x); return; }
    c1 = cli_connect(x.port);
    cli_sends(&x, c1, "abcdefghij");
    pump_until(&x, &x.nmsg, 3, 3000);
    pump(&x, 20);
    is_str(x.log, "A Mabcd Mefgh Mij", T("RAW framing, max 4"));
    close(c1);
    teardown(&x);
}

static void test_many_clients(void)
{
    enum { N = 150 };
    srvctx x;
    isd_server_cfg cfg = cfg_line(0);
    int c[N], i, good = 0, eof;
    char buf[32], want[32];

    if (setup(&x, &cfg) < 0) { fail(T("setup")); teardown(&x); return; }
    x.echo = 1;
    x.nolog = 1;
    for (i = 0; i < N; i++) {          /* accept as they come: backlog 64 */
        c[i] = cli_connect(x.port);
        isd_loop_run_once(x.l, 0, NULL);
    }
    ok(pump_until(&x, &x.naccept, N, 5000), T("%d clients accepted (%d)"), N, x.naccept);
    is_int(isd_server_nconns(x.s), N, T("%d connections"), N);
    for (i = 0; i < N; i++) {
        snprintf(want, sizeof want, "client %d\n", i);
        cli_sends(&x, c[i], want);
    }
    for (i = 0; i < N; i++) {
        size_t n;
        snprintf(want, sizeof want, "client %d\n", i);
        n = cli_recv(&x, c[i], buf, sizeof buf, strlen(want), 3000, &eof);
        if (n == strlen(want) && memcmp(buf, want, n) == 0) good++;
    }
    is_int(good, N, T("each got its own echo"));
    for (i = 0; i < N; i++) close(c[i]);
    pump(&x, 50);
    is_int(isd_server_nconns(x.s), 0, T("all gone"));
    teardown(&x);
}

/* Several listeners on one server: TCP on 127.0.0.1, every address (an
 * IPv4 client of a dual-stack socket is plain IPv4), and a UNIX socket
 * whose connections know its path; unlisten and take_listeners see all. */
static void test_listeners(void)
{
    srvctx x;
    isd_server_cfg cfg = cfg_line(0);
    isd_listen_opts o = { 16, -1, 0, 0600, 0, 0 };
    char err[256], path[64], buf[64], host[INET6_ADDRSTRLEN];
    int any[2], nany, ufd, c1, c2, c3, eof, fds[8];
    isd_addr a;
    socklen_t len = sizeof a;
    struct sockaddr_un un;
    struct stat st;
    unsigned anyport;
    isd_conn *c;
    size_t n, paths = 0, mapped = 0;

    if (setup(&x, &cfg) < 0) { ok(0, T("setup")); return; }
    x.echo = 1;
    nany = isd_listen_any(0, &o, any, err, sizeof err);
    ok(nany >= 1, T("isd_listen_any (%s)"), nany < 0 ? err : "ok");
    snprintf(path, sizeof path, "/tmp/isd-test-%d.sock", (int)getpid());
    unlink(path);
    ufd = isd_listen_unix(path, &o, err, sizeof err);
    ok(ufd >= 0, T("isd_listen_unix (%s)"), ufd < 0 ? err : "ok");
    ok(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600, T("mode 0600"));
    if (nany < 1 || ufd < 0) { teardown(&x); return; }
    getsockname(any[0], &a.sa, &len);
    anyport = isd_addr_port(&a);
    ok(isd_server_listen_fd(x.s, any[0]) == 0, T("a second listener"));
    if (nany == 2)
        ok(isd_server_listen_fd(x.s, any[1]) == 0, T("and its IPv4 twin"));
    ok(isd_server_listen_fd(x.s, ufd) == 0, T("and a UNIX one"));
    is_int((long)isd_server_nlisteners(x.s), 2 + nany, T("nlisteners"));
    is_int(isd_server_listener_fd(x.s, (size_t)(1 + nany)), ufd, T("listener_fd in order"));
    is_int(isd_server_listener_fd(x.s, (size_t)(2 + nany)), -1, T("listener_fd past the end"));

    {   /* the live socket is not taken over, a regular file not touched */
        int fd2 = isd_listen_unix(path, &o, err, sizeof err);
        ok(fd2 < 0 && errno == EADDRINUSE, T("live UNIX socket: EADDRINUSE (%s)"), err);
    }
    c1 = cli_connect(x.port);
    c2 = cli_connect(anyport);
    memset(&un, 0, sizeof un);
    un.sun_family = AF_UNIX;
    strcpy(un.sun_path, path);
    c3 = cli_connect_to((struct sockaddr *)&un, sizeof un);
    ok(c1 >= 0 && c2 >= 0 && c3 >= 0, T("three clients connect"));
    cli_sends(&x, c1, "one\n");
    cli_sends(&x, c2, "two\n");
    cli_sends(&x, c3, "three\n");
    n = cli_recv(&x, c1, buf, sizeof buf, 4, 3000, &eof);
    ok(n == 4 && memcmp(buf, "one\n", 4) == 0, T("echo on 127.0.0.1"));
    n = cli_recv(&x, c2, buf, sizeof buf, 4, 3000, &eof);
    ok(n == 4 && memcmp(buf, "two\n", 4) == 0, T("echo on the any-address listener"));
    n = cli_recv(&x, c3, buf, sizeof buf, 6, 3000, &eof);
    ok(n == 6 && memcmp(buf, "three\n", 6) == 0, T("echo on the UNIX listener"));
    for (c = isd_server_next_conn(x.s, NULL); c; c = isd_server_next_conn(x.s, c)) {
        const char *p = isd_conn_path(c);
        if (p) {
            paths += strcmp(p, path) == 0
                  && isd_conn_peer(c)->sa.sa_family == AF_UNIX;
        } else if (isd_addr_port(isd_conn_local(c)) == anyport) {
            mapped += isd_conn_peer(c)->sa.sa_family == AF_INET
                && strcmp(isd_addr_host(isd_conn_peer(c), host, sizeof host), "127.0.0.1") == 0
                && strcmp(isd_addr_host(isd_conn_local(c), host, sizeof host), "127.0.0.1") == 0;
        }
    }
    is_int((long)paths, 1, T("the UNIX connection knows its listener's path"));
    is_int((long)mapped, 1, T("IPv4 client of the any-address listener: plain IPv4 on both ends"));
    close(c1);
    close(c2);
    close(c3);
    pump(&x, 50);
    n = isd_server_take_listeners(x.s, fds, 8);
    is_int((long)n, 2 + nany, T("take_listeners hands every fd back"));
    ok(!isd_server_listening(x.s), T("then it listens no more"));
    is_int(fds[1 + nany], ufd, T("in order"));
    ok(isd_server_listen_fd(x.s, fds[0]) == 0 && isd_server_nlisteners(x.s) == 1,
       T("a listener again (a closed one's place)"));
    while (n-- > 1)
        close(fds[n]);
    /* the UNIX socket's fd is closed, its file left: stale now */
    ufd = isd_listen_unix(path, &o, err, sizeof err);
    ok(ufd >= 0, T("a stale socket file is replaced (%s)"), ufd < 0 ? err : "ok");
    if (ufd >= 0)
        close(ufd);
    unlink(path);
    {
        int f = open(path, O_CREAT | O_WRONLY, 0600);
        close(f);
        ufd = isd_listen_unix(path, &o, err, sizeof err);
        ok(ufd < 0 && errno == EEXIST && stat(path, &st) == 0 && S_ISREG(st.st_mode),
           T("a regular file: EEXIST, and it is still there"));
        unlink(path);
    }
    isd_server_unlisten(x.s);
    is_int((long)isd_server_nlisteners(x.s), 0, T("unlisten closes them all"));
    teardown(&x);
}

/* out of descriptors: the pending client is shed (not left hanging),
 * on_error(EMFILE, "accept") is called, and accepting resumes later */
static void test_emfile(void)
{
    srvctx x;
    isd_server_cfg cfg = cfg_line(0);
    struct rlimit rl, old;
    int c1, c2, fill[64], nfill = 0, eof, i;
    char buf[64];
    size_t n;

    if (setup(&x, &cfg) < 0) { fail(T("setup")); teardown(&x); return; }
    x.echo = 1;
    c1 = socket(AF_INET, SOCK_STREAM, 0);
    c2 = socket(AF_INET, SOCK_STREAM, 0);
    getrlimit(RLIMIT_NOFILE, &old);
    rl = old;
    rl.rlim_cur = (rlim_t)(c2 + 8);
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
        note("skip: setrlimit: %s", strerror(errno));
        close(c1); close(c2); teardown(&x);
        return;
    }
    while (nfill < 64) {
        int fd = open("/dev/null", O_RDONLY);
        if (fd < 0) break;
        fill[nfill++] = fd;
    }
    {
        struct sockaddr_in sin;
        memset(&sin, 0, sizeof sin);
        sin.sin_family = AF_INET;
        sin.sin_port = htons((unsigned short)x.port);
        sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        connect(c1, (struct sockaddr *)&sin, sizeof sin);
        fcntl(c1, F_SETFL, fcntl(c1, F_GETFL) | O_NONBLOCK);
        pump(&x, 50);
        ok(strstr(x.log, "Eaccept:") != NULL, T("on_error(.., \"accept\") (%s)"), x.log);
        {
            char want[32];
            snprintf(want, sizeof want, "Eaccept:%d", EMFILE);
            ok(strstr(x.log, want) != NULL, T("with EMFILE"));
        }
        n = cli_drain(&x, c1, buf, sizeof buf, 1000, &eof);
        ok(eof != 0, T("the pending client is closed, not left hanging (%d)"), eof);
        is_int(x.naccept, 0, T("no on_accept"));
        for (i = 0; i < nfill; i++) close(fill[i]);
        setrlimit(RLIMIT_NOFILE, &old);
        connect(c2, (struct sockaddr *)&sin, sizeof sin);
        fcntl(c2, F_SETFL, fcntl(c2, F_GETFL) | O_NONBLOCK);
        cli_sends(&x, c2, "back\n");
        n = cli_recv(&x, c2, buf, sizeof buf, 5, 3000, &eof);
        is_mem(buf, n, "back\n", 5, T("with descriptors again, accepting resumes"));
    }
    close(c1);
    close(c2);
    teardown(&x);
}

static void test_shut_rd(void)
{
    srvctx x;
    isd_server_cfg cfg = cfg_line(0);
    int c1, eof;
    char buf[64];
    size_t n;

    if (setup(&x, &cfg) < 0) { fail(T("setup")); teardown(&x); return; }
    x.take_ref = 1;
    c1 = cli_connect(x.port);
    cli_sends(&x, c1, "one\n");
    pump_until(&x, &x.nmsg, 1, 3000);
    if (!x.nrefd) { fail(T("accepted")); close(c1); teardown(&x); return; }
    is_int(isd_conn_shutdown(x.refd[0], SHUT_RD), 0, T("isd_conn_shutdown SHUT_RD"));
    ok(isd_conn_flags(x.refd[0]) & ISD_C_RDSHUT, T("ISD_C_RDSHUT"));
    cli_sends(&x, c1, "two\n");
    pump(&x, 50);
    is_int(x.nmsg, 1, T("no more messages"));
    is_int(isd_conn_write(x.refd[0], "still\n", 6), 0, T("but writing works"));
    n = cli_recv(&x, c1, buf, sizeof buf, 6, 3000, &eof);
    is_mem(buf, n, "still\n", 6, T("and arrives"));
    errno = 0;
    ok(isd_conn_shutdown(x.refd[0], 12345) == -1 && errno == EINVAL,
       T("isd_conn_shutdown with a bad how: -1/EINVAL"));
    is_int(isd_conn_shutdown(x.refd[0], SHUT_RDWR), 0, T("SHUT_RDWR closes"));
    ok(!isd_conn_is_open(x.refd[0]), T("closed"));
    n = cli_drain(&x, c1, buf, sizeof buf, 3000, &eof);
    ok(eof != 0, T("client sees the end"));
    close(c1);
    teardown(&x);
}

/* handlers writing to, and closing, other connections */
static void test_cross(void)
{
    srvctx x;
    isd_server_cfg cfg = cfg_line(0);
    int c1, c2, c3, eof, eof2;
    char buf[64];
    size_t n, n2;

    if (setup(&x, &cfg) < 0) { fail(T("setup")); teardown(&x); return; }
    x.greet = 1;
    c1 = cli_connect(x.port);
    n = cli_recv(&x, c1, buf, sizeof buf, 6, 3000, &eof);
    is_mem(buf, n, "hello\n", 6, T("a greeting written in on_accept arrives"));
    c2 = cli_connect(x.port);
    n = cli_recv(&x, c2, buf, sizeof buf, 6, 3000, &eof);
    x.greet = 0;

    x.broadcast = 1;
    cli_sends(&x, c1, "to all\n");
    n = cli_recv(&x, c1, buf, sizeof buf, 7, 3000, &eof);
    is_mem(buf, n, "to all\n", 7, T("broadcast: the sender gets it"));
    n = cli_recv(&x, c2, buf, sizeof buf, 7, 3000, &eof);
    is_mem(buf, n, "to all\n", 7, T("broadcast: the other one too"));
    x.broadcast = 0;

    /* both send in the same instant: whoever is handled first closes the
     * other, whose message must then not be delivered */
    x.close_others = 1;
    x.nmsg = 0;
    x.loglen = 0; x.log[0] = 0;
    send(c1, "x\n", 2, MSG_NOSIGNAL);
    send(c2, "y\n", 2, MSG_NOSIGNAL);
    msleep(20);                         /* both readable in one batch */
    pump(&x, 50);
    is_int(x.nmsg, 1, T("a connection closed by another's handler gets no message"));
    n = cli_drain(&x, c1, buf, sizeof buf, 500, &eof);
    n2 = cli_drain(&x, c2, buf, sizeof buf, 500, &eof2);
    ok((eof == 1) != (eof2 == 1), T("exactly one of the two was closed"));
    is_int(isd_server_nconns(x.s), 1, T("one connection left"));
    is_int(x.nclose, 0, T("no on_close for the closed one"));
    (void)n; (void)n2;
    x.close_others = 0;
    close(c1);
    close(c2);
    pump_until(&x, &x.nclose, 1, 3000);  /* the survivor's EOF */
    pump(&x, 20);
    is_int(isd_server_nconns(x.s), 0, T("none left"));

    /* closing inside on_close (EOF and error paths) is harmless */
    x.close_in_close = 1;
    x.nclose = 0;
    c3 = cli_connect(x.port);
    shutdown(c3, SHUT_WR);
    pump_until(&x, &x.nclose, 1, 3000);
    cli_drain(&x, c3, buf, sizeof buf, 1000, &eof);
    ok(x.nclose == 1 && eof == 1, T("isd_conn_close inside on_close(0)"));
    close(c3);
    c3 = cli_connect(x.port);
    pump(&x, 20);
    rst_close(c3);
    pump_until(&x, &x.nclose, 2, 3000);
    pump(&x, 20);
    ok(x.nclose == 2 && x.lasterr == ECONNRESET,
       T("isd_conn_close inside on_close(ECONNRESET)"));
    is_int(isd_server_nconns(x.s), 0, T("no connections"));
    teardown(&x);
}

/* on_ready (PULL only): one call per batch of events, for every connection
 * with input; turns that stop early; a queue left alone; a connection
 * closed by another's turn while queued. */
static void test_ready(void)
{
    srvctx x;
    isd_server_cfg cfg = cfg_line(0);
    int c[3], i, eof;
    char buf[64];
    size_t n;

    if (!PULL) { pass(T("on_message server: nothing to test")); return; }
    if (setup(&x, &cfg) < 0) { fail(T("setup")); teardown(&x); return; }
    x.echo = 1;
    ok(isd_server_ready(x.s) == NULL, T("nothing queued: isd_server_ready NULL"));
    {
        isd_conn *v[2];
        is_int((int)isd_server_ready_ahead(x.s, v, 2), 0,
               T("nothing queued: isd_server_ready_ahead 0"));
    }
    for (i = 0; i < 3; i++)
        c[i] = cli_connect(x.port);
    ok(pump_until(&x, &x.naccept, 3, 3000), T("three clients"));
    x.nready = 0;
    for (i = 0; i < 3; i++)
        cli_sends(&x, c[i], "x\n");
    ok(pump_until(&x, &x.nmsg, 3, 3000), T("three messages"));
    is_int(x.nready, 1, T("in one on_ready call"));
    is_int(x.ready_conns, 3, T("which took the three connections"));
    is_int(x.ahead, 3, T("isd_server_ready_ahead saw the three queued"));
    is_int(x.ahead2, 2, T("and no more than it was asked for"));
    is_int(x.ahead_bad, 0, T("in the order isd_server_ready gave them"));
    for (i = 0; i < 3; i++) {
        n = cli_recv(&x, c[i], buf, sizeof buf, 2, 3000, &eof);
        is_mem(buf, n, "x\n", 2, T("client %d answered"), i);
    }

    /* one message a turn: the rest in later rounds, in order */
    x.loglen = 0; x.log[0] = 0; x.nmsg = 0; x.nready = 0;
    x.ready_max = 1;
    cli_sends(&x, c[0], "a\nb\nc\n");
    ok(pump_until(&x, &x.nmsg, 3, 3000), T("a, b, c delivered"));
    is_str(x.log, "Ma\n Mb\n Mc\n", T("in order, each once"));
    ok(x.nready >= 3, T("a turn each (%d on_ready calls)"), x.nready);
    n = cli_recv(&x, c[0], buf, sizeof buf, 6, 3000, &eof);
    is_mem(buf, n, "a\nb\nc\n", 6, T("all answered"));
    x.ready_max = 0;

    /* an on_ready that takes nothing: the queue is dropped, not spun on */
    x.loglen = 0; x.log[0] = 0; x.nmsg = 0; x.nready = 0;
    x.ready_leave = 1;
    cli_sends(&x, c[1], "lost\n");
    pump(&x, 50);
    is_int(x.nmsg, 0, T("left in the queue: not delivered"));
    ok(x.nready >= 1 && x.nready < 20, T("on_ready called, not in a loop (%d)"),
       x.nready);
    x.ready_leave = 0;
    cli_sends(&x, c[1], "kept\n");
    ok(pump_until(&x, &x.nmsg, 1, 3000), T("the next message is delivered"));
    is_str(x.log, "Mkept\n", T("it alone"));
    n = cli_recv(&x, c[1], buf, sizeof buf, 5, 3000, &eof);
    is_mem(buf, n, "kept\n", 5, T("and answered"));

    /* a turn closes the other queued connections: their turns find nothing */
    x.loglen = 0; x.log[0] = 0; x.nmsg = 0;
    x.close_others = 1;
    x.take_ref = 0;
    for (i = 0; i < 3; i++)
        cli_sends(&x, c[i], "y\n");
    ok(pump_until(&x, &x.nmsg, 1, 3000), T("one delivered"));
    pump(&x, 50);
    is_int(x.nmsg, 1, T("only one: the others were closed while queued"));
    is_int((int)isd_server_nconns(x.s), 1, T("one connection left"));
    for (i = 0; i < 3; i++)
        close(c[i]);
    teardown(&x);
}

/* ------------------------------------ idle timeout, max_conns, high water,
 * pause (cfg.idle_ms, cfg.max_conns, cfg.high_water/low_water, on_drain,
 * isd_conn_pause, isd_conn_set_idle, isd_server_set_max_conns) */

/* idle_ms: a silent connection fails with ETIMEDOUT after idle_ms, its
 * queued output still delivered (a graceful close); one that keeps sending
 * lives on; isd_conn_set_idle sets it per connection, counted from the
 * call; a paused connection's clock stands still. */
static void test_idle(void)
{
    srvctx x;
    isd_server_cfg cfg = cfg_line(0);
    int c1, eof, bad, k;
    uint64_t t0, el;
    char buf[64], *big;
    size_t n, i, bigsz = 8u << 20;
    isd_conn *c;

    cfg.idle_ms = 200;
    if (setup(&x, &cfg) < 0) { fail(T("setup")); teardown(&x); return; }
    x.greet = 1;
    x.take_ref = 1;

    /* a silent client */
    t0 = isd_now_ms();
    c1 = cli_connect(x.port);
    ok(pump_until(&x, &x.naccept, 1, 3000), T("accepted"));
    if (x.nrefd != 1) { fail(T("took a reference")); close(c1); teardown(&x); return; }
    c = x.refd[0];
    is_int(isd_conn_idle(c), 200, T("isd_conn_idle: cfg.idle_ms"));
    is_int(x.idle_seen, 200, T("already in on_accept"));
    ok(pump_until(&x, &x.nclose, 1, 3000), T("a silent client: on_close"));
    is_int(x.lasterr, ETIMEDOUT, T("with ETIMEDOUT"));
    el = x.tclose - t0;
    ok(el >= 180 && el < 1000, T("after idle_ms (%u ms)"), (unsigned)el);
    n = cli_drain(&x, c1, buf, sizeof buf, 3000, &eof);
    is_mem(buf, n, "hello\n", 6, T("the greeting queued before it arrives"));
    is_int(eof, 1, T("then EOF (closed gracefully)"));
    is_int(isd_server_nconns(x.s), 0, T("connection gone"));
    ok(isd_conn_flags(c) & ISD_C_CLOSED, T("ISD_C_CLOSED"));
    close(c1);

    /* a silent client that does not read either: what is still queued at
     * the timeout is delivered (within linger_ms) */
    x.greet = 0;
    x.greet_pat = bigsz;
    x.nclose = 0;
    c1 = cli_connect(x.port);
    ok(pump_until(&x, &x.naccept, 2, 3000), T("accepted"));
    if (x.nrefd != 2) { fail(T("took a reference")); close(c1); teardown(&x); return; }
    c = x.refd[1];
    ok(isd_conn_out_bytes(c) > 0, T("8 MiB greeting: some of it still queued (%zu)"),
       isd_conn_out_bytes(c));
    ok(pump_until(&x, &x.nclose, 1, 3000), T("on_close"));
    is_int(x.lasterr, ETIMEDOUT, T("with ETIMEDOUT"));
    big = malloc(bigsz + 16);
    n = cli_drain(&x, c1, big, bigsz + 16, 8000, &eof);
    is_int(n, bigsz, T("the client then reads all of the queued output"));
    for (bad = 0, i = 0; i < n; i++)
        if (big[i] != pat_at(i)) { bad = 1; break; }
    ok(!bad, T("in order"));
    is_int(eof, 1, T("then EOF"));
    free(big);
    close(c1);
    x.greet_pat = 0;

    /* a client sending a line every 80 ms is not idle */
    x.nclose = 0;
    x.nmsg = 0;
    c1 = cli_connect(x.port);
    ok(pump_until(&x, &x.naccept, 3, 3000), T("accepted"));
    for (k = 0; k < 8; k++) {
        t0 = isd_now_ms();
        cli_sends(&x, c1, "ping\n");
        pump(&x, 80);
    }
    is_int(x.nmsg, 8, T("8 lines delivered"));
    is_int(x.nclose, 0, T("a line every 80 ms for 640 ms: not timed out"));
    ok(x.nrefd == 3 && isd_conn_is_open(x.refd[2]), T("still open"));
    ok(pump_until(&x, &x.nclose, 1, 3000), T("once it stops: on_close"));
    el = x.tclose - t0;
    ok(x.lasterr == ETIMEDOUT && el >= 180 && el < 1000,
       T("ETIMEDOUT, idle_ms after its last line (%u ms)"), (unsigned)el);
    close(c1);

    /* isd_conn_set_idle(c, 0) in on_accept: never */
    x.nclose = 0;
    x.set_idle = 1;
    x.idle_val = 0;
    c1 = cli_connect(x.port);
    ok(pump_until(&x, &x.naccept, 4, 3000), T("accepted"));
    is_int(x.idle_seen, 0, T("isd_conn_set_idle(c, 0) in on_accept: isd_conn_idle 0"));
    pump(&x, 450);
    is_int(x.nclose, 0, T("a silent connection without idle timeout: open after 450 ms"));
    if (x.nrefd == 4) {
        c = x.refd[3];
        ok(isd_conn_is_open(c), T("still open"));
        t0 = isd_now_ms();
        isd_conn_set_idle(c, 100);
        is_int(isd_conn_idle(c), 100, T("isd_conn_set_idle(c, 100): isd_conn_idle 100"));
        ok(pump_until(&x, &x.nclose, 1, 3000), T("then it times out"));
        el = x.tclose - t0;
        ok(x.lasterr == ETIMEDOUT && el >= 90 && el < 1000,
           T("ETIMEDOUT, 100 ms counted from the call (%u ms)"), (unsigned)el);
    }
    close(c1);
    x.set_idle = 0;

    /* a paused connection is not timed out; resumed, its clock restarts */
    x.nclose = 0;
    c1 = cli_connect(x.port);
    ok(pump_until(&x, &x.naccept, 5, 3000), T("accepted"));
    if (x.nrefd == 5) {
        c = x.refd[4];
        isd_conn_pause(c, 1);
        ok(isd_conn_flags(c) & ISD_C_PAUSED, T("isd_conn_pause(c, 1): ISD_C_PAUSED"));
        pump(&x, 500);
        is_int(x.nclose, 0, T("paused: not timed out after 500 ms (idle 200)"));
        t0 = isd_now_ms();
        isd_conn_pause(c, 0);
        ok(!(isd_conn_flags(c) & ISD_C_PAUSED), T("isd_conn_pause(c, 0): cleared"));
        ok(pump_until(&x, &x.nclose, 1, 3000), T("resumed and silent: on_close"));
        el = x.tclose - t0;
        ok(x.lasterr == ETIMEDOUT && el >= 170 && el < 1000,
           T("ETIMEDOUT, idle_ms after the resume (%u ms)"), (unsigned)el);
    }
    close(c1);

    /* a line that arrives during a long wait (the way an embedder runs
     * the loop: one wait until the next timer) restarts the clock from
     * when it came, not from when the loop last woke before that */
    x.nclose = 0;
    x.nmsg = 0;
    x.loglen = 0; x.log[0] = 0;
    c1 = cli_connect(x.port);
    ok(pump_until(&x, &x.naccept, 6, 3000), T("accepted"));
    {
        pid_t pid;
        uint64_t ta = x.taccept;
        fflush(stdout);
        fflush(stderr);
        pid = fork();
        if (pid == 0) {
            msleep(150);
            send(c1, "late\n", 5, MSG_NOSIGNAL);
            _exit(0);
        }
        while (!x.nclose && isd_now_ms() - ta < 320) {
            int left = 320 - (int)(isd_now_ms() - ta);
            isd_loop_run_once(x.l, left > 0 ? left : 0, NULL);
        }
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) ;
        /* (on_ready reads in the hook, after the clock was updated) */
        is_str(x.log, "A Mlate\n", T("a line 150 ms in, read after one long wait"));
        if (!is_int(x.nclose, 0, T("no timeout 320 ms after accept: that line "
                    "was activity")))
            note("on_close(%d) %u ms after accept", x.lasterr,
                 (unsigned)(x.tclose - ta));
        ok(pump_until(&x, &x.nclose, 1, 3000), T("then it times out"));
        el = x.tclose - ta;
        ok(x.lasterr == ETIMEDOUT && el >= 330,
           T("idle_ms after that line (%u ms after accept)"), (unsigned)el);
    }
    close(c1);
    teardown(&x);
}

/* max_conns: the clients above it wait in the backlog (connect succeeds,
 * no on_accept) until one closes; isd_server_set_max_conns moves the limit
 * at once, either way */
static void test_max_conns(void)
{
    srvctx x;
    isd_server_cfg cfg = cfg_line(0);
    int c[6], i, eof;
    char buf[64];
    size_t n;
    ssize_t r;

    cfg.max_conns = 2;
    if (setup(&x, &cfg) < 0) { fail(T("setup")); teardown(&x); return; }
    x.echo = 1;
    c[0] = cli_connect(x.port);
    c[1] = cli_connect(x.port);
    ok(pump_until(&x, &x.naccept, 2, 3000), T("two clients accepted"));
    c[2] = cli_connect(x.port);
    ok(c[2] >= 0, T("a third client's connect succeeds (the backlog)"));
    cli_sends(&x, c[2], "third\n");
    pump(&x, 200);
    is_int(x.naccept, 2, T("max_conns 2: no on_accept for it while two are open"));
    is_int(isd_server_nconns(x.s), 2, T("two connections"));
    r = recv(c[2], buf, sizeof buf, MSG_DONTWAIT);
    ok(r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK),
       T("it is not served (nor closed)"));
    close(c[0]);
    ok(pump_until(&x, &x.naccept, 3, 3000), T("one closes: the third is accepted"));
    n = cli_recv(&x, c[2], buf, sizeof buf, 6, 3000, &eof);
    is_mem(buf, n, "third\n", 6, T("and served what it sent while waiting"));
    is_int(isd_server_nconns(x.s), 2, T("two connections"));
    ok(x.max_open <= 2, T("never more than two open (%zu)"), x.max_open);

    /* raising the limit accepts the waiting clients at once */
    c[3] = cli_connect(x.port);
    c[4] = cli_connect(x.port);
    pump(&x, 100);
    is_int(x.naccept, 3, T("two more wait"));
    isd_server_set_max_conns(x.s, 3);
    is_int(isd_server_config(x.s)->max_conns, 3, T("isd_server_set_max_conns(s, 3)"));
    for (i = 0; i < 3 && x.naccept < 4; i++)
        isd_loop_run_once(x.l, 100, NULL);
    is_int(x.naccept, 4, T("one of them accepted at the next isd_loop_run_once (%d)"),
           i);
    pump(&x, 100);
    is_int(x.naccept, 4, T("only one"));
    is_int(isd_server_nconns(x.s), 3, T("three connections"));
    ok(x.max_open <= 3, T("never more than three open (%zu)"), x.max_open);

    /* lowering it below the number open closes nothing, accepts nothing
     * until they are down below the new limit */
    isd_server_set_max_conns(x.s, 1);
    c[5] = cli_connect(x.port);
    pump(&x, 100);
    ok(x.naccept == 4 && isd_server_nconns(x.s) == 3,
       T("isd_server_set_max_conns(s, 1) with three open: none closed, none accepted"));
    close(c[1]);
    close(c[2]);
    ok(pump_until(&x, &x.nclose, 3, 3000), T("two of them leave"));
    pump(&x, 100);
    ok(x.naccept == 4 && isd_server_nconns(x.s) == 1,
       T("one open, limit 1: still none accepted"));
    close(c[3]);
    ok(pump_until(&x, &x.naccept, 5, 3000), T("the last leaves: one accepted"));
    pump(&x, 100);
    ok(x.naccept == 5 && isd_server_nconns(x.s) == 1, T("only one"));
    isd_server_set_max_conns(x.s, 0);
    ok(pump_until(&x, &x.naccept, 6, 3000),
       T("isd_server_set_max_conns(s, 0): no limit, the other accepted"));
    is_int(isd_server_nconns(x.s), 2, T("two connections"));
    cli_sends(&x, c[5], "last\n");
    n = cli_recv(&x, c[5], buf, sizeof buf, 5, 3000, &eof);
    is_mem(buf, n, "last\n", 5, T("and served"));
    for (i = 3; i < 6; i++) close(c[i]);
    teardown(&x);
}

/* high_water: a client that pipelines requests and does not read has its
 * input held once the replies queue above high_water; when it reads,
 * on_drain, and every answer arrives, in order */
static void test_high_water(void)
{
    enum { N = 200, R = 4096 };
    srvctx x;
    isd_server_cfg cfg = cfg_line(0);
    int c1, c2, eof, bad, k, drains;
    char *req, *buf;
    size_t n, len = 0;
    isd_conn *c;

    cfg.high_water = 8192;
    cfg.low_water = 0;
    if (setup(&x, &cfg) < 0) { fail(T("setup")); teardown(&x); return; }
    x.reply_size = R;
    x.small_sndbuf = 8192;      /* so the kernel cannot take it all */
    x.take_ref = 1;
    x.nolog = 1;
    c1 = cli_connect_rcvbuf(x.port, 8192);
    ok(pump_until(&x, &x.naccept, 1, 3000), T("accepted"));
    if (x.nrefd != 1) { fail(T("took a reference")); close(c1); teardown(&x); return; }
    c = x.refd[0];
    req = malloc((size_t)N * 16);
    for (k = 0; k < N; k++)
        len += (size_t)snprintf(req + len, 16, "line %03d\n", k);
    cli_send(&x, c1, req, len);         /* 200 requests in one write */
    pump(&x, 300);
    ok(x.nmsg > 0 && x.nmsg <= N / 4,
       T("the client does not read: delivery stops well below %d (%d)"), N, x.nmsg);
    ok(isd_conn_flags(c) & ISD_C_HIGH, T("ISD_C_HIGH set"));
    is_int(x.held_msgs, 0, T("no message delivered while ISD_C_HIGH was set"));
    ok(x.max_out <= cfg.high_water + R,
       T("queued output stays within high_water + one reply (most: %zu)"), x.max_out);

    buf = malloc((size_t)N * R + 16);
    n = cli_recv(&x, c1, buf, (size_t)N * R + 16, (size_t)N * R, 10000, &eof);
    is_int(n, (size_t)N * R, T("the client reads: all %d answers arrive"), N);
    for (bad = 0, k = 0; k < N && (size_t)(k + 1) * R <= n; k++) {
        char want[32];
        snprintf(want, sizeof want, "line %03d", k);
        if (memcmp(buf + (size_t)k * R, want, 8) != 0
            || buf[(size_t)k * R + R - 1] != '\n') {
            diag("answer %d is wrong", k);
            bad = 1;
            break;
        }
    }
    ok(!bad, T("in order"));
    is_int(x.nmsg, N, T("all %d messages delivered"), N);
    ok(x.ndrain >= 1, T("on_drain was called (%d times)"), x.ndrain);
    is_int(x.drain_bad, 0, T("on_drain: ISD_C_HIGH clear, output down to low_water"));
    pump(&x, 20);
    ok(!(isd_conn_flags(c) & ISD_C_HIGH) && isd_conn_out_bytes(c) == 0,
       T("at the end: ISD_C_HIGH clear, nothing queued"));
    ok(isd_conn_is_open(c), T("still open"));
    free(buf);
    free(req);

    /* a connection that never goes above high water: no on_drain */
    drains = x.ndrain;
    c2 = cli_connect(x.port);
    ok(pump_until(&x, &x.naccept, 2, 3000), T("a second client"));
    buf = malloc(R);
    for (k = 0; k < 3; k++) {
        cli_sends(&x, c2, "one\n");
        n = cli_recv(&x, c2, buf, R, R, 3000, &eof);
        is_int(n, R, T("answer %d"), k);
    }
    free(buf);
    pump(&x, 30);
    is_int(x.ndrain, drains, T("never above high water: no on_drain"));
    ok(x.nrefd == 2 && !(isd_conn_flags(x.refd[1]) & ISD_C_HIGH), T("nor ISD_C_HIGH"));
    close(c1);
    close(c2);
    teardown(&x);
}

/* isd_conn_pause: held input is neither read nor delivered; on resume
 * (from outside any handler) what is buffered is delivered by the next
 * isd_loop_run_once, without new bytes from the peer */
static void test_pause(void)
{
    srvctx x;
    isd_server_cfg cfg = cfg_line(0);
    int c1, eof;
    char buf[64];
    size_t n, inlen;
    isd_conn *c;

    if (setup(&x, &cfg) < 0) { fail(T("setup")); teardown(&x); return; }
    x.echo = 1;
    x.take_ref = 1;
    x.pause_first = 1;
    c1 = cli_connect(x.port);
    cli_sends(&x, c1, "a\nb\nc\n");
    ok(pump_until(&x, &x.nmsg, 1, 3000), T("a delivered"));
    pump(&x, 100);
    if (x.nrefd != 1) { fail(T("took a reference")); close(c1); teardown(&x); return; }
    c = x.refd[0];
    is_str(x.log, "A Ma\n", T("paused in on_message for a: b and c (same read) "
           "not delivered"));
    is_int(x.held_msgs, 0, T("no message delivered while paused"));
    ok(isd_conn_flags(c) & ISD_C_PAUSED, T("ISD_C_PAUSED"));
    n = cli_recv(&x, c1, buf, sizeof buf, 2, 1000, &eof);
    is_mem(buf, n, "a\n", 2, T("a answered"));

    x.loglen = 0; x.log[0] = 0;
    isd_conn_pause(c, 0);
    ok(!(isd_conn_flags(c) & ISD_C_PAUSED), T("isd_conn_pause(c, 0) outside a handler"));
    isd_loop_run_once(x.l, 0, NULL);
    is_str(x.log, "Mb\n Mc\n", T("b and c at the next isd_loop_run_once, "
           "the client sending nothing"));
    n = cli_recv(&x, c1, buf, sizeof buf, 4, 1000, &eof);
    is_mem(buf, n, "b\nc\n", 4, T("answered"));

    /* paused from outside: what arrives meanwhile waits in the kernel */
    x.loglen = 0; x.log[0] = 0;
    x.held_msgs = 0;
    isd_conn_pause(c, 1);
    cli_sends(&x, c1, "d\n");
    pump(&x, 100);
    is_str(x.log, "", T("paused: d not delivered"));
    isd_conn_in(c, &inlen);
    is_int(inlen, 0, T("nor read"));
    isd_conn_pause(c, 0);
    ok(pump_until(&x, &x.nmsg, 4, 3000), T("resumed: d delivered"));
    is_str(x.log, "Md\n", T("it alone"));
    is_int(x.held_msgs, 0, T("no message delivered while paused"));

    /* paused while the peer sends and leaves: all of it after the resume */
    x.loglen = 0; x.log[0] = 0;
    isd_conn_pause(c, 1);
    cli_sends(&x, c1, "e\nf");
    shutdown(c1, SHUT_WR);
    pump(&x, 100);
    ok(x.loglen == 0 && x.nclose == 0, T("paused: neither e nor the EOF seen (%s)"),
       x.log);
    isd_conn_pause(c, 0);
    ok(pump_until(&x, &x.nclose, 1, 3000), T("resumed: on_close"));
    is_str(x.log, "Me\n Mf C0", T("after e and the unterminated f"));
    n = cli_drain(&x, c1, buf, sizeof buf, 3000, &eof);
    is_mem(buf, n, "d\ne\nf", 5, T("answers, then EOF (%d)"), eof);
    close(c1);

    /* on a closed connection: harmless */
    ok(isd_conn_flags(c) & ISD_C_CLOSED, T("closed"));
    isd_conn_pause(c, 1);
    ok(!(isd_conn_flags(c) & ISD_C_PAUSED), T("isd_conn_pause(c, 1) on a closed "
       "connection: no ISD_C_PAUSED"));
    isd_conn_pause(c, 0);
    isd_conn_set_idle(c, 10);
    pump(&x, 50);
    is_int(x.nclose, 1, T("pause, resume, set_idle on it: no second on_close"));
    ok(isd_conn_flags(c) & ISD_C_CLOSED, T("still closed"));
    teardown(&x);
}

static void test_close_in_message_close(void) { test_close_in_message(0); }
static void test_close_in_message_abort(void) { test_close_in_message(1); }
static void test_close_in_message_fail(void)  { test_close_in_message(2); }

/* each test function runs in a child process: a crash fails it alone */
#define RUN(fn) do { \
        char name_[64]; \
        snprintf(name_, sizeof name_, "[%s%s] %s", BE ? BE : "-", \
                 PULL ? " pull" : "", #fn); \
        tap_subtest(fn, name_); \
    } while (0)

int main(void)
{
    char list[256], *save = NULL, *name;
    int nbe = 0;

    alarm(120);
    signal(SIGPIPE, SIG_DFL);            /* the core must not raise it */

    RUN(test_sockets);

    snprintf(list, sizeof list, "%s", isd_backends());
    for (name = strtok_r(list, " ", &save); name; name = strtok_r(NULL, " ", &save))
    for (PULL = 0; PULL < 2; PULL++) {
        BE = name;
        nbe += !PULL;
        note("backend %s, %s", BE, PULL ? "on_ready" : "on_message");
        RUN(test_echo);
        RUN(test_eof);
        RUN(test_max);
        RUN(test_next);
        RUN(test_ready);
        RUN(test_close_in_message_close);
        RUN(test_close_in_message_abort);
        RUN(test_close_in_message_fail);
        RUN(test_msg_after_close);
        RUN(test_close_all);
        RUN(test_refs);
        RUN(test_refuse);
        RUN(test_enobufs);
        RUN(test_reset);
        RUN(test_sigpipe);
        RUN(test_volume);
        RUN(test_unread_and_shutdown);
        RUN(test_fill);
        RUN(test_linger);
        RUN(test_unlisten);
        RUN(test_abandon);
        RUN(test_free_with_conns);
        RUN(test_backpressure);
        RUN(test_framings);
        RUN(test_many_clients);
        RUN(test_emfile);
        RUN(test_shut_rd);
        RUN(test_cross);
        RUN(test_idle);
        RUN(test_max_conns);
        RUN(test_high_water);
        RUN(test_pause);
        RUN(test_listeners);
    }
    ok(nbe >= 1, "tested %d backend(s)", nbe);
    return done_testing();
}
