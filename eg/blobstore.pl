#!/usr/bin/perl
# A blob store: text commands, binary bodies.  Shows a connection switching
# framing: a command line, then a length-prefixed body (framing 'length'),
# then lines again; replies that carry bytes go out with send_message.
#
#   perl -Mblib eg/blobstore.pl [port]        (default 5003)
#
# Protocol (every line ends in "\n"; a body is a 4-byte big-endian length,
# then that many bytes, pack 'N/a*'):
#   PUT name   then a body      -> "STORED name <bytes>\n"
#   GET name                    -> a body (empty if there is no such blob)
#   LIST                        -> "<name> <bytes>\n" per blob, then ".\n"
#   QUIT                        -> "BYE\n", and the server closes
# A client in Perl:
#   print $sock "PUT photo\n", pack('N/a*', $bytes);   # "STORED photo 12345"
#   print $sock "GET photo\n";
#   read $sock, my $len, 4; read $sock, my $copy, unpack 'N', $len;
use strict;
use warnings;
use IO::Socket::INET::Daemon;

my %blob;

my $server = IO::Socket::INET::Daemon->new(
    port          => shift || 5003,
    host          => '127.0.0.1',
    max_line      => 16 * 1024 * 1024,   # the largest body (and line)
    idle_timeout  => 300,
    length_format => 'N',
    callback => {
        data => sub {
            my ($io, $server, $msg) = @_;
            if ($io->framing eq 'length') {          # the body of a PUT
                my $name = ${*$io}{blob_name};
                $blob{$name} = $msg;
                $io->framing('line');                # commands again
                $io->print("STORED $name ", length $msg, "\n");
                return 1;
            }
            $msg =~ s/\r?\n\z//;
            my ($cmd, $name) = split ' ', $msg, 2;
            $cmd = uc($cmd // '');
            if ($cmd eq 'PUT' && defined $name && length $name) {
                ${*$io}{blob_name} = $name;
                $io->framing('length');              # the bytes after the line
            }
            elsif ($cmd eq 'GET' && defined $name) {
                $io->send_message($blob{$name} // '');
            }
            elsif ($cmd eq 'LIST') {
                $io->print("$_ ", length $blob{$_}, "\n") for sort keys %blob;
                $io->print(".\n");
            }
            elsif ($cmd eq 'QUIT') {
                $io->print("BYE\n");
                return 0;
            }
            else {
                $io->print("ERROR unknown command\n");
            }
            return 1;
        },
        error => sub { my (undef, undef, $why) = @_; warn "blobstore: $why\n" },
    },
);

$SIG{INT} = $SIG{TERM} = sub { $server->stop };
$server->run or die "blobstore: cannot listen: $!\n";
