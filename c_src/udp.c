/*
 * udp.c - a UDP socket served on the loop: datagrams in, in batches
 * (recvmmsg where the system has it), replies queued and sent in batches
 * (sendmmsg) when the batch of events is over.
 *
 * A datagram is a message: no framing, no connection.  One longer than max
 * is dropped (MSG_TRUNC tells) and reported; replies wait in a bounded
 * queue (max_output bytes) only while the kernel's send buffer is full.
 */
#include "isd_int.h"

#include <sys/socket.h>
#include <sys/uio.h>
#include <netinet/in.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define UDP_MAXDGRAM 65535      /* the largest datagram there is (IPv6 jumbo
                                 * grams aside), plus one to see truncation */
#define UDP_RBUF     262144     /* receive buffers of one batch, in all */
#define UDP_RBATCH   64         /* datagrams per recvmmsg at most */
#define UDP_READS    8          /* batches per readiness event at most */
#define UDP_SBATCH   64         /* datagrams per sendmmsg */

/* A queued reply. */
typedef struct udp_out {
    isd_addr to;
    size_t   off, len;          /* its bytes in the queue's buffer */
} udp_out;

struct isd_udp {
    isd_io      io;             /* first: the loop hands us &u->io */
    isd_loop   *loop;
    const isd_udp_handlers *h;
    void       *data;
    unsigned    refcnt;
    int         family;         /* the socket's: replies to IPv4 peers of an
                                 * IPv6 socket go to ::ffff:a.b.c.d */
    int         closed;
    size_t      max, max_output;
    /* receiving */
    char       *rbuf;
    size_t      slot;           /* bytes per datagram slot (max + 1) */
    unsigned    nslots;
    /* replies */
    udp_out    *q;
    size_t      qn, qcap, qhead;
    isd_buf     qbuf;
    isd_hook    hook;           /* flushes after each batch of events */
    int         in_batch;
    /* a reply the kernel refused during a flush made from inside
     * isd_udp_send (the caller's callback is on the stack): reported
     * after the next flush made from the loop */
    int         in_send, derr;
    isd_addr    dto;
    isd_udp_stats st;
};

static void udp_io_cb(isd_loop *l, isd_io *w, unsigned ev);

static void udp_interest(isd_udp *u)
{
    unsigned want = ISD_READ;

    if (u->closed || u->io.fd < 0)
        return;
    if (u->qn > u->qhead)
        want |= ISD_WRITE;
    if (u->io.events != want)
        isd_io_set(u->loop, &u->io, want);
}

/* The kernel's address for a reply to a: an IPv4 peer of an IPv6 socket
 * as ::ffff:a.b.c.d (we show it to the embedder unmapped). */
static socklen_t udp_to(const isd_udp *u, const isd_addr *a, isd_addr *to)
{
    *to = *a;
    if (u->family == AF_INET6 && a->sa.sa_family == AF_INET) {
        memset(to, 0, sizeof *to);
        to->in6.sin6_family = AF_INET6;
        to->in6.sin6_port = a->in4.sin_port;
        to->in6.sin6_addr.s6_addr[10] = 0xff;
        to->in6.sin6_addr.s6_addr[11] = 0xff;
        memcpy(to->in6.sin6_addr.s6_addr + 12, &a->in4.sin_addr, 4);
    }
    return isd_addr_len(to);
}

/* Send what is queued, until done or the kernel is full.  A datagram the
 * kernel refuses for its own reasons (no route, too big) is dropped and
 * reported; the rest go on. */
static void udp_flush(isd_udp *u)
{
    while (u->qhead < u->qn && !u->closed) {
        size_t n = u->qn - u->qhead, i;
        int sent;
#if defined(__linux__)
        struct mmsghdr mm[UDP_SBATCH];
        struct iovec iov[UDP_SBATCH];
        isd_addr to[UDP_SBATCH];

        if (n > UDP_SBATCH)
            n = UDP_SBATCH;
        memset(mm, 0, sizeof(mm[0]) * n);
        for (i = 0; i < n; i++) {
            udp_out *o = &u->q[u->qhead + i];
            iov[i].iov_base = u->qbuf.data + u->qbuf.rpos + o->off;
            iov[i].iov_len = o->len;
            mm[i].msg_hdr.msg_iov = &iov[i];
            mm[i].msg_hdr.msg_iovlen = 1;
            mm[i].msg_hdr.msg_name = &to[i];
            mm[i].msg_hdr.msg_namelen = udp_to(u, &o->to, &to[i]);
        }
        do
            sent = sendmmsg(u->io.fd, mm, (unsigned)n, MSG_DONTWAIT);
        while (sent < 0 && errno == EINTR);
#else
        udp_out *o = &u->q[u->qhead];
        isd_addr to;
        socklen_t tl = udp_to(u, &o->to, &to);
        ssize_t w;

        ISD_UNUSED(i);
        ISD_UNUSED(n);
        do
            w = sendto(u->io.fd, u->qbuf.data + u->qbuf.rpos + o->off,
                       o->len, 0, &to.sa, tl);
        while (w < 0 && errno == EINTR);
        sent = w < 0 ? -1 : 1;
#endif
        if (sent < 0) {
            int e = errno;
            if (e == EAGAIN || e == EWOULDBLOCK || e == ENOBUFS)
                break;                  /* full: when it is writable */
            /* this one cannot go: drop it, say so, go on */
            u->st.dropped_out++;
            if (u->in_send) {
                if (!u->derr) {
                    u->derr = e;
                    u->dto = u->q[u->qhead].to;
                }
            } else if (u->h->on_error)
                u->h->on_error(u, e, &u->q[u->qhead].to);
            sent = 1;
        } else {
            for (i = 0; i < (size_t)sent; i++)
                u->st.bytes_out += u->q[u->qhead + i].len;
            u->st.datagrams_out += (uint64_t)sent;
        }
        u->qhead += (size_t)sent;
    }
    if (u->qhead == u->qn) {            /* empty: start afresh */
        u->qhead = u->qn = 0;
        isd_buf_consume(&u->qbuf, isd_buf_len(&u->qbuf));
    }
    udp_interest(u);
    if (u->derr && !u->in_send && !u->closed) {
        int e = u->derr;
        u->derr = 0;
        if (u->h->on_error)
            u->h->on_error(u, e, &u->dto);
    }
}

static int udp_hook(isd_loop *l, void *data)
{
    isd_udp *u = data;

    ISD_UNUSED(l);
    if ((u->qn > u->qhead && !(u->io.events & ISD_WRITE)) || u->derr) {
        udp_flush(u);
        return 1;
    }
    return 0;
}

isd_udp *isd_udp_new(isd_loop *l, int fd, const isd_udp_handlers *h,
                     size_t max, size_t max_output, void *data)
{
    isd_udp *u;
    isd_addr a;
    socklen_t len = sizeof a;

    memset(&a, 0, sizeof a);
    if (getsockname(fd, &a.sa, &len) < 0)
        return NULL;
    if (isd_fd_nonblock_cloexec(fd) < 0)
        return NULL;
    if (!(u = calloc(1, sizeof *u)))
        return NULL;
    u->loop = l;
    u->h = h;
    u->data = data;
    u->refcnt = 1;
    u->family = a.sa.sa_family;
    u->max = max && max < UDP_MAXDGRAM ? max : UDP_MAXDGRAM;
    u->max_output = max_output;
    u->slot = u->max + 1;
    u->nslots = (unsigned)(UDP_RBUF / u->slot);
    if (u->nslots < 1)
        u->nslots = 1;
    if (u->nslots > UDP_RBATCH)
        u->nslots = UDP_RBATCH;
    isd_buf_init(&u->qbuf);
    isd_io_init(&u->io, fd, udp_io_cb);
    u->hook.cb = udp_hook;
    u->hook.data = u;
    if (isd_io_set(l, &u->io, ISD_READ) < 0) {
        int e = errno;
        free(u);
        errno = e;
        return NULL;
    }
    isd_loop_add_hook(l, &u->hook);
    return u;
}

/* Receive a batch: how many datagrams (their lengths and senders in the
 * arrays), 0 if none, -1/errno. */
static int udp_recv(isd_udp *u, size_t *len, isd_addr *from, int *trunc)
{
    unsigned n = u->nslots, i;
#if defined(__linux__)
    struct mmsghdr mm[UDP_RBATCH];
    struct iovec iov[UDP_RBATCH];
    int got;

    memset(mm, 0, sizeof(mm[0]) * n);
    for (i = 0; i < n; i++) {
        iov[i].iov_base = u->rbuf + (size_t)i * u->slot;
        iov[i].iov_len = u->slot;
        mm[i].msg_hdr.msg_iov = &iov[i];
        mm[i].msg_hdr.msg_iovlen = 1;
        mm[i].msg_hdr.msg_name = &from[i];
        mm[i].msg_hdr.msg_namelen = sizeof from[i];
    }
    do
        got = recvmmsg(u->io.fd, mm, n, MSG_DONTWAIT, NULL);
    while (got < 0 && errno == EINTR);
    if (got < 0)
        return -1;
    for (i = 0; i < (unsigned)got; i++) {
        len[i] = mm[i].msg_len;
        trunc[i] = (mm[i].msg_hdr.msg_flags & MSG_TRUNC) || len[i] > u->max;
    }
    return got;
#else
    /* one recvmsg per datagram (MSG_TRUNC still says a datagram did not
     * fit); the batch ends at EAGAIN */
    for (i = 0; i < n; i++) {
        struct msghdr mh;
        struct iovec iov;
        ssize_t r;

        memset(&mh, 0, sizeof mh);
        iov.iov_base = u->rbuf + (size_t)i * u->slot;
        iov.iov_len = u->slot;
        mh.msg_iov = &iov;
        mh.msg_iovlen = 1;
        mh.msg_name = &from[i];
        mh.msg_namelen = sizeof from[i];
        do
            r = recvmsg(u->io.fd, &mh, MSG_DONTWAIT);
        while (r < 0 && errno == EINTR);
        if (r < 0) {
            if (i && (errno == EAGAIN || errno == EWOULDBLOCK))
                break;
            return i ? (int)i : -1;
        }
        len[i] = (size_t)r;
        trunc[i] = (mh.msg_flags & MSG_TRUNC) || len[i] > u->max;
    }
    return (int)i;
#endif
}

static void udp_io_cb(isd_loop *l, isd_io *w, unsigned ev)
{
    isd_udp *u = (isd_udp *)w;
    size_t len[UDP_RBATCH];
    isd_addr from[UDP_RBATCH];
    int trunc[UDP_RBATCH], got, i, reads;

    ISD_UNUSED(l);
    isd_udp_ref(u);
    if ((ev & ISD_WRITE) && u->qn > u->qhead)
        udp_flush(u);
    if (!(ev & ISD_READ) || u->closed) {
        isd_udp_unref(u);
        return;
    }
    if (!u->rbuf && !(u->rbuf = malloc(u->slot * u->nslots))) {
        if (u->h->on_error)
            u->h->on_error(u, ENOMEM, NULL);
        isd_udp_unref(u);
        return;
    }
    u->in_batch++;
    for (reads = 0; reads < UDP_READS && !u->closed; reads++) {
        memset(from, 0, sizeof(from[0]) * u->nslots);
        got = udp_recv(u, len, from, trunc);
        if (got <= 0) {
            if (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK
                && u->h->on_error)
                u->h->on_error(u, errno, NULL);     /* (ICMP errors...) */
            break;
        }
        for (i = 0; i < got && !u->closed; i++) {
            isd_addr_unmap(&from[i]);
            if (trunc[i]) {
                u->st.dropped_in++;
                if (u->h->on_error)
                    u->h->on_error(u, EMSGSIZE, &from[i]);
                continue;
            }
            u->st.datagrams_in++;
            u->st.bytes_in += len[i];
            u->h->on_datagram(u, &from[i], u->rbuf + (size_t)i * u->slot,
                              len[i]);
        }
        if ((unsigned)got < u->nslots)
            break;                      /* drained */
    }
    u->in_batch--;
    if ((u->qn > u->qhead || u->derr) && !u->closed)
        udp_flush(u);                   /* the replies of the batch at once */
    isd_udp_unref(u);
}

int isd_udp_send(isd_udp *u, const isd_addr *to, const void *p, size_t n)
{
    udp_out *o;

    if (u->closed) {
        errno = ENOTCONN;
        return -1;
    }
    if (n > UDP_MAXDGRAM - 8 - 20) {    /* (IPv4 and UDP headers) */
        errno = EMSGSIZE;
        return -1;
    }
    if (!isd_addr_len(to)) {
        errno = EAFNOSUPPORT;
        return -1;
    }
    if (u->max_output && isd_buf_len(&u->qbuf) + n > u->max_output
        && u->qn > u->qhead && !(u->io.events & ISD_WRITE)) {
        /* replies waiting for the end of the batch: the kernel may well
         * take them now (max_output bounds what it cannot take) */
        u->in_send = 1;
        udp_flush(u);
        u->in_send = 0;
    }
    if (u->max_output && isd_buf_len(&u->qbuf) + n > u->max_output) {
        u->st.dropped_out++;
        errno = ENOBUFS;
        return -1;
    }
    if (u->qn == u->qcap) {
        size_t cap = u->qcap ? u->qcap * 2 : 64;
        udp_out *q = realloc(u->q, cap * sizeof *q);
        if (!q)
            return -1;
        u->q = q;
        u->qcap = cap;
    }
    o = &u->q[u->qn];
    o->to = *to;
    o->off = isd_buf_len(&u->qbuf);
    o->len = n;
    if (n && isd_buf_append(&u->qbuf, p, n) < 0)
        return -1;
    u->qn++;
    /* inside a batch the end of it sends; outside (a timer, tick) the
     * end-of-batch hook does, before the loop waits again */
    if (!u->in_batch && !isd_loop_running(u->loop))
        udp_flush(u);
    return 0;
}

int  isd_udp_fd(const isd_udp *u) { return u->io.fd; }
void *isd_udp_data(const isd_udp *u) { return u->data; }
void isd_udp_set_data(isd_udp *u, void *data) { u->data = data; }
size_t isd_udp_pending(const isd_udp *u) { return isd_buf_len(&u->qbuf); }
void isd_udp_stats_get(const isd_udp *u, isd_udp_stats *st) { *st = u->st; }
isd_udp *isd_udp_ref(isd_udp *u) { u->refcnt++; return u; }

/* Stop serving: the fd is closed (take: handed back instead), queued
 * replies are sent if the kernel takes them now, else dropped. */
static int udp_stop(isd_udp *u, int take)
{
    int fd = u->io.fd;

    if (u->closed)
        return -1;
    if (!take && u->qn > u->qhead)
        udp_flush(u);
    u->closed = 1;
    if (u->io.events)
        isd_io_set(u->loop, &u->io, 0);
    isd_loop_del_hook(u->loop, &u->hook);
    isd_io_init(&u->io, -1, udp_io_cb);
    if (!take && fd >= 0)
        close(fd);
    return fd;
}

void isd_udp_close(isd_udp *u)
{
    udp_stop(u, 0);
}

int isd_udp_take_fd(isd_udp *u)
{
    return udp_stop(u, 1);
}

void isd_udp_abandon(isd_udp *u)
{
    /* a forked copy: close our descriptor, leave the shared interest */
    if (u->closed)
        return;
    u->closed = 1;
    isd_loop_del_hook(u->loop, &u->hook);
    if (u->io.fd >= 0)
        close(u->io.fd);
    u->io.fd = -1;
    u->io.events = 0;
}

void isd_udp_unref(isd_udp *u)
{
    if (--u->refcnt)
        return;
    if (!u->closed)
        udp_stop(u, 0);
    free(u->rbuf);
    free(u->q);
    isd_buf_free(&u->qbuf);
    free(u);
}
