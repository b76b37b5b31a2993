/* test_loop.c - unit tests for the event loop (c_src/loop.c, be_*.c). */
// Build and run by hand from the distribution root:
//   cc -std=c99 -D_GNU_SOURCE -Wall -Wextra -Ic_src t/c/test_loop.c c_src/*.c -o /tmp/tl && /tmp/tl
//
// Every test runs once per backend named by isd_backends().  Test names are
// prefixed with the backend, e.g. "[epoll] read readiness fires".
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1    /* the POSIX and BSD bits of libc, where hidden */
#endif
#include "isd.h"
#include "tap.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *BE;                 /* the backend under test */
#define T(fmt) "[%s] " fmt, BE         /* test name with the backend prefix */

static void msleep(unsigned ms)
{
    struct timespec ts;
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (long)(ms % 1000) * 1000000L;
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) ;
}

/* make fd readable at the other end */
static void put1(int fd, const char *byte)
{
    if (write(fd, byte, 1) != 1)
        diag("write(%d): %s", fd, strerror(errno));
}

static isd_loop *new_loop(void)
{
    char err[256] = "";
    isd_loop *l = isd_loop_new(BE, err, sizeof err);
    if (!l) {
        printf("Bail out! isd_loop_new(%s): %s\n", BE, err);
        exit(255);
    }
    return l;
}

static void pair(int sv[2])
{
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) {
        printf("Bail out! socketpair: %s\n", strerror(errno));
        exit(255);
    }
    fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
    fcntl(sv[1], F_SETFL, fcntl(sv[1], F_GETFL) | O_NONBLOCK);
}

/* ---------------------------------------------------------- io watchers */

typedef struct tw {
    isd_io   io;                 /* first: (tw *)w works */
    int      calls;
    unsigned last;               /* last revents */
    unsigned allrev;             /* all revents ever seen */
    int      peer;               /* other end of the socketpair */
    int      running_seen;       /* isd_loop_running() inside the callback */
    int      drain;              /* read everything in the callback */
    int      stop_self;          /* isd_io_set(l, w, 0) in the callback */
    struct tw *victim;           /* close (or stop) this one in the callback */
    int      victim_close;       /* 1: stop + close + fd=-1; 0: only stop;
                                    2: only fd=-1 (restored afterwards) */
    int      hidden_fd;          /* mode 2: the real fd, if hidden */
    int      order;              /* when it was called, see seq */
} tw;

static int seq;                  /* call counter across watchers */

static void tw_cb(isd_loop *l, isd_io *w, unsigned revents)
{
    tw *t = (tw *)w;
    t->calls++;
    t->last = revents;
    t->allrev |= revents;
    t->order = ++seq;
    t->running_seen = isd_loop_running(l);
    if (t->drain) {
        char buf[4096];
        while (read(w->fd, buf, sizeof buf) > 0) ;
    }
    if (t->stop_self)
        isd_io_set(l, w, 0);
    if (t->victim) {
        tw *v = t->victim;
        t->victim = NULL;
        if (v->io.fd >= 0 && t->victim_close == 2) {
            v->hidden_fd = v->io.fd + 1;
            v->io.fd = -1;
        } else if (v->io.fd >= 0) {
            isd_io_set(l, &v->io, 0);
            if (t->victim_close) {
                close(v->io.fd);
                v->io.fd = -1;
            }
        }
    }
}

static void tw_open(tw *t)
{
    int sv[2];
    memset(t, 0, sizeof *t);
    pair(sv);
    isd_io_init(&t->io, sv[0], tw_cb);
    t->peer = sv[1];
}

static void tw_close(isd_loop *l, tw *t)
{
    if (t->io.fd >= 0) {
        isd_io_set(l, &t->io, 0);
        close(t->io.fd);
        t->io.fd = -1;
    }
    if (t->peer >= 0) close(t->peer);
    t->peer = -1;
}

static void test_new(void)
{
    char err[256] = "";
    isd_loop *l;
    const char *env;

    l = isd_loop_new(BE, err, sizeof err);
    ok(l != NULL, T("isd_loop_new(\"%s\")"), BE);
    if (l) {
        is_str(isd_loop_backend(l), BE, T("isd_loop_backend"));
        is_int(isd_loop_running(l), 0, T("not running outside run_once"));
        isd_loop_free(l);
    }

    /* the env var picks the backend when none is named */
    env = getenv("IO_SOCKET_INET_DAEMON_BACKEND");
    setenv("IO_SOCKET_INET_DAEMON_BACKEND", BE, 1);
    l = isd_loop_new(NULL, err, sizeof err);
    ok(l && strcmp(isd_loop_backend(l), BE) == 0,
       T("$IO_SOCKET_INET_DAEMON_BACKEND=%s is honoured"), BE);
    if (l) isd_loop_free(l);
    if (env) setenv("IO_SOCKET_INET_DAEMON_BACKEND", env, 1);
    else unsetenv("IO_SOCKET_INET_DAEMON_BACKEND");
}

static void test_io_basic(void)
{
    isd_loop *l = new_loop();
    tw a;
    int n;
    uint64_t t0;

    tw_open(&a);
    is_int(isd_io_set(l, &a.io, ISD_READ), 0, T("watch for READ"));
    is_int(a.io.events, ISD_READ, T("events field is the interest"));
    n = isd_loop_run_once(l, 0, NULL);
    ok(n == 0 && a.calls == 0, T("nothing readable: 0 events (%d)"), n);

    /* read readiness */
    put1(a.peer, "x");
    n = isd_loop_run_once(l, 1000, NULL);
    is_int(n, 1, T("readable: run_once returns 1"));
    is_int(a.calls, 1, T("read callback called once"));
    ok(a.last & ISD_READ, T("revents has ISD_READ (%u)"), a.last);
    ok(!(a.last & ISD_WRITE), T("no ISD_WRITE without interest"));
    ok(a.running_seen, T("isd_loop_running() inside a callback"));
    is_int(isd_loop_running(l), 0, T("not running after run_once"));

    /* level-triggered: still readable, fires again */
    n = isd_loop_run_once(l, 1000, NULL);
    ok(n == 1 && a.calls == 2, T("still readable: fires again (level-triggered)"));

    /* the callback drains it: quiet afterwards */
    a.drain = 1;
    isd_loop_run_once(l, 1000, NULL);
    a.drain = 0;
    is_int(a.calls, 3, T("drained in the callback"));
    t0 = isd_now_ms();
    n = isd_loop_run_once(l, 50, NULL);
    ok(n == 0 && a.calls == 3, T("drained: no event within 50 ms"));
    ok(isd_now_ms() - t0 >= 40, T("and run_once waited (%u ms)"),
       (unsigned)(isd_now_ms() - t0));

    /* write readiness */
    is_int(isd_io_set(l, &a.io, ISD_READ | ISD_WRITE), 0, T("watch READ|WRITE"));
    n = isd_loop_run_once(l, 1000, NULL);
    ok(n == 1 && a.calls == 4 && (a.last & ISD_WRITE) && !(a.last & ISD_READ),
       T("writable: ISD_WRITE fires alone (revents %u)"), a.last);
    is_int(isd_io_set(l, &a.io, ISD_WRITE), 0, T("watch WRITE only"));
    put1(a.peer, "y");
    n = isd_loop_run_once(l, 1000, NULL);
    ok(n == 1 && a.last == ISD_WRITE,
       T("WRITE interest, readable too: only ISD_WRITE reported (%u)"), a.last);
    is_int(isd_io_set(l, &a.io, ISD_READ | ISD_WRITE), 0, T("READ|WRITE again"));
    n = isd_loop_run_once(l, 1000, NULL);
    ok(n == 1 && a.last == (ISD_READ | ISD_WRITE),
       T("readable and writable: both bits in one call (%u)"), a.last);

    /* isd_io_set(.., 0) stops it, though the fd is ready */
    is_int(isd_io_set(l, &a.io, 0), 0, T("isd_io_set 0"));
    is_int(a.io.events, 0, T("events 0"));
    a.calls = 0;
    n = isd_loop_run_once(l, 50, NULL);
    ok(n == 0 && a.calls == 0, T("stopped watcher: no callback"));
    is_int(isd_io_set(l, &a.io, 0), 0, T("stopping twice is fine"));
    is_int(isd_io_set(l, &a.io, ISD_READ), 0, T("watch READ again"));
    n = isd_loop_run_once(l, 1000, NULL);
    ok(n == 1 && a.calls == 1 && a.last == ISD_READ, T("restarted: fires again"));

    /* same interest again is a no-op */
    is_int(isd_io_set(l, &a.io, ISD_READ), 0, T("same interest again: 0"));

    /* a callback stopping itself */
    a.stop_self = 1;
    a.calls = 0;
    isd_loop_run_once(l, 1000, NULL);
    isd_loop_run_once(l, 30, NULL);
    ok(a.calls == 1 && a.io.events == 0, T("callback stopping itself: called once"));
    a.stop_self = 0;

    /* peer closes: READ fires (EOF), and revents carries only READ/WRITE */
    a.drain = 1;
    isd_io_set(l, &a.io, ISD_READ);
    isd_loop_run_once(l, 100, NULL);          /* drain leftovers */
    a.calls = 0;
    a.allrev = 0;
    close(a.peer);
    a.peer = -1;
    a.drain = 0;
    n = isd_loop_run_once(l, 1000, NULL);
    ok(n == 1 && a.calls == 1 && (a.last & ISD_READ),
       T("peer closed: READ fires (revents %u)"), a.last);
    isd_io_set(l, &a.io, ISD_WRITE);
    isd_loop_run_once(l, 100, NULL);
    ok(a.calls == 2 && (a.last & ISD_WRITE),
       T("peer closed: WRITE interest fires too (revents %u)"), a.last);
    is_int(a.allrev & ~(unsigned)(ISD_READ | ISD_WRITE), 0,
           T("revents never carries bits other than ISD_READ|ISD_WRITE"));

    tw_close(l, &a);
    isd_loop_free(l);
}

/* A callback that closes (or stops) another watcher that fired in the same
 * batch: the other one is not called. */
static void test_close_in_batch(int do_close)
{
    const char *how = do_close == 1 ? "closes" : do_close == 2
                    ? "sets fd = -1 on" : "stops";
    isd_loop *l = new_loop();
    tw w[10];
    int i, n, total = 0, first = -1, victim;

    for (i = 0; i < 10; i++) {
        tw_open(&w[i]);
        isd_io_set(l, &w[i].io, ISD_READ);
        put1(w[i].peer, "x");
    }
    /* whoever is called first kills its successor (mod 10); everybody
     * kills at most once.  Only the first callback's victim can possibly
     * be spared from being called. */
    for (i = 0; i < 10; i++) {
        w[i].victim = &w[(i + 1) % 10];
        w[i].victim_close = do_close;
        w[i].stop_self = 1;
    }
    seq = 0;
    n = isd_loop_run_once(l, 1000, NULL);
    for (i = 0; i < 10; i++) {
        total += w[i].calls;
        if (w[i].order == 1) first = i;
    }
    ok(n >= 9, T("10 ready watchers reported in one batch (%d)"), n);
    ok(first >= 0, T("someone was called first"));
    if (first < 0) first = 0;
    victim = (first + 1) % 10;
    is_int(w[victim].calls, 0,
           T("the watcher the first callback %s is not called"), how);
    {
        /* w[i] is killed by w[(i+9)%10] when that one runs: it may only
         * have run before its killer, and if it never ran, its killer did */
        int consistent = 1;
        for (i = 0; i < 10; i++) {
            int killer = (i + 9) % 10;
            if (w[i].calls > 1) consistent = 0;
            else if (w[i].calls == 0 && w[killer].calls != 1) consistent = 0;
            else if (w[i].calls == 1 && w[killer].calls == 1 &&
                     w[killer].order < w[i].order) consistent = 0;
        }
        ok(consistent, T("no watcher is called after another one %s it"), how);
    }
    ok(total >= 5 && total <= 9, T("total calls plausible (%d)"), total);

    for (i = 0; i < 10; i++)
        if (w[i].hidden_fd) {               /* mode 2: undo the fake close */
            w[i].io.fd = w[i].hidden_fd - 1;
            w[i].hidden_fd = 0;
        }

    for (i = 0; i < 10; i++) tw_close(l, &w[i]);
    isd_loop_free(l);
}

/* More ready fds than one backend batch, and watchers added from inside a
 * callback (the backend's arrays grow during dispatch). */
typedef struct grow_ctx {
    tw  *pool;
    int  npool, added;
} grow_ctx;
static grow_ctx *GROW;

static void grow_cb(isd_loop *l, isd_io *w, unsigned revents)
{
    int i;
    tw_cb(l, w, revents);
    if (GROW && GROW->added == 0) {
        for (i = 0; i < GROW->npool; i++) {
            tw_open(&GROW->pool[i]);
            GROW->pool[i].stop_self = 1;
            isd_io_set(l, &GROW->pool[i].io, ISD_WRITE);
        }
        GROW->added = 1;
    }
}

static void test_many(void)
{
    isd_loop *l = new_loop();
    struct rlimit rl;
    int N = 400, M = 200, i, rounds, ncalled = 0, twice = 0, bad = 0;
    tw *w, *pool;
    grow_ctx g;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        rl.rlim_cur < (rlim_t)(2 * (N + M) + 64)) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
        if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t)(2 * (N + M) + 64)) {
            N = (int)(rl.rlim_cur - 64) / 3;
            M = N / 2;
        }
    }
    w = calloc((size_t)N, sizeof *w);
    pool = calloc((size_t)M, sizeof *pool);
    for (i = 0; i < N; i++) {
        tw_open(&w[i]);
        w[i].stop_self = 1;
        w[i].io.cb = i == N / 2 ? grow_cb : tw_cb;
        if (isd_io_set(l, &w[i].io, ISD_READ)) bad++;
        put1(w[i].peer, "x");
    }
    is_int(bad, 0, T("%d watchers registered"), N);
    g.pool = pool; g.npool = M; g.added = 0;
    GROW = &g;
    for (rounds = 0; rounds < 20; rounds++) {
        if (isd_loop_run_once(l, 100, NULL) < 0) break;
        ncalled = 0;
        for (i = 0; i < N; i++) ncalled += w[i].calls > 0;
        if (ncalled == N && g.added) {
            int k, pc = 0;
            for (k = 0; k < M; k++) pc += pool[k].calls > 0;
            if (pc == M) break;
        }
    }
    GROW = NULL;
    for (i = 0; i < N; i++) twice += w[i].calls > 1;
    is_int(ncalled, N, T("all %d ready watchers were called (%d rounds)"), N, rounds);
    is_int(twice, 0, T("none of them twice (they stop themselves)"));
    ok(g.added, T("%d watchers added from inside a callback"), M);
    {
        int k, pc = 0, wr = 1;
        for (k = 0; k < M; k++) {
            pc += pool[k].calls == 1;
            if (pool[k].calls && pool[k].last != ISD_WRITE) wr = 0;
        }
        is_int(pc, M, T("each added watcher fired once"));
        ok(wr, T("with ISD_WRITE"));
    }
    for (i = 0; i < N; i++) tw_close(l, &w[i]);
    for (i = 0; i < M; i++) tw_close(l, &pool[i]);
    free(w);
    free(pool);
    isd_loop_free(l);
}

/* --------------------------------------------------------------- timers */

static int fired_ids[2048], nfired;
static uint64_t fired_at[2048];
static int late;                      /* fired before its time */

typedef struct tt {
    isd_timer t;
    int id;
    int rearm;                         /* re-arm for this many ms, if >= 0 */
    int count;
    isd_timer *kill;                   /* stop this timer in the callback */
    uint64_t start;
    uint64_t ms;
} tt;

static void tt_cb(isd_loop *l, isd_timer *t)
{
    tt *x = (tt *)t->data;
    uint64_t now = isd_now_ms();
    if (now < t->at) late++;
    if (now - x->start < x->ms) late++;
    if (nfired < 2048) {
        fired_ids[nfired] = x->id;
        fired_at[nfired] = t->at;
        nfired++;
    }
    x->count++;
    if (isd_timer_active(t)) late += 1000;     /* one-shot: inactive now */
    if (x->kill) isd_timer_stop(l, x->kill);
    if (x->rearm >= 0 && x->count < 100000) {
        x->start = isd_now_ms();
        x->ms = (uint64_t)x->rearm;
        isd_timer_start(l, t, (uint64_t)x->rearm);
    }
}

static void tt_init(tt *x, int id)
{
    memset(x, 0, sizeof *x);
    x->id = id;
    x->rearm = -1;
    isd_timer_init(&x->t, tt_cb, x);
}

static int tt_start(isd_loop *l, tt *x, uint64_t ms)
{
    x->start = isd_now_ms();
    x->ms = ms;
    return isd_timer_start(l, &x->t, ms);
}

/* run until cond or ms elapse */
static void run_for(isd_loop *l, int ms, int *stop_when_nonzero)
{
    uint64_t end = isd_now_ms() + (uint64_t)ms;
    while (isd_now_ms() < end) {
        if (stop_when_nonzero && *stop_when_nonzero) break;
        isd_loop_run_once(l, (int)(end - isd_now_ms()), NULL);
    }
}

static void test_timers(void)
{
    isd_loop *l = new_loop();
    tt a, b, c, d;
    uint64_t t0, el;
    int n, done3 = 0;

    tt_init(&a, 1); tt_init(&b, 2); tt_init(&c, 3); tt_init(&d, 4);
    ok(!isd_timer_active(&a.t), T("fresh timer is inactive"));

    /* three timers fire in order of their time */
    nfired = late = 0;
    t0 = isd_now_ms();
    is_int(tt_start(l, &a, 60), 0, T("start 60 ms"));
    is_int(tt_start(l, &b, 20), 0, T("start 20 ms"));
    is_int(tt_start(l, &c, 40), 0, T("start 40 ms"));
    ok(isd_timer_active(&a.t) && isd_timer_active(&b.t) && isd_timer_active(&c.t),
       T("started timers are active"));
    while (nfired < 3 && isd_now_ms() - t0 < 3000) {
        isd_loop_run_once(l, -1, NULL);     /* the timers cap the wait */
    }
    done3 = nfired == 3;
    ok(done3 && fired_ids[0] == 2 && fired_ids[1] == 3 && fired_ids[2] == 1,
       T("fired in order 20, 40, 60 ms (%d %d %d)"),
       fired_ids[0], fired_ids[1], fired_ids[2]);
    is_int(late, 0, T("none fired before its time"));
    el = isd_now_ms() - t0;
    ok(el >= 60 && el < 2000, T("took about 60 ms (%u)"), (unsigned)el);
    ok(!isd_timer_active(&a.t) && !isd_timer_active(&b.t) &&
       !isd_timer_active(&c.t), T("fired timers are inactive"));
    is_int(a.count + b.count + c.count, 3, T("each fired once"));

    /* run_once(-1) returns once the timer fired, having waited for it */
    nfired = 0;
    t0 = isd_now_ms();
    tt_start(l, &a, 50);
    n = isd_loop_run_once(l, -1, NULL);
    while (nfired == 0 && isd_now_ms() - t0 < 3000)
        n = isd_loop_run_once(l, -1, NULL);  /* an early wakeup is allowed */
    el = isd_now_ms() - t0;
    ok(nfired == 1 && n == 0, T("run_once(-1) with a 50 ms timer: fires, 0 events"));
    ok(el >= 50 && el < 2000, T("after about 50 ms (%u)"), (unsigned)el);

    /* stop prevents firing */
    nfired = 0;
    a.count = 0;
    tt_start(l, &a, 20);
    isd_timer_stop(l, &a.t);
    ok(!isd_timer_active(&a.t), T("stopped timer is inactive"));
    isd_timer_stop(l, &a.t);
    pass(T("stopping an inactive timer is harmless"));
    run_for(l, 80, NULL);
    is_int(a.count, 0, T("stopped timer does not fire"));

    /* restart re-arms: later, then sooner */
    a.count = 0;
    t0 = isd_now_ms();
    tt_start(l, &a, 30);
    tt_start(l, &a, 150);                    /* later */
    run_for(l, 100, &a.count);
    is_int(a.count, 0, T("re-armed later: not fired at the old time"));
    run_for(l, 2000, &a.count);
    el = isd_now_ms() - t0;
    ok(a.count == 1 && el >= 150, T("re-armed later: fired once at the new time (%u ms)"),
       (unsigned)el);
    a.count = 0;
    t0 = isd_now_ms();
    tt_start(l, &a, 5000);
    tt_start(l, &a, 30);                     /* sooner */
    run_for(l, 2000, &a.count);
    el = isd_now_ms() - t0;
    ok(a.count == 1 && el >= 30 && el < 1500,
       T("re-armed sooner: fired at the new time (%u ms)"), (unsigned)el);
    run_for(l, 100, NULL);
    is_int(a.count, 1, T("and only once"));

    /* re-armed from its own callback: periodic */
    a.count = 0;
    a.rearm = 10;
    tt_start(l, &a, 10);
    run_for(l, 100, NULL);
    ok(a.count >= 3, T("re-arming in the callback makes it periodic (%d)"), a.count);
    a.rearm = -1;
    isd_timer_stop(l, &a.t);

    /* a timer stopped by another one due in the same pass */
    a.count = b.count = 0;
    a.kill = &b.t;
    tt_start(l, &a, 10);
    tt_start(l, &b, 12);
    msleep(40);                              /* both are due now */
    isd_loop_run_once(l, 0, NULL);
    run_for(l, 50, NULL);
    ok(a.count == 1 && b.count == 0,
       T("a timer stopped by an earlier one in the same pass does not fire"));
    a.kill = NULL;

    /* a timer started with 0 ms fires on the next run_once(0) */
    a.count = 0;
    tt_start(l, &a, 0);
    isd_loop_run_once(l, 0, NULL);
    is_int(a.count, 1, T("0 ms timer fires on the next run_once"));

    /* a timer that re-arms itself for 0 ms must not starve the loop: it
     * fires once per run_once, not in a loop until the clock ticks */
    a.count = 0;
    a.rearm = 0;
    tt_start(l, &a, 0);
    isd_loop_run_once(l, 0, NULL);
    /* run_timers() takes "now" once and pops while at <= now, so a timer
     * re-armed for 0 ms fires again and again until the clock ticks */
    ok(a.count <= 2, T("a 0 ms timer re-armed in its callback fires once per "
       "run_once (fired %d times in one)"), a.count);
    a.rearm = -1;
    isd_timer_stop(l, &a.t);

    /* timers don't count as fd events */
    a.count = 0;
    tt_start(l, &a, 0);
    n = isd_loop_run_once(l, 0, NULL);
    ok(n == 0 && a.count == 1, T("run_once counts fd events only (%d)"), n);

    /* a far timer does not fire */
    d.count = 0;
    tt_start(l, &d, (uint64_t)1 << 40);
    run_for(l, 30, NULL);
    ok(d.count == 0 && isd_timer_active(&d.t), T("a timer 2^40 ms away stays put"));
    isd_timer_stop(l, &d.t);

    /* the largest delay: now + ms must not wrap around to "due now" */
    d.count = 0;
    tt_start(l, &d, UINT64_MAX);
    isd_loop_run_once(l, 0, NULL);
    run_for(l, 20, NULL);
    ok(d.count == 0, T("a timer of UINT64_MAX ms does not fire at once"));
    isd_timer_stop(l, &d.t);

    /* isd_loop_free with active timers */
    tt_start(l, &a, 1000);
    tt_start(l, &b, 2000);
    isd_loop_free(l);
    pass(T("isd_loop_free with active timers"));
}

/* Many timers: random times, random stops and restarts; the fire order is
 * by time, stopped ones never fire, the others exactly once. */
static void test_timer_heap(void)
{
    enum { N = 600 };
    isd_loop *l = new_loop();
    static tt x[N];
    int i, stopped[N], bad_order = 0, missing = 0, extra = 0;
    unsigned seed = 31337;
    uint64_t t0 = isd_now_ms();

    nfired = late = 0;
    for (i = 0; i < N; i++) {
        tt_init(&x[i], i);
        seed = seed * 1103515245u + 12345u;
        tt_start(l, &x[i], (seed >> 16) % 80);
        stopped[i] = 0;
    }
    for (i = 0; i < N; i++) {
        seed = seed * 1103515245u + 12345u;
        switch ((seed >> 16) % 6) {
        case 0:
            isd_timer_stop(l, &x[i].t);
            stopped[i] = 1;
            break;
        case 1:
            tt_start(l, &x[i], (seed >> 4) % 80);
            break;
        }
    }
    while (isd_now_ms() - t0 < 3000) {
        int active = 0;
        for (i = 0; i < N; i++) active += isd_timer_active(&x[i].t);
        if (!active) break;
        isd_loop_run_once(l, -1, NULL);
    }
    for (i = 1; i < nfired; i++)
        if (fired_at[i] < fired_at[i - 1]) bad_order++;
    for (i = 0; i < N; i++) {
        if (stopped[i] && x[i].count) extra++;
        if (!stopped[i] && x[i].count != 1) missing++;
    }
    is_int(bad_order, 0, T("%d timers fired in time order"), nfired);
    is_int(extra, 0, T("stopped timers did not fire"));
    is_int(missing, 0, T("running timers fired exactly once"));
    is_int(late, 0, T("none fired early"));
    isd_loop_free(l);
}

/* A repeating timer that falls a whole interval behind (its callback took
 * longer) comes next an interval later, not at once: no catching up. */
static int rep_count;
static uint64_t rep_at[8];
static void rep_cb(isd_loop *l, isd_timer *t)
{
    if (rep_count < 8)
        rep_at[rep_count] = isd_now_ms();
    if (++rep_count == 1)
        usleep(130 * 1000);             /* 2.6 intervals late */
    if (rep_count < 4)
        isd_timer_repeat(l, t, 50);
}

static void test_timer_repeat_late(void)
{
    isd_loop *l = new_loop();
    isd_timer t;
    uint64_t t0 = isd_now_ms();

    rep_count = 0;
    isd_timer_init(&t, rep_cb, NULL);
    isd_timer_start(l, &t, 50);
    while (rep_count < 4 && isd_now_ms() - t0 < 3000)
        isd_loop_run_once(l, 100, NULL);
    is_int(rep_count, 4, T("four firings"));
    ok(rep_count >= 2 && rep_at[1] - rep_at[0] >= 170,
       T("after a late one the next is an interval later (%d ms after the first), not at once"),
       (int)(rep_at[1] - rep_at[0]));
    ok(rep_count >= 3 && rep_at[2] - rep_at[1] >= 45,
       T("then every interval again (%d ms)"), (int)(rep_at[2] - rep_at[1]));
    isd_loop_free(l);
}

static void test_timeout(void)
{
    isd_loop *l = new_loop();
    tw a;
    uint64_t t0, el;
    int n;

    tw_open(&a);
    isd_io_set(l, &a.io, ISD_READ);          /* not readable */
    t0 = isd_now_ms();
    n = isd_loop_run_once(l, 150, NULL);
    el = isd_now_ms() - t0;
    is_int(n, 0, T("run_once(150): 0 events"));
    ok(el >= 140 && el < 3000, T("after about 150 ms (%u)"), (unsigned)el);

    t0 = isd_now_ms();
    n = isd_loop_run_once(l, 0, NULL);
    el = isd_now_ms() - t0;
    ok(n == 0 && el < 500, T("run_once(0) returns at once (%u ms)"), (unsigned)el);

    /* a timer shortens the wait */
    {
        tt x;
        tt_init(&x, 1);
        nfired = 0;
        t0 = isd_now_ms();
        tt_start(l, &x, 40);
        while (!x.count && isd_now_ms() - t0 < 3000)
            isd_loop_run_once(l, 5000, NULL);
        el = isd_now_ms() - t0;
        ok(x.count == 1 && el >= 40 && el < 2000,
           T("run_once(5000) with a 40 ms timer returns after it (%u ms)"),
           (unsigned)el);
    }
    /* an fd event cuts the wait short */
    {
        pid_t pid;
        fflush(stdout);
        pid = fork();
        if (pid == 0) {
            msleep(50);
            put1(a.peer, "z");
            _exit(0);
        }
        t0 = isd_now_ms();
        n = isd_loop_run_once(l, 5000, NULL);
        el = isd_now_ms() - t0;
        ok(n == 1 && a.calls == 1 && el < 2500,
           T("data arriving during the wait ends it (%u ms)"), (unsigned)el);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) ;
    }
    tw_close(l, &a);
    isd_loop_free(l);
}

/* ----------------------------------------------------------------- hooks */

typedef struct th {
    isd_hook h;
    int calls;
    int work;               /* return this many times 1 */
    tw *watch;              /* record watch->calls at each call */
    int seen;
    int del_self;
    isd_loop *loop;
} th;

static int th_cb(isd_loop *l, void *data)
{
    th *h = data;
    h->calls++;
    if (h->watch) h->seen = h->watch->calls;
    if (!isd_loop_running(l)) h->seen = -1000;
    if (h->del_self) isd_loop_del_hook(l, &h->h);
    if (h->work > 0) { h->work--; return 1; }
    return 0;
}

static void th_init(th *h)
{
    memset(h, 0, sizeof *h);
    h->h.cb = th_cb;
    h->h.data = h;
}

static void test_hooks(void)
{
    isd_loop *l = new_loop();
    th h1, h2, h3;
    tw a;
    int i, before;
    uint64_t t0, el;

    th_init(&h1); th_init(&h2); th_init(&h3);
    tw_open(&a);
    a.drain = 1;
    isd_io_set(l, &a.io, ISD_READ);
    h1.watch = &a;
    isd_loop_add_hook(l, &h1.h);
    isd_loop_add_hook(l, &h2.h);

    for (i = 0; i < 5; i++) isd_loop_run_once(l, 0, NULL);
    ok(h1.calls >= 5 && h2.calls >= 5,
       T("hooks run on every run_once (%d, %d calls in 5)"), h1.calls, h2.calls);
    ok(h1.calls <= 10, T("at most before and after the wait"));

    put1(a.peer, "x");
    before = a.calls;
    isd_loop_run_once(l, 1000, NULL);
    ok(a.calls == before + 1 && h1.seen == a.calls,
       T("the hook runs after the batch's callbacks"));

    /* a hook reporting work keeps run_once from blocking */
    h2.work = 1;
    t0 = isd_now_ms();
    isd_loop_run_once(l, 3000, NULL);
    el = isd_now_ms() - t0;
    ok(el < 1000, T("a hook that did work: run_once does not block (%u ms)"),
       (unsigned)el);
    h2.work = 0;

    /* hooks also run when nothing happened */
    before = h1.calls;
    isd_loop_run_once(l, 20, NULL);
    ok(h1.calls > before, T("hooks run after a timeout too"));

    /* deleting */
    isd_loop_del_hook(l, &h2.h);
    before = h2.calls;
    isd_loop_run_once(l, 0, NULL);
    is_int(h2.calls, before, T("deleted hook no longer runs"));
    isd_loop_del_hook(l, &h2.h);
    pass(T("deleting twice is harmless"));

    /* a hook deleting itself while hooks run, with others around */
    isd_loop_add_hook(l, &h2.h);
    h3.del_self = 1;
    isd_loop_add_hook(l, &h3.h);
    h1.calls = h2.calls = 0;
    isd_loop_run_once(l, 0, NULL);
    isd_loop_run_once(l, 0, NULL);
    ok(h3.calls == 1 && h1.calls >= 2 && h2.calls >= 2,
       T("a hook deleting itself: runs once, the others keep running"));

    isd_loop_del_hook(l, &h1.h);
    isd_loop_del_hook(l, &h2.h);
    tw_close(l, &a);
    isd_loop_free(l);
}

/* isd_loop_prepare runs the hooks now and reports their work */
static void test_prepare(void)
{
    isd_loop *l = new_loop();
    th h;
    int r;

    th_init(&h);
    isd_loop_add_hook(l, &h.h);
    r = isd_loop_prepare(l);
    ok(r == 0 && h.calls == 1, T("isd_loop_prepare runs the hooks: 0 work"));
    h.work = 1;
    r = isd_loop_prepare(l);
    ok(r != 0 && h.calls == 2, T("a hook that did work: non-zero (%d)"), r);
    isd_loop_del_hook(l, &h.h);
    r = isd_loop_prepare(l);
    ok(r == 0 && h.calls == 2, T("no hooks: 0"));
    isd_loop_free(l);
}

/* --------------------------------------------------------------- signals */

static volatile sig_atomic_t got_alrm, got_usr1;
static void on_alrm(int sig) { (void)sig; got_alrm++; }
static void on_usr1(int sig) { (void)sig; got_usr1++; }

static void no_restart(int sig, void (*fn)(int), struct sigaction *old)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = fn;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;                    /* no SA_RESTART */
    sigaction(sig, &sa, old);
}

static void test_eintr(void)
{
    isd_loop *l = new_loop();
    struct sigaction old;
    struct itimerval it;
    unsigned watchdog;
    tt safety;
    th h;
    int n, e;
    uint64_t t0, el;

    /* alarm() and setitimer share ITIMER_REAL: park the watchdog */
    watchdog = alarm(0);
    no_restart(SIGALRM, on_alrm, &old);
    th_init(&h);
    isd_loop_add_hook(l, &h.h);
    tt_init(&safety, 99);
    tt_start(l, &safety, 3000);          /* no hang if EINTR never comes */

    got_alrm = 0;
    memset(&it, 0, sizeof it);
    it.it_value.tv_usec = 50000;
    setitimer(ITIMER_REAL, &it, NULL);
    t0 = isd_now_ms();
    h.calls = 0;
    errno = 0;
    n = isd_loop_run_once(l, -1, NULL);
    e = errno;
    el = isd_now_ms() - t0;
    ok(n == -1 && e == EINTR,
       T("SIGALRM during run_once(-1): -1/EINTR (got %d, %s)"), n, strerror(e));
    ok(got_alrm == 1 && el < 2500, T("after the signal (%u ms)"), (unsigned)el);
    ok(h.calls >= 1, T("hooks still ran"));
    ok(safety.count == 0, T("the safety timer did not fire"));

    memset(&it, 0, sizeof it);
    setitimer(ITIMER_REAL, &it, NULL);
    sigaction(SIGALRM, &old, NULL);
    alarm(watchdog ? watchdog : 20);

    /* waitmask: a signal already pending when run_once is called */
    {
        sigset_t block, orig, waitmask, after;
        struct sigaction olds;
        no_restart(SIGUSR1, on_usr1, &olds);
        sigemptyset(&block);
        sigaddset(&block, SIGUSR1);
        sigprocmask(SIG_BLOCK, &block, &orig);
        sigprocmask(SIG_SETMASK, NULL, &waitmask);
        sigdelset(&waitmask, SIGUSR1);

        got_usr1 = 0;
        raise(SIGUSR1);
        ok(got_usr1 == 0, T("SIGUSR1 blocked: pending, not delivered"));

        /* still blocked in the wait mask too: it stays pending */
        {
            sigset_t still;
            sigprocmask(SIG_SETMASK, NULL, &still);
            n = isd_loop_run_once(l, 30, &still);
            ok(n == 0 && got_usr1 == 0,
               T("waitmask that keeps SIGUSR1 blocked: plain timeout"));
        }

        t0 = isd_now_ms();
        errno = 0;
        n = isd_loop_run_once(l, 5000, &waitmask);
        e = errno;
        el = isd_now_ms() - t0;
        ok(n == -1 && e == EINTR,
           T("pending SIGUSR1, waitmask unblocks it: -1/EINTR (got %d, %s)"),
           n, strerror(e));
        ok(el < 1000, T("promptly (%u ms): the mask is installed atomically"),
           (unsigned)el);
        is_int(got_usr1, 1, T("the handler ran once"));
        sigprocmask(SIG_SETMASK, NULL, &after);
        ok(!sigismember(&after, SIGUSR1),
           T("*waitmask is the thread's mask when run_once returns"));

        /* a signal arriving during the wait, blocked outside it */
        sigprocmask(SIG_SETMASK, &orig, NULL);
        sigprocmask(SIG_BLOCK, &block, NULL);
        {
            pid_t pid;
            fflush(stdout);
            pid = fork();
            if (pid == 0) {
                msleep(60);
                kill(getppid(), SIGUSR1);
                _exit(0);
            }
            got_usr1 = 0;
            t0 = isd_now_ms();
            errno = 0;
            n = isd_loop_run_once(l, 5000, &waitmask);
            e = errno;
            el = isd_now_ms() - t0;
            ok(n == -1 && e == EINTR && got_usr1 == 1 && el < 2500,
               T("SIGUSR1 arriving during the wait: -1/EINTR (%u ms)"),
               (unsigned)el);
            while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) ;
        }
        sigprocmask(SIG_SETMASK, &orig, NULL);
        sigaction(SIGUSR1, &olds, NULL);
    }

    isd_timer_stop(l, &safety.t);
    isd_loop_del_hook(l, &h.h);
    isd_loop_free(l);
}

static void test_close_in_batch_close(void) { test_close_in_batch(1); }
static void test_close_in_batch_stop(void)  { test_close_in_batch(0); }
static void test_close_in_batch_fd(void)    { test_close_in_batch(2); }

/* each test function runs in a child process: a crash fails it alone */
#define RUN(fn) do { \
        char name_[64]; \
        snprintf(name_, sizeof name_, "[%s] %s", BE, #fn); \
        tap_subtest(fn, name_); \
    } while (0)

int main(void)
{
    char list[256], *save = NULL, *name;
    char err[256] = "";
    isd_loop *l;
    int nbe = 0;

    alarm(20);
    signal(SIGPIPE, SIG_IGN);

    /* general things */
    ok(isd_backends() && *isd_backends(), "isd_backends: \"%s\"",
       isd_backends() ? isd_backends() : "(null)");
    errno = 0;
    l = isd_loop_new("no-such-backend", err, sizeof err);
    ok(l == NULL && errno != 0, "unknown backend: NULL with errno (%s)",
       strerror(errno));
    ok(strstr(err, "no-such-backend") != NULL, "error message names it: %s", err);
    {
        const char *env = getenv("IO_SOCKET_INET_DAEMON_BACKEND");
        char first[64] = "";
        unsetenv("IO_SOCKET_INET_DAEMON_BACKEND");
        sscanf(isd_backends(), "%63s", first);
        l = isd_loop_new(NULL, err, sizeof err);
        ok(l && strcmp(isd_loop_backend(l), first) == 0,
           "default backend is the first listed (%s)", l ? isd_loop_backend(l) : err);
        if (l) isd_loop_free(l);
        if (env) setenv("IO_SOCKET_INET_DAEMON_BACKEND", env, 1);
    }
    {
        uint64_t a = isd_now_ms(), b;
        msleep(50);
        b = isd_now_ms();
        ok(b >= a + 45 && b < a + 2000, "isd_now_ms advances with time (%u)",
           (unsigned)(b - a));
    }

    snprintf(list, sizeof list, "%s", isd_backends());
    for (name = strtok_r(list, " ", &save); name; name = strtok_r(NULL, " ", &save)) {
        nbe++;
        BE = name;
        note("backend %s", BE);
        RUN(test_new);
        RUN(test_io_basic);
        RUN(test_close_in_batch_close);
        RUN(test_close_in_batch_stop);
        RUN(test_close_in_batch_fd);
        RUN(test_many);
        RUN(test_timers);
        RUN(test_timer_heap);
        RUN(test_timer_repeat_late);
        RUN(test_timeout);
        RUN(test_hooks);
        RUN(test_prepare);
        RUN(test_eintr);
    }
    ok(nbe >= 1, "tested %d backend(s)", nbe);
    return done_testing();
}
