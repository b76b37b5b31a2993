package TestTLS;

# Shared helper for the TLS tests (t/62 to t/64): certificates made with
# the openssl command in a temporary directory, TLS clients
# (IO::Socket::SSL) that connect with a deadline, and `openssl s_client`
# run with a deadline.  tls_skip_reason says why a TLS test cannot run
# here (a module built without OpenSSL, no IO::Socket::SSL, no openssl).

use strict;
use warnings;

use Exporter ();
use File::Temp ();
use IO::Select ();
use POSIX ();
use Time::HiRes ();
use TestISD ();          # (not imported: no second alarm)

# Under valgrind (xt/valgrind-run sets ISD_VALGRIND) every process is some
# 20 times slower: the files get longer deadlines, the clients' waits too.
our $SLOW = $ENV{ISD_VALGRIND} ? 8 : 1;
if ($ENV{ISD_VALGRIND}) {
    $TestISD::DEADLINE = 900;
    $TestISD::CHILD_DEADLINE = 600;
    alarm 900;
}

our @ISA    = ('Exporter');
our @EXPORT = qw(tls_skip_reason make_certs tls_client tls_try_client
                 tls_upgrade peer_subject clean_eof s_client openssl_bin not_served
                 tls_flat tls_unflat tls_callbacks pattern client_hello rst_close dirty_close);

# -------------------------------------------------------------- skipping

sub openssl_bin {
    for my $d (split /:/, ($ENV{PATH} || '/usr/bin:/bin')) {
        return "$d/openssl" if length $d && -x "$d/openssl";
    }
    return undef;
}

# undef when the TLS tests can run, else why not
sub tls_skip_reason {
    require IO::Socket::INET::Daemon;
    return "IO::Socket::INET::Daemon $IO::Socket::INET::Daemon::VERSION has no TLS support (no has_tls)"
        unless IO::Socket::INET::Daemon->can('has_tls');
    return 'IO::Socket::INET::Daemon was built without OpenSSL (has_tls is false; '
         . 'install libssl-dev and rebuild)'
        unless IO::Socket::INET::Daemon->has_tls;
    return 'IO::Socket::SSL 2.0 or later is not installed'
        unless eval { require IO::Socket::SSL; IO::Socket::SSL->VERSION(2.0); 1 };
    return 'the openssl command is not in PATH' unless openssl_bin();
    return undef;
}

# ----------------------------------------------------------- certificates

# make_certs(): a temporary directory (removed at exit) with, as PEM files:
#   ca.pem              the CA (CN=isd-test-ca)
#   localhost.pem/.key  server: CN=localhost, SAN DNS:localhost IP:127.0.0.1
#   localhost2.pem/.key the same names, CN=localhost-2 (for tls_reload)
#   mail.pem/.key       server: CN=mail.example, SAN DNS:mail.example
#   client.pem/.key     client: CN=client
#   expired.pem/.key    client: CN=expired, valid 2020-01-01 to 01-02
#   foreign-ca.pem      another CA (CN=isd-foreign-ca)
#   foreign.pem/.key    client: CN=foreign, signed by the other CA
#   foreign2.pem/.key   client: CN=foreign-2, signed by the other CA
#   alice.pem/.key      client: O=Example, CN=alice (signed by the CA)
#   other.key           a key that matches no certificate
#   combined.pem        localhost.pem and its key in one file
#   notpem.pem          text that is not PEM
# Returns a hash: name => path (ca, localhost, localhost_key, ...; dir).
my $KEEP;
sub make_certs {
    my $dir = File::Temp->newdir('isd-tls-XXXXXX', TMPDIR => 1, CLEANUP => 1);
    push @{ $KEEP ||= [] }, $dir;
    my $ossl = openssl_bin() or die "make_certs: no openssl command\n";
    my $log = "$dir/openssl.log";
    my $run = sub {
        my @cmd = ($ossl, @_);
        my $pid = fork;
        die "fork: $!" unless defined $pid;
        if (!$pid) {
            chdir "$dir" or POSIX::_exit(126);
            open STDIN, '<', '/dev/null';
            open STDOUT, '>>', $log;
            open STDERR, '>>', $log;
            exec @cmd or POSIX::_exit(127);
        }
        waitpid $pid, 0;
        die "make_certs: openssl @_ failed (exit " . ($? >> 8) . "):\n" . _slurp($log) if $?;
    };
    my $spit = sub {
        open my $fh, '>', "$dir/$_[0]" or die "$dir/$_[0]: $!";
        print $fh $_[1];
        close $fh;
    };
    my @ec = qw(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes);
    $spit->('server.ext', "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n"
                        . "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n");
    $spit->('mail.ext', "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n"
                      . "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:mail.example\n");
    $spit->('client.ext', "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n"
                        . "extendedKeyUsage=clientAuth\n");
    for my $ca (['ca', 'isd-test-ca'], ['foreign-ca', 'isd-foreign-ca']) {
        $run->('req', '-x509', @ec, '-keyout', "$ca->[0].key", '-out', "$ca->[0].pem",
               '-days', 3, '-subj', "/CN=$ca->[1]");
    }
    my @leaf = (['localhost', 'localhost', 'ca', 'server'],
                ['localhost2', 'localhost-2', 'ca', 'server'],
                ['mail', 'mail.example', 'ca', 'mail'],
                ['client', 'client', 'ca', 'client'],
                ['foreign', 'foreign', 'foreign-ca', 'client'],
                ['alice', 'alice', 'ca', 'client', '/O=Example'],
                ['foreign2', 'foreign-2', 'foreign-ca', 'client']);
    for my $l (@leaf) {
        my ($n, $cn, $ca, $ext, $pre) = @$l;
        $run->('req', @ec, '-keyout', "$n.key", '-out', "$n.csr", '-subj', ($pre // '') . "/CN=$cn");
        $run->('x509', '-req', '-in', "$n.csr", '-CA', "$ca.pem", '-CAkey', "$ca.key",
               '-CAcreateserial', '-out', "$n.pem", '-days', 2, '-extfile', "$ext.ext");
    }
    # expired: openssl ca takes a start and an end date (OpenSSL 3.0's x509
    # has no -not_before)
    mkdir "$dir/db";
    $spit->('db/index.txt', '');
    $spit->('db/serial', "1000\n");
    $spit->('ca.cnf', <<'EOF');
[ca]
default_ca = d
[d]
dir = .
database = db/index.txt
serial = db/serial
new_certs_dir = db
certificate = ca.pem
private_key = ca.key
default_md = sha256
policy = p
unique_subject = no
copy_extensions = none
x509_extensions = x
[p]
commonName = supplied
[x]
basicConstraints = CA:FALSE
extendedKeyUsage = clientAuth
EOF
    $run->('req', @ec, '-keyout', 'expired.key', '-out', 'expired.csr', '-subj', '/CN=expired');
    $run->('ca', '-batch', '-config', 'ca.cnf', '-in', 'expired.csr', '-out', 'expired.pem',
           '-startdate', '20200101000000Z', '-enddate', '20200102000000Z', '-notext');
    $run->('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', 'other.key');
    $spit->('combined.pem', _slurp("$dir/localhost.pem") . _slurp("$dir/localhost.key"));
    $spit->('notpem.pem', "this is not a certificate\n");

    my %c = (dir => "$dir");
    for my $n (qw(ca foreign-ca localhost localhost2 mail client expired foreign
                  alice foreign2 combined notpem)) {
        (my $k = $n) =~ s/-/_/g;
        $c{$k} = "$dir/$n.pem";
    }
    for my $n (qw(localhost localhost2 mail client expired foreign alice foreign2 other)) {
        $c{"${n}_key"} = "$dir/$n.key";
    }
    return \%c;
}

sub _slurp {
    open my $fh, '<', $_[0] or return '';
    local $/;
    my $s = <$fh>;
    return defined $s ? $s : '';
}

# ---------------------------------------------------------------- clients

# tls_try_client($port, %o): an IO::Socket::SSL client of 127.0.0.1:$port
# after a complete handshake, or undef ($IO::Socket::SSL::SSL_ERROR and $@
# say why).  Options:
#   ca       the CA file to verify the server with (undef: no verification)
#   name     the name to verify the certificate against ('localhost')
#   sni      the server name sent (default: none)
#   version  'TLSv1_2', 'TLSv1_3' (default: what both support)
#   alpn     [protocols]
#   cert, key  a client certificate
#   timeout  for the connect and the handshake (5)
#   ssl      more IO::Socket::SSL options
sub tls_try_client {
    my ($port, %o) = @_;
    require IO::Socket::SSL;
    my %ssl = (
        PeerHost => '127.0.0.1',
        PeerPort => $port,
        Timeout  => ($o{timeout} || 5) * $SLOW,
        SSL_hostname => (defined $o{sni} ? $o{sni} : ''),
    );
    if (defined $o{ca}) {
        $ssl{SSL_verify_mode} = IO::Socket::SSL::SSL_VERIFY_PEER();
        $ssl{SSL_ca_file} = $o{ca};
        $ssl{SSL_ca_path} = undef;
        $ssl{SSL_verifycn_name} = defined $o{name} ? $o{name} : 'localhost';
        $ssl{SSL_verifycn_scheme} = 'default';
    }
    else {
        $ssl{SSL_verify_mode} = IO::Socket::SSL::SSL_VERIFY_NONE();
    }
    $ssl{SSL_version} = $o{version} if $o{version};
    $ssl{SSL_alpn_protocols} = $o{alpn} if $o{alpn};
    if ($o{cert}) {
        $ssl{SSL_cert_file} = $o{cert};
        $ssl{SSL_key_file} = $o{key} if $o{key};
    }
    %ssl = (%ssl, %{ $o{ssl} || {} });
    return IO::Socket::SSL->new(%ssl);
}

# tls_client($port_or_server, %o): as tls_try_client, or die saying why
sub tls_client {
    my ($port, %o) = @_;
    my $srv = ref $port ? $port : undef;
    $port = $srv->port if $srv;
    my $s = tls_try_client($port, %o);
    return $s if $s;
    no warnings 'once';
    my $why = "tls_client: 127.0.0.1:$port: " . ($IO::Socket::SSL::SSL_ERROR || $@ || $!) . "\n";
    if ($srv) {
        my @ev = $srv->events;
        splice @ev, 0, @ev - 10 if @ev > 10;
        $why .= "last server events:\n" . join('', map { "  $_\n" } @ev) if @ev;
        my $err = $srv->stderr;
        $why .= "server stderr:\n$err" if length $err;
    }
    die $why;
}

# not_served($port, %o): true when a client (options of tls_try_client)
# is not served: either its handshake fails, or (TLS 1.3: the server
# judges the client's certificate after the client's handshake is done)
# its first line gets no answer but the end
sub not_served {
    my ($port, %o) = @_;
    my $s = tls_try_client($port, %o) or return 1;
    print $s "ping\n";
    my $got = TestISD::read_until_eof($s, 3);
    return !length($got) && TestISD::got_eof($s);
}

# tls_upgrade($plain_socket, %o): STARTTLS on a connected socket (the
# options of tls_try_client); the socket, now IO::Socket::SSL, or undef
sub tls_upgrade {
    my ($sock, %o) = @_;
    require IO::Socket::SSL;
    my %ssl = (SSL_hostname => (defined $o{sni} ? $o{sni} : ''),
               Timeout => ($o{timeout} || 5) * $SLOW);
    if (defined $o{ca}) {
        %ssl = (%ssl, SSL_verify_mode => IO::Socket::SSL::SSL_VERIFY_PEER(),
                SSL_ca_file => $o{ca}, SSL_ca_path => undef,
                SSL_verifycn_name => defined $o{name} ? $o{name} : 'localhost',
                SSL_verifycn_scheme => 'default');
    }
    else {
        $ssl{SSL_verify_mode} = IO::Socket::SSL::SSL_VERIFY_NONE();
    }
    $ssl{SSL_version} = $o{version} if $o{version};
    my $was = $sock->blocking(1);
    my $ok = IO::Socket::SSL->start_SSL($sock, %ssl);
    return $ok ? $sock : undef;
}

# peer_subject($ssl_socket): the subject CN of the certificate the server
# presented ("localhost", "mail.example")
sub peer_subject {
    my ($s) = @_;
    my $cn = eval { $s->peer_certificate('cn') };
    return $cn;
}

# clean_eof($ssl_socket): after a read returned EOF, true if the peer had
# sent close_notify (a clean TLS shutdown), false if TCP just ended
sub clean_eof {
    my ($s) = @_;
    my $ssl = eval { $s->_get_ssl_object } or return undef;
    return (Net::SSLeay::get_shutdown($ssl) & 2) ? 1 : 0;    # SSL_RECEIVED_SHUTDOWN
}

# --------------------------------------------------------------- s_client

# s_client($port, \@args, $input, $timeout): run `openssl s_client
# -connect 127.0.0.1:PORT @args`, feed it $input on stdin (then keep stdin
# open until it exits or $timeout passes: -ign_eof is the caller's
# choice), and return { status (wait status, undef if it had to be
# killed), out (stdout), err (stderr) }.  $input may be a code ref, called
# with a writer sub and the output-so-far sub, for a conversation; if it
# returns 'eof', s_client's stdin is closed then.
sub s_client {
    my ($port, $args, $input, $timeout) = @_;
    $timeout = ($timeout || 5) * $SLOW;
    my $dir = File::Temp->newdir('isd-sclient-XXXXXX', TMPDIR => 1, CLEANUP => 1);
    pipe(my $rd, my $wr) or die "pipe: $!";
    my $pid = fork;
    die "fork: $!" unless defined $pid;
    if (!$pid) {
        close $wr;
        POSIX::setpgid(0, 0);
        $SIG{$_} = 'DEFAULT' for qw(ALRM TERM PIPE);
        alarm 0;
        open STDIN, '<&', $rd or POSIX::_exit(126);
        open STDOUT, '>', "$dir/out" or POSIX::_exit(126);
        open STDERR, '>', "$dir/err" or POSIX::_exit(126);
        exec openssl_bin(), 's_client', '-connect', "127.0.0.1:$port", @$args
            or POSIX::_exit(127);
    }
    close $rd;
    $wr->autoflush(1);
    my $out = sub { _slurp("$dir/out") };
    my $write = sub { syswrite $wr, $_[0] };
    if (ref $input eq 'CODE') {
        my $r = $input->($write, $out);
        close $wr if defined $r && $r eq 'eof';
    }
    elsif (defined $input) {
        $write->($input);
    }
    my $st;
    TestISD::wait_until(sub {
        my $r = waitpid($pid, POSIX::WNOHANG());
        $st = $? if $r == $pid;
        return $r != 0;
    }, $timeout);
    if (!defined $st) {
        kill 'KILL', -$pid;
        waitpid $pid, 0;
    }
    close $wr;
    return { status => $st, out => _slurp("$dir/out"), err => _slurp("$dir/err") };
}

# ------------------------------------------------------- a server to talk to

# tls_flat($io->tls): "key=value ..." sorted, bytes outside 0x21-0x7e (and
# "%") as %XX, undef values as "key=%undef"; 'undef' for undef
sub tls_flat {
    my ($h) = @_;
    return 'undef' unless defined $h;
    return "notahash:$h" unless ref $h eq 'HASH';
    my @kv;
    for my $k (sort keys %$h) {
        my $v = $h->{$k};
        if (!defined $v) { push @kv, "$k=%undef"; next }
        $v = "%ref:" . ref $v if ref $v;
        $v =~ s/([^\x21-\x24\x26-\x7e])/sprintf '%%%02X', ord $1/ge;
        push @kv, "$k=$v";
    }
    return join ' ', @kv;
}

sub tls_unflat {
    my ($line) = @_;
    return undef if !defined $line;
    $line =~ s/\r?\n\z//;
    return undef if $line eq 'undef';
    my %h;
    for my $kv (split ' ', $line) {
        my ($k, $v) = split /=/, $kv, 2;
        $v = undef if defined $v && $v eq '%undef';
        $v =~ s/%([0-9A-F]{2})/chr hex $1/ge if defined $v;
        $h{$k} = $v;
    }
    return \%h;
}

# pattern($n): $n bytes of numbered lines ("0000042 xxx...\n", 64 bytes
# each), so that a byte lost, doubled or moved shows
sub pattern {
    my ($n) = @_;
    my $line = 'x' x 55;
    my $s = join '', map { sprintf "%07d %s\n", $_, $line } 0 .. int($n / 64);
    return substr($s, 0, $n);
}

# tls_callbacks(): an echo server whose lines are also commands:
#   tls         answers tls_flat($io->tls)
#   stats       the server's counters (flat)
#   quit        "bye", then data returns false
#   close       "bye", then $io->close
#   big N       N bytes of pattern(N)
#   bigclose N  the same, then $io->close
#   other lines are echoed
# add logs "add PORT FLAT", remove "remove PORT", error "error PORT|undef
# MESSAGE", data "data PORT LINE" (not for big)
sub tls_callbacks {
    my (%extra) = @_;
    my %more = %{ delete $extra{commands} || {} };
    return {
        add => sub {
            my ($io) = @_;
            TestISD::log_event('add %s %s', $io->peerport, tls_flat($io->tls));
            return 1;
        },
        data => sub {
            my ($io, $d, $line) = @_;
            (my $c = $line) =~ s/\r?\n\z//;
            TestISD::log_event('data %s %s', $io->peerport, $c) unless $c =~ /^big/;
            my ($cmd, $arg) = split ' ', $c, 2;
            $cmd = '' unless defined $cmd;
            if ($more{$cmd}) {
                return $more{$cmd}->($io, $d, $arg);
            }
            if ($c eq 'tls') {
                $io->print(tls_flat($io->tls), "\n");
            }
            elsif ($c eq 'stats') {
                my $s = $d->stats;
                $io->print(join(' ', map { "$_=" . (defined $s->{$_} ? $s->{$_} : '%undef') }
                                     sort grep { !ref $s->{$_} } keys %$s), "\n");
            }
            elsif ($c eq 'quit') {
                $io->print("bye\n");
                return 0;
            }
            elsif ($c eq 'close') {
                $io->print("bye\n");
                $io->close;
            }
            elsif ($cmd eq 'big' || $cmd eq 'bigclose') {
                $io->print(pattern($arg));
                $io->close if $cmd eq 'bigclose';
            }
            else {
                $io->print($line);
            }
            return 1;
        },
        remove => sub { TestISD::log_event('remove %s', $_[0]->peerport) },
        error => sub {
            my ($io, $d, $msg) = @_;
            TestISD::log_event('error %s %s', defined $io ? $io->peerport : 'undef', $msg);
        },
        %extra,
    };
}

# ------------------------------------------------------------ raw material

# client_hello(sni => NAME): the bytes of a real ClientHello (TLS 1.2 and
# 1.3 offered), as the first flight of a client
sub client_hello {
    my (%o) = @_;
    require Net::SSLeay;
    Net::SSLeay::initialize();
    my $ctx = Net::SSLeay::CTX_new_with_method(Net::SSLeay::TLS_client_method())
        or die "client_hello: CTX_new failed\n";
    my $ssl = Net::SSLeay::new($ctx);
    my $rb = Net::SSLeay::BIO_new(Net::SSLeay::BIO_s_mem());
    my $wb = Net::SSLeay::BIO_new(Net::SSLeay::BIO_s_mem());
    Net::SSLeay::set_bio($ssl, $rb, $wb);
    Net::SSLeay::set_tlsext_host_name($ssl, $o{sni}) if defined $o{sni};
    Net::SSLeay::connect($ssl);
    my $hello = Net::SSLeay::BIO_read($wb);
    Net::SSLeay::free($ssl);
    Net::SSLeay::CTX_free($ctx);
    die "client_hello: no ClientHello\n" unless defined $hello && $hello =~ /\A\x16\x03/;
    return $hello;
}

# dirty_close($sock): close a TLS socket without close_notify (a FIN, or
# the reset rst_close asked for); a plain socket is just closed
sub dirty_close {
    my ($c) = @_;
    return $c->close(SSL_no_shutdown => 1) if ref $c && $c->isa('IO::Socket::SSL');
    return close $c;
}

# rst_close($sock): close with a reset (SO_LINGER 0), no close_notify
sub rst_close {
    my ($c) = @_;
    require Socket;
    setsockopt($c, Socket::SOL_SOCKET(), Socket::SO_LINGER(), pack('ii', 1, 0));
    dirty_close($c);
}

1;
