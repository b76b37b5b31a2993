#!perl
# A die in any callback never kills the server: the error callback gets the
# message (or it is warned), a die in data drops that connection (remove is
# called), a die in add drops it (no remove).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use TestISD;
use Test::More;

my $die_in_add = 0;
my $die_in_remove = 0;
my $die_in_tick = 0;
my $ticks = 0;

sub add {
    my ($io) = @_;
    log_event('add %s', $io->peerport);
    if ($die_in_add) { $die_in_add = 0; $io->print("dying in add\n"); die "add-died\n" }
    $io->print("welcome\n");
    1;
}

sub data {
    my ($io, $d) = @_;
    my $l = $io->getline;
    log_event('data %s %s', $io->peerport, $l);
    if ($l eq "die\n")       { die "data-died at user level\n" }
    if ($l eq "dieobj\n")    { die { code => 42 } }
    if ($l eq "dieremove\n") { $die_in_remove = 1; $io->print("ok\n"); return 1 }
    if ($l eq "dieadd\n")    { $die_in_add = 1; $io->print("ok\n"); return 1 }
    if ($l eq "dietick\n")   { $die_in_tick = 1; $io->print("ok\n"); return 1 }
    if ($l eq "ticks\n")     { $io->print("ticks=$ticks\n"); return 1 }
    $io->print("R:$l");
    1;
}

sub remove {
    my ($io) = @_;
    log_event('remove %s', $io->peerport);
    if ($die_in_remove) { $die_in_remove = 0; die "remove-died\n" }
}

sub tick {
    $ticks++;
    if ($die_in_tick) { $die_in_tick = 0; die "tick-died\n" }
}

sub error {
    my ($io, $d, $msg) = @_;
    log_event('error %s %s %s', defined $io ? $io->peerport : 'undef', ref $d, $msg);
}

for my $be (backends()) {
    isd_subtest "with an error callback, backend $be" => sub {
        my $srv = start_server(backend => $be, timeout => 0.05,
                               callback => { add => \&add, data => \&data, remove => \&remove,
                                             tick => \&tick, error => \&error });
        my $other = client($srv);
        is(read_line($other), "welcome\n", 'other client');

        # die in data
        my $c = client($srv);
        my $p = $c->sockport;
        read_line($c);
        print $c "die\nnever\n";
        is(read_until_eof($c, 3), '', 'die in data: connection dropped');
        ok(got_eof($c), 'closed');
        close $c;
        ok($srv->wait_event(qr/^error $p /), 'error callback called');
        my ($ev) = $srv->grep_events(qr/^error $p /);
        like($ev, qr/^error $p IO::Socket::INET::Daemon .*data-died at user level/s,
             'error gets ($io, $daemon, message including $@)');
        ok($srv->wait_event(qr/^remove $p$/), 'remove called for the dropped peer');
        is($srv->count(qr/^data $p never/), 0, 'no more data for it');
        print $other "x\n";
        is(read_line($other), "R:x\n", 'others still served');

        # die with a reference
        $c = client($srv);
        $p = $c->sockport;
        read_line($c);
        print $c "dieobj\n";
        read_until_eof($c, 3);
        ok(got_eof($c), 'die with a hashref: dropped');
        ok($srv->wait_event(qr/^error $p /), 'error callback called');
        ok($srv->wait_event(qr/^remove $p$/), 'remove called');
        close $c;

        # die in add
        print $other "dieadd\n";
        is(read_line($other), "ok\n", 'armed add');
        $c = client($srv);
        $p = $c->sockport;
        my $got = read_until_eof($c, 3);
        ok(got_eof($c), 'die in add: connection dropped');
        ok($srv->wait_event(qr/^error $p .*add-died/), 'error callback with the add message');
        close $c;
        Time::HiRes::sleep(0.2);
        is($srv->count(qr/^remove $p$/), 0, 'no remove for a peer whose add died');

        # die in remove
        print $other "dieremove\n";
        is(read_line($other), "ok\n", 'armed remove');
        $c = client($srv);
        $p = $c->sockport;
        read_line($c);
        close $c;
        ok($srv->wait_event(qr/^error $p .*remove-died/), 'die in remove reported');
        Time::HiRes::sleep(0.1);
        is($srv->count(qr/^remove $p$/), 1, 'remove called once despite dying');

        # die in tick
        print $other "dietick\n";
        is(read_line($other), "ok\n", 'armed tick');
        ok($srv->wait_event(qr/^error undef IO::Socket::INET::Daemon .*tick-died/s),
           'die in tick reported with $io undef');
        print $other "ticks\n";
        my ($t1) = (read_line($other) // '') =~ /ticks=(\d+)/;
        Time::HiRes::sleep(0.3);
        print $other "ticks\n";
        my ($t2) = (read_line($other) // '') =~ /ticks=(\d+)/;
        ok(defined $t2 && $t2 > $t1 + 1, 'ticks continue after a die in tick');

        print $other "y\n";
        is(read_line($other), "R:y\n", 'server survives everything');
        ok($srv->alive, 'alive');
        close $other;
        is($srv->stop, 15, 'SIGTERM still ends the server (no signal left blocked)');
    };

    isd_subtest "no error callback: warn, backend $be" => sub {
        my $srv = start_server(backend => $be, timeout => 1,
                               callback => { add => \&add, data => \&data, remove => \&remove });
        my $c = client($srv);
        my $p = $c->sockport;
        read_line($c);
        print $c "die\n";
        read_until_eof($c, 3);
        ok(got_eof($c), 'dropped');
        ok($srv->wait_event(qr/^remove $p$/), 'remove called');
        ok(wait_until(sub { $srv->stderr =~ /^IO::Socket::INET::Daemon: .*data-died at user level/m }, 3),
           'warned "IO::Socket::INET::Daemon: ..." with the message')
            or diag 'stderr: ' . $srv->stderr;
        close $c;
        my $o = client($srv);
        is(read_line($o), "welcome\n", 'still serving');
        close $o;
        ok($srv->alive, 'alive');
        is($srv->stop, 15, 'SIGTERM still ends the server (no signal left blocked)');
    };

    isd_subtest "die in the error callback, backend $be" => sub {
        my $srv = start_server(backend => $be, timeout => 1,
                               callback => { add => \&add, data => \&data,
                                             error => sub { log_event('error'); die "error-died\n" } });
        my $c = client($srv);
        read_line($c);
        print $c "die\n";
        read_until_eof($c, 3);
        ok(got_eof($c), 'dropped');
        ok($srv->wait_event(qr/^error$/), 'error callback ran');
        close $c;
        my $o = client($srv);
        is(read_line($o), "welcome\n", 'a die in error does not kill the server');
        close $o;
        ok($srv->alive, 'alive');
        is($srv->stop, 15, 'SIGTERM still ends the server (no signal left blocked)');
    };
}

# Several lines arriving in one read are delivered under one eval: a die
# in any of them drops that connection after the lines before it were
# answered; an answer whose overloaded bool dies counts as a die; each data
# call starts with $@ empty.
{
    package TestISD::BoolBomb;
    use overload 'bool' => sub { die "bool-died\n" }, fallback => 1;
    sub new { bless {}, shift }
}
{
    package TestISD::BoolFalse;
    use overload 'bool' => sub { 0 }, fallback => 1;
    sub new { bless {}, shift }
}

sub batch_data {
    my ($io) = @_;
    my $l = $io->getline;
    log_event('data %s %s', $io->peerport, $l);
    if ($l eq "die\n")      { die "data-died\n" }
    if ($l eq "boolbomb\n") { $io->print("bb\n"); return TestISD::BoolBomb->new }
    if ($l eq "boolfalse\n") { $io->print("bf\n"); return TestISD::BoolFalse->new }
    if ($l eq "seterr\n")   { eval { die "leftover\n" }; $io->print("set\n"); return 1 }
    if ($l eq "showerr\n")  { $io->print("err=[$@]\n"); return 1 }
    if ($l eq "sleep\n")    { Time::HiRes::sleep(0.4); $io->print("slept\n"); return 1 }
    $io->print("R:$l");
    1;
}

my $add_answer = '';
sub batch_add {
    my ($io) = @_;
    return TestISD::BoolBomb->new if $add_answer eq 'bomb';
    return TestISD::BoolFalse->new if $add_answer eq 'false';
    1;
}

for my $be (backends()) {
    isd_subtest "one read, several lines, backend $be" => sub {
        my $srv = start_server(backend => $be, timeout => 1,
                               callback => { add => \&batch_add, data => \&batch_data,
                                             remove => \&remove, error => \&error });
        my $other = client($srv);

        my $c = client($srv);
        my $p = $c->sockport;
        print $c "a\nb\ndie\nc\n";
        is(read_until_eof($c, 3), "R:a\nR:b\n", 'the lines before the die answered, then dropped');
        ok(got_eof($c), 'closed');
        close $c;
        ok($srv->wait_event(qr/^error $p .*data callback died: data-died/), 'the die reported');
        ok($srv->wait_event(qr/^remove $p$/), 'remove called');
        is($srv->count(qr/^data $p c/), 0, 'nothing delivered after the die');

        for my $case (["boolbomb\n", 'alone'], ["x\nboolbomb\ny\n", 'in a batch']) {
            $c = client($srv);
            $p = $c->sockport;
            print $c $case->[0];
            my $want = $case->[1] eq 'alone' ? "bb\n" : "R:x\nbb\n";
            is(read_until_eof($c, 3), $want, "answer with a dying bool, $case->[1]: dropped");
            ok(got_eof($c), 'closed');
            close $c;
            ok($srv->wait_event(qr/^error $p .*data callback died: bool-died/),
               'reported as a die in data');
            is($srv->count(qr/^data $p y/), 0, 'nothing delivered after it');
        }

        $c = client($srv);
        print $c "x\nboolfalse\ny\n";
        is(read_until_eof($c, 3), "R:x\nbf\n", 'an answer whose bool is false closes');
        close $c;

        $c = client($srv);
        print $c "seterr\nshowerr\n";
        is(read_line($c), "set\n", 'a callback leaving $@ set');
        is(read_line($c), "err=[]\n", 'the next call in the same read starts with $@ empty');
        close $c;

        print $other "x\n";
        is(read_line($other), "R:x\n", 'still serving');
        close $other;
        $srv->stop;
    };

    # The input of every connection that became readable together goes to
    # data under one eval: a die costs its own connection only, and those
    # after it in the same batch are still served, each with $@ empty.
    isd_subtest "dies on several connections in one batch, backend $be" => sub {
        my $srv = start_server(backend => $be, timeout => 1,
                               callback => { data => \&batch_data,
                                             remove => \&remove, error => \&error });
        my @die = map { client($srv) } 1 .. 3;
        my @ok  = map { client($srv) } 1 .. 3;
        my $blk = client($srv);
        for my $c (@die, @ok, $blk) {       # all accepted and served
            print $c "x\n";
            is(read_line($c), "R:x\n", 'served ' . $c->sockport);
        }
        print $blk "sleep\n";              # the loop blocks: the rest piles up
        Time::HiRes::sleep(0.1);
        for my $i (0 .. 2) {
            print { $die[$i] } "die\n";
            print { $ok[$i] } "showerr\n";
        }
        is(read_line($blk), "slept\n", 'the loop was blocked');
        for my $c (@ok) {
            is(read_line($c), "err=[]\n", 'a peer in the same batch is answered, $@ empty');
        }
        for my $c (@die) {
            my $p = $c->sockport;
            is(read_until_eof($c, 3), '', 'a dying peer gets nothing more');
            ok(got_eof($c), 'and is closed');
            ok($srv->wait_event(qr/^error $p .*data callback died: data-died/), 'its die reported');
            ok($srv->wait_event(qr/^remove $p$/), 'remove called');
        }
        for my $c (@ok, $blk) {
            print $c "y\n";
            is(read_line($c), "R:y\n", 'still served');
        }
        $srv->stop;
    };

    for my $answer (qw(bomb false)) {
        isd_subtest "add answering an object with a $answer bool, backend $be" => sub {
            $add_answer = $answer;
            my $srv = start_server(backend => $be, timeout => 1,
                                   callback => { add => \&batch_add, data => \&batch_data,
                                                 remove => \&remove, error => \&error });
            my $c = client($srv);
            my $p = $c->sockport;
            is(read_until_eof($c, 3), '', 'refused');
            ok(got_eof($c), 'closed');
            close $c;
            if ($answer eq 'bomb') {
                ok($srv->wait_event(qr/^error $p .*add callback died: bool-died/),
                   'reported as a die in add');
            }
            Time::HiRes::sleep(0.1);
            is($srv->count(qr/^remove $p$/), 0, 'no remove for a refused peer');
            ok($srv->alive, 'alive');
            is($srv->stop, 15, 'SIGTERM still ends it');
            $add_answer = '';
        };
    }
}

# A callback that is an object whose overloaded bool dies is no callback
# (0.04: a false callback is none); the server survives the die.
for my $be (backends()) {
    isd_subtest "a callback object whose bool dies, backend $be" => sub {
        my $bomb_add = bless sub { log_event('add-called'); 1 }, 'TestISD::BoolBomb';
        my $bomb_data = bless sub { log_event('data-called'); 1 }, 'TestISD::BoolBomb';
        my $srv = start_server(backend => $be, timeout => 1,
                               callback => { add => $bomb_add, data => \&batch_data });
        my $c = client($srv);
        print $c "x\n";
        is(read_line($c), "R:x\n", 'add whose bool dies: treated as none, connection accepted');
        is($srv->count(qr/^add-called$/), 0, 'and not called');
        close $c;
        $srv->stop;

        $srv = start_server(backend => $be, timeout => 1,
                            callback => { data => $bomb_data });
        $c = client($srv);
        print $c "y\n";
        is(read_for($c, 0.3), '', 'data whose bool dies: no answer');
        is($srv->count(qr/^data-called$/), 0, 'and not called');
        ok($srv->alive, 'alive');
        close $c;
        is($srv->stop, 15, 'SIGTERM still ends it');
    };
}

done_testing;
