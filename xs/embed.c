/*
 * embed.c - the server inside another event loop (EV, AnyEvent, IO::Async,
 * Mojo::IOLoop, POE: lib/IO/Socket/INET/Daemon/Embed/): one cycle of run
 * at a time ($server->run_once), the descriptor the host loop watches
 * ($server->fd) and the next deadline ($server->next_timeout).  Part of
 * Daemon.xs (#included there, as listen.c is).
 */

/* The glue of a host loop ($self->{_embed}, see attach) is told that the
 * server needs a step soon: after stop, destroy or a new timer made
 * outside a step, which the timer it armed after the last step does not
 * know of.  $@ is left as it was. */
static void xd_wake(pTHX_ xd *d)
{
    SV **ep;

    if (d->running || !d->embedded || !d->self
        || !(ep = hv_fetchs(d->self, "_embed", 0)) || !SvROK(*ep))
        return;
    {
        dSP;
        ENTER;
        SAVETMPS;
        save_scalar(PL_errgv);
        PUSHMARK(SP);
        XPUSHs(*ep);
        PUTBACK;
        call_method("wake", G_DISCARD | G_EVAL);
        FREETMPS;
        LEAVE;
    }
}

/* The same for a change to c made from the host loop's code (resume,
 * idle_timeout, close, a framing that may find buffered messages): the
 * server's next step must come soon, whatever the descriptor says. */
static void conn_wake(pTHX_ isd_conn *c)
{
    xd *d = conn_xd(c);

    if (d && d->embedded && !d->running)
        xd_wake(aTHX_ d);
}

/* One cycle of run: tick, then what is ready (waiting up to timeout ms:
 * 0 not at all, -1 as long as it takes), the timers that are due, output
 * flushed.  1: the server serves on; 0: it was stopped (stop, destroy, the
 * end of a graceful stop) during the step or since the last one; -1: it
 * cannot listen (d->err). */
static int xd_step(pTHX_ xd *d, SV *self, int timeout)
{
    int n, sigs, alive;
    sigset_t old;
    SV *cb;

    if (d->stop || !d->self) {
        d->stop = 0;
        d->grace_at = 0;
        return 0;
    }
    if (xd_listen(aTHX_ d) < 0 || xd_start(aTHX_ d) < 0)
        return -1;
    d->embedded = 1;
    /* as run: undone by LEAVE, the daemon held, let go of last */
    ENTER;
    SAVEFREESV(SvREFCNT_inc_simple_NN(SvRV(self)));
    SAVEINT(d->running);
    SAVEVPTR(d->self_rv);
    d->running = 1;
    d->self_rv = newSVsv(self);
    SAVEFREESV(d->self_rv);
    SAVETMPS;
    cb_forget(aTHX_ d);     /* (the host may have changed them: see run) */
    if ((cb = CB(d, tick)))
        call_cb(aTHX_ d, cb, "tick", NULL, NULL);
    if (!d->stop && d->srv && !(d->grace_at && xd_grace_over(aTHX_ d))) {
        if (isd_loop_prepare(d->loop) || d->stop)
            timeout = 0;
        sigs = timeout != 0 && d->srv && perl_handles_signals(aTHX);
        if (!d->srv || d->stop) {
            ;
        } else if (sigs && block_signals(aTHX_ &old)) {
            PERL_ASYNC_CHECK();         /* (a signal came: no wait) */
        } else {
            n = isd_loop_run_once(d->loop, timeout, sigs ? &old : NULL);
            if (n < 0 && errno != EINTR) {
                int e = errno;
                report(aTHX_ d, NULL, sv_2mortal(newSVpvf("%s wait: %s",
                       isd_loop_backend(d->loop), strerror(e))));
                SETERRNO(e, 0);
            }
        }
        /* the last connection of a graceful stop may have gone now */
        if (d->grace_at && !d->stop && d->srv)
            (void)xd_grace_over(aTHX_ d);
    }
    alive = !d->stop && d->srv;
    if (!alive) {
        d->stop = 0;
        d->grace_at = 0;
    }
    xd_reap(d);
    FREETMPS;
    LEAVE;              /* d may be gone after this */
    PERL_ASYNC_CHECK();
    return alive;
}

/* Seconds until the server must run a step for a deadline of its own
 * (timers, idle timeouts, PROXY headers, lingering closes, a graceful
 * stop's end, tick every `timeout`): 0 now, -1 none. */
static NV xd_next_timeout(pTHX_ xd *d)
{
    int ms;
    SV *t;

    if (d->stop || (d->srv && isd_server_busy(d->srv)))
        return 0;
    /* (timers exist once the loop does, listening or not) */
    ms = d->loop ? isd_loop_next_timer(d->loop) : -1;
    if ((t = timeout_sv(aTHX_ d))) {
        int tm = ms_of(aTHX_ t, -1);
        if (tm >= 0 && (ms < 0 || tm < ms))
            ms = tm;
    }
    if (d->grace_at) {
        uint64_t now = isd_now_ms();
        int left = d->grace_at > now ? (int)(d->grace_at - now) : 0;
        if (ms < 0 || left < ms)
            ms = left;
    }
    return ms < 0 ? -1 : ms / 1000.0;
}
