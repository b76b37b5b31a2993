#!/usr/bin/perl
# The cookbook's chat server (IO::Socket::INET::Daemon::Cookbook), here
# with IO::Socket::INET::Daemon.  perl chat-isd.pl [PORT [IDLE_SECONDS]]
use strict;
use warnings;
use IO::Socket::INET::Daemon;

my $port = shift // 5000;
my $idle = shift // 300;
my %nick;                       # $io => nick, once its first line came
my $guests = 0;

my $server = IO::Socket::INET::Daemon->new(
    host            => '127.0.0.1',
    port            => $port,
    idle_timeout    => $idle,   # no input for that long: error, remove
    max_connections => 100,     # the 101st waits until one leaves
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
                return 0;       # remove is called, "* bye" delivered, closed
            }
            if (!defined $nick{$io}) {
                $nick{$io} = $line =~ /\A\w{1,20}\z/ ? $line : 'guest' . ++$guests;
                $io->print("* you are $nick{$io}\n");
                return 1;
            }
            $server->broadcast("$nick{$io}: $line\n", $io);    # all but $io
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

$SIG{INT} = $SIG{TERM} = sub { $server->stop };
$server->run or die "chat: cannot listen on port $port: $!\n";
