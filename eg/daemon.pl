#!/usr/bin/perl
# Line echo server that runs as a daemon (see OPERATIONS in
# IO::Socket::INET::Daemon): it binds, goes into the background, writes its
# PID, drops root, and the command returns once it is serving.
#
#   perl -Mblib eg/daemon.pl --port 5000 --pid-file /tmp/echo.pid \
#        --log-file /tmp/echo.log
#   nc localhost 5000
#   kill -TERM $(cat /tmp/echo.pid)     # a graceful stop (5 s of grace)
#
# As root, --user nobody (and --group nogroup) drops privileges after
# binding, so --port 80 works too.  --foreground stays in the foreground
# (with a pid file and --user still; --log-file goes with the daemon only).
# A second start with the same pid file refuses, naming the PID running.
use strict;
use warnings;
use Getopt::Long qw(GetOptions);
use IO::Socket::INET::Daemon;

my %opt = (port => 5000, host => 'localhost');
GetOptions(\%opt, 'port=i', 'host=s', 'pid-file=s', 'log-file=s', 'user=s', 'group=s',
           'foreground')
    or die "usage: $0 [--port N] [--host H] [--pid-file F] [--log-file F]"
           . " [--user U] [--group G] [--foreground]\n";

my $server = IO::Socket::INET::Daemon->new(
    port      => $opt{port},
    host      => $opt{host},
    daemonize => $opt{foreground} ? 0 : 1,
    pid_file  => $opt{'pid-file'},      # (undef: none)
    log_file  => $opt{'log-file'},      # STDOUT and STDERR of the daemon
    user      => $opt{user},
    group     => $opt{group},
    callback  => {
        add    => sub { warn "echo[$$]: ", $_[0]->peerhost, ':', $_[0]->peerport, " connected\n"; 1 },
        data   => sub { $_[0]->print($_[2]); 1 },
        remove => sub { warn "echo[$$]: ", $_[0]->peerhost, ':', $_[0]->peerport, " left\n" },
    },
);

$SIG{TERM} = sub { $server->stop(grace => 5) };
$SIG{INT}  = sub { $server->stop };

# Returns in the daemon only (the command itself exits 0 once the daemon
# serves, or non-zero saying why it could not); false if it cannot listen.
$server->run or die "echo: cannot listen on $opt{host}:$opt{port}: $@\n";
warn "echo[$$]: stopped\n";
