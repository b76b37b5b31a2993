#!perl
# The cookbook (lib/IO/Socket/INET/Daemon/Cookbook.pod) and its servers
# (eg/cookbook/*.pl): each script whose framework is installed is started
# as its own process (perl -Mblib SCRIPT PORT IDLE) on a free port and
# talked to by three chat clients:
# - each gets the greeting; a first line that is a nick sets it ("\r\n"
#   too), any other one (an empty line) gives "guest1";
# - a line goes to the two others as "nick: text", not to its sender;
# - "/quit" is answered with "* bye", then the connection is closed, and
#   the room goes on without it;
# - the others, silent, are dropped after IDLE (2) seconds;
# - TERM stops the script (exit 0, or killed by that TERM; never KILL).
# chat-in-mojo.pl (ours attached to Mojo::IOLoop) also gets its Mojo timer
# checked: the room hears "* N in the room" every second.
# And the POD: podchecker finds nothing, and every script's code (from its
# second line) appears in it verbatim, as a code block.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use TestISD;            # alarm 60 for the file; the client helpers
use TestProc;           # spawn, reap, free_port; ends what it started
use Test::More;
use File::Temp ();
use Pod::Checker ();

chdir "$FindBin::Bin/.." or die "chdir: $!";
my $POD = 'lib/IO/Socket/INET/Daemon/Cookbook.pod';
my $TMP = File::Temp->newdir('isd-cookbook-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $IDLE = 2;

# script => the modules it needs
my @SCRIPTS = (
    [ 'chat-isd.pl'       => () ],
    [ 'chat-poe.pl'       => qw(POE POE::Component::Server::TCP) ],
    [ 'chat-anyevent.pl'  => qw(AnyEvent AnyEvent::Socket AnyEvent::Handle) ],
    [ 'chat-ioasync.pl'   => qw(IO::Async::Loop IO::Async::Listener IO::Async::Stream
                                IO::Async::Timer::Countdown) ],
    [ 'chat-mojo.pl'      => qw(Mojo::IOLoop) ],
    [ 'chat-netserver.pl' => qw(Net::Server::Multiplex IO::Multiplex) ],
    [ 'chat-in-mojo.pl'   => qw(Mojo::IOLoop) ],
);

sub slurp_file {
    my ($f) = @_;
    open my $fh, '<', $f or return undef;
    local $/;
    return scalar <$fh>;
}

# ------------------------------------------------------------------ the POD

subtest 'Cookbook.pod' => sub {
    ok(-f $POD, $POD) or return;
    my $out = '';
    open my $fh, '>', \$out or die;
    my $checker = Pod::Checker->new(-warnings => 2);
    $checker->parse_from_file($POD, $fh);
    is($checker->num_errors, 0, 'podchecker: no errors') or diag $out;
    is($checker->num_warnings, 0, 'podchecker: no warnings') or diag $out;

    my $pod = slurp_file($POD);
    my @all = sort glob 'eg/cookbook/*.pl';
    is_deeply([ sort map { "eg/cookbook/$_->[0]" } @SCRIPTS ], \@all,
              'every eg/cookbook script is tested here');
    for my $script (@all) {
        my $code = slurp_file($script);
        $code =~ s/\A#!.*\n//;
        (my $block = $code) =~ s/^(?=.)/    /mg;  # a verbatim block
        ok(index($pod, $block) >= 0, "$script is in the POD, as it is")
            or diag "its code (from the second line) is not a verbatim block of $POD";
    }

    # The other whole programs of the POD (KEEPING YOUR LOOP): they compile.
    my %eg = map { my $c = slurp_file($_); $c =~ s/\A#!.*\n//; ($c => 1) } @all;
    my $n = 0;
    while ($pod =~ /^(    use strict;\n(?:    .*\n|\n)*)/mg) {
        (my $code = $1) =~ s/^    //mg;
        $code =~ s/\n+\z/\n/;
        next if grep { index($_, $code) >= 0 } keys %eg;   # an eg script
        my ($loop) = $code =~ /^use (AnyEvent|Mojo::IOLoop|IO::Async::Loop|POE|EV);/m;
        $n++;
        if (!$loop or !installed($loop)) {
            pass("example $n: " . ($loop // '?') . ' not installed');
            next;
        }
        my $file = "$TMP/example$n.pl";
        TestProc::spit($file, $code);
        my $out = `$^X -Mblib -c $file 2>&1`;
        is($?, 0, "example $n ($loop) compiles") or diag $out;
    }
    is($n, 5, 'five loop examples');
};

# ------------------------------------------------------------------ the chat

# A line from the chat; in chat-in-mojo.pl the timer's lines are put aside
# (counted in ${*$sock}{room}).
sub chat_line {
    my ($sock, $timeout) = @_;
    my $deadline = now() + ($timeout // 5);
    while (1) {
        my $left = $deadline - now();
        my $line = read_line($sock, $left > 0 ? $left : 0);
        return $line unless defined $line and $line =~ /\A\* \d+ in the room\n\z/;
        ${*$sock}{room}++;
    }
}

# Whatever came within $secs, but the timer's lines.
sub chat_quiet {
    my ($sock, $secs) = @_;
    my $got = read_for($sock, $secs);
    ${*$sock}{room} += $got =~ s/^\* \d+ in the room\n//mg;
    return $got;
}

sub connect_retry {
    my ($port, $pid) = @_;
    my $deadline = now() + 10;
    while (now() < $deadline) {
        my $s = try_client($port, timeout => 2);
        return $s if $s;
        last if defined reap($pid, 0);      # the script died
        Time::HiRes::sleep(0.05);
    }
    return undef;
}

sub chat_test {
    my ($script) = @_;
    my $port = free_port();
    my $log = "$TMP/$script.log";
    my @extra = $script eq 'chat-in-mojo.pl' ? (1) : ();     # the timer: every 1 s
    my $pid = spawn([ $^X, '-Mblib', "eg/cookbook/$script", $port, $IDLE, @extra ],
                    out => $log);
    my $ok = eval {
        my %c;
        for my $who (qw(A B C)) {
            $c{$who} = connect_retry($port, $pid)
                or die "cannot connect to $script on port $port\n";
            is(chat_line($c{$who}), "Welcome! Your first line is your nick.\n",
               "$who: the greeting");
        }
        print { $c{A} } "alice\n";
        is(chat_line($c{A}), "* you are alice\n", 'A: a nick');
        print { $c{B} } "bob\r\n";
        is(chat_line($c{B}), "* you are bob\n", 'B: a nick (CRLF)');
        print { $c{C} } "\n";
        is(chat_line($c{C}), "* you are guest1\n", 'C: no nick, guest1');

        print { $c{A} } "hello all\n";
        is(chat_line($c{B}), "alice: hello all\n", 'A speaks: B hears');
        is(chat_line($c{C}), "alice: hello all\n", 'A speaks: C hears');
        print { $c{C} } "hi from the guest\n";
        is(chat_line($c{A}), "guest1: hi from the guest\n", 'C speaks: A hears');
        is(chat_line($c{B}), "guest1: hi from the guest\n", 'C speaks: B hears');
        is(chat_quiet($c{A}, 0.3), '', 'A did not hear itself');
        is(chat_quiet($c{C}, 0.1), '', 'C did not hear itself');

        print { $c{B} } "/quit\n";
        is(chat_line($c{B}), "* bye\n", 'B: /quit is answered');
        my $rest = read_until_eof($c{B}, 3);
        $rest =~ s/^\* \d+ in the room\n//mg;
        ok(got_eof($c{B}), 'B: then the connection is closed');
        is($rest, '', 'B: nothing more');
        print { $c{A} } "still here\n";
        is(chat_line($c{C}), "alice: still here\n", 'after /quit: the room goes on');
        is(chat_quiet($c{A}, 0.2), '', 'A did not hear itself');

        if ($script eq 'chat-in-mojo.pl') {
            TestISD::wait_until(sub { chat_quiet($_, 0.05) for values %c; ${*{$c{A}}}{room} }, 3);
            ok(${*{$c{A}}}{room}, "the Mojo timer's broadcast came");
        }

        # silent from now on: dropped after IDLE seconds
        my $t0 = now();
        for my $who (qw(A C)) {
            my $got = read_until_eof($c{$who}, $IDLE + 4);
            $got =~ s/^\* \d+ in the room\n//mg;
            ok(got_eof($c{$who}), "$who: dropped when idle");
            is($got, '', "$who: nothing else came");
        }
        cmp_ok(now() - $t0, '<=', $IDLE + 4, "within ${IDLE}s and some");
        1;
    };
    if (!$ok) {
        fail("$script: the chat");
        diag $@;
    }

    kill 'TERM', -$pid;
    my $st = reap($pid, 3);
    if (!defined $st and $script eq 'chat-netserver.pl') {
        # IO::Multiplex restarts a select that a signal interrupted without
        # letting Net::Server look at its signals: the TERM is acted upon at
        # the next event (see the cookbook).  A connection is one.
        diag 'chat-netserver.pl: TERM waits for the next event; connecting';
        try_client($port, timeout => 1);
        $st = reap($pid, 3);
    }
    ok(defined $st, 'TERM stops it') and
    ok(($st & 127) == 15 || $st == 0, 'exit 0, or killed by that TERM')
        or diag TestProc::describe($st);
    if (!defined $st) {
        kill 'KILL', -$pid;
        reap($pid, 3);
    }
    my $out = TestProc::slurp($log);
    diag "$script said:\n$out" if length $out and !Test::More->builder->is_passing;
}

# installed($module): found in @INC (not loaded: POE, say, would complain
# at exit that its loop never ran)
sub installed {
    (my $file = "$_[0].pm") =~ s{::}{/}g;
    return scalar grep { !ref && -f "$_/$file" } @INC;
}

for my $s (@SCRIPTS) {
    my ($script, @mods) = @$s;
    my @missing = grep { !installed($_) } @mods;
    SKIP: {
        skip "$script: @missing not installed", 1 if @missing;
        subtest $script => sub { chat_test($script) };
    }
}

done_testing;
