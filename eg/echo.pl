#!/usr/bin/perl
# Line echo server: every line a client sends comes straight back.
#
#   perl -Mblib eg/echo.pl [port] [host]      (defaults: 5000 localhost)
#   then, in another terminal:  nc localhost 5000
use strict;
use warnings;
use IO::Socket::INET::Daemon;

my $port = shift // 5000;
my $host = shift // 'localhost';

my $server = IO::Socket::INET::Daemon->new(
    port     => $port,
    host     => $host,
    callback => {
        add => sub {
            my ($io) = @_;
            warn "echo: ", $io->peerhost, ":", $io->peerport, " connected\n";
            return 1;
        },
        # The line is $_[2]; 0.04 scripts call $io->getline for the same line.
        data => sub {
            my ($io, $server, $line) = @_;
            $io->print($line);
            return 1;
        },
        remove => sub {
            my ($io) = @_;
            warn "echo: ", $io->peerhost, ":", $io->peerport, " left\n";
        },
    },
);

$SIG{INT} = $SIG{TERM} = sub { $server->stop };
$server->listen or die "echo: cannot listen on $host:$port: $!\n";
warn "echo: listening on ", $server->sockhost, ":", $server->sockport,
     " (", $server->backend, "); Ctrl-C stops\n";
$server->run or die "echo: $!\n";
warn "echo: stopped\n";
