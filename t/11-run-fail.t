#!perl
# run on a port in use: returns false with $! = EADDRINUSE, no die, no
# callbacks; after the port is freed the same object runs fine.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use TestISD;
use Test::More;
use Errno qw(EADDRINUSE);
use IO::Socket::INET;
use IO::Socket::INET::Daemon;

sub blocker {
    IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $_[0] || 0,
                          Proto => 'tcp', Listen => 5, ReuseAddr => 1)
        or die "blocker: $@";
}

my %cb;
for my $name (qw(add remove data tick error)) {
    $cb{$name} = sub { log_event("$name called"); $name eq 'data' ? do { $_[0]->print('R:' . $_[0]->getline); 1 } : 1 };
}

for my $be (backends()) {
    isd_subtest "backend $be" => sub {
        local_events('clear');
        my $block = blocker();
        my $port = $block->sockport;
        my $d = IO::Socket::INET::Daemon->new(port => $port, host => '127.0.0.1',
                                              timeout => 0.1, backend => $be,
                                              callback => {%cb});
        ok($d, 'new on a busy port');

        my ($rv, $err, $errno);
        my $lived = eval { $! = 0; $rv = $d->run; $errno = $! + 0; $err = "$!"; 1 };
        ok($lived, 'run on a busy port does not die') or diag $@;
        ok(!$rv, 'run returns false');
        is($errno, EADDRINUSE, "\$! is EADDRINUSE ($err)");
        is_deeply([ local_events() ], [], 'no callback called (not even tick)');

        my $lrv;
        $lived = eval { $! = 0; $lrv = $d->listen; $errno = $! + 0; 1 };
        ok($lived && !$lrv, 'listen on a busy port returns false');
        is($errno, EADDRINUSE, 'listen: $! is EADDRINUSE');

        $rv = eval { $d->run };
        ok(!$rv, 'run fails again while the port is busy');
        is_deeply([ local_events() ], [], 'still no callbacks');

        # free the port; the same object runs (in a child) and serves
        close $block;
        my $srv = start_server(daemon => $d);
        is($srv->port, $port, 'same object listens on the freed port');
        my $c = client($srv);
        print $c "hello\n";
        is(read_line($c), "R:hello\n", 'the same object serves after the port was freed');
        ok($srv->count(qr/^add called$/) >= 1, 'add called');
        ok($srv->count(qr/^tick called$/) >= 1, 'tick called');
        close $c;
        ok($srv->wait_event(qr/^remove called$/), 'remove called');
        is($srv->count(qr/^error called$/), 0, 'no error callback');
        is($srv->stop, 15, 'SIGTERM still ends the server (no signal left blocked)');
        undef $d;    # parent copy: never listened here
    };
}

# host that cannot be bound
{
    my $d = IO::Socket::INET::Daemon->new(port => 0, host => '192.0.2.1', callback => {%cb});
    local_events('clear');
    my $rv = eval { $d->run };
    ok(!$@, 'run on an address we do not have does not die') or diag $@;
    ok(!$rv, 'run returns false');
    ok($! != 0, "\$! set ($!)");
    is_deeply([ local_events() ], [], 'no callbacks');
}

done_testing;
