/*
 * listen.c - where a daemon listens: binding what listen => [...] (or host
 * and port) asks for, all of it or nothing, adopting inherited sockets,
 * and the addresses in SPEC form.  Part of Daemon.xs (#included there,
 * as EV.xs includes libev: it uses the daemon's static helpers).
 */

/* Any local address of ours: IP (isd_addr) or a UNIX path. */
typedef union isd_addr_any {
    struct sockaddr    sa;
    isd_addr           ip;
    struct sockaddr_un un;
} isd_addr_any;

/* "host:port", "[v6]:port" or "unix:/path" of a listening fd. */
static SV *fd_spec(pTHX_ int fd)
{
    isd_addr_any a;
    socklen_t len = sizeof a;
    char host[INET6_ADDRSTRLEN];

    memset(&a, 0, sizeof a);
    if (fd < 0 || getsockname(fd, &a.sa, &len) < 0)
        return NULL;
    {
        int type = 0;
        socklen_t tl = sizeof type;
        const char *pre = getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) == 0
                          && type == SOCK_DGRAM ? "udp:" : "";
        if (a.sa.sa_family == AF_UNIX)
            return newSVpvf("%sunix:%s", pre, a.un.sun_path);
        isd_addr_host(&a.ip, host, sizeof host);
        return newSVpvf(a.sa.sa_family == AF_INET6 ? "%s[%s]:%u" : "%s%s:%u",
                        pre, host, isd_addr_port(&a.ip));
    }
}

/* Whether fd is a socket we can serve: a listening stream socket (IPv4,
 * IPv6, UNIX: 0) or a UDP socket (IPv4, IPv6: 1); or -1 with errno and
 * err saying why not. */
static int fd_listening(int fd, char *err, size_t errlen)
{
    isd_addr_any a;
    socklen_t len = sizeof a;
    int type = 0, acc = 1;
    socklen_t tl = sizeof type;

    memset(&a, 0, sizeof a);
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) < 0
        || getsockname(fd, &a.sa, &len) < 0) {
        int e = errno;
        snprintf(err, errlen, "fd %d: %s", fd,
                 e == ENOTSOCK ? "not a socket" : strerror(e));
        errno = e;
        return -1;
    }
    if (a.sa.sa_family != AF_INET && a.sa.sa_family != AF_INET6
        && a.sa.sa_family != AF_UNIX) {
        snprintf(err, errlen, "fd %d: not an IPv4, IPv6 or UNIX socket", fd);
        errno = EAFNOSUPPORT;
        return -1;
    }
    if (type == SOCK_DGRAM && a.sa.sa_family != AF_UNIX) {
#ifdef SO_PROTOCOL
        int proto = IPPROTO_UDP;
        tl = sizeof proto;
        if (getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &tl) == 0
            && proto != IPPROTO_UDP) {
            snprintf(err, errlen, "fd %d: a datagram socket, but not UDP", fd);
            errno = EPROTOTYPE;
            return -1;
        }
#endif
        if (isd_addr_port(&a.ip) == 0) {
            snprintf(err, errlen, "fd %d: a UDP socket with no port", fd);
            errno = EINVAL;
            return -1;
        }
        return 1;
    }
    if (type != SOCK_STREAM) {
        snprintf(err, errlen, "fd %d: not a stream (TCP) or UDP socket", fd);
        errno = EPROTOTYPE;
        return -1;
    }
#ifdef SO_ACCEPTCONN
    tl = sizeof acc;
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &tl) < 0)
        acc = 1;                        /* (cannot tell: trust listen) */
#endif
    if (!acc) {
        snprintf(err, errlen, "fd %d: not listening", fd);
        errno = EINVAL;
        return -1;
    }
    return 0;
}

static void lorder_add(xd *d, char kind)
{
    Renew(d->lorder, d->nlorder + 1, char);
    d->lorder[d->nlorder++] = kind;
}

/* Every listening fd of d (TCP and UNIX: bound, or served; UDP: bound,
 * or served), in the order of the SPECs that made them: at most max of
 * them into out; how many there are. */
static int xd_listener_fds(xd *d, int *out, int max)
{
    int nt = d->nlfds + (d->srv ? (int)isd_server_nlisteners(d->srv) : 0);
    int nu = d->nufds + d->nudps;
    int it = 0, iu = 0, k = 0, o = 0;

    while (it < nt || iu < nu) {
        /* the recorded order while both kinds are left; then the rest */
        int udp = it >= nt ? 1 : iu >= nu ? 0
                : o < d->nlorder ? d->lorder[o] == 'u' : 0;
        int fd;
        if (udp) {
            fd = iu < d->nufds ? d->ufds[iu] : isd_udp_fd(d->udps[iu - d->nufds]);
            iu++;
        } else {
            fd = it < d->nlfds ? d->lfds[it]
               : isd_server_listener_fd(d->srv, (size_t)(it - d->nlfds));
            it++;
        }
        o++;
        if (k < max)
            out[k] = fd;
        k++;
    }
    return k;
}

/* A listening fd, served with PROXY options px (NULL: none) once run
 * starts. */
static void lfd_push(xd *d, int fd, isd_proxy_opts *px, xtls *tl)
{
    Renew(d->lfds, d->nlfds + 1, int);
    Renew(d->lpx, d->nlfds + 1, isd_proxy_opts *);
    Renew(d->ltls, d->nlfds + 1, xtls *);
    d->lpx[d->nlfds] = px;
    d->ltls[d->nlfds] = tl;
    d->lfds[d->nlfds++] = fd;
}

/* Bind every listener of $self->_binds (the resolved listen => [...];
 * each [kind, address, backlog, v6only, reuseport, group, unix_mode,
 * optional, rcvbuf, sndbuf, proxy], proxy the index of its PROXY options
 * in $self->{_proxy}, if it takes a header):
 * all of them or none.  0, or -1 with errno and d->err. */
static int xd_bind_all(pTHX_ xd *d, AV *binds)
{
    SSize_t i, n = av_len(binds) + 1;
    int first = d->nlfds, firstpath = d->nupaths, ufirst = d->nufds, e, k;
    /* inherited fds bound by this call: never closed if it fails */
    int *inherited, *uinherited;
    /* port 0 bound for each group of addresses of one SPEC: the others
     * of the group take the same port */
    IV group_id[64];
    unsigned group_port[64];
    int group_bound[64], group_err[64];
    int ngroups = 0;

    Newxz(inherited, 2 * n + 1, int);   /* ('any': two fds) */
    SAVEFREEPV(inherited);
    Newxz(uinherited, 2 * n + 1, int);
    SAVEFREEPV(uinherited);
    d->nlorder = 0;                     /* (nothing is bound: xd_listen) */
    for (i = 0; i < n; i++) {
        SV **ep = av_fetch(binds, i, 0);
        AV *b = ep && SvROK(*ep) && SvTYPE(SvRV(*ep)) == SVt_PVAV
              ? (AV *)SvRV(*ep) : NULL;
        SV **kp = b ? av_fetch(b, 0, 0) : NULL, **ap = b ? av_fetch(b, 1, 0) : NULL;
        const char *kind = kp ? SvPV_nolen(*kp) : "";
        isd_listen_opts o;
        int fd = -1, fds[2];
        IV pidx, tidx;
        isd_proxy_opts *px = NULL;
        xtls *tl = NULL;

        if (!ap) {
            snprintf(d->err, sizeof d->err, "listen: bad entry %d", (int)i);
            errno = EINVAL;
            goto fail;
        }
        o.backlog = (int)av_iv(aTHX_ b, 2, d->backlog);
        o.v6only = (int)av_iv(aTHX_ b, 3, -1);
        o.reuseport = (int)av_iv(aTHX_ b, 4, 0);
        o.mode = (int)av_iv(aTHX_ b, 6, -1);
        o.rcvbuf = (int)av_iv(aTHX_ b, 8, 0);
        o.sndbuf = (int)av_iv(aTHX_ b, 9, 0);
        pidx = av_iv(aTHX_ b, 10, -1);
        if (pidx >= 0 && !(px = xd_proxy_opts(aTHX_ d, pidx)))
            goto fail;
        tidx = av_iv(aTHX_ b, 11, -1);
        if (tidx >= 0 && !(tl = xd_tls(aTHX_ d, tidx)))
            goto fail;
        if (strEQ(kind, "udpany")) {
            k = isd_listen_any_type((unsigned)SvUV(*ap), SOCK_DGRAM, &o, fds,
                                    d->err, sizeof d->err);
            if (k < 0)
                goto fail;
            ufd_push(d, fds[0]);
            lorder_add(d, 'u');
            if (k > 1) {
                ufd_push(d, fds[1]);
                lorder_add(d, 'u');
            }
            continue;
        }
        if (strEQ(kind, "any")) {
            k = isd_listen_any((unsigned)SvUV(*ap), &o, fds, d->err,
                               sizeof d->err);
            if (k < 0)
                goto fail;
            lfd_push(d, fds[0], px, tl);
            lorder_add(d, 't');
            if (k > 1) {
                lfd_push(d, fds[1], px, tl);
                lorder_add(d, 't');
            }
            continue;
        }
        if (strEQ(kind, "fd")) {
            /* inherited (fd:N, systemd, Server::Starter): checked, then
             * served as it is; ours to close from now on, not to unlink */
            int udp;
            fd = (int)SvIV(*ap);
            if (fd < 0 || (udp = fd_listening(fd, d->err, sizeof d->err)) < 0) {
                if (fd < 0) {
                    snprintf(d->err, sizeof d->err, "fd %d: not a descriptor", fd);
                    errno = EBADF;
                }
                goto fail;
            }
            if (udp && (px || tl)) {
                snprintf(d->err, sizeof d->err, "fd %d: a UDP socket cannot "
                         "take %s", fd, px ? "proxy_protocol" : "tls");
                errno = EPROTOTYPE;
                goto fail;
            }
            if (udp) {
                for (k = 0; k < d->nufds; k++)
                    if (d->ufds[k] == fd)
                        break;
                if (k < d->nufds)
                    continue;           /* (named twice) */
                uinherited[d->nufds - ufirst] = 1;
                ufd_push(d, fd);
                lorder_add(d, 'u');
                continue;
            }
            for (k = 0; k < d->nlfds; k++)
                if (d->lfds[k] == fd)
                    break;
            if (k < d->nlfds)
                continue;               /* (named twice) */
            inherited[d->nlfds - first] = 1;
            lfd_push(d, fd, px, tl);
            lorder_add(d, 't');
            continue;
        }
        if (strEQ(kind, "unix")) {
            const char *path = SvPV_nolen(*ap);
            fd = isd_listen_unix(path, &o, d->err, sizeof d->err);
            if (fd < 0)
                goto fail;
            lfd_push(d, fd, px, tl);
            lorder_add(d, 't');
            Renew(d->upaths, d->nupaths + 1, char *);
            if (path[0] == '/') {
                d->upaths[d->nupaths++] = savepv(path);
            } else {
                /* unlinked by destroy, maybe after a chdir: absolute */
                char cwd[4096];
                d->upaths[d->nupaths++] = getcwd(cwd, sizeof cwd)
                    ? savepv(form("%s/%s", cwd, path)) : savepv(path);
            }
            d->upid = getpid();
            continue;
        }
        {
            STRLEN len;
            const char *p = SvPVbyte(*ap, len);
            IV group = av_iv(aTHX_ b, 5, -1);
            int optional = (int)av_iv(aTHX_ b, 7, 0);
            isd_addr a;
            int g;

            if ((!strEQ(kind, "tcp") && !strEQ(kind, "udp")) || len > sizeof a) {
                snprintf(d->err, sizeof d->err, "listen: bad entry %d",
                         (int)i);
                errno = EINVAL;
                goto fail;
            }
            memset(&a, 0, sizeof a);
            memcpy(&a, p, len);
            for (g = 0; g < ngroups && group_id[g] != group; g++)
                ;
            if (group >= 0 && g == ngroups && ngroups < 64) {
                group_id[g] = group;
                group_port[g] = 0;
                group_bound[g] = 0;
                group_err[g] = EADDRNOTAVAIL;
                ngroups++;
            }
            if (g < ngroups && group_port[g] && !isd_addr_port(&a)) {
                if (a.sa.sa_family == AF_INET)
                    a.in4.sin_port = htons((unsigned short)group_port[g]);
                else if (a.sa.sa_family == AF_INET6)
                    a.in6.sin6_port = htons((unsigned short)group_port[g]);
            }
            fd = kind[0] == 'u' ? isd_listen_udp(&a, &o, d->err, sizeof d->err)
                                : isd_listen_addr(&a, &o, d->err, sizeof d->err);
            if (fd < 0 && optional && g < ngroups
                && (errno == EADDRNOTAVAIL || errno == EAFNOSUPPORT)) {
                group_err[g] = errno;   /* (this host has no such address) */
                continue;
            }
            if (fd < 0)
                goto fail;
            if (kind[0] == 'u')
                ufd_push(d, fd);
            else
                lfd_push(d, fd, px, tl);
            lorder_add(d, kind[0] == 'u' ? 'u' : 't');
            if (g < ngroups) {
                isd_addr got;
                socklen_t gl = sizeof got;
                group_bound[g]++;
                if (!group_port[g] && getsockname(fd, &got.sa, &gl) == 0)
                    group_port[g] = isd_addr_port(&got);
            }
        }
    }
    for (k = 0; k < ngroups; k++)
        if (!group_bound[k]) {          /* (d->err: its last failure) */
            errno = group_err[k];
            goto fail;
        }
    return 0;
fail:
    e = errno;
    while (d->nlfds > first) {
        --d->nlfds;
        if (!inherited[d->nlfds - first])
            close(d->lfds[d->nlfds]);
    }
    while (d->nufds > ufirst) {
        --d->nufds;
        if (!uinherited[d->nufds - ufirst])
            close(d->ufds[d->nufds]);
    }
    d->nlorder = 0;
    while (d->nupaths > firstpath) {
        d->nupaths--;
        unlink(d->upaths[d->nupaths]);
        Safefree(d->upaths[d->nupaths]);
    }
    errno = e;
    return -1;
}

/* Bind and listen now (no loop yet: that is made by run, in the process
 * that serves).  0, or -1 with errno and d->err. */
static int xd_listen(pTHX_ xd *d)
{
    SV *host = opt(aTHX_ d, "host"), *port = opt(aTHX_ d, "port");
    const char *h = host ? SvPV_nolen(host) : "localhost";
    int family = AF_INET, fd;

    if (d->nlfds || d->nufds || d->nudps
        || (d->srv && isd_server_listening(d->srv)))
        return 0;
    if (hv_exists(d->self, "_specs", 6)) {
        /* listen => [...] (or host => '*'): resolved in Perl */
        dSP;
        SV *res;
        int n, rc = -1;

        ENTER;
        SAVETMPS;
        PUSHMARK(SP);
        XPUSHs(sv_2mortal(newRV_inc((SV *)d->self)));
        PUTBACK;
        n = call_method("_binds", G_SCALAR);
        SPAGAIN;
        res = n > 0 ? POPs : &PL_sv_undef;
        PUTBACK;
        if (SvROK(res) && SvTYPE(SvRV(res)) == SVt_PVAV) {
            rc = xd_bind_all(aTHX_ d, (AV *)SvRV(res));
        } else {
            SV **ep = hv_fetchs(d->self, "_bind_error", 0);
            snprintf(d->err, sizeof d->err, "%s",
                     ep && SvOK(*ep) ? SvPV_nolen(*ep) : "listen failed");
            errno = errno ? errno : EADDRNOTAVAIL;
        }
        n = errno;
        FREETMPS;
        LEAVE;
        errno = n;
        if (rc == 0 && !d->loop)
            d->pid = getpid();
        return rc;
    }
    /* IO::Socket::INET resolves to IPv4; a literal IPv6 address is IPv6. */
    if (strchr(h, ':'))
        family = AF_INET6;
    fd = isd_listen_tcp(h, port ? (unsigned)SvUV(port) : 0, family,
                        d->backlog, d->err, sizeof d->err);
    if (fd < 0)
        return -1;
    lfd_push(d, fd, NULL, NULL);
    if (!d->loop)                   /* (a loop of the parent's: see xd_loop) */
        d->pid = getpid();
    return 0;
}

