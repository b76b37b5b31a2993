#!/usr/bin/perl
# A greeting and echo server behind HAProxy (eg/haproxy.cfg): every
# connection starts with a PROXY header (v1 or v2), so the server knows the
# real client, and greets it with its address; then every line comes back.
#
#   perl -Mblib eg/proxied.pl 7001 &
#   perl -Mblib eg/proxied.pl 7002 &
#   haproxy -f eg/haproxy.cfg
#   nc 127.0.0.1 7000
#
# Only 127.0.0.1 (haproxy) may connect; anything else, or a connection
# without a valid header within 3 s, is refused (and reported on STDERR).
# TERM stops it gracefully: the open connections are served for up to 10 s.
use strict;
use warnings;
use IO::Socket::INET::Daemon;

my $port = shift // 7001;

my $server = IO::Socket::INET::Daemon->new(
    host            => '127.0.0.1',
    port            => $port,
    proxy_protocol  => 1,
    trusted_proxies => ['127.0.0.1'],
    proxy_timeout   => 3,
    callback => {
        add => sub {
            my ($io) = @_;
            my $p = $io->proxy;
            # haproxy's health checks (a LOCAL header): no greeting, no log
            return 1 if $p->{command} ne 'PROXY';
            # peerhost/peerport: the client's, from the header;
            # $p->{via}: haproxy's side of this connection
            $io->print("hello ", $io->peerhost, ":", $io->peerport,
                       " (port $port, via $p->{via}{host}:$p->{via}{port},",
                       " PROXY v$p->{version})\n");
            return 1;
        },
        data => sub {
            my ($io, $server, $line) = @_;
            $io->print($line);
            return 1;
        },
        error => sub {
            my ($io, $server, $msg) = @_;
            warn "proxied: $msg\n";
        },
    },
);

$SIG{INT} = $SIG{TERM} = sub { $server->stop(grace => 10) };
$server->listen or die "proxied: cannot listen on 127.0.0.1:$port: $!\n";
$server->run or die "proxied: $!\n";
