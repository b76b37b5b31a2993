#!/usr/bin/perl
# A chat room.  The server asks "NICK?", answers "WELCOME <nick>", then
# every line a member sends goes to everybody else as "<nick> line".
# Members silent for 10 minutes are shown the door, at most 100 are in at
# once (the others wait at the door), and every 5 minutes the room hears
# how many are in.  A member whose connection cannot keep up (more than
# 64 KiB waiting for it) is skipped, and told how many lines it missed
# once it has caught up (the drain callback).
#
#   perl -Mblib eg/chat.pl [port]             (default 5002)
#   then several:  nc localhost 5002
use strict;
use warnings;
use IO::Socket::INET::Daemon;

my %nick;    # $io => nick; $io is the same object for the whole connection
my %missed;  # $io => lines it was skipped for while it lagged
my $LAG = 64 * 1024;

# Everybody in the room but $me: one broadcast (the text is stored once
# in the server, however many are in), leaving out those still at the
# NICK? prompt and those lagging behind.
sub others {
    my ($server, $me, $text) = @_;
    my @skip = grep { !exists $nick{$_} } $server->connections;
    for my $io (grep { exists $nick{$_} } $server->connections) {
        next unless $missed{$io} or $io->pending > $LAG;
        $missed{$io}++;
        push @skip, $io;
    }
    $server->broadcast($text, $me, @skip);
}

my $server = IO::Socket::INET::Daemon->new(
    port            => shift || 5002,
    idle_timeout    => 600,
    max_connections => 100,
    high_water      => $LAG,    # above it: drain is called once it is out
    low_water       => 0,
    callback        => {
        add => sub {
            my ($io) = @_;
            $io->print("NICK?\n");
            return 1;
        },
        data => sub {
            my ($io, $server, $line) = @_;
            $line =~ s/\r?\n\z//;
            if (!exists $nick{$io}) {
                return 1 unless length $line;       # ask again, politely
                if ($line !~ /\A\w{1,20}\z/) {
                    $io->print("NICK? (letters, digits and _ only)\n");
                    return 1;
                }
                $nick{$io} = $line;
                $io->print("WELCOME $line\n");
                others($server, $io, "* $line joined\n");
                return 1;
            }
            return 0 if $line eq '/quit';
            others($server, $io, "<$nick{$io}> $line\n");
            return 1;
        },
        drain => sub {
            my ($io) = @_;
            my $n = delete $missed{$io} or return;
            $io->print("* you missed $n line(s): your connection was slow\n");
        },
        remove => sub {
            my ($io, $server) = @_;
            delete $missed{$io};
            my $who = delete $nick{$io};
            others($server, $io, "* $who left\n") if defined $who;
        },
        error => sub {
            my ($io, $server, $msg) = @_;
            $io->print("* you were silent too long, bye\n")
                if $io and $msg =~ /^idle timeout/;
            warn "chat: $msg\n";
        },
    },
);

$server->timer(every => 300, cb => sub {
    my ($server) = @_;
    my $n = keys %nick;
    others($server, undef, "* $n in the room\n");
});

$SIG{INT} = $SIG{TERM} = sub { $server->stop };
$server->run or die "chat: cannot listen: $!\n";
