/*
 * be_poll.c - portable poll(2) backend, always built; forced with
 * IO_SOCKET_INET_DAEMON_BACKEND=poll so the test suite runs on it too.
 *
 * poll quirks this file minds:
 * - O(n) per wait: fine for the fallback, the reason epoll/kqueue exist;
 * - POLLHUP may come without POLLIN even when data is still readable:
 *   mapped to ISD_EV_ERR, which the core hands to the read path;
 * - POLLNVAL means the fd was closed under us: also ISD_EV_ERR, and owners
 *   never close an fd that is still registered;
 * - the pollfd array is compacted on removal by moving the last entry into
 *   the hole (w->slot tracks each watcher's index).
 * ppoll installs the caller's signal mask atomically where it exists.
 */
#include "isd_int.h"

#include <poll.h>
#include <stdlib.h>
#include <errno.h>

typedef struct pl_data {
    struct pollfd *fds;
    isd_io       **ws;
    size_t         n, cap;
} pl_data;

static int pl_init(isd_loop *l)
{
    pl_data *d = calloc(1, sizeof *d);

    if (!d) {
        errno = ENOMEM;
        return -1;
    }
    l->bedata = d;
    return 0;
}

static void pl_destroy(isd_loop *l)
{
    pl_data *d = l->bedata;

    if (d) {
        free(d->fds);
        free(d->ws);
        free(d);
        l->bedata = NULL;
    }
}

static short pl_mask(unsigned ev)
{
    return (short)(((ev & ISD_READ) ? POLLIN : 0)
                 | ((ev & ISD_WRITE) ? POLLOUT : 0));
}

static int pl_change(isd_loop *l, isd_io *w, unsigned old, unsigned new_)
{
    pl_data *d = l->bedata;
    size_t i;

    ISD_UNUSED(old);
    if (!new_) {
        if (w->slot < 0)
            return 0;
        i = (size_t)w->slot;
        d->n--;
        if (i != d->n) {
            d->fds[i] = d->fds[d->n];
            d->ws[i] = d->ws[d->n];
            d->ws[i]->slot = (int)i;
        }
        w->slot = -1;
        return 0;
    }
    if (w->slot < 0) {
        if (d->n == d->cap) {
            size_t cap = d->cap ? d->cap * 2 : 64;
            struct pollfd *f = realloc(d->fds, cap * sizeof *f);
            isd_io **ws;
            if (!f) {
                errno = ENOMEM;
                return -1;
            }
            d->fds = f;
            ws = realloc(d->ws, cap * sizeof *ws);
            if (!ws) {
                errno = ENOMEM;
                return -1;
            }
            d->ws = ws;
            d->cap = cap;
        }
        w->slot = (int)d->n++;
        d->ws[w->slot] = w;
        d->fds[w->slot].fd = w->fd;
    }
    d->fds[w->slot].events = pl_mask(new_);
    d->fds[w->slot].revents = 0;
    return 0;
}

static int pl_wait(isd_loop *l, int timeout_ms, const sigset_t *waitmask)
{
    pl_data *d = l->bedata;
    size_t i;
    int n, k = 0;

    n = isd_poll_fds(d->fds, d->n, timeout_ms, waitmask);
    if (n <= 0)
        return n;
    if (isd_loop_fired_reserve(l, n) < 0)
        return -1;
    for (i = 0; i < d->n && k < n; i++) {
        short re = d->fds[i].revents;
        unsigned r = 0;

        if (!re)
            continue;
        if (re & POLLIN)
            r |= ISD_READ;
        if (re & POLLOUT)
            r |= ISD_WRITE;
        if (re & (POLLERR | POLLHUP | POLLNVAL))
            r |= ISD_EV_ERR;
        l->fired[k].w = d->ws[i];
        l->fired[k].revents = r;
        k++;
    }
    l->nfired = k;
    return k;
}

const isd_backend isd_backend_poll = {
    "poll", pl_init, pl_destroy, pl_change, pl_wait, NULL
};
