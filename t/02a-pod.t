#!/usr/bin/perl
# The POD of every module: no errors and no warnings from Pod::Checker
# (podchecker at its default level), and Test::Pod's verdict too where it is installed.
use strict;
use warnings;
use Test::More;
use File::Find ();
use Pod::Checker ();

my @files;
File::Find::find({ no_chdir => 1, wanted => sub { push @files, $_ if /\.p(?:m|od)\z/ } }, 'lib');
@files = sort @files;
ok(@files >= 4, 'the modules are found (' . scalar(@files) . ')');

for my $f (@files) {
    my $out = '';
    open my $fh, '>', \$out or die;
    my $c = Pod::Checker->new(-warnings => 1, -quiet => 0);
    $c->parse_from_file($f, $fh);
    is($c->num_errors, 0, "$f: no POD errors") or diag($out);
    is($c->num_warnings, 0, "$f: no POD warnings") or diag($out);
}

SKIP: {
    skip 'Test::Pod is not installed (Debian package libtest-pod-perl)', 1
        unless eval { require Test::Pod; Test::Pod->VERSION(1.22); 1 };
    Test::Pod::pod_file_ok($_) for @files;
}

done_testing;
