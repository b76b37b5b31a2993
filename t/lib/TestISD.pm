package TestISD;

# Shared helper for the IO::Socket::INET::Daemon test suite.
#
# Servers are real: start_server forks a child that builds the daemon, listens
# on 127.0.0.1 port 0 and runs it; clients are plain IO::Socket::INET sockets
# in the test process.  What the server sees comes back through an event log
# (log_event in the child, $srv->events in the parent) and the child's STDERR
# is captured ($srv->stderr).  Everything has a deadline: the test process gets
# an alarm of $TestISD::DEADLINE seconds when this module is loaded, each child
# one of its own, and every client read waits with select.

use strict;
use warnings;

use Exporter ();
use Errno ();
use Fcntl qw(O_WRONLY O_APPEND O_CREAT);
use File::Temp ();
use IO::Select ();
use IO::Socket::INET ();
use POSIX ();
use Scalar::Util ();
use Socket ();
use Time::HiRes ();

our @ISA    = ('Exporter');
our @EXPORT = qw(
    backends isd_subtest start_server log_event local_events
    client try_client read_line read_n read_for read_until_eof got_eof
    send_all wait_until now echo_ping
);
# ask is asked for by name (use TestISD qw(:DEFAULT ask)): some tests have
# an ask of their own, for UDP or with another answer
our @EXPORT_OK = qw(ask);

our $DEADLINE = 60;      # whole test file
our $CHILD_DEADLINE = 30;  # each server child

my @SERVERS;             # live servers (weak), killed when the deadline hits
my $LOG_FH;              # child: the event log
my @LOCAL_EVENTS;        # log_event outside a server child

sub import {
    $SIG{PIPE} = 'IGNORE';       # a client writing to a dropped server
    $SIG{ALRM} = \&_deadline;
    alarm $DEADLINE;
    __PACKAGE__->export_to_level(1, @_);
}

sub _deadline {
    for my $s (grep defined, @SERVERS) {
        kill 'KILL', $s->{pid} if $s->{owner} == $$;
    }
    print STDERR "# TestISD: deadline of ${DEADLINE}s exceeded, giving up\n";
    exit 254;
}

sub now { Time::HiRes::time() }

# ------------------------------------------------------------------ backends

# The event backends to test: those compiled in (IO::Socket::INET::Daemon::
# backends), or what a fresh daemon picks plus poll.  $ENV{ISD_TEST_BACKENDS}
# ("poll", "epoll poll") narrows the list.
sub backends {
    require IO::Socket::INET::Daemon;
    my @b;
    if (defined &IO::Socket::INET::Daemon::backends) {
        @b = eval { IO::Socket::INET::Daemon::backends() };
        @b = map { split ' ' } grep defined, @b;
    }
    if (!@b) {
        my $d = eval { IO::Socket::INET::Daemon->new(port => 0, host => '127.0.0.1') };
        my $be = $d && eval { $d->backend };
        @b = (($be ? ($be) : ()), 'poll');
    }
    my %seen;
    @b = grep { !$seen{$_}++ } @b;
    if (my $only = $ENV{ISD_TEST_BACKENDS}) {
        my %want = map { $_ => 1 } split /[\s,]+/, $only;
        @b = grep { $want{$_} } @b;
    }
    return @b;
}

# isd_subtest($name, sub { ... }): Test::More::subtest, except that a die
# inside (a server child that crashed, a refused connection) fails that
# subtest with the message instead of ending the whole test file.
sub isd_subtest {
    my ($name, $code, @args) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    return Test::More::subtest($name, sub {
        my $ok = eval { $code->(@args); 1 };
        if (!$ok) {
            my $err = $@;
            Test::More::fail('subtest body died');
            Test::More::diag($err);
            Test::More::done_testing() unless Test::More->builder->has_plan;
        }
    });
}

# ------------------------------------------------------------------- servers

# start_server(%args): fork a server child; returns a TestISD::Server.
# The child builds IO::Socket::INET::Daemon->new(port => 0, host =>
# '127.0.0.1', %args), listens, reports the port, then runs.  Options that are
# not passed to new:
#   daemon         a daemon object built by the caller (new is skipped)
#   child_init     sub { my ($d) = @_; ... } run in the child before clients
#                  can connect (install %SIG handlers, extra callbacks)
#   child_run      sub { my ($d) = @_; ... } replaces the default
#                  "run, log 'run_returned 0|1'"; undef $_[0] drops the
#                  helper's only reference to the daemon
#   child_deadline seconds before the child is killed by SIGALRM (30)
#   keep_fds       fds (numbers) the child must keep open
# After the run the child drops the daemon (DESTROY), logs 'child_done' and
# exits 0; a die there exits 2.
sub start_server {
    my (%args) = @_;
    my %opt;
    for my $k (qw(daemon child_init child_run child_deadline keep_fds)) {
        $opt{$k} = delete $args{$k} if exists $args{$k};
    }
    require IO::Socket::INET::Daemon;

    my $dir = File::Temp->newdir('isd-test-XXXXXX', TMPDIR => 1, CLEANUP => 1);
    my $events = "$dir/events";
    my $stderr = "$dir/stderr";
    for my $f ($events, $stderr) {
        open my $fh, '>', $f or die "start_server: $f: $!";
        close $fh;
    }
    pipe(my $rd, my $wr) or die "start_server: pipe: $!";

    my $pid = fork;
    die "start_server: fork: $!" unless defined $pid;
    if ($pid == 0) {
        close $rd;
        _child(\%args, \%opt, $wr, $events, $stderr);
        POSIX::_exit(9);    # not reached
    }
    close $wr;

    my $self = bless {
        pid => $pid, port => undef, owner => $$, dir => $dir,
        events_file => $events, stderr_file => $stderr,
    }, 'TestISD::Server';
    push @SERVERS, $self;
    Scalar::Util::weaken($SERVERS[-1]);

    my $line = _read_pipe_line($rd, 10);
    close $rd;
    if (!defined $line || $line !~ /^PORT (\d+)$/) {
        my $err = $self->stderr;
        $self->stop;
        die "start_server: the server child failed: "
          . (defined $line ? $line : 'no answer within 10s')
          . (length $err ? "\nchild stderr:\n$err" : '') . "\n";
    }
    $self->{port} = $1;
    return $self;
}

sub _read_pipe_line {
    my ($fh, $timeout) = @_;
    my $deadline = now() + $timeout;
    my $buf = '';
    my $sel = IO::Select->new($fh);
    while ($buf !~ /\n/) {
        my $left = $deadline - now();
        return undef if $left <= 0;
        next unless $sel->can_read($left);
        my $n = sysread($fh, $buf, 4096, length $buf);
        next if !defined $n && $!{EINTR};
        last unless $n;
    }
    return undef unless $buf =~ /\A([^\n]*)\n/;
    return $1;
}

sub _tell {
    my ($fh, $msg) = @_;
    $msg =~ s/\n/ /g;
    syswrite $fh, "$msg\n";
}

# Detach the child from every fd it inherited (above all the test's client
# sockets).  They are not closed but overwritten with /dev/null: Perl's
# handles still own those fd numbers (PerlIO counts references per fd), and
# closing them behind its back would let a new socket reuse a number whose
# later close() PerlIO then skips.
sub _close_fds {
    my ($keep) = @_;
    my @fds;
    if (opendir my $dh, '/proc/self/fd') {
        my $dfd = fileno $dh;
        @fds = grep { /^\d+$/ && !(defined $dfd && $_ == $dfd) } readdir $dh;
        closedir $dh;
    }
    else {
        @fds = 3 .. 255;
    }
    my $null = POSIX::open('/dev/null', POSIX::O_RDWR());
    return unless defined $null;
    for my $fd (@fds) {
        next if $fd <= 2 || $fd == $null || $keep->{$fd};
        POSIX::dup2($null, $fd);
    }
    POSIX::close($null);
}

sub _child {
    my ($args, $opt, $wr, $events, $stderr) = @_;
    @SERVERS = ();
    $SIG{$_} = 'DEFAULT' for qw(PIPE ALRM TERM INT HUP USR1 USR2 CHLD);
    alarm(defined $opt->{child_deadline} ? $opt->{child_deadline} : $CHILD_DEADLINE);

    # Drop every fd inherited from the test process (its client sockets
    # above all: a copy held here would keep a connection the test closes
    # open on the wire).
    # (not with a daemon built by the caller: it may own fds already)
    my %keep = map { $_ => 1 } fileno($wr), @{ $opt->{keep_fds} || [] };
    _close_fds(\%keep) unless $opt->{daemon};
    open STDIN, '<', '/dev/null';
    open STDOUT, '>>', $stderr;
    open STDERR, '>>', $stderr;
    STDOUT->autoflush(1);
    STDERR->autoflush(1);
    sysopen($LOG_FH, $events, O_WRONLY | O_APPEND | O_CREAT)
        or do { _tell($wr, "ERR events: $!"); POSIX::_exit(3) };

    my $d = $opt->{daemon};
    if (!$d) {
        $d = eval {
            IO::Socket::INET::Daemon->new(port => 0, host => '127.0.0.1', %$args);
        };
        if (!$d) {
            _tell($wr, 'ERR new: ' . (defined $@ ? $@ : '?'));
            POSIX::_exit(3);
        }
    }
    if (!$d->listen) {
        _tell($wr, "ERR listen: $!");
        POSIX::_exit(3);
    }
    my $port = $d->sockport;
    if ($opt->{child_init} && !eval { $opt->{child_init}->($d); 1 }) {
        _tell($wr, "ERR child_init: $@");
        POSIX::_exit(3);
    }
    _tell($wr, "PORT $port");
    close $wr;

    my $ok = eval {
        if (my $run = $opt->{child_run}) {
            $run->($d);
        }
        else {
            my $rv = $d->run;
            log_event('run_returned %s', $rv ? 1 : 0);
        }
        undef $d;
        log_event('child_done');
        1;
    };
    if (!$ok) {
        my $err = $@;
        eval { log_event('child_died %s', $err) };
        print STDERR "TestISD child died: $err";
        POSIX::_exit(2);
    }
    POSIX::_exit(0);
}

# log_event($fmt, @args): record one server-side observation (sprintf; undef
# args show as 'undef').  In a server child it goes to the event log read by
# $srv->events; elsewhere to local_events().
sub log_event {
    my ($fmt, @a) = @_;
    my $msg = @a ? sprintf($fmt, map { defined $_ ? $_ : 'undef' } @a) : $fmt;
    if (!$LOG_FH) {
        push @LOCAL_EVENTS, $msg;
        return;
    }
    $msg =~ s/\\/\\\\/g;
    $msg =~ s/\n/\\n/g;
    syswrite $LOG_FH, "$msg\n";
}

sub local_events {
    my @e = @LOCAL_EVENTS;
    @LOCAL_EVENTS = () if @_ && $_[0] eq 'clear';
    return @e;
}

# wait_until(sub { ... }, $timeout, $interval): poll until true; returns the
# true value or false at the deadline.
sub wait_until {
    my ($code, $timeout, $interval) = @_;
    $timeout  = 5    unless defined $timeout;
    $interval = 0.01 unless defined $interval;
    my $deadline = now() + $timeout;
    while (1) {
        my $r = $code->();
        return $r if $r;
        return 0 if now() >= $deadline;
        Time::HiRes::sleep($interval);
    }
}

# ------------------------------------------------------------------- clients

sub try_client {
    my ($port, %o) = @_;
    return IO::Socket::INET->new(
        PeerAddr => '127.0.0.1',
        PeerPort => $port,
        Proto    => 'tcp',
        Timeout  => (defined $o{timeout} ? $o{timeout} : 5),
    );
}

# client($port_or_server): a connected socket, or die.
sub client {
    my ($port, %o) = @_;
    my $srv = ref $port ? $port : undef;
    $port = $srv->port if $srv;
    my $s = try_client($port, %o);
    return $s if $s;
    my $why = "client: cannot connect to 127.0.0.1:$port: $@\n";
    if ($srv) {
        my $st = $srv->exited;
        $why .= defined $st ? sprintf("server child exited, wait status %d (exit %d, signal %d)\n",
                                      $st, $st >> 8, $st & 127)
                            : "server child still running\n";
        my $err = $srv->stderr;
        $why .= "server stderr:\n$err" if length $err;
        my @ev = $srv->events;
        splice @ev, 0, @ev - 10 if @ev > 10;
        $why .= "last server events:\n" . join('', map { "  $_\n" } @ev) if @ev;
    }
    die $why;
}

# Read once (up to $max bytes) into the socket's buffer, waiting until the
# absolute $deadline.  Returns bytes read, 0 at EOF/error (got_eof is set),
# undef when nothing came in time.
sub _fill {
    my ($sock, $deadline, $max) = @_;
    my $st = \%{ *$sock };
    return 0 if $st->{isd_eof};
    my $left = $deadline - now();
    $left = 0 if $left < 0;
    # (a TLS socket may hold decrypted bytes the kernel no longer sees)
    my @r = $sock->can('pending') && $sock->pending ? ($sock)
          : IO::Select->new($sock)->can_read($left);
    return undef unless @r;
    my $n = sysread($sock, my $buf, $max || 262144);
    if (!defined $n) {
        return undef if $!{EINTR} || $!{EAGAIN};
        $st->{isd_eof} = 1;
        $st->{isd_err} = "$!";
        return 0;
    }
    if ($n == 0) {
        $st->{isd_eof} = 1;
        return 0;
    }
    $st->{isd_rbuf} = '' unless defined $st->{isd_rbuf};
    $st->{isd_rbuf} .= $buf;
    return $n;
}

sub _buf { my $st = \%{ *{ $_[0] } }; $st->{isd_rbuf} = '' unless defined $st->{isd_rbuf}; \$st->{isd_rbuf} }

# read_line($sock, $timeout): the next "\n"-terminated line; at EOF the
# unterminated rest (if any); undef at EOF with nothing left or on timeout.
sub read_line {
    my ($sock, $timeout) = @_;
    my $deadline = now() + (defined $timeout ? $timeout : 5);
    my $buf = _buf($sock);
    while (1) {
        my $i = index($$buf, "\n");
        return substr($$buf, 0, $i + 1, '') if $i >= 0;
        if (got_eof($sock)) {
            return undef unless length $$buf;
            return substr($$buf, 0, length $$buf, '');
        }
        my $n = _fill($sock, $deadline);
        next if $n || (defined $n && $n == 0);
        return undef if now() >= $deadline;
    }
}

# ask($sock, $line, $timeout): send "$line\n", return the next line without
# its "\n" (undef: none within $timeout seconds, default 3).
sub ask {
    my ($sock, $line, $timeout) = @_;
    print $sock "$line\n";
    my $r = read_line($sock, defined $timeout ? $timeout : 3);
    $r =~ s/\n\z// if defined $r;
    return $r;
}

# echo_ping($sock, $msg, $timeout): send "$msg\n" to an echo server; true
# when it comes back unchanged within $timeout seconds (3).
sub echo_ping {
    my ($sock, $msg, $timeout) = @_;
    print $sock "$msg\n";
    my $r = read_line($sock, $timeout || 3);
    return defined $r && $r eq "$msg\n";
}

# read_n($sock, $n, $timeout): $n bytes, or fewer at EOF/timeout.
sub read_n {
    my ($sock, $want, $timeout) = @_;
    my $deadline = now() + (defined $timeout ? $timeout : 5);
    my $buf = _buf($sock);
    while (length $$buf < $want && !got_eof($sock)) {
        my $n = _fill($sock, $deadline, $want - length $$buf > 262144 ? 1048576 : 262144);
        last if !defined $n && now() >= $deadline;
    }
    return substr($$buf, 0, $want <= length $$buf ? $want : length $$buf, '');
}

# read_for($sock, $secs): whatever arrives within $secs (stops early at EOF).
sub read_for {
    my ($sock, $secs) = @_;
    my $deadline = now() + $secs;
    my $buf = _buf($sock);
    while (!got_eof($sock) && now() < $deadline) {
        _fill($sock, $deadline);
    }
    return substr($$buf, 0, length $$buf, '');
}

# read_until_eof($sock, $timeout): everything up to EOF (check got_eof: it is
# false when the deadline came first).
sub read_until_eof {
    my ($sock, $timeout) = @_;
    my $deadline = now() + (defined $timeout ? $timeout : 5);
    my $buf = _buf($sock);
    while (!got_eof($sock)) {
        my $n = _fill($sock, $deadline, 1048576);
        last if !defined $n && now() >= $deadline;
    }
    return substr($$buf, 0, length $$buf, '');
}

# got_eof($sock): true once a read saw EOF or an error (ECONNRESET...).
sub got_eof { my $st = \%{ *{ $_[0] } }; $st->{isd_eof} ? 1 : 0 }

# send_all($sock, $data, $timeout): write everything without ever blocking
# past the deadline; returns the bytes written (fewer on error/timeout, the
# error in ${*$sock}{isd_werr}).
sub send_all {
    my ($sock, $data, $timeout) = @_;
    my $deadline = now() + (defined $timeout ? $timeout : 5);
    my $was = $sock->blocking(0);
    my ($off, $len) = (0, length $data);
    my $sel = IO::Select->new($sock);
    while ($off < $len) {
        my $n = syswrite($sock, $data, $len - $off, $off);
        if (defined $n) {
            $off += $n;
            next;
        }
        if (!($!{EAGAIN} || $!{EWOULDBLOCK} || $!{EINTR})) {
            ${ *$sock }{isd_werr} = "$!";
            last;
        }
        my $left = $deadline - now();
        last if $left <= 0;
        $sel->can_write($left);
    }
    $sock->blocking($was) if defined $was;
    return $off;
}

# ----------------------------------------------------------- server object

package TestISD::Server;

use strict;
use warnings;
use POSIX ();

sub port { $_[0]{port} }
sub pid  { $_[0]{pid} }

sub _slurp {
    my ($file) = @_;
    open my $fh, '<', $file or return '';
    local $/;
    my $s = <$fh>;
    return defined $s ? $s : '';
}

# events: every log_event of the child, in order.
sub events {
    my ($self) = @_;
    my @e = split /\n/, _slurp($self->{events_file});
    s/\\([\\n])/$1 eq 'n' ? "\n" : "\\"/ge for @e;
    return @e;
}

# grep_events(qr//), count(qr//)
sub grep_events { my ($self, $re) = @_; grep { $_ =~ $re } $self->events }
sub count { my ($self, $re) = @_; scalar(() = $self->grep_events($re)) }

# wait_event(qr//, $timeout, $n): true once $n (1) events match.
sub wait_event {
    my ($self, $re, $timeout, $n) = @_;
    $n = 1 unless defined $n;
    return TestISD::wait_until(sub { $self->count($re) >= $n }, $timeout);
}

sub stderr { _slurp($_[0]{stderr_file}) }

# exited: the wait status once the child is gone, else undef.
sub exited {
    my ($self) = @_;
    return $self->{status} if exists $self->{status};
    local $?;
    my $r = waitpid($self->{pid}, POSIX::WNOHANG());
    if ($r == $self->{pid} || $r == -1) {
        $self->{status} = $r == -1 ? -1 : $?;
        $self->_forward_stderr;
        return $self->{status};
    }
    return undef;
}

sub alive { !defined $_[0]->exited }

# wait_exit($timeout): the wait status, or undef if still running.
sub wait_exit {
    my ($self, $timeout) = @_;
    my $st;
    TestISD::wait_until(sub { defined($st = $self->exited) }, defined $timeout ? $timeout : 5);
    return $st;
}

# stop: SIGTERM, wait up to 2s, then SIGKILL.  Returns the wait status: 15
# (killed by SIGTERM) for a server child without a TERM handler, 9 when
# SIGTERM was not acted upon (blocked or ignored) and SIGKILL was needed.
sub stop {
    my ($self) = @_;
    return $self->{status} if exists $self->{status};
    return undef unless $self->{owner} == $$;
    kill 'TERM', $self->{pid};
    my $st = $self->wait_exit(2);
    if (!defined $st) {
        kill 'KILL', $self->{pid};
        $st = $self->wait_exit(5);
    }
    return $st;
}

# The child's STDERR goes to a file (tests look for warnings there).  Crash
# and sanitizer reports must still reach the harness (CI greps the output
# of `make asan-test` for them), so once the child is gone they are copied
# to our STDERR; with TEST_VERBOSE everything is.
my $ALARMING = qr/AddressSanitizer|LeakSanitizer|runtime error:|panic|Attempt to free|Use of freed|double free|corruption|Segmentation|TestISD child died/;

sub _forward_stderr {
    my ($self) = @_;
    return if $self->{forwarded}++;
    my $err = $self->stderr;
    return unless length $err;
    return unless $ENV{TEST_VERBOSE} || $err =~ $ALARMING;
    $err =~ s/^/# server $self->{pid}: /mg;
    print STDERR $err, ($err =~ /\n\z/ ? '' : "\n");
}

sub DESTROY {
    my ($self) = @_;
    return unless $self->{owner} == $$;
    local ($?, $!, $@);
    $self->stop;
    $self->_forward_stderr;
}

1;
