#!/usr/bin/perl
# Line echo server: every line a client sends comes straight back.
#
#   perl -Mblib eg/echo.pl [port] [host]      (defaults: 5000 localhost)
#   perl -Mblib eg/echo.pl SPEC...            ('*:5000' unix:/tmp/echo.sock ...)
#   then, in another terminal:  nc localhost 5000
# Under systemd (eg/systemd/) it adopts the sockets of a .socket unit and
# tells systemd when it is ready.
use strict;
use warnings;
use IO::Socket::INET::Daemon;

# "5000 localhost" as 0.04 took them, or listen SPECs
my @where = @ARGV && $ARGV[0] =~ /:|^systemd/
    ? (listen => [@ARGV])
    : (port => $ARGV[0] // 5000, host => $ARGV[1] // 'localhost');

my $server = IO::Socket::INET::Daemon->new(
    @where,
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
$server->listen or die "echo: cannot listen (@ARGV): $!\n";
warn "echo: listening on ", join(' ', $server->addresses),
     " (", $server->backend, "); Ctrl-C stops\n";
$server->run or die "echo: $!\n";
warn "echo: stopped\n";
