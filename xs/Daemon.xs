/*
 * Daemon.xs - the only file (with the XSUBs it includes at its end, a
 * file a class: Daemon.xsh, Peer.xsh, Timer.xsh) that knows both Perl and
 * the C core.
 *
 * Objects.  A daemon is the 0.04 blessed hash plus ext magic carrying a
 * struct xd (freed with the hash).  A peer ($io) is a blessed glob whose IO
 * slot is tied (so print $io / <$io> work) to a small object of class
 * ...::Peer::Tie; the IO and the tie object each carry ext magic pointing at
 * the core's isd_conn and each hold a reference on it, so $io answers
 * (peerhost, false from print) for as long as Perl keeps it.
 *
 * Callbacks.  Every call into Perl runs under G_EVAL; a die becomes an
 * `error` callback (or a warn) and never unwinds through the core.  The
 * daemon holds one reference on each open connection's $io until it closes.
 *
 * Signals.  run() waits in C; Perl's deferred signals are dispatched as soon
 * as the wait returns.  To close the window between "nothing pending" and
 * "waiting", signals are blocked for the check and the wait installs the
 * old mask atomically (epoll_pwait/ppoll).
 */
#define PERL_NO_GET_CONTEXT
#include "EXTERN.h"
#include "perl.h"
#include "XSUB.h"

#include "isd.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <pthread.h>
#include <signal.h>
#include <time.h>
#include <sys/un.h>
#include <sys/socket.h>
#include <arpa/inet.h>

#define PKG       "IO::Socket::INET::Daemon"
#define PEER_PKG  PKG "::Peer"
#define DGRAM_PKG PKG "::Datagram"
#define TIE_PKG   PKG "::Peer::Tie"

/* uflags of a connection (embedder's word in the core) */
#define UF_NONBLOCK  1u    /* blocking(0): reads never wait */
#define UF_UTF8      2u    /* binmode :utf8 */
#define UF_NOAUTOFL  4u    /* autoflush(0) was asked (no effect but reported) */

enum { CB_add, CB_remove, CB_data, CB_tick, CB_error, CB_drain, CB_N };
typedef struct xtimer xtimer;
typedef struct xtls xtls;

typedef struct xd {
    isd_loop   *loop;
    isd_server *srv;
    /* A forked copy's, let go of inside run (the core is on the C stack):
     * freed when run returns. */
    isd_loop   *gone_loop;
    isd_server *gone_srv;
    HV         *self;          /* the object (not counted: it owns us) */
    SV         *self_rv;       /* counted, while run() is on the stack */
    /* Listening fds bound before the server takes them (listen, or a
     * forked child's, taken from its parent's server). */
    int        *lfds;
    int         nlfds;
    isd_proxy_opts **lpx;      /* ... and the PROXY options of each (NULL:
                                * none; parallel to lfds) */
    /* The PROXY options of the listeners that take a header, one per
     * SPEC that asks ($self->{_proxy}), made when first bound; owned, and
     * kept till the daemon goes (its listeners' hooks point at them). */
    isd_proxy_opts **popts;
    int         npopts;
    xtls      **ltls;          /* ... and the TLS of each (NULL: none) */
    /* The TLS of the listeners that serve it, one per SPEC that asks
     * ($self->{_tls}); owned, kept till the daemon goes. */
    xtls      **tls;
    int         ntls;
    /* UNIX socket files this daemon made: destroy removes them, in the
     * process that made them only. */
    char      **upaths;
    int         nupaths;
    pid_t       upid;
    /* UDP: sockets bound before run serves them, and those it serves */
    int        *ufds;
    int         nufds;
    isd_udp   **udps;
    int         nudps;
    isd_udp_stats udp_st;      /* of the UDP sockets let go of */
    /* The kinds of the listeners in the order listen => [...] gave them
     * ('t' TCP or UNIX, 'u' UDP), for addresses and sockport. */
    char       *lorder;
    int         nlorder;
    SV         *cur_dgram;     /* the Datagram data() is running for */
    SV         *cur_dgram_msg; /* ... and its datagram (getline) */
    int         running, stop;
    int         embedded;      /* driven by run_once (another loop's) */
    uint64_t    grace_at;      /* stop(grace): when it is over (0: none) */
    int         draining;      /* destroy is waiting for output to drain */
    int         drain_abort;   /* ... and was told to give up */
    pid_t       pid;           /* process that owns the sockets */
    int         family;
    int         backlog;
    int         read_timeout_ms;   /* -1: follow timeout */
    isd_server_cfg cfg;
    char        backend[16];
    char        err[256];
    /* The message data() is running for: while nothing of it has been
     * consumed, getline returns a copy of its cur_len bytes at the head
     * of the input (no second scan). */
    isd_conn   *cur_conn;
    size_t      cur_len;
    /* The SV data() got as $_[2], kept for the next message when nothing
     * else holds it (counted; NULL while a callback has it). */
    SV         *spare_line;
    /* Callback cache (counted): the slot of $self->{callback}, the hash it
     * pointed to, and the value slot of each callback found in it. */
    SV         *cb_slot;
    HV         *cb_hv;
    SV         *cb_val[CB_N];
    xtimer     *timers;        /* the active ones (each holds its object) */
    char       *sep;           /* separator => ..., owned */
    int         framed;        /* a connection has a framing of its own */
    UV          refused;       /* stats: add answered false (or died) */
    UV          errors;        /* stats: reports (error callback or warn) */
    IV          started;       /* stats: time() when run first started */
#ifdef PERL_IMPLICIT_CONTEXT
    void       *perl;
#endif
} xd;

static U32 h_add, h_remove, h_data, h_tick, h_error, h_drain, h_callback,
           h_timeout;

/* ------------------------------------------------------------------ magic */

static int xd_mg_free(pTHX_ SV *sv, MAGIC *mg);
static int conn_mg_free(pTHX_ SV *sv, MAGIC *mg);

static MGVTBL xd_vtbl   = { NULL, NULL, NULL, NULL, xd_mg_free, NULL, NULL, NULL };
#ifdef USE_ITHREADS
static int conn_mg_dup(pTHX_ MAGIC *mg, CLONE_PARAMS *param);
#  define CONN_MG_DUP conn_mg_dup
#else
#  define CONN_MG_DUP NULL
#endif
static MGVTBL conn_vtbl = { NULL, NULL, NULL, NULL, conn_mg_free, NULL, CONN_MG_DUP, NULL };

static MAGIC *find_mg(SV *sv, const MGVTBL *vt)
{
    MAGIC *mg;

    if (SvTYPE(sv) < SVt_PVMG)
        return NULL;
    for (mg = SvMAGIC(sv); mg; mg = mg->mg_moremagic)
        if (mg->mg_type == PERL_MAGIC_ext && mg->mg_virtual == vt)
            return mg;
    return NULL;
}

static xd *xd_from(pTHX_ SV *sv, const char *method)
{
    MAGIC *mg;

    if (SvROK(sv) && (mg = find_mg(SvRV(sv), &xd_vtbl)))
        return (xd *)mg->mg_ptr;
    croak("%s::%s: not called on an %s object", PKG, method, PKG);
    return NULL; /* not reached */
}

/* The connection behind a $io glob, its IO or its tie object.  The glob
 * carries it itself: with 1,000 connections a method call has already
 * brought in the glob's head and body (the stash), so the magic is one
 * load away; the IO and GP behind it would be three cache misses more.
 * The IO reaches it through its tie object. */
static MAGIC *conn_mg(pTHX_ SV *sv)
{
    MAGIC *mg = NULL;
    SV *r;

    if (SvROK(sv)) {
        r = SvRV(sv);
        if (SvTYPE(r) == SVt_PVIO && SvRMAGICAL(r)
            && (mg = mg_find(r, PERL_MAGIC_tiedscalar)) && mg->mg_obj
            && SvROK(mg->mg_obj))
            r = SvRV(mg->mg_obj);
        mg = find_mg(r, &conn_vtbl);
    }
    return mg;
}

static isd_conn *conn_from(pTHX_ SV *sv, const char *method)
{
    MAGIC *mg = conn_mg(aTHX_ sv);

    if (!mg)
        croak("%s::%s: not called on a peer of %s", PEER_PKG, method, PKG);
    if (!mg->mg_ptr)
        croak("%s::%s: this peer is a copy made for a new thread; its "
              "connection belongs to the daemon of the thread that made it",
              PEER_PKG, method);
    return (isd_conn *)mg->mg_ptr;
}

static int conn_mg_free(pTHX_ SV *sv, MAGIC *mg)
{
    PERL_UNUSED_ARG(sv);
    if (mg->mg_ptr)
        isd_conn_unref((isd_conn *)mg->mg_ptr);
    return 0;
}

#ifdef USE_ITHREADS
/* A thread started while peers exist gets copies of them (CLONE_SKIP
 * would make perl's own clean-up of that thread panic on the glob's
 * stash backreference).  The copy does not share the connection: the
 * core is not thread-safe and the daemon stays with its own thread. */
static int conn_mg_dup(pTHX_ MAGIC *mg, CLONE_PARAMS *param)
{
    PERL_UNUSED_CONTEXT;
    PERL_UNUSED_ARG(param);
    mg->mg_ptr = NULL;
    return 0;
}
#endif

static xd *conn_xd(isd_conn *c)
{
    isd_server *s = isd_conn_server(c);
    return s ? (xd *)isd_server_data(s) : NULL;
}

/* ---------------------------------------------------------------- helpers */

static void cb_forget(pTHX_ xd *d)
{
    int i;

    for (i = 0; i < CB_N; i++) {
        SvREFCNT_dec(d->cb_val[i]);
        d->cb_val[i] = NULL;
    }
    SvREFCNT_dec((SV *)d->cb_hv);
    SvREFCNT_dec(d->cb_slot);
    d->cb_hv = NULL;
    d->cb_slot = NULL;
}

/* The callback called name, or NULL.  Looked up in $self->{callback} like
 * 0.04 did, but the value slots found are kept (counted): assigning to
 * $cb{data} changes the slot we hold, and a slot or hash that only we
 * still hold was deleted or replaced, so it is looked up again. */
static int answer(pTHX_ SV *res);

static SV *fetch_cb(pTHX_ xd *d, int which, const char *name, I32 len,
                    U32 hash)
{
    SV **svp, *v;

    if (!(d->cb_slot && SvREFCNT(d->cb_slot) > 1 && SvROK(d->cb_slot)
          && SvRV(d->cb_slot) == (SV *)d->cb_hv
          && SvREFCNT((SV *)d->cb_hv) > 1)) {
        cb_forget(aTHX_ d);
        svp = hv_common_key_len(d->self, "callback", 8, HV_FETCH_JUST_SV,
                                NULL, h_callback);
        if (!svp || !SvROK(*svp) || SvTYPE(SvRV(*svp)) != SVt_PVHV)
            return NULL;
        d->cb_slot = SvREFCNT_inc_simple_NN(*svp);
        d->cb_hv = (HV *)SvREFCNT_inc_simple_NN(SvRV(*svp));
    }
    v = d->cb_val[which];
    if (!v || SvREFCNT(v) == 1) {
        SvREFCNT_dec(v);
        d->cb_val[which] = NULL;
        svp = hv_common_key_len(d->cb_hv, name, len, HV_FETCH_JUST_SV, NULL,
                                hash);
        if (!svp)
            return NULL;
        v = d->cb_val[which] = SvREFCNT_inc_simple_NN(*svp);
    }
    /* 0.04: a false callback is none (an overloaded bool that dies too) */
    return answer(aTHX_ v) > 0 ? v : NULL;
}
/* The same, inline while nothing changed: the slot, the hash and the value
 * are still held by someone else, and the value is an unblessed (so true)
 * reference. */
static inline SV *cached_cb(pTHX_ xd *d, int which, const char *name, I32 len,
                            U32 hash)
{
    SV *v = d->cb_val[which];

    if (LIKELY(v && SvREFCNT(v) > 1 && SvROK(v) && !SvOBJECT(SvRV(v))
               && d->cb_slot && SvREFCNT(d->cb_slot) > 1 && SvROK(d->cb_slot)
               && SvRV(d->cb_slot) == (SV *)d->cb_hv
               && SvREFCNT((SV *)d->cb_hv) > 1))
        return v;
    return fetch_cb(aTHX_ d, which, name, len, hash);
}
#define CB(d, n) cached_cb(aTHX_ (d), CB_##n, #n, (I32)sizeof(#n) - 1, h_##n)

static SV *peer_rv(isd_conn *c) { return (SV *)isd_conn_data(c); }

/* Per interpreter (threads): the stashes peers are blessed into, and two
 * anonymous XSUBs through which Perl code runs under one eval (a die in
 * them unwinds to that eval, never through the core). */
#define MY_CXT_KEY PKG "::_guts" XS_VERSION
struct batch;
typedef struct {
    HV *peer_stash, *tie_stash, *dgram_stash;
    CV *deliver_cv;            /* data() for the messages of one batch */
    CV *truth_cv;              /* the truth of an overloaded answer */
    CV *warn_cv;               /* warn, whose $SIG{__WARN__} may die */
    CV *string_cv;             /* "$x", whose overloading may die */
    struct batch *batch;       /* what deliver_cv is to deliver */
} my_cxt_t;
START_MY_CXT

XS_INTERNAL(xs_deliver);
XS_INTERNAL(xs_truth);
XS_INTERNAL(xs_warn);
XS_INTERNAL(xs_string);

static void init_cxt(pTHX_ my_cxt_t *cx)
{
    cx->peer_stash = gv_stashpv(PEER_PKG, GV_ADD);
    cx->tie_stash = gv_stashpv(TIE_PKG, GV_ADD);
    cx->dgram_stash = gv_stashpv(DGRAM_PKG, GV_ADD);
    cx->deliver_cv = newXS(NULL, xs_deliver, __FILE__);
    cx->truth_cv = newXS(NULL, xs_truth, __FILE__);
    cx->warn_cv = newXS(NULL, xs_warn, __FILE__);
    cx->string_cv = newXS(NULL, xs_string, __FILE__);
    cx->batch = NULL;
}

/* Whether the last eval died.  $@ is an object or a string: an object's
 * overloaded bool is Perl code that could die itself, outside any eval,
 * so a reference counts as a death without asking it. */
static int died(pTHX)
{
    SV *e = ERRSV;

    return SvROK(e) ? 1 : SvTRUE_nomg(e);
}

/* The truth of a callback's answer: 1 or 0, or -1 when an overloaded bool
 * died ($@ is set).  Overloading runs Perl code: under an eval of its own. */
static int answer(pTHX_ SV *res)
{
    dSP;
    dMY_CXT;
    int n, ok;

    if (LIKELY(!SvAMAGIC(res)))
        return SvTRUE(res) ? 1 : 0;
    PUSHMARK(SP);
    XPUSHs(res);
    PUTBACK;
    n = call_sv((SV *)MY_CXT.truth_cv, G_SCALAR | G_EVAL);
    SPAGAIN;
    ok = n > 0 && SvTRUE(POPs);
    PUTBACK;
    return died(aTHX) ? -1 : ok;
}

XS_INTERNAL(xs_truth)
{
    dXSARGS;
    PERL_UNUSED_VAR(cv);
    if (items < 1)
        XSRETURN_NO;
    ST(0) = boolSV(SvTRUE(ST(0)));
    XSRETURN(1);
}

XS_INTERNAL(xs_warn)
{
    dXSARGS;
    PERL_UNUSED_VAR(cv);
    if (items > 0)
        warn_sv(ST(0));
    XSRETURN_EMPTY;
}

XS_INTERNAL(xs_string)
{
    dXSARGS;
    STRLEN n;
    const char *p;
    PERL_UNUSED_VAR(cv);
    if (items < 1)
        XSRETURN_EMPTY;
    p = SvPV(ST(0), n);
    ST(0) = sv_2mortal(newSVpvn_flags(p, n, SvUTF8(ST(0)) ? SVf_UTF8 : 0));
    XSRETURN(1);
}

/* Run one of our helper XSUBs on sv under an eval: warn and stringify run
 * Perl code ($SIG{__WARN__}, overloaded ""), which may die; from a C frame
 * that die must not unwind through the core.  The result (a new mortal),
 * or NULL if it died. */
static SV *guarded(pTHX_ CV *helper, SV *sv)
{
    dSP;
    SV *res = NULL, *saved = sv_2mortal(newSVsv(ERRSV));
    int n;

    PUSHMARK(SP);
    XPUSHs(sv == ERRSV ? saved : sv);   /* the eval empties $@ first */
    PUTBACK;
    n = call_sv((SV *)helper, G_SCALAR | G_EVAL);
    SPAGAIN;
    if (n > 0)
        res = POPs;
    PUTBACK;
    if (died(aTHX))
        res = NULL;
    sv_setsv(ERRSV, saved);         /* the caller's $@, as it was */
    return res;
}

static void safe_warn(pTHX_ SV *msg)
{
    dMY_CXT;
    guarded(aTHX_ MY_CXT.warn_cv, msg);
}

/* "$sv" as a plain string (a new mortal); when its overloaded "" dies, a
 * description instead. */
static SV *safe_string(pTHX_ SV *sv)
{
    dMY_CXT;
    SV *s;

    if (!SvROK(sv) || !SvAMAGIC(sv))
        return sv_2mortal(newSVsv(sv));
    if ((s = guarded(aTHX_ MY_CXT.string_cv, sv)))
        return s;
    return sv_2mortal(newSVpvf("a %s object (its stringification died)",
                               sv_reftype(SvRV(sv), 1)));
}

/* Report a problem: the `error` callback, or a warn. */
static void report(pTHX_ xd *d, SV *io, SV *msg)
{
    SV *cb = d ? CB(d, error) : NULL;

    if (d)
        d->errors++;
    if (cb && d->self_rv) {
        dSP;
        ENTER;
        SAVETMPS;
        PUSHMARK(SP);
        EXTEND(SP, 3);
        PUSHs(io ? sv_2mortal(SvREFCNT_inc_simple_NN(io)) : &PL_sv_undef);
        PUSHs(d->self_rv);
        PUSHs(msg);
        PUTBACK;
        call_sv(cb, G_DISCARD | G_EVAL);
        if (died(aTHX))
            safe_warn(aTHX_ sv_2mortal(newSVpvf("%s: error callback died: %"
                      SVf, PKG, SVfARG(safe_string(aTHX_ ERRSV)))));
        FREETMPS;
        LEAVE;
    } else {
        safe_warn(aTHX_ sv_2mortal(newSVpvf("%s: %" SVf "\n", PKG,
                                            SVfARG(msg))));
    }
}

/* Report the die of callback name (in $@), as one line. */
static void report_died(pTHX_ xd *d, const char *name, SV *io)
{
    SV *msg = sv_2mortal(newSVpvf("%s callback died: %" SVf, name,
                                  SVfARG(safe_string(aTHX_ ERRSV))));
    /* one line: strip the trailing newline of "... line N.\n" */
    if (SvCUR(msg) && SvPVX(msg)[SvCUR(msg) - 1] == '\n')
        SvCUR_set(msg, SvCUR(msg) - 1);
    report(aTHX_ d, io, msg);
}

/* Call a callback with ($io, $daemon[, $arg]).  1: true, 0: false,
 * -1: it died (already reported). */
static int call_cb(pTHX_ xd *d, SV *cb, const char *name, SV *io, SV *arg)
{
    dSP;
    int ret, n;
    SV *res;

    ENTER;
    SAVETMPS;
    PUSHMARK(SP);
    EXTEND(SP, 3);
    PUSHs(io ? sv_2mortal(SvREFCNT_inc_simple_NN(io)) : &PL_sv_undef);
    PUSHs(d->self_rv ? d->self_rv : &PL_sv_undef);
    if (arg)
        PUSHs(arg);
    PUTBACK;
    n = call_sv(cb, G_SCALAR | G_EVAL);
    SPAGAIN;
    res = n > 0 ? POPs : &PL_sv_undef;
    PUTBACK;
    ret = died(aTHX) ? -1 : answer(aTHX_ res);
    if (ret < 0)
        report_died(aTHX_ d, name, io);
    FREETMPS;
    LEAVE;
    return ret;
}

/* The daemon lets go of c: drop its $io reference, then close. */
static void drop_conn(pTHX_ isd_conn *c, int abort_now)
{
    SV *io = peer_rv(c);

    isd_conn_set_data(c, NULL);
    if (abort_now)
        isd_conn_abort(c);
    else
        isd_conn_close(c);
    if (io)
        SvREFCNT_dec(io);
}

/* A new $io: blessed glob, tied IO, both carrying the connection. */
static SV *make_peer(pTHX_ isd_conn *c)
{
    dMY_CXT;
    GV *gv = (GV *)newSV(0);
    SV *tobj = newSV(0), *trv, *rv;
    IO *io;

    gv_init_pvn(gv, MY_CXT.peer_stash, "__ANONIO__", 10, 0);
    io = GvIOn(gv);
    sv_upgrade(tobj, SVt_PVMG);
    sv_magicext(tobj, NULL, PERL_MAGIC_ext, &conn_vtbl, (char *)c, 0)
        ->mg_flags |= MGf_DUP;
    isd_conn_ref(c);
    trv = sv_bless(newRV_noinc(tobj), MY_CXT.tie_stash);
    sv_magic((SV *)io, trv, PERL_MAGIC_tiedscalar, NULL, 0);
    SvREFCNT_dec(trv);          /* the tie magic holds it now */
    sv_magicext((SV *)gv, NULL, PERL_MAGIC_ext, &conn_vtbl, (char *)c, 0)
        ->mg_flags |= MGf_DUP;
    isd_conn_ref(c);
    rv = newRV_noinc((SV *)gv);
    return sv_bless(rv, MY_CXT.peer_stash);
}

/* Framing names and length formats, as new and $io->framing take them. */
static const char *const framing_names[] = { "line", "raw", "length" };
static const char *const lenfmt_names[] = { "N", "n", "V", "v", "C" };

static int framing_of(const char *name)
{
    int i;

    for (i = 0; i < 3; i++)
        if (strEQ(name, framing_names[i]))
            return i;
    return -1;
}

static int lenfmt_of(const char *name)
{
    int i;

    for (i = 0; i < 5; i++)
        if (strEQ(name, lenfmt_names[i]))
            return i;
    return -1;
}

/* v for an error message: 'v', or undef (unquoted), as new's are. */
static SV *quoted(pTHX_ SV *v)
{
    return SvOK(v) ? sv_2mortal(newSVpvf("'%" SVf "'", SVfARG(v)))
                   : sv_2mortal(newSVpvs("undef"));
}

/* Who c is, for messages: "127.0.0.1:40000", "[::1]:40000", or
 * "unix:/path" (a UNIX connection's peer has no address: its listener's
 * path says where it came). */
/* The listener's path of a UNIX connection, or NULL: an IP one, or a UNIX
 * one whose PROXY header gave it the client's IP addresses. */
static const char *conn_unix_path(const isd_conn *c)
{
    int f = isd_conn_peer(c)->sa.sa_family;

    return f == AF_INET || f == AF_INET6 ? NULL : isd_conn_path(c);
}

static SV *conn_desc(pTHX_ isd_conn *c)
{
    const isd_addr *a = isd_conn_peer(c);
    char host[INET6_ADDRSTRLEN];

    if (conn_unix_path(c))
        return sv_2mortal(newSVpvf("unix:%s", isd_conn_path(c)));
    isd_addr_host(a, host, sizeof host);
    return sv_2mortal(newSVpvf(a->sa.sa_family == AF_INET6 ? "[%s]:%u"
                                                           : "%s:%u",
                               host, isd_addr_port(a)));
}

static SV *errmsg(pTHX_ isd_conn *c, int err)
{
    xd *d = conn_xd(c);
    SV *who = conn_desc(aTHX_ c);
    const isd_framing *f = isd_conn_framing(c);
    char tb[512];

    if (*isd_conn_transport_error(c, tb, sizeof tb))
        return newSVpvf("connection %" SVf ": %s", SVfARG(who), tb);

    if (err == EMSGSIZE && f && f->kind == ISD_FRAME_LENGTH)
        return newSVpvf("message too long (over max_line %lu bytes) from "
                        "%" SVf, (unsigned long)f->max, SVfARG(who));
    if (err == EMSGSIZE)
        return newSVpvf("line too long (over max_line %lu bytes) from %" SVf,
                        (unsigned long)(d ? d->cfg.framing.max : 0),
                        SVfARG(who));
    if (err == EBADMSG)
        return newSVpvf("end of file inside a message (length-prefixed) "
                        "from %" SVf, SVfARG(who));
    if (err == ENOBUFS)
        return newSVpvf("output for %" SVf " over max_output (%lu bytes)",
                        SVfARG(who),
                        (unsigned long)(d ? d->cfg.max_output : 0));
    if (err == ETIMEDOUT)
        return newSVpvf("idle timeout (no input for %g s) from %" SVf,
                        isd_conn_idle(c) / 1000.0, SVfARG(who));
    return newSVpvf("connection %" SVf ": %s", SVfARG(who), strerror(err));
}

/* --------------------------------------------------------- core handlers */

#ifdef PERL_IMPLICIT_CONTEXT
#  define dXD_THX(d) dTHXa((d)->perl)
#else
#  define dXD_THX(d) dNOOP
#endif

static void on_accept(isd_server *s, isd_conn *c)
{
    xd *d = isd_server_data(s);
    dXD_THX(d);
    SV *io = make_peer(aTHX_ c), *cb;
    int ok;

    isd_conn_set_data(c, io);
    if (!(cb = CB(d, add)))
        return;
    ok = call_cb(aTHX_ d, cb, "add", io, NULL);
    if (ok <= 0)
        d->refused++;
    if (ok <= 0 && isd_conn_is_open(c) && peer_rv(c))
        drop_conn(aTHX_ c, 0);      /* refused: no remove callback */
}

/* The hot path.  While the core dispatches a batch of events it queues the
 * connections with input; then on_ready delivers the messages of all of
 * them through deliver_cv, under one eval for the whole batch: the core
 * is not on the C stack while Perl runs (deliver_cv takes connections with
 * isd_server_ready and their messages with isd_conn_take).  A die unwinds
 * to that eval; the connection whose data() died is reported and dropped,
 * and the rest of the queue goes on under a new eval.  $io is held by a
 * count of ours during its turn, not a mortal (the callback may remove
 * it). */
typedef struct batch {
    xd         *d;
    isd_server *s;
    isd_conn   *c;            /* the connection in its turn, or NULL */
    SV         *io, *cb;
    const char *msg;          /* the current message */
    size_t      len;
    SV         *line;         /* its $_[2] while data() runs (counted) */
    int         ok;           /* 0: data() answered false */
} batch;

/* The UTF-8 sequence at s[0..len): its length (1 to 4) when it is one
 * well-formed character, 0 when it is the start of one cut short (more
 * bytes may come), -1 when malformed (its first byte is then taken as a
 * character of its own, Latin-1).  Overlong forms and code points past
 * 0x10FFFF are malformed; surrogates pass, as with Perl's :utf8. */
static int utf8_seq(const U8 *s, size_t len)
{
    U8 b = s[0], lo = 0x80, hi = 0xBF;
    size_t n, j;

    if (b < 0x80)
        return 1;
    if (b < 0xC2 || b > 0xF4)
        return -1;
    n = b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
    if (b == 0xE0)
        lo = 0xA0;
    else if (b == 0xF0)
        lo = 0x90;
    else if (b == 0xF4)
        hi = 0x8F;
    for (j = 1; j < n; j++) {
        if (j >= len)
            return 0;
        if (s[j] < (j == 1 ? lo : 0x80) || s[j] > (j == 1 ? hi : 0xBF))
            return -1;
    }
    return (int)n;
}

/* UTF-8 input, counted in characters: the bytes of the first *nchars
 * characters of p[0..len), with *nchars set to how many were there.  A
 * character cut short at the end of the bytes is not counted (more may
 * come), unless at_eof; a malformed byte counts as one character. */
static size_t utf8_prefix(const char *p, size_t len, size_t *nchars,
                          int at_eof)
{
    const U8 *s = (const U8 *)p;
    size_t i = 0, k = 0, want = *nchars;

    while (k < want && i < len) {
        int n = utf8_seq(s + i, len - i);
        if (n == 0 && !at_eof)
            break;
        i += n > 0 ? (size_t)n : 1;
        k++;
    }
    *nchars = k;
    return i;
}

/* Whether p[0..len) is well-formed UTF-8 throughout (utf8_seq's rules). */
static int utf8_valid(const char *p, size_t len)
{
    const U8 *s = (const U8 *)p;
    size_t i = 0;

    while (i < len) {
        int n;
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        if ((n = utf8_seq(s + i, len - i)) <= 0)
            return 0;
        i += (size_t)n;
    }
    return 1;
}

/* Append p[0..len), UTF-8 from a :utf8 peer, to the character string sv:
 * well-formed characters as they are, each malformed byte as the Latin-1
 * character of that value (so a read of N characters gives N). */
static void append_chars(pTHX_ SV *sv, const char *p, size_t len)
{
    const U8 *s = (const U8 *)p;
    size_t i = 0, run = 0;

    while (i < len) {
        int n = s[i] < 0x80 ? 1 : utf8_seq(s + i, len - i);
        if (n > 0) {
            i += (size_t)n;
            continue;
        }
        sv_catpvn_flags(sv, p + run, i - run, SV_CATUTF8);
        sv_catpvn_flags(sv, p + i, 1, SV_CATBYTES);    /* (upgraded) */
        run = ++i;
    }
    sv_catpvn_flags(sv, p + run, len - run, SV_CATUTF8);
}

/* perl's sv_setsv copies a string rather than sharing it (copy-on-write)
 * when its buffer has this much room to spare (sv.c's waste threshold, 80
 * since 5.20).  Our reused scalars keep that room: `my $l = $io->getline`
 * then copies into $l's own buffer, which $l keeps from call to call,
 * instead of sharing ours, which the next line would have to unshare and
 * $l's scope exit to drop (a malloc and a free per line). */
#define IN_SLACK 80

/* Input bytes as a string: into, a scalar of ours reused (getline's TARG,
 * data's last $_[2]: no malloc), or a new SV; a new one made to be reused
 * (reuse: data's $_[2]) gets room to spare as well. */
static SV *new_in(pTHX_ isd_conn *c, const char *p, size_t n, SV *into,
                  int reuse)
{
    SV *sv = into;

    if (!sv && reuse)
        sv = newSV(n + 1 + IN_SLACK);   /* SVt_PV, undef, with a buffer */
    else if (sv && SvTYPE(sv) == SVt_PV
             && (SvFLAGS(sv) & SVf_THINKFIRST) == SVf_IsCOW)
        /* shared by copy-on-write once (before it had the room): let go
         * of the share, its bytes are replaced anyway */
        sv_force_normal_flags(sv, SV_COW_DROP_PV);
    if (sv && SvTYPE(sv) == SVt_PV && !SvTHINKFIRST(sv) && !SvOOK(sv)
        && !TAINTING_get) {
        /* A plain string (a reused $_[2] or getline's TARG): what
         * sv_setpvn would do, without its checks, keeping the room. */
        char *buf = SvLEN(sv) > n + IN_SLACK ? SvPVX(sv)
                                              : sv_grow(sv, n + 1 + IN_SLACK);
        Copy(p, buf, n, char);
        buf[n] = '\0';
        SvCUR_set(sv, n);
        SvPOK_only(sv);
    } else if (sv) {
        sv_setpvn(sv, p, n);
        SvUTF8_off(sv);
    } else {
        sv = newSVpvn(p, n);
    }
    if (*isd_conn_uflags(c) & UF_UTF8) {
        if (utf8_valid(p, n)) {
            SvUTF8_on(sv);
        } else {                /* malformed bytes: Latin-1 characters */
            sv_setpvs(sv, "");
            SvUTF8_on(sv);
            append_chars(aTHX_ sv, p, n);
        }
    }
    return sv;
}

/* $_[2]: the last message's SV when nothing else holds it and the callback
 * left it a plain string (no malloc), else a new one. */
static SV *line_sv(pTHX_ xd *d, isd_conn *c, const char *msg, size_t len)
{
    SV *line = d->spare_line;

    d->spare_line = NULL;
    if (line && !(SvREFCNT(line) == 1 && SvTYPE(line) == SVt_PV
                  && !(SvFLAGS(line) & (SVf_ROK | SVf_READONLY | SVf_PROTECT))
                  && !SvIsCOW(line))) {
        SvREFCNT_dec_NN(line);
        line = NULL;
    }
    return new_in(aTHX_ c, msg, len, line, 1);
}

/* The call is over: keep its $_[2] for the next one if nothing else has it. */
static void line_done(pTHX_ xd *d, SV *line)
{
    if (SvREFCNT(line) == 1 && !d->spare_line)
        d->spare_line = line;
    else
        SvREFCNT_dec_NN(line);
}

/* data($io, $daemon, $line) for b's current message; its answer (a
 * mortal).  No eval of its own: a die unwinds to on_ready's. */
static SV *deliver(pTHX_ batch *b)
{
    dSP;
    xd *d = b->d;
    int n;
    SV *res;

    b->line = line_sv(aTHX_ d, b->c, b->msg, b->len);
    if (LIKELY(!d->framed) ? d->cfg.framing.kind != ISD_FRAME_RAW
                           : isd_conn_framing(b->c)->kind != ISD_FRAME_RAW) {
        d->cur_conn = b->c;
        d->cur_len = b->len;
    }
    PUSHMARK(SP);
    EXTEND(SP, 3);
    PUSHs(b->io);
    PUSHs(d->self_rv ? d->self_rv : &PL_sv_undef);
    PUSHs(b->line);
    PUTBACK;
    n = call_sv(b->cb, G_SCALAR);
    SPAGAIN;
    res = n > 0 ? POPs : &PL_sv_undef;
    PUTBACK;
    d->cur_conn = NULL;
    return res;
}

/* b->c's turn is over.  After a false answer, or a die (died: in $@), the
 * remove callback and the close; then the core finishes the turn (flush,
 * interest). */
static void turn_end(pTHX_ batch *b, int died)
{
    xd *d = b->d;
    isd_conn *c = b->c;
    SV *io = b->io, *cb;

    d->cur_conn = NULL;
    b->c = NULL;
    b->io = NULL;
    if (b->line) {                      /* not handed back: data() died */
        line_done(aTHX_ d, b->line);
        b->line = NULL;
    }
    if (died) {
        report_died(aTHX_ d, "data", io);
        b->ok = 0;
    }
    if (!b->ok && io && isd_conn_is_open(c) && peer_rv(c) == io
        && !(isd_conn_flags(c) & ISD_C_FAILED)) {
        /* False (or died): remove callback, then close.  A connection
         * that failed meanwhile (a print over max_output) is the core's to
         * end: its on_close reports why, then calls remove. */
        if ((cb = CB(d, remove)))
            call_cb(aTHX_ d, cb, "remove", io, NULL);
        if (isd_conn_is_open(c) && peer_rv(c) == io)
            drop_conn(aTHX_ c, 0);
    }
    isd_conn_done(c);
    if (io)
        SvREFCNT_dec_NN(io);
}

/* With many connections each one's Perl objects are out of the cache by
 * its next turn (the kernel's work for the others evicts them), and they
 * are a chain of dependent loads: $io (an RV) -> glob head -> glob body ->
 * magic.  While one connection is served, start the loads for the next
 * ones, one link further for each connection closer to its turn, so each
 * link has a whole turn to arrive. */
static void prefetch_ahead(const isd_server *s)
{
    isd_conn *n[5] = { NULL, NULL, NULL, NULL, NULL };
    SV *rv, *g;

    if (!isd_server_ready_ahead(s, n, 5))
        return;
    if (n[4])
        isd_conn_prefetch(n[4]);                    /* the C state */
    if (n[3])
        ISD_PREFETCH(isd_conn_data(n[3]));          /* the RV */
    if (n[2] && (rv = isd_conn_data(n[2])) && SvROK(rv))
        ISD_PREFETCH(SvRV(rv));                     /* the glob's head */
    if (n[1] && (rv = isd_conn_data(n[1])) && SvROK(rv)
        && (g = SvRV(rv)) && SvTYPE(g) >= SVt_PVMG)
        ISD_PREFETCH(SvANY(g));                     /* its body */
    if ((rv = isd_conn_data(n[0])) && SvROK(rv)
        && (g = SvRV(rv)) && SvTYPE(g) >= SVt_PVMG && SvMAGIC(g))
        ISD_PREFETCH(SvMAGIC(g));                   /* its magic */
}

/* The batch: called by on_ready under G_EVAL.  Returns with b->c NULL
 * once the queue is done; a die leaves b->c set. */
XS_INTERNAL(xs_deliver)
{
    dXSARGS;
    dMY_CXT;
    batch *b = MY_CXT.batch;
    isd_conn *c;

    PERL_UNUSED_VAR(cv);
    PERL_UNUSED_VAR(items);
    if (!b)                             /* only on_ready calls it */
        XSRETURN_EMPTY;
    /* (a forked child's destroy lets go of the server: stop taking) */
    while (b->d->srv == b->s && (c = isd_server_ready(b->s)) != NULL) {
        SV *io = peer_rv(c);

        prefetch_ahead(b->s);
        b->c = c;
        b->io = io;
        b->ok = 1;
        if (io)
            SvREFCNT_inc_simple_void_NN(io);
        while (isd_conn_take(c, &b->msg, &b->len)) {
            SV *res, *e;

            if (!io || peer_rv(c) != io || !(b->cb = CB(b->d, data)))
                continue;               /* nobody to give it to: dropped */
            /* each data() starts with $@ empty, as with an eval of its own */
            e = GvSV(PL_errgv);
            if (!e || !SvPOK(e) || SvCUR(e))
                CLEAR_ERRSV();
            res = deliver(aTHX_ b);
            b->ok = SvTRUE(res) ? 1 : 0;    /* overloading dies to the eval */
            FREETMPS;
            line_done(aTHX_ b->d, b->line);
            b->line = NULL;
            if (!b->ok)
                break;
        }
        turn_end(aTHX_ b, 0);
    }
    XSRETURN_EMPTY;
}

static void on_ready(isd_server *s)
{
    xd *d = isd_server_data(s);
    dXD_THX(d);
    dMY_CXT;
    batch b, *outer = MY_CXT.batch;

    Zero(&b, 1, batch);
    b.d = d;
    b.s = s;
    MY_CXT.batch = &b;
    ENTER;          /* the mortals made here go with this batch */
    SAVETMPS;
    for (;;) {
        dSP;
        PUSHMARK(SP);
        PUTBACK;
        call_sv((SV *)MY_CXT.deliver_cv, G_DISCARD | G_EVAL);
        if (!b.c)                       /* the queue is done */
            break;
        turn_end(aTHX_ &b, 1);          /* b.c's data() died */
        FREETMPS;
    }
    MY_CXT.batch = outer;
    FREETMPS;
    LEAVE;
}

static void on_close(isd_conn *c, int err)
{
    xd *d = conn_xd(c);
    dXD_THX(d);
    SV *io = peer_rv(c), *cb;
    char tb[8];

    if (!io)
        return;
    ENTER;
    SAVETMPS;
    /* ours through the calls: error may remove it, or destroy */
    sv_2mortal(SvREFCNT_inc_simple_NN(io));
    /* (a reset is not reported, but TLS's failures are: a bad record, a
     * truncation, a failed STARTTLS handshake) */
    if (err == EMSGSIZE || err == ENOBUFS || err == ENOMEM || err == ETIMEDOUT
        || err == EBADMSG
        || (err && *isd_conn_transport_error(c, tb, sizeof tb)))
        report(aTHX_ d, io, sv_2mortal(errmsg(aTHX_ c, err)));
    /* (not after error removed it: remove means no remove callback) */
    if (peer_rv(c) == io && (cb = CB(d, remove)))
        call_cb(aTHX_ d, cb, "remove", io, NULL);
    if (peer_rv(c) == io) {
        isd_conn_set_data(c, NULL);
        SvREFCNT_dec(io);
    }
    FREETMPS;
    LEAVE;
}

/* Its output fell back to low_water after high_water: drain($io, $d). */
static void on_drain(isd_conn *c)
{
    xd *d = conn_xd(c);
    dXD_THX(d);
    SV *io = peer_rv(c), *cb;

    if (!io || !(cb = CB(d, drain)))
        return;
    call_cb(aTHX_ d, cb, "drain", io, NULL);
}

static void on_error(isd_server *s, int err, const char *what)
{
    xd *d = isd_server_data(s);
    dXD_THX(d);

    ENTER;
    SAVETMPS;
    report(aTHX_ d, NULL, sv_2mortal(newSVpvf("%s: %s", what, strerror(err))));
    FREETMPS;
    LEAVE;
}

/* A connection of a PROXY listener refused before it was ours (untrusted
 * source, bad or late header): one error, with no $io (add never ran). */
static void on_reject(isd_server *s, isd_conn *c, int err, const char *reason)
{
    xd *d = isd_server_data(s);
    dXD_THX(d);

    PERL_UNUSED_ARG(err);
    ENTER;
    SAVETMPS;
    report(aTHX_ d, NULL, sv_2mortal(newSVpvf("connection from %" SVf
                                              " refused: %s",
                                              SVfARG(conn_desc(aTHX_ c)),
                                              reason)));
    FREETMPS;
    LEAVE;
}

static const isd_handlers handlers = { on_accept, NULL, on_close, on_error,
                                       on_ready, on_drain, on_reject };

/* ---------------------------------------------------------- daemon state */

static int ms_of(pTHX_ SV *sv, int dflt)
{
    NV v;

    if (!sv || !SvOK(sv) || !looks_like_number(sv))
        return dflt;
    v = SvNV(sv);
    if (v <= 0)
        return 0;
    if (v > 2000000.0)
        return 2000000000;
    return (int)(v * 1000.0 + 0.999);
}

static SV *opt(pTHX_ xd *d, const char *k)
{
    SV **svp = hv_fetch(d->self, k, (I32)strlen(k), 0);
    return svp && SvOK(*svp) ? *svp : NULL;
}

/* $av->[i] as an integer, or dflt */
static IV av_iv(pTHX_ AV *av, SSize_t i, IV dflt)
{
    SV **svp = av_fetch(av, i, 0);
    return svp && SvOK(*svp) ? SvIV(*svp) : dflt;
}

/* $self->{timeout}, read every cycle as 0.04 did: with its hash precomputed. */
static SV *timeout_sv(pTHX_ xd *d)
{
    SV **svp = hv_common_key_len(d->self, "timeout", 7, HV_FETCH_JUST_SV,
                                 NULL, h_timeout);
    return svp && SvOK(*svp) ? *svp : NULL;
}

#include "udp.c"
#include "proxy.c"
#include "tls.c"
#include "listen.c"

/* The daemon lets go of every open connection's $io. */
static void xd_drop_peers(pTHX_ xd *d)
{
    isd_conn *c, *next;

    for (c = isd_server_next_conn(d->srv, NULL); c; c = next) {
        SV *io = peer_rv(c);
        next = isd_server_next_conn(d->srv, c);
        isd_conn_set_data(c, NULL);
        if (io)
            SvREFCNT_dec(io);
    }
}

/* Make the loop and server, in this process, and hand them the listener. */
static void xd_timers_rearm(xd *d);

/* The loop of this process, made if need be.  0, or -1 with d->err. */
static int xd_loop(pTHX_ xd *d)
{
    int forked = d->loop && d->pid != getpid();

    if (forked) {
        /* forked since: the loop is shared with the parent; start afresh,
         * on the same listening socket (a child that runs serves) */
        if (d->srv) {
            size_t k, nl = isd_server_nlisteners(d->srv);
            int *fds, adopt;
            void **args, **targs;
            Newx(fds, nl ? nl : 1, int);
            Newx(args, nl ? nl : 1, void *);
            Newx(targs, nl ? nl : 1, void *);
            for (k = 0; k < nl; k++) {  /* (the only hook: PROXY's; the */
                (void)isd_server_listener_hook(d->srv, k, &args[k]);
                (void)isd_server_listener_transport(d->srv, k, &targs[k]);
            }                           /*  only transport: TLS's, &ctx) */
            nl = isd_server_take_listeners(d->srv, fds, nl);
            xd_drop_peers(aTHX_ d);
            isd_server_abandon(d->srv);
            isd_server_free(d->srv);
            d->srv = NULL;
            adopt = !d->nlfds;          /* (unless it bound anew) */
            for (k = 0; k < nl; k++) {
                if (adopt)
                    lfd_push(d, fds[k], (isd_proxy_opts *)args[k],
                             (xtls *)targs[k]);
                else
                    close(fds[k]);
            }
            Safefree(fds);
            Safefree(args);
            Safefree(targs);
        }
        xd_udp_stop(aTHX_ d, d->nufds ? 2 : 1);     /* (the same for UDP) */
        xd_udp_reap(d);
        isd_loop_abandon(d->loop);
        d->loop = NULL;
        d->refused = d->errors = 0;     /* the child's stats are its own */
        d->started = 0;
    }
    d->pid = getpid();
    if (!d->loop) {
        d->loop = isd_loop_new(d->backend[0] ? d->backend : NULL, d->err,
                               sizeof d->err);
        if (!d->loop)
            return -1;
        if (forked)
            xd_timers_rearm(d);     /* the child's timers go on in its loop */
    }
    return 0;
}

static int xd_start(pTHX_ xd *d)
{
    if (xd_loop(aTHX_ d) < 0)
        return -1;
    if (!d->srv) {
        d->srv = isd_server_new(d->loop, &handlers, &d->cfg, d);
        if (!d->srv)
            return -1;
        if (!d->started)
            d->started = (IV)time(NULL);
    }
    while (d->nlfds > 0) {
        isd_conn_hook h;
        xtls *t = d->ltls[0];
        if (d->lpx[0])
            isd_proxy_hook_init(&h, d->lpx[0]);
        if (isd_server_listen_fd_ex(d->srv, d->lfds[0], d->lpx[0] ? &h : NULL,
                                    d->lpx[0], t ? &t->tp : NULL,
                                    t ? (void *)&t->ctx : NULL) < 0) {
            snprintf(d->err, sizeof d->err, "listen: %s", strerror(errno));
            return -1;
        }
        Move(d->lfds + 1, d->lfds, d->nlfds - 1, int);
        Move(d->lpx + 1, d->lpx, d->nlfds - 1, isd_proxy_opts *);
        Move(d->ltls + 1, d->ltls, d->nlfds - 1, xtls *);
        d->nlfds--;
    }
    return xd_udp_start(aTHX_ d);
}

static int perl_handles_signals(pTHX);
static int block_signals(pTHX_ sigset_t *old);

/* Wait for the closed connections' output to drain, up to linger, running
 * Perl's signal handlers as they come (signals: only when called from
 * Perl, never from a magic free).  A handler may end the wait: destroy or
 * stop (d->drain_abort), exit, die, or freeing the server. */
static void xd_drain(pTHX_ xd *d, int signals)
{
    uint64_t deadline = isd_now_ms() + d->cfg.linger_ms;
    sigset_t old;

    while (d->srv && !d->drain_abort) {
        uint64_t now = isd_now_ms();
        int left = now >= deadline ? 0 : (int)(deadline - now);
        int sigs = signals && perl_handles_signals(aTHX);

        if (sigs && block_signals(aTHX_ &old)) {
            PERL_ASYNC_CHECK();
            continue;
        }
        if (isd_server_drain(d->srv, left, sigs ? &old : NULL) == 0
            || errno != EINTR)
            break;
        if (signals)
            PERL_ASYNC_CHECK();
    }
}

static void drain_end(pTHX_ void *p)
{
    xd *d = p;

    PERL_UNUSED_CONTEXT;
    if (d->srv)
        isd_server_abort_closing(d->srv);
}

/* Drop every connection's $io and close them, with the listener: their
 * output is delivered for up to linger.  Called again while it waits (from
 * a signal handler), it gives up on what is left. */
static void xd_close_all(pTHX_ xd *d, int signals)
{
    if (d->draining) {
        d->drain_abort = 1;
        if (d->srv)
            isd_server_abort_closing(d->srv);
        return;
    }
    lfds_close(d);
    upaths_remove(d, 1);
    ufds_close(d);
    xd_udp_stop(aTHX_ d, d->pid != getpid() ? 2 : 0);
    if (!d->srv)
        return;
    if (d->pid != getpid()) {
        /* a forked copy: let go of our descriptors only */
        xd_drop_peers(aTHX_ d);
        isd_server_abandon(d->srv);
        if (d->running) {
            /* from a callback (a child of fork destroys its copy): the
             * core is on the C stack, still to return through these */
            d->gone_srv = d->srv;
            d->gone_loop = d->loop;
        } else {
            isd_server_free(d->srv);
            isd_loop_abandon(d->loop);
        }
        d->srv = NULL;
        d->loop = NULL;
        return;
    }
    isd_server_unlisten(d->srv);
    xd_drop_peers(aTHX_ d);
    isd_server_close_conns(d->srv);
    /* Undone by LEAVE, also when a handler dies or exits out of the wait:
     * what is left is dropped then (an exit ends the process now). */
    ENTER;
    SAVEINT(d->draining);
    d->draining = 1;
    d->drain_abort = 0;
    SAVEDESTRUCTOR_X(drain_end, d);
    xd_drain(aTHX_ d, signals);
    LEAVE;
}

/* Stop accepting: every listener closed (TCP, UNIX, UDP; a UNIX socket's
 * file stays until destroy).  run binds anew if it is called again. */
static void xd_unlisten(pTHX_ xd *d)
{
    lfds_close(d);
    ufds_close(d);
    if (d->srv)
        isd_server_unlisten(d->srv);
    xd_udp_stop(aTHX_ d, d->pid != getpid() ? 2 : 0);
}

/* A graceful stop under way: over once no connection is open, or when its
 * time is up; then what is still open gets remove and is closed (its
 * queued output delivered, for up to linger).  Whether it is over. */
static int xd_grace_over(pTHX_ xd *d)
{
    isd_conn *c, **open_c = NULL;
    size_t n = 0, i;
    SV *cb;

    /* (a connection still sending its PROXY header is waited for too: what
     * it sent before the stop is served) */
    if (d->srv && isd_server_nopen(d->srv) && isd_now_ms() < d->grace_at)
        return 0;
    if (d->srv && isd_server_nconns(d->srv)) {
        /* (held: a remove callback may close others, or destroy d) */
        Newx(open_c, isd_server_nconns(d->srv), isd_conn *);
        SAVEFREEPV(open_c);
        for (c = isd_server_next_conn(d->srv, NULL);
             c && n < isd_server_nconns(d->srv);
             c = isd_server_next_conn(d->srv, c))
            if (isd_conn_is_open(c)) {
                isd_conn_ref(c);
                open_c[n++] = c;
            }
        for (i = 0; i < n; i++) {
            SV *io;
            c = open_c[i];
            if (d->srv && isd_conn_is_open(c) && (io = peer_rv(c))) {
                if ((cb = CB(d, remove)))
                    call_cb(aTHX_ d, cb, "remove", io, NULL);
                if (d->srv && isd_conn_is_open(c) && peer_rv(c) == io)
                    drop_conn(aTHX_ c, 0);
            } else if (d->srv && isd_conn_is_open(c)) {
                isd_conn_close(c);
            }
        }
        for (i = 0; i < n; i++)
            isd_conn_unref(open_c[i]);
    }
    if (d->srv && isd_server_nopen(d->srv))
        isd_server_close_conns(d->srv);  /* (headers still pending: dropped) */
    d->stop = 1;
    d->grace_at = 0;
    return 1;
}

/* Free what a forked copy let go of inside run. */
static void xd_reap(xd *d)
{
    if (d->gone_srv)
        isd_server_free(d->gone_srv);
    if (d->gone_loop)
        isd_loop_abandon(d->gone_loop);
    d->gone_srv = NULL;
    d->gone_loop = NULL;
    xd_udp_reap(d);                 /* (UDP sockets stopped inside run) */
}

#include "timer.c"

static int xd_mg_free(pTHX_ SV *sv, MAGIC *mg)
{
    xd *d = (xd *)mg->mg_ptr;

    PERL_UNUSED_ARG(sv);
    if (!d)
        return 0;
    if (!PL_dirty) {
        xd_close_all(aTHX_ d, 0);
        xd_timers_cancel(aTHX_ d);
    } else {
        xtimer *xt;                 /* objects may be gone: only let go */
        for (xt = d->timers; xt; xt = xt->next)
            xt->d = NULL;
        d->timers = NULL;
    }
    xd_reap(d);
    d->running = 0;                 /* (nothing of the loop runs any more) */
    xd_udp_stop(aTHX_ d, d->pid != getpid() ? 2 : 0);   /* (before the loop) */
    xd_udp_reap(d);
    if (d->srv) {
        if (d->pid != getpid())
            isd_server_abandon(d->srv);
        isd_server_free(d->srv);
    }
    if (d->loop)
        isd_loop_free(d->loop);
    lfds_close(d);
    Safefree(d->lfds);
    Safefree(d->lpx);
    Safefree(d->ltls);
    xd_proxy_free(d);
    xd_tls_free(d);
    upaths_remove(d, 1);
    ufds_close(d);
    Safefree(d->ufds);
    Safefree(d->lorder);
    if (!PL_dirty) {
        cb_forget(aTHX_ d);
        SvREFCNT_dec(d->spare_line);
    }
    Safefree(d->sep);
    Safefree(d);
    mg->mg_ptr = NULL;
    return 0;
}

/* -------------------------------------------------------------- waiting */

/* Whether %SIG has a Perl handler for any signal: only then can a signal
 * need dispatching after the wait, and only then is the blocked-mask dance
 * around the wait worth its two syscalls. */
static int perl_handles_signals(pTHX)
{
    int i;

    for (i = 1; i < SIG_SIZE; i++) {
        SV *h = PL_psig_ptr[i];
        if (!h)
            continue;
        if (SvROK(h) || isGV_with_GP(h))
            return 1;
        if (SvPOK(h) && SvCUR(h) && strNE(SvPVX(h), "IGNORE")
            && strNE(SvPVX(h), "DEFAULT"))
            return 1;
    }
    return 0;
}

/* The longest plain wait run() makes while traffic flows (see there). */
#define BUSY_WAIT_MS 10

/* Block signals, and say whether Perl has one pending (then unblock). */
static int block_signals(pTHX_ sigset_t *old)
{
    sigset_t all;

    sigfillset(&all);
    /* never hold back the synchronous ones */
    sigdelset(&all, SIGSEGV);
    sigdelset(&all, SIGBUS);
    sigdelset(&all, SIGFPE);
    sigdelset(&all, SIGILL);
    pthread_sigmask(SIG_BLOCK, &all, old);
    if (PL_sig_pending) {
        pthread_sigmask(SIG_SETMASK, old, NULL);
        return 1;
    }
    return 0;
}

static int read_timeout(pTHX_ xd *d)
{
    if (!d)
        return 0;
    if (d->read_timeout_ms >= 0)
        return d->read_timeout_ms;
    return ms_of(aTHX_ timeout_sv(aTHX_ d), 10000);
}

static void conn_unref_cb(pTHX_ void *c)
{
    PERL_UNUSED_CONTEXT;
    isd_conn_unref((isd_conn *)c);
}

/* A method that runs Perl code between finding c and using it (a signal
 * handler, a tied FETCH, an overloaded "") holds c: that code may drop the
 * last $io and destroy the daemon.  Let go of when the caller's scope ends
 * (or a die unwinds it). */
static void hold_conn(pTHX_ isd_conn *c)
{
    isd_conn_ref(c);
    SAVEDESTRUCTOR_X(conn_unref_cb, c);
}

/* Whether fetching sv's value runs Perl code (get magic: a tie, $1...;
 * overloading); then hold c across it. */
#define RUNS_PERL(sv) ((SvFLAGS(sv) & (SVs_GMG | SVf_ROK)) \
                       && (SvGMAGICAL(sv) || (SvROK(sv) && SvAMAGIC(sv))))
#define HOLD_IF(c, sv) \
    do { if ((sv) && RUNS_PERL(sv)) hold_conn(aTHX_ (c)); } while (0)

/* Read more into c for a reading method: waits for this connection only,
 * running Perl signal handlers that arrive meanwhile, until *deadline: 0
 * the first time, when it is set to read_timeout from now (now itself
 * after blocking(0)), so that one method call waits read_timeout in all,
 * however the bytes trickle in.  >0 bytes, 0 EOF, -1 errno (ETIMEDOUT;
 * EAGAIN after blocking(0)). */
static ssize_t fill(pTHX_ isd_conn *c, uint64_t *deadline)
{
    int nonblock = (*isd_conn_uflags(c) & UF_NONBLOCK) != 0, held = 0;
    sigset_t old;
    ssize_t n;

    if (!*deadline) {
        int total = nonblock ? 0 : read_timeout(aTHX_ conn_xd(c));
        *deadline = isd_now_ms() + (uint64_t)total;
    }
    for (;;) {
        uint64_t now = isd_now_ms();
        int left = now >= *deadline ? 0 : (int)(*deadline - now);
        int sigs = perl_handles_signals(aTHX);

        if (sigs && !held) {
            hold_conn(aTHX_ c);     /* a handler runs Perl code */
            held = 1;
        }
        if (sigs && block_signals(aTHX_ &old)) {
            PERL_ASYNC_CHECK();
            continue;
        }
        n = isd_conn_fill(c, left, sigs ? &old : NULL);
        if (n < 0 && errno == EINTR) {
            PERL_ASYNC_CHECK();
            continue;
        }
        if (n < 0 && errno == ETIMEDOUT && nonblock)
            errno = EAGAIN;
        return n;
    }
}

/* flush in a child forked from a callback: no loop will write the rest
 * later, so wait for it (up to linger), running Perl's signal handlers
 * as they come.  0 or -1 with errno. */
static int flush_forked(pTHX_ isd_conn *c)
{
    uint64_t deadline = isd_now_ms() + conn_xd(c)->cfg.linger_ms;
    sigset_t old;

    hold_conn(aTHX_ c);             /* handlers run meanwhile */
    for (;;) {
        uint64_t now = isd_now_ms();
        int left = now >= deadline ? 0 : (int)(deadline - now), r;
        int sigs = perl_handles_signals(aTHX);

        if (sigs && block_signals(aTHX_ &old)) {
            PERL_ASYNC_CHECK();
            continue;
        }
        r = isd_conn_flush_wait(c, left, sigs ? &old : NULL);
        if (r == 0 || errno != EINTR)
            return r;
        PERL_ASYNC_CHECK();
    }
}

static SV *read_record(pTHX_ isd_conn *c, SV *into, uint64_t *deadline);

/* Every record to EOF, for list context (getlines, <$io>): as a slurp
 * is, bounded by max_line in all; past it the connection fails (EMSGSIZE)
 * and nothing is returned.  Pushed on the stack; how many. */
static int read_all(pTHX_ isd_conn *c)
{
    dSP;
    xd *d = conn_xd(c);
    size_t max = d ? d->cfg.framing.max : 0, total = 0;
    int n = 0;
    SV *sv;
    uint64_t deadline = 0;          /* read_timeout for the whole list */

    while ((sv = read_record(aTHX_ c, NULL, &deadline))) {
        total += SvCUR(sv);
        XPUSHs(sv_2mortal(sv));
        n++;
        if (max && total > max) {
            isd_conn_fail(c, EMSGSIZE);
            SETERRNO(EMSGSIZE, 0);
            SP -= n;
            n = 0;
            break;
        }
    }
    PUTBACK;
    return n;
}

/* ------------------------------------------------------------ peer I/O */

/* Bytes of sv for output, as Perl's own handles make them: on a :utf8
 * peer, the characters encoded as UTF-8 (a byte string's high bytes are
 * Latin-1 characters); on a raw peer, one byte per character, or, for a
 * string with wider characters, its UTF-8 with a "Wide character"
 * warning.  The string is fetched once (get magic and overloading run
 * before its UTF-8 flag means anything). */
static const char *out_chars(pTHX_ int utf8, SV *sv, const char *p,
                             STRLEN *len, const char *op);

static inline const char *out_bytes(pTHX_ int utf8, SV *sv, STRLEN *len,
                                    const char *op)
{
    const char *p = SvPV(sv, *len);

    if (LIKELY(!utf8 && !SvUTF8(sv)))
        return p;                       /* the usual: bytes to a raw peer */
    return out_chars(aTHX_ utf8, sv, p, len, op);
}

static const char *out_chars(pTHX_ int utf8, SV *sv, const char *p,
                             STRLEN *len, const char *op)
{
    SV *tmp;
    STRLEN i;

    if (utf8) {
        if (SvUTF8(sv))
            return p;
        for (i = 0; i < *len && !(p[i] & 0x80); i++)
            ;
        if (i == *len)
            return p;                   /* ASCII: the same bytes */
        tmp = sv_2mortal(newSVpvn(p, *len));
        sv_utf8_upgrade(tmp);
        return SvPV(tmp, *len);
    }
    tmp = sv_2mortal(newSVpvn_flags(p, *len, SVf_UTF8));
    if (!sv_utf8_downgrade(tmp, TRUE)) {
        Perl_ck_warner_d(aTHX_ packWARN(WARN_UTF8), "Wide character in %s",
                         op);
        return p;
    }
    return SvPV(tmp, *len);
}

static int put(pTHX_ isd_conn *c, const char *p, STRLEN n)
{
    if (isd_conn_write(c, p, n) < 0) {
        SETERRNO(errno, 0);
        return 0;
    }
    return 1;
}

/* print LIST as Perl's print does it ($, between the items, $\ after
 * them), or say's (a newline after them).  1, or 0 with $!. */
#if defined(__GNUC__) || defined(__clang__)
#  define XD_INLINE static inline __attribute__((always_inline))
#else
#  define XD_INLINE static inline
#endif

XD_INLINE int print_list(pTHX_ isd_conn *c, SV **args, int n, const char *op)
{
    int say = op[0] == 's', i, ok = 1, held = 0;
    int utf8 = (*isd_conn_uflags(c) & UF_UTF8) != 0;
    SV *ofs = PL_ofsgv ? GvSV(PL_ofsgv) : NULL;
    SV *ors = say ? NULL : PL_ors_sv;
    const char *p;
    STRLEN len;

    for (i = 0; i < n && ok; i++) {
        if (UNLIKELY(!held && RUNS_PERL(args[i])))
            held = 1, hold_conn(aTHX_ c);
        if (i > 0 && ofs && SvOK(ofs)) {
            if (!held && RUNS_PERL(ofs))
                held = 1, hold_conn(aTHX_ c);
            p = out_bytes(aTHX_ utf8, ofs, &len, op);
            ok = put(aTHX_ c, p, len);
        }
        p = out_bytes(aTHX_ utf8, args[i], &len, op);
        ok = ok && put(aTHX_ c, p, len);
    }
    if (ok && say)
        ok = put(aTHX_ c, "\n", 1);
    else if (ok && ors && SvOK(ors)) {
        if (!held && RUNS_PERL(ors))
            hold_conn(aTHX_ c);
        p = out_bytes(aTHX_ utf8, ors, &len, op);
        ok = put(aTHX_ c, p, len);
    }
    return ok;
}

/* Consuming input from outside the core's dispatch: the current message
 * is no longer at the head. */
static void consume(pTHX_ isd_conn *c, size_t n)
{
    xd *d = conn_xd(c);

    if (d && d->cur_conn == c)
        d->cur_conn = NULL;
    isd_conn_consume(c, n);
}

/* The next record per $/ (NULL at EOF with nothing left or on error), in
 * into if not NULL.  A record of $/ = \N on a :utf8 peer is N characters.
 * Waits (fill) until *deadline (0: read_timeout from the first wait), so
 * that one call waits read_timeout in all. */
static SV *read_record(pTHX_ isd_conn *c, SV *into, uint64_t *deadline)
{
    isd_framing f;
    const char *p;
    size_t len, scan = 0, rec = 0;
    xd *d = conn_xd(c);
    ssize_t m;
    SV *rs = PL_rs;
    STRLEN seplen = 0;
    const char *sep = NULL;
    const isd_framing *cf = NULL;
    size_t hdr = 0;
    int para = 0, slurp = 0, utf8;

    /* data()'s own line, with the default $/: its bytes at the head of
     * the input, no scan.  A copy: changing it must not change $_[2]. */
    if (d && d->cur_conn == c && SvPOK(rs) && SvCUR(rs) == 1
        && SvPVX(rs)[0] == '\n') {
        SV *sv;
        p = isd_conn_in(c, &len);
        sv = new_in(aTHX_ c, p, d->cur_len, into, 0);
        consume(aTHX_ c, d->cur_len);
        return sv;
    }
    if (!SvOK(rs)) {
        slurp = 1;
    } else if (SvROK(rs)) {
        IV r = SvIV(SvRV(rs));
        rec = r > 0 ? (size_t)r : 0;
        if (!rec)
            slurp = 1;
    } else {
        sep = SvPV(rs, seplen);
        if (!seplen) {
            para = 1;
            sep = "\n\n";
            seplen = 2;
        } else if (seplen == 1 && sep[0] == '\n') {
            /* $/ left as it is: a line is what the connection's framing
             * cuts, as data's are (its separator; or a length-prefixed
             * message, without its prefix) */
            cf = isd_conn_framing(c);
            if (cf && cf->kind == ISD_FRAME_LINE && cf->sep && cf->seplen) {
                sep = cf->sep;
                seplen = cf->seplen;
            }
        }
    }
    utf8 = (*isd_conn_uflags(c) & UF_UTF8) != 0;
    memset(&f, 0, sizeof f);
    f.kind = ISD_FRAME_LINE;
    f.sep = sep;
    f.seplen = seplen;
    f.max = d ? d->cfg.framing.max : 0;
    if (cf && cf->kind == ISD_FRAME_LENGTH) {
        f = *cf;
        hdr = isd_frame_hdr(cf);
    }
    for (;;) {
        p = isd_conn_in(c, &len);
        if (para) {
            size_t k = 0;
            while (k < len && p[k] == '\n')
                k++;
            if (k) {
                consume(aTHX_ c, k);
                p = isd_conn_in(c, &len);
                scan = 0;
            }
        }
        if (len) {
            if (slurp) {
                m = 0;
            } else if (rec && utf8) {
                size_t n = rec, b = utf8_prefix(p, len, &n, 0);
                m = n == rec ? (ssize_t)b : 0;
            } else if (rec) {
                m = len >= rec ? (ssize_t)rec : 0;
            } else {
                m = isd_frame_next(&f, p, len, &scan);
            }
            if (m < 0) {
                isd_conn_fail(c, EMSGSIZE);
                SETERRNO(EMSGSIZE, 0);
                return NULL;
            }
            if (m > 0) {
                SV *sv = new_in(aTHX_ c, p + hdr, (size_t)m - hdr, into, 0);
                consume(aTHX_ c, (size_t)m);
                return sv;
            }
        }
        if (isd_conn_flags(c) & ISD_C_EOF) {
            if (!len)
                return NULL;
            if (hdr) {                  /* EOF inside a message */
                isd_conn_fail(c, EBADMSG);
                SETERRNO(EBADMSG, 0);
                return NULL;
            }
            {
                SV *sv = new_in(aTHX_ c, p, len, into, 0);
                consume(aTHX_ c, len);
                return sv;
            }
        }
        if (fill(aTHX_ c, deadline) < 0) {
            SETERRNO(errno, 0);
            return NULL;
        }
    }
}

/* How much of c's input a read of want takes: bytes, or on a :utf8 peer
 * characters (whole ones).  The byte count; *got: the count in the unit
 * asked for. */
static size_t avail(isd_conn *c, size_t want, size_t *got)
{
    size_t len, n;
    const char *p = isd_conn_in(c, &len);

    if (*isd_conn_uflags(c) & UF_UTF8) {
        n = want;
        len = utf8_prefix(p, len, &n, (isd_conn_flags(c) & ISD_C_EOF) != 0);
        *got = n;
        return len;
    }
    *got = n = len < want ? len : want;
    return n;
}

/* sysread semantics: whatever is buffered (waiting only if nothing is);
 * full: read's, up to want (or EOF).  want and off count characters on
 * a :utf8 peer, and off counts characters of a UTF-8 buf, as Perl does:
 * the bytes read from a raw peer into a character string are characters
 * (Latin-1).  The count read, or -1 with $!. */
static ssize_t take(pTHX_ isd_conn *c, SV *buf, size_t want, SV *offsv,
                    int full)
{
    const char *p;
    size_t len, nb, got;
    STRLEN cur;
    SSize_t off;
    int chars;
    uint64_t deadline = 0;

    if (SvREADONLY(buf))
        croak("Modification of a read-only value attempted");
    hold_conn(aTHX_ c);     /* handlers and the buffer's FETCH run Perl */
    off = offsv ? (SSize_t)SvIV(offsv) : 0;
    for (;;) {
        avail(c, want, &got);
        isd_conn_in(c, &len);
        if (got >= want || (got && !full) || (isd_conn_flags(c) & ISD_C_EOF))
            break;
        if (!isd_conn_is_open(c)) {
            SETERRNO(ENOTCONN, 0);
            return -1;
        }
        if (fill(aTHX_ c, &deadline) < 0) {
            /* Out of time: undef, and what came is kept for the next
             * read.  After blocking(0), what there is; when no more can
             * come (an error), what there was. */
            if (got && errno != EMSGSIZE && errno != ETIMEDOUT)
                break;
            SETERRNO(errno, 0);
            return -1;
        }
    }
    /* The buffer first: fetching it may run Perl code (a tied FETCH, an
     * overloaded "") that reads from c itself; the input is looked at
     * only after that. */
    if (!SvOK(buf))
        sv_setpvs(buf, "");
    (void)SvPV_force(buf, cur);
    nb = avail(c, want, &got);
    p = isd_conn_in(c, &len);
    chars = SvUTF8(buf) || ((*isd_conn_uflags(c) & UF_UTF8)
                            && !is_utf8_invariant_string((const U8 *)p, nb));
    if (chars) {
        /* characters: off counts them in buf; the new ones are appended
         * as UTF-8 (from a :utf8 peer) or as Latin-1 (raw) */
        int from_utf8 = (*isd_conn_uflags(c) & UF_UTF8) != 0;
        STRLEN clen;
        if (!SvUTF8(buf))
            sv_utf8_upgrade_nomg(buf);
        clen = utf8_length((U8 *)SvPVX(buf), (U8 *)SvPVX(buf) + SvCUR(buf));
        if (off < 0) {
            if ((STRLEN)-off > clen)
                croak("Offset outside string");
            off += (SSize_t)clen;
        }
        if ((STRLEN)off > clen) {
            STRLEN pad = (STRLEN)off - clen;
            char *dst = SvGROW(buf, SvCUR(buf) + pad + 1);
            memset(dst + SvCUR(buf), 0, pad);
            SvCUR_set(buf, SvCUR(buf) + pad);
        } else {
            U8 *s0 = (U8 *)SvPVX(buf);
            SvCUR_set(buf, (STRLEN)(utf8_hop(s0, off) - s0));
        }
        if (from_utf8)
            append_chars(aTHX_ buf, p, nb);     /* got characters */
        else
            sv_catpvn_flags(buf, p, nb, SV_CATBYTES);
    } else {
        char *dst;
        cur = SvCUR(buf);
        if (off < 0) {
            if ((STRLEN)-off > cur)
                croak("Offset outside string");
            off += (SSize_t)cur;
        }
        dst = SvGROW(buf, (STRLEN)off + nb + 1);
        if ((STRLEN)off > cur)
            memset(dst + cur, 0, (STRLEN)off - cur);
        memcpy(dst + off, p, nb);
        SvCUR_set(buf, (STRLEN)off + nb);
        dst[off + nb] = '\0';
        got = nb;
    }
    SvPOK_only_UTF8(buf);
    consume(aTHX_ c, nb);
    SvSETMAGIC(buf);                    /* a tied STORE: Perl code again */
    return (ssize_t)got;
}

static SV *pack_addr(pTHX_ const isd_addr *a, int which)
{
    if (which == 0) {   /* sockaddr */
        socklen_t l = isd_addr_len(a);
        return l ? newSVpvn((const char *)a, l) : &PL_sv_undef;
    }
    if (a->sa.sa_family == AF_INET)
        return newSVpvn((const char *)&a->in4.sin_addr, 4);
    if (a->sa.sa_family == AF_INET6)
        return newSVpvn((const char *)&a->in6.sin6_addr, 16);
    return &PL_sv_undef;
}

/* =================================================================== XS */

#include "embed.c"

MODULE = IO::Socket::INET::Daemon  PACKAGE = IO::Socket::INET::Daemon

INCLUDE: Daemon.xsh

INCLUDE: Peer.xsh

INCLUDE: Timer.xsh

INCLUDE: Datagram.xsh
