#!/usr/bin/perl
# Echo server: the 0.04-style script (getline/print in "data", an "add"
# callback) with prefork workers.  Each worker writes how many connections
# and lines it served to SPREADFILE when it stops.
#   perl isd-workers.pl PORT WORKERS [shared|reuseport] [SPREADFILE]
use strict;
use warnings;
use IO::Socket::INET::Daemon;

my ($port, $workers, $mode, $spread) = @ARGV;
$port && $workers or die "usage: $0 PORT WORKERS [shared|reuseport] [SPREADFILE]\n";
my $server = IO::Socket::INET::Daemon->new(
    port       => $port,
    host       => '127.0.0.1',
    workers    => $workers,
    reuseport  => ($mode // '') eq 'reuseport' ? 1 : 0,
    stop_grace => 0.5,
    callback   => {
        add  => sub { return 1 },
        data => sub {
            my $io = shift;
            my $l  = $io->getline;
            $io->print($l);
            return 1;
        },
        worker_stop => sub {
            my ($server, $slot) = @_;
            return unless defined $spread;
            my $s = $server->stats;
            open my $fh, '>>', $spread or return;
            syswrite $fh, "worker=$slot pid=$$ accepted=$s->{accepted} lines=$s->{messages_in}\n";
        },
    },
);
$server->run or die "$0: cannot listen on 127.0.0.1:$port: $@\n";
