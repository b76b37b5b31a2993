#!/usr/bin/perl
# The cookbook's chat server (IO::Socket::INET::Daemon::Cookbook) inside a
# Mojo::IOLoop program: attach instead of run, and a Mojo timer that tells
# the room how many are in.
#   perl chat-in-mojo.pl [PORT [IDLE_SECONDS [EVERY_SECONDS]]]
use strict;
use warnings;
use Mojo::IOLoop;
use IO::Socket::INET::Daemon;

my $port  = shift // 5000;
my $idle  = shift // 300;
my $every = shift // 60;
my %nick;                       # $io => nick, once its first line came
my $guests = 0;

my $server = IO::Socket::INET::Daemon->new(
    host            => '127.0.0.1',
    port            => $port,
    idle_timeout    => $idle,
    max_connections => 100,
    callback        => {
        add => sub {
            my ($io) = @_;
            $io->print("Welcome! Your first line is your nick.\n");
            return 1;
        },
        data => sub {
            my ($io, $server, $line) = @_;
            $line =~ s/\r?\n\z//;
            if ($line eq '/quit') {
                $io->print("* bye\n");
                return 0;
            }
            if (!defined $nick{$io}) {
                $nick{$io} = $line =~ /\A\w{1,20}\z/ ? $line : 'guest' . ++$guests;
                $io->print("* you are $nick{$io}\n");
                return 1;
            }
            $server->broadcast("$nick{$io}: $line\n", $io);
            return 1;
        },
        remove => sub {
            my ($io) = @_;
            delete $nick{$io};
        },
        error => sub {
            my ($io, $server, $msg) = @_;
            warn "chat: $msg\n";
        },
    },
);

# The Mojo program's own work goes on: here a timer of Mojo's.
Mojo::IOLoop->recurring($every => sub {
    my $n = keys %nick;
    $server->broadcast("* $n in the room\n", grep { !defined $nick{$_} } $server->connections);
});

$server->attach('Mojo');        # instead of $server->run
Mojo::IOLoop->start unless Mojo::IOLoop->is_running;
