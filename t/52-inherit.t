#!perl
# Inherited sockets and systemd's notification protocol (LISTENING, SYSTEMD
# AND SERVER::STARTER), with the real tools:
# - socket activation by systemd-socket-activate: a TCP and a UNIX socket
#   handed down (LISTEN_FDS), adopted by SPECs that match them, by
#   'systemd' and 'systemd:NAME', and by a 0.04 port/host script; the
#   LISTEN_* variables are gone from the server's %ENV; the socket file is
#   systemd's and stays;
# - listen => ['fd:N']: served; a descriptor that is not a listening stream
#   socket makes listen fail with $! saying why, undoing what it bound but
#   never closing an inherited descriptor;
# - LISTEN_* meant for another process, or naming a descriptor that is not
#   a socket: a warning, ignored, removed from %ENV;
# - an adopted socket is the adopting daemon's: listening again after its
#   destroy, and a second daemon of the process (neither takes the closed
#   or owned fd again);
# - a HUP to start_server (Server::Starter) under traffic: no connection
#   refused, two generations answer, no reply lost (the old worker stops
#   with stop(grace => ...));
# - sd_notify: READY=1 with MAINPID, WATCHDOG=1 from the event loop (not
#   while a callback is stuck), STOPPING=1; an abstract NOTIFY_SOCKET; no
#   watchdog without WATCHDOG_USEC or with a WATCHDOG_PID of another process.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use TestISD qw(:DEFAULT ask);
use TestProc;
use Test::More;
use Cwd ();
use Errno ();
use File::Temp ();
use IO::Select ();
use IO::Socket::INET ();
use IO::Socket::UNIX ();
use POSIX ();
use Socket ();
use IO::Socket::INET::Daemon;

my $BLIB = Cwd::abs_path("$FindBin::Bin/../blib");
my @PERL = ($^X, "-I$BLIB/lib", "-I$BLIB/arch");
my $SD_ACTIVATE = '/usr/bin/systemd-socket-activate';
my $START_SERVER = '/usr/bin/start_server';
my $TMP = File::Temp->newdir('isd-inherit-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my @BACKENDS = backends();

# stdin is not a socket (for 'fd:0'); nothing is inherited from whoever
# runs the tests
open STDIN, '<', '/dev/null' or die "stdin: $!";
delete @ENV{qw(LISTEN_PID LISTEN_FDS LISTEN_FDNAMES SERVER_STARTER_PORT
               NOTIFY_SOCKET WATCHDOG_USEC WATCHDOG_PID)};

# ------------------------------------------------------------- processes

sub unix_client {
    my ($path) = @_;
    my $c = IO::Socket::UNIX->new(Peer => $path, Type => Socket::SOCK_STREAM(), Timeout => 3)
        or die "cannot connect to $path: $!\n";
    return $c;
}

# --------------------------------------------- 1. systemd-socket-activate

my $SA_SCRIPT = "$TMP/activated.pl";
spit($SA_SCRIPT, <<'EOS');
use strict;
use warnings;
use POSIX ();
use IO::Socket::INET::Daemon;
$SIG{ALRM} = sub { print STDERR "server deadline\n"; POSIX::_exit(9) };
alarm 20;
$| = 1;
my ($mode, $port, $path, $be) = @ARGV;
my $v = sub { defined $ENV{$_[0]} ? $ENV{$_[0]} : 'none' };
print STDERR "server start pid=$$ LISTEN_FDS=", $v->('LISTEN_FDS'),
             " LISTEN_FDNAMES=", $v->('LISTEN_FDNAMES'), "\n";
my %where = (
    both  => { listen => ["127.0.0.1:$port", "unix:$path"] },
    admin => { listen => ['systemd:admin'] },
    all   => { listen => ['systemd'] },
    nope  => { listen => ['systemd:nope'] },
    old   => { port => $port, host => '127.0.0.1' },
);
my $server = IO::Socket::INET::Daemon->new(%{ $where{$mode} }, backend => $be, callback => {
    add => sub {
        my ($io) = @_;
        $io->print("pid=$$ fds=" . $v->('LISTEN_FDS') . " sock=" . $io->sockhost . "\n");
        1;
    },
    data => sub {
        my ($io, $d, $l) = @_;
        if    ($l eq "addresses\n") { $io->print(join(' ', $d->addresses), "\n") }
        elsif ($l eq "env\n")       { $io->print(join(' ', map { "$_=" . $v->($_) } qw(LISTEN_PID LISTEN_FDS LISTEN_FDNAMES)), "\n") }
        elsif ($l eq "backend\n")   { $io->print($d->backend, "\n") }
        elsif ($l eq "stop\n")      { $io->print("stopping\n"); $d->stop }
        else                        { $io->print("echo $l") }
        1;
    },
});
$SIG{TERM} = sub { $server->stop };
if (!$server->run) {
    printf STDERR "server run failed: errno=%d (%s)\n", $! + 0, $!;
    exit 3;
}
print STDERR "server stopped\n";
exit 0;
EOS

# systemd-socket-activate on 127.0.0.1:PORT (fd 3, "web") and a UNIX
# socket (fd 4, "admin"), ready to exec the server at the first connection
sub activate {
    my ($mode, $be) = @_;
    my $port = free_port();
    my $path = "$TMP/sa-$mode-$be.sock";
    my $out  = "$TMP/sa-$mode-$be.out";
    # (it passes its child a clean environment: what a sanitizer build
    # needs to load is handed on explicitly)
    my @keep = map { ('-E', $_) } grep { defined $ENV{$_} }
               qw(LD_PRELOAD ASAN_OPTIONS UBSAN_OPTIONS PERL_DESTRUCT_LEVEL);
    my $pid = spawn([$SD_ACTIVATE, '-l', "127.0.0.1:$port", '-l', $path, '--fdname=web:admin', @keep,
                     @PERL, $SA_SCRIPT, $mode, $port, $path, $be], out => $out);
    wait_until(sub { (() = slurp($out) =~ /^Listening on /mg) >= 2 }, 5)
        or die "systemd-socket-activate is not listening:\n" . slurp($out);
    ok(-S $path, "$mode: systemd-socket-activate made the socket file");
    return { pid => $pid, port => $port, path => $path, out => $out, mode => $mode };
}

# the server answers "stop", exits 0, and has warned about nothing
sub activated_stop {
    my ($sa, $c) = @_;
    is(ask($c, 'stop'), 'stopping', "$sa->{mode}: stop");
    my $st = reap($sa->{pid}, 5);
    is($st, 0, "$sa->{mode}: the server exits 0 after stop");
    end_kid($sa->{pid}) unless defined $st;
    my $out = slurp($sa->{out});
    like($out, qr/^server start pid=$sa->{pid} LISTEN_FDS=2 LISTEN_FDNAMES=web:admin$/m,
         "$sa->{mode}: the server is systemd-socket-activate's process, exec'd with LISTEN_FDS=2")
        or diag($out);
    like($out, qr/^server stopped$/m, "$sa->{mode}: run returned");
    unlike($out, qr/IO::Socket::INET::Daemon:|\bat \S+ line \d+/, "$sa->{mode}: no warning")
        or diag($out);
    ok(-S $sa->{path}, "$sa->{mode}: the socket file (systemd's) is still there after the server ended");
}

SKIP: {
    skip "$SD_ACTIVATE is not installed (Debian package systemd)", 1 unless -x $SD_ACTIVATE;

    for my $be (@BACKENDS) {
        isd_subtest "socket activation: 127.0.0.1:PORT and unix:PATH adopt the passed sockets, backend $be" => sub {
            my $sa = activate('both', $be);
            my $c = try_client($sa->{port}, timeout => 3) or die "connect: $@\n";
            is(read_line($c, 5), "pid=$sa->{pid} fds=none sock=127.0.0.1\n",
               'the TCP client is served by the exec\'d server, LISTEN_FDS gone from its %ENV');
            my $u = unix_client($sa->{path});
            is(read_line($u, 3), "pid=$sa->{pid} fds=none sock=$sa->{path}\n",
               'the UNIX client is served by the same process');
            is(ask($c, 'addresses'), "127.0.0.1:$sa->{port} unix:$sa->{path}",
               '$server->addresses lists both, and only them');
            is(ask($u, 'env'), 'LISTEN_PID=none LISTEN_FDS=none LISTEN_FDNAMES=none',
               'LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES are removed from %ENV');
            is(ask($u, 'backend'), $be, "backend $be");
            is(ask($c, 'x'), 'echo x', 'TCP echo');
            is(ask($u, 'y'), 'echo y', 'UNIX echo');
            my $c2 = try_client($sa->{port}, timeout => 3);
            ok($c2 && read_line($c2, 3) eq "pid=$sa->{pid} fds=none sock=127.0.0.1\n",
               'a second TCP client: the same process');
            close $c2 if $c2;
            close $u;
            activated_stop($sa, $c);
            close $c;
        };

        isd_subtest "socket activation: 'systemd:admin' adopts only the socket named admin, backend $be" => sub {
            my $sa = activate('admin', $be);
            my $u = unix_client($sa->{path});
            is(read_line($u, 5), "pid=$sa->{pid} fds=none sock=$sa->{path}\n", 'the UNIX (admin) client is served');
            is(ask($u, 'addresses'), "unix:$sa->{path}", 'addresses: the admin socket alone');
            my $c = try_client($sa->{port}, timeout => 3);
            # (fd 3 stays open, unserved: the kernel completes the connect)
            is($c ? read_for($c, 0.3) : 'no connect', '', 'the web socket (fd 3) is not served');
            close $c if $c;
            is(ask($u, 'env'), 'LISTEN_PID=none LISTEN_FDS=none LISTEN_FDNAMES=none', 'LISTEN_* removed');
            activated_stop($sa, $u);
            close $u;
        };

        isd_subtest "socket activation: 'systemd' adopts both, backend $be" => sub {
            my $sa = activate('all', $be);
            my $c = try_client($sa->{port}, timeout => 3) or die "connect: $@\n";
            is(read_line($c, 5), "pid=$sa->{pid} fds=none sock=127.0.0.1\n", 'TCP served');
            my $u = unix_client($sa->{path});
            is(read_line($u, 3), "pid=$sa->{pid} fds=none sock=$sa->{path}\n", 'UNIX served by the same process');
            is(ask($u, 'addresses'), "127.0.0.1:$sa->{port} unix:$sa->{path}", 'addresses: both, in fd order');
            close $u;
            activated_stop($sa, $c);
            close $c;
        };

        isd_subtest "socket activation: a 0.04 script (port, host) adopts the matching socket, backend $be" => sub {
            my $sa = activate('old', $be);
            my $c = try_client($sa->{port}, timeout => 3) or die "connect: $@\n";
            is(read_line($c, 5), "pid=$sa->{pid} fds=none sock=127.0.0.1\n",
               'port => PORT, host => 127.0.0.1: served on the passed socket (its own bind would fail: fd 3 holds the port)');
            is(ask($c, 'addresses'), "127.0.0.1:$sa->{port}", 'addresses: that socket alone');
            my $u = unix_client($sa->{path});
            is(read_for($u, 0.3), '', 'the UNIX socket it did not ask for is not served');
            close $u;
            activated_stop($sa, $c);
            close $c;
        };
    }

    isd_subtest "socket activation: 'systemd:nope' (no such name) makes run fail with ENOENT" => sub {
        my $sa = activate('nope', $BACKENDS[0]);
        my $c = try_client($sa->{port}, timeout => 3);    # (starts the server)
        ok($c, 'connect (activates)');
        my $st = reap($sa->{pid}, 5);
        is($st, 3 << 8, 'the server\'s run returned false (exit 3)');
        end_kid($sa->{pid}) unless defined $st;
        my $enoent = Errno::ENOENT();
        like(slurp($sa->{out}), qr/^server run failed: errno=$enoent\b/m, '$! is ENOENT');
        close $c if $c;
    };
}

# systemd-socket-activate --datagram: a UDP socket (ListenDatagram=),
# adopted by a udp: SPEC of its address or by 'systemd'
my $SA_UDP = "$TMP/activated-udp.pl";
spit($SA_UDP, <<'EOS');
use strict;
use warnings;
use POSIX ();
use IO::Socket::INET::Daemon;
$SIG{ALRM} = sub { print STDERR "server deadline\n"; POSIX::_exit(9) };
alarm 20;
my ($mode, $port, $be) = @ARGV;
my $server = IO::Socket::INET::Daemon->new(backend => $be,
    listen => [ $mode eq 'addr' ? "udp:127.0.0.1:$port" : 'systemd' ],
    callback => { data => sub {
        my ($io, $d, $m) = @_;
        if ($m eq 'stop') { $io->print('stopping'); $d->stop; return 1 }
        $io->print("pid=$$ fds=" . (defined $ENV{LISTEN_FDS} ? $ENV{LISTEN_FDS} : 'none')
                   . ' ' . join(' ', $d->addresses) . " echo $m");
        1;
    } });
if (!$server->run) {
    printf STDERR "server run failed: errno=%d (%s) %s\n", $! + 0, $!, $@;
    exit 3;
}
print STDERR "server stopped\n";
exit 0;
EOS

SKIP: {
    skip "$SD_ACTIVATE is not installed (Debian package systemd)", 1 unless -x $SD_ACTIVATE;
    for my $mode (qw(addr systemd)) {
        my $be = $BACKENDS[$mode eq 'addr' ? 0 : -1];
        my $what = $mode eq 'addr' ? "'udp:127.0.0.1:PORT'" : "'systemd'";
        isd_subtest "socket activation --datagram: $what adopts the passed UDP socket, backend $be" => sub {
            my $port = free_port('udp');
            my $out = "$TMP/sa-udp-$mode.out";
            my @keep = map { ('-E', $_) } grep { defined $ENV{$_} }
                       qw(LD_PRELOAD ASAN_OPTIONS UBSAN_OPTIONS PERL_DESTRUCT_LEVEL);
            my $pid = spawn([$SD_ACTIVATE, '--datagram', '-l', "127.0.0.1:$port", @keep,
                             @PERL, $SA_UDP, $mode, $port, $be], out => $out);
            wait_until(sub { slurp($out) =~ /^Listening on /m }, 5)
                or die "systemd-socket-activate is not listening:\n" . slurp($out);
            my $u = IO::Socket::INET->new(Proto => 'udp', PeerAddr => '127.0.0.1', PeerPort => $port)
                or die "udp client: $@";
            my $ask = sub {
                my ($m) = @_;
                $u->send($m) or return "send: $!";
                my $r;
                return IO::Select->new($u)->can_read(5) && defined $u->recv($r, 1000) ? $r : 'no reply';
            };
            # (the first datagram starts the server: it is read by the server)
            is($ask->('one'), "pid=$pid fds=none udp:127.0.0.1:$port echo one",
               'the first datagram is answered by the exec\'d server, on the passed socket, LISTEN_FDS gone');
            is($ask->('two'), "pid=$pid fds=none udp:127.0.0.1:$port echo two", 'and the next');
            is($ask->('stop'), 'stopping', 'stop');
            my $st = reap($pid, 5);
            is($st, 0, 'the server exits 0');
            end_kid($pid) unless defined $st;
            my $o = slurp($out);
            like($o, qr/^server stopped$/m, 'run returned') or diag($o);
            unlike($o, qr/IO::Socket::INET::Daemon:|\bat \S+ line \d+/, 'no warning') or diag($o);
        };
    }
}

# ------------------------------------------------------------- 2. fd:N

for my $be (@BACKENDS) {
    isd_subtest "listen => ['fd:N', 'fd:M']: an inherited TCP and UNIX listener, backend $be" => sub {
        my $l = IO::Socket::INET->new(Listen => 5, LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp')
            or die "tcp listener: $@";
        my $upath = "$TMP/fd-$be.sock";
        my $u = IO::Socket::UNIX->new(Local => $upath, Listen => 5, Type => Socket::SOCK_STREAM())
            or die "unix listener: $!";
        my ($lfd, $ufd) = (fileno $l, fileno $u);
        my $srv = start_server(
            backend  => $be,
            listen   => ["fd:$lfd", "fd:$ufd"],
            keep_fds => [$lfd, $ufd],
            callback => {
                add  => sub { $_[0]->print("hi $$ " . $_[0]->sockhost . "\n"); 1 },
                data => sub { $_[0]->print("echo $_[2]"); 1 },
            },
            child_init => sub {
                my ($d) = @_;
                log_event('addresses %s', join ' ', $d->addresses);
                $SIG{TERM} = sub { $d->stop };
            },
            child_run => sub {
                my ($d) = @_;
                my $rv = $d->run;
                $d->destroy;
                log_event('after destroy: tcp fd %s, unix fd %s, file %s',
                          defined getsockname($l) ? 'open' : 'closed',
                          defined getsockname($u) ? 'open' : 'closed',
                          -S $upath ? 'kept' : 'gone');
            },
        );
        is($srv->port, $l->sockport, 'sockport: the inherited TCP socket\'s');
        my $pid = $srv->pid;
        my $c = client($srv);
        is(read_line($c, 3), "hi $pid 127.0.0.1\n", 'a TCP client is served by the server child');
        my $uc = unix_client($upath);
        is(read_line($uc, 3), "hi $pid $upath\n", 'a UNIX client too');
        is(ask($c, 'a'), 'echo a', 'TCP echo');
        is(ask($uc, 'b'), 'echo b', 'UNIX echo');
        ok($srv->wait_event(qr/^addresses /, 1), 'addresses logged');
        is(($srv->grep_events(qr/^addresses /))[0], 'addresses 127.0.0.1:' . $l->sockport . " unix:$upath",
           'addresses: both inherited sockets');
        close $_ for $c, $uc;
        is($srv->stop, 0, 'TERM: run returns, the child exits 0');
        is(($srv->grep_events(qr/^after destroy/))[0], 'after destroy: tcp fd closed, unix fd closed, file kept',
           'destroy closes the inherited fds, leaves the socket file');
        is($srv->stderr, '', 'nothing on the server\'s stderr');

        # the parent's copies: not shut down, still listening
        ok(-S $upath, 'the socket file is still there');
        my $c2 = try_client($l->sockport, timeout => 3);
        ok($c2 && IO::Select->new($l)->can_read(3), 'the parent\'s TCP listener still gets connections');
        my $a = $c2 && $l->accept;
        ok($a, 'and accepts them (the server did not shut the socket down)');
        my $uc2 = IO::Socket::UNIX->new(Peer => $upath, Type => Socket::SOCK_STREAM(), Timeout => 3);
        ok($uc2 && IO::Select->new($u)->can_read(3) && $u->accept, 'the parent\'s UNIX listener too');
        close $_ for grep defined, $c2, $a, $uc2, $l, $u;
        unlink $upath;
    };
}

subtest "fd:N that is not a listening stream socket: listen fails, nothing inherited is closed" => sub {
    my $fails = sub {
        my ($name, $spec, $errno) = @_;
        my $d = IO::Socket::INET::Daemon->new(listen => $spec);
        my $ok = $d->listen;
        my $e = $! + 0;
        ok(!$ok, "$name: listen returns false");
        is($e, $errno, "$name: \$! is " . do { local $! = $errno; "$!" });
        is(scalar(() = $d->addresses), 0, "$name: no address");
        return $d;
    };
    ok(!defined getsockname(STDIN), 'stdin is not a socket here');
    $fails->('fd:0 (stdin from /dev/null)', ['fd:0'], Errno::ENOTSOCK());

    # (a UDP socket bound to a port is served: t/53)
    socket(my $udp, Socket::AF_UNIX(), Socket::SOCK_DGRAM(), 0) or die "socket: $!";
    my $ufd = fileno $udp;
    $fails->('a UNIX datagram socket', ["fd:$ufd"], Errno::EPROTOTYPE());
    socket(my $unb, Socket::AF_INET(), Socket::SOCK_DGRAM(), 0) or die "socket: $!";
    $fails->('a UDP socket bound to no port', ['fd:' . fileno $unb], Errno::EINVAL());

    socket(my $t, Socket::AF_INET(), Socket::SOCK_STREAM(), 0) or die "socket: $!";
    bind($t, Socket::pack_sockaddr_in(0, Socket::inet_aton('127.0.0.1'))) or die "bind: $!";
    $fails->('a bound TCP socket that is not listening', ['fd:' . fileno $t], Errno::EINVAL());

    my $closed = POSIX::dup(0);
    POSIX::close($closed);
    $fails->("a descriptor that is not open (fd $closed)", ["fd:$closed"], Errno::EBADF());

    my $apath = "$TMP/a.sock";
    {
        my $d = $fails->('unix:PATH then a UNIX datagram fd', ["unix:$apath", "fd:$ufd"], Errno::EPROTOTYPE());
        ok(!-e $apath, 'the UNIX socket file it made is removed again');
        ok(defined getsockname($udp), 'the inherited datagram fd is not closed');
        undef $d;
        ok(defined getsockname($udp), 'nor by DESTROY');
    }

    my $l = IO::Socket::INET->new(Listen => 5, LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp')
        or die "tcp listener: $@";
    {
        my $d = $fails->('a good fd:N, unix:PATH, then a non-socket',
                         ['fd:' . fileno $l, "unix:$apath", 'fd:0'], Errno::ENOTSOCK());
        ok(!-e $apath, 'the UNIX socket file is removed again');
        undef $d;
        ok(defined getsockname($l), 'the good inherited listener is not closed');
        my $c = try_client($l->sockport, timeout => 3);
        ok($c && IO::Select->new($l)->can_read(3) && $l->accept, 'and still listening');
        close $c if $c;
    }
    {
        # the same daemon listens once the SPECs are good (nothing left half-bound)
        my $d = IO::Socket::INET::Daemon->new(listen => ['fd:' . fileno $l, "unix:$apath"]);
        ok($d->listen, 'good fd:N and unix:PATH: listen succeeds');
        is(join(' ', $d->addresses), '127.0.0.1:' . $l->sockport . " unix:$apath", 'addresses');
        $d->destroy;
        ok(!-e $apath, 'destroy removes the socket file it made');
        ok(!defined getsockname($l), 'and closes the inherited fd (POD: "The server closes it in destroy")');
    }
    close $_ for $udp, $unb, $t;
};

# --------------------------------------------------- 3. bogus LISTEN_*

# In a child: fd 3 is $fd3 (a handle), %$env is set, and a server that
# listens on $where (new's options) is made and run.  Reports (a line in
# $res): "listen=0|1 errno=N port=P addresses=A env=E warnings=W".
sub bogus_env_server {
    my ($be, $fd3, $env, $where, $res) = @_;
    my $out = "$res.stderr";
    my $pid = fork;
    die "fork: $!" unless defined $pid;
    if (!$pid) {
        POSIX::setpgid(0, 0);
        alarm 20;
        $SIG{$_} = 'DEFAULT' for qw(ALRM TERM PIPE);
        open STDOUT, '>>', $out;
        open STDERR, '>>', $out;
        POSIX::dup2(fileno($fd3), 3) == 3 or POSIX::_exit(4);
        open my $rfh, '>', $res or POSIX::_exit(5);
        $rfh->autoflush(1);
        my $ok = eval {
            $ENV{$_} = $env->{$_} for keys %$env;
            $env->{LISTEN_PID} = $$ if $env->{LISTEN_PID} eq 'self';
            $ENV{LISTEN_PID} = $env->{LISTEN_PID};
            my @w;
            local $SIG{__WARN__} = sub { push @w, $_[0] };
            my $d = IO::Socket::INET::Daemon->new(%$where, backend => $be, callback => {
                data => sub {
                    my ($io, $d, $l) = @_;
                    $io->print("$$ echo $l");
                    1;
                },
            });
            my $l = $d->listen;
            my $e = $! + 0;
            my $envs = join ',', map { "$_=" . (defined $ENV{$_} ? $ENV{$_} : 'none') } qw(LISTEN_PID LISTEN_FDS);
            (my $w = join '|', @w) =~ s/\n/ /g;
            print $rfh 'listen=' . ($l ? 1 : 0) . " errno=$e port=" . ($d->sockport || 0)
                . ' addresses=' . join(',', $d->addresses) . " env=$envs warnings=$w\n";
            close $rfh;
            $SIG{TERM} = sub { $d->stop };
            $d->run if $l;
            1;
        };
        print STDERR "bogus env child: $@" unless $ok;
        POSIX::_exit($ok ? 0 : 2);
    }
    track($pid);
    my $line;
    wait_until(sub { ($line) = slurp($res) =~ /\A(.*)\n/; defined $line }, 5);
    return ($pid, $line, $out);
}

for my $be (@BACKENDS) {
    isd_subtest "LISTEN_PID of another process: warned, ignored, removed; the server binds its own, backend $be" => sub {
        # fd 3: a listening socket, which must not be taken
        my $l3 = IO::Socket::INET->new(Listen => 5, LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp')
            or die "listener: $@";
        my $other = $$;
        my ($pid, $line, $out) = bogus_env_server($be, $l3, { LISTEN_PID => $other, LISTEN_FDS => 1 },
                                                  { listen => ['127.0.0.1:0'] }, "$TMP/bogus-pid-$be");
        ok(defined $line, 'the child reported') or diag(slurp($out));
        $line = '' unless defined $line;
        like($line, qr/^listen=1 /, 'listen succeeds');
        my ($port) = $line =~ /port=(\d+)/;
        ok($port && $port != $l3->sockport, 'on a port of its own, not the one of fd 3');
        like($line, qr/ addresses=127\.0\.0\.1:$port /, 'addresses: its own socket alone') if $port;
        like($line, qr/ env=LISTEN_PID=none,LISTEN_FDS=none /, 'LISTEN_PID and LISTEN_FDS removed from %ENV');
        my ($w) = $line =~ / warnings=(.*)$/;
        like($w, qr/LISTEN_FDS.*\b$other\b/, 'a warning names LISTEN_FDS and the pid it is meant for');
        is(scalar(() = ($w || '') =~ /IO::Socket::INET::Daemon:/g), 1, 'one warning');
        my $c = $port && try_client($port, timeout => 3);
        ok($c, 'a client connects to it');
        is($c ? ask($c, 'x') : undef, "$pid echo x", 'and is served');
        close $c if $c;
        is(end_kid($pid), 0, 'TERM: the child ends its run and exits 0');
        is(slurp($out), '', 'nothing else on its stderr');
        close $l3;
    };

    isd_subtest "LISTEN_FDS=1 for this process with fd 3 a plain file: warned 'not a socket', ignored, backend $be" => sub {
        my $file = "$TMP/plain-$be";
        spit($file, "not a socket\n");
        open my $fh, '<', $file or die "$file: $!";
        my ($pid, $line, $out) = bogus_env_server($be, $fh, { LISTEN_PID => 'self', LISTEN_FDS => 1 },
                                                  { port => 0, host => '127.0.0.1' }, "$TMP/bogus-file-$be");
        ok(defined $line, 'the child reported') or diag(slurp($out));
        $line = '' unless defined $line;
        like($line, qr/^listen=1 /, 'listen (a 0.04 port/host server) succeeds');
        my ($port) = $line =~ /port=(\d+)/;
        ok($port, 'on a port of its own');
        like($line, qr/ env=LISTEN_PID=none,LISTEN_FDS=none /, 'LISTEN_PID and LISTEN_FDS removed from %ENV');
        my ($w) = $line =~ / warnings=(.*)$/;
        like($w, qr/fd 3.*not a socket/, "a warning: fd 3 is 'not a socket'");
        is(scalar(() = ($w || '') =~ /IO::Socket::INET::Daemon:/g), 1, 'one warning');
        my $c = $port && try_client($port, timeout => 3);
        is($c ? ask($c, 'y') : undef, "$pid echo y", 'a client is served');
        close $c if $c;
        is(end_kid($pid), 0, 'TERM: the child exits 0');
        is(slurp($out), '', 'nothing else on its stderr');
        close $fh;
    };
}

# An adopted socket belongs to the daemon that took it: its destroy closes
# it.  In a child, with fd 3 a listening socket passed for this process:
# 'relisten': a daemon adopts it, is destroyed, and listens again (destroy:
# "run starts listening anew"); 'two': a second daemon asks for the same
# address while the first holds it, the first is destroyed, a file opened
# next takes fd 3, the second is destroyed.  Returns the child's report.
sub adopted_once {
    my ($mode) = @_;
    my $res = "$TMP/adopted-$mode";
    my $l = IO::Socket::INET->new(Listen => 5, LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp')
        or die "listener: $@";
    my $port = $l->sockport;
    my $pid = fork;
    die "fork: $!" unless defined $pid;
    if (!$pid) {
        alarm 10;
        $SIG{ALRM} = 'DEFAULT';
        POSIX::dup2(fileno($l), 3) == 3 or POSIX::_exit(4) if fileno($l) != 3;
        open my $r, '>', $res or POSIX::_exit(5);
        $r->autoflush(1);
        local $SIG{__WARN__} = sub { (my $w = $_[0]) =~ s/\n/ /g; print $r "warning $w\n" };
        $ENV{LISTEN_PID} = $$;
        $ENV{LISTEN_FDS} = 1;
        my $addrs = sub { join(',', $_[0]->addresses) || 'none' };
        eval {
            my $a = IO::Socket::INET::Daemon->new(port => $port, host => '127.0.0.1');
            print $r 'a listen=' . ($a->listen ? 1 : 0) . ' ' . $addrs->($a) . "\n";
            if ($mode eq 'relisten') {
                $a->destroy;
                my $ok = $a->listen;
                print $r 'relisten=' . ($ok ? 1 : 0) . ' errno=' . ($! + 0) . ' ' . $addrs->($a) . "\n";
            }
            else {
                my $b = IO::Socket::INET::Daemon->new(listen => ["127.0.0.1:$port"]);
                my $ok = $b->listen;
                print $r 'b listen=' . ($ok ? 1 : 0) . ' errno=' . ($! + 0) . ' ' . $addrs->($b) . "\n";
                $a->destroy;
                open my $fh, '<', $res or die "$res: $!";
                my $fd = fileno $fh;
                undef $b;
                print $r "file fd $fd after b's destroy: "
                    . (defined sysread($fh, my $x, 1) ? 'open' : "closed ($!)") . "\n";
            }
            1;
        } or print $r "died $@\n";
        close $r;
        POSIX::_exit(0);
    }
    track($pid);
    reap($pid, 5);
    close $l;
    return slurp($res);
}

isd_subtest 'an adopted systemd socket is closed by destroy, then not taken again' => sub {
    my $r = adopted_once('relisten');
    like($r, qr/^a listen=1 127\.0\.0\.1:\d+$/m, 'a 0.04 port/host daemon adopts fd 3');
    unlike($r, qr/^(?:warning|died) /m, 'no warning') or diag($r);
    # destroy closed the adopted socket; listening again binds anew, which
    # fails while its owner (systemd; here the test's own copy) holds the
    # address: EADDRINUSE, not EBADF from taking the closed fd 3 again
    like($r, qr/^relisten=0 errno=@{[ Errno::EADDRINUSE() ]} /m,
         'destroy, then listen again: binds anew (EADDRINUSE while the owner holds it), not the closed fd');
    like($r, qr/^relisten=/m, 'the child reported');
};

isd_subtest 'two daemons of one process and one inherited socket: no double close' => sub {
    my $r = adopted_once('two');
    like($r, qr/^a listen=1 127\.0\.0\.1:\d+$/m, 'the first daemon adopts fd 3');
    like($r, qr/^file fd 3 after b's destroy: /m, 'the child reported; the file opened took fd 3') or diag($r);
    unlike($r, qr/^b listen=1 /m, 'the second daemon does not take the socket the first one owns');
    like($r, qr/^file fd 3 after b's destroy: open$/m,
         'the second daemon\'s destroy does not close a descriptor opened after the first one closed fd 3');
};

# ------------------------------------------------- 4. Server::Starter HUP

my $SS_SCRIPT = "$TMP/starter.pl";
spit($SS_SCRIPT, <<'EOS');
use strict;
use warnings;
use POSIX ();
use IO::Socket::INET::Daemon;
$SIG{ALRM} = sub { print STDERR "worker deadline\n"; POSIX::_exit(9) };
alarm 20;
my ($port) = @ARGV;
print STDERR "worker $$ SERVER_STARTER_PORT=", (defined $ENV{SERVER_STARTER_PORT} ? $ENV{SERVER_STARTER_PORT} : 'none'), "\n";
my $server = IO::Socket::INET::Daemon->new(port => $port, host => '127.0.0.1', callback => {
    data => sub { my ($io, $d, $l) = @_; $io->print("$$ $l"); 1 },
});
$SIG{TERM} = sub { $server->stop(grace => 5) };   # (what it accepted is answered)
$server->run or do { print STDERR "worker $$ run failed: $!\n"; exit 3 };
print STDERR "worker $$ stopped: addresses ", join(' ', $server->addresses), "\n";
exit 0;
EOS

SKIP: {
    skip "$START_SERVER is not installed (Debian package libserver-starter-perl)", 1 unless -x $START_SERVER;

    isd_subtest 'start_server: a HUP under traffic refuses nothing and loses no reply' => sub {
        my $port = free_port();
        my $pidfile = "$TMP/ss.pid";
        my $out = "$TMP/ss.out";
        my $ss = spawn([$START_SERVER, '--port', "127.0.0.1:$port", '--pid-file', $pidfile, '--',
                        @PERL, $SS_SCRIPT, $port], out => $out);
        # the first worker answers
        my $first;
        wait_until(sub {
            my $c = try_client($port, timeout => 1) or return 0;
            my $r = ask($c, 'hello', 2);
            ($first) = defined $r && $r =~ /^(\d+) hello$/;
            return defined $first;
        }, 8, 0.05) or die "start_server's worker does not answer:\n" . slurp($out);
        my $sspid = wait_until(sub { slurp($pidfile) =~ /^(\d+)/ ? $1 : 0 }, 3);
        is($sspid, $ss, 'the pid file names start_server');

        # 3 client loops for 3.5 s, each connection: one line, one reply
        my $secs = 3.5;
        my @loops;
        for my $i (1 .. 3) {
            my $res = "$TMP/ss-client-$i";
            my $pid = fork;
            die "fork: $!" unless defined $pid;
            if (!$pid) {
                alarm 15;
                my ($n, $refused, $missing, $wrong, %pids) = (0, 0, 0, 0);
                my $end = now() + $secs;
                while (now() < $end) {
                    $n++;
                    my $c = try_client($port, timeout => 3);
                    if (!$c) { $refused++; next }
                    my $r = ask($c, "c$i-$n", 3);
                    close $c;
                    if (!defined $r)                    { $missing++ }
                    elsif ($r =~ /^(\d+) c$i-$n\z/)     { $pids{$1}++ }
                    else                                { $wrong++ }
                }
                spit($res, "tries=$n refused=$refused missing=$missing wrong=$wrong pids="
                           . join(',', map { "$_:$pids{$_}" } sort keys %pids) . "\n");
                POSIX::_exit(0);
            }
            track($pid);
            push @loops, [$pid, $res];
        }
        Time::HiRes::sleep(1);
        ok(kill('HUP', $sspid), 'HUP to start_server, in the middle of the traffic');
        my (%pids, $tries, $refused, $missing, $wrong);
        for my $lp (@loops) {
            ok(defined reap($lp->[0], $secs + 8), "client loop $lp->[0] finished");
            my $r = slurp($lp->[1]);
            ok($r =~ /^tries=(\d+) refused=(\d+) missing=(\d+) wrong=(\d+) pids=(.*)$/, 'it reported')
                or next;
            $tries += $1; $refused += $2; $missing += $3; $wrong += $4;
            for (split /,/, $5) { my ($p, $k) = split /:/; $pids{$p} += $k }
        }
        note(sprintf '%d connections; replies by pid: %s', $tries || 0, join(' ', map { "$_=$pids{$_}" } sort keys %pids));
        ok(($tries || 0) >= 30, "traffic flowed (@{[ $tries || 0 ]} connections)");
        is($refused, 0, 'no connection refused');
        # (the worker stops with grace: what it accepted is answered)
        is($missing, 0, 'no reply missing');
        is($wrong, 0, 'no wrong reply');
        is(scalar(keys %pids), 2, 'replies came from two processes (the old and the new generation)');
        ok(exists $pids{$first}, 'the first generation among them');

        my $log = slurp($out);
        my @workers = $log =~ /^starting new worker (\d+)$/mg;
        is_deeply([sort { $a <=> $b } keys %pids], [sort { $a <=> $b } @workers], 'the two workers start_server started')
            or diag($log);
        like($log, qr/^worker $first SERVER_STARTER_PORT=127\.0\.0\.1:$port=\d+$/m, 'the worker got SERVER_STARTER_PORT');
        like($log, qr/^worker $first stopped: addresses $/m, 'the old one stopped on TERM (run returned, its listener closed by the graceful stop)');
        like($log, qr/^old worker $first died, status:0$/m, 'and exited 0');

        kill 'TERM', $ss;
        my $st = reap($ss, 8);
        is($st, 0, 'TERM to start_server: it exits 0');
        end_kid($ss) unless defined $st;
        $log = slurp($out);
        my $second = (grep { $_ != $first } @workers)[0] || 0;
        like($log, qr/^worker $second stopped: addresses $/m, 'the new worker stopped on TERM too');
        like($log, qr/^worker $second died, status:0$/m, 'and exited 0');
        unlike($log, qr/IO::Socket::INET::Daemon:|run failed|deadline|\bat \S+ line \d+/, 'no warning, no failure')
            or diag($log);
        ok(!try_client($port, timeout => 1), 'nothing listens on the port any more');
    };
}

# ------------------------------------------------------------ 5. sd_notify

sub notify_socket {
    my ($name) = @_;
    socket(my $s, Socket::AF_UNIX(), Socket::SOCK_DGRAM(), 0) or die "socket: $!";
    my $addr = $name =~ /\A\@(.*)\z/s ? "\0$1" : $name;
    bind($s, Socket::pack_sockaddr_un($addr)) or die "bind $name: $!";
    return $s;
}

# datagrams until $secs have passed, or (with $until) one matches: [time, msg]
sub dgrams {
    my ($s, $secs, $until) = @_;
    my $end = now() + $secs;
    my @got;
    my $sel = IO::Select->new($s);
    while ((my $left = $end - now()) > 0) {
        next unless $sel->can_read($left);
        defined recv($s, my $msg, 4096, 0) or next;
        push @got, [now(), $msg];
        last if $until && $msg =~ $until;
    }
    return @got;
}

sub drain {
    my ($s) = @_;
    my $sel = IO::Select->new($s);
    my $n = 0;
    while ($sel->can_read(0)) {
        last unless defined recv($s, my $msg, 4096, 0);
        $n++;
    }
    return $n;
}

sub shown { my $s = shift; $s =~ s/\n/\\n/g; $s }

sub notify_server {
    my ($be, %env) = @_;
    local @ENV{keys %env} = values %env;
    return start_server(
        backend  => $be,
        callback => {
            data => sub {
                my ($io, $d, $l) = @_;
                if ($l eq "env\n") {
                    $io->print(join(' ', map { "$_=" . (defined $ENV{$_} ? $ENV{$_} : 'none') }
                                         qw(NOTIFY_SOCKET WATCHDOG_USEC WATCHDOG_PID)), "\n");
                }
                elsif ($l eq "stuck\n") {
                    Time::HiRes::sleep(1.2);
                    $io->print("unstuck\n");
                }
                else {
                    $io->print("echo $l");
                }
                1;
            },
        },
        child_init => sub { my ($d) = @_; $SIG{TERM} = sub { $d->stop } },
    );
}

# READY first, then (after the checks of $during) STOPPING after TERM
sub notify_run {
    my ($name, $be, $env, $during) = @_;
    my $n = notify_socket($name);
    my $srv = notify_server($be, NOTIFY_SOCKET => $name, %$env);
    my @g = dgrams($n, 3, qr/READY/);
    is(@g ? shown($g[0][1]) : 'nothing', shown("READY=1\nMAINPID=" . $srv->pid . "\n"),
       'the first datagram: READY=1, MAINPID the server\'s pid');
    my $c = client($srv);
    is(ask($c, 'env'), 'NOTIFY_SOCKET=none WATCHDOG_USEC=none WATCHDOG_PID=none',
       'NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID are gone from the server\'s %ENV');
    $during->($n, $srv, $c);
    close $c;
    kill 'TERM', $srv->pid;
    my @end = dgrams($n, 3, qr/STOPPING/);
    my @stop = grep { $_->[1] =~ /STOPPING/ } @end;
    is(@stop ? shown($stop[0][1]) : 'nothing', shown("STOPPING=1\n"), 'after TERM (stop): STOPPING=1');
    is($srv->wait_exit(3), 0, 'the server exits 0');
    ok($srv->wait_event(qr/^run_returned 1$/, 1), 'run returned true');
    is(scalar(() = dgrams($n, 0.2)), 0, 'nothing after STOPPING=1');
    is($srv->stderr, '', 'nothing on the server\'s stderr');
    close $n;
    unlink $name if $name !~ /\A\@/;
}

my $DEFAULT_BE = $BACKENDS[0];

isd_subtest "sd_notify with WATCHDOG_USEC=200000: pings from the loop, none while a callback is stuck, backend $DEFAULT_BE" => sub {
    notify_run("$TMP/notify.sock", $DEFAULT_BE, { WATCHDOG_USEC => 200000 }, sub {
        my ($n, $srv, $c) = @_;
        my @g = dgrams($n, 1);
        my @bad = grep { $_->[1] ne "WATCHDOG=1\n" } @g;
        is(scalar @bad, 0, 'only WATCHDOG=1 while it runs') or diag(join ' ', map { shown($_->[1]) } @bad);
        cmp_ok(scalar @g, '>=', 3, 'at least 3 WATCHDOG=1 in a second (every 0.1 s)');
        cmp_ok(scalar @g, '<=', 15, 'and not many more than 10');

        drain($n);
        print $c "stuck\n";
        my $t0 = now();
        # datagrams (with the time they came) and the reply, for 1.6 s
        my (@during, $reply, $t_reply);
        $reply = '';
        my $sel = IO::Select->new($n, $c);
        while ((my $left = $t0 + 1.6 - now()) > 0) {
            for my $h ($sel->can_read($left)) {
                if ($h == $n) {
                    push @during, [now(), $_] if defined recv($n, $_, 4096, 0);
                    next;
                }
                my $k = sysread($c, $reply, 4096, length $reply);
                if (!$k || $reply =~ /\n/) {
                    $t_reply = now();
                    $sel->remove($c);
                }
            }
        }
        is($reply, "unstuck\n", 'the stuck callback answers in the end');
        my $dt = defined $t_reply ? $t_reply - $t0 : 0;
        cmp_ok($dt, '>=', 1.0, sprintf('after %.2fs (it sleeps 1.2 s)', $dt));
        my @odd = grep { $_->[1] ne "WATCHDOG=1\n" } @during;
        is(scalar @odd, 0, 'only WATCHDOG=1 meanwhile') or diag(join ' ', map { shown($_->[1]) } @odd);
        my ($gap, $prev) = (0, $t0);
        for my $d (@during, [now(), 'end']) {
            $gap = $d->[0] - $prev if $d->[0] - $prev > $gap;
            $prev = $d->[0];
        }
        cmp_ok($gap, '>=', 0.8, sprintf('no WATCHDOG=1 for %.2fs while the callback sleeps 1.2 s', $gap));
        my @after = grep { defined $t_reply && $_->[0] >= $t_reply - 0.1 } @during;
        push @after, dgrams($n, 1, qr/WATCHDOG=1/) unless @after;
        ok(scalar(grep { $_->[1] eq "WATCHDOG=1\n" } @after), 'the pings resume once it returns');
        is(ask($c, 'z'), 'echo z', 'the server serves on');
        my @more = dgrams($n, 0.5);
        cmp_ok(scalar @more, '>=', 2, 'and pings on (' . scalar(@more) . ' in 0.5 s)');
    });
};

for my $be (@BACKENDS) {
    isd_subtest "sd_notify: WATCHDOG=1 comes from the loop on backend $be" => sub {
        notify_run("$TMP/notify-$be.sock", $be, { WATCHDOG_USEC => 200000 }, sub {
            my ($n) = @_;
            my @g = dgrams($n, 0.6);
            cmp_ok(scalar(grep { $_->[1] eq "WATCHDOG=1\n" } @g), '>=', 2, 'WATCHDOG=1 pings');
        });
    };
}

isd_subtest 'sd_notify to an abstract socket, no WATCHDOG_USEC: READY and STOPPING only' => sub {
    notify_run("\@isd-test-$$", $DEFAULT_BE, {}, sub {
        my ($n, $srv, $c) = @_;
        is(ask($c, 'q'), 'echo q', 'served');
        my @g = dgrams($n, 0.6);
        is(scalar @g, 0, 'no datagram while it runs (no watchdog)')
            or diag(join ' ', map { shown($_->[1]) } @g);
    });
};

isd_subtest 'sd_notify with WATCHDOG_PID of another process: no watchdog pings' => sub {
    notify_run("$TMP/notify-wpid.sock", $DEFAULT_BE, { WATCHDOG_USEC => 200000, WATCHDOG_PID => $$ }, sub {
        my ($n) = @_;
        my @g = dgrams($n, 0.6);
        is(scalar @g, 0, 'no WATCHDOG=1: the watchdog is for process ' . $$)
            or diag(join ' ', map { shown($_->[1]) } @g);
    });
};

done_testing;
