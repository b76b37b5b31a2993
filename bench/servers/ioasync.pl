#!/usr/bin/perl
# Echo server: IO::Async::Listener + IO::Async::Stream on the default
# IO::Async loop, with the on_read idiom of the IO::Async::Stream docs.
#   perl ioasync.pl PORT
use strict;
use warnings;
use IO::Async::Loop;
use IO::Async::Listener;
use IO::Async::Stream;

my $port = shift or die "usage: $0 PORT\n";
my $loop = IO::Async::Loop->new;
my $listener = IO::Async::Listener->new(
    on_stream => sub {
        my (undef, $stream) = @_;
        $stream->configure(
            on_read => sub {
                my ($self, $buffref, $eof) = @_;
                while ($$buffref =~ s/^([^\n]*\n)//) {
                    $self->write($1);
                }
                return 0;
            },
        );
        $loop->add($stream);
    },
);
$loop->add($listener);
$listener->listen(
    addr => { family => 'inet', socktype => 'stream', ip => '127.0.0.1', port => $port },
    queuesize => 4096,
)->get;
$loop->run;
