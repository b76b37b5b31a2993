package IO::Socket::INET::Daemon;

use strict;
use warnings;

our $VERSION = '1.05';

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
    high_water   => 1_048_576,
    low_water    => 0,
);

my %KNOWN = map { $_ => 1 } qw(port host listen timeout callback framing separator length_format
    max_line max_output read_timeout backlog backend linger idle_timeout
    max_connections high_water low_water daemonize pid_file log_file user group
    workers stop_grace max_requests reuseport proxy_protocol trusted_proxies proxy_timeout tls);

sub _bad {
    my ($what, $value, $want) = @_;
    $value = defined $value ? "'$value'" : 'undef';
    Carp::croak("IO::Socket::INET::Daemon::new: $what: $value $want");
}

sub _seconds { defined $_[0] && $_[0] =~ /\A(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?\z/ }

sub new {
    my ($class, %rc) = @_;

    # The 0.04 check and message, kept to the letter (port 0 is new: any
    # free port); with listen => [...] port and host are not needed.
    Carp::croak("Called with no/invalid port.\n")
        if !exists $rc{listen}
           and (!defined $rc{port} or $rc{port} !~ /\A\d+\z/ or $rc{port} > 65535);

    for my $k (sort keys %rc) {
        Carp::croak("IO::Socket::INET::Daemon::new: unknown option '$k'") unless $KNOWN{$k};
    }
    if (grep { exists $rc{$_} } qw(daemonize pid_file log_file user group)) {
        require IO::Socket::INET::Daemon::Daemonize;
        IO::Socket::INET::Daemon::Daemonize::check(\%rc);
    }
    _bad(timeout => $rc{timeout}, 'is not a number of seconds')
        if defined $rc{timeout} and !_seconds($rc{timeout});
    _bad(read_timeout => $rc{read_timeout}, 'is not a number of seconds')
        if exists $rc{read_timeout} and !_seconds($rc{read_timeout});
    for my $k (qw(linger idle_timeout)) {
        _bad($k => $rc{$k}, 'is not a number of seconds')
            if exists $rc{$k} and defined $rc{$k} and !_seconds($rc{$k});
    }
    _bad(linger => $rc{linger}, 'is not a number of seconds')
        if exists $rc{linger} and !defined $rc{linger};
    for my $k (qw(max_line max_output backlog high_water)) {
        _bad($k => $rc{$k}, 'is not a positive integer')
            if exists $rc{$k} and !(defined $rc{$k} and $rc{$k} =~ /\A[1-9]\d*\z/);
    }
    for my $k (qw(max_connections low_water)) {
        _bad($k => $rc{$k}, 'is not an integer of 0 or more')
            if exists $rc{$k} and !(defined $rc{$k} and $rc{$k} =~ /\A\d+\z/);
    }
    {
        my $hw = exists $rc{high_water} ? $rc{high_water} : $DEFAULT{high_water};
        _bad(low_water => $rc{low_water}, "is not below high_water ($hw)")
            if exists $rc{low_water} and $rc{low_water} >= $hw;
    }
    _bad(framing => $rc{framing}, "is not 'line', 'raw' or 'length'")
        if exists $rc{framing} and !(defined $rc{framing} and $rc{framing} =~ /\A(?:line|raw|length)\z/);
    _bad(length_format => $rc{length_format}, 'is not one of N n V v C')
        if exists $rc{length_format}
           and !(defined $rc{length_format} and $rc{length_format} =~ /\A[NnVvC]\z/);
    if (exists $rc{separator}) {
        _bad(separator => $rc{separator}, 'is not a non-empty string of bytes')
            if !defined $rc{separator} or ref $rc{separator} or !length $rc{separator}
               or !utf8::downgrade(my $copy = $rc{separator}, 1);
        _bad(separator => $rc{separator}, "goes with framing 'line', not '$rc{framing}'")
            if defined $rc{framing} and $rc{framing} ne 'line';
    }
    if (exists $rc{backend}) {
        my %have = map { $_ => 1 } backends();
        _bad(backend => $rc{backend}, 'is not available (have: ' . join(' ', backends()) . ')')
            unless defined $rc{backend} and $have{$rc{backend}};
    }
    _bad(callback => $rc{callback}, 'is not a hash reference')
        if defined $rc{callback} and ref $rc{callback} ne 'HASH';

    my @specs;
    if (exists $rc{listen}) {
        my $l = $rc{listen};
        _bad(listen => $l, 'is not an array reference of addresses (or one address)')
            if !defined $l or (ref $l and ref $l ne 'ARRAY' and ref $l ne 'HASH')
               or (ref $l eq 'ARRAY' and !@$l);
        @specs = map { _listen_spec($_) } ref $l eq 'ARRAY' ? @$l : ($l);
    }
    elsif (defined $rc{host} and ($rc{host} eq '*' or $rc{host} eq '::')) {
        # every address, IPv4 and IPv6 (new in 1.02; 0.04 took '*' as 0.0.0.0)
        @specs = ({ type => 'tcp', host => '*', port => $rc{port} });
    }
    elsif (defined $ENV{LISTEN_FDS} or defined $ENV{SERVER_STARTER_PORT}) {
        # host and port, as 0.04 binds them (the first IPv4 address of a
        # name), unless systemd or Server::Starter passed that socket down
        @specs = (_host_spec(\%rc));
    }

    if (exists $rc{reuseport}) {
        my $v = $rc{reuseport};
        _bad(reuseport => $v, 'is not 0 or 1') if defined $v and (ref $v or $v !~ /\A[01]?\z/);
        if ($v) {
            # SO_REUSEPORT on every TCP and UDP listener that does not say
            @specs = (_host_spec(\%rc)) unless @specs;
            for my $s (@specs) {
                $s->{reuseport} = 1 if ($s->{type} eq 'tcp' or $s->{type} eq 'udp')
                                       and !exists $s->{reuseport};
            }
        }
    }
    if (grep { exists $rc{$_} } qw(workers stop_grace max_requests)) {
        require IO::Socket::INET::Daemon::Prefork;
        IO::Socket::INET::Daemon::Prefork::check(\%rc, \@specs);
    }
    my @proxy = _proxy_listeners(\%rc, \@specs);
    my @tls = _tls_listeners(\%rc, \@specs);

    my $self = bless {
        %DEFAULT,
        %rc,
        port     => $rc{port},
        host     => defined $rc{host} ? $rc{host} : 'localhost',
        callback => $rc{callback} || {},
        timeout  => $rc{timeout},
        (@specs ? (_specs => \@specs) : ()),
        (@proxy ? (_proxy => \@proxy) : ()),
        (@tls ? (_tls => \@tls) : ()),
    }, ref $class || $class;
    $self->_init;
    return $self;
}

# host and port as a SPEC, bound as 0.04 binds them (the first IPv4
# address of a name)
sub _host_spec {
    my ($rc) = @_;
    my $host = defined $rc->{host} ? $rc->{host} : 'localhost';
    $host = '0.0.0.0' if $host eq '';
    return { type => 'tcp', host => $host, port => $rc->{port} + 0, first => 1,
             v6 => $host =~ /:/ ? 1 : 0, v4 => $host =~ /:/ ? 0 : 1 };
}

# Per-listener options of a listen => [{ address => SPEC, ... }] entry, and
# the kind of listener each goes with.
my %LISTEN_OPT = (address => 'any', unix_mode => 'unix', reuseport => 'tcp', v6only => 'tcp',
                  rcvbuf => 'bound', sndbuf => 'bound', proxy_protocol => 'stream',
                  trusted_proxies => 'stream', proxy_timeout => 'stream', tls => 'stream');

# The PROXY options of new or of a listen entry, checked: into $to.
sub _proxy_opts {
    my ($o, $to) = @_;
    if (exists $o->{proxy_protocol}) {
        my $v = $o->{proxy_protocol};
        _bad(proxy_protocol => $v, 'is not 0 or 1')
            if defined $v and (ref $v or $v !~ /\A[01]?\z/);
        $to->{proxy_protocol} = $v ? 1 : 0;
    }
    if (exists $o->{proxy_timeout}) {
        my $v = $o->{proxy_timeout};
        _bad(proxy_timeout => $v, 'is not a number of seconds (0: no limit)')
            unless defined $v and _seconds($v);
        $to->{proxy_timeout} = $v > 0 ? ($v >= 2e6 ? 2e9 : int($v * 1000 + 0.999)) : 0;
    }
    if (exists $o->{trusted_proxies}) {
        my $t = $o->{trusted_proxies};
        $t = [$t] if defined $t and !ref $t;
        _bad(trusted_proxies => $o->{trusted_proxies},
             'is not an array reference of addresses and CIDR blocks')
            if ref $t ne 'ARRAY';
        _bad(trusted_proxies => '[]', 'is empty (leave it out to trust every source)') unless @$t;
        my @blocks;
        for my $a (@$t) {
            my $c = defined $a && !ref $a && $a =~ m{\A[0-9A-Fa-f:.]+(?:/\d+)?\z} ? _cidr($a) : undef;
            _bad(trusted_proxies => $a, 'is not an IPv4 or IPv6 address or CIDR block '
                 . '(127.0.0.1, 10.0.0.0/8, ::1, fd00::/8)') unless defined $c;
            push @blocks, $c;
        }
        $to->{trusted_proxies} = \@blocks;
        $to->{_trusted_given} = join ' ', @$t;
    }
    return $to;
}

# Which listeners take a PROXY header (proxy_protocol in new, or in their
# listen entry), with what timeout and trusted blocks: each gets
# {proxy} = its index in the list returned ([timeout_ms, [blocks]], what
# the C side makes its options of).
sub _proxy_listeners {
    my ($rc, $specs) = @_;
    my $top = _proxy_opts($rc, {});
    for my $k (qw(trusted_proxies proxy_timeout)) {
        for my $s ($top, @$specs) {
            next unless exists $s->{$k};
            my $on = exists $s->{proxy_protocol} ? $s->{proxy_protocol} : $top->{proxy_protocol};
            $on ||= grep { $_->{proxy_protocol} } @$specs if $s == $top;
            _bad($k => ($k eq 'proxy_timeout' ? $s->{$k} / 1000 : $s->{_trusted_given}),
                 'is for a listener with proxy_protocol => 1, and there is none'
                 . ($s == $top ? '' : ' of that address')) unless $on;
        }
    }
    return () unless $top->{proxy_protocol} or grep { $_->{proxy_protocol} } @$specs;
    @$specs = (_host_spec($rc)) if !@$specs and $top->{proxy_protocol};
    my @p;
    for my $s (@$specs) {
        next if $s->{type} eq 'udp';
        my $on = exists $s->{proxy_protocol} ? $s->{proxy_protocol} : $top->{proxy_protocol};
        next unless $on;
        my $t = exists $s->{proxy_timeout} ? $s->{proxy_timeout}
              : exists $top->{proxy_timeout} ? $top->{proxy_timeout} : 3000;
        my $tr = $s->{trusted_proxies} || $top->{trusted_proxies} || [];
        push @p, [ $t, $tr ];
        $s->{proxy} = $#p;
    }
    _bad(proxy_protocol => 1, 'has no TCP or UNIX listener to go with') unless @p;
    return @p;
}

# tls => {...} of new or of a listen entry, checked (a context is made
# from it once, so that a file that cannot be read, or a key that does not
# go with its certificate, croaks now with OpenSSL's reason): the options
# as the C side takes them.
my %TLS_OPT = map { $_ => 1 } qw(cert_file key_file ca_file ca_path verify_client ciphers
    ciphersuites min_version alpn sni handshake_timeout starttls);
my %TLS_VERSION = ('TLSv1.2' => 0x0303, 'TLSv1.3' => 0x0304, '1.2' => 0x0303, '1.3' => 0x0304);
my %TLS_VERIFY = (none => 0, optional => 1, require => 2);

sub _tls_opts {
    my ($t) = @_;
    my $bad = sub { _bad("tls: $_[0]", $_[1], $_[2]) };
    Carp::croak('IO::Socket::INET::Daemon::new: tls: this IO::Socket::INET::Daemon was built '
        . 'without OpenSSL (its headers were not found when Makefile.PL ran): install '
        . 'libssl-dev (Debian, Ubuntu) or openssl-devel (Fedora), then rebuild it: '
        . 'perl Makefile.PL && make && make install') unless _has_tls();
    $bad->('tls', $t, 'is not a hash reference of TLS options (cert_file => ..., key_file => ...)')
        unless ref $t eq 'HASH';
    for my $k (sort keys %$t) {
        Carp::croak("IO::Socket::INET::Daemon::new: tls: unknown option '$k' (have: "
                    . join(', ', sort keys %TLS_OPT) . ')') unless $TLS_OPT{$k};
    }
    my %o;
    for my $k (qw(cert_file key_file ca_file ca_path ciphers ciphersuites)) {
        next unless exists $t->{$k};
        my $v = $t->{$k};
        $bad->($k, $v, 'is not a ' . ($k =~ /file|path/ ? 'path' : 'string'))
            if !defined $v or ref $v or !length $v or $v =~ /\0/;
        $o{$k} = $v;
    }
    $bad->(cert_file => undef, 'is missing (the PEM file of the certificate and its chain)')
        unless defined $o{cert_file};
    if (exists $t->{verify_client}) {
        my $v = $t->{verify_client};
        $bad->(verify_client => $v, "is not 'none', 'optional' or 'require'")
            unless defined $v and !ref $v and exists $TLS_VERIFY{$v};
        $o{verify} = $TLS_VERIFY{$v};
        $bad->(verify_client => $v, 'needs ca_file or ca_path (the CAs client certificates are checked against)')
            if $o{verify} and !defined $o{ca_file} and !defined $o{ca_path};
    }
    if (exists $t->{min_version}) {
        my $v = $t->{min_version};
        $bad->(min_version => $v, "is not 'TLSv1.2' or 'TLSv1.3'")
            unless defined $v and !ref $v and $TLS_VERSION{$v};
        $o{min_version} = $TLS_VERSION{$v};
    }
    if (exists $t->{alpn}) {
        my $v = $t->{alpn};
        $bad->(alpn => $v, "is not an array reference of protocol names (['h2', 'http/1.1'])")
            unless ref $v eq 'ARRAY';
        $bad->(alpn => '[]', 'is empty (leave it out for no ALPN)') unless @$v;
        for (@$v) {
            $bad->(alpn => $_, 'is not a protocol name (1 to 255 bytes)')
                if !defined $_ or ref $_ or !length $_ or length $_ > 255 or utf8::is_utf8($_) && /[^\x00-\xff]/;
        }
        $o{alpn} = [@$v];
    }
    if (exists $t->{sni}) {
        my $v = $t->{sni};
        $bad->(sni => $v, "is not a hash reference of host names to { cert_file => ..., key_file => ... }")
            unless ref $v eq 'HASH' and %$v;
        my %s;
        for my $h (sort keys %$v) {
            $bad->(sni => $h, "is not a host name ('mail.example' or '*.example')")
                unless $h =~ /\A(?:\*\.)?[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?\z/;
            my $e = $v->{$h};
            $bad->("sni: $h", $e, 'is not a hash reference ({ cert_file => ..., key_file => ... })')
                unless ref $e eq 'HASH' and defined $e->{cert_file};
            for my $k (sort keys %$e) {
                $bad->("sni: $h", $k, 'is not cert_file or key_file') unless $k eq 'cert_file' or $k eq 'key_file';
                $bad->("sni: $h: $k", $e->{$k}, 'is not a path')
                    if !defined $e->{$k} or ref $e->{$k} or !length $e->{$k};
            }
            $s{$h} = { %$e };
        }
        $o{sni} = \%s;
    }
    if (exists $t->{handshake_timeout}) {
        my $v = $t->{handshake_timeout};
        $bad->(handshake_timeout => $v, 'is not a number of seconds (0: no limit but idle_timeout)')
            unless defined $v and _seconds($v);
        $o{timeout_ms} = $v > 0 ? ($v >= 2e6 ? 2e9 : int($v * 1000 + 0.999)) : 0;
    }
    else {
        $o{timeout_ms} = 10_000;
    }
    if (exists $t->{starttls}) {
        my $v = $t->{starttls};
        $bad->(starttls => $v, 'is not 0 or 1') if defined $v and (ref $v or $v !~ /\A[01]?\z/);
        $o{starttls} = $v ? 1 : 0;
    }
    my $why = _tls_check(\%o);
    Carp::croak("IO::Socket::INET::Daemon::new: tls: $why") if defined $why;
    return \%o;
}

# Which listeners serve TLS (tls in new, or in their listen entry; 0 or
# undef there: not that one): each gets {tlsi} = its index in the list
# returned (the options as _tls_opts made them).
sub _tls_listeners {
    my ($rc, $specs) = @_;
    my $top = defined $rc->{tls} ? _tls_opts($rc->{tls}) : undef;
    return () unless $top or grep { $_->{tls} } @$specs;
    @$specs = (_host_spec($rc)) if !@$specs and $top;
    my (@t, $topi);
    for my $s (@$specs) {
        # (a UDP entry with a tls of its own has croaked in _listen_spec)
        next if $s->{type} eq 'udp' or exists $s->{tls} && !$s->{tls};
        if ($s->{tls}) {
            push @t, _tls_opts($s->{tls});
            $s->{tlsi} = $#t;
        }
        elsif ($top) {
            $topi //= push(@t, $top) - 1;
            $s->{tlsi} = $topi;
        }
    }
    _bad(tls => $rc->{tls}, 'has no TCP or UNIX listener to go with') if $top and !@t;
    return @t;
}

# One listen SPEC, parsed (not resolved: that is done when binding).
sub _listen_spec {
    my ($spec) = @_;
    my %o;
    if (ref $spec eq 'HASH') {
        %o = %$spec;
        for my $k (sort keys %o) {
            _bad(listen => $k, 'is not a listener option (have: '
                 . join(', ', sort keys %LISTEN_OPT) . ')') unless $LISTEN_OPT{$k};
        }
        _bad(listen => undef, 'entry has no address') unless defined $o{address};
        $spec = delete $o{address};
    }
    _bad(listen => $spec, 'is not an address') if !defined $spec or ref $spec;
    my %l;
    my $whole = $spec;
    my $udp = $spec =~ s/\Audp://;
    if ($udp) {
        _bad(listen => $whole, 'is not udp:HOST:PORT, udp:[IPv6]:PORT or udp:*:PORT')
            unless $spec =~ /\A\[[^\]]*\]:\d+\z/ or $spec =~ /\A[^:\[\]]+:\d+\z/;
        _bad(listen => $whole, 'is not udp:HOST:PORT (an inherited UDP socket is fd:N or '
             . 'systemd:NAME, without udp:)') if $spec =~ /\A(?:fd|unix|systemd):/;
    }
    if ($spec =~ /\Afd:(\d+)\z/) {
        %l = (type => 'fd', fd => $1 + 0);
    }
    elsif ($spec =~ /\Asystemd(?::(.+))?\z/s) {
        %l = (type => 'systemd', name => $1);
    }
    elsif ($spec =~ /\Aunix:(.*)\z/s) {
        my $path = $1;
        _bad(listen => $spec, 'has an empty path') unless length $path;
        _bad(listen => $spec, 'has a NUL byte in its path') if $path =~ /\0/;
        _bad(listen => $spec, 'has a path longer than 107 bytes') if length($path) > 107;
        %l = (type => 'unix', path => $path);
    }
    elsif ($spec =~ /\A\[([^\]]*)\]:(\d+)\z/ or $spec =~ /\A([^:\[\]]+):(\d+)\z/) {
        my ($host, $port) = ($1, $2);
        my $v6 = $spec =~ /\A\[/;
        _bad(listen => $whole, 'has a port over 65535') if $port > 65535;
        _bad(listen => $whole, 'is not an IPv6 address in brackets')
            if $v6 and !defined Socket::inet_pton(Socket::AF_INET6(), $host);
        _bad(listen => $whole, 'has no host (use *:PORT for every address)') unless length $host;
        %l = (type => 'tcp', host => $host, port => $port + 0, v6 => $v6);
    }
    elsif ($spec =~ /:\z/ or $spec =~ /\A[^:]+\z/ or $spec =~ /:[^\d\]]*\z/) {
        _bad(listen => $spec, 'has no port');
    }
    else {
        _bad(listen => $spec, 'is not HOST:PORT, [IPv6]:PORT, *:PORT, unix:PATH, fd:N or systemd[:NAME]');
    }
    $l{type} = 'udp' if $udp;
    for my $k (sort keys %o) {
        next if $LISTEN_OPT{$k} eq 'tcp' and $l{type} eq 'udp';
        next if $LISTEN_OPT{$k} eq 'bound' and $l{type} =~ /\A(?:tcp|udp|unix)\z/;
        next if $LISTEN_OPT{$k} eq 'stream' and $l{type} ne 'udp';
        _bad(listen => $whole, "cannot take $k (it is for "
             . ($LISTEN_OPT{$k} eq 'stream' ? 'TCP and UNIX listeners)'
                : ($LISTEN_OPT{$k} eq 'unix' ? 'unix:PATH' : $LISTEN_OPT{$k} eq 'bound'
                   ? 'TCP, UDP and UNIX' : 'TCP and UDP')
                  . ' listeners that it binds itself)')) if $LISTEN_OPT{$k} ne $l{type};
    }
    _proxy_opts(\%o, \%l);
    $l{tls} = $o{tls} if exists $o{tls};
    for my $k (qw(rcvbuf sndbuf)) {
        next unless exists $o{$k};
        _bad($k => $o{$k}, 'is not a size in bytes (1 to 2147483647)')
            unless defined $o{$k} and $o{$k} =~ /\A[1-9]\d{0,9}\z/ and $o{$k} <= 2147483647;
        $l{$k} = $o{$k} + 0;
    }
    if (exists $o{unix_mode}) {
        my $m = $o{unix_mode};
        $m = oct $m if defined $m and $m =~ /\A0[0-7]{1,4}\z/;
        # (no setuid, setgid or sticky bits on a socket: a mode over 0777
        # is a decimal number that was meant as octal, '660' for 0660)
        _bad(unix_mode => $o{unix_mode}, 'is not a file mode (0660 or "0660")')
            unless defined $m and $m =~ /\A\d+\z/ and $m <= 0777;
        $l{unix_mode} = $m + 0;
    }
    $l{reuseport} = $o{reuseport} ? 1 : 0 if exists $o{reuseport};
    $l{v6only} = $o{v6only} ? 1 : 0 if exists $o{v6only};
    return \%l;
}

# What the C side binds, resolved now: [kind, address, backlog, v6only,
# reuseport, group, unix_mode, optional, rcvbuf, sndbuf, proxy], kind 'tcp', 'any', 'unix' or
# 'fd' (inherited: systemd, Server::Starter, fd:N).  Called by listen and
# run; on a name that does not resolve, or a systemd SPEC with no such
# socket: undef, with $! and _bind_error.
sub _binds {
    my ($self) = @_;
    my (@b, $group, %used);
    my $inherit = defined $ENV{LISTEN_FDS} || defined $ENV{SERVER_STARTER_PORT}
                  || $INC{'IO/Socket/INET/Daemon/Systemd.pm'};
    require IO::Socket::INET::Daemon::Systemd if $inherit;
    my $fail = sub {
        $self->{_bind_error} = "listen: $_[0]";
        $! = $_[1];
        return undef;
    };
    for my $s (@{ $self->{_specs} }) {
        my @px = defined $s->{proxy} || defined $s->{tlsi}
                 ? ((undef) x 8, $s->{proxy}, $s->{tlsi}) : ();
        if ($s->{type} eq 'fd') {
            push @b, [ fd => $s->{fd}, @px ];
            next;
        }
        if ($s->{type} eq 'systemd') {
            my @m = $inherit ? IO::Socket::INET::Daemon::Systemd::matching($s, [], \%used) : ();
            return $fail->('systemd' . (defined $s->{name} ? ":$s->{name}" : '')
                           . ': no such socket was passed by systemd (LISTEN_FDS)', Errno::ENOENT())
                unless @m;
            $used{ $_->{fd} } = 1, push @b, [ fd => $_->{fd}, @px ] for @m;
            next;
        }
        if ($s->{type} eq 'unix') {
            my @m = $inherit ? IO::Socket::INET::Daemon::Systemd::matching($s, [], \%used) : ();
            if (@m) {
                $used{ $_->{fd} } = 1, push @b, [ fd => $_->{fd}, @px ] for @m;
                next;
            }
            push @b, [ unix => $s->{path}, undef, undef, undef, undef, $s->{unix_mode}, undef,
                       $s->{rcvbuf}, $s->{sndbuf}, $s->{proxy}, $s->{tlsi} ];
            next;
        }
        my @ai;
        if ($s->{host} ne '*' or $s->{v6}) {
            my $err;
            ($err, @ai) = Socket::getaddrinfo($s->{host}, $s->{port}, {
                socktype => $s->{type} eq 'udp' ? Socket::SOCK_DGRAM() : Socket::SOCK_STREAM(),
                flags    => Socket::AI_NUMERICSERV(),
                ($s->{v6} ? (family => Socket::AF_INET6()) : $s->{v4} ? (family => Socket::AF_INET()) : ()),
            });
            return $fail->("resolve $s->{host}: $err", Errno::EADDRNOTAVAIL()) if $err;
            @ai = ($ai[0]) if $s->{first};
        }
        if ($inherit and ($s->{type} eq 'tcp' or $s->{type} eq 'udp')) {
            my @addrs = map { (Socket::getnameinfo($_->{addr}, Socket::NI_NUMERICHOST()))[1] } @ai;
            my @m = IO::Socket::INET::Daemon::Systemd::matching($s, \@addrs, \%used);
            if (@m) {
                $used{ $_->{fd} } = 1, push @b, [ fd => $_->{fd}, @px ] for @m;
                next;
            }
        }
        my $udp = $s->{type} eq 'udp';
        if (!@ai) {
            push @b, [ ($udp ? 'udpany' : 'any') => $s->{port}, undef, $s->{v6only}, $s->{reuseport},
                       undef, undef, undef, $s->{rcvbuf}, $s->{sndbuf}, $s->{proxy}, $s->{tlsi} ];
            next;
        }
        # a name: each of its addresses, on one port; one that this host
        # cannot bind (::1 without IPv6) is left out, as long as one binds
        my $literal = $s->{v6} || $s->{host} =~ /\A[\d.]+\z/ || $s->{first};
        my %seen;
        $group++;
        for my $ai (@ai) {
            next if $seen{ $ai->{addr} }++;
            push @b, [ ($udp ? 'udp' : 'tcp') => $ai->{addr}, undef, $s->{v6only}, $s->{reuseport},
                       $group, undef, $literal ? 0 : 1, $s->{rcvbuf}, $s->{sndbuf}, $s->{proxy}, $s->{tlsi} ];
        }
    }
    return \@b;
}

sub run {
    my $self = shift;
    if (!$self->{_daemonized} and ($self->{daemonize} or defined $self->{pid_file}
                                   or defined $self->{user} or defined $self->{group})) {
        require IO::Socket::INET::Daemon::Daemonize;
        return IO::Socket::INET::Daemon::Daemonize::run($self);
    }
    my $serve;
    if ($self->{workers} and !defined $self->{_worker}) {
        require IO::Socket::INET::Daemon::Prefork;
        $serve = \&IO::Socket::INET::Daemon::Prefork::run;
    }
    if (!defined $ENV{NOTIFY_SOCKET} and !exists $self->{_notify}) {
        return $serve ? $serve->($self) : $self->_run;
    }
    require IO::Socket::INET::Daemon::Systemd;
    return IO::Socket::INET::Daemon::Systemd::run($self, $serve);
}

# The live workers' PIDs, in the master (by slot).
sub workers {
    my $pf = $_[0]->{_prefork};
    return () unless $pf and $pf->{master} == $$;
    my $w = $pf->{workers};
    return sort { $w->{$a}{slot} <=> $w->{$b}{slot} or $w->{$a}{started} <=> $w->{$b}{started} } keys %$w;
}

sub callback {
    my ($self, %callback) = @_;
    @{$self->{callback}}{keys %callback} = values %callback;
    $self->_forget_callbacks;
    return $self;
}

sub connections { @{ $_[0]->_connections } }

sub timer {
    my ($self, %a) = @_;
    my $m = 'IO::Socket::INET::Daemon::timer';
    for my $k (sort keys %a) {
        Carp::croak("$m: unknown option '$k' (have: after, every, cb)")
            unless $k eq 'after' or $k eq 'every' or $k eq 'cb';
    }
    Carp::croak("$m: cb: " . (defined $a{cb} ? "'$a{cb}'" : 'undef')
                . ' is not a code reference')
        unless ref $a{cb} eq 'CODE';
    Carp::croak("$m: needs after or every") unless exists $a{after} or exists $a{every};
    for my $k (qw(after every)) {
        next unless exists $a{$k};
        Carp::croak("$m: $k: " . (defined $a{$k} ? "'$a{$k}'" : 'undef')
                    . ' is not a number of seconds')
            unless _seconds($a{$k});
    }
    Carp::croak("$m: every: '$a{every}' must be more than 0")
        if exists $a{every} and $a{every} == 0;
    my $every = exists $a{every} ? $a{every} : 0;
    my $after = exists $a{after} ? $a{after} : $every;
    return $self->_timer($after, $every, $a{cb});
}

# Inside another event loop (EMBEDDING): its watchers for this server.
# OpenSSL's version when built with it (TLS works), else undef.
sub has_tls { return _has_tls() }

sub attach {
    my $self = shift;
    require IO::Socket::INET::Daemon::Embed;
    return IO::Socket::INET::Daemon::Embed::attach($self, @_);
}

sub detach {
    my ($self) = @_;
    my $e = delete $self->{_embed} or return 0;
    $e->_stop;
    return 1;
}

sub DESTROY {
    local ($!, $@);
    $_[0]->detach if $_[0]{_embed};     # (before the descriptor goes)
    $_[0]->destroy;
}

sub CLONE_SKIP { 1 }

package IO::Socket::INET::Daemon::Peer;

our @ISA = ('IO::Socket::INET');
our $VERSION = $IO::Socket::INET::Daemon::VERSION;

sub sockdomain { $_[0]->_family }
sub socktype   { Socket::SOCK_STREAM() }
sub protocol   { $_[0]->_family == Socket::AF_UNIX() ? 0 : Socket::IPPROTO_TCP() }
sub error      { 0 }
sub clearerr   { 0 }
sub sync       { '0 but true' }

package IO::Socket::INET::Daemon::Datagram;

# The sender of a datagram on a UDP listener: data's $io.  Replies are
# datagrams to it (print, say, printf, send, syswrite: one each).
our $VERSION = $IO::Socket::INET::Daemon::VERSION;

sub sockdomain { $_[0]->_family }
sub socktype   { Socket::SOCK_DGRAM() }
sub protocol   { Socket::IPPROTO_UDP() }
sub connected  { $_[0]->peername }
sub opened     { $_[0]->fileno >= 0 ? 1 : '' }
sub close      { 1 }
sub shutdown   { 1 }
sub autoflush  { 1 }
sub blocking   { 1 }
sub flush      { 1 }
sub printflush { my $self = shift; $self->print(@_) }
sub binmode    { 1 }
sub error      { 0 }
sub clearerr   { 0 }
sub eof        { 1 }
sub CLONE_SKIP { 1 }

package IO::Socket::INET::Daemon::Timer;

our $VERSION = $IO::Socket::INET::Daemon::VERSION;

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

require Errno;

1;

__END__

=head1 NAME

IO::Socket::INET::Daemon - fast, simple TCP server with a C event core

=head1 SYNOPSIS

    use IO::Socket::INET::Daemon;

    my $host = IO::Socket::INET::Daemon->new(
        port     => 5000,
        timeout  => 20,     # the longest wait of one loop cycle before tick
                            # runs again; not a client idle timeout
        callback => {
            add    => \&add,
            remove => \&remove,
            data   => \&data,
        },
    );

    $host->run;

    sub add {
        my $io = shift;
        $io->print("Welcome, ", $io->peerhost, ".\n");
        return !0;
    }

    sub remove {
        my $io = shift;
        warn $io->peerhost, " left.\n";
    }

    sub data {
        my ($io, $host) = @_;
        my $line = $io->getline;
        $line =~ s/\r?\n//;
        if ($line eq 'quit') {
            $io->print("Bye.\n");
            return 0;
        }
        elsif ($line eq 'stop') {
            $host->stop;
        }
        else {
            $io->print("You wrote: $line\n");
            return !0;
        }
    }

=head1 DESCRIPTION

A TCP server in a few lines: it listens on a port, accepts connections,
calls your subs when a client connects, sends a line or goes away, and
closes connections when they are dead.

Version 1.00 is a rewrite of the 0.04 module of the same name with the same
interface: every script written for 0.04 runs unchanged.  Underneath, a small
event core written in C (epoll on Linux, kqueue on the BSDs and macOS, poll
everywhere else) accepts, reads, splits lines and writes; Perl is entered
once per message.  What changes for a 0.04 script:

=over 4

=item * One slow or silent client no longer stalls everybody.  Output is
buffered and written as each client can take it, so C<print> never blocks;
a client that sends half a line is simply waited for.

=item * C<data> is called once for every complete line, so many lines in
one packet are all answered, in order.

=item * Memory per connection is bounded (L</max_line>, L</max_output>), a
C<die> in a callback drops one connection instead of the server, and
SIGPIPE never kills the process.

=back

=head1 METHODS

The 0.04 interface comes first; what is new in 1.00 follows under
L</NEW IN 1.00>.

=head2 new

    my $server = IO::Socket::INET::Daemon->new(
        port     => 5000,          # required
        host     => 'localhost',   # default
        timeout  => 20,            # loop cycle wait in seconds, default undef
        callback => { add => ..., remove => ..., data => ..., tick => ... },
    );

Creates a server; it starts listening when L</run> (or L</listen>) is
called.

=over 4

=item port

The port to listen on: digits only, at most 65535.  A missing or invalid
port croaks with C<"Called with no/invalid port.\n">, as 0.04 did (unless
L</listen> is given).  C<0> picks a free port (see L</sockport>).

=item host

The host name or IP address to bind to; default C<localhost>.  Names are
resolved to IPv4, as L<IO::Socket::INET> does; a literal IPv6 address such
as C<::1> binds IPv6.  Only a missing or undef C<host> means
C<localhost>; the empty string C<''> binds every IPv4 address.  C<*> and
C<::> (new in 1.02) bind every address, IPv4 and IPv6: see L</LISTENING>.

=item timeout

The longest time, in seconds (fractions allowed), that one cycle of the
loop waits for traffic before calling C<tick> again.  C<undef> (the
default) waits until something happens.  It is not a client idle timeout:
a client that stays silent is never dropped for it.  It also bounds how
long a read method waits inside a callback, unless L</read_timeout> is set
(see L</READING AND WAITING>).  It is read from C<< $server->{timeout} >>
each cycle, as in 0.04.

=item callback

A hash of callbacks; see L</CALLBACKS>.

=back

Options new in 1.00 are listed under L</NEW IN 1.00>.  Invalid values croak
with a message naming the method, the option and the value, e.g.
C<IO::Socket::INET::Daemon::new: max_line: 'abc' is not a positive integer>.

=head2 callback

    $server->callback(data => \&data, remove => \&gone);

Adds or replaces callbacks; the others are kept.  It takes effect at once,
also from inside a callback while the server runs.  Returns the server.

=head2 run

    $server->run or die "cannot listen: $!";

Listens (SO_REUSEADDR, backlog L</backlog>) if not listening yet, then runs
the loop until L</stop> is called: each cycle calls C<tick>, waits for
traffic (at most L</timeout> seconds) and calls the other callbacks for
what arrived.  Returns true after L</stop>.

If it cannot listen (the port is taken, the host does not resolve...) it
returns false with C<$!> set, calls no callback and does not die; the same
object may C<run> again later.  Connections stay open across C<stop> and a
later C<run>.  Calling C<run> from inside a callback croaks.

=head2 stop

    $server->stop;
    $SIG{TERM} = sub { $server->stop(grace => 10) };

Makes L</run> return after the current cycle; from C<tick>, or from a
C<%SIG> handler, it returns without waiting again.  Connections stay open.

With C<< grace => SECONDS >> (new in 1.02) the stop is graceful: the
server stops accepting at once (every listener is closed: new clients are
refused, or, on a socket shared with other processes, taken by them), and
serves the open connections on until each has ended or SECONDS have
passed; then the ones still open get C<remove> and are closed, and
L</run> returns at once.  What they still have to send is delivered by
L</destroy> (which C<DESTROY> calls, so at the latest when the program
exits), for up to L</linger> seconds: a client that does not read cannot
hold up the return of C<run>.  Timers keep running meanwhile.  Nothing a client sent before the stop is lost, which is what
a restart under Server::Starter or a prefork supervisor needs.  A second
C<stop> with grace keeps the earlier deadline (or a sooner one); a plain
C<stop> during the grace ends it at once.  C<< grace => 0 >> removes and
closes every connection now.  A later L</run> listens anew.  Croaks on an
option other than C<grace> or a value that is not a number of seconds.

=head2 remove

    $server->remove($io);

Closes one connection without calling its C<remove> callback.  What was
already printed to it is still delivered (for up to L</linger> seconds);
from the caller's side the connection is gone at once: no more callbacks,
C<< $io->opened >> is false.  Safe from any callback, on any connection.

=head2 destroy

    $server->destroy;

Closes every connection (delivering what was printed to them, for up to
L</linger> seconds in all) and the listening socket, without C<remove>
callbacks.  Stops L</run> if called from inside it.  Safe to call twice;
called by C<DESTROY>.  Afterwards the port can be bound again at once, and
C<run> starts listening anew.

While it delivers, C<%SIG> handlers run promptly.  A handler that calls
C<destroy> or L</stop> ends the delivery at once: what is left is dropped
and the outer C<destroy> returns.  A handler that calls C<exit> ends the
process as usual.  See L</SIGNALS>.

=head1 CALLBACKS

Every callback gets the connection C<$io> and the server; a callback that is
not set, or set to a false value, counts as returning true.

=over 4

=item add($io, $server)

A client connected.  Return false to refuse it: what C<add> printed is
delivered, then the connection is closed, and C<remove> is not called.

=item data($io, $server, $line)

A complete line (ending in C<"\n">) arrived.  C<data> is called once for
each line, in order; C<< $io->getline >> returns that line, and it is also
passed as the third argument.  If the callback reads nothing at all, the
line is dropped when it returns.  When the client closes, a last line
without C<"\n"> is still delivered, if it is at most L</max_line> bytes.
Return false to end the connection:
C<remove> is called, then what was printed is delivered and the
connection closed.

=item remove($io, $server)

The connection ended: the client closed or reset it, C<data> returned
false or died, or the client broke a limit.  Called exactly once per
connection whose C<add> accepted it; C<< $io->peerhost >> and
C<< $io->peerport >> still answer inside it.

Inside C<remove>, C<$io> is still listed in L</connections> and
C<< $io->print >> returns true, whichever way the connection ended, so a
chat can tell the others "X left" the same way every time.  What C<remove>
prints is delivered (to this client too), unless the client stopped
reading (L</max_output>) or reset the connection: then the connection is
dropped right after C<remove> and its output is not sent.

=item tick(undef, $server)

Called at the start of every cycle of the loop: at least every L</timeout>
seconds, sooner when there is traffic.  Under load that is thousands of
times a second, so work meant to run every few seconds must check the time
itself:

    my $next = time + 5;
    my $server = IO::Socket::INET::Daemon->new(port => 5000, callback => {
        tick => sub {
            return if time < $next;
            $next = time + 5;
            ...                         # the periodic work
        },
    });

or, simpler and cheaper, use a timer (L</timer>), which runs only when due:

    $server->timer(every => 5, cb => sub { ... });

=item error($io, $server, $message)

New in 1.00.  Something went wrong that the server survived: a callback
died (the message contains C<$@>), a client sent a line longer than
L</max_line> or let more than L</max_output> bytes pile up, or accepting
failed (out of file descriptors, for one).  C<$io> is undef when no
connection is concerned.  Without an C<error> callback the message is
warned, prefixed with C<IO::Socket::INET::Daemon: >.

The message is one line without a trailing newline; to warn it yourself,
add one (C<warn "$msg\n">), or C<warn> appends " at FILE line N".

=item drain($io, $server)

New in 1.01.  The output queued for C<$io> had gone above L</high_water>
(so the server stopped reading from it) and is now down to L</low_water>:
reading and C<data> calls resume right after this callback.  A producer
that writes in bulk writes its next part here.  Not called for a
connection whose queue never went above C<high_water>.

=back

A C<die> in a callback never takes the server down: it is reported through
C<error>; a C<die> in C<data> ends that connection (C<remove> is called;
lines that came after the one it was handling are not delivered), one in
C<add> refuses it.  An answer whose overloaded C<bool> dies counts as a
C<die> of the callback that returned it.  Every callback starts with C<$@>
empty.  C<remove>, C<destroy>, C<stop> and C<print>
may be called from any callback, on the current connection or any other.

=head1 THE CONNECTION OBJECT

C<$io> is an object of class C<IO::Socket::INET::Daemon::Peer>, a subclass
of L<IO::Socket::INET>, and stands in for the socket 0.04 handed out.  It is
the same object for the whole life of a connection, so it works as a hash
key and with C<==>, and C<< ${*$io}{key} >> can hold your own data.  It
stays valid after the connection is gone: C<peerhost> and C<peerport> still
answer, C<print> returns false, C<fileno> returns undef.

Filehandle syntax works too: C<print $io ...>, C<printf $io ...>,
C<say $io ...>, C<< my $line = <$io> >>, C<sysread($io, ...)>,
C<syswrite($io, ...)>, C<read>, C<getc>, C<eof>, C<close>, C<fileno> and
C<binmode>.

=head2 Writing

=over 4

=item print(LIST), say(LIST), printf(FORMAT, LIST)

Queue output; honours C<$,> and C<$\> as C<print> does.  Never block:
output goes out as fast as the client reads, and everything printed
before a connection is closed by the server is delivered (within
L</linger>).  That holds when the server drops a client for L</max_line>
too: the replies to its earlier lines go out first.  Output is lost only
when the client stops reading (L</max_output>) or resets the connection.
Return true, or false with C<$!> set (the connection is closed, or
L</max_output> was exceeded).

Strings are sent as a Perl filehandle sends them: see
L</Characters and bytes>.

=item syswrite(BUF, [LEN, [OFFSET]]), write(BUF, [LEN, [OFFSET]]), send(MSG, [FLAGS])

The same queue: C<syswrite> and C<send> return the number of bytes
queued, C<write> returns true.  Order with C<print> is kept.  On a
C<:utf8> peer, LEN, OFFSET and the count returned are characters, and a
character is never split.

=item flush, printflush(LIST)

Write what is queued now, as far as the client takes it without waiting.
Output is flushed after every batch of callbacks anyway.  C<printflush>
honours C<$,> and C<$\> as C<print> does.

=item autoflush([BOOL])

Accepted for compatibility; output is always flushed as described above.
Returns the previous setting.

=back

=head2 Reading

=over 4

=item getline, getlines, E<lt>$ioE<gt>

The next line (per C<$/>, which may be changed locally), or all lines until
the client closes.  Return undef at end of file.  A final line without
C<"\n"> is returned at end of file if it is at most L</max_line> bytes.
No read holds more than L</max_line> bytes of input (see
L</READING AND WAITING>).

=item sysread(BUF, LEN, [OFFSET]), recv(BUF, LEN, [FLAGS])

What is already received, up to LEN bytes, waiting only if nothing is.
OFFSET counts characters in BUF, as for Perl's C<sysread>: a character
string stays one.

=item read(BUF, LEN, [OFFSET]), getc, eof, ungetc(ORD)

C<read> waits for LEN bytes (or end of file); C<eof> waits to find out
whether more is coming.  C<read> and C<sysread> on the filehandle
(C<read($io, ...)>) both behave like C<sysread>.  On a C<:utf8> peer,
C<sysread>, C<read> and C<$/ = \N> count characters, not bytes, and
C<getc> returns one whole character.

=item blocking([BOOL])

C<< $io->blocking(0) >> makes the read methods return at once (undef with
C<$!> = EAGAIN) instead of waiting when nothing is buffered.  Returns the
previous setting (1 unless changed).  The socket itself is always
non-blocking.

=back

=head2 Other methods

C<peerhost>, C<peerport>, C<peeraddr>, C<peername>, C<sockhost>,
C<sockport>, C<sockaddr>, C<sockname>, C<connected> (the peer's packed
address while open), C<opened>, C<fileno>, C<close> (as
L</remove>), C<shutdown(HOW)> (0: stop reading; 1: send end-of-file once
the queued output is out, keep reading; 2: as L</remove>),
C<setsockopt>, C<getsockopt>, C<sockopt>, C<binmode(LAYER)> (C<:raw> or
C<:utf8>; see below), C<sockdomain>, C<socktype>, C<protocol>, and
C<proxy> (the PROXY protocol header, see L</proxy>).

=head2 Connection control

New in 1.01.

=over 4

=item pending

The number of bytes queued for the connection and not yet taken by the
client (0 once it is closed).

=item pause, resume, paused

C<pause> stops reading from the connection and calling C<data> for it
(lines it already sent stay buffered); C<resume> starts again, and the
complete lines already buffered are delivered at once, in the same cycle
of the loop (also when C<resume> is called from C<tick> or a timer), not
when the client next sends something.  C<paused> tells.  Both return true
and are harmless on a closed connection.

=item idle_timeout([SECONDS])

The connection's idle timeout in seconds (0: none), the server's
L</idle_timeout> to begin with.  With an argument, sets it for this
connection, counting from now, and returns the previous value.

=item stats

A new hash: C<bytes_in>, C<bytes_out> (written to its socket),
C<messages_in> (the lines, or messages, C<data> was called with: one a
callback reads itself with a second C<getline> is not counted) and
C<connected> (epoch seconds when it was accepted).  Still answers after the connection
is gone.

=item send_message(BYTES)

New in 1.02.  Writes one length-prefixed message: the length of BYTES in the
connection's L</length_format> (the server's C<length_format> when the
connection is not C<length>-framed), then BYTES.  BYTES are taken as
C<syswrite> takes them: on a C<:utf8> connection characters are sent as
UTF-8 and the prefix counts those bytes; on a raw one a wide character
croaks.  A message too long for the format (over 255 bytes for C<C>,
65535 for C<n>/C<v>) croaks.  Returns true, or false with C<$!> set once
the connection is closed.

=item framing([NAME, OPTIONS])

New in 1.02.  Without arguments: the connection's framing, C<'line'>, C<'raw'> or
C<'length'>.  With them: switches this connection alone to another
framing, for everything it has not yet been given, the bytes already
buffered included, and returns the previous framing's name.  OPTIONS are
C<< separator => STRING >> for C<line> and C<< length_format => FORMAT >>
for C<length>; those not given are the server's.  Called inside C<data>,
the switch applies from the next message on; called elsewhere (C<add>, a
timer), messages already complete in the new framing are delivered in the
same cycle.  This is how a protocol with a line header and a binary body
is read:

    data => sub {
        my ($io, $server, $msg) = @_;
        if ($io->framing eq 'line') {               # "BLOB\n": a body follows
            $io->framing('length', length_format => 'n') if $msg eq "BLOB\n";
            return 1;
        }
        store($msg);                                # the body, prefix gone
        $io->framing('line');                       # and lines again
        1;
    },

=back

=head2 Characters and bytes

A connection starts raw, as a Perl socket does: it sends and reads bytes.
Printing a character above 255 warns "Wide character in print" and sends
its UTF-8 bytes; any other string goes out as bytes, whatever its internal
form.

After C<< $io->binmode(':utf8') >> the connection works like a Perl
filehandle with the C<:utf8> layer: output is encoded to UTF-8 (C<"\xe9">
is sent as the two bytes C<c3 a9>), input is decoded, and C<syswrite>,
C<sysread>, C<read>, C<getc> and C<$/ = \N> count characters.
C<< $io->binmode(':raw') >> goes back to bytes.

=head1 READING AND WAITING

In 0.04 every socket was blocking: a C<getline> for a line the client had
not sent yet stopped the whole server until it came.  Here C<data> fires
only for lines already received, so the usual one C<getline> per C<data>
never waits.

A callback that reads I<more> than what is buffered (a second C<getline>,
C<read> of more bytes than have arrived, C<eof>) still waits, as 0.04 did:
for that connection only, the other connections' traffic waits meanwhile.
The wait is bounded by L</read_timeout> (by default L</timeout>, or 10
seconds when no timeout is set).  The bound is for the whole call, not for
each arrival: a client that trickles a byte at a time cannot stretch it.
When it runs out the method returns undef with C<$!> set to ETIMEDOUT, and
nothing received is lost.  With C<< read_timeout => 0 >> a read that needs
more input fails at once with ETIMEDOUT; after C<< $io->blocking(0) >> it
fails at once with EAGAIN.  Write protocols that do not need to wait: use
the line C<data> is called with.

Reads are bounded in size too: no read method holds more than
L</max_line> bytes of input for a connection, slurps (C<local $/>), record
reads (C<$/ = \N>) and C<read> included.  A read that needs more than
that fails with C<$!> set to EMSGSIZE, and the client is dropped as for an
over-long line (C<error>, then C<remove>).

=head1 NEW IN 1.00

=head2 More options for new

=over 4

=item framing => 'line' | 'raw' | 'length'

C<line> (the default) calls C<data> once per line.  C<raw> calls C<data>
whenever bytes arrive, with everything received so far as the third
argument; C<< $io->sysread >> and C<< $io->read >> get those bytes.  Use
C<raw> for byte protocols.

C<length> (new in 1.02) is for binary protocols whose messages carry their
length: a length prefix in L</length_format>, then that many bytes.
C<data> is called once per message with the message I<without> its prefix
(an empty message, prefix 0, is delivered as C<''>), and
C<< $io->getline >> with C<$/> left alone reads the next message the same
way.  L</max_line> bounds the message: a prefix that claims more is
refused as soon as it arrives (C<error> "message too long", then
C<remove>), so a prefix claiming 4 GiB costs nothing.  A client that ends
its stream in the middle of a message gets C<error> "end of file inside a
message" and C<remove>; the replies to its earlier messages are delivered
first.  Answer with C<< $io->send_message >> (see L</Connection control>), which writes the prefix:

    my $server = IO::Socket::INET::Daemon->new(
        port => 5000, framing => 'length', length_format => 'N',
        callback => { data => sub {
            my ($io, $server, $msg) = @_;
            $io->send_message(uc $msg);     # 4-byte length, then the bytes
            1;
        } },
    );

    # a client: print $sock pack('N/a*', $request);
    #           read $sock, my $len, 4; read $sock, my $reply, unpack 'N', $len;

=item length_format => 'N' | 'n' | 'V' | 'v' | 'C'

New in 1.02.  The length prefix of C<< framing => 'length' >> and of
C<< $io->send_message >> (see L</Connection control>), as a C<pack> format: C<N> (the default) 4 bytes big
endian, C<n> 2 bytes big endian, C<V> and C<v> the same little endian,
C<C> one byte.  The prefix counts the bytes that follow it, not itself.
Accepted with any framing: it is what C<send_message> writes and what
C<< $io->framing('length') >> reads.

=item separator => STRING

New in 1.01.  With C<< framing => 'line' >>, what ends a line: C<"\n">
(the default), C<"\r\n">, C<"\0">, or any string of bytes.  Like the
newline, the separator is kept: C<data>'s third argument and
C<< $io->getline >> end with it (remove it with
C<< s/\r\n\z// >>, or C<chomp> under C<< local $/ = "\r\n" >>).
While C<$/> is left at its default, C<getline>, C<getlines> and
C<< <$io> >> read lines ending in the separator too; a C<$/> set to
anything else is used as it is.  L</max_line> counts the separator.  A
separator split across two reads is found all the same.

=item max_line => BYTES

The longest line a client may send, C<"\n"> included; default 1048576
(1 MiB).  A client that sends more without a newline is dropped: C<error>,
then C<remove>, then the connection is closed; everybody else is served
on.  What was printed to it before (the replies to its earlier lines, what
C<remove> prints) is delivered first.  A last line without C<"\n">, at end
of file, may be C<max_line> bytes long.

It bounds every read method as well, slurps and record reads included: a
read that needs more input than C<max_line> bytes fails with EMSGSIZE and
the client is dropped the same way (see L</READING AND WAITING>).  This
bounds the memory one client can take.

=item max_output => BYTES

The most output that may wait for one client; default 67108864 (64 MiB).
A C<print> beyond it fails and the client is dropped (C<error>, then
C<remove>, whose output is not sent): a client that does not read cannot
make the server grow.

=item read_timeout => SECONDS

How long one call of a read method may wait inside a callback, in all.
With C<0> a read that needs more input fails at once with ETIMEDOUT.  See
L</READING AND WAITING>.

=item linger => SECONDS

How long a connection closed by the server (L</remove>, C<close>, C<data>
returning false, L</destroy>) may take to receive the output still queued
for it; default 30.  Then it is closed anyway.  C<< linger => 0 >> means
no time: the connection gets what one non-blocking write takes, the rest is
dropped, and the socket is closed at once.

=item idle_timeout => SECONDS

New in 1.01.  A connection that sends nothing for that long is ended:
C<error($io, $server, "idle timeout (no input for SECONDS s) from
HOST:PORT")>, then C<remove>, then what was queued for it (and what
C<error> and C<remove> print) is delivered and it is closed.  Default:
none, as in 0.04.  Only input counts: output to a client that sends
nothing does not keep it alive.  While a connection is paused the server
does not read from it, so its idle clock stands still (and starts from
zero again when it resumes); while it is held at L</high_water>, the clock
counts from the last time the client took some of its output, so a client
that neither sends nor reads is ended all the same.  Per connection:
C<< $io->idle_timeout >>.  Timeouts cost nothing between expiries, however
many connections have one.

=item max_connections => N

New in 1.01.  With N connections open the server stops accepting: new
clients wait in the listen queue (L</backlog>; their connect succeeds,
nothing is refused) and are accepted as soon as a connection closes.
Default 0: no limit.  See also L</max_connections> the method.

=item high_water => BYTES

=item low_water => BYTES

New in 1.01.  Backpressure: while the output queued for a connection is
above C<high_water> (default 1048576, 1 MiB), the server neither reads
from it nor calls C<data> for lines it already has, so a client that
pipelines requests without reading the replies is slowed down by TCP
instead of growing the server.  When the queue is down to C<low_water>
(default 0: empty) reading resumes, the lines buffered meanwhile are
delivered, and the C<drain> callback (L</CALLBACKS>) is called first.  C<low_water> must be below
C<high_water>.  L</max_output> still applies to output queued from other
connections' callbacks (a broadcast to a client that never reads): past
it, the client is dropped.

=item backlog => N

The listen queue length; default SOMAXCONN.

=item backend => 'epoll' | 'kqueue' | 'poll'

The event backend; default: the best one built in.  The environment
variable C<IO_SOCKET_INET_DAEMON_BACKEND> sets it too (the test suite uses
it to run everything on C<poll>).

=item proxy_protocol => 1, trusted_proxies => [...], proxy_timeout => SECONDS

New in 1.04: connections come through a load balancer that speaks the
PROXY protocol; see L</"BEHIND A LOAD BALANCER (PROXY PROTOCOL)">.

=item tls => { cert_file => PATH, key_file => PATH, ... }

New in 1.05: TLS on every TCP and UNIX listener; see L</TLS>.

=back

=head2 listen

    $server->listen or die "cannot listen: $!";
    my $port = $server->sockport;

Binds and listens now, without running: to learn the port chosen for
C<< port => 0 >>, or to fork workers after binding.  Returns true, or
false with C<$!> set and C<$@> saying what failed where (C<bind
127.0.0.1:5000: Address already in use>, C<fd 3: not a socket>), as
L<IO::Socket>'s constructors do.  L</run> calls it when needed (and sets
the same on failure).

=head2 sockport

    my $port = $server->sockport;     # 40123, after listen with port => 0

=head2 sockhost

    my $host = $server->sockhost;     # "127.0.0.1"

The port and address the server listens on (after L</listen> or
L</run>), or undef; with several listeners, the first one's (a UNIX one's
sockhost is its path, its sockport 0).  See L</addresses> for all.

=head2 connections

    $_->print("Server going down\n") for $server->connections;

The C<$io> objects of the open connections, in no particular order.

=head2 backend

    print $server->backend;                          # "epoll"

The event backend the server uses.

=head2 backends

    print join ' ', IO::Socket::INET::Daemon::backends();  # "epoll poll"

The ones built in (the first is the default).

=head2 timer

    my $t = $server->timer(after => 2.5, cb => sub { ... });       # once
    my $p = $server->timer(every => 60, cb => sub {
        my ($server, $timer) = @_;
        $_->print("ping\n") for $server->connections;
    });
    $t->cancel;

New in 1.01.  Calls C<cb> with the server and the timer: once, C<after>
seconds from now; or every C<every> seconds (the first time after
C<after> if given, else after C<every>).  Fractions are allowed; the
resolution is a millisecond.  C<< after => 0 >> fires in the next cycle of
the loop.  Returns an C<IO::Socket::INET::Daemon::Timer>:

=over 4

=item $timer->cancel

Stops it; safe to call again, and from inside its own callback.
A repeating timer does not drift: each firing is due C<every> seconds
after the previous one's due time (after a late one, the next comes
C<every> seconds later, with no burst to catch up).

=item $timer->active

True while it will still fire: false after a one-shot timer has fired (in
its own callback too) and after C<cancel>.

=back

The server keeps an active timer: dropping the handle does B<not> stop
it (keep the handle to cancel it).  Timers fire while L</run> runs; L</stop>
does not cancel them (one that falls due between two runs fires at the
start of the next), L</destroy> does.  A C<die> in C<cb> is reported to
C<error> (C<$io> undef, the message starts with C<timer callback died:>)
and a repeating timer goes on.  Timers live in the C core, in one heap:
100,000 of them cost nothing while none is due.  Bad arguments croak,
naming the method and the value (C<IO::Socket::INET::Daemon::timer:
after: '-1' is not a number of seconds>); so do a missing C<cb>, neither
C<after> nor C<every>, and C<< every => 0 >>.

=head2 broadcast

    my $n = $server->broadcast("* $nick joined\n", $io);   # all but $io

New in 1.01.  Queues the same bytes for every open connection except the
C<$io> objects listed after them, and returns how many connections got
them.  The bytes are stored once and shared by the output queues (each
connection holds a small entry, not a copy), so 1 KiB broadcast to 10,000
clients takes about 1 KiB plus some 50 bytes a connection (470 KiB in
bench/control), not 10 MiB.  Each connection is written to as
by C<print>: a character string is sent as UTF-8 to C<:utf8> peers and as
bytes to the others (with a "Wide character in broadcast" warning for
characters above 255), L</max_output> drops a client whose queue would
grow past it (it is not counted), and L</high_water> holds a client's
input while its queue is above it.  Connections that are closing (or
half-closed for writing) are left out.

=head2 stats

    my $s = $server->stats;
    printf "%d open, %d served, %d bytes in\n",
        $s->{connections}, $s->{accepted}, $s->{bytes_in};

New in 1.01.  A new hash of the server's counters, counted in C and read
on demand: C<connections> (open now), C<accepted>, C<refused> (C<add>
returned false or died), C<rejected> (connections of a
L<PROXY protocol|/"BEHIND A LOAD BALANCER (PROXY PROTOCOL)"> listener
dropped before C<add>: an untrusted source, a bad or late header; new in
1.04), C<closed> (connections that ended), C<bytes_in>,
C<bytes_out> (bytes written to the clients' sockets), C<messages_in>
(complete lines received), C<errors> (reports: C<error> calls or
warnings) and C<started> (epoch seconds when L</run> first started; undef
before).  They count from the server's creation, across L</stop> and
L</run>; a child forked from the server that calls C<run> (see L</FORK>)
counts its own from there.  Per connection: C<< $io->stats >>.

=head2 max_connections

    $server->max_connections(100);          # from now on
    my $n = $server->max_connections;

New in 1.01.  Reads or changes L</max_connections> while the server runs
(0: no limit).  Raising it accepts the clients waiting in the listen queue
at once; lowering it below the number open closes nothing, it only stops
accepting until enough have closed.

=head1 LISTENING

New in 1.02.  A server listens on one C<host> and C<port>, as in 0.04, or
on every address given by C<listen>:

    my $server = IO::Socket::INET::Daemon->new(
        listen   => [ '*:5000', 'unix:/run/myapp.sock' ],
        callback => { data => sub { $_[0]->print($_[2]); 1 } },
    );

=over 4

=item listen => [SPEC, ...]

Every SPEC is a listener; C<port> and C<host> are not needed then (and
not used).  One SPEC may also be given alone, without the array.  A SPEC
is one of:

=over 4

=item C<'127.0.0.1:5000'>, C<'[::1]:5000'>

An IPv4 address, or an IPv6 address in brackets, and a port.

=item C<'localhost:5000'>, C<'myhost.example:5000'>

A name: every address it resolves to, IPv4 and IPv6, each a listener.  An
address this machine cannot bind (C<::1> where IPv6 is off) is left out,
as long as one of them binds.

=item C<'*:5000'>

Every address, IPv4 and IPv6: one IPv6 socket that takes IPv4 clients too
where the system allows it (Linux does), else an IPv6 and an IPv4 socket
on the same port (IPv4 alone where there is no IPv6).

=item C<'unix:/path/to.sock'>

A UNIX stream socket (the path at most 107 bytes).  A socket file that
nothing listens on any more (its server died) is replaced; one that a
server is listening on makes L</listen> fail with EADDRINUSE, as a taken
port does, and any other kind of file with EEXIST: neither is touched.
(To tell a stale file from a live one it connects to it once, as other
servers do: the live server sees a connection that ends at once, with
its C<add> and C<remove>.)
L</destroy> removes the file (a child forked after L</listen> does not, in
its own C<destroy>).

=item C<'udp:127.0.0.1:5000'>, C<'udp:[::1]:5000'>, C<'udp:*:5000'>

A UDP socket (the host forms are those of TCP): see L</UDP>.

=item C<'fd:3'>

A socket already listening on that descriptor, inherited from the parent
process: a listening stream socket (TCP or UNIX), or a UDP socket bound to
a port (served as a C<udp:> SPEC is); anything else makes L</listen> fail
with a reason (C<fd 3: not a socket>).  The server closes it in
L</destroy>, never unlinks its file, never shuts it down.  (C<'udp:fd:3'>
croaks: the descriptor tells its kind.)

=item C<'systemd'>, C<'systemd:NAME'>

Every socket systemd passed (socket activation), or those of its
C<FileDescriptorName=NAME>: see L</SYSTEMD AND SERVER::STARTER>.

=item C<< { address => SPEC, OPTION => VALUE, ... } >>

A SPEC with options for that listener alone: C<< unix_mode => 0660 >>
(the socket file's permissions; a number or a string such as C<'0660'>),
C<< reuseport => 1 >> (SO_REUSEPORT, for several processes each with a
socket of their own on one port), C<< v6only => 1 >> (an IPv6 socket,
C<'*:PORT'> included, that takes no IPv4 clients), C<< rcvbuf => BYTES >>
and C<< sndbuf => BYTES >> (SO_RCVBUF and SO_SNDBUF of a TCP, UDP or UNIX
listener; accepted TCP connections inherit them).  The kernel caps those
two at C<net.core.rmem_max> and C<wmem_max> unless the process may go
past them (root, or CAP_NET_ADMIN: the server asks with SO_RCVBUFFORCE
first, as systemd does).  A UDP server that must take bursts wants a
bigger C<rcvbuf>: with the usual default of 208 KiB, about 270 small
datagrams that arrive at once fill it, and the kernel drops the rest
(L</UDP>).  Inherited sockets (C<fd:N>, C<systemd>) keep their own
options: giving them one croaks.  C<proxy_protocol>, C<trusted_proxies>
and C<proxy_timeout> (new in 1.04; TCP and UNIX listeners, inherited
ones too) make that listener take a PROXY protocol header: see
L</"BEHIND A LOAD BALANCER (PROXY PROTOCOL)">.  C<< tls => {...} >> (new in
1.05; TCP and UNIX listeners, inherited ones too) makes it serve TLS,
and C<< tls => 0 >> leaves it plain when L</new> has C<tls>: see
L</TLS>.

=back

Port C<0> picks a free port; the addresses of a name, and the two sockets
of C<'*:0'> where there are two, get the same one.  L</addresses> tells
which.  A SPEC that does not parse croaks in C<new>, naming it
(C<listen: '127.0.0.1' has no port>).  Binding happens in L</listen> (or
L</run>), for all of them or none: if one cannot be bound (the port is
taken, the name does not resolve), nothing stays bound, and C<listen>
returns false with C<$!> set.

=item Connections

On an IPv6 listener, L<peerhost|/"THE CONNECTION OBJECT"> is the textual
address (C<::1>) and C<sockdomain> is AF_INET6; an IPv4 client of a
C<'*:PORT'> socket is plain IPv4 (C<127.0.0.1>, never
C<::ffff:127.0.0.1>, and AF_INET).  On a UNIX listener C<peerhost> is
C<'localhost'> and C<peerport> C<0> (a UNIX client has no address), so a
0.04 script that greets C<< $io->peerhost >> works unchanged;
C<sockhost> is the socket's path, C<sockport> C<0>, C<sockdomain>
AF_UNIX, C<peername> an unnamed UNIX address (so C<connected> is true),
C<sockname> the packed path, and C<peeraddr>/C<sockaddr> undef.

=back

=head2 UDP

    my $server = IO::Socket::INET::Daemon->new(
        listen   => [ 'udp:*:5353' ],
        callback => { data => sub {
            my ($io, $server, $datagram) = @_;
            $io->print(uc $datagram);       # one datagram back to the sender
            1;
        } },
    );

Each datagram calls C<data($io, $server, $datagram)>, where C<$io> (an
IO::Socket::INET::Daemon::Datagram) stands for its sender: C<peerhost>,
C<peerport>, C<peeraddr>, C<peername>, C<sockdomain> tell who (an IPv4
sender on a C<'udp:*:PORT'> socket is plain IPv4), C<sockhost> and
C<sockport> the listener.  Every C<print>, C<say>, C<printf>, C<send> or
C<syswrite> on it sends one datagram to the sender (a C<print> of a list
is one datagram); C<getline> returns the datagram, once.  C<$io> may be
kept to reply later (from a timer, say), for as long as the server runs.
There is no C<add> or C<remove> (no connection), the answer of C<data>
means nothing, and C<close>, C<autoflush>, C<binmode> and C<flush> do
nothing; output is bytes (a wide character is sent as UTF-8 with a
warning, as C<print> does on a raw handle).

Datagrams are received in batches (C<recvmmsg> on Linux: one system call
for up to 64), replies are queued and sent in batches (C<sendmmsg>) when
the batch is over.  A datagram longer than L</max_line> (or than 65535
bytes) is dropped and reported: C<error($io, $server, "datagram too long
(over max_line N bytes) from HOST:PORT")>.  Replies wait only while the
kernel cannot take them, up to L</max_output> bytes; past that a
C<print> returns false with C<$!> set to ENOBUFS.  A reply the kernel
refuses (no route) is reported through C<error>.  L</stats> counts
datagrams in C<messages_in>, C<bytes_in> and C<bytes_out>, and has
C<datagrams_in>, C<datagrams_out> and C<datagrams_dropped> (too long, or
replies that could not go).

=head2 SYSTEMD AND SERVER::STARTER

Sockets opened by someone else are adopted, not bound again:

=over 4

=item Socket activation

When systemd starts the server for a C<.socket> unit it passes the
sockets (C<LISTEN_PID>, C<LISTEN_FDS>, C<LISTEN_FDNAMES>).  Each listen
SPEC (or C<port>/C<host>) takes the passed socket that matches it:
the same UNIX path, or the same port on one of its addresses or on every
address; C<'systemd'> takes them all, C<'systemd:NAME'> those named NAME.
A SPEC that matches none is bound as usual.  An adopted socket is the
daemon's from then on: L</destroy> closes it, another daemon of the
process does not take it again, and a later L</listen> binds anew.  UDP
sockets (C<ListenDatagram=>) are adopted the same way by C<udp:> SPECs
and by C<'systemd'>.  Sockets that are neither listening stream sockets
nor bound UDP sockets, or variables meant for another process, are
reported (a warning) and ignored; the variables are removed from C<%ENV>
so that children do not take them.  eg/systemd/ has a C<.socket> and a
C<.service> unit, and C<systemd-socket-activate -l 5000 perl app.pl>
tries it without installing anything.

=item Server::Starter

Under C<start_server --port 127.0.0.1:5000 -- perl app.pl> (Debian package
libserver-starter-perl) the sockets of C<SERVER_STARTER_PORT> are adopted
the same way, so a C<HUP> to C<start_server> restarts the server with no
connection refused: the new process serves on the same sockets while the
old one finishes what it had (it gets C<TERM>; with
C<< $SIG{TERM} = sub { $server->stop(grace => 10) } >> nothing it accepted
goes unanswered).

=item sd_notify

When C<NOTIFY_SOCKET> is set (a C<Type=notify> service), L</run> sends
C<READY=1> (with C<MAINPID>) once every listener is up, C<STOPPING=1> when
it returns, and, when systemd asks for a watchdog (C<WatchdogSec=>, seen
as C<WATCHDOG_USEC>), C<WATCHDOG=1> at half that interval from the event
loop itself: a callback stuck for longer stops the pings, and systemd
restarts the service.  No libsystemd is needed.  The variables are
removed from C<%ENV>; a child forked with a copy of the server sends
nothing.

=back

=head2 addresses

    my @where = $server->addresses;   # ('[::]:40123', 'unix:/run/myapp.sock')

New in 1.02.  After L</listen> or L</run>, the address of every listener,
in SPEC form: C<'127.0.0.1:40123'>, C<'[::1]:40123'>, C<'[::]:40123'>
(every address, IPv4 too), C<'unix:/run/myapp.sock'>,
C<'udp:127.0.0.1:40124'>; with port C<0>, the ports chosen.  They come in
the order of the SPECs (the addresses of a name in the order it resolved
to; inherited sockets of C<'systemd'> in descriptor order).
L</sockport> and L</sockhost> answer for the first one.

=head1 OPERATIONS

New in 1.03.  What a system service needs, as options of L</new>: going
into the background, a pid file, a log file, and dropping root after
binding.  The code is in IO::Socket::INET::Daemon::Daemonize, loaded only
when one of these options is given.  F<eg/daemon.pl> is a complete
server that uses them all.

    use IO::Socket::INET::Daemon;

    my $server = IO::Socket::INET::Daemon->new(
        port      => 5000,
        daemonize => 1,
        pid_file  => '/tmp/echo.pid',
        log_file  => '/tmp/echo.log',
        # user    => 'nobody',       # when started as root
        callback  => { data => sub { $_[0]->print($_[2]); 1 } },
    );
    $SIG{TERM} = sub { $server->stop(grace => 5) };
    $server->run;       # in the daemon: returns after the stop

    # $ perl echo.pl && echo serving     (the command returns once it serves)
    # $ kill -TERM $(cat /tmp/echo.pid)  (the daemon stops, the pid file goes)

An option given as C<undef> is not given (so C<< pid_file =>
$opt{pid_file} >> can pass on a command-line option that was left out).
Bad values croak in C<new>, naming the option (C<pid_file: '' is not a
path>, C<user: 'nosuch' is not a user on this system>).

=head2 daemonize => 1

L</run> binds in the process that was started, then forks, calls
C<setsid>, forks again (the daemon is no session leader: it cannot get a
terminal back), changes to C</>, sets the umask to 022, and points STDIN
at F</dev/null> and STDOUT and STDERR at F</dev/null> or L</log_file>.
The daemon then writes the pid file, drops privileges and serves: the rest
of C<run> (and its return, after L</stop>) happens in the daemon.

C<run> never returns in the process that was started.  It waits until the
daemon is serving, then exits: with 0 once the daemon has said it is
ready, so a client that connects right after the command has returned is
served; or with 1, printing to STDERR why the daemon could not go on
(C<IO::Socket::INET::Daemon: cannot switch to user 'nobody': ...>).  What
fails before the fork croaks there, as any error would: the pid file is
locked by another instance, the log file cannot be opened, the port
cannot be bound (C<IO::Socket::INET::Daemon: listen: bind
127.0.0.1:5000: Address already in use>); uncaught, perl prints it and
exits non-zero.  In no case is a daemon left running or a pid file left
behind.  The process started leaves with C<POSIX::_exit> (after flushing
STDOUT and STDERR): no C<END> block, no C<DESTROY> of its objects, which
the daemon still uses.

C<%SIG> handlers, timers and callbacks go with the daemon.  Threads do
not (C<fork> keeps only the thread that calls it).  The file of a UNIX
socket (C<'unix:PATH'>) is removed by the daemon's L</destroy>, although
the process started bound it.  Under
systemd, leave C<daemonize> out and use C<Type=notify> (see
L</SYSTEMD AND SERVER::STARTER>); C<pid_file>, C<user> and C<group> work
without it.  C<daemonize> is C<0> or C<1> (C<''> and C<undef> are C<0>);
C<'yes'> croaks.

=head2 pid_file => PATH

Opened (created with mode 0644 if need be) and locked with an exclusive
C<flock> before anything is bound.  If another process holds the lock,
C<run> croaks (C<IO::Socket::INET::Daemon: pid file /run/echo.pid is
locked by process 1234: another instance is running>) and binds nothing.
A pid file that nobody holds a lock on is stale (its process is gone,
whatever PID it names): it is taken over.  Once bound (and after the fork
with C<daemonize>), the PID of the process that serves is written to it
(C<"1234\n">); the file stays open and locked for as long as that process
lives.  A relative PATH is taken from the current directory of C<new>.

The file is removed when the C<run> that wrote it returns (after
L</stop>), when the process exits (an C<END> block: C<exit> and C<die>,
from a signal handler too), or when C<run> fails to bind.  A child forked
from the server (in a callback, say) never removes it, whether it exits
or calls C<destroy>.  A process killed by a signal it has no handler for
cannot remove it: set C<$SIG{TERM}> (as above); a file left behind that
way is stale and the next start takes it over.  After dropping
privileges the user may not be allowed to remove a file from its
directory (a root-owned F</run>): the file is then emptied instead.  A
later C<run> of the same object serves without forking or writing the
pid file again.

In the foreground (no C<daemonize>), C<run> croaks when the pid file is
locked and returns false with C<$!> and C<$@> set when it cannot bind, as
it always has.

=head2 log_file => PATH

With C<daemonize>: the daemon's STDOUT and STDERR (C<warn>, C<die>,
C<print>), appended to PATH, with autoflush on both.  The file is opened
by the process started, before the fork (and before dropping privileges),
so a path that cannot be written croaks there.  Without C<daemonize>,
C<log_file> croaks in C<new>: in the foreground, STDOUT and STDERR are
left as they are (redirect them yourself, or let systemd collect them).

=head2 user => NAME_OR_UID, group => NAME_OR_GID

Once bound, and once the pid file is written (so the port can be below
1024 and the pid file can stay root's), the process that serves becomes
C<group> and then C<user>: C<setgid>, the supplementary groups (those of
C<user> in the group database, as C<initgroups> finds them, or none),
C<setuid>, then checks that the real and effective IDs are the new ones
and that C<setuid(0)> no longer works (no saved root ID is left).  If any of it fails,
nothing is served: C<run> croaks (in the foreground), or the daemon
reports it and the command exits 1.  C<user> alone also takes the
user's primary group; C<group> alone changes the group only.  A name
that does not exist croaks in C<new>; so does a numeric C<user> with no
passwd entry unless C<group> is given too.

A process that is not root can only be who it is already: C<user> and
C<group> naming its own IDs do nothing, others fail (C<cannot switch to
user 'nobody': not running as root (uid 1000)>).

=head2 Order of operations

L</run>, with any of these options, does:

=over 4

=item 1. open L</log_file>; look C<user> and C<group> up

=item 2. lock L</pid_file>

=item 3. bind every listener (L</listen>)

=item 4. with L</daemonize>: fork, C<setsid>, fork, C<chdir '/'>, umask, stdio

=item 5. write the PID

=item 6. drop privileges (L</user>, C<group>)

=item 7. tell the process started that the daemon is ready; serve

=item 8. when C<run> returns: remove the pid file

=back

An error at steps 1 to 3 is reported by the process that was started,
and undoes what was done (the pid file goes).  One at 4 to 6 is reported
by the daemon to it, through a pipe; the daemon removes the pid file and
exits.

=head1 PREFORK WORKERS

New in 1.03.  One process serves from one core.  With C<workers> the
server binds once and forks that many worker processes, each running the
event loop and the callbacks, while the first process (the master) only
supervises them:

    my $server = IO::Socket::INET::Daemon->new(
        listen     => [ '*:5000' ],
        workers    => 4,                # one per core, say
        stop_grace => 10,
        callback   => {
            worker_start => sub { my ($server, $n) = @_; $DBH = connect_db() },
            data         => sub { $_[0]->print(answer($_[2])); 1 },
            worker_stop  => sub { $DBH->disconnect },
        },
    );
    $server->run or die "cannot serve: $@\n";   # returns after TERM

The code is in IO::Socket::INET::Daemon::Prefork, loaded only when
C<workers> is given; the workers serve exactly as a single process does
(the C core, per-connection callbacks), so nothing on the hot path
changes.  F<eg/prefork.pl> is a complete example.

=over 4

=item workers => N

How many workers (1 to 4096); without the option there is no master, as
before.  Each worker is forked from the master after it has bound the
listeners (and, with the options of L</OPERATIONS>, after it has become
a daemon, written its pid file and dropped privileges), so they share
the listening sockets: a connection is taken by whichever worker accepts
it first.  Each worker has its own connections, timers (those made before
L</run> run in every worker), L</stats> (counting from the worker's
start) and C<%SIG> handlers (the module sets TERM, INT and QUIT; it
ignores HUP, TTIN and TTOU there).

=item worker_start => sub { my ($server, $n) = @_; ... }

=item worker_stop => sub { my ($server, $n) = @_; ... }

Callbacks (in C<callback>): C<worker_start> runs in each new worker
before it serves (open per-process handles there: a database handle must
not be shared across C<fork>), C<$n> its slot, C<0> to C<N-1> (a
replacement gets the slot of the worker it replaces); C<worker_stop>
when it has stopped serving, before its output is delivered and it exits.
A C<die> in C<worker_start> ends that worker (with a warning); it is
started again, at most once a second.

=item stop_grace => SECONDS

The grace a worker gets on a graceful stop (default 10): it stops
accepting, serves its open connections until they end or the grace is
over (see L</stop>), then exits.

=item max_requests => N

A worker that has accepted N connections is replaced: the master starts
a new worker in its slot, and once that one is ready, stops the old one
gracefully.  For application code that leaks.  The old worker serves
on until its successor is ready, and a slot starts at most one worker a
second, so a worker may take more than N: a few under steady traffic,
more under a flood.

=item reuseport => 1

Every TCP and UDP listener gets SO_REUSEPORT.  Without C<workers> that
lets other processes bind the same port.  With C<workers>, each worker
binds sockets of its own instead of sharing the master's, and the kernel
spreads the connections over them by a hash of their addresses: even
counts, even for a burst of connections that one worker would otherwise
take while the others are not yet scheduled.  But a worker that stops
closes its sockets, and the connections still waiting in their backlog
are reset (unless C<net.ipv4.tcp_migrate_req> is 1, Linux 5.14 and
later), so a rolling restart is no longer free of resets; and the ports
must be given (not C<0>), on TCP or UDP SPECs only (C<unix:>, C<fd:>,
C<systemd> croak).  Since the master binds nothing, a port that cannot
be bound shows when the first workers start: L</run> returns false with
C<$@> naming it (with C<daemonize>, in the daemon, after the command has
returned: see the log file).  The shared socket is the default for that reason:
with it no restart or recycle ever refuses or resets a connection
(the master keeps the socket open throughout), and a worker that crashes
loses only its own connections, not those waiting to be accepted.
F<bench/run> measures both (connection spread between two workers).

=back

The master answers these signals:

    signal     the master does
    ---------  ---------------------------------------------------------
    TERM, INT  stops every worker gracefully (stop_grace), waits for
               them, and run returns true (the process goes on, so a
               script ends with exit 0)
    QUIT       stops every worker at once (no grace, output not waited
               for) and returns
    HUP        rolling restart: a new worker in every slot first, then
               each old one stops gracefully once its successor is
               ready: no connection is refused or reset
    TTIN       one worker more
    TTOU       one worker fewer (at least one), stopped gracefully
    (a worker dies)  a new one in its slot, at most once a second
                     per slot, with a warning naming the worker and why

A worker whose master is gone (killed with SIGKILL) stops gracefully
within a second rather than serve on unsupervised.  The workers end with
C<POSIX::_exit> after C<worker_stop> and L</destroy>: C<END> blocks and
global destruction run in the master only.  A rolling restart forks the
new workers from the master, so they run the code the master loaded:
for new code, restart the master (under systemd) or use Server::Starter
(see L</DEPLOYMENT>).

=head2 workers

    my @pids = $server->workers;

In the master, while L</run> supervises (from a C<%SIG> handler, say):
the PIDs of the live workers, by slot.  Elsewhere: an empty list.

=head1 BEHIND A LOAD BALANCER (PROXY PROTOCOL)

New in 1.04.  Behind HAProxy (or another TCP load balancer: nginx's
stream module, Envoy, AWS NLB, Traefik) every client looks like the
balancer, unless the balancer says whom it relays for.  The PROXY
protocol (HAProxy's F<doc/proxy-protocol.txt>) does: the balancer puts
one header in front of each connection's bytes, a text line (version 1,
C<send-proxy> in HAProxy) or a binary block (version 2,
C<send-proxy-v2>).  With C<proxy_protocol> the server takes it:

    my $server = IO::Socket::INET::Daemon->new(
        listen          => [ '10.0.0.5:7001' ],
        proxy_protocol  => 1,
        trusted_proxies => [ '10.0.0.2', '10.0.0.3' ],   # the balancers
        callback => {
            add  => sub {
                my ($io) = @_;
                # the client's address, not the balancer's
                print $io "hello ", $io->peerhost, ":", $io->peerport, "\n";
                1;
            },
            data => sub { $_[0]->print($_[2]); 1 },
        },
    );

=over 4

=item proxy_protocol => 1

Every connection of the listeners it applies to must start with a
version 1 or version 2 header; both are taken, and nothing else is (the
specification forbids guessing whether a header is there: a listener
either always takes one or never).  In L</new> it applies to every TCP
and UNIX listener; in a C<listen> entry (C<< { address => SPEC,
proxy_protocol => 1 } >>) to that listener alone, and C<0> there turns
it off for one listener when C<new> has it on.  A server can so take
the balancer's connections on one port and direct ones on another.  UDP
listeners take no header.

The header is parsed in C as it arrives, before any Perl code runs.
After a valid one, C<add> runs and the connection reports the original
client everywhere: C<peerhost>, C<peerport>, C<peeraddr>, C<peername>,
and the address the client connected to in C<sockhost>, C<sockport>,
C<sockaddr>, C<sockname> (an IPv4 client behind an IPv6 balancer is
IPv4).  The bytes after the header are the stream, also when they came
in the same packet.  The balancer's own address is in
C<< $io->proxy->{via} >>.

=item trusted_proxies => [ADDRESS or CIDR, ...]

The balancers' addresses and blocks: C<'127.0.0.1'>, C<'10.0.0.0/8'>,
C<'::1'>, C<'fd00::/8'>.  A connection from any other source is dropped
as soon as it is accepted, before a byte of it is read.  Without this
option every source may send a header, and so claim to be anybody: use
that on private networks only, where nothing but the balancer can reach
the port.  A UNIX socket's peer is always trusted (its file mode says
who may connect).  In a C<listen> entry it replaces the one of C<new>
for that listener.

=item proxy_timeout => SECONDS

The header must be complete this long after the connection was
accepted (default 3; 0: no limit but C<idle_timeout>).  A client that
sends a header byte by byte, slowly, is dropped then.

=back

B<Dropped connections.>  A connection from an untrusted source, or
whose first bytes cannot be a header (plain text, TLS, a wrong
signature, a version 1 line over 107 bytes or with a lone CR or LF,
addresses or ports that do not parse, a version 2 header with a bad
version, command, family or length, a TLV that overruns), or whose
header is not complete in C<proxy_timeout> or before the client closes,
is dropped: the C<error> callback runs once, with no C<$io> (C<add>
never ran) and a message such as

    connection from 10.0.0.9:51234 refused: PROXY: source 10.0.0.9 is not a trusted proxy
    connection from 10.0.0.2:40000 refused: PROXY v1: bad source port
    connection from 10.0.0.2:40002 refused: PROXY header not complete within 3 s

and C<< $server->stats->{rejected} >> counts it.  Other connections are
served on meanwhile.  A graceful C<stop> waits for a connection still
sending its header, as for any other: once complete, it is served until
the grace is over; one never completed is closed then, without a word.

B<Health checks.>  A balancer checks a server by connecting: HAProxy's
C<check> on a C<send-proxy-v2> server sends a header with the LOCAL
command (the balancer speaking for itself) and closes; on a
C<send-proxy> (version 1) server, a header of the check connection's own
addresses; with a C<port> of its own, nothing at all.  None of these
produce C<add>, C<error> or a warning: a connection that closes having
sent nothing, or a header of the balancer's own (LOCAL, or addresses
that are the connection's own) followed by nothing, goes without a word.
A LOCAL connection that stays is served, with its real socket
addresses, from its first byte, or after C<proxy_timeout> (a server that
speaks first greets it then; a check that waits for a greeting needs an
C<inter>/C<timeout check> longer than C<proxy_timeout>, or C<tcp-check
send> first).  A version 1 C<UNKNOWN> header is taken as LOCAL.

=head2 proxy

    my $h = $io->proxy;     # undef unless the connection came with a header
    printf "%s:%d via %s\n", $h->{source}{host}, $h->{source}{port}, $h->{via}{host}
        if $h && $h->{command} eq 'PROXY';

The connection's header, as a new hash reference, from C<add> to
C<remove> (undef once the connection is closed, or for a connection of a
listener without C<proxy_protocol>):

    version     1 or 2
    command     'PROXY' (relayed for a client), 'LOCAL' (the balancer's own:
                health checks), 'UNKNOWN' (version 1 "PROXY UNKNOWN")
    family      'INET', 'INET6', 'UNIX' or 'UNSPEC'
    transport   'STREAM', 'DGRAM' or 'UNSPEC'
    source      { host => '192.0.2.1', port => 56324 }: the client
                ({ path => ... } for UNIX; absent but for command PROXY)
    dest        { host => ..., port => ... }: where the client connected
    via         { host => ..., port => ... }: the balancer (the socket's peer)
    length      the header's length in bytes
    crc32c      1: a CRC32C TLV was there (and matched: else it is dropped)
    alpn        TLV values, as bytes: the ALPN protocol ("h2"),
    authority   the TLS SNI host name,
    unique_id   the balancer's unique ID of the connection (up to 128 bytes),
    netns       the network namespace
    ssl         { client => BITS, verify => N, version => 'TLSv1.3',
                  cn => ..., cipher => ..., sig_alg => ..., key_alg => ... }:
                when the balancer terminated TLS (send-proxy-v2-ssl-cn);
                verify 0 means a client certificate was verified
    tlv         { 224 => BYTES, ... }: every other TLV, by type number

Version 1 headers have no TLVs.

=head2 Scaling out: several instances behind HAProxy

F<eg/haproxy.cfg> is a complete configuration: a TCP frontend, two
instances of a server behind it with C<send-proxy-v2> and C<check>, and
F<eg/proxied.pl> as the server.  Run N instances (one per core, or use
L</workers> in each) on N ports or N hosts, each with
C<< proxy_protocol => 1, trusted_proxies => [ BALANCER ] >>, and list
them as C<server> lines; HAProxy spreads new connections
(C<balance roundrobin>, or C<leastconn> for long-lived ones) and stops
sending to an instance whose checks fail (C<fall> failures in a row,
C<inter> apart).

To deploy without losing a connection, drain one instance at a time:

    echo "set server app/s1 state drain" | socat stdio /run/haproxy.sock
    kill -TERM $PID_OF_S1       # the script: $SIG{TERM} = sub { $server->stop(grace => 30) }
    # start the new version of s1, then:
    echo "set server app/s1 state ready" | socat stdio /run/haproxy.sock

C<drain> sends it no new connection; C<< stop(grace => ...) >> lets the
open ones finish (see L</stop>).  Without the stats socket, a stop alone
is enough when HAProxy has C<option redispatch> and C<retries>: the
instance stops listening at once, and a connection HAProxy sends it
meanwhile is retried on another.

=head1 TLS

New in 1.05.  With C<tls> the server speaks TLS (1.2 and 1.3) on its
listeners, in C, with OpenSSL: the handshake, the records, the
encryption and decryption all happen in the event core, and Perl sees
the same callbacks, C<getline>, C<print>, framings and limits as on a
plain connection.  Perl is entered once per message, as without TLS.

    my $server = IO::Socket::INET::Daemon->new(
        port     => 4433,
        host     => '0.0.0.0',
        tls      => {
            cert_file => '/etc/letsencrypt/live/chat.example/fullchain.pem',
            key_file  => '/etc/letsencrypt/live/chat.example/privkey.pem',
        },
        callback => {
            add  => sub { my ($io) = @_; print $io "hello over ", $io->tls->{version}, "\n"; 1 },
            data => sub { $_[0]->print($_[2]); 1 },
        },
    );
    $SIG{HUP} = sub { $server->tls_reload };    # after a renewal
    $server->run;

F<eg/tls.pl> is a complete example; F<eg/starttls.pl> one of STARTTLS.
TLS needs OpenSSL's headers when the module is built (F<libssl-dev> on
Debian and Ubuntu, F<openssl-devel> on Fedora); L</has_tls> says whether
it was.

=head2 Options of tls => {...}

C<tls> in L</new> applies to every TCP and UNIX listener; in a
C<listen> entry (C<< { address => SPEC, tls => {...} } >>) to that
listener alone, and C<< tls => 0 >> there leaves one listener plain
when C<new> has it.  A server can so serve TLS on one port and plain
text on another (UDP listeners take no TLS).  Every file is read, and
a context made, in C<new>: a file that is missing or cannot be read, a
certificate that is not PEM, a key that does not go with its
certificate, an unknown cipher croak there with OpenSSL's reason:

    IO::Socket::INET::Daemon::new: tls: key_file k.pem does not go with cert_file c.pem: key values mismatch

=over 4

=item cert_file => PATH

The certificate, followed by its chain (intermediates), in PEM: what
Let's Encrypt calls F<fullchain.pem>.  Required.

=item key_file => PATH

Its private key, in PEM (unencrypted).  Default: in C<cert_file>.

=item ca_file => PATH, ca_path => DIR

The certificate authorities that client certificates are checked
against: one PEM file of them, or a directory hashed with C<openssl
rehash>.  Only needed with C<verify_client>.

=item verify_client => 'none' | 'optional' | 'require'

Whether clients are asked for a certificate: C<'none'> (the default),
C<'optional'> (asked; a client may send none, but one that sends a
certificate that does not verify is dropped), C<'require'> (a client
without a valid certificate is dropped).  A verified certificate's
subject and issuer are in L</tls>.

=item min_version => 'TLSv1.2' | 'TLSv1.3'

The oldest version served (default C<'TLSv1.2'>).  SSL 3, TLS 1.0 and
1.1 are never served.

=item ciphers => STRING, ciphersuites => STRING

OpenSSL's cipher list for TLS 1.2 (C<'ECDHE+AESGCM:ECDHE+CHACHA20'>),
and the suites for TLS 1.3 (C<'TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256'>).
Default: OpenSSL's.  The server's order of preference wins.

=item alpn => [ PROTOCOL, ... ]

The protocols offered by ALPN, the server's preference first
(C<< [ 'h2', 'http/1.1' ] >>).  The one agreed is in
C<< $io->tls->{alpn} >>; a client with none in common is served
without one (C<alpn> undef).

=item sni => { HOST => { cert_file => PATH, key_file => PATH }, ... }

Other certificates, by the host name the client asks for (SNI):
C<'mail.example'>, or C<'*.example'> for any one label in front.  Exact
names win over wildcards; a client that asks for none, or for another
name, gets C<cert_file>.  The name asked for is in C<< $io->tls->{sni} >>.

=item handshake_timeout => SECONDS

The handshake must be complete this long after the connection was
accepted (default 10; 0: no limit but C<idle_timeout>).  A client that
sends its handshake slowly, or nothing, is dropped then.

=item starttls => 1

Connections start in plain text and switch with L</start_tls>, when the
protocol says so (SMTP, IMAP, POP3, XMPP, LDAP).  Without it every
connection of the listener is TLS from its first byte.

=back

B<What a connection sees.>  C<add> runs once the handshake is
complete, so it can already look at L</tls>; a connection whose
handshake fails never reaches Perl.  After C<add>, everything is as
without TLS: lines, framings, C<max_line>, C<max_output>, backpressure
(C<high_water>: the data to encrypt waits in the same queue),
C<idle_timeout>, C<broadcast> (encrypted once per connection), graceful
L</stop>, workers, and PROXY headers (with C<proxy_protocol> as well,
the header comes first, in plain text, then the handshake: what HAProxy
sends with C<send-proxy-v2> in front of a client's TLS, in TCP mode).
C<bytes_in> and C<bytes_out> in L</stats> count the plain text.

B<Closing.>  When the server closes a TLS connection (C<close>, or
after the client's end of input), it sends the TLS close_notify alert
first, after what was queued, so that the client can tell a complete
reply from a cut one.  A client that closes with close_notify ends its
input as EOF does.

B<Dropped connections.>  A plain-text or HTTP client on a TLS port, a
handshake that stalls, bad records, a client certificate that does not
verify, a client that goes in the middle of its handshake: the
connection is dropped, C<error> runs once with no C<$io>, and
C<< $server->stats->{rejected} >> counts it:

    connection from 192.0.2.7:51234 refused: TLS handshake: wrong version number
    connection from 192.0.2.7:51236 refused: TLS handshake: http request
    connection from 192.0.2.7:51240 refused: TLS handshake: peer did not return a certificate
    connection from 192.0.2.7:51242 refused: TLS handshake not complete within 10 s
    connection from 192.0.2.7:51244 refused: TLS handshake not complete at EOF

A connection that closes having sent nothing at all (a port check) goes
without a word.  After C<add>, a bad record, a renegotiation (refused:
TLS 1.2 clients may ask for one; TLS 1.3 has none) or a client that
cuts the connection without close_notify gives C<error> with C<$io>,
then C<remove>:

    connection 192.0.2.7:51250: TLS: decryption failed or bad record mac
    connection 192.0.2.7:51252: TLS: renegotiation refused
    connection 192.0.2.7:51254: TLS: the peer went without close_notify

Every other connection goes on.

B<Fork.>  A TLS connection's state (its keys, its record counters) is
in the process that serves it.  A child forked from a callback (see
L</FORK>) cannot write to a TLS connection of the parent's: its
C<print> fails (C<$!> is C<EPERM>).  Workers (L</workers>) and a child
that calls C<run> serve their own connections, and are not concerned.

B<Memory.>  OpenSSL's buffers of an idle connection are released
(C<SSL_MODE_RELEASE_BUFFERS>, which saves about 15 KiB a connection): an
idle TLS connection costs about 15.6 KiB, 13.4 of them OpenSSL's (its
connection object and session), against about 1 KiB for a plain one.
See F<bench/README> for how it was measured, and the throughput.

=head2 tls

    my $t = $io->tls;       # undef on a plain connection
    print "$t->{version} $t->{cipher}\n";

What the handshake agreed, as a new hash reference, from C<add> to
C<remove>:

    version       'TLSv1.3' or 'TLSv1.2'
    cipher        'TLS_AES_256_GCM_SHA384', 'ECDHE-RSA-AES128-GCM-SHA256', ...
    sni           the host name the client asked for, or undef
    alpn          the protocol agreed by ALPN, or undef
    peer_subject  the client certificate's subject ('CN=alice,O=Example'),
    peer_issuer   and its issuer: only when one was sent and verified

undef on a plain connection (and on a STARTTLS one until its handshake
is complete), and once the connection is closed.

=head2 tls_reload

    $SIG{HUP} = sub { $server->tls_reload or warn "kept the old certificate\n" };

Reads every TLS listener's files again (C<cert_file>, C<key_file>, the
CAs and the SNI certificates), for a renewed certificate.  New
connections get the new ones; open connections keep theirs.  If a file
cannot be read or does not go with the rest, that listener keeps the
certificate it had, C<error> is called (no C<$io>) with the reason:

    tls_reload: key_file privkey.pem does not go with cert_file fullchain.pem: key values mismatch (the certificate in use is kept)

and C<tls_reload> returns false; else true.  Safe from a callback, a
timer or a signal handler (C<%SIG> handlers run between events).  With
Let's Encrypt's certbot, a deploy hook does it:

    # /etc/letsencrypt/renewal-hooks/deploy/isd.sh
    #!/bin/sh
    systemctl reload chat.service      # ExecReload=/bin/kill -HUP $MAINPID

Certbot replaces F<fullchain.pem> and F<privkey.pem> (symbolic links)
together, then runs the hook.  The server must be able to read them: run
it as root, or give its user read access to F</etc/letsencrypt/live> and
F<archive> (a group, C<chmod 0750>), and bind port 443 with
C<CAP_NET_BIND_SERVICE> or a systemd socket.  With L</workers>, the
master passes a HUP on as a rolling restart: the new workers read the
files anew.

=head2 start_tls

    data => sub {
        my ($io, $server, $line) = @_;
        if ($line =~ /^STARTTLS\r?$/i) {
            $io->print("220 Ready to start TLS\r\n");
            $io->start_tls;
            return 1;
        }
        ...
    },

STARTTLS: switches a plain connection of a listener with C<< tls => {
..., starttls => 1 } >> to TLS.  What was printed before the call (the
reply that tells the client to go ahead) is written in plain text
first; then the handshake runs, with the connection's input held (the
lines after the command belong to the handshake, and are not
delivered); then C<data> gets the lines sent over TLS, and L</tls> says
what was agreed.  What is printed after the call is sent encrypted,
once the handshake is complete.  A failed or late handshake drops the
connection: C<error> (C<connection ...: TLS handshake: REASON>), then
C<remove>.  Croaks on a connection that is TLS already, or whose
listener has no C<starttls>.  Returns true.  C<getline> after it, in
the same callback, still gives the line C<data> was called for if it
was not read yet, and undef after that: the next line comes to C<data>,
over TLS.

=head2 has_tls

    IO::Socket::INET::Daemon->has_tls or die "rebuild with libssl-dev\n";

OpenSSL's version (C<'OpenSSL 3.0.13 30 Jan 2024'>) if the module was
built with it, else false.  Without it, C<tls> croaks saying how to
rebuild, and everything else works.

=head1 EMBEDDING

New in 1.04.  A program that already runs an event loop (a Mojolicious
app, an AnyEvent client, an IO::Async service, a POE system, an EV
program) keeps it, and the server lives inside it: C<attach> instead of
C<run>.  The server keeps its C hot path: the host loop only learns
that it has work, and each step does all that is ready in C, entering
Perl once per message as under C<run>.

    use AnyEvent;
    use IO::Socket::INET::Daemon;

    my $server = IO::Socket::INET::Daemon->new(port => 5000,
        callback => { data => sub { $_[0]->print("echo: $_[2]"); 1 } });
    $server->attach('AnyEvent') or die "cannot listen: $@\n";

    my $t = AnyEvent->timer(after => 1, interval => 1, cb => sub { print "still here\n" });
    AnyEvent->condvar->recv;        # the host loop runs; so does the server

Everything behaves as under C<run>: every callback (C<tick> once per
step), C<stop> (also C<< stop(grace => S) >>), C<remove>, C<destroy>,
timers, timeouts and limits.  A C<die> in a callback stays in the
server (C<error>, the connection dropped): it never reaches the host
loop.  Output is flushed at the end of each step.  A stopped server
(C<stop>, C<destroy>, the end of a graceful stop) detaches itself from
the host loop, its listening sockets still open: C<attach> again (or
C<run>) serves them on.  After a C<fork>, attach anew in the child.
Signals are the host loop's: a C<%SIG> handler runs when the host loop
returns to Perl, which EV (and AnyEvent or Mojo on EV) does only for its
own watchers; there, use the loop's signal watchers (C<EV::signal>,
C<< AnyEvent->signal >>, C<< Mojo::IOLoop->singleton->reactor >> on EV:
C<EV::signal>) to call C<stop>.

=head2 attach

    $server->attach('EV');                              # EV's default loop
    $server->attach('AnyEvent');                        # whatever AnyEvent runs on
    $server->attach('IO::Async', loop => $loop);        # default IO::Async::Loop->new
    $server->attach('Mojo', loop => Mojo::IOLoop->singleton);   # or 'Mojo::IOLoop'
    $server->attach('POE');                             # a session of its own

Listens (if it does not yet), then watches the server's descriptor
(L</fd>) and arms a timer for its next deadline (L</next_timeout>) in
that loop, loading the glue module
(F<IO::Socket::INET::Daemon::Embed::*>) and the loop only then.  Returns
the glue object (true).  A server that cannot listen croaks with the
reason; an unknown loop or option croaks naming it.  Attaching again
detaches first.  With the C<poll> backend (which has no descriptor to
watch) the glue runs a step every 10 ms
(C<$IO::Socket::INET::Daemon::Embed::POLL_INTERVAL>); use epoll or
kqueue, the default where they exist, when latency matters.

=head2 detach

    $server->detach;

Removes the server's watchers from the host loop; 1 if it was attached,
else 0.  Nothing is closed: clients wait (the kernel queues what they
send) until C<attach>, C<run> or C<run_once>.  Dropping the last
reference to the server detaches it too.

=head2 run_once

    $server->run_once;          # what is ready now; returns at once
    $server->run_once(0.5);     # waits up to 0.5 s for something to do
    $server->run_once(undef);   # waits until something happens

One cycle of L</run>, for a loop of your own: C<tick>, then what is ready
(accepts, reads, callbacks, writes), the timers that are due, and all
output flushed.  Listens first if need be.  Returns 1 while the server
serves on, 0 once it was stopped during the step or since the last one
(C<stop>, C<destroy>, the end of a graceful stop: the next call serves
again), and false with C<$@> set if it cannot listen.  Croaks if called
from a callback or inside C<run>.  C<attach> is this, driven by the
host loop:

    my $fd = $server->fd;
    open my $fh, '<&', $fd or die "dup: $!";
    while (1) {
        my $t = $server->next_timeout;          # undef: no deadline
        my $rin = '';
        vec($rin, fileno $fh, 1) = 1;
        select(my $rout = $rin, undef, undef, $t);
        $server->run_once(0) or last;           # stopped
    }

=head2 fd

    my $fd = $server->fd;

The descriptor another loop watches for reading: it is readable whenever
the server has work (it is the epoll or kqueue descriptor itself).
Listens first if need be (croaks, with the reason, if it cannot).
C<undef> with the C<poll> backend: call C<run_once(0)> on a short
timer then.  Watch a duplicate (C<< open my $fh, '<&', $fd >>) if the
host loop wants a handle it may close.  A forked child gets a new one.

=head2 next_timeout

    my $secs = $server->next_timeout;      # undef: nothing to wait for

Seconds until the server must run a step for a deadline of its own,
however quiet the descriptor is: its timers (L</timer>), idle timeouts,
PROXY header deadlines, lingering closes, the end of a graceful stop,
and C<timeout> (the pace of C<tick>).  0: now (a C<stop> is pending).
0 also when output or input is queued for the next step.  Ask again
after each step: the deadlines move.  (With C<attach>, what the host
loop's own code does between steps - C<stop>, C<destroy>, a new
C<timer>, C<remove>, C<broadcast>, C<max_connections>, and on a
connection C<resume>, C<idle_timeout>, C<close>, C<shutdown>,
C<framing> - brings the next step at once.)

=head1 DEPLOYMENT

How the same script runs in each setting; nothing in it changes but the
options.

=over 4

=item Standalone, in the foreground

    perl app.pl         # Ctrl-C (INT) or TERM: stop(grace => ...) if the script says so

Install C<< $SIG{TERM} = $SIG{INT} = sub { $server->stop(grace => 10) } >>
so that a stop loses no request.

=item As a daemon

    my $server = IO::Socket::INET::Daemon->new(%options,
        daemonize => 1, pid_file => '/run/app.pid', log_file => '/var/log/app.log',
        user => 'app');

The command returns once the daemon serves (exit 0), or fails saying why
(see L</OPERATIONS>); C<kill -TERM $(cat /run/app.pid)> stops it.

=item Under systemd

Leave C<daemonize> out.  F<eg/systemd/isd-echo.service> is a
C<Type=notify> unit with C<WatchdogSec=> (the server says READY=1 and
pings the watchdog, see L</SYSTEMD AND SERVER::STARTER>), and
F<eg/systemd/isd-echo.socket> lets systemd own the port (socket
activation).  C<systemctl stop> sends TERM; give the unit a
C<TimeoutStopSec> longer than the grace.  With C<workers> the master
tells systemd it is ready and pings the watchdog;
F<eg/systemd/isd-prefork.service> runs F<eg/prefork.pl> so, with
C<ExecReload> sending HUP and C<KillMode=mixed> (TERM to the master
alone, which stops its workers).

=item Under Server::Starter

    start_server --port 5000 -- perl app.pl

The script adopts the port (C<SERVER_STARTER_PORT>); C<kill -HUP> to
C<start_server> starts a new generation of the script (new code) and
TERMs the old one, which finishes what it has with
C<< $SIG{TERM} = sub { $server->stop(grace => 10) } >>: nothing refused,
nothing lost.  Works with C<workers> too (the master adopts the port).

=item Behind HAProxy, on several hosts

    my $server = IO::Socket::INET::Daemon->new(%options,
        proxy_protocol => 1, trusted_proxies => [ '10.0.0.2' ]);

See L</"BEHIND A LOAD BALANCER (PROXY PROTOCOL)"> and
F<eg/haproxy.cfg>: the client's address reaches C<peerhost>, health
checks stay silent, and one instance at a time drains for a deploy.

=item Prefork, on every core

    my $server = IO::Socket::INET::Daemon->new(%options, workers => 4);

See L</PREFORK WORKERS>; combine with C<daemonize>/C<pid_file> (the pid
file names the master) or with systemd (C<Type=notify>: the master's
PID is the main PID).  HUP to the master restarts the workers without
refusing a connection; TTIN/TTOU change their number.

=back

=head1 CONNECTION CONTROL, FOR USERS OF OTHER FRAMEWORKS

What POE::Component::Server::TCP, AnyEvent::Handle and Mojo::IOLoop call
the connection controls of this module:

    this module              PoCo::Server::TCP        AnyEvent::Handle        Mojo::IOLoop
    -----------------------  -----------------------  ----------------------  ------------------------
    $server->timer(after)    $kernel->delay           AE::timer               Mojo::IOLoop->timer
    $server->timer(every)    $kernel->delay (again)   AE::timer(.., $ivl)     Mojo::IOLoop->recurring
    $t->cancel               $kernel->alarm_remove    undef $w                Mojo::IOLoop->remove
    idle_timeout => S        (by hand: delay)         timeout => S            $stream->timeout(S)
    $io->idle_timeout(S)     -                        $hdl->timeout(S)        $stream->timeout(S)
    max_connections => N     Concurrency => N         -                       max_connections
    $server->max_connections set_concurrency         -                       -
    high_water / low_water   (ClientFlushed by hand)  wbuf_max (errors out)   high_water_mark
    drain callback           ClientFlushed            on_drain                drain event
    $io->pending             -                        length $hdl->{wbuf}     $stream->bytes_waiting
    $io->pause / resume      pause_input/resume_input stop_read / start_read  $stream->stop/start
    $server->broadcast       (loop over clients)      (loop over handles)     (loop over streams)
    $server->stats           -                        -                       -
    framing => 'line'        Filter::Line             push_read(line)         (by hand)
    framing => 'length'      Filter::Block            push_read(chunk)x2      (by hand)
    $io->send_message        (by hand: pack)          push_write(pack)        (by hand: pack)
    $io->framing(...)        wheel's set_input_filter push_read(other type)   (by hand)
    error callback           ClientError              on_error                error event
    remove callback          ClientDisconnected       on_eof / on_error       close event

=head1 SIGNALS

C<run> waits inside C, but C<%SIG> handlers run within milliseconds of the
signal, even without a C<timeout>:

    $SIG{TERM} = sub { $server->stop };

(When C<%SIG> has a Perl handler, an idle server blocks signals around its
wait so that none can slip in unseen; while traffic flows it saves those
two system calls a cycle and waits at most 10 ms at a time instead.)

While L</destroy> delivers the output left (for up to L</linger>
seconds), handlers still run promptly.  A handler that calls C<destroy>
or C<stop> there ends the delivery at once, dropping what is left, and
C<exit> works as usual.  So a second SIGTERM cuts a slow shutdown short:

    $SIG{TERM} = sub { $server->stop };
    $server->run;           # the first TERM stops it
    $server->destroy;       # delivers for up to linger; a second TERM ends it

SIGPIPE never kills the process because of a client that went away: the
server's writes never raise it.

=head1 THREADS

On a perl built with ithreads a daemon may be created and run in any
thread; it serves from that thread only.  A thread started later does not
get a copy of the daemon (in the new thread it is a reference to undef).
A thread started while connections are open, from a callback for
instance, gets copies of their C<$io> objects; the copies belong to no
daemon, and every connection method called on one croaks, naming the
method:

    data => sub {
        my $io = shift;
        threads->create(sub { eval { $io->print("hi\n") }; print $@ })->join;
        # IO::Socket::INET::Daemon::Peer::print: this peer is a copy made
        # for a new thread; ...
        $io->print("hi\n");     # the daemon's own $io still works
        return 1;
    },

=head1 FORK

A child forked from a callback shares the daemon's sockets with the
parent and, when the callback returns, would go on serving them in the
parent's place.  In the child, end that callback with an C<exit>, or call
L</destroy>: in a child, C<destroy> only lets go of the child's copies of
the descriptors (the parent's connections are not touched) and C<run>
returns once the callback does.  Output the child queued through C<$io>
is not written after that; C<< $io->flush >> writes it first.

Each byte goes out once.  Output printed before the fork (a welcome in
C<add>, the replies to earlier lines) is sent by the parent only; the
child sends only what it prints after the fork, and its
C<< $io->flush >> writes only that.  In a child, C<flush> waits until the
client has taken that output (for up to L</linger> seconds, running
C<%SIG> handlers meanwhile), since no event loop will write it later.

A child may also serve in the parent's place from the start: after
C<run> has returned (L</stop>), fork; a child that calls C<run> serves on
the same listening socket (it lets go of its copies of the parent's
connections first).  That is how workers can share a port.

Two things to keep in mind before forking per line:

=over 4

=item * Replies can come back out of order.  While a child works, the
parent goes on calling C<data> for the client's next lines and answers
them, so a client that pipelines requests may get the child's reply after
the replies to later lines.

=item * It is unbounded.  Every line forks a process: a client that sends
thousands of lines makes the server fork thousands of processes.

=back

Keep a count of the live children and refuse work past a limit:

    use POSIX ':sys_wait_h';

    my $max  = 10;                      # children at most
    my $live = 0;                       # children running now
    $SIG{CHLD} = sub {                  # reaps them: no zombies
        $live-- while waitpid(-1, WNOHANG) > 0;
    };

    my $server = IO::Socket::INET::Daemon->new(
        port     => 5000,
        callback => { data => sub {
            my ($io, $daemon) = @_;
            my $line = $io->getline;
            if ($live >= $max) {
                $io->print("busy\n");   # answered by the parent, at once
                return 1;
            }
            my $pid = fork;
            if (!defined $pid) {
                $io->print("busy\n");
                return 1;
            }
            if ($pid) {                 # the parent serves on
                $live++;
                return 1;
            }
            sleep 1;                    # the slow work, in the child
            $io->print(uc $line);
            $io->flush;                 # the child's own output
            $daemon->destroy;           # run returns in the child
            return 1;
        } },
    );
    $server->run;                       # returns in each child

=head1 SEE ALSO

L<IO::Socket::INET::Daemon::Cookbook>: one chat server written for
POE::Component::Server::TCP, AnyEvent::Handle, IO::Async, Mojo::IOLoop and
Net::Server beside ours, the names of theirs mapped to ours, and how to
keep your loop (L</EMBEDDING>).

The F<eg/> directory of the distribution: F<echo.pl>, F<reverse.pl> (a 0.04
style script), F<chat.pl>, F<blobstore.pl>, F<daemon.pl>, F<prefork.pl>,
F<proxied.pl> with F<haproxy.cfg>, and F<eg/cookbook/>.

L<IO::Socket::INET>, L<AnyEvent::Handle>, L<POE::Component::Server::TCP>,
L<Mojo::IOLoop>, L<IO::Async>, L<Net::Server>; HAProxy's
F<doc/proxy-protocol.txt> (L<https://www.haproxy.org/download/2.6/doc/proxy-protocol.txt>).

=head1 AUTHORS

IO-Socket-INET-Daemon 1.x developers.  Version 0.04 and the interface by
Jonas Kramer.

=head1 COPYRIGHT AND LICENSE

This library is free software, published under the terms of the Artistic
License 2.0, as 0.04 was.

=cut
