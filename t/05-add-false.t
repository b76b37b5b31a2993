#!perl
# add returning false: what add printed is delivered, then the peer is closed;
# remove is never called, data never.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use TestISD;
use Test::More;

my $n = 0;
my $BIG = join '', map { sprintf "%07d\n", $_ } 0 .. 131071;    # 1 MiB

sub add {
    my ($io) = @_;
    $n++;
    log_event('add %d', $n);
    if ($n == 1) { $io->print("go away\n"); return 0 }
    if ($n == 2) { $io->print("go away\n"); return }            # undef / empty
    if ($n == 3) { $io->print("go away\n"); return '' }
    if ($n == 4) { $io->print($BIG); return 0 }                 # big output, then close
    $io->print("welcome\n");
    return 1;
}

for my $be (backends()) {
    isd_subtest "backend $be" => sub {
        $n = 0;
        my $srv = start_server(
            backend  => $be,
            timeout  => 1,
            callback => {
                add    => \&add,
                data   => sub { log_event('data'); $_[0]->print("R:" . $_[0]->getline); 1 },
                remove => sub { log_event('remove') },
            },
        );

        for my $how ('0', 'empty return', "''") {
            my $c = client($srv);
            print $c "hello\n";    # must never reach data
            is(read_line($c), "go away\n", "add returning $how: its output arrives");
            is(read_until_eof($c, 5), '', '... then EOF');
            ok(got_eof($c), '... connection closed');
            close $c;
        }

        my $c = client($srv);
        my $got = read_until_eof($c, 10);
        ok(got_eof($c), 'add printing 1 MiB and returning false: closed');
        is(length $got, length $BIG, '... after all 1 MiB');
        ok($got eq $BIG, '... byte-exact');
        close $c;

        $c = client($srv);
        is(read_line($c), "welcome\n", 'add returning true: served');
        print $c "x\n";
        is(read_line($c), "R:x\n", 'data works for accepted peers');
        close $c;
        ok($srv->wait_event(qr/^remove$/), 'remove for the accepted peer');
        Time::HiRes::sleep(0.2);

        is($srv->count(qr/^add /), 5, 'add called for each connection');
        is($srv->count(qr/^remove$/), 1, 'remove never called for refused peers');
        is($srv->count(qr/^data$/), 1, 'data never called for refused peers');
        ok($srv->alive, 'server alive');
        is($srv->stop, 15, 'SIGTERM still ends the server (no signal left blocked)');
    };
}

done_testing;
