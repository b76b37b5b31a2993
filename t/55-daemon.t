#!perl
# daemonize, pid_file, log_file, user and group (OPERATIONS), with real
# processes and signals:
# - daemonize: the process started exits 0 once the port answers (a client
#   connecting right after it has exited is served); the daemon (PID from
#   the pid file) is another process, in a session of its own and not its
#   leader, in /, umask 022, stdin /dev/null, stdout and stderr the log
#   file (a warn from a callback lands there); a second instance with the
#   same pid file refuses, naming the daemon's PID, without binding; TERM:
#   graceful stop, the daemon exits, the pid file is gone;
# - daemonize with the port taken: the process started exits non-zero
#   saying why; no pid file, no daemon;
# - privileges that cannot be dropped (a process that is not root asking
#   for root): the daemon reports it, the process started exits non-zero
#   saying why; no pid file, no daemon;
# - pid_file in the foreground: written with the PID, a second instance
#   refuses naming it (and does not bind: its message is the pid file's),
#   the first serves on; a child forked in a callback that exits leaves it;
#   TERM removes it; a stale file (a dead PID, not locked) is taken over;
# - user and group (as root): the daemon runs as nobody/nogroup (Uid, Gid
#   and Groups in /proc), serves on the port bound before, the pid file is
#   root's; user alone takes the user's group; after TERM the pid file is
#   not left locked or naming the dead daemon;
# - bad values croak in new, naming the option; the module that does all
#   this is loaded only when one of the options is given;
# - eg/daemon.pl daemonizes, serves, and stops on TERM.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use TestISD qw(:DEFAULT ask);
use TestProc;
use Test::More;
use Cwd ();
use Fcntl ();
use File::Spec ();
use File::Temp ();
use IO::Socket::INET ();
use POSIX ();
use IO::Socket::INET::Daemon;

plan skip_all => 'needs Linux /proc' unless -r '/proc/self/stat' and -e '/proc/self/cwd';

my $BLIB = Cwd::abs_path("$FindBin::Bin/../blib");
my @PERL = ($^X, "-I$BLIB/lib", "-I$BLIB/arch");
my $TMP = File::Temp->newdir('isd-daemon-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $ROOT = $< == 0;
chmod 0711, "$TMP";         # (a server that is not root runs its script from here)

delete @ENV{qw(LISTEN_PID LISTEN_FDS LISTEN_FDNAMES SERVER_STARTER_PORT
               NOTIFY_SOCKET WATCHDOG_USEC WATCHDOG_PID)};

# ------------------------------------------------------------- processes

# spawn_named(\@cmd, $name, %o): spawn with stdout to $TMP/$name.out and
# stderr to $TMP/$name.err (TestProc's spawn options in %o)
sub spawn_named {
    my ($cmd, $name, %o) = @_;
    unlink "$TMP/$name.out", "$TMP/$name.err";
    return spawn($cmd, stdout => "$TMP/$name.out", stderr => "$TMP/$name.err", %o);
}
TestProc::also(sub { ours($TMP) });    # (daemons and workers: not our children)

# /proc/PID/status: { Uid => '0 0 0 0', ... }
sub proc_status {
    my ($pid) = @_;
    my %s;
    for (split /\n/, slurp("/proc/$pid/status")) {
        $s{$1} = join ' ', split ' ', $2 if /\A(\w+):\s*(.*)\z/;
    }
    return \%s;
}

sub pid_in {
    my ($f) = @_;
    my $s = slurp($f);
    return $s =~ /\A(\d+)\n\z/ ? $1 : undef;
}

# the file is there but nobody holds its lock
sub unlocked {
    my ($f) = @_;
    open my $fh, '<', $f or return 1;
    return flock($fh, Fcntl::LOCK_EX() | Fcntl::LOCK_NB()) ? 1 : 0;
}

# ------------------------------------------------------------ the server

my $SCRIPT = "$TMP/server.pl";
spit($SCRIPT, <<'EOS');
use strict;
use warnings;
use POSIX ();
use IO::Socket::INET::Daemon;
my ($port, %o) = @ARGV;
my $unix = delete $o{unix};
my $server;
$server = IO::Socket::INET::Daemon->new(
    listen   => ["127.0.0.1:$port", (defined $unix ? "unix:$unix" : ())],
    %o,
    callback => { data => sub {
        my ($io, $d, $l) = @_;
        if    ($l eq "pid\n") { $io->print("$$\n") }
        elsif ($l eq "ids\n") { $io->print("$< $> [$(] [$)]\n") }
        elsif ($l eq "warn\n") {
            warn "a warning from a callback\n";
            print "a line on STDOUT\n";
            $io->print("warned\n");
        }
        elsif ($l eq "fork\n") {
            my $pid = fork;
            exit 0 if defined $pid and !$pid;       # (END blocks run in the child)
            waitpid $pid, 0 if $pid;
            $io->print("forked ", ($pid || 0), " $?\n");
        }
        else { $io->print($l) }
        1;
    } },
);
$SIG{TERM} = sub { $server->stop(grace => 2) };
$server->timer(after => 20, cb => sub { warn "server deadline\n"; $server->stop });
my $rv = $server->run;
print "run returned ", ($rv ? 1 : "0 ($@)"), "\n";
exit($rv ? 0 : 3);
EOS

# start($name, $port, OPTIONS...): the server script started
sub start {
    my ($name, $port, @o) = @_;
    my %o = @o;
    my $as = delete $o{as};
    return spawn_named([@PERL, $SCRIPT, $port, %o], $name, ($as ? (as => $as) : ()));
}

sub describe {
    my ($st) = @_;
    return 'still running' unless defined $st;
    return sprintf 'exit %d, signal %d', $st >> 8, $st & 127;
}

sub sid_of_self { proc_stat($$)->{session} }

# ----------------------------------------------------------- daemonize

isd_subtest('loaded only when used' => sub {
    my $s = IO::Socket::INET::Daemon->new(port => 0, host => '127.0.0.1');
    ok(!$INC{'IO/Socket/INET/Daemon/Daemonize.pm'}, 'not by a server without the options');
    my $t = IO::Socket::INET::Daemon->new(port => 0, host => '127.0.0.1', pid_file => undef);
    ok($INC{'IO/Socket/INET/Daemon/Daemonize.pm'}, 'by one that names one');
});

isd_subtest('daemonize: ready when it says so, a daemon by the book, TERM ends it' => sub {
    my $port = free_port();
    my ($pf, $lf) = ("$TMP/a.pid", "$TMP/a.log");
    my $t0 = now();
    my $sock = "$TMP/a.sock";
    my $starter = start('a', $port, daemonize => 1, pid_file => $pf, log_file => $lf, unix => $sock);
    my $st = reap($starter, 10);
    is(describe($st), 'exit 0, signal 0', 'the process started exits 0');
    my $c = try_client($port, timeout => 2);
    ok($c, 'the port answers as soon as it has exited') or return;
    ok(echo_ping($c, 'hello'), 'and echoes');
    is(slurp("$TMP/a.err") . slurp("$TMP/a.out"), '', 'it printed nothing');
    ok(-S $sock, 'its UNIX socket file is there');

    my $d = pid_in($pf);
    ok($d, 'the pid file holds a PID') or return;
    isnt($d, $starter, 'not that of the process started');
    is(ask($c, 'pid'), $d, "the daemon's");
    ok(alive($d), 'which runs');
    my $ps = proc_stat($d);
    isnt($ps->{session}, sid_of_self(), 'in a session of its own');
    isnt($ps->{session}, $d, 'whose leader it is not (the second fork)');
    isnt($ps->{ppid}, $starter, 'its parent is not the process started');
    is(readlink("/proc/$d/cwd"), '/', 'cwd /');
    my $um = proc_status($d)->{Umask};
    SKIP: {
        skip 'no Umask in /proc/PID/status (Linux 4.7)', 1 unless defined $um;
        is($um, '0022', 'umask 022');
    }
    is(readlink("/proc/$d/fd/0"), '/dev/null', 'stdin /dev/null');
    is(readlink("/proc/$d/fd/$_"), $lf, "fd $_ the log file") for 1, 2;

    is(ask($c, 'warn'), 'warned', 'a callback warns and prints');
    ok(wait_until(sub { slurp($lf) =~ /a warning from a callback\n/ && slurp($lf) =~ /a line on STDOUT\n/ }, 3),
       'both are in the log file at once (autoflush)') or diag(slurp($lf));

    like(ask($c, 'fork'), qr/\Aforked [1-9]\d* 0\z/, 'a callback forks a child that exits');
    is(pid_in($pf), $d, 'the pid file stays, with the PID');

    # a second instance: the pid file first, so it does not even bind
    my $port2 = free_port();
    my $second = start('a2', $port2, daemonize => 1, pid_file => $pf, log_file => "$TMP/a2.log");
    my $st2 = reap($second, 10);
    ok(defined $st2 && $st2 != 0, 'a second instance exits non-zero') or diag(describe($st2));
    like(slurp("$TMP/a2.err"),
         qr/\AIO::Socket::INET::Daemon: pid file \Q$pf\E is locked by process $d: another instance is running/,
         'naming the pid file and the PID');
    ok(!try_client($port2, timeout => 1), 'it had not bound its port');
    is(pid_in($pf), $d, 'the pid file is as it was');
    ok(echo_ping($c, 'still'), 'the daemon serves on');

    close $c;
    kill 'TERM', $d;
    ok(wait_until(sub { !alive($d) }, 5), 'TERM: the daemon exits');
    ok(!-e $pf, 'the pid file is gone');
    ok(!-e $sock, 'and the UNIX socket file (bound by the process started, removed by the daemon)');
    like(slurp($lf), qr/^run returned 1$/m, 'after a graceful stop (run returned true)');
    ok(now() - $t0 < 8, 'in good time');
});

isd_subtest('daemonize with the port taken: no daemon, non-zero, the reason' => sub {
    my $hold = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1', LocalPort => 0,
                                     Proto => 'tcp') or die "listen: $@";
    my $port = $hold->sockport;
    my ($pf, $lf) = ("$TMP/b.pid", "$TMP/b.log");
    my $st = reap(start('b', $port, daemonize => 1, pid_file => $pf, log_file => $lf), 10);
    ok(defined $st && $st != 0, 'the process started exits non-zero') or diag(describe($st));
    like(slurp("$TMP/b.err"), qr/IO::Socket::INET::Daemon: listen: bind 127\.0\.0\.1:$port: Address already in use/,
         'stderr says why');
    ok(!-e $pf, 'no pid file is left behind');
    is_deeply([ours($TMP)], [], 'no daemon is left running');
    is(slurp($lf), '', 'nothing was logged');
});

isd_subtest('privileges that cannot be dropped: reported by the daemon, no daemon left' => sub {
    my $port = free_port();
    my $dir = "$TMP/nb";
    mkdir $dir or die "$dir: $!";
    my @as;
    if ($ROOT) {
        my @pw = getpwnam('nobody') or plan skip_all => 'no user nobody';
        chown $pw[2], $pw[3], $dir or die "chown $dir: $!";
        @as = (as => [ $pw[2], $pw[3] ]);
    }
    my ($pf, $lf) = ("$dir/c.pid", "$dir/c.log");
    my $st = reap(start('c', $port, daemonize => 1, pid_file => $pf, log_file => $lf,
                        user => 'root', @as), 10);
    ok(defined $st && $st != 0, 'the process started exits non-zero') or diag(describe($st));
    like(slurp("$TMP/c.err"), qr/\AIO::Socket::INET::Daemon: cannot switch to user 'root': not running as root/,
         'stderr says why') or diag(slurp("$TMP/c.err"));
    like(slurp($lf), qr/cannot switch to user 'root'/, 'so does the log file');
    ok(!-e $pf, 'no pid file is left behind');
    is_deeply([ours($TMP)], [], 'no daemon is left running');
    ok(!try_client($port, timeout => 1), 'nothing listens');
});

# ------------------------------------------------------------- pid_file

isd_subtest('pid_file: locked while it runs, taken over when stale, gone after TERM' => sub {
    my $port = free_port();
    my $pf = "$TMP/d.pid";
    my $first = start('d1', $port, pid_file => $pf);
    my $c;
    wait_until(sub { $c = try_client($port, timeout => 1) }, 5);
    ok($c, 'a server with a pid file serves') or return diag(slurp("$TMP/d1.err"));
    is(pid_in($pf), $first, 'its PID is in the pid file');

    my $st = reap(start('d2', $port, pid_file => $pf), 5);
    ok(defined $st && $st != 0, 'a second instance on the same pid file exits non-zero') or diag(describe($st));
    my $err = slurp("$TMP/d2.err");
    like($err, qr/\AIO::Socket::INET::Daemon: pid file \Q$pf\E is locked by process $first: another instance is running/,
         "naming the first one's PID");
    unlike($err, qr/bind|in use/, 'before it tried to bind');
    ok(echo_ping($c, 'first'), 'the first serves on');
    my $c2 = try_client($port, timeout => 2);
    ok($c2 && echo_ping($c2, 'new'), 'new clients too');
    is(pid_in($pf), $first, 'the pid file is as it was');

    like(ask($c, 'fork'), qr/\Aforked [1-9]\d* 0\z/, 'a callback forks a child that exits');
    is(pid_in($pf), $first, 'the pid file stays');

    close $_ for grep defined, $c, $c2;
    kill 'TERM', $first;
    is(describe(reap($first, 5)), 'exit 0, signal 0', 'TERM: graceful stop, exit 0');
    ok(!-e $pf, 'the pid file is gone');

    # a stale one: a PID that has exited, nobody holding the lock
    my $dead = fork;
    POSIX::_exit(0) unless $dead;
    waitpid $dead, 0;
    spit($pf, "$dead\n");
    my $third = start('d3', $port, pid_file => $pf);
    undef $c;
    wait_until(sub { $c = try_client($port, timeout => 1) }, 5);
    ok($c && echo_ping($c, 'third'), 'a stale pid file is taken over') or diag(slurp("$TMP/d3.err"));
    is(pid_in($pf), $third, 'with the new PID');
    close $c;
    kill 'TERM', $third;
    is(describe(reap($third, 5)), 'exit 0, signal 0', 'TERM');
    ok(!-e $pf, 'the pid file is gone');
    is(slurp("$TMP/d3.err"), '', 'no warning');
});

# ----------------------------------------------------------- user, group

isd_subtest('user and group: the daemon runs as nobody, on the port bound as root' => sub {
    plan skip_all => 'not running as root' unless $ROOT;
    my @pw = getpwnam('nobody') or plan skip_all => 'no user nobody';
    my $ngid = getgrnam('nogroup');
    plan skip_all => 'no group nogroup' unless defined $ngid;
    my $port = free_port();
    my ($pf, $lf) = ("$TMP/e.pid", "$TMP/e.log");
    my $st = reap(start('e', $port, daemonize => 1, pid_file => $pf, log_file => $lf,
                        user => 'nobody', group => 'nogroup'), 10);
    is(describe($st), 'exit 0, signal 0', 'the process started exits 0') or diag(slurp("$TMP/e.err"));
    my $d = pid_in($pf);
    ok($d, 'the pid file holds a PID') or return;
    my $s = proc_status($d);
    is($s->{Uid}, join(' ', ($pw[2]) x 4), 'Uid: nobody (real, effective, saved, fs)');
    is($s->{Gid}, join(' ', ($ngid) x 4), 'Gid: nogroup');
    my @groups = split ' ', (defined $s->{Groups} ? $s->{Groups} : '');
    ok(!grep({ $_ == 0 } @groups), 'not in group root') or diag("Groups: @groups");
    my $c = try_client($port, timeout => 2);
    ok($c && echo_ping($c, 'as nobody'), 'the port bound before serves');
    is(ask($c, 'ids'), "$pw[2] $pw[2] [$ngid $ngid] [$ngid $ngid]", 'as the callback sees it');
    is((stat $pf)[4], 0, 'the pid file is root\'s');
    close $c if $c;
    kill 'TERM', $d;
    ok(wait_until(sub { !alive($d) }, 5), 'TERM: the daemon exits');
    # (nobody may not remove a file from a directory of root's: it empties it)
    ok(!-e $pf || -z $pf, 'the pid file is gone or empty');
    ok(unlocked($pf), 'and not locked');
    like(slurp($lf), qr/^run returned 1$/m, 'after a graceful stop');
});

isd_subtest("user alone, in the foreground: the user's own group" => sub {
    plan skip_all => 'not running as root' unless $ROOT;
    my @pw = getpwnam('nobody') or plan skip_all => 'no user nobody';
    my $port = free_port();
    my $pid = start('f', $port, user => 'nobody');
    my $c;
    wait_until(sub { $c = try_client($port, timeout => 1) }, 5);
    ok($c && echo_ping($c, 'hi'), 'it serves') or return diag(slurp("$TMP/f.err"));
    my $s = proc_status($pid);
    is($s->{Uid}, join(' ', ($pw[2]) x 4), 'Uid: nobody');
    is($s->{Gid}, join(' ', ($pw[3]) x 4), "Gid: nobody's group");
    close $c;
    kill 'TERM', $pid;
    is(describe(reap($pid, 5)), 'exit 0, signal 0', 'TERM');
});

# ---------------------------------------------------------------- new

isd_subtest('bad values croak in new, naming the option' => sub {
    my $D = 'IO::Socket::INET::Daemon';
    my @bad = (
        [ [ pid_file => '' ],                   qr/new: pid_file: '' is not a path at /],
        [ [ pid_file => "$TMP" ],               qr/new: pid_file: '\Q$TMP\E' is a directory/],
        [ [ pid_file => [] ],                   qr/new: pid_file: 'ARRAY\(.*\)' is not a path/],
        [ [ log_file => '' ],                   qr/new: log_file: '' is not a path/],
        [ [ log_file => "$TMP/x.log" ],         qr/new: log_file: '\Q$TMP\E\/x\.log' goes with daemonize => 1/],
        [ [ daemonize => 'yes' ],               qr/new: daemonize: 'yes' is not 0 or 1/],
        [ [ daemonize => 2 ],                   qr/new: daemonize: '2' is not 0 or 1/],
        [ [ user => 'no-such-user-xyz' ],       qr/new: user: 'no-such-user-xyz' is not a user on this system/],
        [ [ user => '' ],                       qr/new: user: '' is not a user name or uid/],
        [ [ user => 4294967290 ],               qr/new: user: '4294967290' has no passwd entry \(give group too\)/],
        [ [ group => 'no-such-group-xyz' ],     qr/new: group: 'no-such-group-xyz' is not a group on this system/],
    );
    for my $b (@bad) {
        my ($o, $re) = @$b;
        my $ok = eval { $D->new(port => 0, @$o); 1 };
        ok(!$ok, "$o->[0] => " . (defined $o->[1] ? "'$o->[1]'" : 'undef') . ' croaks');
        like($@, $re, '  saying so') or diag($@);
        like($@, qr/at \Q$0\E line/, '  from the caller');
    }
    for my $o ([ daemonize => 0 ], [ daemonize => '' ], [ daemonize => undef ], [ pid_file => undef ],
               [ user => undef, group => undef ], [ daemonize => 1, log_file => undef ],
               [ user => scalar getpwuid($<) ], [ group => 0 ]) {
        ok(eval { $D->new(port => 0, @$o); 1 }, "@{[ map { defined ? $_ : 'undef' } @$o ]}: taken") or diag($@);
    }
    my $s = $D->new(port => 0, pid_file => 'rel.pid');
    is($s->{pid_file}, File::Spec->rel2abs('rel.pid'), 'a relative pid_file is taken from the current directory');
    ok(!-e 'rel.pid', 'new creates nothing');
});

# ------------------------------------------------------------ eg/daemon.pl

isd_subtest('eg/daemon.pl' => sub {
    my $eg = "$FindBin::Bin/../eg/daemon.pl";
    plan skip_all => 'no eg/daemon.pl' unless -e $eg;
    my $port = free_port();
    my ($pf, $lf) = ("$TMP/g.pid", "$TMP/g.log");
    my $st = reap(spawn_named([@PERL, Cwd::abs_path($eg), '--port', $port, '--pid-file', $pf,
                         '--log-file', $lf, '--host', '127.0.0.1'], 'g'), 10);
    is(describe($st), 'exit 0, signal 0', 'it exits 0') or diag(slurp("$TMP/g.err"));
    my $c = try_client($port, timeout => 2);
    ok($c && echo_ping($c, 'eg'), 'the daemon echoes');
    my $d = pid_in($pf);
    ok($d && alive($d), 'its PID is in the pid file');
    close $c if $c;
    kill 'TERM', $d if $d;
    ok($d && wait_until(sub { !alive($d) }, 8), 'TERM: it exits');
    ok(!-e $pf, 'the pid file is gone');
});

done_testing;
