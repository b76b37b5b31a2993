#!/usr/bin/perl
# STARTTLS, as SMTP, IMAP or XMPP do it: a plain-text line protocol that
# switches to TLS when the client asks.
#
#   perl -Mblib eg/starttls.pl 2525 cert.pem key.pem
#   openssl s_client -connect 127.0.0.1:2525 -starttls smtp -quiet
#
# Commands: STARTTLS, then any line is echoed with whether it came over
# TLS; QUIT ends.  Without a certificate it makes a self-signed one for
# localhost (with the openssl command) in a temporary directory.
use strict;
use warnings;
use File::Temp ();
use IO::Socket::INET::Daemon;

my ($port, $cert, $key) = @ARGV;
$port //= 2525;
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
    host      => '127.0.0.1',
    port      => $port,
    separator => "\r\n",
    tls       => { cert_file => $cert, key_file => $key, starttls => 1 },
    callback  => {
        add  => sub { print {$_[0]} "220 localhost ESMTP-ish, say STARTTLS\r\n"; 1 },
        data => sub {
            my ($io, $server, $line) = @_;
            $line =~ s/\r\n\z//;
            if ($line =~ /\AEHLO\b/i) {
                print $io "250-localhost\r\n250 STARTTLS\r\n";
            }
            elsif ($line =~ /\ASTARTTLS\z/i) {
                if ($io->tls) {
                    print $io "503 TLS already\r\n";
                }
                else {
                    print $io "220 Ready to start TLS\r\n";
                    $io->start_tls;
                }
            }
            elsif ($line =~ /\AQUIT\z/i) {
                print $io "221 Bye\r\n";
                return 0;
            }
            else {
                my $t = $io->tls;
                print $io "250 ", ($t ? "over $t->{version}" : "in plain text"), ": $line\r\n";
            }
            return 1;
        },
        error => sub { warn "$_[2]\n" },
    },
);
$SIG{TERM} = $SIG{INT} = sub { $server->stop(grace => 5) };
$server->run or die "cannot listen on port $port: $@\n";
