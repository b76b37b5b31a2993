#!/usr/bin/perl
# Broadcast server for bench/control: IO::Socket::INET::Daemon with an idle
# timeout (3600 s: the timeout machinery is active, nothing expires in a
# run).  On any connection, "COUNT" answers the number of open connections
# and "B <round> <size>" sends one <size>-byte message to every connection
# but the asking one, then answers "OK <how many got it>"; other lines are
# ignored.  The message: the round in 10 digits, a space, "abc..xyz" repeated
# up to <size> - 1 bytes, "\n" (bench/loadgen.c, mode bcast, checks it).
#   perl bcast-isd.pl PORT
use strict;
use warnings;
use IO::Socket::INET::Daemon;

my $port = shift or die "usage: $0 PORT\n";

my %fill;
sub message {
    my ($round, $size) = @_;
    my $n = $size - 12;
    $fill{$size} //= substr('abcdefghijklmnopqrstuvwxyz' x (int($n / 26) + 1), 0, $n);
    return sprintf('%010d ', $round) . $fill{$size} . "\n";
}

my $server = IO::Socket::INET::Daemon->new(
    port         => $port,
    host         => '127.0.0.1',
    backlog      => 4096,
    idle_timeout => 3600,
    callback     => {
        data => sub {
            my ($io, $server, $line) = @_;
            if ($line =~ /^COUNT\r?\n/) {
                $io->print($server->stats->{connections}, "\n");
            }
            elsif ($line =~ /^B (\d+) (\d+)\r?\n/ && $2 >= 12) {
                my $n = $server->broadcast(message($1, $2), $io);
                $io->print("OK $n\n");
            }
            return 1;
        },
    },
);
$SIG{TERM} = $SIG{INT} = sub { $server->stop };
$server->run or die "$0: cannot listen on 127.0.0.1:$port: $!\n";
