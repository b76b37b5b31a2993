/*
 * be_kqueue.c - kqueue backend for the BSDs and macOS.
 *
 * kqueue quirks this file minds:
 * - read and write are separate filters: one watcher may fire twice in a
 *   batch, once per filter; the core dispatches each, re-checking interest;
 * - EV_DELETE of a filter that was never added fails ENOENT: we only delete
 *   what the old interest had;
 * - a kqueue is not inherited across fork();
 * - EV_EOF on a read filter still leaves buffered data to read: mapped to a
 *   read event, and read() then returns 0;
 * - there is no kevent with a signal mask: the caller's mask is installed
 *   just before the wait, leaving a tiny window in which a signal waits for
 *   the timeout or the next event (use a timeout if that matters).
 */
#include "isd_int.h"

#ifdef ISD_HAVE_KQUEUE

#include <sys/types.h>
#include <sys/event.h>
#include <sys/time.h>
#include <stdlib.h>
#include <unistd.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>

#define KQ_BATCH 256

typedef struct kq_data {
    int kq;
    struct kevent ev[KQ_BATCH];
} kq_data;

static int kq_init(isd_loop *l)
{
    kq_data *d = malloc(sizeof *d);

    if (!d) {
        errno = ENOMEM;
        return -1;
    }
    d->kq = kqueue();
    if (d->kq < 0) {
        int e = errno;
        free(d);
        errno = e;
        return -1;
    }
    fcntl(d->kq, F_SETFD, FD_CLOEXEC);
    l->bedata = d;
    return 0;
}

static void kq_destroy(isd_loop *l)
{
    kq_data *d = l->bedata;

    if (d) {
        close(d->kq);
        free(d);
        l->bedata = NULL;
    }
}

static int kq_change(isd_loop *l, isd_io *w, unsigned old, unsigned new_)
{
    kq_data *d = l->bedata;
    struct kevent ch[2];
    int n = 0;

    if ((old ^ new_) & ISD_READ) {
        EV_SET(&ch[n], w->fd, EVFILT_READ,
               (new_ & ISD_READ) ? EV_ADD : EV_DELETE, 0, 0, w);
        n++;
    }
    if ((old ^ new_) & ISD_WRITE) {
        EV_SET(&ch[n], w->fd, EVFILT_WRITE,
               (new_ & ISD_WRITE) ? EV_ADD : EV_DELETE, 0, 0, w);
        n++;
    }
    return n ? kevent(d->kq, ch, n, NULL, 0, NULL) : 0;
}

static int kq_wait(isd_loop *l, int timeout_ms, const sigset_t *waitmask)
{
    kq_data *d = l->bedata;
    struct timespec ts, *tp = NULL;
    int i, n;

    if (timeout_ms >= 0) {
        ts.tv_sec = timeout_ms / 1000;
        ts.tv_nsec = (long)(timeout_ms % 1000) * 1000000L;
        tp = &ts;
    }
    if (waitmask)
        pthread_sigmask(SIG_SETMASK, waitmask, NULL);
    n = kevent(d->kq, NULL, 0, d->ev, KQ_BATCH, tp);
    if (n < 0)
        return -1;
    if (isd_loop_fired_reserve(l, n) < 0)
        return -1;
    for (i = 0; i < n; i++) {
        unsigned r = 0;

        if (d->ev[i].filter == EVFILT_READ)
            r = ISD_READ;
        else if (d->ev[i].filter == EVFILT_WRITE)
            r = ISD_WRITE;
        if (d->ev[i].flags & EV_ERROR)
            r |= ISD_EV_ERR;
        l->fired[i].w = d->ev[i].udata;
        l->fired[i].revents = r;
    }
    l->nfired = n;
    return n;
}

static int kq_fd(const isd_loop *l)
{
    return ((const kq_data *)l->bedata)->kq;
}

const isd_backend isd_backend_kqueue = {
    "kqueue", kq_init, kq_destroy, kq_change, kq_wait, kq_fd
};

#else
typedef int isd_be_kqueue_unused; /* ISO C: no empty translation unit */
#endif
