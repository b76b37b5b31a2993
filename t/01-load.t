#!perl
# Loading, constructor validation, defaults, option checks, callback merging.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use TestISD;
use Test::More;
use IO::Socket::INET;

BEGIN { use_ok('IO::Socket::INET::Daemon') or BAIL_OUT('cannot load IO::Socket::INET::Daemon') }

my $class = 'IO::Socket::INET::Daemon';

ok($class->VERSION >= 1.00, "VERSION >= 1.00 (is " . $class->VERSION . ")");
ok(IO::Socket::INET::Daemon::Peer->isa('IO::Socket::INET'), 'Peer isa IO::Socket::INET');
ok(IO::Socket::INET::Daemon::Peer->isa('IO::Handle'), 'Peer isa IO::Handle');
can_ok($class, qw(new callback run stop remove destroy listen sockport sockhost
                  connections backend));

# ------------------------------------------------------------------ port checks
my $MSG = "Called with no/invalid port.\n";
my @bad = (
    ['missing port', []],
    ['undef port',   [port => undef]],
    ["port ''",      [port => '']],
    ["port 'abc'",   [port => 'abc']],
    ["port '12a'",   [port => '12a']],
    ["port '-1'",    [port => '-1']],
    ["port '1.5'",   [port => '1.5']],
    ["port ' 80'",   [port => ' 80']],
    ['port 70000',   [port => 70000]],
    ['port 65536',   [port => 65536]],
);
for my $case (@bad) {
    my ($name, $args) = @$case;
    my $line = __LINE__ + 1;
    my $d = eval { $class->new(host => '127.0.0.1', @$args) };
    is($d, undef, "new with $name returns nothing");
    like($@, qr/\ACalled with no\/invalid port\.\n/, "new with $name croaks 'Called with no/invalid port.\\n'");
    # 0.04 used Carp::croak, which names the caller's line even after "\n".
    is($@, "$MSG at " . __FILE__ . " line $line.\n", "... exactly as 0.04: from the caller's line");
}

for my $p (0, '0', 1, 5000, '65535') {
    my $d = eval { $class->new(port => $p, host => '127.0.0.1') };
    ok($d, "new accepts port '$p'") or diag $@;
    isa_ok($d, $class) if $d;
}

# 0.04 style: indirect call with all the old options.
{
    my $d = eval {
        $class->new(port => 0, host => '127.0.0.1', timeout => 20,
                    callback => { add => sub { 1 }, data => sub { 1 } });
    };
    ok($d, 'new with timeout and callback hash') or diag $@;
}

# ---------------------------------------------------------------- listen/host
{
    my $d = $class->new(port => 0);
    ok($d->listen, 'listen on port 0 with the default host') or diag "listen: $!";
    my $port = $d->sockport;
    ok($port && $port > 0 && $port < 65536, "sockport is an ephemeral port ($port)");
    is($d->sockhost, '127.0.0.1', "host defaults to 'localhost' = 127.0.0.1");
    my @c = $d->connections;
    is(scalar(@c), 0, 'no connections yet');
    my $c = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Timeout => 5);
    ok($c, 'the port accepts TCP connections after listen (backlog)');
    close $c if $c;
    $d->destroy;
}
{
    my $d = $class->new(port => 0, host => '127.0.0.1');
    ok($d->listen, 'listen on 127.0.0.1:0');
    is($d->sockhost, '127.0.0.1', 'sockhost');
    $d->destroy;
}

# -------------------------------------------------------------------- backends
my @be = backends();
ok(scalar(@be) >= 1, "backends(): @be");
ok((grep { $_ eq 'poll' } @be), 'poll is always compiled in');
for my $be (@be) {
    my $d = eval { $class->new(port => 0, host => '127.0.0.1', backend => $be) };
    ok($d, "new(backend => '$be')") or diag $@;
    next unless $d;
    ok($d->listen, "listen with backend $be");
    is($d->backend, $be, "backend() reports $be");
    $d->destroy;
}
{
    local $ENV{IO_SOCKET_INET_DAEMON_BACKEND} = 'poll';
    my $d = $class->new(port => 0, host => '127.0.0.1');
    $d->listen;
    is($d->backend, 'poll', 'IO_SOCKET_INET_DAEMON_BACKEND=poll forces poll');
    $d->destroy;
}
{
    my $d = $class->new(port => 0, host => '127.0.0.1');
    $d->listen;
    my $best = $d->backend;
    ok(defined $best && (grep { $_ eq $best } @be), "default backend is a compiled-in one ($best)");
    if ($^O eq 'linux' && !$ENV{IO_SOCKET_INET_DAEMON_BACKEND}) {
        is($best, 'epoll', 'default backend on Linux is epoll');
    }
    $d->destroy;
}

# ----------------------------------------------------------------- bad options
my @badopt = (
    [framing      => 'bogus'],
    [max_line     => 'abc'],
    [max_line     => -5],
    [max_output   => 'abc'],
    [max_output   => -1],
    [read_timeout => 'abc'],
    [read_timeout => -1],
    [backlog      => 'abc'],
    [linger       => 'abc'],
    [backend      => 'nosuchbackend'],
);
for my $o (@badopt) {
    my ($k, $v) = @$o;
    my $d = eval { $class->new(port => 0, host => '127.0.0.1', $k => $v) };
    my $err = $@;
    ok(!$d, "new($k => '$v') fails");
    like($err, qr/^IO::Socket::INET::Daemon::new\b/, "... croak names the method");
    like($err, qr/\Q$k\E/, "... croak names the option");
    like($err, qr/\Q$v\E/, "... croak names the value");
}
for my $o ([framing => 'line'], [framing => 'raw'], [max_line => 100],
           [max_output => 1048576], [read_timeout => 0.5], [backlog => 16],
           [linger => 0], [linger => 2]) {
    my ($k, $v) = @$o;
    my $d = eval { $class->new(port => 0, host => '127.0.0.1', $k => $v) };
    ok($d, "new($k => '$v') accepted") or diag $@;
}

# --------------------------------------------------- callback merging (server)
# callbacks from new, merged with callback(), replaced one by one, and merged
# again from inside a running callback.
for my $be (@be) {
    isd_subtest "callback merging, backend $be" => sub {
        my $srv = start_server(
            backend  => $be,
            timeout  => 1,
            callback => {
                add  => sub { $_[0]->print("add-from-new\n"); 1 },
                data => sub { $_[0]->print("data-from-new\n"); 1 },
            },
            child_init => sub {
                my ($d) = @_;
                # merge: data replaced, add kept, remove added
                $d->callback(
                    data => sub {
                        my ($io, $d) = @_;
                        my $l = $io->getline;
                        if ($l eq "switch\n") {
                            $d->callback(data => sub { $_[0]->getline; $_[0]->print("data-3\n"); 1 });
                            $io->print("switched\n");
                            return 1;
                        }
                        $io->print("data-2\n");
                        1;
                    },
                    remove => sub { log_event('remove') },
                );
            },
        );
        my $c = client($srv);
        is(read_line($c), "add-from-new\n", 'add from new() kept after callback()');
        print $c "x\n";
        is(read_line($c), "data-2\n", 'data replaced by callback()');
        print $c "switch\n";
        is(read_line($c), "switched\n", 'switch');
        print $c "y\n";
        is(read_line($c), "data-3\n", 'callback() from inside a running callback takes effect');
        close $c;
        ok($srv->wait_event(qr/^remove$/), 'remove added by callback() is called');
        ok($srv->alive, 'server alive');
        is($srv->stop, 15, 'SIGTERM still ends the server (no signal left blocked)');
    };
}

done_testing;
