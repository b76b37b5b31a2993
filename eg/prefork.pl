#!/usr/bin/perl
# A line server on every core: prefork workers under a supervising master
# (see PREFORK WORKERS in IO::Socket::INET::Daemon).  Each line gets the
# answering worker's slot and PID back, so you can watch the workers:
#
#   perl -Mblib eg/prefork.pl --port 5000 --workers 4 &
#   nc localhost 5000                     # "worker 2 (pid 1234): hello"
#   kill -HUP  %1        # rolling restart: new workers first, then the old stop
#   kill -TTIN %1        # one worker more; TTOU: one fewer
#   kill -USR1 %1        # the master lists its workers on stderr
#   kill -TERM %1        # graceful stop: every worker finishes, then exit 0
#
# --max-requests N recycles a worker after N connections; --reuseport gives
# each worker a socket of its own; --pid-file F and --daemonize run it as a
# daemon (the pid file names the master).
use strict;
use warnings;
use Getopt::Long qw(GetOptions);
use IO::Socket::INET::Daemon;

my %opt = (port => 5000, host => 'localhost', workers => 2);
GetOptions(\%opt, 'port=i', 'host=s', 'workers=i', 'max-requests=i', 'reuseport',
           'stop-grace=f', 'pid-file=s', 'daemonize')
    or die "usage: $0 [--port N] [--host H] [--workers N] [--max-requests N] [--reuseport]"
           . " [--stop-grace S] [--pid-file F] [--daemonize]\n";

my $slot;    # this worker's (set in each worker by worker_start)
my $server = IO::Socket::INET::Daemon->new(
    port         => $opt{port},
    host         => $opt{host},
    workers      => $opt{workers},
    max_requests => $opt{'max-requests'},   # (undef: none)
    reuseport    => $opt{reuseport} ? 1 : 0,
    stop_grace   => $opt{'stop-grace'} // 10,
    pid_file     => $opt{'pid-file'},
    daemonize    => $opt{daemonize} ? 1 : 0,
    callback     => {
        worker_start => sub {
            my ($server, $n) = @_;
            $slot = $n;
            warn "prefork: worker $n (pid $$) starts\n";
        },
        data => sub {
            my ($io, $server, $line) = @_;
            $io->print("worker $slot (pid $$): $line");
            1;
        },
        worker_stop => sub {
            my ($server, $n) = @_;
            warn "prefork: worker $n (pid $$) stops after ", $server->stats->{accepted}, " connections\n";
        },
    },
);
$SIG{USR1} = sub { warn "prefork: master $$, workers: ", join(' ', $server->workers), "\n" };
warn "prefork: master $$ on $opt{host}:$opt{port} with $opt{workers} workers\n" unless $opt{daemonize};
$server->run or die "prefork: cannot serve on $opt{host}:$opt{port}: $@\n";
warn "prefork: stopped\n";
