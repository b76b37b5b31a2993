/*
 * tls.c - TLS as Perl sees it: the contexts of the listeners that serve
 * TLS (tls => {...} in new or a listen entry, checked by new into
 * $self->{_tls}), made when first bound and remade by tls_reload, and a
 * connection's TLS as the hash $io->tls returns.  Part of Daemon.xs
 * (#included there, as proxy.c is); the TLS itself is the core's
 * (c_src/tls.c, through the core's transport hook).
 */

/* One listener's TLS ($self->{_tls}[i]): the context its next connection
 * starts with (the transport's arg points at it: a reload replaces it),
 * and the transport (the listener's copy is made from it). */
struct xtls {
    isd_tls_ctx  *ctx;          /* first: the transport's arg is &ctx */
    isd_transport tp;
    int           starttls;     /* plain until $io->start_tls */
};

static void xd_tls_free(xd *d)
{
    while (d->ntls > 0) {
        xtls *t = d->tls[--d->ntls];
        isd_tls_ctx_unref(t->ctx);
        Safefree(t);
    }
    Safefree(d->tls);
    d->tls = NULL;
}

static const char *hv_str(pTHX_ HV *o, const char *k)
{
    SV **sp = hv_fetch(o, k, (I32)strlen(k), 0);

    return sp && SvOK(*sp) && !SvROK(*sp) ? SvPV_nolen(*sp) : NULL;
}

/* A context of the options new checked ({cert_file, key_file, ca_file,
 * ca_path, verify (0-2), ciphers, ciphersuites, min_version (0x0303),
 * alpn [...], sni {host => {cert_file, key_file}}}), or NULL with err
 * saying why (OpenSSL's reason, naming the option and the file). */
static isd_tls_ctx *xd_tls_make(pTHX_ HV *o, char *err, size_t errlen)
{
    isd_tls_opts opts;
    SV **sp;
    AV *alpn = NULL;
    HV *sni = NULL;
    const char **names = NULL;
    isd_tls_sni *snis = NULL;
    isd_tls_ctx *t;
    SSize_t i, n;

    memset(&opts, 0, sizeof opts);
    opts.cert_file = hv_str(aTHX_ o, "cert_file");
    opts.key_file = hv_str(aTHX_ o, "key_file");
    opts.ca_file = hv_str(aTHX_ o, "ca_file");
    opts.ca_path = hv_str(aTHX_ o, "ca_path");
    opts.ciphers = hv_str(aTHX_ o, "ciphers");
    opts.ciphersuites = hv_str(aTHX_ o, "ciphersuites");
    sp = hv_fetchs(o, "verify", 0);
    opts.verify = sp && SvOK(*sp) ? (int)SvIV(*sp) : ISD_TLS_VERIFY_NONE;
    sp = hv_fetchs(o, "min_version", 0);
    opts.min_version = sp && SvOK(*sp) ? (int)SvIV(*sp) : 0;
    sp = hv_fetchs(o, "alpn", 0);
    if (sp && SvROK(*sp) && SvTYPE(SvRV(*sp)) == SVt_PVAV)
        alpn = (AV *)SvRV(*sp);
    if (alpn && (n = av_len(alpn) + 1) > 0) {
        Newxz(names, n + 1, const char *);
        SAVEFREEPV(names);
        for (i = 0; i < n; i++) {
            SV **e = av_fetch(alpn, i, 0);
            names[i] = e && SvOK(*e) ? SvPV_nolen(*e) : "";
        }
        opts.alpn = names;
    }
    sp = hv_fetchs(o, "sni", 0);
    if (sp && SvROK(*sp) && SvTYPE(SvRV(*sp)) == SVt_PVHV)
        sni = (HV *)SvRV(*sp);
    if (sni && (n = (SSize_t)HvUSEDKEYS(sni)) > 0) {
        HE *he;
        Newxz(snis, n, isd_tls_sni);
        SAVEFREEPV(snis);
        i = 0;
        hv_iterinit(sni);
        while ((he = hv_iternext(sni)) && i < n) {
            SV *v = HeVAL(he);
            HV *h = SvROK(v) && SvTYPE(SvRV(v)) == SVt_PVHV ? (HV *)SvRV(v)
                                                            : NULL;
            snis[i].host = HePV(he, PL_na);
            snis[i].cert_file = h ? hv_str(aTHX_ h, "cert_file") : NULL;
            snis[i].key_file = h ? hv_str(aTHX_ h, "key_file") : NULL;
            i++;
        }
        opts.sni = snis;
        opts.nsni = (size_t)i;
    }
    t = isd_tls_ctx_new(&opts, err, errlen);
    return t;
}

/* The TLS of $self->{_tls}[idx], all of them made on first use: NULL for
 * idx < 0 (none asked), or NULL with d->err if one cannot be made. */
static xtls *xd_tls(pTHX_ xd *d, IV idx)
{
    if (idx < 0)
        return NULL;
    if (!d->tls) {
        SV **pp = hv_fetchs(d->self, "_tls", 0);
        AV *pa = pp && SvROK(*pp) && SvTYPE(SvRV(*pp)) == SVt_PVAV
               ? (AV *)SvRV(*pp) : NULL;
        SSize_t i, n = pa ? av_len(pa) + 1 : 0;

        Newxz(d->tls, n ? n : 1, xtls *);
        for (i = 0; i < n; i++) {
            SV **ep = av_fetch(pa, i, 0);
            HV *o = ep && SvROK(*ep) && SvTYPE(SvRV(*ep)) == SVt_PVHV
                  ? (HV *)SvRV(*ep) : NULL;
            SV **sp;
            xtls *t;
            char err[sizeof d->err - 16];

            Newxz(t, 1, xtls);
            d->tls[d->ntls++] = t;
            if (!o || !(t->ctx = xd_tls_make(aTHX_ o, err, sizeof err))) {
                snprintf(d->err, sizeof d->err, "tls: %s", o ? err : "?");
                xd_tls_free(d);
                errno = EINVAL;
                return NULL;
            }
            sp = hv_fetchs(o, "timeout_ms", 0);
            isd_tls_transport_init(&t->tp, sp && SvOK(*sp) ? (unsigned)SvUV(*sp)
                                                           : 10000);
            sp = hv_fetchs(o, "starttls", 0);
            t->starttls = sp && SvTRUE(*sp);
            t->tp.deferred = t->starttls;
        }
    }
    if (idx >= d->ntls) {
        snprintf(d->err, sizeof d->err, "listen: no TLS options %d", (int)idx);
        errno = EINVAL;
        return NULL;
    }
    return d->tls[idx];
}

/* tls_reload: every listener's context made anew from its files; one that
 * fails keeps the old and is reported.  The number that failed. */
static int xd_tls_reload(pTHX_ xd *d)
{
    SV **pp = hv_fetchs(d->self, "_tls", 0);
    AV *pa = pp && SvROK(*pp) && SvTYPE(SvRV(*pp)) == SVt_PVAV
           ? (AV *)SvRV(*pp) : NULL;
    int i, bad = 0;

    if (!d->tls)                        /* not bound yet: made then */
        return 0;
    for (i = 0; i < d->ntls && pa; i++) {
        SV **ep = av_fetch(pa, i, 0);
        HV *o = ep && SvROK(*ep) && SvTYPE(SvRV(*ep)) == SVt_PVHV
              ? (HV *)SvRV(*ep) : NULL;
        char err[400];
        isd_tls_ctx *t = o ? xd_tls_make(aTHX_ o, err, sizeof err) : NULL;

        if (!t) {
            bad++;
            report(aTHX_ d, NULL, sv_2mortal(newSVpvf(
                "tls_reload: %s (the certificate in use is kept)",
                o ? err : "no options")));
            continue;
        }
        isd_tls_ctx_unref(d->tls[i]->ctx);  /* (open connections: theirs) */
        d->tls[i]->ctx = t;
    }
    return bad;
}

/* $io->tls: what the handshake agreed. */
static SV *tls_hv(pTHX_ const isd_tls_conn *tc)
{
    HV *hv = newHV();
    isd_tls_info in;
    char buf[512];

    isd_tls_info_get(tc, &in);
    (void)hv_stores(hv, "version", newSVpv(in.version ? in.version : "", 0));
    (void)hv_stores(hv, "cipher", newSVpv(in.cipher ? in.cipher : "", 0));
    (void)hv_stores(hv, "sni", in.sni ? newSVpv(in.sni, 0) : newSV(0));
    (void)hv_stores(hv, "alpn", in.alpn ? newSVpvn(in.alpn, in.alpnlen)
                                        : newSV(0));
    if (in.peer_verified) {
        (void)hv_stores(hv, "peer_subject",
                        newSVpv(isd_tls_peer_subject(tc, buf, sizeof buf), 0));
        (void)hv_stores(hv, "peer_issuer",
                        newSVpv(isd_tls_peer_issuer(tc, buf, sizeof buf), 0));
    }
    return newRV_noinc((SV *)hv);
}
