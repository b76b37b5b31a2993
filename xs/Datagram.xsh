# Datagram.xsh - the XSUBs of IO::Socket::INET::Daemon::Datagram, the
# sender of a datagram on a UDP listener ($io of data): replies are
# datagrams to it.  Included by Daemon.xs (its C part is xs/udp.c).

MODULE = IO::Socket::INET::Daemon  PACKAGE = IO::Socket::INET::Daemon::Datagram

void
print(SV *self, ...)
  ALIAS:
    say = 1
  PREINIT:
    xdgram *g;
    SV *out, *ofs, *ors;
    const char *p;
    STRLEN n;
    int i;
  PPCODE:
    /* one datagram: the list joined as print joins it ($, and $\) */
    g = dgram_from(aTHX_ self, ix ? "say" : "print");
    ofs = PL_ofsgv ? GvSV(PL_ofsgv) : NULL;
    ors = ix ? NULL : PL_ors_sv;
    out = sv_2mortal(newSVpvs(""));
    for (i = 1; i < items; i++) {
        if (i > 1 && ofs && SvOK(ofs))
            sv_catsv(out, ofs);
        sv_catsv(out, ST(i));
    }
    if (ix)
        sv_catpvs(out, "\n");
    else if (ors && SvOK(ors))
        sv_catsv(out, ors);
    p = out_bytes(aTHX_ 0, out, &n, ix ? "say" : "print");
    if (isd_udp_send(g->u, &g->from, p, n) < 0) {
        SETERRNO(errno, 0);
        XSRETURN_NO;
    }
    XSRETURN_YES;

void
printf(SV *self, ...)
  PREINIT:
    xdgram *g;
    SV *out;
    const char *p;
    STRLEN n;
  PPCODE:
    g = dgram_from(aTHX_ self, "printf");
    if (items < 2)
        croak("Usage: %s::printf(self, format, ...)", DGRAM_PKG);
    out = sv_2mortal(newSV(0));
    do_sprintf(out, items - 1, &ST(1));
    p = out_bytes(aTHX_ 0, out, &n, "printf");
    if (isd_udp_send(g->u, &g->from, p, n) < 0) {
        SETERRNO(errno, 0);
        XSRETURN_NO;
    }
    XSRETURN_YES;

void
syswrite(SV *self, SV *buf, SV *lensv = NULL, SV *offsv = NULL)
  ALIAS:
    send = 1
    write = 2
  PREINIT:
    xdgram *g;
    STRLEN blen;
    const char *p;
    IV len, off = 0;
  PPCODE:
    g = dgram_from(aTHX_ self, ix == 1 ? "send" : ix == 2 ? "write" : "syswrite");
    p = SvPV(buf, blen);
    if (SvUTF8(buf)) {
        buf = sv_2mortal(newSVpvn_flags(p, blen, SVf_UTF8));
        if (!sv_utf8_downgrade(buf, TRUE))
            croak("Wide character in %s", ix == 1 ? "send" : ix == 2 ? "write" : "syswrite");
        p = SvPV(buf, blen);
    }
    if (ix == 1)                        /* send(msg, flags): no len/offset */
        lensv = offsv = NULL;
    len = lensv && SvOK(lensv) ? SvIV(lensv) : (IV)blen;
    if (len < 0)
        croak("Negative length");
    if (offsv && SvOK(offsv)) {
        off = SvIV(offsv);
        if (off < 0) {
            if ((STRLEN)-off > blen)
                croak("Offset outside string");
            off += (IV)blen;
        } else if ((STRLEN)off > blen && (blen || off)) {
            croak("Offset outside string");
        }
    }
    if ((STRLEN)len > blen - (STRLEN)off)
        len = (IV)(blen - (STRLEN)off);
    if (isd_udp_send(g->u, &g->from, p + off, (size_t)len) < 0) {
        SETERRNO(errno, 0);
        XSRETURN_UNDEF;
    }
    if (ix == 2)
        XSRETURN_YES;
    XSRETURN_IV(len);

void
getline(SV *self)
  PREINIT:
    xdgram *g;
    xd *d;
  PPCODE:
    /* data's own datagram, as getline gives a line's */
    g = dgram_from(aTHX_ self, "getline");
    d = isd_udp_data(g->u);
    if (!d || d->cur_dgram != SvRV(self) || !d->cur_dgram_msg)
        XSRETURN_UNDEF;
    ST(0) = sv_2mortal(newSVsv(d->cur_dgram_msg));
    d->cur_dgram_msg = NULL;            /* (once, as a line is consumed) */
    XSRETURN(1);

void
peerhost(SV *self)
  ALIAS:
    sockhost = 1
    peerport = 2
    sockport = 3
    peername = 4
    sockname = 5
    peeraddr = 6
    sockaddr = 7
  PREINIT:
    xdgram *g;
    isd_addr a;
    socklen_t len = sizeof a;
    char host[INET6_ADDRSTRLEN];
  PPCODE:
    g = dgram_from(aTHX_ self, "peerhost");
    if (ix & 1) {
        memset(&a, 0, sizeof a);
        if (isd_udp_fd(g->u) < 0 || getsockname(isd_udp_fd(g->u), &a.sa, &len) < 0)
            XSRETURN_UNDEF;
        isd_addr_unmap(&a);
    } else {
        a = g->from;
    }
    if (!isd_addr_len(&a))
        XSRETURN_UNDEF;
    if (ix <= 1)
        ST(0) = sv_2mortal(newSVpv(isd_addr_host(&a, host, sizeof host), 0));
    else if (ix <= 3)
        ST(0) = sv_2mortal(newSVuv(isd_addr_port(&a)));
    else
        ST(0) = sv_2mortal(pack_addr(aTHX_ &a, ix >= 6));
    XSRETURN(1);

int
_family(SV *self)
  CODE:
    RETVAL = dgram_from(aTHX_ self, "sockdomain")->from.sa.sa_family;
  OUTPUT:
    RETVAL

int
fileno(SV *self)
  CODE:
    RETVAL = isd_udp_fd(dgram_from(aTHX_ self, "fileno")->u);
  OUTPUT:
    RETVAL
