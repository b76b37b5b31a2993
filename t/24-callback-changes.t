#!/usr/bin/perl
# Callbacks may be changed while the server runs, in every way a script
# might: callback(), a direct store into $daemon->{callback}, delete, or a
# whole new hash.  Each change counts from the next line on.
use strict;
use warnings;
use Test::More;
use lib 't/lib';
use TestISD;

sub data_cb {
    my ($io, $d, $line) = @_;
    chomp $line;
    my $cb = $d->{callback};
    if    ($line eq 'method') { $d->callback(data => sub { $_[0]->print("via method\n"); 1 }) }
    elsif ($line eq 'store')  { $cb->{data} = sub { $_[0]->print("direct store\n"); 1 } }
    $io->print("original: $line\n");
    return 1;
}

for my $be (backends()) {
    isd_subtest "callbacks changed while running, backend $be" => sub {
        my $srv = start_server(backend => $be, callback => { data => \&data_cb });
        my $c = client($srv);
        print $c "x\n";
        is(read_line($c), "original: x\n", 'the original data callback');
        print $c "method\n";
        is(read_line($c), "original: method\n", 'still the original for that line');
        print $c "y\n";
        is(read_line($c), "via method\n", 'callback() took effect');
        $srv->stop;
    };

    isd_subtest "direct stores, delete and a new hash, backend $be" => sub {
        my $srv = start_server(backend => $be, callback => {
            data => sub {
                my ($io, $d, $line) = @_;
                chomp $line;
                my $cb = $d->{callback};
                $cb->{data} = sub { $_[0]->print("stored: $_[2]"); 1 }
                    if $line eq 'store';
                $io->print("first: $line\n");
                1;
            },
        });
        my $c = client($srv);
        print $c "store\n";
        is(read_line($c), "first: store\n", 'before the store');
        print $c "a\n";
        is(read_line($c), "stored: a\n", 'a direct store into {callback}{data} took effect');

        print $c "b\n";
        is(read_line($c), "stored: b\n", 'still the stored one');
        $srv->stop;
    };

    isd_subtest "delete and replace, backend $be" => sub {
        my $srv = start_server(backend => $be, callback => {
            data => sub {
                my ($io, $d, $line) = @_;
                chomp $line;
                if ($line eq 'del') {
                    delete $d->{callback}{data};
                    $io->print("deleting\n");
                } elsif ($line eq 'new') {
                    $d->{callback} = { data => sub { $_[0]->print("new hash: $_[2]"); 1 } };
                    $io->print("replacing\n");
                } else {
                    $io->print("old: $line\n");
                }
                1;
            },
            tick => sub {
                my ($undef, $d) = @_;
                # after a delete, put a data callback back from tick
                $d->{callback}{data} = sub { $_[0]->print("from tick: $_[2]"); 1 }
                    unless $d->{callback}{data};
            },
        }, timeout => 0.05);
        my $c = client($srv);
        print $c "a\n";
        is(read_line($c), "old: a\n", 'the original');
        print $c "del\n";
        is(read_line($c), "deleting\n", 'delete from inside');
        print $c "b\n";
        is(read_line($c), "from tick: b\n", 'the deleted key is looked up again (tick put one back)');
        my $d2 = client($srv);
        print $d2 "x\n";
        is(read_line($d2), "from tick: x\n", 'for every connection');
        $srv->stop;

        $srv = start_server(backend => $be, callback => {
            data => sub {
                my ($io, $d, $line) = @_;
                if ($line eq "new\n") {
                    $d->{callback} = { data => sub { $_[0]->print("new hash: $_[2]"); 1 } };
                }
                $io->print("old: $line");
                1;
            },
        });
        $c = client($srv);
        print $c "new\n";
        is(read_line($c), "old: new\n", 'the old hash answers the line that replaced it');
        print $c "z\n";
        is(read_line($c), "new hash: z\n", 'a whole new callback hash took effect');
        $srv->stop;
    };
}

done_testing;
