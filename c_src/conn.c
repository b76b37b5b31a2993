/*
 * conn.c - servers and connections: accept, read, frame, write, close.
 *
 * Ownership.  The server holds one reference on each connection from accept
 * until the connection is closed and the current batch of events is over;
 * embedders hold their own (isd_conn_ref).  Memory goes with the last one.
 * So a connection closed by a callback is never freed under the loop's feet,
 * and an embedder's object for it stays valid (flags, addresses) forever.
 *
 * Deferred work.  Output written from inside the loop is queued and flushed
 * at the end of the reading connection's batch or of the loop iteration (one
 * writev for many replies); failures found while writing are queued too, so
 * on_close never runs in the middle of somebody else's callback.  Both go
 * through one per-server pending list, run by a loop hook.
 */
#include "isd_int.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <sys/uio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <poll.h>
#include <pthread.h>
#include <time.h>

#ifndef MSG_NOSIGNAL
#  define MSG_NOSIGNAL 0   /* SO_NOSIGPIPE is set at accept instead */
#endif

#define READ_MIN     16384   /* free space wanted before each read */
#define ACCEPT_BATCH 64      /* accepts per readiness event */
#define IOV_BATCH    64
#define WRITE_EARLY  65536   /* queued bytes that are written at once */
#define ISD_C_SREF   (1u << 16)  /* the server's reference is still held */
#define ISD_C_REDO   (1u << 17)  /* input arrived outside dispatch: process */
#define ISD_C_READY  (1u << 18)  /* on srv->ready (holding a reference) */
#define ISD_C_TAKEN  (1u << 19)  /* its turn: isd_conn_take found no more */
#define ISD_C_RDREADY (1u << 20) /* readable: its turn reads (on_ready) */
#define ISD_C_ENDED  (1u << 21)  /* on_close was called (at most once) */
#define ISD_C_DRAINED (1u << 22) /* fell to low_water: on_drain is due */
#define ISD_C_NOSHUT (1u << 23)  /* a forked child's copy: the parent's
                                  * pending shutdown(SHUT_WR) is not ours */
#define ISD_C_SKIP   (1u << 24)  /* left out of the broadcast being made */
#define ISD_C_PRE    (1u << 25)  /* its listener's hook: the preamble is
                                  * pending (no on_accept yet: its input
                                  * goes to the hook, not to framing) */
#define ISD_C_DEFER  (1u << 26)  /* ... complete, but deferred by the hook
                                  * (isd_conn_pre_defer): its length in
                                  * c->scan till the stream's first byte */
#define ISD_C_TPS    (1u << 27)  /* its transport is starting (a handshake):
                                  * input held, output waits */
#define ISD_C_TPQ    (1u << 28)  /* ... will, once the output queued before
                                  * isd_conn_start_transport is written */
#define ISD_C_TPRW   (1u << 29)  /* a transport read waits to write */
#define ISD_C_TPWR   (1u << 30)  /* a transport write waits to read */
#define ISD_C_TP     (1u << 31)  /* it has a transport (c->ts->tp) */
#define ISD_C_TPEV   (ISD_C_TPS | ISD_C_TPRW | ISD_C_TPWR)
#if defined(__GNUC__) || defined(__clang__)
#  define ISD_COLD __attribute__((noinline, cold))
#else
#  define ISD_COLD
#endif
#define PRE_MAX      65536       /* a preamble still incomplete in this
                                  * many bytes is refused */

/* A connection's transport, if it has one (or may: STARTTLS). */
typedef struct isd_tpstate {
    const isd_transport *tp;  /* the listener's copy, or STARTTLS's */
    void       *arg;
    void       *tpd;          /* its state once opened, or NULL */
    size_t      plain;        /* ISD_C_TPQ: queued bytes still to go plain */
    unsigned    want;         /* ISD_C_TPS: what the start waits for */
} isd_tpstate;
#define TPD(c) ((c)->ts ? (c)->ts->tpd : NULL)

/* What a request touches comes first (three cache lines of four): a busy
 * server with thousands of connections misses the cache on each. */
struct isd_conn {
    isd_io      io;          /* first: the loop hands us &c->io */
    isd_server *srv;         /* NULL once closed */
    unsigned    refcnt;
    unsigned    flags;
    int         err;         /* why it failed, for on_close */
    unsigned    uflags;
    void       *data;
    isd_conn   *rnext;       /* srv->ready (first line: queued in dispatch) */
    size_t      consumed;    /* bytes consumed during on_message */
    size_t      scan;        /* framing resume offset into in */
    size_t      msg_len;     /* length of the message on_message has */
    isd_conn   *pnext;       /* srv->pending */
    isd_framing *fr;         /* its own framing (owned), or NULL: srv's */
    isd_buf     in;
    isd_outq    out;
    uint64_t    bytes_in, bytes_out, messages_in;   /* stats */
    uint64_t    last_rx;     /* loop time of the last input */
    unsigned    idle_ms;
    isd_conn   *prev, *next; /* srv->conns: every conn holding SREF */
    isd_timer   timer;       /* idle timeout while open, linger after */
    int64_t     connected;   /* wall clock at accept (stats) */
    isd_blob   *path;        /* a UNIX listener's path (counted), or NULL */
    isd_addr    peer, local;
    /* its listener's hook (the listener's copy) until it closes, or NULL */
    const isd_conn_hook *hook;
    void       *hook_arg;
    void       *hook_data;   /* the hook's own per-connection state */
    /* its transport (ISD_C_TP), or its STARTTLS listener's: NULL for a
     * plain connection (which pays this pointer, nothing more) */
    struct isd_tpstate *ts;
};

/* A listening socket.  Kept (fd -1) until the server is freed once it is
 * closed: an event for it may still be in the loop's batch. */
typedef struct isd_listener {
    isd_io       io;         /* first: the loop hands us &l->io */
    isd_server  *srv;
    struct isd_listener *next;
    isd_addr     addr;       /* its local address */
    int          wild;       /* bound to a wildcard: ask each conn */
    isd_blob    *path;       /* UNIX: its path, NUL included */
    isd_conn_hook hook;      /* what its connections go through ... */
    void        *hook_arg;
    isd_transport tp;        /* ... and what their bytes go through */
    void        *tp_arg;
    int          has_hook, has_tp;
    int          hooked;     /* either is set.  Never reused once set: a
                              * connection points at it till it closes */
} isd_listener;

struct isd_server {
    isd_loop      *loop;
    const isd_handlers *h;
    isd_server_cfg cfg;
    void          *data;
    isd_listener  *ls;         /* in the order added (closed ones too) */
    size_t         nls;        /* open listeners */
    int            spare_fd;   /* for shedding load on EMFILE */
    isd_timer      accept_pause;
    uint64_t       last_emfile;
    isd_conn      *conns;
    size_t         nopen;      /* OPEN connections, preambles pending too */
    size_t         npre;       /* ... of which preambles pending */
    isd_conn      *pending;
    isd_conn      *ready;      /* input to deliver (on_ready embedders) */
    isd_conn     **ready_tail;
    isd_hook       hook;
    isd_buf        spare;      /* an emptied input buffer, for the next read */
    isd_chunk     *ospare;     /* an emptied output chunk, for the next reply */
    isd_server    *rnext_srv;  /* every server of the process (fork) */
    isd_server   **rprev_srv;
    pthread_t      owner;      /* the thread that made it */
    isd_server_stats st;       /* (open: nopen) */
};

static void conn_io_cb(isd_loop *l, isd_io *w, unsigned ev);
static void conn_finish(isd_conn *c);
static int  conn_flush(isd_conn *c);
static void conn_fail(isd_conn *c, int err);
static void conn_process(isd_conn *c);
static void conn_interest(isd_conn *c);

/* ------------------------------------------------------------ references */

void isd_conn_ref(isd_conn *c) { c->refcnt++; }

void isd_conn_unref(isd_conn *c)
{
    if (--c->refcnt)
        return;
    free(c->ts);
    isd_buf_free(&c->in);
    isd_outq_clear(&c->out);
    free(c->fr);
    if (c->path)
        isd_blob_unref(c->path);
    free(c);
}

unsigned isd_conn_flags(const isd_conn *c) { return c->flags & 0xffffu; }
int isd_conn_fd(const isd_conn *c) { return c->io.fd; }
isd_server *isd_conn_server(const isd_conn *c) { return c->srv; }
const isd_addr *isd_conn_peer(const isd_conn *c) { return &c->peer; }
const isd_addr *isd_conn_local(const isd_conn *c) { return &c->local; }
const char *isd_conn_path(const isd_conn *c)
{
    return c->path ? isd_blob_data(c->path) : NULL;
}
void *isd_conn_data(const isd_conn *c) { return c->data; }
void isd_conn_set_data(isd_conn *c, void *data) { c->data = data; }
size_t isd_conn_out_bytes(const isd_conn *c) { return c->out.bytes; }
unsigned *isd_conn_uflags(isd_conn *c) { return &c->uflags; }
void *isd_conn_hook_data(const isd_conn *c) { return c->hook_data; }
void isd_conn_set_hook_data(isd_conn *c, void *data) { c->hook_data = data; }
const isd_conn_hook *isd_conn_hook_of(const isd_conn *c) { return c->hook; }

int isd_conn_set_addrs(isd_conn *c, const isd_addr *peer,
                       const isd_addr *local)
{
    if ((peer && peer->sa.sa_family != AF_UNIX && !isd_addr_len(peer))
        || (local && local->sa.sa_family != AF_UNIX && !isd_addr_len(local))) {
        errno = EAFNOSUPPORT;
        return -1;
    }
    if (peer)
        c->peer = *peer;
    if (local)
        c->local = *local;
    return 0;
}

/* Open, not failed, still reading: its input can be read. */
static int conn_reads(const isd_conn *c)
{
    return (c->flags & (ISD_C_OPEN | ISD_C_FAILED | ISD_C_RDSHUT))
           == ISD_C_OPEN;
}

/* ... and not held (paused, or output above high water): its input is
 * read from the socket and delivered. */
static int conn_delivers(const isd_conn *c)
{
    return (c->flags & (ISD_C_OPEN | ISD_C_FAILED | ISD_C_RDSHUT
                        | ISD_C_PAUSED | ISD_C_HIGH | ISD_C_TPS | ISD_C_TPQ))
           == ISD_C_OPEN;
}

/* Failures that are the peer's doing on a sound socket (a message over
 * max, an idle timeout, EOF inside a length-prefixed message): the output
 * queued so far is still delivered. */
static int keeps_output(int err)
{
    return err == EMSGSIZE || err == ETIMEDOUT || err == EBADMSG;
}

static void accept_update(isd_server *s);
static void pre_failed(isd_conn *c, int err);
static void tp_queued(isd_conn *c);
static unsigned tp_want(const isd_conn *c, unsigned want);
static void tp_end(isd_conn *c);

/* c stops counting as open. */
static void conn_unopen(isd_conn *c)
{
    isd_server *s = c->srv;

    if (!(c->flags & ISD_C_OPEN))
        return;
    c->flags &= ~ISD_C_OPEN;
    if (s) {
        s->nopen--;
        if (c->flags & ISD_C_PRE)       /* never accepted: not counted */
            s->npre--;
        else
            s->st.closed++;
        if (s->cfg.max_conns && s->nopen + 1 == s->cfg.max_conns)
            accept_update(s);
    }
}

/* --------------------------------------------------------------- pending */

static void pend(isd_conn *c)
{
    isd_server *s = c->srv;

    if (!s || (c->flags & ISD_C_PENDING))
        return;
    c->flags |= ISD_C_PENDING;
    c->pnext = s->pending;
    s->pending = c;
}

/* Release the server's reference of a finished connection. */
static void drop_sref(isd_server *s, isd_conn *c)
{
    if (!(c->flags & ISD_C_SREF))
        return;
    c->flags &= ~ISD_C_SREF;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    isd_conn_unref(c);
}

/* The core ends c for err (0: EOF): on_close, then the close.  During
 * on_close c is as open as on any other path (listed, writable: what it
 * prints is delivered) but reads no more; then it closes gracefully after
 * EOF or a message over max, and at once after anything else (a broken
 * socket, a peer that does not read).  Called once per connection. */
static void conn_end(isd_conn *c, int err)
{
    isd_server *s = c->srv;

    if (!(c->flags & ISD_C_OPEN) || (c->flags & ISD_C_ENDED)) {
        isd_conn_abort(c);
        return;
    }
    if (c->flags & ISD_C_PRE) {         /* not the embedder's yet */
        pre_failed(c, err);
        return;
    }
    c->flags = (c->flags & ~ISD_C_FAILED) | ISD_C_ENDED | ISD_C_RDSHUT;
    if (err)
        s->st.failed++;
    if (s->h->on_close)
        s->h->on_close(c, err);
    /* abort and close re-queue c as CLOSED: that entry drops the server's
     * reference (never while c is still on the list) */
    if (err && !keeps_output(err))
        isd_conn_abort(c);
    else
        isd_conn_close(c);
}

/* Run the pending list until it is empty: flush output, deliver deferred
 * failures, release finished connections.  Handlers may queue more.  A
 * queued connection is kept alive by the server's reference, which is only
 * dropped for a connection just taken off the list. */
static int run_pending(isd_server *s)
{
    isd_conn *c;
    int done = 0;

    while ((c = s->pending) != NULL) {
        done++;
        s->pending = c->pnext;
        c->pnext = NULL;
        c->flags &= ~ISD_C_PENDING;
        if (c->flags & ISD_C_CLOSED) {  /* no callback: no reference of ours */
            drop_sref(s, c);
            continue;
        }
        isd_conn_ref(c);
        if (c->flags & ISD_C_FAILED) {
            conn_end(c, c->err);
        } else {
            if (c->flags & ISD_C_DRAINED) {
                /* (not if it went above high water again meanwhile: the
                 * drain is for when it comes down from that) */
                c->flags &= ~ISD_C_DRAINED;
                if (conn_reads(c) && !(c->flags & ISD_C_HIGH)
                    && s->h->on_drain)
                    s->h->on_drain(c);
            }
            if (c->flags & ISD_C_TPQ)
                tp_queued(c);
            if ((c->flags & ISD_C_REDO) && (c->flags & ISD_C_OPEN)) {
                c->flags &= ~ISD_C_REDO;
                conn_process(c);
            }
            if (c->out.bytes && !(c->flags & (ISD_C_CLOSED | ISD_C_FAILED)))
                conn_flush(c);
            if (!(c->flags & ISD_C_CLOSED))
                conn_interest(c);
        }
        isd_conn_unref(c);
    }
    return done;
}

static void ready_end(isd_server *s);

/* After each batch of events (and before each wait): deliver, then flush
 * and finish.  Delivery may queue flushes; the pending list may find input
 * to deliver (unread, or read outside dispatch). */
static int server_hook(isd_loop *l, void *data)
{
    isd_server *s = data;
    int done = 0, rounds = 0;

    ISD_UNUSED(l);
    do {
        if (s->ready) {
            done++;
            s->h->on_ready(s);
            ready_end(s);
        }
        done += run_pending(s);
    } while (s->ready && ++rounds < 64);  /* the rest: before the next wait */
    return done;
}

/* ------------------------------------------------------------- interest */

static void conn_interest(isd_conn *c)
{
    unsigned want = 0;

    if (c->io.fd < 0 || !c->srv)
        return;
    if (conn_delivers(c) && !(c->flags & ISD_C_EOF))
        want |= ISD_READ;
    if (c->out.bytes && !(c->flags & ISD_C_FAILED))
        want |= ISD_WRITE;
    if (c->flags & ISD_C_TPEV)
        want = tp_want(c, want);
    if (isd_io_set(c->srv->loop, &c->io, want) < 0 && want)
        conn_fail(c, errno);
}

/* ------------------------------------------------------------------ fail */

/* Something went wrong on c: stop its I/O now, tell the embedder later.
 * A message over max is the peer's fault, not the socket's: the replies
 * queued for its earlier messages are kept, to be delivered after on_close
 * (a graceful close).  Any other failure drops the output: the socket is
 * broken, or (ENOBUFS) the peer does not read it. */
static void conn_fail(isd_conn *c, int err)
{
    if (c->flags & (ISD_C_CLOSED | ISD_C_FAILED))
        return;
    c->flags |= ISD_C_FAILED;
    c->err = err ? err : EIO;
    if (c->srv && c->io.events)
        isd_io_set(c->srv->loop, &c->io, 0);
    if (!keeps_output(c->err) || (c->flags & ISD_C_ENDED))
        isd_outq_clear(&c->out);
    if (!(c->flags & ISD_C_OPEN) || (c->flags & ISD_C_ENDED)) {
        /* Already closed by the embedder, only flushing: no on_close. */
        conn_finish(c);
        return;
    }
    pend(c);
}

void isd_conn_fail(isd_conn *c, int err)
{
    conn_fail(c, err);
}

/* ----------------------------------------------------------------- close */

static void linger_cb(isd_loop *l, isd_timer *t)
{
    ISD_UNUSED(l);
    isd_conn_abort(t->data);
}

/* The idle timer: it is not moved at every read (that would be a heap
 * operation per message); it fires at most once per timeout, and then
 * looks at when the last input came (libev's "be smart about timeouts"). */
static void idle_cb(isd_loop *l, isd_timer *t)
{
    isd_conn *c = t->data;
    uint64_t due;

    if (!(c->flags & ISD_C_OPEN) || !c->idle_ms || !c->srv)
        return;
    if (c->flags & (ISD_C_PAUSED | ISD_C_FAILED | ISD_C_EOF)) {
        /* not reading: the clock does not run (restarted on resume) */
        isd_timer_start(l, t, c->idle_ms);
        return;
    }
    due = c->last_rx + c->idle_ms;
    if (due > l->timer_now) {
        isd_timer_start(l, t, due - l->timer_now);
        return;
    }
    conn_fail(c, ETIMEDOUT);
}

static void idle_start(isd_conn *c)
{
    isd_loop *l = c->srv->loop;

    c->last_rx = isd_loop_now(l);
    if (c->idle_ms)
        isd_timer_start(l, &c->timer, c->idle_ms);
    else
        isd_timer_stop(l, &c->timer);
}

void isd_conn_set_idle(isd_conn *c, unsigned ms)
{
    c->idle_ms = ms;
    if ((c->flags & ISD_C_OPEN) && c->srv)
        idle_start(c);
}

unsigned isd_conn_idle(const isd_conn *c) { return c->idle_ms; }

void isd_conn_pause(isd_conn *c, int pause)
{
    if (!(c->flags & ISD_C_OPEN) || !c->srv)
        return;
    if (pause) {
        c->flags |= ISD_C_PAUSED;
    } else if (c->flags & ISD_C_PAUSED) {
        c->flags = (c->flags & ~ISD_C_PAUSED) | ISD_C_REDO;
        c->last_rx = isd_loop_now(c->srv->loop);
    }
    pend(c);        /* the interest (and, on resume, the delivery) */
}

/* The hook is done with c: its state goes (once c is closed). */
static void hook_release(isd_conn *c)
{
    const isd_conn_hook *h = c->hook;

    c->hook = NULL;
    if (h->release)
        h->release(c, c->hook_arg);
    c->hook_data = NULL;
    c->hook_arg = NULL;
}

/* Close the fd and leave the server (its reference goes after the batch). */
static void conn_finish(isd_conn *c)
{
    isd_server *s = c->srv;
    char junk[4096];
    int i;

    if (c->flags & ISD_C_CLOSED)
        return;
    conn_unopen(c);
    if (s) {
        isd_timer_stop(s->loop, &c->timer);
        if (c->io.events)
            isd_io_set(s->loop, &c->io, 0);
    }
    if (c->io.fd >= 0) {
        /* Unread input makes close() send RST, which can destroy replies
         * still in flight to the peer: read what is already here first
         * (not in a forked child: the input is the parent's, and the
         * parent's copy of the socket keeps it from being reset). */
        for (i = 0; i < 16 && !(c->flags & ISD_C_EOF)
                    && !(s && s->loop->forked); i++)
            if (recv(c->io.fd, junk, sizeof junk, 0) <= 0)
                break;
        if (TPD(c))
            tp_end(c);
        close(c->io.fd);
        c->io.fd = -1;
    }
    c->flags = (c->flags & ~(ISD_C_CLOSING | ISD_C_FAILED)) | ISD_C_CLOSED;
    if (!(c->flags & ISD_C_INMSG))      /* on_message's msg points into it */
        isd_buf_free(&c->in);
    isd_outq_clear(&c->out);
    if (c->hook)
        hook_release(c);
    if (TPD(c))
        tp_end(c);
    if (s) {
        pend(c);        /* the server's reference goes when the batch ends */
        c->srv = NULL;
    }
}

void isd_conn_abort(isd_conn *c)
{
    if (c->flags & ISD_C_CLOSED)
        return;
    isd_outq_clear(&c->out);
    conn_finish(c);
}

void isd_conn_close(isd_conn *c)
{
    isd_server *s = c->srv;

    if (c->flags & ISD_C_CLOSED)
        return;
    if (c->flags & (ISD_C_TPS | ISD_C_TPQ)) {
        /* its transport has not started: what waits for it goes */
        isd_conn_abort(c);
        return;
    }
    if (c->flags & ISD_C_FAILED) {
        /* The embedder closes it before hearing of the failure: it asked,
         * so no on_close.  Output kept by the failure (the replies before
         * a message over max) is still delivered. */
        if (!c->out.bytes) {
            isd_conn_abort(c);
            return;
        }
        c->flags &= ~ISD_C_FAILED;
    }
    conn_unopen(c);
    if (!(c->flags & ISD_C_INMSG))      /* on_message's msg points into it */
        isd_buf_free(&c->in);
    c->scan = 0;
    if (!c->out.bytes) {
        conn_finish(c);
        return;
    }
    if (!(c->flags & ISD_C_CLOSING)) {
        c->flags |= ISD_C_CLOSING;
        c->timer.cb = linger_cb;        /* (was the idle timer) */
        if (s->cfg.linger_ms)
            isd_timer_start(s->loop, &c->timer, s->cfg.linger_ms);
        else
            isd_timer_stop(s->loop, &c->timer);
    }
    if (conn_flush(c) == 0 && !(c->flags & ISD_C_CLOSED)) {
        if (!s->cfg.linger_ms)
            isd_conn_abort(c);      /* no time to linger: what one write took */
        else
            conn_interest(c);
    }
}

static void conn_shut_wr(isd_conn *c);

int isd_conn_shutdown(isd_conn *c, int how)
{
    if (!(c->flags & ISD_C_OPEN)) {
        errno = ENOTCONN;
        return -1;
    }
    if (how == SHUT_RDWR) {
        isd_conn_close(c);
        return 0;
    }
    if (how == SHUT_RD) {
        c->flags |= ISD_C_RDSHUT;
        shutdown(c->io.fd, SHUT_RD);
    } else if (how == SHUT_WR) {
        c->flags |= ISD_C_WRSHUT;
        if (!c->out.bytes)
            conn_shut_wr(c);
    } else {
        errno = EINVAL;
        return -1;
    }
    conn_interest(c);
    return 0;
}

/* ----------------------------------------------------------------- write */

/* EOF to the peer: through the transport first (close_notify). */
static void conn_shut_wr(isd_conn *c)
{
    if ((c->flags & ISD_C_TP) && c->srv && c->srv->loop->forked)
        return;                 /* (the parent's: see reg_child) */
    if (TPD(c) && !(c->flags & ISD_C_TPS))
        c->ts->tp->shutdown(c->ts->tpd);
    shutdown(c->io.fd, SHUT_WR);
}

/* c's output is back down to low_water: its input flows again (delivered
 * from the pending list, on_drain first). */
static void high_end(isd_conn *c)
{
    c->flags = (c->flags & ~ISD_C_HIGH) | ISD_C_DRAINED | ISD_C_REDO;
    pend(c);        /* (last_rx: conn_flush set it with this write) */
}

/* w bytes of c's queue were written. */
static inline void out_sent(isd_conn *c, size_t w)
{
    c->bytes_out += w;
    if (c->srv)
        c->srv->st.bytes_out += w;
    isd_outq_consume_spare(&c->out, w, c->srv ? &c->srv->ospare : NULL);
    if (c->flags & ISD_C_HIGH) {
        /* held for its output: taking some is its sign of life */
        c->last_rx = isd_loop_now(c->srv->loop);
        if (c->out.bytes <= c->srv->cfg.low_water)
            high_end(c);
    }
}

/* After writing: a closing c whose output is all written is finished; a
 * half-closed one sends its EOF; the write interest follows the queue. */
static inline int flush_end(isd_conn *c)
{
    if (!c->out.bytes) {
        if (c->flags & ISD_C_CLOSING) {
            conn_finish(c);
            return 0;
        }
        if ((c->flags & (ISD_C_WRSHUT | ISD_C_NOSHUT)) == ISD_C_WRSHUT)
            conn_shut_wr(c);
    }
    if (c->srv && ((c->out.bytes != 0) != ((c->io.events & ISD_WRITE) != 0)))
        conn_interest(c);
    return 0;
}

static int tp_flush(isd_conn *c);

/* iov[0..n) to the socket, as sendmsg, never raising SIGPIPE. */
static inline ssize_t sock_sendv(int fd, struct iovec *iov, int n)
{
    struct msghdr mh;

    if (n == 1)         /* the usual reply: no msghdr for the kernel */
        return send(fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL);
    memset(&mh, 0, sizeof mh);
    mh.msg_iov = iov;
    mh.msg_iovlen = n;
    return sendmsg(fd, &mh, MSG_NOSIGNAL);
}

/* Write queued output until done or the kernel is full.  0 (maybe partial,
 * maybe finished a closing conn) or -1 (c failed). */
static int conn_flush(isd_conn *c)
{
    struct iovec iov[IOV_BATCH];
    size_t want;
    ssize_t w;
    int i, n;

    if (c->flags & ISD_C_TP)
        return tp_flush(c);
    while (c->out.bytes) {
        n = isd_outq_iov(&c->out, iov, IOV_BATCH);
        for (want = 0, i = 0; i < n; i++)
            want += iov[i].iov_len;
        w = sock_sendv(c->io.fd, iov, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            conn_fail(c, errno);
            return -1;
        }
        out_sent(c, (size_t)w);
        if ((size_t)w < want)
            break;
    }
    return flush_end(c);
}

int isd_conn_flush(isd_conn *c)
{
    if (c->flags & (ISD_C_CLOSED | ISD_C_FAILED)) {
        errno = ENOTCONN;
        return -1;
    }
    return conn_flush(c);
}

static int flush_wait(isd_conn *c, int timeout_ms, const sigset_t *waitmask)
{
    uint64_t deadline = isd_now_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
    struct pollfd pfd;

    for (;;) {
        uint64_t now;
        if (c->flags & (ISD_C_CLOSED | ISD_C_FAILED)) {
            errno = ENOTCONN;
            return -1;
        }
        if (conn_flush(c) < 0)
            return -1;
        if (!c->out.bytes || (c->flags & ISD_C_CLOSED))
            return 0;
        if (c->flags & (ISD_C_TPS | ISD_C_TPQ)) {
            errno = EAGAIN;     /* its transport starts in the loop only */
            return -1;
        }
        now = isd_now_ms();
        if (timeout_ms >= 0 && now >= deadline) {
            errno = ETIMEDOUT;
            return -1;
        }
        pfd.fd = c->io.fd;
        pfd.events = (c->flags & ISD_C_TPWR) ? POLLIN : POLLOUT;
        pfd.revents = 0;
        if (isd_poll_fds(&pfd, 1, timeout_ms >= 0 ? (int)(deadline - now) : -1,
                         waitmask) < 0
            && (errno != EINTR || waitmask))
            return -1;
    }
}

int isd_conn_flush_wait(isd_conn *c, int timeout_ms, const sigset_t *waitmask)
{
    return (int)isd_waited(flush_wait(c, timeout_ms, waitmask), waitmask);
}

int isd_server_forked(const isd_server *s) { return s->loop->forked; }

/* Queue n bytes for c: p's (copied) or, with b, the blob's (shared). */
static inline int conn_queue(isd_conn *c, const void *p, size_t n,
                             isd_blob *b)
{
    isd_server *s = c->srv;

    if ((c->flags & (ISD_C_OPEN | ISD_C_FAILED | ISD_C_WRSHUT))
        != ISD_C_OPEN) {
        errno = !(c->flags & ISD_C_WRSHUT) ? ENOTCONN
              : (c->flags & ISD_C_TP) && s && s->loop->forked ? EPERM
              : EPIPE;
        return -1;
    }
    if (n == 0)
        return 0;
    if (s->cfg.max_output && (n > s->cfg.max_output
                              || c->out.bytes > s->cfg.max_output - n)) {
        conn_fail(c, ENOBUFS);
        errno = ENOBUFS;
        return -1;
    }
    if ((b ? isd_outq_append_blob(&c->out, b)
           : isd_outq_append_spare(&c->out, p, n, &s->ospare)) < 0)
        return -1;
    if (c->out.bytes > s->cfg.high_water && s->cfg.high_water
        && !(c->flags & ISD_C_HIGH)) {
        c->flags |= ISD_C_HIGH;     /* input held until it drains */
        pend(c);                    /* (the interest) */
    }
    /* Inside the loop, replies are batched and flushed when the current
     * batch ends; outside it (tick, signal handlers) nobody else would.  A
     * big queue goes out at once: memory stays bounded and a vanished peer
     * is noticed by the writer. */
    if (isd_loop_running(s->loop) && c->out.bytes < WRITE_EARLY) {
        /* c's own on_message: conn_process's callers flush after it */
        if (!(c->flags & ISD_C_INMSG))
            pend(c);
        return 0;
    }
    if (conn_flush(c) < 0) {
        errno = c->err ? c->err : EPIPE;
        return -1;
    }
    return 0;
}

int isd_conn_write(isd_conn *c, const void *p, size_t n)
{
    return conn_queue(c, p, n, NULL);
}

int isd_conn_write_blob(isd_conn *c, isd_blob *b)
{
    return conn_queue(c, NULL, isd_blob_len(b), b);
}

/* Below this a broadcast is copied into each queue: the entry for a
 * shared blob would take as much. */
#define BLOB_MIN 128

size_t isd_server_broadcast(isd_server *s, const void *p, size_t n,
                            isd_conn *const *except, size_t nexcept,
                            unsigned umask, unsigned uwant)
{
    isd_blob *b = NULL;
    isd_conn *c, *next;
    size_t i, got = 0;

    if (n >= BLOB_MIN && !(b = isd_blob_new(p, n)))
        return 0;
    for (i = 0; i < nexcept; i++)
        except[i]->flags |= ISD_C_SKIP;
    for (c = s->conns; c; c = next) {
        next = c->next;
        if ((c->flags & (ISD_C_OPEN | ISD_C_SKIP | ISD_C_PRE)) != ISD_C_OPEN
            || (c->uflags & umask) != uwant)
            continue;
        isd_conn_ref(c);        /* a write may fail it (max_output) */
        if (conn_queue(c, p, n, b) == 0)
            got++;
        next = c->next;
        isd_conn_unref(c);
    }
    for (i = 0; i < nexcept; i++)
        except[i]->flags &= ~ISD_C_SKIP;
    isd_blob_unref(b);          /* (the queues hold their own) */
    return got;
}

/* ------------------------------------------------------------------ read */

const char *isd_conn_in(const isd_conn *c, size_t *len)
{
    *len = isd_buf_len(&c->in);
    return isd_buf_head(&c->in);
}

void isd_conn_consume(isd_conn *c, size_t n)
{
    size_t have = isd_buf_len(&c->in);

    if (n > have)
        n = have;
    isd_buf_consume(&c->in, n);
    c->scan = 0;
    c->consumed += n;
}

int isd_conn_unread(isd_conn *c, const void *p, size_t n)
{
    if (c->flags & ISD_C_CLOSED) {
        errno = ENOTCONN;
        return -1;
    }
    if (isd_buf_prepend(&c->in, p, n) < 0)
        return -1;
    c->scan = 0;
    c->consumed++;      /* the head changed: do not drop it as unread */
    if (!(c->flags & ISD_C_INMSG)) {
        c->flags |= ISD_C_REDO;
        pend(c);
    }
    return 0;
}

/* Idle connections keep no input buffer (memory per idle connection is
 * what bounds how many we hold); the server keeps one spare so that a busy
 * server does not malloc and free a buffer for every read. */
static void in_release(isd_server *s, isd_conn *c)
{
    if (!c->in.data || isd_buf_len(&c->in))
        return;
    if (s && !s->spare.data && c->in.cap <= READ_MIN * 4) {
        s->spare = c->in;
        s->spare.rpos = s->spare.wpos = 0;
        isd_buf_init(&c->in);
    } else {
        isd_buf_free(&c->in);
    }
}

static ssize_t tp_read1(isd_conn *c);

/* One non-blocking read into c->in: >0 bytes, 0 EOF, -1 errno. */
static ssize_t conn_read1(isd_conn *c)
{
    isd_server *s = c->srv;
    ssize_t n;

    if ((c->flags & ISD_C_TP) && c->ts->tpd)
        return tp_read1(c);

    if (!c->in.data && s && s->spare.data) {
        c->in = s->spare;
        isd_buf_init(&s->spare);
    }
    if (isd_buf_reserve(&c->in, READ_MIN) < 0)
        return -1;
    do
        n = recv(c->io.fd, c->in.data + c->in.wpos, c->in.cap - c->in.wpos, 0);
    while (n < 0 && errno == EINTR);
    if (n > 0) {
        c->in.wpos += (size_t)n;
        c->bytes_in += (size_t)n;
        if (s) {
            c->last_rx = isd_loop_now(s->loop);
            s->st.bytes_in += (size_t)n;
        }
    } else if (n == 0)
        c->flags |= ISD_C_EOF;
    return n;
}

/* The read for a readiness event, into c->in.  A reset ends the stream
 * like EOF (what was received is still delivered, then on_close(err)). */
static void conn_read_ev(isd_conn *c)
{
    if (conn_read1(c) < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
        if (errno == ENOMEM) {
            conn_fail(c, errno);
        } else {
            c->err = errno;
            c->flags |= ISD_C_EOF;
        }
    }
}

static inline const isd_framing *conn_framing(const isd_conn *c)
{
    return c->fr ? c->fr : &c->srv->cfg.framing;
}

/* Frame m (of isd_frame_next) is c's next message: drop its prefix, if the
 * framing has one, and count it.  The message's length. */
static inline size_t msg_start(isd_conn *c, const isd_framing *f, size_t m)
{
    if (f->kind == ISD_FRAME_LENGTH) {
        size_t hdr = isd_frame_hdr(f);
        isd_buf_consume(&c->in, hdr);   /* (not input the handler consumed) */
        c->scan = 0;
        m -= hdr;
    }
    c->consumed = 0;
    c->msg_len = m;
    c->messages_in++;
    c->srv->st.messages_in++;
    return m;
}

/* conn_frame found no complete message in len buffered bytes: at EOF the
 * unterminated rest is a message (but a length-prefixed one cut short
 * fails c: EBADMSG), and once everything is delivered on_close runs and c
 * is closed.  The final message's length, or -1. */
static ssize_t conn_frame_end(isd_conn *c, const isd_framing *f, size_t len)
{
    if (len && f->kind == ISD_FRAME_LENGTH) {
        conn_end(c, EBADMSG);   /* the peer stopped inside a message */
        return -1;
    }
    if (len)
        return (ssize_t)msg_start(c, f, len);  /* final unterminated one */
    /* Everything delivered: the peer is done.  After a plain EOF c stays
     * open (writable: the peer may only have half-closed) for the handler,
     * then closes gracefully; after a reset it is aborted. */
    conn_end(c, c->err);
    return -1;
}

/* The length of c's next message to deliver (0 for an empty
 * length-prefixed one), or -1 if there is none: incomplete, or c no longer
 * reads.  A message over max fails c; EOF: conn_frame_end. */
static inline ssize_t conn_frame(isd_conn *c)
{
    const isd_framing *f;
    size_t len;
    ssize_t m;

    if (!conn_delivers(c))
        return -1;
    f = conn_framing(c);
    len = isd_buf_len(&c->in);
    m = isd_frame_next(f, isd_buf_head(&c->in), len, &c->scan);
    if (m > 0)
        return (ssize_t)msg_start(c, f, (size_t)m);
    if (m < 0) {
        conn_fail(c, EMSGSIZE);
        return -1;
    }
    if (!(c->flags & ISD_C_EOF))
        return -1;
    return conn_frame_end(c, f, len);
}

/* c's input is handled: answer now (one write for everything it produced),
 * watch what is left to watch, give back an emptied input buffer. */
static void conn_answer(isd_conn *c)
{
    if (c->out.bytes && !(c->flags & (ISD_C_CLOSED | ISD_C_FAILED)))
        conn_flush(c);
    if (!(c->flags & ISD_C_CLOSED))
        conn_interest(c);
    in_release(c->srv, c);
}

/* Queue c for the embedder's on_ready (once; the queue holds a reference). */
static void ready_push(isd_server *s, isd_conn *c)
{
    if (c->flags & ISD_C_READY)
        return;
    c->flags |= ISD_C_READY;
    isd_conn_ref(c);
    c->rnext = NULL;
    if (!s->ready)
        s->ready_tail = &s->ready;
    *s->ready_tail = c;
    s->ready_tail = &c->rnext;
}

/* Deliver every complete message in c->in; at EOF, the rest, then on_close.
 * An on_ready embedder takes them itself, after the batch of events. */
static void conn_process(isd_conn *c)
{
    isd_server *s = c->srv;
    ssize_t m;

    if (s->h->on_ready) {
        if (conn_delivers(c) && (isd_buf_len(&c->in) || (c->flags & ISD_C_EOF)))
            ready_push(s, c);
        return;
    }
    while ((m = conn_frame(c)) >= 0) {
        c->flags |= ISD_C_INMSG;
        s->h->on_message(c, isd_buf_head(&c->in), (size_t)m);
        c->flags &= ~ISD_C_INMSG;
        if (!(c->flags & ISD_C_OPEN)) {
            isd_buf_free(&c->in);       /* closed by the handler */
            return;
        }
        if (!c->consumed)               /* msg_len: isd_conn_next moves on */
            isd_conn_consume(c, c->msg_len);
    }
}

isd_conn *isd_server_ready(isd_server *s)
{
    isd_conn *c = s->ready;

    if (!c)
        return NULL;
    s->ready = c->rnext;
    c->rnext = NULL;
    c->flags &= ~(ISD_C_READY | ISD_C_TAKEN);
    return c;
}

void isd_conn_prefetch(const isd_conn *c)
{
    const char *p = (const char *)c;
    size_t off;

    for (off = 0; off < sizeof *c; off += 64)
        ISD_PREFETCH(p + off);
}

unsigned isd_server_ready_ahead(const isd_server *s, isd_conn **v, unsigned n)
{
    isd_conn *c = s->ready;
    unsigned k = 0;

    for (; c && k < n; c = c->rnext)
        v[k++] = c;
    return k;
}

/* The current message is over: drop it unless the handler consumed input
 * itself; a connection closed meanwhile lets go of its input now. */
static void msg_end(isd_conn *c)
{
    if (!(c->flags & ISD_C_INMSG))
        return;
    c->flags &= ~ISD_C_INMSG;
    if (!(c->flags & ISD_C_OPEN))
        isd_buf_free(&c->in);
    else if (!c->consumed)
        isd_conn_consume(c, c->msg_len);
}

int isd_conn_take(isd_conn *c, const char **msg, size_t *len)
{
    ssize_t m;

    msg_end(c);
    while (c->srv) {
        if ((m = conn_frame(c)) >= 0) {
            c->flags |= ISD_C_INMSG;
            *msg = isd_buf_head(&c->in);
            *len = (size_t)m;
            return 1;
        }
        if (!(c->flags & ISD_C_RDREADY) || !conn_delivers(c)
            || (c->flags & ISD_C_EOF))
            break;
        c->flags &= ~ISD_C_RDREADY;     /* one read a turn, as on_message */
        conn_read_ev(c);
    }
    c->flags = (c->flags & ~ISD_C_RDREADY) | ISD_C_TAKEN;
    return 0;
}

void isd_conn_done(isd_conn *c)
{
    isd_server *s = c->srv;

    msg_end(c);
    if (s && !(c->flags & ISD_C_TAKEN) && conn_delivers(c)) {
        c->flags |= ISD_C_REDO;         /* left some: the next round */
        pend(c);
    }
    c->flags &= ~(ISD_C_TAKEN | ISD_C_RDREADY);
    conn_answer(c);
    isd_conn_unref(c);
}

/* What on_ready left in the queue: its messages are dropped. */
static void ready_end(isd_server *s)
{
    isd_conn *c;
    const char *m;
    size_t n;

    while ((c = isd_server_ready(s)) != NULL) {
        while (isd_conn_take(c, &m, &n))
            ;
        isd_conn_done(c);
    }
}

int isd_conn_next(isd_conn *c, const char **msg, size_t *len)
{
    isd_server *s = c->srv;
    ssize_t m;

    if (!(c->flags & ISD_C_INMSG) || !s || !conn_delivers(c))
        return 0;
    if (!c->consumed)
        isd_conn_consume(c, c->msg_len);    /* consumed is not 0 now */
    m = isd_frame_next(conn_framing(c), isd_buf_head(&c->in),
                       isd_buf_len(&c->in), &c->scan);
    if (m <= 0)
        return 0;       /* none yet, or over max: conn_process's business */
    *len = msg_start(c, conn_framing(c), (size_t)m);
    *msg = isd_buf_head(&c->in);
    return 1;
}

const isd_framing *isd_conn_framing(const isd_conn *c)
{
    return c->srv ? conn_framing(c) : NULL;
}

int isd_conn_set_framing(isd_conn *c, const isd_framing *f)
{
    isd_framing *own = NULL;

    if (!c->srv) {
        errno = ENOTCONN;
        return -1;
    }
    if (f) {
        size_t seplen = f->kind == ISD_FRAME_LINE && f->sep ? f->seplen : 0;

        if (!(own = malloc(sizeof *own + seplen + 1)))
            return -1;
        *own = *f;
        own->sep = NULL;
        own->seplen = seplen;
        if (seplen) {
            char *sep = (char *)(own + 1);
            memcpy(sep, f->sep, seplen);
            own->sep = sep;
        }
    }
    free(c->fr);
    c->fr = own;
    c->scan = 0;
    /* What is buffered is cut the new way: if that makes a message now,
     * it is delivered in this cycle, not when more bytes come. */
    if (!(c->flags & ISD_C_INMSG) && isd_buf_len(&c->in)) {
        c->flags |= ISD_C_REDO;
        pend(c);
    }
    return 0;
}

/* -------------------------------------------------------------- preamble */

/* A connection of a hooked listener is OPEN (it holds an fd: it counts
 * for max_conns) but not the embedder's yet (ISD_C_PRE): not listed, not
 * broadcast to, not in nconns or the stats, until the hook's preamble is
 * complete and on_accept runs; or it is refused: on_reject, and closed.
 * The loop's read path tests the one flag. */

static const char *pre_what(const isd_conn *c)
{
    if ((c->flags & ISD_C_TPS) && c->ts->tp->what)
        return c->ts->tp->what;
    return c->hook && c->hook->what ? c->hook->what : "connection preamble";
}

/* "200 ms", "3 s" */
static const char *fmt_ms(char *buf, size_t len, unsigned ms)
{
    if (ms && ms % 1000 == 0)
        snprintf(buf, len, "%u s", ms / 1000);
    else
        snprintf(buf, len, "%u ms", ms);
    return buf;
}

/* Refuse c, whose preamble is pending: on_reject (else on_error) once,
 * then c is closed at once; no on_accept, no on_close.  reason NULL: c is
 * a probe that ended (see pre_quiet), closed without a word. */
static void pre_reject(isd_conn *c, int err, const char *reason)
{
    isd_server *s = c->srv;

    if (!s || (c->flags & (ISD_C_PRE | ISD_C_ENDED | ISD_C_CLOSED))
              != ISD_C_PRE)
        return;
    isd_conn_ref(c);
    c->flags = (c->flags & ~ISD_C_FAILED) | ISD_C_ENDED | ISD_C_RDSHUT;
    if (c->io.events)
        isd_io_set(s->loop, &c->io, 0);
    isd_timer_stop(s->loop, &c->timer);
    if (reason) {
        s->st.rejected++;
        if (s->h->on_reject)
            s->h->on_reject(s, c, err, reason);
        else if (s->h->on_error)
            s->h->on_error(s, err, reason);
    }
    isd_conn_abort(c);
    isd_conn_unref(c);
}

/* Whether c, ended (EOF, a reset, the idle timeout) with its preamble
 * pending, was a probe that goes without a word: it sent nothing at all
 * (a TCP port check), or a preamble its hook deferred and nothing after
 * it (a PROXY health check's LOCAL header). */
static int pre_quiet(const isd_conn *c)
{
    return (c->flags & ISD_C_DEFER) || !isd_buf_len(&c->in);
}

void isd_conn_pre_defer(isd_conn *c)
{
    if ((c->flags & (ISD_C_PRE | ISD_C_INMSG)) == (ISD_C_PRE | ISD_C_INMSG))
        c->flags |= ISD_C_DEFER;
}

int isd_conn_reject(isd_conn *c, int err, const char *reason)
{
    if (!c->srv || (c->flags & (ISD_C_PRE | ISD_C_ENDED | ISD_C_CLOSED))
                   != ISD_C_PRE) {
        errno = EINVAL;
        return -1;
    }
    pre_reject(c, err, reason);
    return 0;
}

/* conn_end of a connection whose preamble is pending: it failed (a read
 * error, the idle timeout, ENOMEM...) before it was complete. */
static void pre_failed(isd_conn *c, int err)
{
    char why[160], d[32];

    if (pre_quiet(c) && (err != ETIMEDOUT || (c->flags & ISD_C_DEFER))) {
        pre_reject(c, err, NULL);
        return;
    }
    if (err == ETIMEDOUT)
        snprintf(why, sizeof why, "%s not complete: no input for %s",
                 pre_what(c), fmt_ms(d, sizeof d, c->idle_ms));
    else
        snprintf(why, sizeof why, "%s not complete", pre_what(c));
    pre_reject(c, err ? err : ECONNABORTED, why);
}

static void pre_done(isd_conn *c, size_t n);
static void tp_begin(isd_conn *c);

/* The hook's deadline for the preamble passed. */
static void pre_timeout_cb(isd_loop *l, isd_timer *t)
{
    isd_conn *c = t->data;
    char why[160], d[32];

    ISD_UNUSED(l);
    if (!(c->flags & ISD_C_PRE) || !c->hook)
        return;
    if (c->flags & ISD_C_DEFER) {       /* deferred long enough: c's now */
        pre_done(c, c->scan);
        return;
    }
    snprintf(why, sizeof why, "%s not complete within %s", pre_what(c),
             fmt_ms(d, sizeof d, c->hook->timeout_ms));
    pre_reject(c, ETIMEDOUT, why);
}

/* The preamble is complete: it was the first n bytes of c's input.  c is
 * the embedder's from now on: on_accept, then the rest of the input (bytes
 * that came with the preamble, EOF) is delivered at once. */
static void pre_done(isd_conn *c, size_t n)
{
    isd_server *s = c->srv;

    if (n) {
        isd_buf_consume(&c->in, n);
        c->scan = 0;
    }
    if ((c->flags & ISD_C_TP) && !c->ts->tpd) {     /* its transport: now */
        c->flags &= ~ISD_C_DEFER;
        tp_begin(c);
        return;
    }
    c->flags &= ~(ISD_C_PRE | ISD_C_DEFER);
    s->npre--;
    s->st.accepted++;
    c->timer.cb = idle_cb;      /* (was the preamble's deadline) */
    idle_start(c);
    if (s->h->on_accept)
        s->h->on_accept(s, c);
    if (c->srv && conn_delivers(c)
        && (isd_buf_len(&c->in) || (c->flags & ISD_C_EOF)))
        conn_process(c);
}

/* Accepted on a hooked listener (and watched for input): the hook's
 * accepted(), then, without a preamble, on_accept at once. */
static void pre_accepted(isd_conn *c)
{
    const isd_conn_hook *h = c->hook;
    char why[160];

    if (h && h->accepted && h->accepted(c, c->hook_arg) < 0) {
        snprintf(why, sizeof why, "%s: refused", pre_what(c));
        pre_reject(c, EACCES, why);     /* (unless the hook did) */
        return;
    }
    if ((c->flags & (ISD_C_PRE | ISD_C_OPEN | ISD_C_FAILED))
        != (ISD_C_PRE | ISD_C_OPEN))
        return;
    if (!h || !h->preamble)
        pre_done(c, 0);
}

/* Input for a connection whose preamble is pending: the hook's. */
static void pre_input(isd_conn *c)
{
    const isd_conn_hook *h = c->hook;
    size_t len = isd_buf_len(&c->in);
    ssize_t n = 0;
    char why[160];

    if (!(c->flags & ISD_C_PRE) || !conn_reads(c))
        return;             /* (a failed read: conn_end, from the pending list) */
    if (c->flags & ISD_C_DEFER) {
        if (len > c->scan) {            /* the stream's first byte */
            pre_done(c, c->scan);
            return;
        }
    } else if (len) {
        c->flags |= ISD_C_INMSG;        /* in stays while the hook has it */
        n = h->preamble(c, isd_buf_head(&c->in), len, c->hook_arg);
        c->flags &= ~ISD_C_INMSG;
        if (!(c->flags & ISD_C_OPEN)) {  /* refused (or closed) meanwhile */
            isd_buf_free(&c->in);
            return;
        }
        if (n < 0) {
            snprintf(why, sizeof why, "%s: refused", pre_what(c));
            pre_reject(c, EPROTO, why);
            return;
        }
        if (n > 0 && (size_t)n > len)
            n = (ssize_t)len;
        if (n > 0 && (!(c->flags & ISD_C_DEFER) || (size_t)n < len)) {
            pre_done(c, (size_t)n);
            return;
        }
        if (n > 0)                      /* deferred: wait for a byte more */
            c->scan = (size_t)n;
    }
    if ((c->flags & ISD_C_EOF) && pre_quiet(c)) {
        pre_reject(c, c->err, NULL);
    } else if (c->flags & ISD_C_EOF) {
        snprintf(why, sizeof why, "%s not complete at %s", pre_what(c),
                 c->err ? "a reset" : "EOF");
        pre_reject(c, c->err ? c->err : ECONNABORTED, why);
    } else if (len >= PRE_MAX) {
        snprintf(why, sizeof why, "%s not complete in %u bytes", pre_what(c),
                 (unsigned)PRE_MAX);
        pre_reject(c, EMSGSIZE, why);
    }
}

/* The read event of a connection whose preamble is pending.  Out of line
 * (and cold), so that the read path of everybody else stays as it was. */
static ISD_COLD void pre_read(isd_conn *c)
{
    conn_read_ev(c);
    pre_input(c);
    conn_answer(c);
}

/* ------------------------------------------------------------- transport */

/* A connection's transport (isd_transport: TLS) stands between the socket
 * and c's buffers: reads, writes and the EOF go through it, and nothing
 * else here knows of it.  Its start (the handshake) is a stage of its
 * own: for a listener's transport, the last of the preamble (ISD_C_PRE:
 * on_accept once it is done); for STARTTLS, a pause of c's input. */

/* The interest while the transport waits for the other direction: a read
 * that must write first is not helped by readability, and so on. */
static ISD_COLD unsigned tp_want(const isd_conn *c, unsigned want)
{
    if (c->flags & ISD_C_TPS)
        return c->ts->want;
    if (c->flags & ISD_C_TPRW)
        want = (want & ~ISD_READ) | ISD_WRITE;
    if (c->flags & ISD_C_TPWR)
        want = (want & ~ISD_WRITE) | ISD_READ;
    return want;
}

static void tp_step(isd_conn *c);

/* An event for a connection whose transport starts or waits: the events
 * left for the usual paths (a read that waited to write reads now). */
static ISD_COLD unsigned tp_io(isd_conn *c, unsigned ev)
{
    if (c->flags & ISD_C_TPS) {
        tp_step(c);
        return 0;
    }
    if ((c->flags & ISD_C_TPRW) && (ev & ISD_WRITE)) {
        c->flags &= ~ISD_C_TPRW;
        ev |= ISD_READ;
    }
    if ((c->flags & ISD_C_TPWR) && (ev & ISD_READ)) {
        c->flags &= ~ISD_C_TPWR;
        ev |= ISD_WRITE;
    }
    return ev;
}

/* conn_read1 through the transport: what it holds is taken too (it may
 * hold records the socket no longer says are there). */
static ssize_t tp_read1(isd_conn *c)
{
    isd_server *s = c->srv;
    ssize_t n, got = 0;
    unsigned want = 0;

    if (!c->in.data && s && s->spare.data) {
        c->in = s->spare;
        isd_buf_init(&s->spare);
    }
    do {
        if (isd_buf_reserve(&c->in, READ_MIN) < 0) {
            if (got)
                break;
            return -1;
        }
        n = c->ts->tp->recv(c->ts->tpd, c->in.data + c->in.wpos,
                            c->in.cap - c->in.wpos, &want);
        if (n <= 0)
            break;
        c->in.wpos += (size_t)n;
        got += n;
    } while (c->ts->tp->pending && c->ts->tp->pending(c->ts->tpd));
    if (n < 0 && errno == EAGAIN && want == ISD_WRITE
        && !(c->flags & ISD_C_TPRW)) {
        c->flags |= ISD_C_TPRW;
        conn_interest(c);
        errno = EAGAIN;             /* (what the caller looks at) */
    }
    if (!got) {
        if (n == 0)
            c->flags |= ISD_C_EOF;
        return n;
    }
    if (n == 0) {
        c->flags |= ISD_C_EOF;      /* close_notify after the data */
    } else if (n < 0 && errno != EAGAIN && errno != ENOMEM) {
        c->err = errno;             /* (as conn_read_ev does) */
        c->flags |= ISD_C_EOF;
    }
    c->bytes_in += (size_t)got;
    if (s) {
        c->last_rx = isd_loop_now(s->loop);
        s->st.bytes_in += (size_t)got;
    }
    return got;
}

/* conn_flush for a connection with a transport.  Before it is opened, the
 * queue is plain bytes (STARTTLS: up to the tp_plain queued before it);
 * while it starts, nothing is written; after, all goes through it. */
static int tp_flush(isd_conn *c)
{
    struct iovec iov[IOV_BATCH];
    size_t want, left;
    ssize_t w;
    unsigned tw;
    int i, n;

    if (c->flags & ISD_C_TPS)
        return 0;
    while (c->out.bytes) {
        n = isd_outq_iov(&c->out, iov, IOV_BATCH);
        if (!c->ts->tpd) {
            left = (c->flags & ISD_C_TPQ) ? c->ts->plain : (size_t)-1;
            if (!left)
                break;
            for (want = 0, i = 0; i < n; i++) {
                if (iov[i].iov_len >= left) {
                    iov[i].iov_len = left;
                    n = i + 1;
                }
                want += iov[i].iov_len;
                left -= iov[i].iov_len;
            }
            w = sock_sendv(c->io.fd, iov, n);
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK)
                    break;
                conn_fail(c, errno);
                return -1;
            }
            if (c->flags & ISD_C_TPQ) {
                c->ts->plain -= (size_t)w;
                if (!c->ts->plain)
                    pend(c);                /* it opens: tp_queued */
            }
            out_sent(c, (size_t)w);
            if ((size_t)w < want)
                break;
            continue;
        }
        tw = 0;
        c->flags &= ~ISD_C_TPWR;        /* (it says again if it must) */
        w = c->ts->tp->sendv(c->ts->tpd, iov, n, &tw);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                if (tw == ISD_READ && !(c->flags & ISD_C_TPWR)) {
                    c->flags |= ISD_C_TPWR;
                    conn_interest(c);
                    return 0;
                }
                break;
            }
            conn_fail(c, errno);
            return -1;
        }
        out_sent(c, (size_t)w);
    }
    return flush_end(c);
}

/* c closes: the transport's orderly end (unless it never started, or the
 * socket is no longer ours to write: a forked child's, or closed), and
 * its state goes. */
static void tp_end(isd_conn *c)
{
    void *t = c->ts->tpd;

    c->ts->tpd = NULL;
    if (c->io.fd >= 0 && !(c->flags & ISD_C_TPS)
        && !(c->srv && c->srv->loop->forked))
        c->ts->tp->shutdown(t);
    c->ts->tp->free(t);
}

/* Why the start failed (err: ETIMEDOUT, or the start's errno). */
static const char *tp_reason(const isd_conn *c, int err, char *buf,
                             size_t len)
{
    const char *what = c->ts->tp->what ? c->ts->tp->what : "transport start";
    const char *e = c->ts->tpd ? c->ts->tp->error(c->ts->tpd) : "";
    char d[32];

    if (err == ETIMEDOUT)
        snprintf(buf, len, "%s not complete within %s", what,
                 fmt_ms(d, sizeof d, c->ts->tp->timeout_ms ? c->ts->tp->timeout_ms
                                                       : c->idle_ms));
    else if (e && *e)
        snprintf(buf, len, "%s", e);
    else if (err == ECONNRESET || err == EPIPE)
        snprintf(buf, len, "%s not complete at a reset", what);
    else if (err == ECONNABORTED || err == ENODATA || !err)
        snprintf(buf, len, "%s not complete at EOF", what);
    else
        snprintf(buf, len, "%s: %s", what, strerror(err));
    return buf;
}

/* The start failed: a listener's connection is refused (quietly if the
 * peer sent nothing at all); a STARTTLS one fails (on_close). */
static void tp_failed(isd_conn *c, int err)
{
    char why[400];

    if (!err)
        err = ECONNABORTED;
    if (!(c->flags & ISD_C_PRE)) {
        c->err = err;
        conn_fail(c, err);
        return;
    }
    if (err == ENODATA) {
        pre_reject(c, ECONNRESET, NULL);
        return;
    }
    tp_reason(c, err, why, sizeof why);
    pre_reject(c, err, why);
}

/* The start is done: a listener's connection is the embedder's now, a
 * STARTTLS one reads again. */
static void tp_started(isd_conn *c)
{
    c->flags &= ~ISD_C_TPS;
    c->ts->want = 0;
    c->timer.cb = idle_cb;
    if (c->flags & ISD_C_PRE) {
        pre_done(c, 0);             /* on_accept */
    } else {
        idle_start(c);
        c->flags |= ISD_C_REDO;
        pend(c);
    }
    if (!c->srv || !(c->flags & ISD_C_OPEN))
        return;
    /* what came with the last of the handshake is held by the transport,
     * and the socket will not say so */
    if (c->ts->tpd && conn_delivers(c) && !(c->flags & ISD_C_EOF)
        && c->ts->tp->pending && c->ts->tp->pending(c->ts->tpd)) {
        conn_read_ev(c);
        conn_process(c);
    }
    if (c->srv)
        conn_answer(c);
}

/* Drive the start: on readiness, on being opened. */
static void tp_step(isd_conn *c)
{
    unsigned want = 0;
    int r;

    if (!(c->flags & ISD_C_TPS) || !c->ts->tpd || !c->srv)
        return;
    r = c->ts->tp->start(c->ts->tpd, &want);
    if (r > 0) {
        tp_started(c);
    } else if (r == 0) {
        c->ts->want = want ? want : ISD_READ;
        conn_interest(c);
    } else {
        tp_failed(c, errno);
    }
}

static void tp_timeout_cb(isd_loop *l, isd_timer *t)
{
    isd_conn *c = t->data;

    ISD_UNUSED(l);
    if (c->flags & ISD_C_TPS)
        tp_failed(c, ETIMEDOUT);
}

/* Open c's transport: what c read and did not consume is its first input;
 * the start's deadline takes the timer.  0 or -1/errno. */
static int tp_open(isd_conn *c)
{
    size_t len = isd_buf_len(&c->in);
    unsigned ms = c->ts->tp->timeout_ms ? c->ts->tp->timeout_ms : c->idle_ms;
    void *t;

    c->flags &= ~ISD_C_TPQ;
    if (!(t = c->ts->tp->open(c, c->io.fd, c->ts->arg)))
        return -1;
    c->ts->tpd = t;
    c->flags |= ISD_C_TPS;
    c->ts->want = ISD_READ;
    if (len) {
        if (c->ts->tp->feed(t, isd_buf_head(&c->in), len) < 0)
            return -1;
        isd_buf_consume(&c->in, len);
    }
    c->scan = 0;
    c->timer.cb = tp_timeout_cb;
    if (ms)
        isd_timer_start(c->srv->loop, &c->timer, ms);
    else
        isd_timer_stop(c->srv->loop, &c->timer);
    return 0;
}

/* A listener's connection, its preamble (if any) done: the transport. */
static void tp_begin(isd_conn *c)
{
    if (tp_open(c) < 0) {
        tp_failed(c, errno ? errno : ENOMEM);
        return;
    }
    tp_step(c);
}

/* From the pending list: a STARTTLS connection whose plain output is
 * written opens its transport. */
static ISD_COLD void tp_queued(isd_conn *c)
{
    if (c->ts->plain || (c->flags & (ISD_C_OPEN | ISD_C_FAILED | ISD_C_INMSG))
                       != ISD_C_OPEN)
        return;
    if (tp_open(c) < 0) {
        tp_failed(c, errno ? errno : ENOMEM);
        return;
    }
    tp_step(c);
}

int isd_conn_start_transport(isd_conn *c, const isd_transport *tp, void *arg)
{
    if (!c->srv || (c->flags & (ISD_C_OPEN | ISD_C_PRE | ISD_C_FAILED
                                | ISD_C_ENDED | ISD_C_WRSHUT)) != ISD_C_OPEN) {
        errno = ENOTCONN;
        return -1;
    }
    if (c->flags & ISD_C_TP) {
        errno = EALREADY;
        return -1;
    }
    if (!tp && !c->ts) {
        errno = ENOPROTOOPT;
        return -1;
    }
    if (tp) {
        if (!c->ts && !(c->ts = calloc(1, sizeof *c->ts))) {
            errno = ENOMEM;
            return -1;
        }
        c->ts->tp = tp;
        c->ts->arg = arg;
    }
    c->ts->tpd = NULL;
    c->ts->plain = c->out.bytes;
    c->flags |= ISD_C_TP | ISD_C_TPQ;
    pend(c);
    return 0;
}

void *isd_conn_transport(const isd_conn *c, const isd_transport **tp)
{
    if (tp)
        *tp = TPD(c) ? c->ts->tp : NULL;
    return TPD(c);
}

int isd_conn_transport_starting(const isd_conn *c)
{
    return (c->flags & (ISD_C_TPS | ISD_C_TPQ)) != 0;
}

const char *isd_conn_transport_error(const isd_conn *c, char *buf,
                                     size_t len)
{
    const char *e;

    if (!len)
        return "";
    buf[0] = 0;
    if (!(c->flags & ISD_C_TP))
        return buf;
    if (c->flags & (ISD_C_TPS | ISD_C_TPQ))
        return tp_reason(c, c->err, buf, len);
    e = TPD(c) ? c->ts->tp->error(TPD(c)) : "";
    if (e && *e)
        snprintf(buf, len, "%s", e);
    return buf;
}

static void conn_io_cb(isd_loop *l, isd_io *w, unsigned ev)
{
    isd_conn *c = (isd_conn *)w;

    ISD_UNUSED(l);
    isd_conn_ref(c);
    if (c->flags & ISD_C_TPEV)
        ev = tp_io(c, ev);
    if ((ev & ISD_WRITE) && c->out.bytes)
        conn_flush(c);
    if ((ev & ISD_READ) && conn_delivers(c) && !(c->flags & ISD_C_EOF)) {
        if (c->flags & ISD_C_PRE)       /* (the only cost of hooks here) */
            pre_read(c);
        else if (c->srv->h->on_ready) {
            /* its turn reads, right before delivering: one input buffer
             * (the server's spare) serves the whole batch */
            c->flags |= ISD_C_RDREADY;
            ready_push(c->srv, c);
        } else {
            conn_read_ev(c);
            conn_process(c);
            conn_answer(c);
        }
    }
    isd_conn_unref(c);
}

static ssize_t conn_fill(isd_conn *c, int timeout_ms, const sigset_t *waitmask);

ssize_t isd_conn_fill(isd_conn *c, int timeout_ms, const sigset_t *waitmask)
{
    return isd_waited(conn_fill(c, timeout_ms, waitmask), waitmask);
}

static ssize_t conn_fill(isd_conn *c, int timeout_ms, const sigset_t *waitmask)
{
    uint64_t deadline = timeout_ms >= 0 ? isd_now_ms() + (uint64_t)timeout_ms
                                        : 0;
    struct pollfd pfd;
    ssize_t n;
    int r, left;

    if (!conn_reads(c)) {
        errno = ENOTCONN;
        return -1;
    }
    if (c->flags & ISD_C_EOF)
        return 0;
    if (c->flags & (ISD_C_TPS | ISD_C_TPQ)) {
        errno = EAGAIN;     /* its input is its transport's till it starts */
        return -1;
    }
    for (;;) {
        if (c->out.bytes && conn_flush(c) < 0)
            return -1;
        /* The input held for one connection stays within max (plus one
         * read), whatever the embedder's reads wait for: a slurp or a
         * record longer than that fails c, as an over-long message does. */
        if (c->srv->cfg.framing.max
            && isd_buf_len(&c->in) > c->srv->cfg.framing.max
                                     + isd_frame_hdr(conn_framing(c))) {
            conn_fail(c, EMSGSIZE);
            errno = EMSGSIZE;
            return -1;
        }
        n = conn_read1(c);
        if (n >= 0) {
            if (n > 0)      /* (the loop's clock stood still meanwhile) */
                c->last_rx = isd_now_ms();
            if (n == 0)
                conn_interest(c);
            if (!(c->flags & ISD_C_INMSG)) {
                /* Outside dispatch nobody else would deliver what else
                 * came with this read, or the EOF. */
                c->flags |= ISD_C_REDO;
                pend(c);
            }
            return n;
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            int e = errno;
            conn_fail(c, e);
            errno = e;
            return -1;
        }
        left = -1;
        if (timeout_ms >= 0) {
            uint64_t now = isd_now_ms();
            if (now >= deadline) {
                errno = ETIMEDOUT;
                return -1;
            }
            left = (int)(deadline - now);
        }
        pfd.fd = c->io.fd;
        pfd.events = (short)(POLLIN | (c->out.bytes || (c->flags & ISD_C_TPRW)
                                       ? POLLOUT : 0));
        pfd.revents = 0;
        r = isd_poll_fds(&pfd, 1, left, waitmask);
        if (r < 0)
            return -1;      /* EINTR: the caller deals with the signal */
        if (r == 0) {
            errno = ETIMEDOUT;
            return -1;
        }
    }
}

/* ---------------------------------------------------------------- accept */

/* Accept while below max_conns and not pausing after EMFILE. */
static void accept_update(isd_server *s)
{
    unsigned want = ISD_READ;
    isd_listener *l;

    if ((s->cfg.max_conns && s->nopen >= s->cfg.max_conns)
        || isd_timer_active(&s->accept_pause))
        want = 0;
    for (l = s->ls; l; l = l->next)
        if (l->io.fd >= 0 && l->io.events != want)
            isd_io_set(s->loop, &l->io, want);
}

static void accept_resume(isd_loop *l, isd_timer *t)
{
    ISD_UNUSED(l);
    accept_update(t->data);
}

void isd_server_set_max_conns(isd_server *s, size_t n)
{
    s->cfg.max_conns = n;
    accept_update(s);
}

/* Out of descriptors: shed the pending connection with the spare fd so the
 * client hears a close instead of hanging, and pause accepting briefly so a
 * flood cannot spin us (the libuv and nginx remedies, combined). */
static void accept_emfile(isd_listener *l, int err)
{
    isd_server *s = l->srv;
    uint64_t now = isd_now_ms();
    isd_addr junk;
    int fd;

    if (s->spare_fd >= 0) {
        close(s->spare_fd);
        s->spare_fd = -1;
        fd = isd_accept(l->io.fd, &junk);
        if (fd >= 0)
            close(fd);
        s->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    }
    isd_timer_start(s->loop, &s->accept_pause, 100);
    accept_update(s);
    if (now - s->last_emfile >= 1000 || !s->last_emfile) {
        s->last_emfile = now;
        if (s->h->on_error)
            s->h->on_error(s, err, "accept");
    }
}

static isd_conn *conn_new(isd_listener *l, int fd, const isd_addr *peer)
{
    isd_server *s = l->srv;
    isd_conn *c = calloc(1, sizeof *c);
    socklen_t len;

    if (!c)
        return NULL;
    if (l->has_tp) {            /* (STARTTLS's too: for later) */
        if (!(c->ts = calloc(1, sizeof *c->ts))) {
            free(c);
            return NULL;
        }
        c->ts->tp = &l->tp;
        c->ts->arg = l->tp_arg;
    }
    isd_io_init(&c->io, fd, conn_io_cb);
    c->srv = s;
    c->refcnt = 1;
    c->flags = ISD_C_OPEN | ISD_C_SREF;
    c->peer = *peer;
    if (l->wild) {
        len = sizeof c->local;
        if (getsockname(fd, &c->local.sa, &len) < 0)
            memset(&c->local, 0, sizeof c->local);
        isd_addr_unmap(&c->local);
    } else {
        c->local = l->addr;
    }
    if (l->path)
        c->path = isd_blob_ref(l->path);
    isd_timer_init(&c->timer, idle_cb, c);
    c->idle_ms = s->cfg.idle_ms;
    idle_start(c);
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->nopen++;
    if (l->has_hook || (l->has_tp && !l->tp.deferred)) {
        c->flags |= ISD_C_PRE;          /* not the embedder's yet */
        if (l->has_hook) {
            c->hook = &l->hook;
            c->hook_arg = l->hook_arg;
        }
        if (l->has_tp && !l->tp.deferred)
            c->flags |= ISD_C_TP;
        s->npre++;
        if (l->has_hook && l->hook.preamble && l->hook.timeout_ms) {
            c->timer.cb = pre_timeout_cb;       /* the idle timer's slot */
            isd_timer_start(s->loop, &c->timer, l->hook.timeout_ms);
        }
    } else {
        s->st.accepted++;
    }
    c->connected = (int64_t)time(NULL);
    return c;
}

static void listen_cb(isd_loop *lp, isd_io *w, unsigned ev)
{
    isd_listener *l = (isd_listener *)w;
    isd_server *s = l->srv;
    isd_addr peer;
    isd_conn *c;
    int i, fd;

    ISD_UNUSED(lp);
    ISD_UNUSED(ev);
    for (i = 0; i < ACCEPT_BATCH && l->io.fd >= 0; i++) {
        if (s->cfg.max_conns && s->nopen >= s->cfg.max_conns) {
            accept_update(s);       /* full: the rest wait in the backlog */
            return;
        }
        memset(&peer, 0, sizeof peer);
        fd = isd_accept(l->io.fd, &peer);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            if (errno == ECONNABORTED || errno == EPROTO || errno == EPERM)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS
                || errno == ENOMEM) {
                accept_emfile(l, errno);
                return;
            }
            if (s->h->on_error)
                s->h->on_error(s, errno, "accept");
            return;
        }
        c = conn_new(l, fd, &peer);
        if (!c) {
            close(fd);
            if (s->h->on_error)
                s->h->on_error(s, ENOMEM, "accept");
            continue;
        }
        isd_conn_ref(c);
        if (isd_io_set(s->loop, &c->io, ISD_READ) < 0)
            conn_fail(c, errno);
        else if (c->flags & ISD_C_PRE)
            pre_accepted(c);
        else if (s->h->on_accept)
            s->h->on_accept(s, c);
        if (c->out.bytes && !(c->flags & (ISD_C_CLOSED | ISD_C_FAILED)))
            conn_flush(c);
        isd_conn_unref(c);
    }
}

/* ------------------------------------------------------------------ fork */

/* Every server of the process, for the child side of a fork.  The child
 * gets copies of the parent's output queues: it must not send them (each
 * byte goes out once, from the parent), nor change the interest the two
 * processes share (an epoll set).  Servers of other threads are only
 * marked: their thread does not exist in the child. */
static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t  reg_once = PTHREAD_ONCE_INIT;
static isd_server     *reg_head;

static void reg_prepare(void) { pthread_mutex_lock(&reg_lock); }
static void reg_parent(void)  { pthread_mutex_unlock(&reg_lock); }

static void reg_child(void)
{
    isd_server *s;
    isd_conn *c;

    for (s = reg_head; s; s = s->rnext_srv) {
        s->loop->forked = 1;
        if (!pthread_equal(s->owner, pthread_self()))
            continue;
        for (c = s->conns; c; c = c->next) {
            if (c->out.bytes && (c->flags & ISD_C_WRSHUT))
                c->flags |= ISD_C_NOSHUT;   /* after the parent's bytes */
            /* a transport's state (TLS: keys, record counters) moves on
             * in the parent only: the child writes nothing (EPERM) */
            if (c->flags & ISD_C_TP)
                c->flags |= ISD_C_WRSHUT | ISD_C_NOSHUT;
            isd_outq_clear(&c->out);
        }
    }
    pthread_mutex_unlock(&reg_lock);
}

static void reg_init(void)
{
    pthread_atfork(reg_prepare, reg_parent, reg_child);
}

static void reg_add(isd_server *s)
{
    pthread_once(&reg_once, reg_init);
    pthread_mutex_lock(&reg_lock);
    s->owner = pthread_self();
    s->rnext_srv = reg_head;
    if (reg_head)
        reg_head->rprev_srv = &s->rnext_srv;
    s->rprev_srv = &reg_head;
    reg_head = s;
    pthread_mutex_unlock(&reg_lock);
}

static void reg_del(isd_server *s)
{
    pthread_mutex_lock(&reg_lock);
    if (s->rprev_srv) {
        *s->rprev_srv = s->rnext_srv;
        if (s->rnext_srv)
            s->rnext_srv->rprev_srv = s->rprev_srv;
        s->rprev_srv = NULL;
        s->rnext_srv = NULL;
    }
    pthread_mutex_unlock(&reg_lock);
}

/* ---------------------------------------------------------------- server */

isd_server *isd_server_new(isd_loop *l, const isd_handlers *h,
                           const isd_server_cfg *cfg, void *data)
{
    isd_server *s = calloc(1, sizeof *s);

    if (!s) {
        errno = ENOMEM;
        return NULL;
    }
    s->loop = l;
    s->h = h;
    s->cfg = *cfg;
    s->data = data;
    isd_timer_init(&s->accept_pause, accept_resume, s);
    s->spare_fd = -1;
    s->hook.cb = server_hook;
    s->hook.data = s;
    isd_loop_add_hook(l, &s->hook);
    reg_add(s);
    return s;
}

static int listen_fd(isd_server *s, int fd, const isd_conn_hook *h,
                     void *arg, const isd_transport *tp, void *targ)
{
    isd_listener *l, **tail;
    isd_addr a;
    socklen_t len = sizeof a;
    struct sockaddr_un un;

    memset(&a, 0, sizeof a);
    if (getsockname(fd, &a.sa, &len) < 0)
        return -1;
    if (a.sa.sa_family != AF_INET && a.sa.sa_family != AF_INET6
        && a.sa.sa_family != AF_UNIX) {
        errno = EAFNOSUPPORT;
        return -1;
    }
    if (isd_fd_nonblock_cloexec(fd) < 0)
        return -1;
    /* a closed listener's struct again, else a new one at the end */
    for (tail = &s->ls; *tail && ((*tail)->io.fd >= 0 || (*tail)->hooked);
         tail = &(*tail)->next)
        ;
    if (!(l = *tail)) {
        if (!(l = calloc(1, sizeof *l)))
            return -1;
        l->srv = s;
    }
    if (a.sa.sa_family == AF_UNIX) {
        len = sizeof un;
        memset(&un, 0, sizeof un);
        if (getsockname(fd, (struct sockaddr *)&un, &len) < 0
            || !(l->path = isd_blob_new(un.sun_path,
                                        strnlen(un.sun_path,
                                                sizeof un.sun_path - 1) + 1))) {
            if (l != *tail)
                free(l);
            return -1;
        }
    }
    if (h) {
        l->hook = *h;
        l->hook_arg = arg;
        l->has_hook = l->hooked = 1;
    }
    if (tp) {
        l->tp = *tp;
        l->tp_arg = targ;
        l->has_tp = l->hooked = 1;
    }
    l->addr = a;
    l->wild = (a.sa.sa_family == AF_INET
               && a.in4.sin_addr.s_addr == htonl(INADDR_ANY))
           || (a.sa.sa_family == AF_INET6
               && memcmp(&a.in6.sin6_addr, &in6addr_any,
                         sizeof in6addr_any) == 0);
    if (a.sa.sa_family != AF_UNIX)
        isd_nodelay(fd);
    isd_io_init(&l->io, fd, listen_cb);
    if (isd_io_set(s->loop, &l->io,
                   (s->cfg.max_conns && s->nopen >= s->cfg.max_conns)
                   || isd_timer_active(&s->accept_pause) ? 0 : ISD_READ) < 0) {
        int e = errno;
        l->io.fd = -1;
        if (l->path)
            isd_blob_unref(l->path);
        l->path = NULL;
        l->hooked = l->has_hook = l->has_tp = 0;  /* (no connection of it) */
        if (l != *tail)
            free(l);
        errno = e;
        return -1;
    }
    if (!*tail)
        *tail = l;
    s->nls++;
    if (s->spare_fd < 0)
        s->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    return 0;
}

int isd_server_listen_fd(isd_server *s, int fd)
{
    return listen_fd(s, fd, NULL, NULL, NULL, NULL);
}

int isd_server_listen_fd_hook(isd_server *s, int fd, const isd_conn_hook *h,
                              void *arg)
{
    return isd_server_listen_fd_ex(s, fd, h, arg, NULL, NULL);
}

int isd_server_listen_fd_ex(isd_server *s, int fd, const isd_conn_hook *h,
                            void *arg, const isd_transport *tp, void *targ)
{
    if (h && !h->accepted && !h->preamble && !h->release)
        h = NULL;
    return listen_fd(s, fd, h, arg, tp, targ);
}

/* l stops listening: its fd is the caller's to close. */
static int listener_off(isd_server *s, isd_listener *l)
{
    int fd = l->io.fd;

    if (fd < 0)
        return -1;
    if (l->io.events && !isd_server_forked(s))
        isd_io_set(s->loop, &l->io, 0);
    isd_io_init(&l->io, -1, listen_cb);
    if (l->path)
        isd_blob_unref(l->path);
    l->path = NULL;
    s->nls--;
    return fd;
}

void isd_server_unlisten(isd_server *s)
{
    isd_listener *l;
    int fd;

    isd_timer_stop(s->loop, &s->accept_pause);
    for (l = s->ls; l; l = l->next)
        if ((fd = listener_off(s, l)) >= 0)
            close(fd);
    if (s->spare_fd >= 0) {
        close(s->spare_fd);
        s->spare_fd = -1;
    }
}

size_t isd_server_take_listeners(isd_server *s, int *fds, size_t max)
{
    isd_listener *l;
    size_t n = 0;
    int fd;

    isd_timer_stop(s->loop, &s->accept_pause);
    for (l = s->ls; l; l = l->next) {
        if ((fd = listener_off(s, l)) < 0)
            continue;
        if (n < max)
            fds[n++] = fd;
        else
            close(fd);
    }
    return n;
}

int isd_server_listening(const isd_server *s) { return s->nls > 0; }
size_t isd_server_nlisteners(const isd_server *s) { return s->nls; }

static const isd_listener *listener_at(const isd_server *s, size_t i)
{
    const isd_listener *l;

    for (l = s->ls; l; l = l->next)
        if (l->io.fd >= 0 && !i--)
            return l;
    return NULL;
}

int isd_server_listener_fd(const isd_server *s, size_t i)
{
    const isd_listener *l = listener_at(s, i);

    return l ? l->io.fd : -1;
}

const isd_conn_hook *isd_server_listener_hook(const isd_server *s, size_t i,
                                              void **arg)
{
    const isd_listener *l = listener_at(s, i);

    *arg = l && l->has_hook ? l->hook_arg : NULL;
    return l && l->has_hook ? &l->hook : NULL;
}

const isd_transport *isd_server_listener_transport(const isd_server *s,
                                                   size_t i, void **targ)
{
    const isd_listener *l = listener_at(s, i);

    *targ = l && l->has_tp ? l->tp_arg : NULL;
    return l && l->has_tp ? &l->tp : NULL;
}

int isd_server_sockaddr(const isd_server *s, isd_addr *a)
{
    const isd_listener *l = listener_at(s, 0);

    if (!l) {
        errno = ENOTCONN;
        return -1;
    }
    *a = l->addr;
    return 0;
}

void *isd_server_data(const isd_server *s) { return s->data; }
isd_loop *isd_server_loop(const isd_server *s) { return s->loop; }
size_t isd_server_nconns(const isd_server *s) { return s->nopen - s->npre; }
size_t isd_server_nopen(const isd_server *s) { return s->nopen; }
int isd_server_busy(const isd_server *s) { return s->pending || s->ready; }
isd_server_cfg *isd_server_config(isd_server *s) { return &s->cfg; }

void isd_server_stats_get(const isd_server *s, isd_server_stats *st)
{
    *st = s->st;
}

void isd_conn_stats_get(const isd_conn *c, isd_conn_stats *st)
{
    st->bytes_in = c->bytes_in;
    st->bytes_out = c->bytes_out;
    st->messages_in = c->messages_in;
    st->connected = c->connected;
}

isd_conn *isd_server_next_conn(const isd_server *s, const isd_conn *c)
{
    isd_conn *n = c ? c->next : s->conns;

    while (n && (n->flags & (ISD_C_OPEN | ISD_C_PRE)) != ISD_C_OPEN)
        n = n->next;
    return n;
}

void isd_server_close_conns(isd_server *s)
{
    isd_conn *c, *next;

    for (c = s->conns; c; c = next) {
        next = c->next;
        if (c->flags & ISD_C_PRE)       /* not the embedder's: dropped */
            isd_conn_abort(c);
        else if (c->flags & ISD_C_OPEN)
            isd_conn_close(c);
    }
}

static int drain(isd_server *s, int timeout_ms, const sigset_t *waitmask)
{
    uint64_t deadline = isd_now_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
    struct pollfd *pfd = NULL;
    isd_conn *c, **cs = NULL;
    size_t n, i, cap = 0;
    int r, rc = 0;

    /* A private poll set: the loop's own may be mid-batch. */
    for (;;) {
        uint64_t now = isd_now_ms();
        for (n = 0, c = s->conns; c; c = c->next)
            if ((c->flags & ISD_C_CLOSING) && c->out.bytes)
                n++;
        if (!n)
            break;
        if (now >= deadline) {
            errno = ETIMEDOUT;
            rc = -1;
            break;
        }
        if (n > cap) {
            struct pollfd *np = realloc(pfd, n * sizeof *pfd);
            isd_conn **nc;
            if (!np)
                break;
            pfd = np;
            nc = realloc(cs, n * sizeof *cs);
            if (!nc)
                break;
            cs = nc;
            cap = n;
        }
        for (i = 0, c = s->conns; c && i < n; c = c->next)
            if ((c->flags & ISD_C_CLOSING) && c->out.bytes) {
                pfd[i].fd = c->io.fd;
                pfd[i].events = (c->flags & ISD_C_TPWR) ? POLLIN : POLLOUT;
                pfd[i].revents = 0;
                cs[i++] = c;
            }
        r = isd_poll_fds(pfd, i, (int)(deadline - now), waitmask);
        if (r < 0) {
            if (errno == EINTR && !waitmask)
                continue;
            rc = -1;        /* EINTR with a waitmask: the caller's signal */
            break;
        }
        for (n = i, i = 0; r > 0 && i < n; i++)
            if (pfd[i].revents) {
                isd_conn_ref(cs[i]);
                conn_flush(cs[i]);
                isd_conn_unref(cs[i]);
            }
    }
    free(pfd);
    free(cs);
    return rc;
}

int isd_server_drain(isd_server *s, int timeout_ms, const sigset_t *waitmask)
{
    return (int)isd_waited(drain(s, timeout_ms, waitmask), waitmask);
}

void isd_server_abort_closing(isd_server *s)
{
    isd_conn *c, *next;

    for (c = s->conns; c; c = next) {
        next = c->next;
        if (!(c->flags & ISD_C_CLOSED))
            isd_conn_abort(c);
    }
    if (!isd_loop_running(s->loop))
        run_pending(s);
}

void isd_server_close_all(isd_server *s, int timeout_ms)
{
    isd_server_close_conns(s);
    drain(s, timeout_ms, NULL);
    isd_server_abort_closing(s);
}

/* Let go of the ready queue without delivering (the server goes). */
static void ready_drop(isd_server *s)
{
    isd_conn *c;

    while ((c = s->ready) != NULL) {
        s->ready = c->rnext;
        c->rnext = NULL;
        c->flags &= ~(ISD_C_READY | ISD_C_TAKEN | ISD_C_RDREADY);
        isd_conn_unref(c);
    }
}

void isd_server_abandon(isd_server *s)
{
    int running = isd_loop_running(s->loop);
    isd_conn *c, *next;

    isd_listener *l;

    isd_timer_stop(s->loop, &s->accept_pause);
    for (l = s->ls; l; l = l->next) {
        if (l->io.fd >= 0)
            close(l->io.fd);
        isd_io_init(&l->io, -1, listen_cb);
        if (l->path)
            isd_blob_unref(l->path);
        l->path = NULL;
    }
    s->nls = 0;
    if (s->spare_fd >= 0)
        close(s->spare_fd);
    s->spare_fd = -1;
    for (c = s->conns; c; c = next) {
        next = c->next;
        isd_timer_stop(s->loop, &c->timer);
        if (c->io.fd >= 0)
            close(c->io.fd);
        c->io.fd = -1;
        c->io.events = 0;
        c->io.slot = -1;
        isd_outq_clear(&c->out);
        if (c->hook)
            hook_release(c);
        if (TPD(c))
            tp_end(c);          /* (fd -1: nothing is sent) */
        c->srv = NULL;
        if (running) {
            /* the batch being dispatched may still point at c->io: the
             * server's reference goes when the batch ends (run_pending),
             * or with the server */
            c->flags = (c->flags & ~(ISD_C_OPEN | ISD_C_CLOSING
                                     | ISD_C_FAILED)) | ISD_C_CLOSED;
            if (!(c->flags & ISD_C_INMSG))
                isd_buf_free(&c->in);
            continue;
        }
        c->flags = (c->flags & ~(ISD_C_OPEN | ISD_C_CLOSING | ISD_C_FAILED
                                 | ISD_C_PENDING)) | ISD_C_CLOSED;
        isd_buf_free(&c->in);
        c->pnext = NULL;
        drop_sref(s, c);
    }
    if (!running)
        s->pending = NULL;
    ready_drop(s);
    s->nopen = 0;
    s->npre = 0;
}

void isd_server_free(isd_server *s)
{
    isd_conn *c, *next;

    if (!s)
        return;
    reg_del(s);
    isd_server_unlisten(s);
    for (c = s->conns; c; c = next) {
        next = c->next;
        isd_conn_abort(c);
    }
    ready_drop(s);
    /* Whatever is still pending only needs its server reference dropped. */
    while ((c = s->pending) != NULL) {
        s->pending = c->pnext;
        c->flags &= ~ISD_C_PENDING;
        c->srv = NULL;
        drop_sref(s, c);
    }
    for (c = s->conns; c; c = next) {
        next = c->next;
        c->srv = NULL;
        drop_sref(s, c);
    }
    isd_loop_del_hook(s->loop, &s->hook);
    isd_buf_free(&s->spare);
    isd_outq_spare_free(&s->ospare);
    while (s->ls) {
        isd_listener *l = s->ls;
        s->ls = l->next;
        free(l);
    }
    free(s);
}
