# Daemon.xsh - the XSUBs of IO::Socket::INET::Daemon (the server object),
# included by Daemon.xs, whose C part they use.

PROTOTYPES: DISABLE

BOOT:
{
    PERL_HASH(h_add, "add", 3);
    PERL_HASH(h_remove, "remove", 6);
    PERL_HASH(h_data, "data", 4);
    PERL_HASH(h_tick, "tick", 4);
    PERL_HASH(h_error, "error", 5);
    PERL_HASH(h_callback, "callback", 8);
    PERL_HASH(h_timeout, "timeout", 7);
    PERL_HASH(h_drain, "drain", 5);
    {
        MY_CXT_INIT;
        init_cxt(aTHX_ &MY_CXT);
    }
}

void
CLONE(...)
  CODE:
    {
        MY_CXT_CLONE;
        init_cxt(aTHX_ &MY_CXT);
    }
    PERL_UNUSED_VAR(items);

void
_init(SV *self)
  PREINIT:
    xd *d;
    SV *v;
  CODE:
    if (!SvROK(self) || SvTYPE(SvRV(self)) != SVt_PVHV)
        croak("%s::_init: not a hash-based object", PKG);
    if (find_mg(SvRV(self), &xd_vtbl))
        croak("%s::_init: already initialised", PKG);
    Newxz(d, 1, xd);
    d->self = (HV *)SvRV(self);
    d->pid = getpid();
#ifdef PERL_IMPLICIT_CONTEXT
    d->perl = aTHX;
#endif
    v = opt(aTHX_ d, "framing");
    d->cfg.framing.kind = framing_of(v ? SvPV_nolen(v) : "line");
    if (d->cfg.framing.kind < 0)
        d->cfg.framing.kind = ISD_FRAME_LINE;
    v = opt(aTHX_ d, "length_format");
    d->cfg.framing.lenfmt = lenfmt_of(v ? SvPV_nolen(v) : "N");
    if (d->cfg.framing.lenfmt < 0)
        d->cfg.framing.lenfmt = ISD_LEN_N;
    v = opt(aTHX_ d, "max_line");
    d->cfg.framing.max = v ? (size_t)SvUV(v) : 1048576;
    v = opt(aTHX_ d, "separator");
    if (v && d->cfg.framing.kind == ISD_FRAME_LINE) {
        STRLEN n;
        const char *p = SvPVbyte(v, n);
        if (n && !(n == 1 && p[0] == '\n')) {
            d->sep = savepvn(p, n);
            d->cfg.framing.sep = d->sep;
            d->cfg.framing.seplen = n;
        }
    }
    v = opt(aTHX_ d, "max_output");
    d->cfg.max_output = v ? (size_t)SvUV(v) : 64 * 1048576;
    v = opt(aTHX_ d, "linger");
    d->cfg.linger_ms = (unsigned)ms_of(aTHX_ v, 30000);
    v = opt(aTHX_ d, "read_timeout");
    d->read_timeout_ms = v ? ms_of(aTHX_ v, 10000) : -1;
    v = opt(aTHX_ d, "idle_timeout");
    d->cfg.idle_ms = (unsigned)ms_of(aTHX_ v, 0);
    v = opt(aTHX_ d, "max_connections");
    d->cfg.max_conns = v ? (size_t)SvUV(v) : 0;
    v = opt(aTHX_ d, "high_water");
    d->cfg.high_water = v ? (size_t)SvUV(v) : 1048576;
    v = opt(aTHX_ d, "low_water");
    d->cfg.low_water = v ? (size_t)SvUV(v) : 0;
    v = opt(aTHX_ d, "backlog");
    d->backlog = v ? (int)SvIV(v) : SOMAXCONN;
    v = opt(aTHX_ d, "backend");
    if (v)
        my_strlcpy(d->backend, SvPV_nolen(v), sizeof d->backend);
    sv_magicext(SvRV(self), NULL, PERL_MAGIC_ext, &xd_vtbl, (char *)d, 0);

void
listen(SV *self)
  PREINIT:
    xd *d;
  PPCODE:
    d = xd_from(aTHX_ self, "listen");
    d->err[0] = '\0';
    if (xd_listen(aTHX_ d) < 0) {
        int e = errno;
        sv_setpv(ERRSV, d->err);        /* what and where, as IO::Socket's $@ */
        SETERRNO(e, 0);
        XSRETURN_EMPTY;
    }
    XSRETURN_YES;

void
_run(SV *self)
  PREINIT:
    xd *d;
    int timeout, n, sigs, busy = 0;
    sigset_t old;
  PPCODE:
    d = xd_from(aTHX_ self, "run");
    if (d->running)
        croak("%s::run: already running", PKG);
    d->err[0] = '\0';
    if (xd_listen(aTHX_ d) < 0 || xd_start(aTHX_ d) < 0) {
        int e = errno ? errno : EINVAL;
        sv_setpv(ERRSV, d->err);
        SETERRNO(e, 0);
        XSRETURN_EMPTY;
    }
    {
        /* Undone by LEAVE, also when a signal handler dies out of run().
         * The daemon is held first, so that it is let go of last: a
         * callback may drop the last other reference to it, and d goes
         * with it (after running and self_rv are restored). */
        ENTER;
        SAVEFREESV(SvREFCNT_inc_simple_NN(SvRV(self)));
        SAVEINT(d->running);
        SAVEVPTR(d->self_rv);
        d->running = 1;
        d->stop = 0;
        d->grace_at = 0;
        d->self_rv = newSVsv(self);
        SAVEFREESV(d->self_rv);
        SAVETMPS;
        /* The callback cache trusts the slots it holds while someone else
         * holds them too, which `local $d->{callback}{data} = ...` (the
         * old value kept on the savestack) fools.  Such a local is in
         * force only inside its own scope, and callbacks are only called
         * from run: a local made around this run is seen by looking the
         * callbacks up afresh here. */
        cb_forget(aTHX_ d);
        while (!d->stop) {
            SV *cb = CB(d, tick);
            FREETMPS;       /* whatever the last cycle left */
            if (cb)
                call_cb(aTHX_ d, cb, "tick", NULL, NULL);
            if (d->stop || !d->srv)
                break;
            if (d->grace_at && xd_grace_over(aTHX_ d))
                break;                  /* a graceful stop is done */
            timeout = ms_of(aTHX_ timeout_sv(aTHX_ d), -1);
            if (d->grace_at) {          /* wake for its deadline */
                uint64_t now = isd_now_ms();
                int left = d->grace_at > now ? (int)(d->grace_at - now) : 0;
                if (timeout < 0 || timeout > left)
                    timeout = left;
            }
            if (isd_loop_prepare(d->loop) || d->stop)
                timeout = 0;
            if (!d->srv)        /* a forked child destroyed its copy */
                break;
            sigs = perl_handles_signals(aTHX);
            n = 0;
            if (sigs && busy && timeout != 0) {
                /* Traffic is flowing: a plain wait, without the two
                 * mask syscalls, but of BUSY_WAIT_MS at most.  A signal
                 * during the wait interrupts it; one that lands in the few
                 * instructions between the PL_sig_pending check and the
                 * wait is then handled within BUSY_WAIT_MS, not at the next
                 * event.  Nothing in that time: the exact wait, for the
                 * rest of the timeout, in the same cycle. */
                int cap = timeout < 0 || timeout > BUSY_WAIT_MS ? BUSY_WAIT_MS : timeout;
                if (!PL_sig_pending)
                    n = isd_loop_run_once(d->loop, cap, NULL);
                if (n != 0 || PL_sig_pending || cap == timeout || d->stop || !d->srv)
                    goto waited;
                busy = 0;
                if (timeout > 0)
                    timeout -= cap;
                if (isd_loop_prepare(d->loop) || d->stop)
                    timeout = 0;
                if (!d->srv)
                    break;
            }
            if (sigs && block_signals(aTHX_ &old)) {
                PERL_ASYNC_CHECK();
                continue;
            }
            n = isd_loop_run_once(d->loop, timeout, sigs ? &old : NULL);
            busy = n > 0;
          waited:
            if (n < 0 && errno != EINTR) {
                int e = errno;
                report(aTHX_ d, NULL, sv_2mortal(newSVpvf("%s wait: %s",
                       isd_loop_backend(d->loop), strerror(e))));
                SETERRNO(e, 0);
                break;
            }
            PERL_ASYNC_CHECK();
        }
        xd_reap(d);     /* the core is off the C stack now */
        LEAVE;          /* d may be gone after this */
    }
    XSRETURN_YES;

void
run_once(SV *self, SV *timeout = NULL)
  PREINIT:
    xd *d;
    int r, ms = 0;
  PPCODE:
    d = xd_from(aTHX_ self, "run_once");
    if (d->running)
        croak("%s::run_once: already running (called from a callback, or "
              "inside run)", PKG);
    if (timeout && SvOK(timeout)) {
        if (!looks_like_number(timeout) || !(SvNV(timeout) >= 0))
            croak("%s::run_once: timeout: %" SVf " is not a number of "
                  "seconds", PKG, SVfARG(quoted(aTHX_ timeout)));
        ms = ms_of(aTHX_ timeout, 0);
    } else if (timeout) {
        ms = -1;                        /* undef: until something happens */
    }
    d->err[0] = '\0';
    r = xd_step(aTHX_ d, self, ms);
    if (r < 0) {
        int e = errno ? errno : EINVAL;
        sv_setpv(ERRSV, d->err);
        SETERRNO(e, 0);
        XSRETURN_EMPTY;
    }
    XSRETURN_IV(r);

void
fd(SV *self)
  PREINIT:
    xd *d;
    int fd;
  PPCODE:
    d = xd_from(aTHX_ self, "fd");
    d->err[0] = '\0';
    if (xd_listen(aTHX_ d) < 0 || xd_start(aTHX_ d) < 0)
        croak("%s::fd: %s", PKG, d->err[0] ? d->err : strerror(errno));
    d->embedded = 1;
    fd = isd_loop_fd(d->loop);
    if (fd < 0)
        XSRETURN_UNDEF;                 /* (poll: step on a timer) */
    XSRETURN_IV(fd);

void
next_timeout(SV *self)
  PREINIT:
    NV t;
  PPCODE:
    t = xd_next_timeout(aTHX_ xd_from(aTHX_ self, "next_timeout"));
    if (t < 0)
        XSRETURN_UNDEF;
    XSRETURN_NV(t);

void
stop(SV *self, ...)
  PREINIT:
    xd *d;
    int i;
    SV *grace = NULL;
  PPCODE:
    d = xd_from(aTHX_ self, "stop");
    if (items % 2 == 0)
        croak("%s::stop: options come in pairs (grace => SECONDS)", PKG);
    for (i = 1; i < items; i += 2) {
        const char *k = SvPV_nolen(ST(i));
        if (strNE(k, "grace"))
            croak("%s::stop: unknown option '%s' (have: grace)", PKG, k);
        grace = ST(i + 1);
        SvGETMAGIC(grace);
        if (!SvOK(grace) || !looks_like_number(grace) || !(SvNV(grace) >= 0)
            || SvNV(grace) > 1e9)          /* (NaN and infinities too) */
            croak("%s::stop: grace: %" SVf " is not a number of seconds", PKG,
                  SVfARG(quoted(aTHX_ grace)));
    }
    if (grace && (d->running || d->embedded) && !d->stop && d->srv) {
        /* graceful: no new clients, the open connections served on until
         * they end or the grace is over (run checks, each cycle) */
        uint64_t at = isd_now_ms() + (uint64_t)ms_of(aTHX_ grace, 0);
        if (!d->grace_at || at < d->grace_at)
            d->grace_at = at ? at : 1;
        xd_unlisten(aTHX_ d);
        xd_wake(aTHX_ d);
        XSRETURN_YES;
    }
    d->stop = 1;
    if (d->draining)            /* from a handler while destroy waits */
        d->drain_abort = 1;
    xd_wake(aTHX_ d);
    XSRETURN_YES;

void
remove(SV *self, SV *peer = NULL)
  PREINIT:
    isd_conn *c;
  PPCODE:
    xd_from(aTHX_ self, "remove");
    if (!peer || !SvOK(peer))
        XSRETURN_EMPTY;
    c = conn_from(aTHX_ peer, "remove");
    conn_wake(aTHX_ c);
    if (isd_conn_is_open(c) && peer_rv(c))
        drop_conn(aTHX_ c, 0);
    XSRETURN_YES;

void
destroy(SV *self)
  PREINIT:
    xd *d;
  PPCODE:
    d = xd_from(aTHX_ self, "destroy");
    d->stop = 1;
    xd_timers_cancel(aTHX_ d);
    /* held while it waits: a signal handler may drop the last reference */
    ENTER;
    SAVEFREESV(SvREFCNT_inc_simple_NN(SvRV(self)));
    xd_close_all(aTHX_ d, !PL_dirty);   /* no handlers in global destruction */
    if (!PL_dirty)
        xd_wake(aTHX_ d);
    LEAVE;
    XSRETURN_YES;

SV *
sockport(SV *self)
  ALIAS:
    sockhost = 1
  PREINIT:
    xd *d;
    isd_addr_any a;
    socklen_t len = sizeof a;
    char host[INET6_ADDRSTRLEN];
    int fd;
  CODE:
    d = xd_from(aTHX_ self, ix ? "sockhost" : "sockport");
    if (xd_listener_fds(d, &fd, 1) < 1) /* (the first SPEC's) */
        fd = -1;
    memset(&a, 0, sizeof a);
    if (fd < 0 || getsockname(fd, &a.sa, &len) < 0)
        XSRETURN_UNDEF;
    if (a.sa.sa_family == AF_UNIX)      /* the path; no port */
        RETVAL = ix ? newSVpv(a.un.sun_path, 0) : newSVuv(0);
    else
        RETVAL = ix ? newSVpv(isd_addr_host(&a.ip, host, sizeof host), 0)
                    : newSVuv(isd_addr_port(&a.ip));
  OUTPUT:
    RETVAL

void
_unlisten(SV *self)
  PPCODE:
    /* every listener closed, as stop(grace) does in run (a prefork
     * master, which does not run the loop, when it stops) */
    xd_unlisten(aTHX_ xd_from(aTHX_ self, "_unlisten"));
    XSRETURN_EMPTY;

void
_own_paths(SV *self)
  PPCODE:
    /* the UNIX socket files bound so far are this process's to remove
     * (a daemon, or a prefork master, forked from the one that bound) */
    xd_from(aTHX_ self, "_own_paths")->upid = getpid();
    XSRETURN_EMPTY;

void
_fd_spec(int fd)
  PREINIT:
    char err[128];
    SV *spec;
  PPCODE:
    /* an inherited descriptor: its address if it is a listening stream
     * socket we can serve; else (undef, why), with $! set */
    if (fd_listening(fd, err, sizeof err) < 0 || !(spec = fd_spec(aTHX_ fd))) {
        int e = errno;
        EXTEND(SP, 2);
        PUSHs(&PL_sv_undef);
        PUSHs(sv_2mortal(newSVpv(err, 0)));
        SETERRNO(e, 0);
        XSRETURN(2);
    }
    PUSHs(sv_2mortal(spec));
    XSRETURN(1);

void
addresses(SV *self)
  PREINIT:
    xd *d;
    int i, n, *fds;
  PPCODE:
    d = xd_from(aTHX_ self, "addresses");
    n = xd_listener_fds(d, NULL, 0);
    fds = (int *)SvPVX(sv_2mortal(newSV((STRLEN)(n + 1) * sizeof(int))));
    n = xd_listener_fds(d, fds, n);
    EXTEND(SP, n);
    for (i = 0; i < n; i++) {
        SV *spec = fd_spec(aTHX_ fds[i]);
        if (spec)
            PUSHs(sv_2mortal(spec));
    }

const char *
backend(SV *self)
  PREINIT:
    xd *d;
  CODE:
    d = xd_from(aTHX_ self, "backend");
    if (d->loop)
        RETVAL = isd_loop_backend(d->loop);
    else if (d->backend[0])
        RETVAL = d->backend;
    else {
        /* what a loop made now would use */
        isd_loop *l = isd_loop_new(NULL, NULL, 0);
        if (!l)
            XSRETURN_UNDEF;
        ST(0) = sv_2mortal(newSVpv(isd_loop_backend(l), 0));
        isd_loop_free(l);
        XSRETURN(1);
    }
  OUTPUT:
    RETVAL

SV *
_has_tls()
  CODE:
    /* OpenSSL's version if built with it, else undef */
    if (!isd_tls_available())
        XSRETURN_UNDEF;
    RETVAL = newSVpv(isd_tls_version(), 0);
  OUTPUT:
    RETVAL

SV *
_tls_check(SV *opts)
  PREINIT:
    char err[400];
    isd_tls_ctx *t;
  CODE:
    /* new: whether tls => {...} (checked) makes a context: undef, or why */
    if (!SvROK(opts) || SvTYPE(SvRV(opts)) != SVt_PVHV)
        croak("_tls_check: not a hash reference");
    t = xd_tls_make(aTHX_ (HV *)SvRV(opts), err, sizeof err);
    if (t) {
        isd_tls_ctx_unref(t);
        XSRETURN_UNDEF;
    }
    RETVAL = newSVpv(err, 0);
  OUTPUT:
    RETVAL

void
tls_reload(SV *self)
  PREINIT:
    xd *d;
  PPCODE:
    d = xd_from(aTHX_ self, "tls_reload");
    if (!hv_exists(d->self, "_tls", 4))
        croak("%s::tls_reload: this server has no tls => {...}", PKG);
    if (xd_tls_reload(aTHX_ d))
        XSRETURN_NO;
    XSRETURN_YES;

SV *
_cidr(SV *spec)
  PREINIT:
    isd_cidr c;
    char host[INET6_ADDRSTRLEN];
  CODE:
    /* trusted_proxies: SPEC as its block ("10.0.0.0/8"), or undef */
    if (!SvOK(spec) || SvROK(spec) || isd_cidr_parse(SvPV_nolen(spec), &c) < 0
        || !inet_ntop(c.family, c.addr, host, sizeof host))
        XSRETURN_UNDEF;
    RETVAL = newSVpvf("%s/%u", host, c.bits);
  OUTPUT:
    RETVAL

void
backends(...)
  PREINIT:
    const char *p, *q;
  PPCODE:
    for (p = isd_backends(); *p; p = *q ? q + 1 : q) {
        q = strchr(p, ' ');
        if (!q)
            q = p + strlen(p);
        XPUSHs(sv_2mortal(newSVpvn(p, (STRLEN)(q - p))));
    }

void
_forget_callbacks(SV *self)
  PPCODE:
    cb_forget(aTHX_ xd_from(aTHX_ self, "callback"));
    XSRETURN_EMPTY;

SV *
_timer(SV *self, NV after, NV every, SV *cb)
  PREINIT:
    xd *d;
    xtimer *xt;
    SV *obj;
  CODE:
    /* (arguments checked by the Perl wrapper, timer) */
    d = xd_from(aTHX_ self, "timer");
    if (xd_loop(aTHX_ d) < 0)
        croak("%s::timer: %s", PKG, d->err);
    obj = newSV(0);
    sv_upgrade(obj, SVt_PVMG);
    Newxz(xt, 1, xtimer);
    sv_magicext(obj, NULL, PERL_MAGIC_ext, &xt_vtbl, (char *)xt, 0);
    RETVAL = sv_bless(newRV_noinc(obj), gv_stashpv(TIMER_PKG, GV_ADD));
    xt->obj = obj;
    xt->cb = newSVsv(cb);
    xt->every_ms = timer_ms(every);
    if (every > 0 && !xt->every_ms)
        xt->every_ms = 1;
    isd_timer_init(&xt->t, xt_fire, xt);
    if (isd_timer_start(d->loop, &xt->t, timer_ms(after)) < 0)
        croak("%s::timer: out of memory", PKG);
    xt->d = d;                      /* active: the daemon holds it */
    SvREFCNT_inc_simple_void_NN(obj);
    xt->next = d->timers;
    if (d->timers)
        d->timers->prev = xt;
    d->timers = xt;
    xd_wake(aTHX_ d);               /* (a host loop's timer: re-armed) */
  OUTPUT:
    RETVAL

void
broadcast(SV *self, SV *bytes, ...)
  PREINIT:
    xd *d;
    isd_conn **ex = NULL;
    size_t nex = 0, got = 0;
    STRLEN n, i;
    const char *p;
    int k;
  PPCODE:
    d = xd_from(aTHX_ self, "broadcast");
    p = SvPV(bytes, n);         /* (magic and overloading: once, first) */
    if (items > 2) {
        Newx(ex, items - 2, isd_conn *);
        SAVEFREEPV(ex);
        for (k = 2; k < items; k++) {
            MAGIC *mg;
            if (!SvOK(ST(k)))
                continue;
            mg = conn_mg(aTHX_ ST(k));
            if (!mg || !mg->mg_ptr)
                croak("%s::broadcast: '%" SVf "' is not a connection to leave "
                      "out", PKG, SVfARG(ST(k)));
            ex[nex++] = (isd_conn *)mg->mg_ptr;
        }
    }
    if (!d->srv || !n)
        XSRETURN_UV(0);
    xd_wake(aTHX_ d);           /* (from the host loop: flushed soon) */
    for (i = 0; i < n && !(p[i] & 0x80); i++)
        ;
    if (i == n) {               /* ASCII: the same bytes for every peer */
        got = isd_server_broadcast(d->srv, p, n, ex, nex, 0, 0);
    } else {
        /* as print would send it: bytes to raw peers, UTF-8 to :utf8 ones */
        SV *raw = sv_2mortal(newSVpvn(p, n)), *u8 = sv_2mortal(newSVpvn(p, n));
        STRLEN rn, un;
        const char *rp, *up;
        size_t nraw;
        int wide = 0;
        if (SvUTF8(bytes)) {
            SvUTF8_on(raw);
            if (!sv_utf8_downgrade(raw, TRUE)) {
                wide = 1;               /* raw peers get the UTF-8 */
                SvUTF8_off(raw);
            }
        } else {
            sv_utf8_upgrade(u8);
        }
        rp = SvPV(raw, rn);
        up = SvPV(u8, un);
        nraw = isd_server_broadcast(d->srv, rp, rn, ex, nex, UF_UTF8, 0);
        if (wide && nraw)       /* as print warns: only if a raw peer got it */
            Perl_ck_warner_d(aTHX_ packWARN(WARN_UTF8),
                             "Wide character in broadcast");
        got = nraw
            + isd_server_broadcast(d->srv, up, un, ex, nex, UF_UTF8, UF_UTF8);
    }
    XSRETURN_UV((UV)got);

SV *
stats(SV *self)
  PREINIT:
    xd *d;
    HV *hv;
    isd_server_stats st;
    isd_udp_stats us;
    int i;
  CODE:
    d = xd_from(aTHX_ self, "stats");
    Zero(&st, 1, isd_server_stats);
    if (d->srv)
        isd_server_stats_get(d->srv, &st);
    /* UDP: datagrams are messages */
    us = d->udp_st;
    for (i = 0; i < d->nudps; i++)
        udp_stats_add(&us, d->udps[i]);
    st.messages_in += us.datagrams_in;
    st.bytes_in += us.bytes_in;
    st.bytes_out += us.bytes_out;
    hv = newHV();
    (void)hv_stores(hv, "connections", newSVuv(d->srv ? (UV)isd_server_nconns(d->srv) : 0));
    (void)hv_stores(hv, "accepted", newSVuv((UV)st.accepted));
    (void)hv_stores(hv, "refused", newSVuv(d->refused));
    (void)hv_stores(hv, "rejected", newSVuv((UV)st.rejected));
    (void)hv_stores(hv, "closed", newSVuv((UV)st.closed));
    (void)hv_stores(hv, "bytes_in", newSVuv((UV)st.bytes_in));
    (void)hv_stores(hv, "bytes_out", newSVuv((UV)st.bytes_out));
    (void)hv_stores(hv, "messages_in", newSVuv((UV)st.messages_in));
    (void)hv_stores(hv, "errors", newSVuv(d->errors));
    (void)hv_stores(hv, "started", d->started ? newSViv(d->started) : newSV(0));
    (void)hv_stores(hv, "datagrams_in", newSVuv((UV)us.datagrams_in));
    (void)hv_stores(hv, "datagrams_out", newSVuv((UV)us.datagrams_out));
    (void)hv_stores(hv, "datagrams_dropped",
                    newSVuv((UV)(us.dropped_in + us.dropped_out)));
    RETVAL = newRV_noinc((SV *)hv);
  OUTPUT:
    RETVAL

void
max_connections(SV *self, SV *n = NULL)
  PREINIT:
    xd *d;
  PPCODE:
    d = xd_from(aTHX_ self, "max_connections");
    if (n) {
        SvGETMAGIC(n);
        if (!SvOK(n) || !looks_like_number(n) || SvNV(n) < 0
            || SvNV(n) != (NV)(UV)SvNV(n))
            croak("%s::max_connections: '%" SVf "' is not a number of "
                  "connections (0: no limit)", PKG,
                  SVfARG(SvOK(n) ? n : sv_2mortal(newSVpvs("undef"))));
        d->cfg.max_conns = (size_t)SvUV(n);
        if (d->srv)
            isd_server_set_max_conns(d->srv, d->cfg.max_conns);
        xd_wake(aTHX_ d);
    }
    XSRETURN_UV((UV)d->cfg.max_conns);

SV *
_connections(SV *self)
  PREINIT:
    xd *d;
    AV *av;
    isd_conn *c;
  CODE:
    d = xd_from(aTHX_ self, "connections");
    av = newAV();
    if (d->srv)
        for (c = isd_server_next_conn(d->srv, NULL); c;
             c = isd_server_next_conn(d->srv, c))
            if (peer_rv(c))
                av_push(av, newSVsv(peer_rv(c)));
    RETVAL = newRV_noinc((SV *)av);
  OUTPUT:
    RETVAL
