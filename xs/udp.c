/*
 * udp.c - UDP listeners of a daemon: each datagram calls data($io,
 * $server, $datagram), $io an IO::Socket::INET::Daemon::Datagram that
 * stands for the sender (its replies are datagrams to it).  Part of
 * Daemon.xs (#included there: it uses the daemon's static helpers).
 */

/* What a Datagram object carries: its socket (counted) and its peer. */
typedef struct xdgram {
    isd_udp *u;
    isd_addr from;
} xdgram;

static int dgram_free(pTHX_ SV *sv, MAGIC *mg)
{
    xdgram *g = (xdgram *)mg->mg_ptr;

    PERL_UNUSED_ARG(sv);
    if (g) {
        isd_udp_unref(g->u);
        Safefree(g);
        mg->mg_ptr = NULL;
    }
    return 0;
}

static int dgram_dup(pTHX_ MAGIC *mg, CLONE_PARAMS *param)
{
    /* a thread's copy answers nothing (the socket is this thread's) */
    PERL_UNUSED_ARG(param);
    mg->mg_ptr = NULL;
    return 0;
}

static MGVTBL dgram_vtbl = { NULL, NULL, NULL, NULL, dgram_free, NULL,
                             dgram_dup, NULL };

/* A new Datagram object for a datagram of u from `from` (mortal). */
static SV *make_dgram(pTHX_ isd_udp *u, const isd_addr *from)
{
    dMY_CXT;
    SV *obj = newSV_type(SVt_PVMG), *rv;
    xdgram *g;

    Newx(g, 1, xdgram);
    g->u = isd_udp_ref(u);
    g->from = *from;
    sv_magicext(obj, NULL, PERL_MAGIC_ext, &dgram_vtbl, (char *)g, 0)
        ->mg_flags |= MGf_DUP;
    rv = newRV_noinc(obj);
    return sv_2mortal(sv_bless(rv, MY_CXT.dgram_stash));
}

static xdgram *dgram_from(pTHX_ SV *self, const char *method)
{
    MAGIC *mg;

    if (SvROK(self) && (mg = mg_findext(SvRV(self), PERL_MAGIC_ext,
                                        &dgram_vtbl)) && mg->mg_ptr)
        return (xdgram *)mg->mg_ptr;
    croak("%s::%s: not called on a datagram's sender", DGRAM_PKG, method);
    return NULL;
}

/* Who sent it, for messages: "127.0.0.1:40000" or "[::1]:40000". */
static SV *addr_desc(pTHX_ const isd_addr *a)
{
    char host[INET6_ADDRSTRLEN];

    isd_addr_host(a, host, sizeof host);
    return sv_2mortal(newSVpvf(a->sa.sa_family == AF_INET6 ? "[%s]:%u"
                                                           : "%s:%u",
                               host, isd_addr_port(a)));
}

static void on_datagram(isd_udp *u, const isd_addr *from, const char *p,
                        size_t n)
{
    xd *d = isd_udp_data(u);
    dXD_THX(d);
    SV *cb, *io, *msg;

    if (!d || !(cb = CB(d, data)))
        return;
    ENTER;
    SAVETMPS;
    io = make_dgram(aTHX_ u, from);
    msg = sv_2mortal(newSVpvn(p, n));
    SAVEVPTR(d->cur_dgram);
    SAVESPTR(d->cur_dgram_msg);
    d->cur_dgram = SvRV(io);
    d->cur_dgram_msg = msg;
    call_cb(aTHX_ d, cb, "data", io, msg);     /* (its answer means nothing) */
    FREETMPS;
    LEAVE;
}

static void on_udp_error(isd_udp *u, int err, const isd_addr *from)
{
    xd *d = isd_udp_data(u);
    dXD_THX(d);
    SV *io = NULL, *msg;

    if (!d)
        return;
    ENTER;
    SAVETMPS;
    if (from)
        io = make_dgram(aTHX_ u, from);
    if (err == EMSGSIZE && from)
        msg = newSVpvf("datagram too long (over max_line %lu bytes) from %"
                       SVf, (unsigned long)d->cfg.framing.max,
                       SVfARG(addr_desc(aTHX_ from)));
    else if (from)
        msg = newSVpvf("datagram to %" SVf ": %s",
                       SVfARG(addr_desc(aTHX_ from)), strerror(err));
    else
        msg = newSVpvf("udp receive: %s", strerror(err));
    report(aTHX_ d, io, sv_2mortal(msg));
    FREETMPS;
    LEAVE;
}

static const isd_udp_handlers udp_handlers = { on_datagram, on_udp_error };

static void ufd_push(xd *d, int fd)
{
    Renew(d->ufds, d->nufds + 1, int);
    d->ufds[d->nufds++] = fd;
}

/* Serve the UDP sockets bound so far on d's loop.  0 or -1 with d->err. */
static int xd_udp_start(pTHX_ xd *d)
{
    while (d->nufds > 0) {
        isd_udp *u = isd_udp_new(d->loop, d->ufds[0], &udp_handlers,
                                 d->cfg.framing.max, d->cfg.max_output, d);
        if (!u) {
            snprintf(d->err, sizeof d->err, "udp: %s", strerror(errno));
            return -1;
        }
        Renew(d->udps, d->nudps + 1, isd_udp *);
        d->udps[d->nudps++] = u;
        Move(d->ufds + 1, d->ufds, d->nufds - 1, int);
        d->nufds--;
    }
    return 0;
}

static void udp_stats_add(isd_udp_stats *to, const isd_udp *u)
{
    isd_udp_stats st;

    isd_udp_stats_get(u, &st);
    to->datagrams_in += st.datagrams_in;
    to->bytes_in += st.bytes_in;
    to->datagrams_out += st.datagrams_out;
    to->bytes_out += st.bytes_out;
    to->dropped_in += st.dropped_in;
    to->dropped_out += st.dropped_out;
}

/* Let go of d's stopped UDP sockets (not while the loop may still hold
 * an event for them: xd_reap calls it again once run returns). */
static void xd_udp_reap(xd *d)
{
    int i, k = 0;

    for (i = 0; i < d->nudps; i++) {
        if (isd_udp_fd(d->udps[i]) < 0) {
            udp_stats_add(&d->udp_st, d->udps[i]);  /* (its figures stay) */
            isd_udp_unref(d->udps[i]);
        } else
            d->udps[k++] = d->udps[i];
    }
    d->nudps = k;
    if (!k) {
        Safefree(d->udps);
        d->udps = NULL;
    }
}

/* d's UDP sockets stop: closed (how: 0), taken back as fds for a forked
 * child that serves anew (1), or abandoned by a forked copy (2).  The
 * structs go now unless the loop may still hold an event for them
 * (xd_udp_reap then). */
static void xd_udp_stop(pTHX_ xd *d, int how)
{
    int i;

    for (i = 0; i < d->nudps; i++) {
        if (how == 1) {
            int fd = isd_udp_take_fd(d->udps[i]);
            if (fd >= 0)
                ufd_push(d, fd);
        } else if (how == 2) {
            isd_udp_abandon(d->udps[i]);
        } else {
            isd_udp_close(d->udps[i]);
        }
        isd_udp_set_data(d->udps[i], NULL);
    }
    if (!d->running)
        xd_udp_reap(d);
}


static void ufds_close(xd *d)
{
    while (d->nufds > 0)
        close(d->ufds[--d->nufds]);
}
