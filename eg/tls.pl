#!/usr/bin/perl
# A TLS echo server: every line comes back, over TLS 1.2 or 1.3, with a
# greeting that says what the handshake agreed.  HUP re-reads the
# certificate files (after a renewal); TERM stops gracefully.
#
#   perl -Mblib eg/tls.pl 4433 cert.pem key.pem
#   openssl s_client -connect 127.0.0.1:4433 -quiet
#
# Without a certificate it makes a self-signed one for localhost (with the
# openssl command) in a temporary directory.
use strict;
use warnings;
use File::Temp ();
use IO::Socket::INET::Daemon;

my ($port, $cert, $key) = @ARGV;
$port //= 4433;
IO::Socket::INET::Daemon->has_tls
    or die "this IO::Socket::INET::Daemon was built without OpenSSL: install libssl-dev, rebuild\n";

my $tmp;
if (!defined $cert) {
    $tmp = File::Temp->newdir;
    ($cert, $key) = ("$tmp/cert.pem", "$tmp/key.pem");
    system('openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256',
           '-nodes', '-keyout', $key, '-out', $cert, '-days', '30', '-subj', '/CN=localhost',
           '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1') == 0
        or die "openssl req failed: cannot make a certificate (is the openssl command installed?)\n";
}

my $server = IO::Socket::INET::Daemon->new(
    host => '127.0.0.1',
    port => $port,
    tls  => {
        cert_file         => $cert,
        key_file          => $key,
        alpn              => ['echo'],
        handshake_timeout => 5,
    },
    idle_timeout => 300,
    callback => {
        add => sub {
            my ($io) = @_;
            my $t = $io->tls;
            print $io "hello ", $io->peerhost, ", this is $t->{version} with $t->{cipher}\n";
            1;
        },
        data  => sub { $_[0]->print($_[2]); 1 },
        # refused handshakes (plain text on this port, timeouts) and TLS
        # errors of connected clients
        error => sub { warn "$_[2]\n" },
    },
);
$SIG{HUP}  = sub { $server->tls_reload and warn "certificate reloaded\n" };
$SIG{TERM} = $SIG{INT} = sub { $server->stop(grace => 5) };
$server->run or die "cannot listen on port $port: $@\n";
