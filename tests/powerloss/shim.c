/*
 * Power-loss recorder for tests/integration/power_loss.rs, loaded with LD_PRELOAD.
 *
 * It records what a power cut would keep of the tree under POWERLOSS_ROOT: at every fsync or
 * fdatasync of a file under the root it copies the file's bytes ("durable content" of that inode),
 * and at every fsync of a directory under the root it lists the directory's entries ("durable
 * names"). sync() and syncfs() record the whole tree. Everything else (write, pwrite, rename,
 * link, unlink, mkdir, sync_file_range, ...) is deliberately NOT intercepted: it only changes the
 * page cache, and a power cut is free to forget it. The test rebuilds the tree from the records
 * after SIGKILL (see power_loss.rs for the model).
 *
 * Records, in POWERLOSS_STATE (outside the root), each replaced by rename so a SIGKILL mid-copy
 * leaves the previous record whole:
 *   f-<dev>-<ino>   the file's bytes at its last fsync
 *   d-<dev>-<ino>   one line per entry at the directory's last fsync: "<kind> <dev> <ino> <mode> <name>"
 *                   with kind f (regular file), d (directory) or o (other)
 *   log             one line per recorded sync, for the test's report
 *
 * Build: cc -shared -fPIC -O2 -o shim.so shim.c -ldl
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char root[PATH_MAX];
static size_t root_len;
static char state[PATH_MAX];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_syncfs)(int);
static void (*real_sync)(void);

__attribute__((constructor)) static void init(void) {
    real_fsync = dlsym(RTLD_NEXT, "fsync");
    real_fdatasync = dlsym(RTLD_NEXT, "fdatasync");
    real_syncfs = dlsym(RTLD_NEXT, "syncfs");
    real_sync = dlsym(RTLD_NEXT, "sync");
    const char *r = getenv("POWERLOSS_ROOT");
    const char *s = getenv("POWERLOSS_STATE");
    if (!r || !s || !realpath(r, root) || strlen(s) >= sizeof state) {
        root[0] = 0;
        return;
    }
    strcpy(state, s);
    root_len = strlen(root);
}

static void die(const char *what, const char *path) {
    /* A sync the model cannot record would make the test's verdict meaningless: stop loudly. */
    fprintf(stderr, "powerloss shim: %s %s: %s\n", what, path, strerror(errno));
    abort();
}

static int under_root(const char *path) {
    return root_len && strncmp(path, root, root_len) == 0 &&
           (path[root_len] == '/' || path[root_len] == 0);
}

static void log_line(const char *kind, const char *path) {
    char p[PATH_MAX + 8];
    snprintf(p, sizeof p, "%s/log", state);
    int fd = open(p, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) die("open", p);
    dprintf(fd, "%s %s\n", kind, path);
    close(fd);
}

/* Write `len` bytes from the fd `src` (from offset 0) or the buffer `buf` into the record `name`. */
static void put_record(const char *name, int src, const char *buf, size_t len) {
    char tmp[PATH_MAX + 64], dst[PATH_MAX + 64];
    snprintf(dst, sizeof dst, "%s/%s", state, name);
    snprintf(tmp, sizeof tmp, "%s/.%s.tmp", state, name);
    int out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (out < 0) die("open", tmp);
    if (src >= 0) {
        char chunk[1 << 16];
        ssize_t n;
        off_t at = 0;
        while ((n = pread(src, chunk, sizeof chunk, at)) > 0) {
            for (ssize_t done = 0; done < n;) {
                ssize_t w = write(out, chunk + done, n - done);
                if (w < 0) die("write", tmp);
                done += w;
            }
            at += n;
        }
        if (n < 0) die("read", name);
    } else {
        for (size_t done = 0; done < len;) {
            ssize_t w = write(out, buf + done, len - done);
            if (w < 0) die("write", tmp);
            done += w;
        }
    }
    close(out);
    if (rename(tmp, dst) != 0) die("rename", tmp);
}

static char kind_of(mode_t m) { return S_ISREG(m) ? 'f' : S_ISDIR(m) ? 'd' : 'o'; }

/* Record the durable state of the open file or directory `fd`, whose path is `path`. */
static void record(int fd, const char *path) {
    struct stat st;
    if (fstat(fd, &st) != 0) die("fstat", path);
    char name[64];
    if (S_ISREG(st.st_mode)) {
        /* The fd may be write-only: read the same inode through a fresh descriptor. */
        char self[64];
        snprintf(self, sizeof self, "/proc/self/fd/%d", fd);
        int in = open(self, O_RDONLY | O_CLOEXEC);
        if (in < 0) die("reopen", path);
        snprintf(name, sizeof name, "f-%lu-%lu", (unsigned long)st.st_dev, (unsigned long)st.st_ino);
        put_record(name, in, NULL, 0);
        close(in);
        log_line("file", path);
    } else if (S_ISDIR(st.st_mode)) {
        int dfd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0) die("open dir", path);
        DIR *d = fdopendir(dfd);
        if (!d) die("fdopendir", path);
        char *text = NULL;
        size_t len = 0;
        FILE *mem = open_memstream(&text, &len);
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            if (strchr(e->d_name, '\n')) continue; /* not representable; Herald makes none */
            struct stat es;
            if (fstatat(dirfd(d), e->d_name, &es, AT_SYMLINK_NOFOLLOW) != 0) continue; /* gone */
            fprintf(mem, "%c %lu %lu %o %s\n", kind_of(es.st_mode), (unsigned long)es.st_dev,
                    (unsigned long)es.st_ino, (unsigned)(es.st_mode & 07777), e->d_name);
        }
        closedir(d);
        fclose(mem);
        snprintf(name, sizeof name, "d-%lu-%lu", (unsigned long)st.st_dev, (unsigned long)st.st_ino);
        put_record(name, -1, text, len);
        free(text);
        log_line("dir", path);
    }
}

static void record_fd(int fd) {
    if (!root_len) return;
    int saved = errno;
    char self[64], path[PATH_MAX];
    snprintf(self, sizeof self, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(self, path, sizeof path - 1);
    if (n < 0) {
        errno = saved;
        return;
    }
    path[n] = 0;
    if (!under_root(path)) {
        errno = saved;
        return;
    }
    pthread_mutex_lock(&lock);
    record(fd, path);
    pthread_mutex_unlock(&lock);
    errno = saved;
}

/* Record every file and directory under `path` (for sync and syncfs). */
static void record_tree(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return;
    record(fd, path);
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        DIR *d = fdopendir(fd);
        if (!d) die("fdopendir", path);
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char child[PATH_MAX];
            snprintf(child, sizeof child, "%s/%s", path, e->d_name);
            record_tree(child);
        }
        closedir(d);
    } else {
        close(fd);
    }
}

static void record_all(void) {
    if (!root_len) return;
    int saved = errno;
    pthread_mutex_lock(&lock);
    record_tree(root);
    pthread_mutex_unlock(&lock);
    errno = saved;
}

int fsync(int fd) {
    int r = real_fsync(fd);
    if (r == 0) record_fd(fd);
    return r;
}

int fdatasync(int fd) {
    int r = real_fdatasync(fd);
    if (r == 0) record_fd(fd);
    return r;
}

int syncfs(int fd) {
    int r = real_syncfs(fd);
    if (r == 0) record_all();
    return r;
}

void sync(void) {
    real_sync();
    record_all();
}
