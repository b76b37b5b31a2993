#!/usr/bin/perl
# The cookbook's chat server (IO::Socket::INET::Daemon::Cookbook), here
# with POE::Component::Server::TCP.  perl chat-poe.pl [PORT [IDLE_SECONDS]]
use strict;
use warnings;
use POE qw(Component::Server::TCP Filter::Line);

my $port = shift // 5000;
my $idle = shift // 300;
my %nick;                       # session ID => nick, once its first line came
my %client;                     # session ID => 1, for every connection
my $guests = 0;

POE::Component::Server::TCP->new(
    Address      => '127.0.0.1',
    Port         => $port,
    Concurrency  => 100,        # the 101st waits until one leaves
    ClientFilter => POE::Filter::Line->new(
        InputRegexp => qr/\r?\n/, OutputLiteral => "\n"),
    ClientConnected => sub {
        my ($kernel, $heap, $session) = @_[KERNEL, HEAP, SESSION];
        $client{ $session->ID } = 1;
        $heap->{client}->put("Welcome! Your first line is your nick.");
        $kernel->delay(idle => $idle);
    },
    ClientInput => sub {
        my ($kernel, $heap, $session, $line) = @_[KERNEL, HEAP, SESSION, ARG0];
        my $id = $session->ID;
        $kernel->delay(idle => $idle);              # input: the clock starts over
        if ($line eq '/quit') {
            $heap->{client}->put("* bye");
            $kernel->yield('shutdown');             # after the output is out
            return;
        }
        if (!defined $nick{$id}) {
            $nick{$id} = $line =~ /\A\w{1,20}\z/ ? $line : 'guest' . ++$guests;
            $heap->{client}->put("* you are $nick{$id}");
            return;
        }
        $kernel->post($_ => say => "$nick{$id}: $line")
            for grep { $_ != $id } keys %client;
    },
    ClientDisconnected => sub {
        my ($kernel, $session) = @_[KERNEL, SESSION];
        delete $client{ $session->ID };
        delete $nick{ $session->ID };
        $kernel->delay('idle');                     # or the session lingers
    },
    ClientError => sub {
        my ($syscall, $errno, $error) = @_[ARG0 .. ARG2];
        warn "chat: $syscall: $error\n" if $errno;  # errno 0: the client closed
    },
    InlineStates => {
        say  => sub { $_[HEAP]{client}->put($_[ARG0]) if $_[HEAP]{client} },
        idle => sub { $_[KERNEL]->yield('shutdown') },
    },
);

POE::Kernel->run;
