/*
 * isd-load.c - load and fault client for the reliability suite (xt/).
 *
 * One epoll loop driving many non-blocking client sockets against a line
 * echo server on 127.0.0.1 (every line sent must come back byte-exact; a
 * line starting with 'q' must come back and then be followed by the server
 * closing).  Modes:
 *
 *   hold  -n N [-c INFLIGHT] [-h SECS]
 *         open N connections (at most INFLIGHT connects at once), prove each
 *         with a request and reply, print "phase1 ...", keep all N open for
 *         SECS, then prove every one again at once ("phase2 ...").
 *   short -n TOTAL -c CONCURRENCY
 *         TOTAL short connections, CONCURRENCY at a time: connect, one line,
 *         its reply, close (every other one asks the server to close: "q").
 *   pipe  -n CONNS -l LINES
 *         CONNS connections each pipelining LINES numbered lines; every reply
 *         is checked in order.
 *   loris -n N -s SECS [-i MS]
 *         N connections that each send one byte per second of a line for
 *         SECS seconds, then its end; meanwhile a probe connection sends a
 *         line every MS ms (default 50) and its reply latency is recorded.
 *         Every trickled line must finally come back whole.
 *   flood -n N -s SECS
 *         connect N sockets as fast as possible, send nothing, hold them
 *         SECS, close them all.  Counts connects and server-side closes.
 *
 * Common: -p PORT (required), -t DEADLINE seconds (default 120).  Results
 * are "key value" lines on stdout (flushed as they come); problems are
 * "error: ..." lines on stderr.  Exit 0 when every check passed, 1 when one
 * failed, 2 on the deadline.  Linux only (epoll), like the tests using it.
 */
#define _GNU_SOURCE 1
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { ST_FREE = 0, ST_CONNECTING, ST_SENDING, ST_WAITING, ST_IDLE,
       ST_WAITEOF, ST_TRICKLE, ST_DONE };

typedef struct conn {
    int      fd;
    int      state;
    unsigned id;
    unsigned events;          /* current epoll interest */
    char    *out;             /* pending output */
    size_t   outlen, outoff, outcap;
    char    *in;              /* input not yet matched */
    size_t   inlen, incap;
    char     expect[64];      /* the reply expected (one line) */
    size_t   explen;
    /* pipe mode */
    uint64_t sent_lines, got_lines;
    /* loris mode */
    size_t   trickled;
    double   t0;
} conn;

static const char *mode;
static unsigned port;
static double deadline_at;
static int ep = -1;
static unsigned n_opt = 100, c_opt = 256, l_opt = 1000, i_opt = 50;
static double h_opt = 1, s_opt = 5;
static int failed;            /* a check failed */
static unsigned long n_errors;

/* counters */
static unsigned long c_connected, c_refused, c_connfail, c_reset, c_badreply,
                     c_eof_early, c_ok, c_closed_by_server, c_addrnotavail;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void out(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
}

static void err(const char *fmt, ...)
{
    va_list ap;
    n_errors++;
    failed = 1;
    if (n_errors > 20)
        return;                    /* the counters say the rest */
    fputs("error: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static void die(const char *fmt, ...)
{
    va_list ap;
    fputs("fatal: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n);
    if (!p)
        die("out of memory");
    return p;
}

static void set_interest(conn *c, unsigned ev)
{
    struct epoll_event e;
    int op;

    if (ev == c->events)
        return;
    e.events = ev;
    e.data.ptr = c;
    op = !ev ? EPOLL_CTL_DEL : !c->events ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
    if (epoll_ctl(ep, op, c->fd, &e) < 0)
        die("epoll_ctl: %s", strerror(errno));
    c->events = ev;
}

static void raise_nofile(rlim_t want)
{
    struct rlimit r;

    if (getrlimit(RLIMIT_NOFILE, &r) < 0)
        return;
    if (r.rlim_max != RLIM_INFINITY && r.rlim_max < want) {
        struct rlimit t = { want, want };
        if (setrlimit(RLIMIT_NOFILE, &t) == 0)
            return;                 /* root: raised past the hard limit */
    }
    r.rlim_cur = r.rlim_max == RLIM_INFINITY || r.rlim_max > want ? want
                                                                  : r.rlim_max;
    setrlimit(RLIMIT_NOFILE, &r);
}

/* Start a non-blocking connect; 0 ok (maybe in progress), -1 failed. */
static int start_connect(conn *c)
{
    struct sockaddr_in sa;
    int one = 1, r;

    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        err("socket: %s", strerror(errno));
        return -1;
    }
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    c->events = 0;
    c->outlen = c->outoff = c->inlen = 0;
    r = connect(c->fd, (struct sockaddr *)&sa, sizeof sa);
    if (r < 0 && errno != EINPROGRESS) {
        if (errno == ECONNREFUSED)
            c_refused++;
        else if (errno == EADDRNOTAVAIL)
            c_addrnotavail++;
        else
            c_connfail++;
        err("connect: %s", strerror(errno));
        close(c->fd);
        c->fd = -1;
        return -1;
    }
    c->state = ST_CONNECTING;
    set_interest(c, EPOLLOUT);
    return 0;
}

static void conn_close(conn *c)
{
    if (c->fd >= 0) {
        if (c->events)
            set_interest(c, 0);
        close(c->fd);
    }
    c->fd = -1;
    c->events = 0;
    c->state = ST_DONE;
}

static void queue_out(conn *c, const char *p, size_t n)
{
    if (c->outoff && c->outoff == c->outlen)
        c->outoff = c->outlen = 0;
    if (c->outlen + n > c->outcap) {
        c->outcap = (c->outlen + n) * 2 + 64;
        c->out = xrealloc(c->out, c->outcap);
    }
    memcpy(c->out + c->outlen, p, n);
    c->outlen += n;
}

/* Write what is queued.  0 ok, -1 the connection failed (closed). */
static int flush_out(conn *c)
{
    while (c->outoff < c->outlen) {
        ssize_t w = send(c->fd, c->out + c->outoff, c->outlen - c->outoff,
                         MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                break;
            if (errno == ECONNRESET || errno == EPIPE)
                c_reset++;
            err("conn %u: send: %s", c->id, strerror(errno));
            conn_close(c);
            return -1;
        }
        c->outoff += (size_t)w;
    }
    return 0;
}

/* Read what is there.  >0 bytes, 0 EOF, -1 nothing (EAGAIN), -2 error
 * (the connection is closed and counted). */
static ssize_t read_in(conn *c)
{
    ssize_t n, total = 0;

    for (;;) {
        if (c->incap - c->inlen < 65536) {
            c->incap = c->inlen + 131072;
            c->in = xrealloc(c->in, c->incap);
        }
        n = recv(c->fd, c->in + c->inlen, c->incap - c->inlen, 0);
        if (n > 0) {
            c->inlen += (size_t)n;
            total += n;
            if ((size_t)n < 65536)
                return total;
            continue;
        }
        if (n == 0)
            return total ? total : 0;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN)
            return total ? total : -1;
        if (errno == ECONNRESET)
            c_reset++;
        err("conn %u: recv: %s", c->id, strerror(errno));
        conn_close(c);
        return -2;
    }
}

static void update_interest(conn *c)
{
    unsigned ev = EPOLLIN;

    if (c->fd < 0)
        return;
    if (c->outoff < c->outlen)
        ev |= EPOLLOUT;
    set_interest(c, ev);
}

/* Send one line and expect it back. */
static void request(conn *c, const char *line)
{
    size_t n = strlen(line);

    memcpy(c->expect, line, n);
    c->explen = n;
    queue_out(c, line, n);
    c->state = ST_WAITING;
    c->t0 = now();
    if (flush_out(c) == 0)
        update_interest(c);
}

/* Finished connecting?  0 yes, -1 failed (closed), 1 not yet. */
static int connect_done(conn *c)
{
    int e = 0;
    socklen_t l = sizeof e;

    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &e, &l) < 0)
        e = errno;
    if (e == EINPROGRESS || e == EALREADY)
        return 1;
    if (e) {
        if (e == ECONNREFUSED)
            c_refused++;
        else if (e == ECONNRESET)
            c_reset++;
        else
            c_connfail++;
        err("conn %u: connect: %s", c->id, strerror(e));
        conn_close(c);
        return -1;
    }
    c_connected++;
    return 0;
}

/* A reply arrived for a ST_WAITING conn: 1 complete and right, 0 not yet,
 * -1 wrong (counted). */
static int check_reply(conn *c)
{
    char *nl = memchr(c->in, '\n', c->inlen);
    size_t len;

    if (!nl) {
        if (c->inlen <= c->explen)
            return 0;
        c_badreply++;
        err("conn %u: reply too long", c->id);
        return -1;
    }
    len = (size_t)(nl - c->in) + 1;
    if (len != c->explen || memcmp(c->in, c->expect, len) != 0) {
        c_badreply++;
        err("conn %u: expected '%.*s', got '%.*s'", c->id, (int)c->explen - 1,
            c->expect, (int)len - 1, c->in);
        return -1;
    }
    memmove(c->in, c->in + len, c->inlen - len);
    c->inlen -= len;
    return 1;
}

static int wait_events(struct epoll_event *evs, int max, int ms)
{
    int n;

    if (now() > deadline_at) {
        out("deadline 1");
        return -1;
    }
    n = epoll_wait(ep, evs, max, ms);
    if (n < 0 && errno != EINTR)
        die("epoll_wait: %s", strerror(errno));
    return n < 0 ? 0 : n;
}

static conn *conns;

static conn *new_conns(unsigned n)
{
    unsigned i;
    conn *cs = calloc(n, sizeof *cs);

    if (!cs)
        die("out of memory");
    for (i = 0; i < n; i++) {
        cs[i].fd = -1;
        cs[i].id = i;
    }
    return cs;
}

/* ------------------------------------------------------------------ hold */

/* Handle an event for a conn doing one request at a time.  Returns 1 when
 * the conn just finished its request (ok or not), else 0. */
static int step_request(conn *c, uint32_t ev, const char *(*line_for)(conn *))
{
    ssize_t n;
    int r;

    if (c->state == ST_CONNECTING) {
        r = connect_done(c);
        if (r > 0)
            return 0;
        if (r < 0)
            return 1;
        request(c, line_for(c));
        return 0;
    }
    if (ev & EPOLLOUT) {
        if (flush_out(c) < 0)
            return 1;
        update_interest(c);
    }
    if (!(ev & (EPOLLIN | EPOLLERR | EPOLLHUP)))
        return 0;
    n = read_in(c);
    if (n == -2)
        return 1;
    if (c->state == ST_WAITING && c->inlen) {
        r = check_reply(c);
        if (r < 0) {
            conn_close(c);
            return 1;
        }
        if (r > 0) {
            c_ok++;
            if (c->expect[0] == 'q') {
                c->state = ST_WAITEOF;
                if (n != 0)
                    return 0;      /* EOF comes later */
            } else {
                c->state = ST_IDLE;
                if (n == 0) {
                    c_eof_early++;
                    err("conn %u: closed by the server", c->id);
                    conn_close(c);
                }
                return 1;
            }
        }
    }
    if (n == 0) {
        if (c->state == ST_WAITEOF) {
            c_closed_by_server++;
            conn_close(c);
            return 1;
        }
        c_eof_early++;
        err("conn %u: EOF before the reply (state %d, %zu bytes in)", c->id,
            c->state, c->inlen);
        conn_close(c);
        return 1;
    }
    if (c->state == ST_IDLE && c->inlen) {
        c_badreply++;
        err("conn %u: unexpected bytes", c->id);
    }
    return 0;
}

static char linebuf[64];
static const char *hold_line1(conn *c) { snprintf(linebuf, sizeof linebuf, "h%u\n", c->id); return linebuf; }
static const char *hold_line2(conn *c) { snprintf(linebuf, sizeof linebuf, "g%u-again\n", c->id); return linebuf; }

static void mode_hold(void)
{
    struct epoll_event evs[512];
    unsigned N = n_opt, next = 0, inflight = 0, done = 0, i, live;
    double t0 = now(), t1, hold_end;
    int k, n;

    conns = new_conns(N);
    while (done < N) {
        while (next < N && inflight < c_opt) {
            if (start_connect(&conns[next]) == 0)
                inflight++;
            else
                done++;
            next++;
        }
        n = wait_events(evs, 512, 100);
        if (n < 0)
            break;
        for (k = 0; k < n; k++) {
            conn *c = evs[k].data.ptr;
            if (step_request(c, evs[k].events, hold_line1)) {
                inflight--;
                done++;
            }
        }
    }
    t1 = now();
    for (live = 0, i = 0; i < N; i++)
        if (conns[i].state == ST_IDLE)
            live++;
    out("phase1_live %u", live);
    out("phase1_secs %.3f", t1 - t0);
    out("phase1_done 1");
    /* hold: watch for anything happening to the idle connections */
    hold_end = now() + h_opt;
    while (now() < hold_end) {
        n = wait_events(evs, 512, 100);
        if (n < 0)
            break;
        for (k = 0; k < n; k++) {
            conn *c = evs[k].data.ptr;
            ssize_t r = read_in(c);
            if (r == 0) {
                c_eof_early++;
                err("conn %u: closed by the server while idle", c->id);
                conn_close(c);
            } else if (r > 0) {
                c_badreply++;
                err("conn %u: unexpected bytes while idle", c->id);
            }
        }
    }
    /* phase 2: every connection at once */
    t0 = now();
    c_ok = 0;
    for (i = 0; i < N; i++)
        if (conns[i].state == ST_IDLE)
            request(&conns[i], hold_line2(&conns[i]));
    for (done = 0, i = 0; i < N; i++)
        if (conns[i].state != ST_WAITING)
            done++;
    while (done < N) {
        n = wait_events(evs, 512, 100);
        if (n < 0)
            break;
        for (k = 0; k < n; k++)
            if (step_request(evs[k].data.ptr, evs[k].events, hold_line2))
                done++;
    }
    for (live = 0, i = 0; i < N; i++)
        if (conns[i].state == ST_IDLE)
            live++;
    out("phase2_live %u", live);
    out("phase2_secs %.3f", now() - t0);
    if (live != N)
        failed = 1;
    for (i = 0; i < N; i++)
        conn_close(&conns[i]);
}

/* ----------------------------------------------------------------- short */

static const char *short_line(conn *c)
{
    /* every other connection asks the server to close */
    snprintf(linebuf, sizeof linebuf, "%c%u\n", (c->id & 1) ? 'q' : 's', c->id);
    return linebuf;
}

static void mode_short(void)
{
    struct epoll_event evs[512];
    unsigned N = n_opt, C = c_opt, next = 0, inflight = 0, done = 0;
    unsigned long ok_before;
    conn *slots = new_conns(C);
    double t0 = now(), secs;
    unsigned i;
    int k, n;

    for (;;) {
        for (i = 0; i < C && next < N; i++) {
            conn *c = &slots[i];
            if (c->state != ST_FREE && c->state != ST_DONE)
                continue;
            c->id = next++;
            c->state = ST_FREE;
            if (start_connect(c) == 0)
                inflight++;
            else
                done++;
        }
        if (done >= N)
            break;
        n = wait_events(evs, 512, 100);
        if (n < 0)
            break;
        for (k = 0; k < n; k++) {
            conn *c = evs[k].data.ptr;
            ok_before = c_ok;
            if (step_request(c, evs[k].events, short_line)) {
                if (c->state == ST_IDLE)
                    conn_close(c);      /* our side closes first */
                if (c->fd >= 0)
                    conn_close(c);
                inflight--;
                done++;
            }
            (void)ok_before;
        }
    }
    secs = now() - t0;
    out("short_total %u", N);
    out("short_ok %lu", c_ok);
    out("short_server_closed %lu", c_closed_by_server);
    out("short_secs %.3f", secs);
    out("short_per_sec %.0f", secs > 0 ? c_ok / secs : 0);
    if (c_ok != N)
        failed = 1;
    free(slots);
}

/* ------------------------------------------------------------------ pipe */

static void mode_pipe(void)
{
    struct epoll_event evs[512];
    unsigned N = n_opt, i, done = 0, connected = 0;
    uint64_t L = l_opt, total_ok = 0;
    double t0, secs;
    char line[64];
    int k, n;

    conns = new_conns(N);
    for (i = 0; i < N; i++)
        if (start_connect(&conns[i]) < 0)
            done++;
    /* everyone connected first, then the clock starts */
    while (connected + done < N) {
        n = wait_events(evs, 512, 100);
        if (n < 0)
            goto end;
        for (k = 0; k < n; k++) {
            conn *c = evs[k].data.ptr;
            int r = connect_done(c);
            if (r == 0) {
                c->state = ST_SENDING;
                set_interest(c, EPOLLIN);
                connected++;
            } else if (r < 0) {
                done++;
            }
        }
    }
    t0 = now();
    for (i = 0; i < N; i++)
        if (conns[i].state == ST_SENDING)
            set_interest(&conns[i], EPOLLIN | EPOLLOUT);
    while (done < N) {
        n = wait_events(evs, 512, 100);
        if (n < 0)
            break;
        for (k = 0; k < n; k++) {
            conn *c = evs[k].data.ptr;
            uint32_t ev = evs[k].events;
            if (c->fd < 0)
                continue;
            if (ev & EPOLLOUT) {
                /* top up: keep at most ~256 KiB queued */
                while (c->sent_lines < L && c->outlen - c->outoff < 262144) {
                    int m = snprintf(line, sizeof line, "p%u.%llu\n", c->id,
                                     (unsigned long long)c->sent_lines);
                    queue_out(c, line, (size_t)m);
                    c->sent_lines++;
                }
                if (flush_out(c) < 0) {
                    done++;
                    continue;
                }
                if (c->sent_lines >= L && c->outoff == c->outlen)
                    set_interest(c, EPOLLIN);
            }
            if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
                ssize_t r = read_in(c);
                size_t off = 0;
                if (r == -2) {
                    done++;
                    continue;
                }
                for (;;) {
                    char *nl = memchr(c->in + off, '\n', c->inlen - off);
                    size_t len;
                    int m;
                    if (!nl)
                        break;
                    len = (size_t)(nl - (c->in + off)) + 1;
                    m = snprintf(line, sizeof line, "p%u.%llu\n", c->id,
                                 (unsigned long long)c->got_lines);
                    if ((size_t)m != len || memcmp(line, c->in + off, len)) {
                        c_badreply++;
                        err("conn %u: line %llu: expected '%.*s', got '%.*s'",
                            c->id, (unsigned long long)c->got_lines, m - 1,
                            line, (int)len - 1, c->in + off);
                    }
                    c->got_lines++;
                    total_ok++;
                    off += len;
                }
                memmove(c->in, c->in + off, c->inlen - off);
                c->inlen -= off;
                if (r == 0 || c->got_lines >= L) {
                    if (c->got_lines < L) {
                        c_eof_early++;
                        err("conn %u: EOF after %llu lines", c->id,
                            (unsigned long long)c->got_lines);
                    }
                    conn_close(c);
                    done++;
                }
            }
        }
    }
    secs = now() - t0;
    out("pipe_lines %llu", (unsigned long long)total_ok);
    out("pipe_secs %.3f", secs);
    out("pipe_lines_per_sec %.0f", secs > 0 ? total_ok / secs : 0);
    if (total_ok != (uint64_t)N * L)
        failed = 1;
end:
    for (i = 0; i < N; i++)
        conn_close(&conns[i]);
}

/* ----------------------------------------------------------------- loris */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void mode_loris(void)
{
    struct epoll_event evs[512];
    unsigned N = n_opt, i, connected = 0, done = 0, live;
    conn probe;
    double *lat = NULL, next_probe, next_tick, end, t0;
    size_t nlat = 0, latcap = 0;
    unsigned probe_seq = 0;
    char line[64];
    int k, n;

    /* the loris body: "l<id>" + filler, one byte a second */
    conns = new_conns(N + 1);
    memset(&probe, 0, sizeof probe);
    probe.fd = -1;
    probe.id = N;
    for (i = 0; i < N; i++)
        if (start_connect(&conns[i]) < 0)
            done++;
    if (start_connect(&probe) < 0)
        die("probe: cannot connect");
    t0 = now();
    while (connected + done < N + 1) {
        n = wait_events(evs, 512, 100);
        if (n < 0)
            goto end;
        for (k = 0; k < n; k++) {
            conn *c = evs[k].data.ptr;
            int r = connect_done(c);
            if (r == 0) {
                c->state = c == &probe ? ST_IDLE : ST_TRICKLE;
                set_interest(c, EPOLLIN);
                connected++;
            } else if (r < 0) {
                done++;
            }
        }
    }
    out("loris_connected %lu", c_connected - 1);
    out("loris_connect_secs %.3f", now() - t0);
    end = now() + s_opt;
    next_tick = now();
    next_probe = now();
    while (now() < end || probe.state == ST_WAITING) {
        double t = now();
        if (t >= next_tick && t < end) {
            /* one byte each */
            for (i = 0; i < N; i++) {
                conn *c = &conns[i];
                char ch;
                if (c->state != ST_TRICKLE)
                    continue;
                if (c->trickled == 0)
                    ch = 'l';
                else
                    ch = (char)('a' + (c->trickled + c->id) % 26);
                if (c->explen < sizeof c->expect - 2)
                    c->expect[c->explen++] = ch;
                else
                    continue;
                queue_out(c, &ch, 1);
                c->trickled++;
                if (flush_out(c) < 0)
                    continue;
                update_interest(c);
            }
            next_tick += 1.0;
        }
        if (t >= next_probe && probe.state == ST_IDLE && t < end) {
            snprintf(line, sizeof line, "probe%u\n", probe_seq++);
            request(&probe, line);
            next_probe = t + i_opt / 1000.0;
        }
        n = wait_events(evs, 512, 10);
        if (n < 0)
            break;
        for (k = 0; k < n; k++) {
            conn *c = evs[k].data.ptr;
            if (c == &probe) {
                ssize_t r;
                if (evs[k].events & EPOLLOUT) {
                    flush_out(c);
                    update_interest(c);
                }
                r = read_in(c);
                if (r == -2)
                    die("probe connection failed");
                if (c->state == ST_WAITING && c->inlen) {
                    int ok = check_reply(c);
                    if (ok < 0)
                        die("probe: wrong reply");
                    if (ok > 0) {
                        if (nlat == latcap) {
                            latcap = latcap ? latcap * 2 : 1024;
                            lat = xrealloc(lat, latcap * sizeof *lat);
                        }
                        lat[nlat++] = now() - c->t0;
                        c->state = ST_IDLE;
                    }
                }
                if (r == 0)
                    die("probe: closed by the server");
                continue;
            }
            if (evs[k].events & EPOLLOUT) {
                if (flush_out(c) < 0)
                    continue;
                update_interest(c);
            }
            if (evs[k].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
                ssize_t r = read_in(c);
                if (r == 0) {
                    c_eof_early++;
                    err("loris %u: closed by the server after %zu bytes",
                        c->id, c->trickled);
                    conn_close(c);
                } else if (r > 0) {
                    c_badreply++;
                    err("loris %u: reply before its line ended", c->id);
                }
            }
        }
    }
    /* end every line: each must come back whole */
    for (i = 0; i < N; i++) {
        conn *c = &conns[i];
        if (c->state != ST_TRICKLE)
            continue;
        c->expect[c->explen++] = '\n';
        queue_out(c, "\n", 1);
        c->state = ST_WAITING;
        if (flush_out(c) == 0)
            update_interest(c);
    }
    for (;;) {
        unsigned waiting = 0;
        for (i = 0; i < N; i++)
            if (conns[i].state == ST_WAITING)
                waiting++;
        if (!waiting)
            break;
        n = wait_events(evs, 512, 100);
        if (n < 0)
            break;
        for (k = 0; k < n; k++) {
            conn *c = evs[k].data.ptr;
            ssize_t r;
            if (c == &probe || c->fd < 0)
                continue;
            if (evs[k].events & EPOLLOUT) {
                if (flush_out(c) < 0)
                    continue;
                update_interest(c);
            }
            r = read_in(c);
            if (r == -2)
                continue;
            if (c->inlen) {
                int ok = check_reply(c);
                if (ok > 0) {
                    c->state = ST_IDLE;
                    c_ok++;
                } else if (ok < 0) {
                    conn_close(c);
                    continue;
                }
            }
            if (r == 0 && c->state == ST_WAITING) {
                c_eof_early++;
                err("loris %u: EOF before the echo", c->id);
                conn_close(c);
            }
        }
    }
    for (live = 0, i = 0; i < N; i++)
        if (conns[i].state == ST_IDLE)
            live++;
    qsort(lat, nlat, sizeof *lat, cmp_double);
    out("loris_lines_echoed %u", live);
    out("loris_bytes_each %zu", N ? conns[0].trickled : (size_t)0);
    out("probe_count %zu", nlat);
    out("probe_max_ms %.1f", nlat ? lat[nlat - 1] * 1000 : -1.0);
    out("probe_p99_ms %.1f", nlat ? lat[(size_t)(nlat * 0.99)] * 1000 : -1.0);
    out("probe_median_ms %.1f", nlat ? lat[nlat / 2] * 1000 : -1.0);
    if (live != N)
        failed = 1;
end:
    for (i = 0; i < N; i++)
        conn_close(&conns[i]);
    conn_close(&probe);
    free(lat);
}

/* ----------------------------------------------------------------- flood */

static void mode_flood(void)
{
    struct epoll_event evs[512];
    unsigned N = n_opt, i;
    unsigned long shed = 0;
    double end;
    int k, n;

    conns = new_conns(N);
    for (i = 0; i < N; i++)
        start_connect(&conns[i]);
    failed = 0;             /* refusals are part of a flood, not failures */
    n_errors = 0;
    end = now() + s_opt;
    while (now() < end) {
        n = wait_events(evs, 512, 50);
        if (n < 0)
            break;
        for (k = 0; k < n; k++) {
            conn *c = evs[k].data.ptr;
            if (c->state == ST_CONNECTING) {
                int e = 0;
                socklen_t l = sizeof e;
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &e, &l);
                if (e == 0) {
                    c_connected++;
                    c->state = ST_IDLE;
                    set_interest(c, EPOLLIN);
                } else if (e != EINPROGRESS) {
                    c_connfail++;
                    conn_close(c);
                }
                continue;
            }
            {
                char buf[256];
                ssize_t r = recv(c->fd, buf, sizeof buf, 0);
                if (r == 0 || (r < 0 && errno != EAGAIN)) {
                    shed++;         /* the server closed it */
                    conn_close(c);
                }
            }
        }
    }
    out("flood_connected %lu", c_connected);
    out("flood_shed %lu", shed);
    out("flood_connfail %lu", c_connfail);
    for (i = 0; i < N; i++)
        conn_close(&conns[i]);
    failed = 0;
}

/* ------------------------------------------------------------------ main */

static void usage(void)
{
    fprintf(stderr, "usage: isd-load hold|short|pipe|loris|flood -p PORT "
            "[-n N] [-c C] [-l LINES] [-h SECS] [-s SECS] [-i MS] [-t SECS]\n");
    exit(64);
}

int main(int argc, char **argv)
{
    double t_opt = 120;
    int o;

    if (argc < 2)
        usage();
    mode = argv[1];
    optind = 2;
    while ((o = getopt(argc, argv, "p:n:c:l:h:s:i:t:")) != -1) {
        switch (o) {
        case 'p': port = (unsigned)atoi(optarg); break;
        case 'n': n_opt = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'c': c_opt = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'l': l_opt = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'h': h_opt = atof(optarg); break;
        case 's': s_opt = atof(optarg); break;
        case 'i': i_opt = (unsigned)strtoul(optarg, NULL, 10); break;
        case 't': t_opt = atof(optarg); break;
        default: usage();
        }
    }
    if (!port || !c_opt)
        usage();
    signal(SIGPIPE, SIG_IGN);
    raise_nofile((rlim_t)n_opt + (strcmp(mode, "short") ? 0 : c_opt) + 64);
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        die("epoll_create1: %s", strerror(errno));
    deadline_at = now() + t_opt;
    if (!strcmp(mode, "hold"))
        mode_hold();
    else if (!strcmp(mode, "short"))
        mode_short();
    else if (!strcmp(mode, "pipe"))
        mode_pipe();
    else if (!strcmp(mode, "loris"))
        mode_loris();
    else if (!strcmp(mode, "flood"))
        mode_flood();
    else
        usage();
    out("connected %lu", c_connected);
    out("refused %lu", c_refused);
    out("connect_failed %lu", c_connfail + c_addrnotavail);
    out("reset %lu", c_reset);
    out("bad_reply %lu", c_badreply);
    out("early_eof %lu", c_eof_early);
    out("errors %lu", n_errors);
    if (now() > deadline_at)
        return 2;
    return failed ? 1 : 0;
}
