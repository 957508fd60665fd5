# The per-agent log writer that tmux `pipe-pane -O` starts: the same program as
# logpipe.py (same arguments, same bytes on disk), in Perl because it starts in
# about 2 ms where Python takes about 16 ms, and a swarm starts one per agent.
# Core Perl only, so it runs wherever /usr/bin/perl does. No `use` on the start-up
# path (`use strict` costs 0.4 ms, Fcntl 1.5 ms): the tests compile it with -Mstrict -w.
# Keep the two in step: tests/test_logpipe.py runs every case against both.

my $READ_SIZE = 65536;
my $MARKER_PREFIX = '--- swarm-launch: ';
my $USAGE = "usage: logpipe.pl LOG_PATH --max-bytes N --keep K --agent ID --pane %N\n";

my ($path, %opt) = parse_args(@ARGV);
my ($max_bytes, $keep) = ($opt{'--max-bytes'}, $opt{'--keep'});
$max_bytes = 1 if $max_bytes < 1;
$keep = 0 if $keep < 0;
my ($fd, $idx, $size, $last_second);

sub parse_args {
    my @argv = @_;
    die $USAGE if !@argv || $argv[0] =~ /^--/;
    my $log = shift @argv;
    my %options = ('--max-bytes' => 52428800, '--keep' => 3, '--agent' => '?', '--pane' => '?');
    while (@argv) {
        die $USAGE if @argv < 2 || !exists $options{$argv[0]};
        my ($name, $value) = splice(@argv, 0, 2);
        $options{$name} = $value;
    }
    for my $number ('--max-bytes', '--keep') {
        die $USAGE if $options{$number} !~ /^-?\d+\z/;
    }
    return ($log, %options);
}

sub open_append {
    my ($file) = @_;
    open(my $handle, '>>:raw', $file) or die "logpipe: cannot open $file: $!\n";  # umask 077
    return $handle;
}

sub open_log {
    $fd = open_append($path);
    $idx = open_append("$path.idx");
    $size = (stat $fd)[7];
    $last_second = -1;
}

sub ends_with_newline {
    return 1 if $size == 0;
    open(my $reader, '<:raw', $path) or return 1;
    seek($reader, $size - 1, 0);
    read($reader, my $last, 1);
    return defined $last && $last eq "\n";
}

sub write_all {
    my ($handle, $data) = @_;
    my $offset = 0;
    while ($offset < length $data) {
        my $written = syswrite($handle, $data, length($data) - $offset, $offset);
        die "logpipe: write $path: $!\n" if !defined $written;
        $offset += $written;
    }
    return $offset;
}

sub append {
    my ($data) = @_;
    my $second = time;
    if ($second != $last_second) {
        $last_second = $second;
        write_all($idx, "$second $size\n");
    }
    $size += write_all($fd, $data);
}

# Append, rotating between lines when the data would pass max_bytes.
sub write_log {
    my ($data) = @_;
    while (length $data) {
        my $room = $max_bytes - $size;
        if (length($data) <= $room) {
            append($data);
            return;
        }
        my $cut = $room > 0 ? rindex(substr($data, 0, $room), "\n") + 1 : 0;
        $cut = $room if $cut == 0 && $size == 0;  # one line longer than the cap: split it
        if ($cut) {
            append(substr($data, 0, $cut));
            $data = substr($data, $cut);
        }
        rotate();
    }
}

# log -> log.1 -> ... -> log.K (the oldest dropped); then a fresh, empty log.
sub rotate {
    close $fd;
    close $idx;
    shift_files('');
    shift_files('.idx');  # LOG.N.idx goes with LOG.N
    open_log();
}

sub shift_files {
    my ($suffix) = @_;
    if ($keep == 0) {
        unlink "$path$suffix";
        return;
    }
    for (my $number = $keep - 1; $number > 0; $number--) {
        my $older = "$path.$number$suffix";
        rename($older, "$path." . ($number + 1) . $suffix) if -e $older;
    }
    rename("$path$suffix", "$path.1$suffix");  # gone (removed by someone): nothing to keep
}

sub marker {
    my ($sec, $min, $hour, $day, $month, $year) = gmtime(time);
    return sprintf("%sagent %s started %04d-%02d-%02dT%02d:%02d:%02dZ (pane %s) ---\n",
                   $MARKER_PREFIX, $opt{'--agent'}, $year + 1900, $month + 1, $day,
                   $hour, $min, $sec, $opt{'--pane'});
}

# tmux may signal us when the pane goes; what is already in the pipe still gets written.
$SIG{TERM} = $SIG{HUP} = sub {
    require Fcntl;
    my $flags = fcntl(STDIN, Fcntl::F_GETFL(), 0);
    fcntl(STDIN, Fcntl::F_SETFL(), $flags | Fcntl::O_NONBLOCK()) if defined $flags;
};

umask 077;

sub make_dirs {
    my ($dir) = @_;
    return if $dir eq '' || -d $dir;
    (my $parent = $dir) =~ s{/[^/]*\z}{};
    make_dirs($parent) if $parent ne $dir;
    mkdir $dir, 0700;
}

(my $dir = $path) =~ s{/[^/]*\z}{};
make_dirs($dir) if $dir ne $path;
open_log();
write_log((ends_with_newline() ? '' : "\n") . marker());
while (1) {
    my $count = sysread(STDIN, my $chunk, $READ_SIZE);
    if (!defined $count) {
        next if $! == 4;  # EINTR (4 on Linux and the BSDs): the handler ran, read on
        last;  # EAGAIN while draining after a signal: nothing is left
    }
    last if $count == 0;
    write_log($chunk);
}
close $fd;
close $idx;
exit 0;
