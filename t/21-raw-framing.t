#!perl
# framing => 'raw': data fires whenever bytes arrive, $_[2] holds them all,
# sysread/read return buffered bytes; binary round trips.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use TestISD;
use Test::More;

my $mode = 'echo';

sub data {
    my ($io, $d, $buf) = @_;
    if ($mode eq 'echo') {
        my $n = $io->sysread(my $got, 1 << 20);
        log_event('data arg=%d sysread=%d same=%d', length($buf // ''), $n // -1,
                  (defined $buf && defined $got && $buf eq $got) ? 1 : 0);
        if (defined $got && $got eq 'MODE read') { $mode = 'read'; $io->print("ok\n"); return 1 }
        if (defined $got && $got eq 'MODE ignore') { $mode = 'ignore'; $io->print("ok\n"); return 1 }
        if (defined $got && $got eq 'MODE plain') { $mode = 'plain'; $io->print("ok\n"); return 1 }
        $io->print("[$got]") if $n;
    }
    elsif ($mode eq 'plain') {
        my $n = $io->sysread(my $got, 1 << 22);
        log_event('plain arg=%d sysread=%d same=%d', length($buf // ''), $n // -1,
                  (defined $buf && defined $got && $buf eq $got) ? 1 : 0);
        $io->print($got) if $n;
    }
    elsif ($mode eq 'read') {
        my $n = $io->read(my $got, 10);
        $io->print("read $n <$got>\n");
        $mode = 'echo';
    }
    elsif ($mode eq 'ignore') {
        log_event('ignored %d', length($buf // ''));
        $mode = 'echo' if defined $buf && $buf =~ /END/;
    }
    1;
}

for my $be (backends()) {
    isd_subtest "backend $be" => sub {
        my $srv = start_server(backend => $be, timeout => 1, framing => 'raw', read_timeout => 2,
                               callback => { data => \&data,
                                             remove => sub { log_event('remove') } });
        my $c = client($srv);

        print $c "abc";
        is(read_n($c, 5), '[abc]', 'data fires for bytes without a newline');
        ok($srv->wait_event(qr/^data /), 'data event');
        is(($srv->grep_events(qr/^data /))[0], 'data arg=3 sysread=3 same=1',
           '$_[2] holds the buffered bytes; sysread returns the same');

        print $c "line\nmore\n";
        is(read_n($c, 12), "[line\nmore\n]", 'newlines are not framing');

        # read($io, $buf, 10) waits for the rest
        print $c "MODE read";
        is(read_line($c), "ok\n", 'read mode');
        print $c "12345";
        Time::HiRes::sleep(0.2);
        print $c "67890";
        is(read_line($c, 3), "read 10 <1234567890>\n", 'read(10) collects bytes across packets');

        # a callback that reads nothing: the bytes are dropped, no busy loop
        print $c "MODE ignore";
        is(read_line($c), "ok\n", 'ignore mode');
        print $c "x";
        Time::HiRes::sleep(0.3);
        is($srv->count(qr/^ignored /), 1, 'unread bytes do not make data fire again');
        print $c "END";
        ok($srv->wait_event(qr/^ignored 3$/), 'dropped bytes are not delivered again with the next ones');
        Time::HiRes::sleep(0.05);

        # binary round trip, 1 MiB of pseudo-random bytes, echoed as is
        print $c "MODE plain";
        is(read_line($c), "ok\n", 'plain echo mode');
        my $seed = 12345;
        my $bin = pack 'N*', map { $seed = ($seed * 1103515245 + 12345) % 2147483648 } 1 .. 262144;
        my $t0 = now();
        is(send_all($c, $bin, 10), length $bin, 'sent 1 MiB of binary');
        my $back = read_n($c, length $bin, 10);
        is(length $back, length $bin, 'same length back');
        ok($back eq $bin, 'raw binary round trip byte-exact');
        diag(sprintf 'binary round trip %.2fs', now() - $t0) if $ENV{TEST_VERBOSE};
        ok($srv->count(qr/^plain /) >= 1, 'data fired (' . $srv->count(qr/^plain /) . ' times)');
        is($srv->count(qr/^plain .* same=0/), 0, '$_[2] always equals what sysread returns');

        shutdown($c, 1);
        read_until_eof($c, 3);
        ok(got_eof($c), 'EOF closes');
        ok($srv->wait_event(qr/^remove$/), 'remove at EOF');
        Time::HiRes::sleep(0.1);
        is($srv->count(qr/^remove$/), 1, 'remove once');
        close $c;
        is($srv->stop, 15, 'SIGTERM still ends the server (no signal left blocked)');
    };
}

done_testing;
