/*
 * isd_int.h - internals shared by the core's files (not for embedders).
 */
#ifndef ISD_INT_H
#define ISD_INT_H

/* accept4, epoll_pwait, ppoll, MSG_NOSIGNAL: ask for them before any
 * system header.  Everything still degrades to POSIX where absent. */
#if defined(__linux__) && !defined(_GNU_SOURCE)
#  define _GNU_SOURCE 1
#endif
#if !defined(_POSIX_C_SOURCE) && !defined(__APPLE__) && !defined(__FreeBSD__) \
    && !defined(__OpenBSD__) && !defined(__NetBSD__) && !defined(__DragonFly__)
#  define _POSIX_C_SOURCE 200809L
#endif

#include "isd.h"

#include <poll.h>

#if defined(__linux__)
#  define ISD_HAVE_EPOLL 1
#  define ISD_HAVE_ACCEPT4 1
#  define ISD_HAVE_PPOLL 1
#endif
#if defined(__APPLE__) || defined(__FreeBSD__) || defined(__OpenBSD__) \
    || defined(__NetBSD__) || defined(__DragonFly__)
#  define ISD_HAVE_KQUEUE 1
#endif
#if defined(__FreeBSD__) || defined(__NetBSD__) || defined(__DragonFly__)
#  define ISD_HAVE_ACCEPT4 1
#endif

#define ISD_UNUSED(x) ((void)(x))

/* Backends report an error or hangup with this bit: it goes to whatever
 * interest the watcher has, so the read or write path sees the error. */
#define ISD_EV_ERR 0x80u

/* One fired event, as a backend reports it; the core dispatches. */
typedef struct isd_fired {
    isd_io  *w;
    unsigned revents;
} isd_fired;

/* A backend: translates kernel readiness into isd_fired entries and nothing
 * more; all dispatch lives in loop.c. */
typedef struct isd_backend {
    const char *name;
    int  (*init)(isd_loop *l);                  /* 0 or -1/errno */
    void (*destroy)(isd_loop *l);
    /* Change w's interest from old to new (either may be 0). */
    int  (*change)(isd_loop *l, isd_io *w, unsigned old, unsigned new_);
    /* Wait; fill l->fired/l->nfired.  -1/errno (EINTR included). */
    int  (*wait)(isd_loop *l, int timeout_ms, const sigset_t *waitmask);
    /* The descriptor another loop can watch (readable when an event is
     * pending), or NULL: none (poll). */
    int  (*fd)(const isd_loop *l);
} isd_backend;

struct isd_loop {
    const isd_backend *be;
    void       *bedata;      /* the backend's own state */
    isd_fired  *fired;
    int         nfired, firedcap;
    isd_timer **heap;        /* 1-based binary min-heap of timers */
    size_t      nheap, heapcap;
    isd_hook   *hooks;
    int         running;
    int         in_timers;   /* inside run_timers */
    uint64_t    timer_now;   /* the clock run_timers compares with */
    int         forked;      /* in a child forked since it was made */
    uint64_t    now;         /* isd_now_ms() when the last wait returned */
};

/* timer.c: run the due timers (after each wait). */
void isd_timers_run(isd_loop *l);

/* Grow l->fired to hold at least n entries.  0 or -1/ENOMEM. */
int isd_loop_fired_reserve(isd_loop *l, int n);

/* The waitmask contract of the public waits: *waitmask is the thread's
 * mask when they return, whichever way (errno kept).  Returns rc. */
ssize_t isd_waited(ssize_t rc, const sigset_t *waitmask);

/* Wait on one fd with poll/ppoll (used by backends and isd_conn_fill). */
int isd_poll_fds(struct pollfd *fds, unsigned long n, int timeout_ms,
                 const sigset_t *waitmask);

extern const isd_backend isd_backend_poll;
#ifdef ISD_HAVE_EPOLL
extern const isd_backend isd_backend_epoll;
#endif
#ifdef ISD_HAVE_KQUEUE
extern const isd_backend isd_backend_kqueue;
#endif

/* sock.c */
int isd_fd_nonblock_cloexec(int fd);
void isd_nodelay(int fd);

#endif /* ISD_INT_H */
