package IO::Socket::INET::Daemon::Embed::AnyEvent;

# attach('AnyEvent'): the server's descriptor and deadlines as AnyEvent
# watchers (whatever AnyEvent runs on: EV, its pure-Perl loop, ...).

use strict;
use warnings;

our $VERSION = '1.04';

use AnyEvent ();
use parent -norequire, 'IO::Socket::INET::Daemon::Embed';

sub _init {}

sub _watch_io      { $_[0]{io} = AnyEvent->io(fh => $_[1], poll => 'r', cb => $_[2]) }
sub _unwatch_io    { delete $_[0]{io} }
sub _watch_timer   { $_[0]{tw} = AnyEvent->timer(after => $_[1], cb => $_[2]) }
sub _unwatch_timer { delete $_[0]{tw} }

1;
