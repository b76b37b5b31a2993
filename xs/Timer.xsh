# Timer.xsh - the XSUBs of IO::Socket::INET::Daemon::Timer, included by
# Daemon.xs, whose C part they use.

MODULE = IO::Socket::INET::Daemon  PACKAGE = IO::Socket::INET::Daemon::Timer

void
cancel(SV *self)
  PPCODE:
    xt_stop(aTHX_ xt_from(aTHX_ self, "cancel"));
    XSRETURN_YES;

void
active(SV *self)
  PPCODE:
    if (xt_from(aTHX_ self, "active")->d)
        XSRETURN_YES;
    XSRETURN_NO;
