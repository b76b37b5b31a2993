/*
 * proxy.c - the PROXY protocol as Perl sees it: the options of the
 * listeners that take a header (proxy_protocol, trusted_proxies,
 * proxy_timeout), made once from what new checked, and a connection's
 * header as the hash $io->proxy returns.  Part of Daemon.xs (#included
 * there, as listen.c is); the header itself is parsed in the core
 * (c_src/proxy.c, proxyconn.c).
 */

static void xd_proxy_free(xd *d)
{
    while (d->npopts > 0) {
        isd_proxy_opts *o = d->popts[--d->npopts];
        Safefree(o->trusted);
        Safefree(o);
    }
    Safefree(d->popts);
    d->popts = NULL;
}

/* The PROXY options of $self->{_proxy}[idx] ([timeout in ms, [address or
 * CIDR block, ...]], checked by new), made on first use: NULL for idx < 0
 * (none asked), or NULL with d->err if they do not parse. */
static isd_proxy_opts *xd_proxy_opts(pTHX_ xd *d, IV idx)
{
    if (idx < 0)
        return NULL;
    if (!d->popts) {
        SV **pp = hv_fetchs(d->self, "_proxy", 0);
        AV *pa = pp && SvROK(*pp) && SvTYPE(SvRV(*pp)) == SVt_PVAV
               ? (AV *)SvRV(*pp) : NULL;
        SSize_t i, n = pa ? av_len(pa) + 1 : 0;

        Newxz(d->popts, n ? n : 1, isd_proxy_opts *);
        for (i = 0; i < n; i++) {
            SV **ep = av_fetch(pa, i, 0);
            AV *e = ep && SvROK(*ep) && SvTYPE(SvRV(*ep)) == SVt_PVAV
                  ? (AV *)SvRV(*ep) : NULL;
            SV **tp = e ? av_fetch(e, 1, 0) : NULL;
            AV *t = tp && SvROK(*tp) && SvTYPE(SvRV(*tp)) == SVt_PVAV
                  ? (AV *)SvRV(*tp) : NULL;
            SSize_t j, nt = t ? av_len(t) + 1 : 0;
            isd_proxy_opts *o;
            isd_cidr *tr;

            Newxz(o, 1, isd_proxy_opts);
            d->popts[d->npopts++] = o;
            o->timeout_ms = e ? (unsigned)av_iv(aTHX_ e, 0, 3000) : 3000;
            Newxz(tr, nt ? nt : 1, isd_cidr);
            o->trusted = tr;
            for (j = 0; j < nt; j++) {
                SV **cp = av_fetch(t, j, 0);
                const char *cs = cp && SvOK(*cp) ? SvPV_nolen(*cp) : "";
                if (isd_cidr_parse(cs, &tr[j]) < 0) {
                    snprintf(d->err, sizeof d->err, "trusted_proxies: '%s' "
                             "is not an address or CIDR block", cs);
                    xd_proxy_free(d);
                    errno = EINVAL;
                    return NULL;
                }
            }
            o->ntrusted = (size_t)nt;
        }
    }
    if (idx >= d->npopts) {
        snprintf(d->err, sizeof d->err, "listen: no PROXY options %d",
                 (int)idx);
        errno = EINVAL;
        return NULL;
    }
    return d->popts[idx];
}

static void lfds_close(xd *d)
{
    while (d->nlfds > 0)
        close(d->lfds[--d->nlfds]);
}

/* The UNIX socket files this daemon made go (but a forked copy leaves
 * them to the process that made them). */
static void upaths_remove(xd *d, int unlink_them)
{
    int i;

    for (i = 0; i < d->nupaths; i++) {
        if (unlink_them && d->upid == getpid())
            unlink(d->upaths[i]);
        Safefree(d->upaths[i]);
    }
    Safefree(d->upaths);
    d->upaths = NULL;
    d->nupaths = 0;
}



/* {host => ..., port => ...} of an IP address (an IPv4-mapped one as IPv4) */
static SV *proxy_addr_sv(pTHX_ const isd_addr *a)
{
    char host[INET6_ADDRSTRLEN];
    isd_addr u = *a;
    HV *hv = newHV();

    isd_addr_unmap(&u);
    (void)hv_stores(hv, "host", newSVpv(isd_addr_host(&u, host, sizeof host), 0));
    (void)hv_stores(hv, "port", newSVuv(isd_addr_port(&u)));
    return newRV_noinc((SV *)hv);
}

/* A UNIX address field of a header: its bytes before the first NUL, or an
 * abstract name (it starts with NUL): that NUL and the bytes to the next. */
static SV *proxy_path_sv(pTHX_ const char *p, size_t len)
{
    HV *hv = newHV();

    if (p && len == 0 && p[0] == '\0') {
        const char *e = memchr(p + 1, '\0', 107);
        len = e ? (size_t)(e - p) : 108;
    }
    (void)hv_stores(hv, "path", newSVpvn(p ? p : "", p ? len : 0));
    return newRV_noinc((SV *)hv);
}

/* The hash $io->proxy returns (see the POD). */
static SV *proxy_hv(pTHX_ const isd_proxy_info *pi)
{
    const isd_proxy *h = &pi->hdr;
    HV *hv = newHV(), *tlv = NULL, *ssl = NULL;
    size_t pos = 0, len;
    unsigned type;
    const char *v;

    (void)hv_stores(hv, "version", newSViv(h->version));
    (void)hv_stores(hv, "command", newSVpv(h->command == ISD_PROXY_PROXY
                                           ? "PROXY"
                                           : h->flags & ISD_PROXY_F_UNKNOWN
                                           ? "UNKNOWN" : "LOCAL", 0));
    (void)hv_stores(hv, "family", newSVpv(h->family == AF_INET ? "INET"
                                          : h->family == AF_INET6 ? "INET6"
                                          : h->family == AF_UNIX ? "UNIX"
                                          : "UNSPEC", 0));
    (void)hv_stores(hv, "transport", newSVpv(h->transport == SOCK_STREAM
                                             ? "STREAM"
                                             : h->transport == SOCK_DGRAM
                                             ? "DGRAM" : "UNSPEC", 0));
    (void)hv_stores(hv, "length", newSVuv((UV)pi->len));
    (void)hv_stores(hv, "via", proxy_addr_sv(aTHX_ &pi->via_peer));
    if (h->flags & ISD_PROXY_F_ADDRS) {
        if (h->family == AF_UNIX) {
            (void)hv_stores(hv, "source", proxy_path_sv(aTHX_ h->src_path,
                                                        h->src_pathlen));
            (void)hv_stores(hv, "dest", proxy_path_sv(aTHX_ h->dst_path,
                                                      h->dst_pathlen));
        } else {
            (void)hv_stores(hv, "source", proxy_addr_sv(aTHX_ &h->src));
            (void)hv_stores(hv, "dest", proxy_addr_sv(aTHX_ &h->dst));
        }
    }
    if (h->flags & ISD_PROXY_F_CRC32C)
        (void)hv_stores(hv, "crc32c", newSViv(1));
    while (isd_proxy_tlv_next(h, &pos, &type, &v, &len)) {
        const char *name = type == ISD_PP2_ALPN ? "alpn"
                         : type == ISD_PP2_AUTHORITY ? "authority"
                         : type == ISD_PP2_UNIQUE_ID ? "unique_id"
                         : type == ISD_PP2_NETNS ? "netns" : NULL;
        if (type == ISD_PP2_CRC32C || type == ISD_PP2_NOOP
            || type == ISD_PP2_SSL)
            continue;                   /* (crc32c, nothing, ssl below) */
        if (name) {
            (void)hv_store(hv, name, (I32)strlen(name), newSVpvn(v, len), 0);
            continue;
        }
        if (!tlv)
            tlv = newHV();
        {
            char k[8];
            int kl = snprintf(k, sizeof k, "%u", type);
            (void)hv_store(tlv, k, kl, newSVpvn(v, len), 0);
        }
    }
    if (tlv)
        (void)hv_stores(hv, "tlv", newRV_noinc((SV *)tlv));
    if (h->flags & ISD_PROXY_F_SSL) {
        ssl = newHV();
        (void)hv_stores(ssl, "client", newSVuv(h->ssl_client));
        (void)hv_stores(ssl, "verify", newSVuv(h->ssl_verify));
        pos = 0;
        while (isd_proxy_ssl_next(h, &pos, &type, &v, &len)) {
            const char *name = type == ISD_PP2_SSL_VERSION ? "version"
                             : type == ISD_PP2_SSL_CN ? "cn"
                             : type == ISD_PP2_SSL_CIPHER ? "cipher"
                             : type == ISD_PP2_SSL_SIG_ALG ? "sig_alg"
                             : type == ISD_PP2_SSL_KEY_ALG ? "key_alg" : NULL;
            if (name)
                (void)hv_store(ssl, name, (I32)strlen(name), newSVpvn(v, len), 0);
        }
        (void)hv_stores(hv, "ssl", newRV_noinc((SV *)ssl));
    }
    return newRV_noinc((SV *)hv);
}
