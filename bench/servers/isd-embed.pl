#!/usr/bin/perl
# Echo server: the 0.04-style script (bench/servers/isd-04style.pl: the
# same callbacks, getline/print in "data", an "add" callback) embedded in
# another event loop with attach instead of run.
#   perl isd-embed.pl PORT AnyEvent     (AnyEvent on EV: PERL_ANYEVENT_MODEL=EV)
#   perl isd-embed.pl PORT Mojo         (Mojo::IOLoop, on EV when EV is installed)
# The host loop runs (AnyEvent->condvar->recv, Mojo::IOLoop->start) and
# ends on TERM or INT, after the server was stopped.
use strict;
use warnings;
use IO::Socket::INET::Daemon;

my ($port, $loop) = @ARGV;
$port && $loop && $loop =~ /\A(?:AnyEvent|Mojo)\z/
    or die "usage: $0 PORT AnyEvent|Mojo\n";

my $server = IO::Socket::INET::Daemon->new(
    port     => $port,
    host     => '127.0.0.1',
    callback => {
        add  => sub { return 1 },
        data => sub {
            my $io = shift;
            my $l  = $io->getline;
            $io->print($l);
            return 1;
        },
    },
);

if ($loop eq 'AnyEvent') {
    $ENV{PERL_ANYEVENT_MODEL} = 'EV';
    require EV;
    require AnyEvent;
    die "$0: AnyEvent is not on EV\n" unless AnyEvent::detect() eq 'AnyEvent::Impl::EV';
    eval { $server->attach('AnyEvent'); 1 }
        or die "$0: cannot listen on 127.0.0.1:$port: $@\n";
    my $quit = AnyEvent->condvar;
    my @sig = map {
        AnyEvent->signal(signal => $_, cb => sub { $server->stop; $quit->send })
    } qw(TERM INT);
    $quit->recv;
}
else {
    require Mojo::IOLoop;
    eval { $server->attach('Mojo'); 1 }
        or die "$0: cannot listen on 127.0.0.1:$port: $@\n";
    my $quit = sub { $server->stop; Mojo::IOLoop->stop };
    # On EV a %SIG handler waits for the next Perl callback: EV's own
    # signal watchers then (any other reactor: %SIG, and a timer to run it)
    my @sig;
    if (Mojo::IOLoop->singleton->reactor->isa('Mojo::Reactor::EV')) {
        @sig = map { EV::signal($_, $quit) } qw(TERM INT);
    }
    else {
        $SIG{TERM} = $SIG{INT} = $quit;
        Mojo::IOLoop->recurring(0.1 => sub { });
    }
    Mojo::IOLoop->start;
}
