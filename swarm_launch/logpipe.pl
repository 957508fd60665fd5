# The per-agent log writer that tmux `pipe-pane -O` starts: the same program as
# logpipe.py (same arguments, same bytes on disk), in Perl because it starts in
# about 2 ms where Python takes about 16 ms, and a swarm starts one per agent.
# Core Perl only, so it runs wherever /usr/bin/perl does. No `use` on the start-up
# path (`use strict` costs 0.4 ms, Fcntl 1.5 ms): the tests compile it with -Mstrict -w.
# Keep the two in step: tests/test_logpipe.py runs every case against both.
# A failed write or open (a full disk, a removed directory) does not end it: it reads on,
# drops and counts the output, retries on the first input of a later second, and once the
# log takes writes again, first notes the loss in it (loss_marker). Only EOF ends it.

my $READ_SIZE = 65536;
my $MARKER_PREFIX = '--- swarm-launch: ';
my $USAGE = "usage: logpipe.pl LOG_PATH --max-bytes N --keep K --agent ID --pane %N\n";

my ($path, %opt) = parse_args(@ARGV);
my ($max_bytes, $keep) = ($opt{'--max-bytes'}, $opt{'--keep'});
$max_bytes = 1 if $max_bytes < 1;
$keep = 0 if $keep < 0;
(my $dir = $path) =~ s{/[^/]*\z}{};
my ($fd, $idx, $size, $last_second);
# While the log fails: the first error's text and second, the latest failure's second, and
# the bytes of output dropped; $done: the bytes of the current data written so far.
my ($error, $since, $failed_at, $lost, $done) = (undef, 0, 0, 0, 0);

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

# Never through a symlink: one in AI_SWARM_DIR would send the agent's output to its
# target, wherever that is and whoever may read it there. A check, not O_NOFOLLOW: Fcntl,
# the only portable source of its value, would double this writer's start-up. The text
# is strerror(ELOOP), what the other writers report.
sub open_append {
    my ($file) = @_;
    die "Too many levels of symbolic links\n" if -l $file;
    open(my $handle, '>>:raw', $file) or die "$!\n";  # umask 077
    # One made readable by others (a chmod, an older version) is the owner's to tighten
    # (never another user's file, root or not): else its rotated copies keep the mode.
    my ($mode, $owner) = (stat $handle)[2, 4];
    chmod 0600, $handle if ($mode & 07777) != 0600 && $owner == $>;
    return $handle;
}

# (Re)open the log and its index, making the directory again if it has gone.
sub open_log {
    close_log();
    make_dirs($dir) if $dir ne $path;
    $fd = open_append($path);
    $idx = open_append("$path.idx");
    $size = (stat $fd)[7];
    $last_second = -1;
}

sub close_log {
    close $fd if $fd;
    close $idx if $idx;
    ($fd, $idx) = (undef, undef);
}

sub ends_with_newline {
    return 1 if $size == 0 || -l $path;
    open(my $reader, '<:raw', $path) or return 1;
    seek($reader, $size - 1, 0);
    read($reader, my $last, 1);
    return defined $last && $last eq "\n";
}

# Dies with the error's text; what was written is already counted in $size and $done.
sub write_all {
    my ($handle, $data, $counted) = @_;
    my $offset = 0;
    while ($offset < length $data) {
        my $written = syswrite($handle, $data, length($data) - $offset, $offset);
        if (!defined $written) {
            next if $! == 4;  # EINTR, as Python's os.write retries it
            die "$!\n";
        }
        $offset += $written;
        ($size, $done) = ($size + $written, $done + $written) if $counted;
    }
}

# The index line after the data: no entry for bytes that never reached the log.
sub append {
    my ($data) = @_;
    my ($second, $start) = (time, $size);
    write_all($fd, $data, 1);
    if ($second != $last_second) {
        $last_second = $second;
        write_all($idx, "$second $start\n");
    }
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

# log -> log.1 -> ... -> log.K (the oldest dropped); then a fresh, empty log. Dies if the
# log could not be moved aside (writing on would rotate again and again, forever).
sub rotate {
    my ($device, $inode) = (stat $fd)[0, 1];  # still open: its inode cannot be reused
    my $error = shift_files('');
    shift_files('.idx');  # LOG.N.idx goes with LOG.N
    my ($now_device, $now_inode) = stat $path;
    die(($error // 'File exists') . "\n")
        if defined $now_inode && $now_device == $device && $now_inode == $inode;
    open_log();
}

# The error of moving (or removing) LOG$suffix itself, if that failed.
sub shift_files {
    my ($suffix) = @_;
    if ($keep == 0) {
        return unlink("$path$suffix") ? undef : "$!";
    }
    for (my $number = $keep - 1; $number > 0; $number--) {
        my $older = "$path.$number$suffix";
        rename($older, "$path." . ($number + 1) . $suffix) if -e $older;
    }
    # Gone (removed by someone): nothing to keep, and the fresh file is created anyway.
    return rename("$path$suffix", "$path.1$suffix") ? undef : "$!";
}

sub stamp {
    my ($sec, $min, $hour, $day, $month, $year) = gmtime($_[0]);
    return sprintf("%04d-%02d-%02dT%02d:%02d:%02dZ", $year + 1900, $month + 1, $day,
                   $hour, $min, $sec);
}

sub marker {
    return sprintf("%sagent %s started %s (pane %s) ---\n",
                   $MARKER_PREFIX, $opt{'--agent'}, stamp(time), $opt{'--pane'});
}

sub loss_marker {
    my ($now) = @_;
    return sprintf("%sagent %s log writing failed from %s to %s (%s); %d bytes lost ---\n",
                   $MARKER_PREFIX, $opt{'--agent'}, stamp($since), stamp($now), $error, $lost);
}

# Write $line on a line of its own into a freshly (re)opened log; 0 (and failing) on an error.
sub write_line {
    my ($line) = @_;
    return 1 if eval {
        open_log();
        write_log((ends_with_newline() ? '' : "\n") . $line);
        1;
    };
    failed($@);
    return 0;
}

sub failed {
    my ($text) = @_;
    chomp $text;
    close_log();
    $failed_at = time;
    ($error, $since) = ($text, $failed_at) if !defined $error;
}

# The agent's output. While the log fails, it is dropped and counted; the first data in a
# later second than the latest failure retries: on success, the loss is noted first.
sub output {
    my ($data) = @_;
    if (defined $error) {
        my $now = time;
        if ($now == $failed_at || !write_line(loss_marker($now))) {
            $lost += length $data;
            return;
        }
        ($error, $lost) = (undef, 0);
    }
    $done = 0;
    return if eval { write_log($data); 1 };
    $lost += length($data) - $done;
    failed($@);
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

write_line(marker());
while (1) {
    my $count = sysread(STDIN, my $chunk, $READ_SIZE);
    if (!defined $count) {
        next if $! == 4;  # EINTR (4 on Linux and the BSDs): the handler ran, read on
        last;  # EAGAIN while draining after a signal: nothing is left
    }
    last if $count == 0;
    output($chunk);
}
close_log();
exit 0;
