/*
 * timer.c - $server->timer: the C state of a timer object (ext magic on
 * it), its firing into Perl, and the daemon's list of active ones (kept
 * across a fork, cancelled by destroy).  Part of Daemon.xs (#included
 * there, as listen.c is).
 */

/* ----------------------------------------------------------------- timers */

/* A timer of $server->timer: the C state lives in its object (ext magic,
 * freed with it); while active the daemon holds a count on the object,
 * so a dropped handle keeps firing until cancelled. */
struct xtimer {
    isd_timer   t;
    xd         *d;             /* NULL once inactive */
    SV         *obj;           /* the object (the blessed inner SV) */
    SV         *cb;            /* counted */
    uint64_t    every_ms;      /* 0: one-shot */
    xtimer     *next, *prev;   /* d->timers */
};

#define TIMER_PKG PKG "::Timer"

static int xt_mg_free(pTHX_ SV *sv, MAGIC *mg);
static MGVTBL xt_vtbl = { NULL, NULL, NULL, NULL, xt_mg_free, NULL, NULL, NULL };

static int xt_mg_free(pTHX_ SV *sv, MAGIC *mg)
{
    xtimer *xt = (xtimer *)mg->mg_ptr;

    PERL_UNUSED_ARG(sv);
    if (!xt)
        return 0;
    /* inactive by now: an active one is held by its daemon */
    if (!PL_dirty)
        SvREFCNT_dec(xt->cb);
    Safefree(xt);
    mg->mg_ptr = NULL;
    return 0;
}

/* The timer stops and the daemon lets go of its object (which may free
 * xt: nothing touches it after). */
static void xt_stop(pTHX_ xtimer *xt)
{
    xd *d = xt->d;

    if (!d)
        return;
    if (d->loop)
        isd_timer_stop(d->loop, &xt->t);
    if (xt->prev)
        xt->prev->next = xt->next;
    else
        d->timers = xt->next;
    if (xt->next)
        xt->next->prev = xt->prev;
    xt->next = xt->prev = NULL;
    xt->d = NULL;
    SvREFCNT_dec(xt->obj);
}

static void xt_fire(isd_loop *l, isd_timer *t)
{
    xtimer *xt = t->data;
    xd *d = xt->d;
    dXD_THX(d);
    SV *obj = SvREFCNT_inc_simple_NN(xt->obj);   /* through the call */

    if (xt->every_ms)       /* before the call: cb may cancel */
        isd_timer_repeat(l, &xt->t, xt->every_ms);
    else
        xt_stop(aTHX_ xt);
    if (d->self_rv) {
        dSP;
        int n;
        ENTER;
        SAVETMPS;
        PUSHMARK(SP);
        EXTEND(SP, 2);
        PUSHs(d->self_rv);
        PUSHs(sv_2mortal(newRV_inc(obj)));
        PUTBACK;
        n = call_sv(xt->cb, G_DISCARD | G_EVAL);
        PERL_UNUSED_VAR(n);
        if (died(aTHX))
            report_died(aTHX_ d, "timer", NULL);
        FREETMPS;
        LEAVE;
    }
    SvREFCNT_dec(obj);
}

static void xd_timers_rearm(xd *d)
{
    uint64_t now = isd_now_ms();
    xtimer *xt;

    for (xt = d->timers; xt; xt = xt->next)
        isd_timer_start(d->loop, &xt->t, xt->t.at > now ? xt->t.at - now : 0);
}

/* destroy, or the daemon goes: every timer stops. */
static void xd_timers_cancel(pTHX_ xd *d)
{
    while (d->timers)
        xt_stop(aTHX_ d->timers);
}

/* Seconds to milliseconds, rounded up, without ms_of's cap (a timer a
 * year away is a timer a year away). */
static uint64_t timer_ms(NV secs)
{
    if (!(secs > 0))
        return 0;
    if (secs > 1e15)
        return (uint64_t)1e18;
    return (uint64_t)(secs * 1000.0 + 0.999);
}

static xtimer *xt_from(pTHX_ SV *sv, const char *method)
{
    MAGIC *mg;

    if (SvROK(sv) && (mg = find_mg(SvRV(sv), &xt_vtbl)) && mg->mg_ptr)
        return (xtimer *)mg->mg_ptr;
    croak("%s::%s: not called on an %s object", TIMER_PKG, method, TIMER_PKG);
    return NULL; /* not reached */
}
