# Peer.xsh - the XSUBs of IO::Socket::INET::Daemon::Peer (a connection,
# $io), included by Daemon.xs, whose C part they use.

MODULE = IO::Socket::INET::Daemon  PACKAGE = IO::Socket::INET::Daemon::Peer

void
print(SV *self, ...)
  ALIAS:
    say = 1
    PRINT = 2
  PREINIT:
    isd_conn *c;
  PPCODE:
    c = conn_from(aTHX_ self, ix == 1 ? "say" : "print");
    if (!isd_conn_is_open(c)) {
        SETERRNO(ENOTCONN, 0);
        XSRETURN_NO;
    }
    if (print_list(aTHX_ c, &ST(1), items - 1, ix == 1 ? "say" : "print"))
        XSRETURN_YES;
    XSRETURN_NO;

void
printf(SV *self, ...)
  ALIAS:
    PRINTF = 1
  PREINIT:
    isd_conn *c;
    SV *out;
    STRLEN n;
    const char *p;
  PPCODE:
    PERL_UNUSED_VAR(ix);     /* (the aliases are the same method) */
    c = conn_from(aTHX_ self, "printf");
    if (items < 2)
        croak("Usage: %s::printf(self, format, ...)", PEER_PKG);
    hold_conn(aTHX_ c);             /* formatting may run overloading */
    if (!isd_conn_is_open(c)) {
        SETERRNO(ENOTCONN, 0);
        XSRETURN_NO;
    }
    out = sv_2mortal(newSV(0));
    do_sprintf(out, items - 1, &ST(1));
    p = out_bytes(aTHX_ (*isd_conn_uflags(c) & UF_UTF8) != 0, out, &n,
                  "printf");
    if (put(aTHX_ c, p, n))
        XSRETURN_YES;
    XSRETURN_NO;

void
syswrite(SV *self, SV *buf, SV *lensv = NULL, SV *offsv = NULL)
  ALIAS:
    write = 1
    send = 2
    WRITE = 3
  PREINIT:
    isd_conn *c;
    STRLEN blen, clen;
    const char *p;
    IV len, off = 0;
    int chars;
  PPCODE:
    c = conn_from(aTHX_ self, ix == 1 ? "write" : ix == 2 ? "send" : "syswrite");
    if (RUNS_PERL(buf) || (lensv && RUNS_PERL(lensv))
        || (offsv && RUNS_PERL(offsv)))
        hold_conn(aTHX_ c);
    /* Bytes on a raw peer (a wide character croaks, as syswrite does);
     * characters on a :utf8 one, LEN and OFFSET counting characters (as
     * perl's syswrite did on :utf8 handles), so none is ever split. */
    p = SvPV(buf, blen);
    chars = (*isd_conn_uflags(c) & UF_UTF8) != 0;
    if (SvUTF8(buf) && !chars) {
        buf = sv_2mortal(newSVpvn_flags(p, blen, SVf_UTF8));
        if (!sv_utf8_downgrade(buf, TRUE))
            croak("Wide character in %s", ix == 1 ? "write" : ix == 2 ? "send" : "syswrite");
        p = SvPV(buf, blen);
    } else if (chars && !SvUTF8(buf)) {
        buf = sv_2mortal(newSVpvn(p, blen));
        sv_utf8_upgrade(buf);
        p = SvPV(buf, blen);
    }
    clen = chars ? utf8_length((const U8 *)p, (const U8 *)p + blen) : blen;
    if (ix == 2)                     /* send(msg, flags): no len/offset */
        lensv = offsv = NULL;
    len = lensv && SvOK(lensv) ? SvIV(lensv) : (IV)clen;
    if (len < 0)
        croak("Negative length");
    if (offsv && SvOK(offsv)) {
        off = SvIV(offsv);
        if (off < 0) {
            if ((STRLEN)-off > clen)
                croak("Offset outside string");
            off += (IV)clen;
        } else if ((STRLEN)off > clen && (clen || off)) {
            croak("Offset outside string");
        }
    }
    if ((STRLEN)len > clen - (STRLEN)off)
        len = (IV)(clen - (STRLEN)off);
    if (!isd_conn_is_open(c)) {
        SETERRNO(ENOTCONN, 0);
        XSRETURN_UNDEF;
    }
    {
        const U8 *from = (const U8 *)p, *to;
        if (chars) {
            from = utf8_hop(from, off);
            to = utf8_hop(from, len);
        } else {
            from += off;
            to = from + len;
        }
        if (!put(aTHX_ c, (const char *)from, (STRLEN)(to - from)))
            XSRETURN_UNDEF;
    }
    if (ix == 1)
        XSRETURN_YES;
    XSRETURN_IV(len);

void
getline(SV *self)
  ALIAS:
    READLINE = 1
  PREINIT:
    isd_conn *c;
  PPCODE:
    c = conn_from(aTHX_ self, "getline");
    if (ix == 1 && GIMME_V == G_LIST) {
        PUTBACK;
        XSRETURN(read_all(aTHX_ c));
    }
    {
        dXSTARG;
        uint64_t deadline = 0;
        if (!read_record(aTHX_ c, TARG, &deadline))
            XSRETURN_UNDEF;
        ST(0) = TARG;
        XSRETURN(1);
    }

void
getlines(SV *self)
  PREINIT:
    isd_conn *c;
  PPCODE:
    c = conn_from(aTHX_ self, "getlines");
    if (GIMME_V != G_LIST)
        croak("Can't call %s::getlines in a scalar context, use getline", PEER_PKG);
    PUTBACK;
    XSRETURN(read_all(aTHX_ c));

void
sysread(SV *self, SV *buf, SV *lensv, SV *offsv = NULL)
  ALIAS:
    read = 1
    READ = 2
    recv = 3
  PREINIT:
    isd_conn *c;
    IV len;
    ssize_t n;
  PPCODE:
    c = conn_from(aTHX_ self, ix == 1 ? "read" : ix == 3 ? "recv" : "sysread");
    HOLD_IF(c, lensv);
    HOLD_IF(c, offsv);
    len = SvIV(lensv);
    if (len < 0)
        croak("Negative length");
    if (ix == 3)
        offsv = NULL;           /* recv(buf, len, flags) */
    n = take(aTHX_ c, buf, (size_t)len, offsv && SvOK(offsv) ? offsv : NULL,
             ix == 1);
    if (n < 0)
        XSRETURN_UNDEF;
    if (ix == 3)
        XSRETURN_PVN("", 0);
    XSRETURN_IV(n);

void
getc(SV *self)
  ALIAS:
    GETC = 1
  PREINIT:
    isd_conn *c;
    SV *buf;
  PPCODE:
    PERL_UNUSED_VAR(ix);     /* (the aliases are the same method) */
    c = conn_from(aTHX_ self, "getc");
    buf = sv_2mortal(newSVpvs(""));
    if (take(aTHX_ c, buf, 1, NULL, 1) <= 0)
        XSRETURN_UNDEF;
    ST(0) = buf;
    XSRETURN(1);

void
ungetc(SV *self, IV ord)
  PREINIT:
    isd_conn *c;
    U8 ch[UTF8_MAXBYTES + 1];
    STRLEN n = 1;
  PPCODE:
    c = conn_from(aTHX_ self, "ungetc");
    /* a character: UTF-8 on a :utf8 peer, else the byte PerlIO pushes */
    if ((*isd_conn_uflags(c) & UF_UTF8) && ord > 0x7f)
        n = (STRLEN)(uvchr_to_utf8(ch, (UV)ord) - ch);
    else
        ch[0] = (U8)ord;
    consume(aTHX_ c, 0);
    if (isd_conn_unread(c, ch, n) < 0)
        XSRETURN_UNDEF;
    XSRETURN_IV(ord);

void
eof(SV *self, ...)
  ALIAS:
    EOF = 1
  PREINIT:
    isd_conn *c;
    size_t len;
    ssize_t n;
    uint64_t deadline = 0;
  PPCODE:
    PERL_UNUSED_VAR(ix);     /* (the aliases are the same method) */
    c = conn_from(aTHX_ self, "eof");
    isd_conn_in(c, &len);
    if (len)
        XSRETURN_NO;
    if (!isd_conn_is_open(c) || (isd_conn_flags(c) & ISD_C_EOF))
        XSRETURN_YES;
    /* like eof on a socket: wait (bounded) to learn which it is */
    n = fill(aTHX_ c, &deadline);
    if (n > 0 || (n < 0 && (errno == ETIMEDOUT || errno == EAGAIN)))
        XSRETURN_NO;
    XSRETURN_YES;

void
close(SV *self)
  ALIAS:
    CLOSE = 1
  PREINIT:
    isd_conn *c;
  PPCODE:
    PERL_UNUSED_VAR(ix);     /* (the aliases are the same method) */
    c = conn_from(aTHX_ self, "close");
    conn_wake(aTHX_ c);
    if (!isd_conn_is_open(c)) {
        SETERRNO(EBADF, 0);
        XSRETURN_NO;
    }
    if (peer_rv(c))
        drop_conn(aTHX_ c, 0);
    else
        isd_conn_close(c);
    XSRETURN_YES;

void
shutdown(SV *self, int how)
  PREINIT:
    isd_conn *c;
  PPCODE:
    c = conn_from(aTHX_ self, "shutdown");
    conn_wake(aTHX_ c);
    if (how < 0 || how > 2)
        croak("%s::shutdown: how: %d is not 0, 1 or 2", PEER_PKG, how);
    if (how == 2 && isd_conn_is_open(c) && peer_rv(c)) {
        drop_conn(aTHX_ c, 0);
        XSRETURN_YES;
    }
    if (isd_conn_shutdown(c, how == 0 ? SHUT_RD : how == 1 ? SHUT_WR : SHUT_RDWR) < 0) {
        SETERRNO(errno, 0);
        XSRETURN_UNDEF;
    }
    XSRETURN_YES;

void
fileno(SV *self)
  ALIAS:
    FILENO = 1
  PREINIT:
    isd_conn *c;
  PPCODE:
    PERL_UNUSED_VAR(ix);     /* (the aliases are the same method) */
    c = conn_from(aTHX_ self, "fileno");
    if (!isd_conn_is_open(c))
        XSRETURN_UNDEF;
    XSRETURN_IV(isd_conn_fd(c));

void
opened(SV *self)
  PPCODE:
    if (isd_conn_is_open(conn_from(aTHX_ self, "opened")))
        XSRETURN_YES;
    XSRETURN_NO;

void
connected(SV *self)
  PREINIT:
    isd_conn *c;
  PPCODE:
    c = conn_from(aTHX_ self, "connected");
    if (!isd_conn_is_open(c))
        XSRETURN_UNDEF;
    if (conn_unix_path(c)) {             /* UNIX: the unnamed peer */
        struct sockaddr_un un;
        memset(&un, 0, sizeof un);
        un.sun_family = AF_UNIX;
        ST(0) = sv_2mortal(newSVpvn((const char *)&un,
                                    offsetof(struct sockaddr_un, sun_path)));
        XSRETURN(1);
    }
    ST(0) = sv_2mortal(pack_addr(aTHX_ isd_conn_peer(c), 0));
    XSRETURN(1);

void
peername(SV *self)
  ALIAS:
    sockname = 1
    peeraddr = 2
    sockaddr = 3
  PREINIT:
    isd_conn *c;
  PPCODE:
    c = conn_from(aTHX_ self, "peername");
    if (conn_unix_path(c) && ix < 2) {
        /* a UNIX connection: its peer is unnamed (connected is true), its
         * own name the listener's path; no address (peeraddr/sockaddr) */
        struct sockaddr_un un;
        STRLEN pl = ix ? strlen(conn_unix_path(c)) : 0;
        memset(&un, 0, sizeof un);
        un.sun_family = AF_UNIX;
        if (pl >= sizeof un.sun_path)
            pl = sizeof un.sun_path - 1;
        memcpy(un.sun_path, conn_unix_path(c), pl);
        ST(0) = sv_2mortal(newSVpvn((const char *)&un,
                                    offsetof(struct sockaddr_un, sun_path) + pl));
        XSRETURN(1);
    }
    ST(0) = sv_2mortal(pack_addr(aTHX_ (ix & 1) ? isd_conn_local(c)
                                                : isd_conn_peer(c), ix >= 2));
    XSRETURN(1);

void
peerhost(SV *self)
  ALIAS:
    sockhost = 1
  PREINIT:
    isd_conn *c;
    char host[INET6_ADDRSTRLEN];
    const isd_addr *a;
  PPCODE:
    c = conn_from(aTHX_ self, ix ? "sockhost" : "peerhost");
    a = ix ? isd_conn_local(c) : isd_conn_peer(c);
    if (conn_unix_path(c)) {
        /* a UNIX connection: the peer is this host, the socket the path */
        ST(0) = sv_2mortal(newSVpv(ix ? conn_unix_path(c) : "localhost", 0));
        XSRETURN(1);
    }
    if (!isd_addr_len(a))
        XSRETURN_UNDEF;
    ST(0) = sv_2mortal(newSVpv(isd_addr_host(a, host, sizeof host), 0));
    XSRETURN(1);

void
peerport(SV *self)
  ALIAS:
    sockport = 1
  PREINIT:
    isd_conn *c;
    const isd_addr *a;
  PPCODE:
    c = conn_from(aTHX_ self, ix ? "sockport" : "peerport");
    a = ix ? isd_conn_local(c) : isd_conn_peer(c);
    if (conn_unix_path(c))
        XSRETURN_UV(0);                 /* a UNIX connection: no port */
    if (!isd_addr_len(a))
        XSRETURN_UNDEF;
    XSRETURN_UV(isd_addr_port(a));

int
_family(SV *self)
  CODE:
    RETVAL = isd_conn_peer(conn_from(aTHX_ self, "sockdomain"))->sa.sa_family;
  OUTPUT:
    RETVAL

void
autoflush(SV *self, SV *on = NULL)
  PREINIT:
    isd_conn *c;
    unsigned *uf;
    int was;
  PPCODE:
    c = conn_from(aTHX_ self, "autoflush");
    HOLD_IF(c, on);
    uf = isd_conn_uflags(c);
    was = !(*uf & UF_NOAUTOFL);
    if (!on || SvTRUE(on))
        *uf &= ~UF_NOAUTOFL;
    else
        *uf |= UF_NOAUTOFL;
    XSRETURN_IV(was);

void
blocking(SV *self, SV *on = NULL)
  PREINIT:
    isd_conn *c;
    unsigned *uf;
    int was;
  PPCODE:
    c = conn_from(aTHX_ self, "blocking");
    HOLD_IF(c, on);
    uf = isd_conn_uflags(c);
    was = !(*uf & UF_NONBLOCK);
    if (on && SvOK(on)) {
        if (SvTRUE(on))
            *uf &= ~UF_NONBLOCK;
        else
            *uf |= UF_NONBLOCK;
    }
    XSRETURN_IV(was);

void
flush(SV *self, ...)
  ALIAS:
    printflush = 1
  PREINIT:
    isd_conn *c;
  PPCODE:
    c = conn_from(aTHX_ self, "flush");
    if (ix == 1 && items > 1) {
        /* printflush LIST: print, then flush */
        if (!print_list(aTHX_ c, &ST(1), items - 1, "printflush"))
            XSRETURN_UNDEF;
    }
    if ((conn_xd(c) && isd_server_forked(isd_conn_server(c))
         ? flush_forked(aTHX_ c) : isd_conn_flush(c)) < 0) {
        SETERRNO(errno, 0);
        XSRETURN_UNDEF;
    }
    XSRETURN_PVN("0 but true", 10);

void
binmode(SV *self, SV *layer = NULL)
  ALIAS:
    BINMODE = 1
  PREINIT:
    isd_conn *c;
    unsigned *uf;
    const char *l;
  PPCODE:
    PERL_UNUSED_VAR(ix);     /* (the aliases are the same method) */
    c = conn_from(aTHX_ self, "binmode");
    HOLD_IF(c, layer);
    uf = isd_conn_uflags(c);
    l = layer && SvOK(layer) ? SvPV_nolen(layer) : ":raw";
    if (strEQ(l, ":raw") || strEQ(l, ":bytes") || strEQ(l, ":unix"))
        *uf &= ~UF_UTF8;
    else if (strEQ(l, ":utf8") || strEQ(l, ":encoding(UTF-8)")
             || strEQ(l, ":encoding(utf8)") || strEQ(l, ":encoding(utf-8)")
             || strEQ(l, ":encoding(UTF8)"))
        *uf |= UF_UTF8;
    else
        croak("%s::binmode: layer '%s' is not supported (use :raw or :utf8)",
              PEER_PKG, l);
    XSRETURN_YES;

void
setsockopt(SV *self, int level, int optname, SV *val)
  PREINIT:
    isd_conn *c;
    int iv;
    const void *p;
    STRLEN len;
  PPCODE:
    c = conn_from(aTHX_ self, "setsockopt");
    HOLD_IF(c, val);
    if (!isd_conn_is_open(c)) {
        SETERRNO(EBADF, 0);
        XSRETURN_UNDEF;
    }
    if (SvPOKp(val) && !looks_like_number(val)) {
        p = SvPVbyte(val, len);
    } else {
        iv = (int)SvIV(val);
        p = &iv;
        len = sizeof iv;
    }
    if (setsockopt(isd_conn_fd(c), level, optname, p, (socklen_t)len) < 0) {
        SETERRNO(errno, 0);
        XSRETURN_UNDEF;
    }
    XSRETURN_YES;

void
getsockopt(SV *self, int level, int optname)
  PREINIT:
    isd_conn *c;
    char buf[256];
    socklen_t len = sizeof buf;
  PPCODE:
    c = conn_from(aTHX_ self, "getsockopt");
    if (!isd_conn_is_open(c)) {
        SETERRNO(EBADF, 0);
        XSRETURN_UNDEF;
    }
    if (getsockopt(isd_conn_fd(c), level, optname, buf, &len) < 0) {
        SETERRNO(errno, 0);
        XSRETURN_UNDEF;
    }
    if (len == sizeof(int)) {           /* as IO::Socket::getsockopt does */
        int v;
        memcpy(&v, buf, sizeof v);
        XSRETURN_IV(v);
    }
    ST(0) = sv_2mortal(newSVpvn(buf, len));
    XSRETURN(1);


SV *
stats(SV *self)
  PREINIT:
    isd_conn_stats st;
    HV *hv;
  CODE:
    isd_conn_stats_get(conn_from(aTHX_ self, "stats"), &st);
    hv = newHV();
    (void)hv_stores(hv, "bytes_in", newSVuv((UV)st.bytes_in));
    (void)hv_stores(hv, "bytes_out", newSVuv((UV)st.bytes_out));
    (void)hv_stores(hv, "messages_in", newSVuv((UV)st.messages_in));
    (void)hv_stores(hv, "connected", newSViv((IV)st.connected));
    RETVAL = newRV_noinc((SV *)hv);
  OUTPUT:
    RETVAL

SV *
proxy(SV *self)
  PREINIT:
    const isd_proxy_info *pi;
  CODE:
    pi = isd_conn_proxy(conn_from(aTHX_ self, "proxy"));
    if (!pi)
        XSRETURN_UNDEF;
    RETVAL = proxy_hv(aTHX_ pi);
  OUTPUT:
    RETVAL

SV *
tls(SV *self)
  PREINIT:
    const isd_tls_conn *tc;
  CODE:
    tc = isd_conn_tls(conn_from(aTHX_ self, "tls"));
    if (!tc)
        XSRETURN_UNDEF;
    RETVAL = tls_hv(aTHX_ tc);
  OUTPUT:
    RETVAL

void
start_tls(SV *self)
  PREINIT:
    isd_conn *c;
  PPCODE:
    c = conn_from(aTHX_ self, "start_tls");
    if (isd_conn_start_transport(c, NULL, NULL) < 0) {
        if (errno == EALREADY)
            croak("%s::start_tls: this connection is %s", PEER_PKG,
                  isd_conn_transport_starting(c) ? "starting TLS already"
                                                 : "TLS already");
        if (errno == ENOPROTOOPT)
            croak("%s::start_tls: the listener of this connection has no "
                  "tls => { ..., starttls => 1 }", PEER_PKG);
        croak("%s::start_tls: the connection is closed", PEER_PKG);
    }
    conn_wake(aTHX_ c);
    XSRETURN_YES;

void
pending(SV *self)
  PPCODE:
    XSRETURN_UV((UV)isd_conn_out_bytes(conn_from(aTHX_ self, "pending")));

void
pause(SV *self)
  ALIAS:
    resume = 1
  PPCODE:
    {
        isd_conn *c = conn_from(aTHX_ self, ix ? "resume" : "pause");
        if (ix)
            conn_wake(aTHX_ c);
        isd_conn_pause(c, !ix);
    }
    XSRETURN_YES;

void
paused(SV *self)
  PPCODE:
    if (isd_conn_flags(conn_from(aTHX_ self, "paused")) & ISD_C_PAUSED)
        XSRETURN_YES;
    XSRETURN_NO;

void
idle_timeout(SV *self, SV *secs = NULL)
  PREINIT:
    isd_conn *c;
    unsigned was;
  PPCODE:
    c = conn_from(aTHX_ self, "idle_timeout");
    HOLD_IF(c, secs);
    was = isd_conn_idle(c);
    if (secs) {
        SvGETMAGIC(secs);
        if (!SvOK(secs) || !looks_like_number(secs) || SvNV(secs) < 0)
            croak("%s::idle_timeout: %" SVf " is not a number of seconds "
                  "(0: none)", PEER_PKG, SVfARG(quoted(aTHX_ secs)));
        conn_wake(aTHX_ c);
        isd_conn_set_idle(c, (unsigned)ms_of(aTHX_ secs, 0));
    }
    XSRETURN_NV(was / 1000.0);

void
send_message(SV *self, SV *msg)
  PREINIT:
    isd_conn *c;
    const isd_framing *f;
    xd *d;
    STRLEN n;
    const char *p;
    unsigned char hd[4];
    size_t h;
    int fmt;
  PPCODE:
    c = conn_from(aTHX_ self, "send_message");
    HOLD_IF(c, msg);
    SvGETMAGIC(msg);
    if (!SvOK(msg))
        croak("%s::send_message: undef is not a message", PEER_PKG);
    /* Bytes, as syswrite takes them: on a raw peer a wide character
     * croaks; on a :utf8 peer the characters go as UTF-8, and the prefix
     * counts those bytes. */
    p = SvPV_nomg(msg, n);
    if (*isd_conn_uflags(c) & UF_UTF8) {
        if (!SvUTF8(msg)) {
            msg = sv_2mortal(newSVpvn(p, n));
            sv_utf8_upgrade(msg);
            p = SvPV(msg, n);
        }
    } else if (SvUTF8(msg)) {
        msg = sv_2mortal(newSVpvn_flags(p, n, SVf_UTF8));
        if (!sv_utf8_downgrade(msg, TRUE))
            croak("Wide character in %s::send_message", PEER_PKG);
        p = SvPV(msg, n);
    }
    if (!isd_conn_is_open(c) || !(f = isd_conn_framing(c))) {
        SETERRNO(ENOTCONN, 0);
        XSRETURN_NO;
    }
    d = conn_xd(c);
    fmt = f->kind == ISD_FRAME_LENGTH || !d ? f->lenfmt : d->cfg.framing.lenfmt;
    if (!(h = isd_frame_len_put(fmt, (uint64_t)n, hd)))
        croak("%s::send_message: a message of %lu bytes is too long for "
              "length_format '%s'", PEER_PKG, (unsigned long)n,
              lenfmt_names[fmt]);
    if (put(aTHX_ c, (const char *)hd, h) && put(aTHX_ c, p, n))
        XSRETURN_YES;
    XSRETURN_NO;

void
framing(SV *self, ...)
  PREINIT:
    isd_conn *c;
    const isd_framing *f;
    isd_framing nf;
    xd *d;
    int i, was;
    STRLEN n;
    const char *p;
  PPCODE:
    c = conn_from(aTHX_ self, "framing");
    for (i = 1; i < items; i++)
        HOLD_IF(c, ST(i));
    d = conn_xd(c);
    f = isd_conn_framing(c);
    was = f ? f->kind : -1;
    if (items > 1) {
        if (!d || !f) {
            SETERRNO(ENOTCONN, 0);
            XSRETURN_UNDEF;
        }
        conn_wake(aTHX_ c);
        p = SvOK(ST(1)) ? SvPV_nolen(ST(1)) : "";
        nf = d->cfg.framing;                /* what is not given: new's */
        if ((nf.kind = framing_of(p)) < 0)
            croak("%s::framing: %" SVf " is not 'line', 'raw' or 'length'",
                  PEER_PKG, SVfARG(quoted(aTHX_ ST(1))));
        if (items % 2)
            croak("%s::framing: the options after '%s' come in pairs "
                  "(NAME => VALUE)", PEER_PKG, p);
        if (nf.kind != ISD_FRAME_LINE) {
            nf.sep = NULL;
            nf.seplen = 0;
        }
        for (i = 2; i + 1 < items; i += 2) {
            const char *k = SvPV_nolen(ST(i));
            SV *v = ST(i + 1);
            if (strEQ(k, "separator") && nf.kind == ISD_FRAME_LINE) {
                SV *tmp = sv_2mortal(newSVsv(v));
                if (!SvOK(v) || SvROK(v) || !sv_utf8_downgrade(tmp, TRUE)
                    || !SvCUR(tmp))
                    croak("%s::framing: separator: %" SVf " is not a "
                          "non-empty string of bytes", PEER_PKG,
                          SVfARG(quoted(aTHX_ v)));
                nf.sep = SvPV(tmp, n);
                nf.seplen = n;
            } else if (strEQ(k, "length_format")
                       && nf.kind == ISD_FRAME_LENGTH) {
                if (!SvOK(v) || SvROK(v)
                    || (nf.lenfmt = lenfmt_of(SvPV_nolen(v))) < 0)
                    croak("%s::framing: length_format: %" SVf " is not "
                          "one of N n V v C", PEER_PKG,
                          SVfARG(quoted(aTHX_ v)));
            } else {
                croak("%s::framing: '%s' is not an option of framing '%s'",
                      PEER_PKG, k, p);
            }
        }
        if (nf.kind == ISD_FRAME_LINE && nf.seplen == 1 && nf.sep[0] == '\n')
            nf.sep = NULL, nf.seplen = 0;   /* the default */
        {
            const isd_framing *sf = &d->cfg.framing;
            int same = nf.kind == sf->kind && nf.lenfmt == sf->lenfmt
                && nf.seplen == sf->seplen
                && (!nf.seplen || memcmp(nf.sep, sf->sep, nf.seplen) == 0);
            if (isd_conn_set_framing(c, same ? NULL : &nf) < 0)
                croak("%s::framing: %s", PEER_PKG, strerror(errno));
            if (!same)
                d->framed = 1;
        }
    }
    if (was < 0)
        XSRETURN_UNDEF;
    ST(0) = sv_2mortal(newSVpv(framing_names[was], 0));
    XSRETURN(1);
