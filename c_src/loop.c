/*
 * loop.c - the event loop: backend selection, fd interest, timers, dispatch.
 *
 * Backends only report {watcher, revents}; this file dispatches them.  A
 * watcher may be stopped or closed by an earlier callback of the same batch,
 * so the interest is re-checked before every callback (fd < 0 = closed).
 * Watcher memory must stay valid until the batch ends: owners defer freeing
 * to a hook (see conn.c).
 */
#include "isd_int.h"

#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <stdio.h>
#include <time.h>
#include <pthread.h>
#include <limits.h>

#define FIRE_AHEAD 8    /* events whose watchers are prefetched ahead */

static const isd_backend *const all_backends[] = {
#ifdef ISD_HAVE_EPOLL
    &isd_backend_epoll,
#endif
#ifdef ISD_HAVE_KQUEUE
    &isd_backend_kqueue,
#endif
    &isd_backend_poll,
    NULL
};

const char *isd_backends(void)
{
#if defined(ISD_HAVE_EPOLL) && defined(ISD_HAVE_KQUEUE)
    return "epoll kqueue poll";
#elif defined(ISD_HAVE_EPOLL)
    return "epoll poll";
#elif defined(ISD_HAVE_KQUEUE)
    return "kqueue poll";
#else
    return "poll";
#endif
}

isd_loop *isd_loop_new(const char *backend, char *err, size_t errlen)
{
    const isd_backend *const *b;
    isd_loop *l;
    int saved;

    if (!backend || !*backend) {
        backend = getenv("IO_SOCKET_INET_DAEMON_BACKEND");
        if (backend && !*backend)
            backend = NULL;
    }
    for (b = all_backends; *b; b++)
        if (!backend || strcmp(backend, (*b)->name) == 0)
            break;
    if (!*b) {
        if (err)
            snprintf(err, errlen, "backend '%s' is not available (have: %s)",
                     backend, isd_backends());
        errno = EINVAL;
        return NULL;
    }
    l = calloc(1, sizeof *l);
    if (!l) {
        if (err)
            snprintf(err, errlen, "out of memory");
        errno = ENOMEM;
        return NULL;
    }
    l->be = *b;
    l->now = isd_now_ms();
    if (isd_loop_fired_reserve(l, 64) < 0 || l->be->init(l) < 0) {
        saved = errno;
        if (err)
            snprintf(err, errlen, "%s: %s", l->be->name, strerror(saved));
        free(l->fired);
        free(l);
        errno = saved;
        return NULL;
    }
    return l;
}

void isd_loop_free(isd_loop *l)
{
    size_t i;

    if (!l)
        return;
    for (i = 1; i <= l->nheap; i++)
        l->heap[i]->hidx = 0;
    l->be->destroy(l);
    free(l->heap);
    free(l->fired);
    free(l);
}

const char *isd_loop_backend(const isd_loop *l) { return l->be->name; }
uint64_t isd_loop_now(const isd_loop *l) { return l->now; }
int isd_loop_running(const isd_loop *l) { return l->running; }

int isd_loop_fd(const isd_loop *l)
{
    return l->be->fd ? l->be->fd(l) : -1;
}

int isd_loop_next_timer(const isd_loop *l)
{
    uint64_t now, wait;

    if (!l->nheap)
        return -1;
    now = isd_now_ms();
    wait = l->heap[1]->at > now ? l->heap[1]->at - now : 0;
    return wait > INT_MAX ? INT_MAX : (int)wait;
}

int isd_loop_fired_reserve(isd_loop *l, int n)
{
    isd_fired *f;
    int cap;

    if (l->firedcap >= n)
        return 0;
    cap = l->firedcap ? l->firedcap : 64;
    while (cap < n)
        cap *= 2;
    f = realloc(l->fired, (size_t)cap * sizeof *f);
    if (!f) {
        errno = ENOMEM;
        return -1;
    }
    l->fired = f;
    l->firedcap = cap;
    return 0;
}

void isd_io_init(isd_io *w, int fd, isd_io_cb cb)
{
    w->fd = fd;
    w->events = 0;
    w->cb = cb;
    w->slot = -1;
}

int isd_io_set(isd_loop *l, isd_io *w, unsigned events)
{
    unsigned old = w->events;

    events &= ISD_READ | ISD_WRITE;
    if (events == old)
        return 0;
    if (w->fd < 0) {
        errno = EBADF;
        return -1;
    }
    /* A forked child must not change the interest it shares with the
     * parent (epoll), or that it lost (kqueue is not inherited); only
     * poll's is the process's own. */
    if (l->forked && l->be != &isd_backend_poll) {
        w->events = events;
        return 0;
    }
    if (l->be->change(l, w, old, events) < 0)
        return -1;
    w->events = events;
    return 0;
}

/* ------------------------------------------------------------------- hooks */

void isd_loop_add_hook(isd_loop *l, isd_hook *h)
{
    h->next = l->hooks;
    l->hooks = h;
}

void isd_loop_del_hook(isd_loop *l, isd_hook *h)
{
    isd_hook **pp;

    for (pp = &l->hooks; *pp; pp = &(*pp)->next)
        if (*pp == h) {
            *pp = h->next;
            return;
        }
}

static int run_hooks(isd_loop *l)
{
    isd_hook *h, *next;
    int done = 0;

    for (h = l->hooks; h; h = next) {
        next = h->next;
        done += h->cb(l, h->data);
    }
    return done;
}

/* -------------------------------------------------------------------- wait */

int isd_poll_fds(struct pollfd *fds, unsigned long n, int timeout_ms,
                 const sigset_t *waitmask)
{
#ifdef ISD_HAVE_PPOLL
    if (waitmask) {
        struct timespec ts, *tp = NULL;
        if (timeout_ms >= 0) {
            ts.tv_sec = timeout_ms / 1000;
            ts.tv_nsec = (long)(timeout_ms % 1000) * 1000000L;
            tp = &ts;
        }
        return ppoll(fds, (nfds_t)n, tp, waitmask);
    }
#else
    /* No atomic variant: unblock, then wait (a signal landing in between
     * waits for the timeout or the next event). */
    if (waitmask)
        pthread_sigmask(SIG_SETMASK, waitmask, NULL);
#endif
    return poll(fds, (nfds_t)n, timeout_ms);
}

ssize_t isd_waited(ssize_t rc, const sigset_t *waitmask)
{
    int e = errno;

    if (waitmask)
        pthread_sigmask(SIG_SETMASK, waitmask, NULL);
    errno = e;
    return rc;
}

int isd_loop_prepare(isd_loop *l)
{
    int done;

    l->running++;
    done = run_hooks(l);
    l->running--;
    return done;
}

int isd_loop_run_once(isd_loop *l, int timeout_ms, const sigset_t *waitmask)
{
    int i, n, rc, saved = 0;
    uint64_t now;

    l->running++;
    /* Work queued outside the loop (input read by a blocking read in a
     * timer or signal handler) must not wait for the next event. */
    if (run_hooks(l))
        timeout_ms = 0;
    if (l->nheap) {
        now = isd_now_ms();
        uint64_t wait = l->heap[1]->at > now ? l->heap[1]->at - now : 0;
        if (wait > INT_MAX)
            wait = INT_MAX;
        if (timeout_ms < 0 || wait < (uint64_t)timeout_ms)
            timeout_ms = (int)wait;
    }
    l->nfired = 0;
    rc = l->be->wait(l, timeout_ms, waitmask);
    if (rc < 0)
        saved = errno;
    l->now = isd_now_ms();          /* the time of this batch */
    /* The wait installed waitmask; make sure it is in force from here on
     * (backends without an atomic wait already set it). */
    if (waitmask)
        pthread_sigmask(SIG_SETMASK, waitmask, NULL);
    n = l->nfired;
    /* With many watchers each one is out of the cache by the time it
     * fires again: start the loads a few events ahead. */
    for (i = 0; i < n && i < FIRE_AHEAD; i++)
        ISD_PREFETCH(l->fired[i].w);
    for (i = 0; i < n; i++) {
        isd_io *w = l->fired[i].w;
        unsigned ev = l->fired[i].revents & (w->events | ISD_EV_ERR);

        if (i + FIRE_AHEAD < n)
            ISD_PREFETCH(l->fired[i + FIRE_AHEAD].w);
        if (w->fd < 0 || !w->events)
            continue;
        if (ev & ISD_EV_ERR)
            ev = w->events;
        if (ev)
            w->cb(l, w, ev);
    }
    l->nfired = 0;
    isd_timers_run(l);
    run_hooks(l);
    l->running--;
    if (rc < 0) {
        errno = saved;
        return -1;
    }
    return n;
}
