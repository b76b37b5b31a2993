#!/usr/bin/perl
# Echo server: IO::Socket::INET::Daemon used exactly as a 0.04 script
# would use it: getline/print in "data", an "add" callback that accepts.
#   perl isd-04style.pl PORT
#   BENCH_PROXY_PROTOCOL=1 perl isd-04style.pl PORT   (proxy_protocol => 1)
#   BENCH_TLS_CERT=cert.pem BENCH_TLS_KEY=key.pem perl isd-04style.pl PORT   (TLS)
#   BENCH_EMBED=AnyEvent perl isd-04style.pl PORT     (attach in AnyEvent on EV)
#   BENCH_EMBED=Mojo perl isd-04style.pl PORT         (attach in Mojo::IOLoop)
use strict;
use warnings;
use IO::Socket::INET::Daemon;

# BENCH_PROXY_PROTOCOL=1 (bench/run sets it for its PROXY rows): every
# connection starts with a PROXY header; BENCH_TRUSTED_PROXIES=CIDR,CIDR
# adds trusted_proxies.  Neither key is passed when not set.
my @proxy = $ENV{BENCH_PROXY_PROTOCOL} ? (proxy_protocol => 1) : ();
push @proxy, trusted_proxies => [ split /,/, $ENV{BENCH_TRUSTED_PROXIES} ]
    if $ENV{BENCH_PROXY_PROTOCOL} && $ENV{BENCH_TRUSTED_PROXIES};

# BENCH_TLS_CERT=FILE BENCH_TLS_KEY=FILE (bench/run sets them for its TLS
# rows): TLS on every connection, tls => { cert_file, key_file }.  Not
# passed when not set.
my @tls = $ENV{BENCH_TLS_CERT}
    ? (tls => { cert_file => $ENV{BENCH_TLS_CERT}, key_file => $ENV{BENCH_TLS_KEY} })
    : ();

my $port = shift or die "usage: $0 PORT\n";
my $server = IO::Socket::INET::Daemon->new(
    port     => $port,
    host     => '127.0.0.1',
    @proxy,
    @tls,
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

# BENCH_EMBED=AnyEvent|Mojo (bench/run's isd-ae and isd-mojo): the same
# server attached to that loop instead of run, the host loop running;
# TERM or INT stops the server and ends the loop.
if (my $loop = $ENV{BENCH_EMBED}) {
    embed($loop);
    exit 0;
}
$SIG{TERM} = $SIG{INT} = sub { $server->stop };
$server->run or die "$0: cannot listen on 127.0.0.1:$port: $!\n";

sub embed {
    my ($loop) = @_;
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
    elsif ($loop eq 'Mojo') {
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
    else {
        die "$0: BENCH_EMBED: '$loop' is not AnyEvent or Mojo\n";
    }
}
