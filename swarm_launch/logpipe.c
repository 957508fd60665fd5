/*
 * The per-agent log writer that tmux `pipe-pane -O` starts: the same program as
 * logpipe.pl and logpipe.py (same arguments, same bytes on disk), in C because a swarm
 * starts one per agent and this one starts in about 0.3 ms, where Perl takes 2 ms.
 * swarm-launch compiles it on first use when a C compiler is found
 * (logpipe.native_writer); without one, the Perl writer serves.
 * Keep the three in step: tests/test_logpipe.py runs every case against each.
 * Plain C99 and POSIX, no library beyond libc.
 *
 * A failed write or open (a full disk, a removed directory) does not end it: it reads on,
 * drops and counts the output, retries on the first input of a later second, and once the
 * log takes writes again, first notes the loss in it (loss_marker). Only EOF ends it.
 */
#define _POSIX_C_SOURCE 200809L
#define _FILE_OFFSET_BITS 64 /* logs past 2 GiB on 32-bit systems too */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define READ_SIZE 65536
#define STAMP_SIZE 80 /* room for any int fields: no truncation warning */
#define MARKER_PREFIX "--- swarm-launch: "
static const char USAGE[] =
    "usage: logpipe LOG_PATH --max-bytes N --keep K --agent ID --pane %N\n";

static const char *path, *agent = "?", *pane = "?";
static char *dir;  /* NULL when the path has no directory part */
static long long max_bytes = 52428800, keep = 3;
static int fd = -1, idx = -1;
static long long size;     /* of the open log */
static long long done;     /* bytes of the current data written so far */
static time_t last_second; /* of the latest index entry */

/* While the log fails: the first error's text and second, the latest failure's second,
 * and the bytes of output dropped. */
static int failing;
static char error[256];
static time_t since, failed_at;
static long long lost;
static int last_errno; /* of the latest failed call */

static void usage(void) {
    fputs(USAGE, stderr);
    exit(1);
}

/* printf into a fresh buffer; the writer cannot go on without memory. */
static char *format(size_t *length, const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    int needed = vsnprintf(NULL, 0, fmt, args);
    va_end(args);
    char *text = malloc((size_t)needed + 1);
    if (text == NULL) {
        perror("logpipe");
        exit(1);
    }
    va_start(args, fmt);
    vsnprintf(text, (size_t)needed + 1, fmt, args);
    va_end(args);
    if (length != NULL)
        *length = (size_t)needed;
    return text;
}

static long long number(const char *text) {
    const char *digit = text + (*text == '-');
    if (*digit == '\0')
        usage();
    for (; *digit; digit++)
        if (*digit < '0' || *digit > '9')
            usage();
    return strtoll(text, NULL, 10);
}

static void parse_args(int argc, char **argv) {
    if (argc < 2 || strncmp(argv[1], "--", 2) == 0)
        usage();
    path = argv[1];
    for (int i = 2; i < argc; i += 2) {
        if (i + 1 >= argc)
            usage();
        const char *name = argv[i], *value = argv[i + 1];
        if (strcmp(name, "--max-bytes") == 0)
            max_bytes = number(value);
        else if (strcmp(name, "--keep") == 0)
            keep = number(value);
        else if (strcmp(name, "--agent") == 0)
            agent = value;
        else if (strcmp(name, "--pane") == 0)
            pane = value;
        else
            usage();
    }
    if (max_bytes < 1)
        max_bytes = 1;
    if (keep < 0)
        keep = 0;
    const char *slash = strrchr(path, '/');
    if (slash != NULL)
        dir = format(NULL, "%.*s", (int)(slash - path), path);
}

static int fail(void) {
    last_errno = errno;
    return -1;
}

static void make_dirs(const char *directory) {
    struct stat info;
    if (*directory == '\0' || (stat(directory, &info) == 0 && S_ISDIR(info.st_mode)))
        return;
    const char *slash = strrchr(directory, '/');
    if (slash != NULL) {
        char *parent = format(NULL, "%.*s", (int)(slash - directory), directory);
        make_dirs(parent);
        free(parent);
    }
    mkdir(directory, 0700);
}

#ifndef O_NOFOLLOW
#define O_NOFOLLOW 0
#endif

/* Never through a symlink: one in AI_SWARM_DIR would send the agent's output to its
 * target, wherever that is and whoever may read it there (ELOOP: a failure). */
static int open_append(const char *file) {
    int handle = open(file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    /* One made readable by others (a chmod, an older version) is the owner's to tighten
     * (never another user's file, root or not): else its rotated copies keep the mode. */
    struct stat info;
    if (handle >= 0 && fstat(handle, &info) == 0 && (info.st_mode & 07777) != 0600 &&
        info.st_uid == geteuid())
        fchmod(handle, 0600);
    return handle;
}

static void close_log(void) {
    if (fd >= 0)
        close(fd);
    if (idx >= 0)
        close(idx);
    fd = idx = -1;
}

/* (Re)open the log and its index, making the directory again if it has gone. */
static int open_log(void) {
    close_log();
    if (dir != NULL)
        make_dirs(dir);
    if ((fd = open_append(path)) < 0)
        return fail();
    char *idx_path = format(NULL, "%s.idx", path);
    idx = open_append(idx_path);
    free(idx_path);
    struct stat info;
    if (idx < 0 || fstat(fd, &info) != 0)
        return fail();
    size = (long long)info.st_size;
    last_second = -1;
    return 0;
}

static int ends_with_newline(void) {
    if (size == 0)
        return 1;
    int reader = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (reader < 0)
        return 1;
    char last;
    ssize_t count = pread(reader, &last, 1, (off_t)(size - 1));
    close(reader);
    return count == 1 && last == '\n';
}

/* What was written is counted in `size` and `done` even when it then fails. */
static int write_all(int handle, const char *data, size_t length, int counted) {
    size_t offset = 0;
    while (offset < length) {
        ssize_t written = write(handle, data + offset, length - offset);
        if (written < 0) {
            if (errno == EINTR)
                continue;
            return fail();
        }
        offset += (size_t)written;
        if (counted) {
            size += written;
            done += written;
        }
    }
    return 0;
}

/* The index line after the data: no entry for bytes that never reached the log. */
static int append(const char *data, size_t length) {
    time_t second = time(NULL);
    long long start = size;
    if (write_all(fd, data, length, 1) != 0)
        return -1;
    if (second != last_second) {
        last_second = second;
        char entry[64];
        int entry_length = snprintf(entry, sizeof entry, "%lld %lld\n",
                                    (long long)second, start);
        return write_all(idx, entry, (size_t)entry_length, 0);
    }
    return 0;
}

/* 0, or the errno of moving (or removing) LOG+suffix itself. */
static int shift_files(const char *suffix) {
    char *current = format(NULL, "%s%s", path, suffix);
    int error = 0;
    if (keep == 0) {
        if (unlink(current) != 0)
            error = errno;
        free(current);
        return error;
    }
    struct stat info;
    for (long long number = keep - 1; number > 0; number--) {
        char *older = format(NULL, "%s.%lld%s", path, number, suffix);
        if (stat(older, &info) == 0) {
            char *newer = format(NULL, "%s.%lld%s", path, number + 1, suffix);
            rename(older, newer);
            free(newer);
        }
        free(older);
    }
    char *first = format(NULL, "%s.1%s", path, suffix);
    /* Gone (removed by someone): nothing to keep, and the fresh file is created anyway. */
    if (rename(current, first) != 0)
        error = errno;
    free(first);
    free(current);
    return error;
}

/* log -> log.1 -> ... -> log.K (the oldest dropped); then a fresh, empty log. Fails if the
 * log could not be moved aside (writing on would rotate again and again, forever). */
static int rotate(void) {
    struct stat before, now;
    if (fstat(fd, &before) != 0) /* still open: its inode cannot be reused meanwhile */
        return fail();
    int error = shift_files("");
    shift_files(".idx"); /* LOG.N.idx goes with LOG.N */
    if (stat(path, &now) == 0 && now.st_dev == before.st_dev && now.st_ino == before.st_ino) {
        errno = error ? error : EEXIST;
        return fail();
    }
    return open_log();
}

/* Append, rotating between lines when the data would pass max_bytes. */
static int write_log(const char *data, size_t length) {
    while (length > 0) {
        long long room = max_bytes - size;
        if ((long long)length <= room)
            return append(data, length);
        size_t cut = 0;
        for (long long at = room - 1; at >= 0; at--)
            if (data[at] == '\n') {
                cut = (size_t)at + 1;
                break;
            }
        if (cut == 0 && size == 0)
            cut = (size_t)room; /* one line longer than the cap: split it */
        if (cut > 0) {
            if (append(data, cut) != 0)
                return -1;
            data += cut;
            length -= cut;
        }
        if (rotate() != 0)
            return -1;
    }
    return 0;
}

static void stamp(char out[STAMP_SIZE], time_t when) {
    struct tm parts;
    gmtime_r(&when, &parts);
    snprintf(out, STAMP_SIZE, "%04d-%02d-%02dT%02d:%02d:%02dZ", parts.tm_year + 1900,
             parts.tm_mon + 1, parts.tm_mday, parts.tm_hour, parts.tm_min, parts.tm_sec);
}

static void failed(void) {
    close_log();
    failed_at = time(NULL);
    if (!failing) {
        failing = 1;
        since = failed_at;
        snprintf(error, sizeof error, "%s", strerror(last_errno));
    }
}

/* Write `line` on a line of its own into a freshly (re)opened log; 0 (and failing) on an
 * error. */
static int write_line(const char *line) {
    if (open_log() != 0) {
        failed();
        return 0;
    }
    size_t length;
    char *text = format(&length, "%s%s", ends_with_newline() ? "" : "\n", line);
    int written = write_log(text, length) == 0;
    free(text);
    if (!written)
        failed();
    return written;
}

static int write_loss_marker(time_t now) {
    char from[STAMP_SIZE], to[STAMP_SIZE];
    stamp(from, since);
    stamp(to, now);
    char *line = format(NULL, "%sagent %s log writing failed from %s to %s (%s); "
                        "%lld bytes lost ---\n", MARKER_PREFIX, agent, from, to, error, lost);
    int written = write_line(line);
    free(line);
    return written;
}

/* The agent's output. While the log fails, it is dropped and counted; the first data in a
 * later second than the latest failure retries: on success, the loss is noted first. */
static void output(const char *data, size_t length) {
    if (failing) {
        time_t now = time(NULL);
        if (now == failed_at || !write_loss_marker(now)) {
            lost += (long long)length;
            return;
        }
        failing = 0;
        lost = 0;
    }
    done = 0;
    if (write_log(data, length) == 0)
        return;
    lost += (long long)length - done;
    failed();
}

/* tmux may signal us when the pane goes; what is already in the pipe still gets written. */
static void drain(int signum) {
    (void)signum;
    int saved = errno;
    int flags = fcntl(STDIN_FILENO, F_GETFL);
    if (flags != -1)
        fcntl(STDIN_FILENO, F_SETFL, flags | O_NONBLOCK);
    errno = saved;
}

int main(int argc, char **argv) {
    parse_args(argc, argv);
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = drain; /* no SA_RESTART: a blocked read returns EINTR */
    sigemptyset(&action.sa_mask);
    sigaction(SIGTERM, &action, NULL);
    sigaction(SIGHUP, &action, NULL);
    umask(077);

    char started[STAMP_SIZE];
    stamp(started, time(NULL));
    char *marker = format(NULL, "%sagent %s started %s (pane %s) ---\n", MARKER_PREFIX,
                          agent, started, pane);
    write_line(marker);
    free(marker);

    static char chunk[READ_SIZE];
    for (;;) {
        ssize_t count = read(STDIN_FILENO, chunk, sizeof chunk);
        if (count < 0) {
            if (errno == EINTR)
                continue; /* the handler ran: read on */
            break;        /* EAGAIN while draining after a signal: nothing is left */
        }
        if (count == 0)
            break;
        output(chunk, (size_t)count);
    }
    close_log();
    return 0;
}
