package TestHAProxy;

# A real HAProxy for the tests (t/58-haproxy.t): find the binary, write a
# config into a temp dir (a fixed global/defaults head, then the test's
# frontends and backends), start it in the foreground (haproxy -db) in a
# process group of its own with its output in a file, wait until its stats
# socket answers (by then every listener is bound: haproxy binds them all
# before it starts serving), ask that socket for the servers' state, and
# stop it (TERM, then KILL; TestProc also ends it when the test exits).
#
# Waiting on the stats socket and not on a frontend port matters: a probe
# connection to a frontend would be forwarded to a backend server and show
# up in its event log.

use strict;
use warnings;

use Exporter ();
use IO::Socket::INET ();
use IO::Socket::UNIX ();
use Socket ();
use TestISD ();         # (not imported: no second alarm)
use TestProc qw(spawn reap end_kid slurp spit);

our @ISA    = ('Exporter');
our @EXPORT = qw(haproxy_bin haproxy_version have_ipv6 haproxy_start listening);

# haproxy_bin: the haproxy binary ($ENV{HAPROXY}, else PATH, else the
# sbin directories PATH often lacks), or undef (HAPROXY=none: as if there
# were none)
sub haproxy_bin {
    return -x $ENV{HAPROXY} ? $ENV{HAPROXY} : undef if defined $ENV{HAPROXY} && length $ENV{HAPROXY};
    for my $d (split(/:/, $ENV{PATH} || ''), qw(/usr/sbin /usr/local/sbin /sbin)) {
        next unless length $d;
        return "$d/haproxy" if -f "$d/haproxy" && -x _;
    }
    return undef;
}

# haproxy_version: "2.6.12" (undef if it does not say)
sub haproxy_version {
    my $bin = haproxy_bin() or return undef;
    my $v = `"$bin" -v 2>&1`;
    return $v =~ /version (\d+\.\d+(?:\.\d+)?)/ ? $1 : undef;
}

# have_ipv6: true when [::1]:0 can be bound here
sub have_ipv6 {
    my $fd;
    socket($fd, Socket::AF_INET6(), Socket::SOCK_STREAM(), 0) or return 0;
    my $ok = bind($fd, Socket::pack_sockaddr_in6(0, Socket::inet_pton(Socket::AF_INET6(), '::1')));
    close $fd;
    return $ok ? 1 : 0;
}

# listening($port): true when some socket listens on TCP port $port (read
# from /proc/net/tcp and tcp6: no connection is made, so a PROXY server
# sees no header-less probe); without /proc, a connect
sub listening {
    my ($port) = @_;
    my $seen = 0;
    for my $f ('/proc/net/tcp', '/proc/net/tcp6') {
        open my $fh, '<', $f or next;
        $seen = 1;
        while (my $l = <$fh>) {
            # sl local_address rem_address st ...; st 0A is LISTEN
            my @f = split ' ', $l;
            next unless @f > 3 && $f[3] eq '0A' && $f[1] =~ /:([0-9A-F]{4})\z/;
            return 1 if hex($1) == $port;
        }
    }
    return 0 if $seen;
    my $c = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Timeout => 1);
    return $c ? 1 : 0;
}

# The head of every config.  One thread (the tests run on one core too),
# logs to stderr (the log file: what a failing test shows), a stats socket
# for the servers' state, timeouts short enough for a test and long enough
# for a loaded machine.
sub _head {
    my ($sock) = @_;
    return <<"EOC";
global
    nbthread 1
    log stderr format raw local0 info
    stats socket $sock mode 600 level admin
    hard-stop-after 3s

defaults
    mode tcp
    log global
    option tcplog
    timeout connect 2s
    timeout client 10s
    timeout server 10s
    timeout check 1s

EOC
}

# haproxy_start(dir => DIR, name => NAME, config => TEXT): TEXT (frontends,
# backends) after the head, written to DIR/NAME.cfg; haproxy started on it;
# returns a TestHAProxy object once its stats socket answers, or dies with
# haproxy's output.  With raw => 1 TEXT is the whole config (it must have a
# "stats socket PATH" line of its own).
sub haproxy_start {
    my (%o) = @_;
    my $bin = haproxy_bin() or die "haproxy_start: no haproxy\n";
    my ($dir, $name) = ($o{dir}, $o{name} || 'haproxy');
    my $self = bless {
        cfg  => "$dir/$name.cfg",
        log  => "$dir/$name.log",
        sock => "$dir/$name.sock",
    }, __PACKAGE__;
    if ($o{raw}) {
        $o{config} =~ /^\s*stats\s+socket\s+(\S+)/m
            or die "haproxy_start: a raw config needs a stats socket\n";
        $self->{sock} = $1;
    }
    unlink $self->{sock}, $self->{log};
    spit($self->{cfg}, $o{raw} ? $o{config} : _head($self->{sock}) . $o{config});
    $self->{pid} = spawn([$bin, '-db', '-f', $self->{cfg}], out => $self->{log});
    my $up = TestISD::wait_until(sub {
        return 1 if ($self->cmd('show info', 1) // '') =~ /^Pid:/m;
        return -1 if defined reap($self->{pid}, 0);
        return 0;
    }, 10, 0.02);
    if (!$up || $up < 0) {
        my $why = $up ? 'exited' : 'its stats socket did not answer within 10 s';
        $self->stop;
        die "haproxy_start: haproxy $why\nconfig:\n" . slurp($self->{cfg})
          . "output:\n" . slurp($self->{log});
    }
    return $self;
}

sub pid { $_[0]{pid} }
sub cfg { $_[0]{cfg} }
sub log_text { slurp($_[0]{log}) }

# cmd($command, $timeout): what the stats socket answers (undef if it cannot
# be reached)
sub cmd {
    my ($self, $command, $timeout) = @_;
    my $s = IO::Socket::UNIX->new(Peer => $self->{sock}, Type => Socket::SOCK_STREAM())
        or return undef;
    syswrite $s, "$command\n";
    my $r = TestISD::read_until_eof($s, defined $timeout ? $timeout : 2);
    close $s;
    return $r;
}

# stat(): { "BACKEND/SERVER" => { pxname, svname, status, ... } } from
# "show stat" (its CSV head names the columns)
sub stat {
    my ($self) = @_;
    my $csv = $self->cmd('show stat') // '';
    my @lines = split /\n/, $csv;
    my $head = shift @lines // '';
    $head =~ s/\A#\s*// or return {};
    my @col = split /,/, $head, -1;
    my %r;
    for my $l (@lines) {
        my @f = split /,/, $l, -1;
        my %row;
        @row{@col} = @f;
        next unless defined $row{pxname} && defined $row{svname};
        $r{"$row{pxname}/$row{svname}"} = \%row;
    }
    return \%r;
}

# state("be/s1"): "STATUS CHECK_STATUS" ("UP L4OK", "UP INI" before the
# first check is done, "DOWN L4CON"...), undef if unknown
sub state {
    my ($self, $which) = @_;
    my $row = $self->stat->{$which} or return undef;
    return join ' ', map { defined $_ ? $_ : '' } @$row{qw(status check_status)};
}

# wait_state($timeout, "be/s1" => qr/^UP L\dOK/, ...): true once every
# server named is in the state given (as state() says it)
sub wait_state {
    my ($self, $timeout, %want) = @_;
    return TestISD::wait_until(sub {
        my $st = $self->stat;
        for my $k (keys %want) {
            my $row = $st->{$k} or return 0;
            my $s = join ' ', map { defined $_ ? $_ : '' } @$row{qw(status check_status)};
            return 0 unless $s =~ $want{$k};
        }
        return 1;
    }, $timeout, 0.05);
}

# stop: TERM to its group, then KILL; the wait status
sub stop {
    my ($self) = @_;
    return $self->{status} if exists $self->{status};
    my $st = end_kid($self->{pid});
    $self->{status} = $st;
    return $st;
}

sub DESTROY {
    my ($self) = @_;
    local ($?, $!, $@);
    $self->stop if $self->{pid};
}

1;
