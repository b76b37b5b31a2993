package IO::Socket::INET::Daemon;

use strict;
use warnings;

our $VERSION = '1.00';

use Carp ();
use IO::Socket::INET ();
use Socket ();

require XSLoader;
XSLoader::load('IO::Socket::INET::Daemon', $VERSION);

my %DEFAULT = (
    framing      => 'line',
    max_line     => 1_048_576,
    max_output   => 64 * 1_048_576,
    linger       => 30,
    backlog      => Socket::SOMAXCONN(),
);

my %KNOWN = map { $_ => 1 } qw(port host timeout callback framing max_line
    max_output read_timeout backlog backend linger);

sub _bad {
    my ($what, $value, $want) = @_;
    $value = defined $value ? "'$value'" : 'undef';
    Carp::croak("IO::Socket::INET::Daemon::new: $what: $value $want");
}

sub _seconds { defined $_[0] && $_[0] =~ /\A(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?\z/ }

sub new {
    my ($class, %rc) = @_;

    # The 0.04 check and message, kept to the letter (port 0 is new: any free port).
    Carp::croak("Called with no/invalid port.\n")
        if !defined $rc{port} or $rc{port} !~ /\A\d+\z/ or $rc{port} > 65535;

    for my $k (sort keys %rc) {
        Carp::croak("IO::Socket::INET::Daemon::new: unknown option '$k'") unless $KNOWN{$k};
    }
    _bad(timeout => $rc{timeout}, 'is not a number of seconds')
        if defined $rc{timeout} and !_seconds($rc{timeout});
    _bad(read_timeout => $rc{read_timeout}, 'is not a number of seconds')
        if exists $rc{read_timeout} and !_seconds($rc{read_timeout});
    _bad(linger => $rc{linger}, 'is not a number of seconds')
        if exists $rc{linger} and !_seconds($rc{linger});
    for my $k (qw(max_line max_output backlog)) {
        _bad($k => $rc{$k}, 'is not a positive integer')
            if exists $rc{$k} and !(defined $rc{$k} and $rc{$k} =~ /\A[1-9]\d*\z/);
    }
    _bad(framing => $rc{framing}, "is not 'line' or 'raw'")
        if exists $rc{framing} and !(defined $rc{framing} and $rc{framing} =~ /\A(?:line|raw)\z/);
    if (exists $rc{backend}) {
        my %have = map { $_ => 1 } backends();
        _bad(backend => $rc{backend}, 'is not available (have: ' . join(' ', backends()) . ')')
            unless defined $rc{backend} and $have{$rc{backend}};
    }
    _bad(callback => $rc{callback}, 'is not a hash reference')
        if defined $rc{callback} and ref $rc{callback} ne 'HASH';

    my $self = bless {
        %DEFAULT,
        %rc,
        port     => $rc{port},
        host     => $rc{host} || 'localhost',
        callback => $rc{callback} || {},
        timeout  => $rc{timeout},
    }, ref $class || $class;
    $self->_init;
    return $self;
}

sub callback {
    my ($self, %callback) = @_;
    @{$self->{callback}}{keys %callback} = values %callback;
    return $self;
}

sub connections { @{ $_[0]->_connections } }

sub DESTROY {
    local ($!, $@);
    $_[0]->destroy;
}

sub CLONE_SKIP { 1 }

package IO::Socket::INET::Daemon::Peer;

our @ISA = ('IO::Socket::INET');
our $VERSION = $IO::Socket::INET::Daemon::VERSION;

sub sockdomain { $_[0]->_family }
sub socktype   { Socket::SOCK_STREAM() }
sub protocol   { Socket::IPPROTO_TCP() }
sub error      { 0 }
sub clearerr   { 0 }
sub sync       { '0 but true' }
sub CLONE_SKIP { 1 }

package IO::Socket::INET::Daemon::Peer::Tie;

# What `print $io`, `<$io>` and friends call: the peer's own methods, which
# accept this tie object as well as the glob.
our $VERSION = $IO::Socket::INET::Daemon::VERSION;
for my $m (qw(PRINT PRINTF READLINE GETC READ WRITE CLOSE EOF FILENO BINMODE)) {
    no strict 'refs';
    *{$m} = \&{"IO::Socket::INET::Daemon::Peer::$m"};
}

sub UNTIE   { }
sub DESTROY { }
sub OPEN    { Carp::croak('IO::Socket::INET::Daemon::Peer: cannot open a peer handle') }
sub SEEK    { $! = Errno::ESPIPE(); return 0 }
sub TELL    { -1 }
sub CLONE_SKIP { 1 }

require Errno;

1;
