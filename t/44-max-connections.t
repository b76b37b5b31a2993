#!perl
# max_connections (issue 12): with N connections open the server stops
# accepting; new clients wait in the listen backlog (their connect succeeds,
# nothing is refused or reset) and are accepted, in order, as soon as the
# count drops below N.  $server->max_connections reads it and, while the
# server runs, changes it at once (raising it accepts the waiting clients,
# lowering it closes nothing).  new croaks for a bad value.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use TestISD qw(:DEFAULT ask);
use Test::More;
use POSIX ();

my $HOLD = 0.4;    # how long "nothing happens" is watched

# CPU time (user + system) of a process in seconds, undef once it is gone
my $TCK = eval { POSIX::sysconf(POSIX::_SC_CLK_TCK()) } || 100;
sub cpu_secs {
    my ($pid) = @_;
    open my $fh, '<', "/proc/$pid/stat" or return undef;
    my $s = <$fh>;
    return undef unless defined $s && $s =~ /\)\s+(.*)/;
    my @f = split ' ', $1;       # field 3 (state) is $f[0]
    return ($f[11] + $f[12]) / $TCK;
}

sub data {
    my ($io, $d, $l) = @_;
    (my $cmd = $l) =~ s/\n\z//;
    if ($cmd =~ /^max (\d+)$/) {
        my $was = $d->max_connections;
        $d->max_connections($1);
        log_event('max %s -> %s', $was, $d->max_connections);
        $io->print("max $was -> ", $d->max_connections, "\n");
    }
    elsif ($cmd eq 'max') {
        $io->print('max ', $d->max_connections, "\n");
    }
    elsif ($cmd eq 'conns') {
        $io->print('conns ', scalar($d->connections), "\n");
    }
    else {
        log_event('data %s %s', $io->peerport, $cmd);
        $io->print("echo $cmd\n");
    }
    return 1;
}

my %cb = (
    add    => sub { log_event('add %s', $_[0]->peerport); 1 },
    remove => sub { log_event('remove %s', $_[0]->peerport) },
    error  => sub { log_event('error %s %s', defined $_[0] ? $_[0]->peerport : 'undef', $_[2]) },
    data   => \&data,
);

sub server {
    my ($be, %o) = @_;
    return start_server(backend => $be, timeout => 1, callback => {%cb}, %o);
}

# n clients that are accepted and answered
sub served {
    my ($srv, $n, $tag) = @_;
    my @c;
    for my $i (1 .. $n) {
        my $c = client($srv);
        is(ask($c, "$tag$i"), "echo $tag$i", "client $tag$i is served");
        push @c, $c;
    }
    return @c;
}

# a client that connects (TCP) and sends a line, but is not accepted yet
sub waiting {
    my ($srv, $name) = @_;
    my $c = try_client($srv->port, timeout => 3);
    ok($c, "$name: connect succeeds (it waits in the backlog)") or die "connect failed: $@\n";
    print $c "hello $name\n";
    return $c;
}

sub added { my ($srv, $c) = @_; $srv->count(qr/^add ${\ $c->sockport}$/) }

# $c is neither accepted nor answered nor dropped for $HOLD seconds
sub still_waits {
    my ($srv, $c, $name) = @_;
    my $got = read_for($c, $HOLD);
    is($got, '', "$name: no answer while the server is full");
    ok(!got_eof($c), "$name: not refused, reset or closed");
    is(added($srv, $c), 0, "$name: no add");
}

# $c (that sent "hello $name") is accepted (one add) and its line answered
sub accepted {
    my ($srv, $c, $name, $why) = @_;
    my $label = defined $why ? "$name ($why)" : $name;
    ok($srv->wait_event(qr/^add ${\ $c->sockport}$/, 3), "$label: accepted (add)");
    is(read_line($c, 3), "echo hello $name\n", "$label: the line it sent while waiting is answered");
    is(added($srv, $c), 1, "$label: add called once");
}

sub closed {
    my ($srv, $c) = @_;
    my $p = $c->sockport;
    close $c;
    ok($srv->wait_event(qr/^remove $p$/, 3), "the server saw the close of $p");
}

sub no_errors {
    my ($srv) = @_;
    my @e = $srv->grep_events(qr/^error /);
    is(scalar @e, 0, 'no error callback') or diag(join "\n", @e);
}

for my $be (backends()) {
    isd_subtest "max_connections => 3 holds the 4th and 5th in the backlog, backend $be" => sub {
        my $srv = server($be, max_connections => 3);
        my ($c1, $c2, $c3) = served($srv, 3, 'c');
        is(ask($c1, 'max'), 'max 3', '$server->max_connections returns 3 in a callback');
        my $c4 = waiting($srv, 'c4');
        my $c5 = waiting($srv, 'c5');

        my $cpu0 = cpu_secs($srv->pid);
        my $t0 = now();
        still_waits($srv, $c4, 'c4');
        still_waits($srv, $c5, 'c5');
        my $cpu = cpu_secs($srv->pid) - $cpu0;
        my $wall = now() - $t0;
        ok($cpu < $wall / 3,
           sprintf('the full server does not spin on its listening socket (%.2fs CPU in %.2fs)', $cpu, $wall));

        is(ask($c2, 'conns'), 'conns 3', 'three connections open');
        is(ask($c3, 'x'), 'echo x', 'the three open clients are still served');

        closed($srv, $c1);
        accepted($srv, $c4, 'c4');
        still_waits($srv, $c5, 'c5 (one place freed, taken by c4)');
        is(ask($c4, 'conns'), 'conns 3', 'three connections open again');

        closed($srv, $c2);
        accepted($srv, $c5, 'c5');
        is(ask($c5, 'y'), 'echo y', 'c5 is served on');
        is(ask($c4, 'z'), 'echo z', 'c4 is served on');
        is(ask($c3, 'conns'), 'conns 3', 'three connections open');

        for my $c ($c3, $c4, $c5) {
            is(read_for($c, 0.05), '', 'nothing unexpected for ' . $c->sockport);
            ok(!got_eof($c), $c->sockport . ' still open');
        }
        no_errors($srv);
        is($srv->count(qr/^add /), 5, 'five adds in all');
        close $_ for $c3, $c4, $c5;
        is($srv->stop, 15, 'SIGTERM ends the server');
        is($srv->stderr, '', 'nothing on the server\'s stderr');
    };

    isd_subtest "max_connections(5) from a data callback accepts the waiting clients at once, backend $be" => sub {
        my $srv = server($be, max_connections => 3);
        my ($c1, $c2, $c3) = served($srv, 3, 'c');
        my $c4 = waiting($srv, 'c4');
        my $c5 = waiting($srv, 'c5');
        my $c6 = waiting($srv, 'c6');
        still_waits($srv, $c4, 'c4');
        is(added($srv, $c5) + added($srv, $c6), 0, 'c5 and c6: no add either');

        my $t0 = now();
        is(ask($c2, 'max 5'), 'max 3 -> 5', 'max_connections(5) in data: the getter says 5 at once');
        accepted($srv, $c4, 'c4');
        accepted($srv, $c5, 'c5');
        my $dt = now() - $t0;
        ok($dt < 1, sprintf('c4 and c5 accepted and answered %.3fs after the change (< 1s: at once, not at a timeout)', $dt));
        still_waits($srv, $c6, 'c6 (the 6th, over the new limit)');
        is(ask($c1, 'conns'), 'conns 5', 'five connections open');

        is(ask($c3, 'max 0'), 'max 5 -> 0', 'max_connections(0): no limit');
        accepted($srv, $c6, 'c6');
        my @more = served($srv, 2, 'm');
        is(ask($c1, 'conns'), 'conns 8', 'eight connections open with no limit');

        no_errors($srv);
        close $_ for $c1, $c2, $c3, $c4, $c5, $c6, @more;
    };

    isd_subtest "max_connections(1) with 3 open closes nothing, accepts again below 1, backend $be" => sub {
        my $srv = server($be, max_connections => 3);
        my ($c1, $c2, $c3) = served($srv, 3, 'c');
        is(ask($c1, 'max 1'), 'max 3 -> 1', 'max_connections(1) from data');
        my $c4 = waiting($srv, 'c4');
        for my $c ($c1, $c2, $c3) {
            is(ask($c, 'still'), 'echo still', 'open client ' . $c->sockport . ' is kept and served');
        }
        is($srv->count(qr/^remove /), 0, 'nothing was closed');
        still_waits($srv, $c4, 'c4 (3 open, limit 1)');

        closed($srv, $c1);
        still_waits($srv, $c4, 'c4 (2 open, limit 1)');
        closed($srv, $c2);
        still_waits($srv, $c4, 'c4 (1 open, limit 1)');
        is(ask($c3, 'max'), 'max 1', 'max_connections returns 1');
        closed($srv, $c3);
        accepted($srv, $c4, 'c4', '0 open, limit 1');

        my $c5 = waiting($srv, 'c5');
        still_waits($srv, $c5, 'c5 (1 open, limit 1)');
        closed($srv, $c4);
        accepted($srv, $c5, 'c5');
        no_errors($srv);
        close $c5;
    };

    isd_subtest "options and the getter, backend $be" => sub {
        my %base = (port => 0, host => '127.0.0.1', backend => $be);
        my $d = IO::Socket::INET::Daemon->new(%base, max_connections => 3);
        is($d->max_connections, 3, 'max_connections => 3: the getter returns 3');
        $d->max_connections(7);
        is($d->max_connections, 7, 'the setter works outside run');
        $d->destroy;
        $d = IO::Socket::INET::Daemon->new(%base);
        is($d->max_connections, 0, 'default: 0 (no limit)');
        $d->destroy;
        $d = eval { IO::Socket::INET::Daemon->new(%base, max_connections => 0) };
        ok($d, 'max_connections => 0 is accepted') or diag($@);
        $d->destroy if $d;

        for my $bad (-1, 'x', '1.5', '3x', '') {
            my $ok = eval { IO::Socket::INET::Daemon->new(%base, max_connections => $bad); 1 };
            ok(!$ok, "max_connections => '$bad' croaks");
            like($@, qr/max_connections/, '... naming the option');
            like($@, qr/\Q'$bad'\E/, '... and the value') if length $bad;
        }
    };
}

done_testing;
