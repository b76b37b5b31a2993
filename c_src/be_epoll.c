/*
 * be_epoll.c - Linux epoll backend (level-triggered).
 *
 * epoll quirks this file minds:
 * - interest is per open file description, not per fd: closing an fd whose
 *   description is dup'd elsewhere keeps reporting events, so owners always
 *   remove interest (EPOLL_CTL_DEL) before close();
 * - ADD on a registered fd fails EEXIST and MOD on an unregistered one
 *   ENOENT: we know the old interest, so we pick the right op;
 * - EPOLLERR/EPOLLHUP are reported whatever the interest: mapped to
 *   ISD_EV_ERR so the read or write path meets the error itself;
 * - regular files give EPERM (not our case: sockets only);
 * - after fork the child shares the epoll set with the parent: a loop must
 *   not be used on both sides (the embedder creates loops lazily).
 * epoll_pwait installs the caller's signal mask atomically for the wait.
 */
#include "isd_int.h"

#ifdef ISD_HAVE_EPOLL

#include <sys/epoll.h>
#include <stdlib.h>
#include <unistd.h>
#include <errno.h>

#define EP_BATCH 256

typedef struct ep_data {
    int epfd;
    struct epoll_event ev[EP_BATCH];
} ep_data;

static int ep_init(isd_loop *l)
{
    ep_data *d = malloc(sizeof *d);

    if (!d) {
        errno = ENOMEM;
        return -1;
    }
    d->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (d->epfd < 0) {
        int e = errno;
        free(d);
        errno = e;
        return -1;
    }
    l->bedata = d;
    return 0;
}

static void ep_destroy(isd_loop *l)
{
    ep_data *d = l->bedata;

    if (d) {
        close(d->epfd);
        free(d);
        l->bedata = NULL;
    }
}

static int ep_change(isd_loop *l, isd_io *w, unsigned old, unsigned new_)
{
    ep_data *d = l->bedata;
    struct epoll_event ev;
    int op;

    ev.events = ((new_ & ISD_READ) ? EPOLLIN : 0u)
              | ((new_ & ISD_WRITE) ? EPOLLOUT : 0u);
    ev.data.ptr = w;
    op = !new_ ? EPOLL_CTL_DEL : !old ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
    return epoll_ctl(d->epfd, op, w->fd, &ev);
}

static int ep_wait(isd_loop *l, int timeout_ms, const sigset_t *waitmask)
{
    ep_data *d = l->bedata;
    int i, n;

    n = waitmask ? epoll_pwait(d->epfd, d->ev, EP_BATCH, timeout_ms, waitmask)
                 : epoll_wait(d->epfd, d->ev, EP_BATCH, timeout_ms);
    if (n < 0)
        return -1;
    if (isd_loop_fired_reserve(l, n) < 0)
        return -1;
    for (i = 0; i < n; i++) {
        uint32_t e = d->ev[i].events;
        unsigned r = 0;

        if (e & EPOLLIN)
            r |= ISD_READ;
        if (e & EPOLLOUT)
            r |= ISD_WRITE;
        if (e & (EPOLLERR | EPOLLHUP))
            r |= ISD_EV_ERR;
        l->fired[i].w = d->ev[i].data.ptr;
        l->fired[i].revents = r;
    }
    l->nfired = n;
    return n;
}

static int ep_fd(const isd_loop *l)
{
    return ((const ep_data *)l->bedata)->epfd;
}

const isd_backend isd_backend_epoll = {
    "epoll", ep_init, ep_destroy, ep_change, ep_wait, ep_fd
};

#else
typedef int isd_be_epoll_unused; /* ISO C: no empty translation unit */
#endif
