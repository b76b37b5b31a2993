package IO::Socket::INET::Daemon::Embed::EV;

# attach('EV'): the server's descriptor and deadlines as EV watchers (on
# EV's default loop).

use strict;
use warnings;

our $VERSION = '1.04';

use EV ();
use parent -norequire, 'IO::Socket::INET::Daemon::Embed';

sub _init {}

sub _watch_io      { $_[0]{io} = EV::io($_[1], EV::READ(), $_[2]) }
sub _unwatch_io    { delete $_[0]{io} }
sub _watch_timer   { $_[0]{tw} = EV::timer($_[1], 0, $_[2]) }
sub _unwatch_timer { delete $_[0]{tw} }

1;
