#!perl
# Issue 17, items 1-5 (memory safety): the daemon's last reference dropped
# while run is on the stack (from tick, from a %SIG handler); fork in add or
# error with destroy in the child while other peers' events are in the same
# batch; fork + destroy in a data call delivered by the pre-wait pass; sysread
# into a tied or overloaded buffer whose FETCH reads from the same $io; a
# $SIG{__WARN__} that dies and an exception whose stringification dies.
#
# Under a plain build several of these bugs are silent (a read of freed
# memory that happens to hold the old bytes): the assertions check what can
# be seen (run returned, the port is free, the child exited 0, the parent
# answers, no byte duplicated or lost) and `make asan-test` / xt/valgrind-run
# turn the rest into failures (stderr is checked for their reports).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use TestISD;
use Test::More;
use File::Temp ();
use IO::Socket::INET;
use POSIX ();
use Time::HiRes ();

# idle peers whose lines share the batch of item 2's fork (the review used two)
my $IDLE = 2;
# slower under AddressSanitizer, much slower under valgrind
my $SLOW = $ENV{ISD_VALGRIND} ? 10 : (($ENV{LD_PRELOAD} || '') =~ /asan/) ? 2 : 1;
if ($ENV{ISD_VALGRIND}) {      # every process ~20x slower: the whole file needs longer
    $TestISD::DEADLINE = 300;
    alarm $TestISD::DEADLINE;
}
my $ALARMING = qr/AddressSanitizer|LeakSanitizer|runtime error:|panic|Attempt to free|Use of freed|
                  double\ free|corrupt|Segmentation|Invalid\ (?:read|write)|TestISD\ child\ died/x;

sub can_bind {
    my ($port) = @_;
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $port,
                                  Proto => 'tcp', Listen => 5, ReuseAddr => 1);
    return $s ? 1 : 0;
}

sub first_event {
    my ($srv, $re) = @_;
    my ($e) = $srv->grep_events($re);
    return defined $e ? $e : 'none';
}

# The server process exited 0 and its stderr (which the grandchildren of a
# fork share) holds no crash or sanitizer report.
sub clean_exit {
    my ($srv, $what) = @_;
    my $st = $srv->wait_exit(5 * $SLOW);
    is($st, 0, "$what: the server process exited 0")
        or diag(defined $st ? sprintf('wait status %d (exit %d, signal %d)', $st, $st >> 8, $st & 127)
                            : 'still running');
    # (TestISD shows an alarming stderr once the server is gone)
    unlike($srv->stderr, $ALARMING, "$what: no crash or sanitizer report on stderr");
}

# wait_event that gives up at once when the server process is gone
sub wait_ev {
    my ($srv, $re, $timeout) = @_;
    wait_until(sub { $srv->count($re) || !$srv->alive }, $timeout);
    return $srv->count($re);
}

# A forked copy of the server reaped by the server itself: 'child status N'.
sub child_ok {
    my ($srv, $what) = @_;
    ok(wait_ev($srv, qr/^child status /, 10 * $SLOW), "$what: the server reaped its forked child");
    is(first_event($srv, qr/^child status /), 'child status 0',
       "$what: the forked child returned out of run and exited 0 (no signal)");
    is($srv->count(qr/^child run returned 1$/), 1, "$what: the child's run returned true");
}

# child_run for start_server: a forked copy leaves through its own run.
sub run_with_forks {
    my ($d) = @_;
    my $me = $$;
    my $rv = $d->run;
    if ($$ != $me) {
        log_event('child run returned %d', $rv ? 1 : 0);
        POSIX::_exit(0);
    }
    log_event('run_returned %d', $rv ? 1 : 0);
}

# fork from a callback: the child destroys its copy of the daemon and
# returns into the core; the parent waits for it and logs its status.
sub fork_destroy {
    my ($d, $where) = @_;
    my $pid = fork;
    if (!defined $pid) {
        log_event('fork failed: %s', "$!");
        return;
    }
    if (!$pid) {
        alarm(5 * $SLOW);           # a child lost in freed memory dies of SIGALRM
        $d->destroy;
        log_event('child destroyed in %s', $where);
        return;
    }
    waitpid($pid, 0);
    log_event('child status %d', $?);
}

# A standalone perl running $code with @args: (wait status, stdout, stderr);
# killed after $timeout seconds (status 'timeout').
sub run_perl {
    my ($code, $timeout, @args) = @_;
    my $dir = File::Temp->newdir('isd-t37-XXXXXX', TMPDIR => 1, CLEANUP => 1);
    my $pid = fork;
    die "fork: $!" unless defined $pid;
    if (!$pid) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', "$dir/out" or POSIX::_exit(126);
        open STDERR, '>', "$dir/err" or POSIX::_exit(126);
        { exec $^X, (map { "-I$_" } grep { !ref } @INC), '-e', $code, @args }
        POSIX::_exit(127);
    }
    my $st;
    wait_until(sub {
        my $r = waitpid($pid, POSIX::WNOHANG());
        $st = $? if $r == $pid;
        return $r == $pid;
    }, $timeout);
    if (!defined $st) {
        kill 'KILL', $pid;
        waitpid($pid, 0);
        $st = 'timeout';
    }
    my $slurp = sub { open my $fh, '<', $_[0] or return ''; local $/; my $s = <$fh>; defined $s ? $s : '' };
    return ($st, $slurp->("$dir/out"), $slurp->("$dir/err"));
}

# ---------------------------------------------- 4: tied and overloaded buffers

package TiedBuf;
sub TIESCALAR { my ($class, $io) = @_; bless { io => $io, val => '' }, $class }
sub FETCH {
    my ($self) = @_;
    $self->{inner} = $self->{io}->getline unless $self->{fetched}++;   # reads from the same $io
    return $self->{val};
}
sub STORE { $_[0]{val} = $_[1] }

package OvlBuf;
use overload
    '""' => sub {
        my ($self) = @_;
        $self->{inner} = $self->{io}->getline unless $self->{done}++;
        return '';
    },
    fallback => 1;

# ------------------------------------------------ 5: exceptions that die again

package DyingString;
use overload
    'bool' => sub { 1 },
    '""'   => sub { die "stringification died\n" },
    fallback => 0;

package main;

for my $be (backends()) {

    # ------------------------------------------------------------ item 1

    isd_subtest "1: last reference dropped in tick while run is on the stack, backend $be" => sub {
        my $code = <<'PERL';
use strict;
use warnings;
use IO::Socket::INET;
use IO::Socket::INET::Daemon;
$| = 1;
my $be = shift;
my $d;
$d = IO::Socket::INET::Daemon->new(port => 0, host => '127.0.0.1', timeout => 0.01, backend => $be,
    callback => { tick => sub { $_[1]->stop; undef $d } });
$d->listen or die "listen: $!";
my $port = $d->sockport;
my $rv = $d->run;
print "returned ", ($rv ? 1 : 0), "\n";
print "daemon ", (defined $d ? 'alive' : 'gone'), "\n";
my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $port, Proto => 'tcp',
                              Listen => 5, ReuseAddr => 1);
print "bind ", ($s ? 1 : 0), "\n";
PERL
        my ($st, $out, $err) = run_perl($code, 20 * $SLOW, $be);
        is($st, 0, 'the perl process exited 0')
            or diag("wait status $st" . ($st =~ /^\d+$/ ? sprintf(' (exit %d, signal %d)', $st >> 8, $st & 127) : ''));
        like($out, qr/^returned 1$/m, 'run returned true and the code after it ran');
        like($out, qr/^daemon gone$/m, 'the daemon was dropped');
        like($out, qr/^bind 1$/m, 'the port can be bound again');
        unlike($err, $ALARMING, 'no crash or sanitizer report') or diag $err;
    };

    isd_subtest "1: stop and last reference dropped in a %SIG handler, backend $be" => sub {
        my $srv = start_server(
            backend   => $be,
            timeout   => undef,             # the handler wakes an endless wait
            callback  => { tick => sub { log_event('tick') } },
            child_run => sub {
                my $d = $_[0];
                undef $_[0];                # the helper's reference: $d is the only one
                my $port = $d->sockport;
                $SIG{USR1} = sub { log_event('usr1'); $d->stop; undef $d };
                my $rv = $d->run;
                log_event('run_returned %d', $rv ? 1 : 0);
                log_event('daemon %s', defined $d ? 'alive' : 'gone');
                log_event('bind %d', can_bind($port));
            },
        );
        ok(wait_ev($srv, qr/^tick$/, 5 * $SLOW), 'the server runs');
        Time::HiRes::sleep(0.2 * $SLOW);    # deep in its wait now
        kill 'USR1', $srv->pid;
        ok(wait_ev($srv, qr/^usr1$/, 5 * $SLOW), 'the handler ran');
        ok(wait_ev($srv, qr/^child_done$/, 5 * $SLOW), 'the server went on to the end');
        is(first_event($srv, qr/^run_returned /), 'run_returned 1', 'run returned true');
        is(first_event($srv, qr/^daemon /), 'daemon gone', 'the daemon was dropped');
        is(first_event($srv, qr/^bind /), 'bind 1', 'the port can be bound again');
        clean_exit($srv, 'undef in a %SIG handler');
    };

    # ------------------------------------------------------------ item 2

    for my $where (qw(add error)) {
        isd_subtest "2: fork in $where, destroy in the child, other peers' lines in the batch, backend $be" => sub {
            my ($busy, $n) = (0, 0);
            my $forker = $IDLE + 1;         # the connection whose add forks
            my $srv = start_server(
                backend  => $be,
                timeout  => 0.05,
                callback => {
                    add => sub {
                        my ($io, $d) = @_;
                        my $k = ++$n;
                        ${*$io}{n} = $k;
                        log_event('add %d', $k);
                        return 1 unless $k == $forker;
                        die "add refuses $k\n" if $where eq 'error';
                        fork_destroy($d, 'add');
                        return 1;
                    },
                    error => sub {
                        my ($io, $d, $msg) = @_;
                        log_event('error %s', $msg);
                        fork_destroy($d, 'error') if $where eq 'error' && $msg =~ /add refuses $forker/;
                    },
                    data => sub {
                        my ($io, $d, $l) = @_;
                        if ($l eq "busy\n") {
                            $busy = 1;
                            $io->print("ok\n");
                        }
                        elsif ($l eq "stop\n") {
                            $d->stop;
                            $io->print("stopping\n");
                        }
                        else {
                            $io->print("R${*$io}{n}:$l");
                        }
                        return 1;
                    },
                    tick => sub {
                        return unless $busy;
                        $busy = 0;
                        log_event('busy');
                        Time::HiRes::sleep(0.4 * $SLOW);
                    },
                },
                child_run => \&run_with_forks,
            );
            my @p;
            for my $i (1 .. $IDLE) {
                push @p, client($srv);
                print { $p[-1] } "x0\n";
                is(read_line($p[-1], 5 * $SLOW), "R$i:x0\n", "peer $i served");
            }

            # The server sleeps in tick; meanwhile another client connects
            # and the idle peers send a line each: one batch, the
            # listener's event first.
            print { $p[0] } "busy\n";
            is(read_line($p[0], 5 * $SLOW), "ok\n", 'busy armed');
            ok(wait_ev($srv, qr/^busy$/, 5 * $SLOW), 'the server is busy in tick');
            my $c = client($srv);
            Time::HiRes::sleep(0.05);
            print { $p[$_ - 1] } "x$_\n" for 1 .. $IDLE;

            child_ok($srv, "fork in $where");
            is($srv->count(qr/^child destroyed in $where$/), 1, "the child destroyed its copy in $where");
            for my $i (1 .. $IDLE) {
                is(read_line($p[$i - 1], 5 * $SLOW), "R$i:x$i\n", "the parent answers peer ${i}'s line of that batch");
            }
            if ($where eq 'add') {
                print $c "c1\n";
                is(read_line($c, 5 * $SLOW), "R$forker:c1\n", 'the parent serves the forking peer');
            }
            else {
                read_until_eof($c, 5 * $SLOW);
                ok(got_eof($c), 'the peer whose add died was refused');
                is($srv->count(qr/^error add callback died: add refuses $forker/), 1, 'the die in add reported once');
            }
            my $e = client($srv);
            print $e "e1\n";
            is(read_line($e, 5 * $SLOW), sprintf("R%d:e1\n", $forker + 1), 'the parent accepts and serves a new client');
            print { $p[-1] } "again\n";
            is(read_line($p[-1], 5 * $SLOW), "R$IDLE:again\n", 'and still serves the old peers');
            print { $p[0] } "stop\n";
            is(read_line($p[0], 5 * $SLOW), "stopping\n", 'stop');
            ok(wait_ev($srv, qr/^run_returned 1$/, 5 * $SLOW), "the parent's run returned true");
            clean_exit($srv, "fork in $where");
            close $_ for @p, $c, $e;
        };
    }

    # ------------------------------------------------------------ item 3

    isd_subtest "3: fork + destroy in data delivered by the pre-wait pass, backend $be" => sub {
        my $n = 0;
        my $srv = start_server(
            backend      => $be,
            timeout      => 0.05,
            read_timeout => 5,
            callback     => {
                # the first client only (others are served as usual)
                add  => sub { ${*{ $_[0] }}{tick_reads} = !$n++; 1 },
                # a getline in tick reads "a\nb\n": "b\n" is delivered by the
                # pass before the next wait, not by an event
                tick => sub {
                    my (undef, $d) = @_;
                    for my $io ($d->connections) {
                        next unless ${*$io}{tick_reads};
                        ${*$io}{tick_reads} = 0;
                        log_event('tick reading');
                        my $l = $io->getline;
                        log_event('tick got %s', $l);
                    }
                },
                data => sub {
                    my ($io, $d) = @_;
                    my $l = $io->getline;
                    log_event('data %s', $l);
                    if ($l eq "stop\n") {
                        $d->stop;
                        $io->print("stopping\n");
                        return 1;
                    }
                    fork_destroy($d, 'data') if $l eq "b\n";
                    $io->print("R:$l");
                    return 1;
                },
            },
            child_run => \&run_with_forks,
        );
        my $c = client($srv);
        ok(wait_ev($srv, qr/^tick reading$/, 5 * $SLOW), 'tick waits in getline');
        Time::HiRes::sleep(0.1 * $SLOW);
        syswrite($c, "a\nb\n");     # one packet
        is(read_line($c, 10 * $SLOW), "R:b\n", 'the parent answers the line the pre-wait pass delivered');
        is(first_event($srv, qr/^tick got /), "tick got a\n", "tick's getline read the first line");
        is($srv->count(qr/^data b\n$/), 1, 'the second line went to data');
        child_ok($srv, 'fork in data from the pre-wait pass');
        is($srv->count(qr/^child destroyed in data$/), 1, 'the child destroyed its copy');
        print $c "c\n";
        is(read_line($c, 5 * $SLOW), "R:c\n", 'the parent answers on');
        my $e = client($srv);
        print $e "e\n";
        is(read_line($e, 5 * $SLOW), "R:e\n", 'and serves a new client');
        print $c "stop\n";
        is(read_line($c, 5 * $SLOW), "stopping\n", 'stop');
        ok(wait_ev($srv, qr/^run_returned 1$/, 5 * $SLOW), "the parent's run returned true");
        clean_exit($srv, 'fork in data from the pre-wait pass');
        close $_ for $c, $e;
    };

    # ------------------------------------------------------------ item 4

    for my $kind (qw(tied overloaded)) {
        isd_subtest "4: sysread into a $kind buffer that reads from the same \$io, backend $be" => sub {
            my $srv = start_server(
                backend      => $be,
                timeout      => 0.05,
                read_timeout => 3 * $SLOW,
                callback     => {
                    data => sub {
                        my ($io, $d) = @_;
                        my $l = $io->getline;
                        if ($l eq "stop\n") {
                            $d->stop;
                            $io->print("stopping\n");
                            return 1;
                        }
                        if ($l ne "go\n") {
                            $io->print("R:$l");
                            return 1;
                        }
                        my ($n, $got, $inner);
                        if ($kind eq 'tied') {
                            tie my $buf, 'TiedBuf', $io;
                            $n = $io->sysread($buf, 100);
                            ($got, $inner) = @{ tied $buf }{qw(val inner)};
                            untie $buf;
                        }
                        else {
                            my $obj = bless { io => $io }, 'OvlBuf';
                            my $buf = $obj;
                            $n = $io->sysread($buf, 100);
                            ($got, $inner) = ($buf, $obj->{inner});
                        }
                        # what is left, up to the client's last line
                        my $rest = '';
                        while ($rest !~ /!\n\z/) {
                            my $r = $io->getline;
                            last unless defined $r;
                            $rest .= $r;
                        }
                        log_event('n %s', $n);
                        log_event('got %s', $got);
                        log_event('inner %s', $inner);
                        log_event('rest %s', $rest);
                        $io->print("done\n");
                        return 1;
                    },
                },
            );
            my $c = client($srv);
            # "abc" is buffered when sysread starts; the read inside FETCH
            # (or "") needs more and gets it while sysread is on the stack
            syswrite($c, "go\nabc");
            Time::HiRes::sleep(0.2 * $SLOW);
            syswrite($c, "def\nXYZ");
            Time::HiRes::sleep(0.15 * $SLOW);
            syswrite($c, "!\n");
            is(read_line($c, 10 * $SLOW), "done\n", 'the callback finished');
            my %ev = map { /^(n|got|inner|rest) (.*)\z/s ? ($1 => $2) : () } $srv->events;
            my ($n, $got, $inner, $rest) = @ev{qw(n got inner rest)};
            $_ = 'undef' for grep { !defined } $n, $got, $inner, $rest;
            $inner = '' if $inner eq 'undef';       # FETCH read nothing
            ok($n =~ /^\d+$/ && $n > 0, "sysread returned a count ($n)");
            is(length $got, $n =~ /^\d+$/ ? $n : -1, 'the buffer holds as many bytes as it returned');
            my $stream = "abcdef\nXYZ!\n";
            ok($inner . $got . $rest eq $stream || $got . $inner . $rest eq $stream,
               'every byte sent was read once, in order, none invented')
                or diag explain { sysread => $got, fetch_read => $inner, rest => $rest, sent => $stream };
            print $c "ping\n";
            is(read_line($c, 5 * $SLOW), "R:ping\n", 'the server answers on');
            print $c "stop\n";
            is(read_line($c, 5 * $SLOW), "stopping\n", 'stop');
            clean_exit($srv, "sysread into a $kind buffer");
            close $c;
        };
    }

    # ------------------------------------------------------------ item 5

    # data dies in three ways; a $SIG{__WARN__} that dies makes the
    # report itself die.  Nothing may escape run.
    my %die_case = (
        'a data die reported through a $SIG{__WARN__} that dies' => {
            warn_dies => 1, die => sub { die "data died\n" },
        },
        'a data die whose exception object cannot be stringified' => {
            error => 1, die => sub { die bless({}, 'DyingString') },
        },
        'a data die reported to an error callback that dies, with a $SIG{__WARN__} that dies' => {
            warn_dies => 1, error => 1, error_dies => 1, die => sub { die "data died\n" },
        },
    );
    for my $name (sort keys %die_case) {
        my $case = $die_case{$name};
        isd_subtest "5: $name, backend $be" => sub {
            my %cb = (
                data => sub {
                    my ($io, $d, $l) = @_;
                    if ($l =~ /^name (\w+)$/) {
                        ${*$io}{name} = $1;
                        $io->print("hi $1\n");
                        return 1;
                    }
                    if ($l eq "stop\n") {
                        $d->stop;
                        $io->print("stopping\n");
                        return 1;
                    }
                    $case->{die}->() if $l eq "die\n";
                    $io->print("R:$l");
                    return 1;
                },
                remove => sub { log_event('remove %s', ${*{ $_[0] }}{name}) },
            );
            $cb{error} = sub {
                log_event('error %s', $_[2]);
                die "error callback died\n" if $case->{error_dies};
            } if $case->{error};
            my $srv = start_server(
                backend    => $be,
                timeout    => 0.05,
                callback   => \%cb,
                child_init => sub { $SIG{__WARN__} = sub { die "warn handler died\n" } if $case->{warn_dies} },
            );
            my %c;
            for my $who (qw(A B)) {
                $c{$who} = client($srv);
                print { $c{$who} } "name $who\n";
                is(read_line($c{$who}, 5 * $SLOW), "hi $who\n", "$who connected");
            }
            print { $c{A} } "die\n";
            is(read_until_eof($c{A}, 5 * $SLOW), '', 'A gets no answer');
            ok(got_eof($c{A}), 'the connection whose data died is dropped');
            ok(wait_ev($srv, qr/^remove A$/, 3 * $SLOW), 'remove called for it');
            print { $c{B} } "ping\n";
            is(read_line($c{B}, 5 * $SLOW), "R:ping\n", 'another client is answered: run goes on');
            my $d = try_client($srv->port, timeout => 3 * $SLOW);
            ok($d, 'a new client connects');
            if ($d) {
                print $d "name D\n";
                is(read_line($d, 5 * $SLOW), "hi D\n", 'and is served');
            }
            if ($case->{error}) {
                is($srv->count(qr/^error .*data callback died/), 1,
                   'the error callback got one message saying the data callback died');
            }
            is($srv->count(qr/^remove A$/), 1, 'remove called once for the dropped connection');
            is($srv->count(qr/^(?:run_returned|child_died)/), 0, 'run neither returned nor died');
            ok($srv->alive, 'the server process is alive');
            print { $c{B} } "stop\n";
            is(read_line($c{B}, 5 * $SLOW), "stopping\n", 'stop');
            ok(wait_ev($srv, qr/^run_returned 1$/, 5 * $SLOW), 'run returned true after stop');
            clean_exit($srv, $name);
            close $_ for grep defined, values(%c), $d;
        };
    }

    # Every other report made from the core with a $SIG{__WARN__} that dies
    # and no error callback: a die in add, in tick, a line over max_line.
    isd_subtest "5: add and tick die, a line over max_line, with a \$SIG{__WARN__} that dies, backend $be" => sub {
        my ($add_dies, $tick_dies) = (0, 0);
        my $srv = start_server(
            backend  => $be,
            timeout  => 0.05,
            max_line => 64,
            callback => {
                add => sub {
                    my ($io) = @_;
                    if ($add_dies) {
                        $add_dies = 0;
                        log_event('add dying');
                        die "add died\n";
                    }
                    return 1;
                },
                tick => sub {
                    return unless $tick_dies;
                    $tick_dies = 0;
                    log_event('tick dying');
                    die "tick died\n";
                },
                data => sub {
                    my ($io, $d, $l) = @_;
                    if ($l =~ /^name (\w+)$/) {
                        ${*$io}{name} = $1;
                        $io->print("hi $1\n");
                        return 1;
                    }
                    if ($l eq "stop\n") {
                        $d->stop;
                        $io->print("stopping\n");
                        return 1;
                    }
                    $add_dies = 1 if $l eq "add dies\n";
                    $tick_dies = 1 if $l eq "tick dies\n";
                    $io->print("R:$l");
                    return 1;
                },
                remove => sub { log_event('remove %s', ${*{ $_[0] }}{name}) },
            },
            child_init => sub { $SIG{__WARN__} = sub { die "warn handler died\n" } },
        );
        my $b = client($srv);
        print $b "name B\n";
        is(read_line($b, 5 * $SLOW), "hi B\n", 'B connected');

        print $b "add dies\n";
        is(read_line($b, 5 * $SLOW), "R:add dies\n", 'armed: the next add dies');
        my $x = client($srv);
        read_until_eof($x, 5 * $SLOW);
        ok(got_eof($x), 'the client whose add died is refused');
        ok(wait_ev($srv, qr/^add dying$/, 3 * $SLOW), 'add died');
        print $b "p1\n";
        is(read_line($b, 5 * $SLOW), "R:p1\n", 'run goes on after a die in add');

        print $b "tick dies\n";
        is(read_line($b, 5 * $SLOW), "R:tick dies\n", 'armed: the next tick dies');
        ok(wait_ev($srv, qr/^tick dying$/, 3 * $SLOW), 'tick died');
        print $b "p2\n";
        is(read_line($b, 5 * $SLOW), "R:p2\n", 'run goes on after a die in tick');

        my $l = client($srv);
        print $l "name L\n";
        is(read_line($l, 5 * $SLOW), "hi L\n", 'L connected');
        print $l 'x' x 200, "\n";
        read_until_eof($l, 5 * $SLOW);
        ok(got_eof($l), 'a line over max_line drops its client');
        ok(wait_ev($srv, qr/^remove L$/, 3 * $SLOW), 'remove called for it');
        print $b "p3\n";
        is(read_line($b, 5 * $SLOW), "R:p3\n", 'run goes on after a max_line drop');
        is($srv->count(qr/^remove L$/), 1, 'remove called once');

        is($srv->count(qr/^(?:run_returned|child_died)/), 0, 'run neither returned nor died');
        print $b "stop\n";
        is(read_line($b, 5 * $SLOW), "stopping\n", 'stop');
        ok(wait_ev($srv, qr/^run_returned 1$/, 5 * $SLOW), 'run returned true after stop');
        clean_exit($srv, 'reports under a dying $SIG{__WARN__}');
        close $_ for $b, $x, $l;
    };
}

done_testing;
