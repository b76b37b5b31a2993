#!/usr/bin/perl
# Reverses every line, written exactly as an IO::Socket::INET::Daemon 0.04
# script would be: getline in `data`, print, return true; "quit" says bye.
#
#   perl -Mblib eg/reverse.pl [port]          (default 5001)
use strict;
use warnings;
use IO::Socket::INET::Daemon;

my $host = IO::Socket::INET::Daemon->new(
    port     => shift || 5001,
    timeout  => 20,
    callback => {
        add => sub {
            my $io = shift;
            $io->print("Welcome, ", $io->peerhost, ". Lines come back reversed; 'quit' ends.\n");
            return !0;
        },
        data => sub {
            my ($io, $host) = @_;
            my $line = $io->getline;
            return 0 unless defined $line;
            $line =~ s/\r?\n//;
            if ($line eq 'quit') {
                $io->print("Bye.\n");
                return 0;
            }
            $io->print(scalar reverse($line), "\n");
            return !0;
        },
    },
);

$SIG{INT} = $SIG{TERM} = sub { $host->stop };
$host->run or die "reverse: cannot listen: $!\n";
