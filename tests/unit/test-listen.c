/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Tests for kiro-proxyd's listening sockets: Listen= parsing, opening, socket activation. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "log.h"
#include "http/http-listen.h"
#include "tests.h"

static void make_tempdir(char *buf, size_t n) {
        snprintf(buf, n, "%s/test-listen-XXXXXX", getenv("TMPDIR") ?: "/tmp");
        ASSERT_NOT_NULL(mkdtemp(buf));
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        (void) remove(path);
        return 0;
}

static void rm_rf(const char *path) {
        (void) nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Runs f in a child (socket activation needs fds 3… and the environment) and checks it exited 0. */
static void run_in_child(void (*f)(void)) {
        int status;
        pid_t pid = fork();

        ASSERT_TRUE(pid >= 0);
        if (pid == 0) {
                f();
                _exit(0);
        }
        ASSERT_EQ(waitpid(pid, &status, 0), pid);
        if (!WIFEXITED(status))
                ASSERT_FAIL("child died with signal %d", WTERMSIG(status));
        ASSERT_EQ(WEXITSTATUS(status), 0);
}

TEST(spec_parse_tcp) {
        ListenSpec s;
        char buf[INET6_ADDRSTRLEN];

        ASSERT_OK(listen_spec_parse("127.0.0.1:8399", &s));
        ASSERT_EQ(s.kind, LISTEN_TCP);
        ASSERT_FALSE(s.tls);
        ASSERT_EQ(s.addr.sa.sa_family, AF_INET);
        ASSERT_EQ(ntohs(s.addr.in.sin_port), 8399);
        ASSERT_STREQ(inet_ntop(AF_INET, &s.addr.in.sin_addr, buf, sizeof(buf)), "127.0.0.1");
        ASSERT_TRUE(listen_spec_is_loopback(&s));
        ASSERT_NULL(s.path);
        listen_spec_done(&s);

        ASSERT_OK(listen_spec_parse("[::1]:8399", &s));
        ASSERT_EQ(s.addr.sa.sa_family, AF_INET6);
        ASSERT_EQ(ntohs(s.addr.in6.sin6_port), 8399);
        ASSERT_EQ(s.addr_len, sizeof(struct sockaddr_in6));
        ASSERT_TRUE(listen_spec_is_loopback(&s));
        listen_spec_done(&s);

        ASSERT_OK(listen_spec_parse("localhost:80", &s));
        ASSERT_EQ(s.addr.sa.sa_family, AF_INET);
        ASSERT_EQ(ntohl(s.addr.in.sin_addr.s_addr), INADDR_LOOPBACK);
        ASSERT_EQ(ntohs(s.addr.in.sin_port), 80);
        listen_spec_done(&s);

        ASSERT_OK(listen_spec_parse("tls:127.0.0.2:8443", &s));
        ASSERT_TRUE(s.tls);
        ASSERT_EQ(ntohs(s.addr.in.sin_port), 8443);
        ASSERT_TRUE(listen_spec_is_loopback(&s));
        listen_spec_done(&s);

        ASSERT_OK(listen_spec_parse("127.0.0.1:0", &s));
        ASSERT_EQ(ntohs(s.addr.in.sin_port), 0);
        listen_spec_done(&s);

        ASSERT_OK(listen_spec_parse("[::ffff:127.0.0.1]:1", &s));
        ASSERT_TRUE(listen_spec_is_loopback(&s));
        listen_spec_done(&s);
}

TEST(spec_parse_non_loopback) {
        static const char *const non_loopback[] = {
                "0.0.0.0:8399", "192.168.1.10:80", "[::]:8399", "[2001:db8::1]:443", "[::ffff:10.0.0.1]:80",
                "tls:0.0.0.0:8443", "128.0.0.1:80",
        };
        for (size_t i = 0; i < ELEMENTSOF(non_loopback); i++) {
                ListenSpec s;
                ASSERT_OK(listen_spec_parse(non_loopback[i], &s));
                if (listen_spec_is_loopback(&s))
                        ASSERT_FAIL("'%s' taken for loopback", non_loopback[i]);
                listen_spec_done(&s);
        }
}

TEST(spec_parse_unix) {
        ListenSpec s;

        ASSERT_OK(listen_spec_parse("unix:/run/kiro-proxyd/http.sock", &s));
        ASSERT_EQ(s.kind, LISTEN_UNIX);
        ASSERT_EQ(s.addr.sa.sa_family, AF_UNIX);
        ASSERT_STREQ(s.path, "/run/kiro-proxyd/http.sock");
        ASSERT_STREQ(s.addr.un.sun_path, "/run/kiro-proxyd/http.sock");
        ASSERT_TRUE(listen_spec_is_loopback(&s));
        listen_spec_done(&s);
        ASSERT_NULL(s.path);

        ASSERT_OK(listen_spec_parse("unix:@kiro-test", &s));
        ASSERT_EQ(s.kind, LISTEN_UNIX);
        ASSERT_NULL(s.path);
        ASSERT_EQ(s.addr.un.sun_path[0], 0);
        ASSERT_TRUE(memcmp(s.addr.un.sun_path + 1, "kiro-test", 9) == 0);
        ASSERT_EQ(s.addr_len, offsetof(struct sockaddr_un, sun_path) + 10);
        listen_spec_done(&s);
}

TEST(spec_parse_bad) {
        char long_path[200];
        static const char *const bad[] = {
                "", "127.0.0.1", "127.0.0.1:", ":80", "127.0.0.1:65536", "127.0.0.1:-1", "127.0.0.1:8x",
                "127.0.0.1:+80", "127.0.0.1: 80", "[::1]8399", "[::1", "[]:80", "::1:80", "example.com:80",
                "127.1:80", "1.2.3.4.5:80", "[fe80::1%eth0]:80", "unix:", "unix:relative/path", "unix:/",
                "unix:/run/dir/", "unix:@", "tls:", "tls:unix:/x", "http://127.0.0.1:80", "127.0.0.1:123456",
        };
        ListenSpec s;

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                int r = listen_spec_parse(bad[i], &s);
                if (r != -EINVAL)
                        ASSERT_FAIL("'%s' → %d, expected -EINVAL", bad[i], r);
        }

        memset(long_path, 'a', sizeof(long_path));
        memcpy(long_path, "unix:/", 6);
        long_path[sizeof(long_path) - 1] = 0;
        ASSERT_ERROR(listen_spec_parse(long_path, &s), EINVAL);
}

TEST(sockaddr_loopback) {
        struct sockaddr_in in = { .sin_family = AF_INET };
        struct sockaddr_in6 in6 = { .sin6_family = AF_INET6 };
        struct sockaddr_un un = { .sun_family = AF_UNIX };

        in.sin_addr.s_addr = htonl(0x7f000001);
        ASSERT_TRUE(sockaddr_is_loopback((struct sockaddr *) &in, sizeof(in)));
        in.sin_addr.s_addr = htonl(0x7f123456);
        ASSERT_TRUE(sockaddr_is_loopback((struct sockaddr *) &in, sizeof(in)));
        in.sin_addr.s_addr = htonl(0x0a000001);
        ASSERT_FALSE(sockaddr_is_loopback((struct sockaddr *) &in, sizeof(in)));
        in.sin_addr.s_addr = htonl(INADDR_ANY);
        ASSERT_FALSE(sockaddr_is_loopback((struct sockaddr *) &in, sizeof(in)));
        /* Truncated address. */
        in.sin_addr.s_addr = htonl(0x7f000001);
        ASSERT_FALSE(sockaddr_is_loopback((struct sockaddr *) &in, 4));

        in6.sin6_addr = in6addr_loopback;
        ASSERT_TRUE(sockaddr_is_loopback((struct sockaddr *) &in6, sizeof(in6)));
        in6.sin6_addr = in6addr_any;
        ASSERT_FALSE(sockaddr_is_loopback((struct sockaddr *) &in6, sizeof(in6)));

        ASSERT_TRUE(sockaddr_is_loopback((struct sockaddr *) &un, sizeof(un)));
        ASSERT_FALSE(sockaddr_is_loopback(NULL, 0));
}

TEST(open_tcp_ephemeral) {
        ListenSpec s;
        char *d = NULL, expect[64];
        int fd, port;

        ASSERT_OK(listen_spec_parse("127.0.0.1:0", &s));
        ASSERT_OK(listen_spec_open(&s, LISTEN_SOCKET_MODE_DEFAULT, &fd));
        listen_spec_done(&s);

        port = listen_fd_port(fd);
        ASSERT_TRUE(port > 0);
        ASSERT_OK(listen_fd_describe(fd, &d));
        snprintf(expect, sizeof(expect), "127.0.0.1:%d", port);
        ASSERT_STREQ(d, expect);
        free(d);

        ASSERT_TRUE(fcntl(fd, F_GETFD) & FD_CLOEXEC);
        ASSERT_TRUE(fcntl(fd, F_GETFL) & O_NONBLOCK);
        close(fd);
}

TEST(open_tcp6_ephemeral) {
        ListenSpec s;
        char *d = NULL;
        int fd, r;

        ASSERT_OK(listen_spec_parse("[::1]:0", &s));
        r = listen_spec_open(&s, LISTEN_SOCKET_MODE_DEFAULT, &fd);
        listen_spec_done(&s);
        if (r == -EADDRNOTAVAIL || r == -EAFNOSUPPORT) {
                fprintf(stderr, "no IPv6 loopback here, skipping\n");
                return;
        }
        ASSERT_OK(r);
        ASSERT_TRUE(listen_fd_port(fd) > 0);
        ASSERT_OK(listen_fd_describe(fd, &d));
        ASSERT_TRUE(startswith(d, "[::1]:") != NULL);
        free(d);
        close(fd);
}

TEST(open_unix) {
        char dir[256], path[512], *d = NULL;
        ListenSpec s;
        struct stat st;
        int fd, fd2;

        make_tempdir(dir, sizeof(dir));
        /* The parent directory is created. */
        snprintf(path, sizeof(path), "unix:%s/run/kiro-proxyd/http.sock", dir);

        ASSERT_OK(listen_spec_parse(path, &s));
        ASSERT_OK(listen_spec_open(&s, 0660, &fd));
        ASSERT_OK(lstat(s.path, &st));
        ASSERT_TRUE(S_ISSOCK(st.st_mode));
        ASSERT_EQ(st.st_mode & 07777, 0660);
        ASSERT_OK(listen_fd_describe(fd, &d));
        ASSERT_STREQ(d, path);
        free(d);
        ASSERT_EQ(listen_fd_port(fd), -EAFNOSUPPORT);

        /* A live server there: refused, and its socket file is left alone. */
        ASSERT_ERROR(listen_spec_open(&s, 0666, &fd2), EADDRINUSE);
        ASSERT_OK(lstat(s.path, &st));

        /* The server is gone: the stale file is replaced; the default mode applies. */
        close(fd);
        ASSERT_OK(listen_spec_open(&s, LISTEN_SOCKET_MODE_DEFAULT, &fd));
        ASSERT_OK(lstat(s.path, &st));
        ASSERT_EQ(st.st_mode & 07777, 0660);
        close(fd);
        listen_spec_done(&s);

        /* Not a socket: never removed. */
        snprintf(path, sizeof(path), "%s/file", dir);
        FILE *f = fopen(path, "we");
        ASSERT_NOT_NULL(f);
        fputs("precious\n", f);
        fclose(f);
        snprintf(path, sizeof(path), "unix:%s/file", dir);
        ASSERT_OK(listen_spec_parse(path, &s));
        ASSERT_ERROR(listen_spec_open(&s, 0666, &fd), EEXIST);
        ASSERT_OK(lstat(s.path, &st));
        ASSERT_TRUE(S_ISREG(st.st_mode));
        ASSERT_EQ(st.st_size, 9);
        listen_spec_done(&s);

        rm_rf(dir);
}

TEST(open_config) {
        char dir[256], unix_spec[512], path[512];
        struct stat st;
        mode_t old_umask;
        int r;
        ListenConfig c = { .socket_mode = LISTEN_SOCKET_MODE_DEFAULT };
        ListenFd *l = NULL;
        size_t n = 0;

        make_tempdir(dir, sizeof(dir));
        snprintf(unix_spec, sizeof(unix_spec), "unix:%s/http.sock", dir);

        /* No sockets passed: the Listen= values, in order. */
        unsetenv("LISTEN_FDS");
        unsetenv("LISTEN_PID");
        ASSERT_OK(config_parse_listen("127.0.0.1:0", &c.listen));
        ASSERT_OK(config_parse_listen(unix_spec, &c.listen));
        old_umask = umask(0);
        r = listen_fds_open(&c, &l, &n);
        (void) umask(old_umask);
        ASSERT_OK(r);
        ASSERT_EQ(n, 2);
        ASSERT_EQ(l[0].kind, LISTEN_TCP);
        ASSERT_FALSE(l[0].activated);
        ASSERT_TRUE(listen_fd_port(l[0].fd) > 0);
        ASSERT_TRUE(startswith(l[0].description, "127.0.0.1:") != NULL);
        ASSERT_EQ(l[1].kind, LISTEN_UNIX);
        ASSERT_STREQ(l[1].description, unix_spec);
        l = listen_fds_free(l, n);

        /* The socket file gets the default mode whatever the umask: owner and group only, as
         * kiro-proxyd-unix.socket's SocketMode=0660; never connectable by every local user. */
        snprintf(path, sizeof(path), "%s/http.sock", dir);
        ASSERT_OK(lstat(path, &st));
        ASSERT_TRUE(S_ISSOCK(st.st_mode));
        ASSERT_EQ(st.st_mode & 07777, 0660);

        /* Non-loopback: refused unless allowed; nothing is left open. */
        ASSERT_OK(config_parse_listen("0.0.0.0:0", &c.listen));
        ASSERT_ERROR(listen_fds_open(&c, &l, &n), EPERM);
        c.allow_non_loopback = true;
        ASSERT_OK(listen_fds_open(&c, &l, &n));
        ASSERT_EQ(n, 3);
        ASSERT_TRUE(startswith(l[2].description, "0.0.0.0:") != NULL);
        l = listen_fds_free(l, n);

        /* An empty assignment clears the list. */
        ASSERT_OK(config_parse_listen("", &c.listen));
        ASSERT_EQ(strv_length(c.listen), 0);
        ASSERT_ERROR(config_parse_listen("nonsense", &c.listen), EINVAL);
        ASSERT_ERROR(config_parse_listen("unix:relative", &c.listen), EINVAL);
        ASSERT_EQ(strv_length(c.listen), 0);

        listen_config_done(&c);
        rm_rf(dir);
}

/* MetricsListen=: opened after the Listen= sockets and marked; the same loopback rule. */
TEST(open_metrics_listen) {
        char dir[256], unix_spec[512];
        ListenConfig c = { .socket_mode = LISTEN_SOCKET_MODE_DEFAULT };
        ListenFd *l = NULL;
        size_t n = 0;

        make_tempdir(dir, sizeof(dir));
        snprintf(unix_spec, sizeof(unix_spec), "unix:%s/metrics.sock", dir);
        unsetenv("LISTEN_FDS");
        unsetenv("LISTEN_PID");
        ASSERT_OK(config_parse_listen("127.0.0.1:0", &c.listen));
        ASSERT_OK(config_parse_listen("127.0.0.1:0", &c.metrics_listen));
        ASSERT_OK(config_parse_listen(unix_spec, &c.metrics_listen));
        ASSERT_OK(listen_fds_open(&c, &l, &n));
        ASSERT_EQ(n, 3);
        ASSERT_FALSE(l[0].metrics);
        ASSERT_TRUE(l[1].metrics);
        ASSERT_EQ(l[1].kind, LISTEN_TCP);
        ASSERT_TRUE(listen_fd_port(l[1].fd) > 0 && listen_fd_port(l[1].fd) != listen_fd_port(l[0].fd));
        ASSERT_TRUE(l[2].metrics);
        ASSERT_EQ(l[2].kind, LISTEN_UNIX);
        ASSERT_STREQ(l[2].description, unix_spec);
        l = listen_fds_free(l, n);

        ASSERT_OK(config_parse_listen("", &c.metrics_listen));
        ASSERT_EQ(strv_length(c.metrics_listen), 0);

        /* A non-loopback metrics address: refused unless AllowNonLoopback=; nothing is left open. */
        ASSERT_OK(config_parse_listen("0.0.0.0:0", &c.metrics_listen));
        ASSERT_ERROR(listen_fds_open(&c, &l, &n), EPERM);
        c.allow_non_loopback = true;
        ASSERT_OK(listen_fds_open(&c, &l, &n));
        ASSERT_EQ(n, 2);
        ASSERT_TRUE(l[1].metrics && startswith(l[1].description, "0.0.0.0:") != NULL);
        l = listen_fds_free(l, n);
        ASSERT_ERROR(config_parse_listen("nonsense", &c.metrics_listen), EINVAL);

        listen_config_done(&c);
        rm_rf(dir);
}

TEST(parse_mode) {
        mode_t m = 0;

        ASSERT_OK(config_parse_mode("0600", &m));
        ASSERT_EQ(m, 0600);
        ASSERT_OK(config_parse_mode("666", &m));
        ASSERT_EQ(m, 0666);
        ASSERT_ERROR(config_parse_mode("", &m), EINVAL);
        ASSERT_ERROR(config_parse_mode("0800", &m), EINVAL);
        ASSERT_ERROR(config_parse_mode("rw", &m), EINVAL);
        ASSERT_ERROR(config_parse_mode("177777", &m), EINVAL);
        ASSERT_EQ(m, 0666);
}

/* ── socket activation ──────────────────────────────────────────────────────────────────────────── */

static int make_tcp_listener(const char *spec) {
        ListenSpec s;
        int fd;
        ASSERT_OK(listen_spec_parse(spec, &s));
        ASSERT_OK(listen_spec_open(&s, 0666, &fd));
        listen_spec_done(&s);
        return fd;
}

/* Moves fds[i] to 3+i, as the service manager would pass them, and sets the environment. */
static void pass_fds(int *fds, size_t n, const char *names) {
        char buf[32];
        int high[16];

        ASSERT_TRUE(n <= ELEMENTSOF(high));
        for (size_t i = 0; i < n; i++) {
                high[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 100);
                ASSERT_TRUE(high[i] >= 100);
                close(fds[i]);
        }
        for (size_t i = 0; i < n; i++) {
                ASSERT_EQ(dup2(high[i], 3 + (int) i), 3 + (int) i);
                close(high[i]);
        }
        snprintf(buf, sizeof(buf), "%d", (int) getpid());
        setenv("LISTEN_PID", buf, 1);
        snprintf(buf, sizeof(buf), "%zu", n);
        setenv("LISTEN_FDS", buf, 1);
        if (names)
                setenv("LISTEN_FDNAMES", names, 1);
        else
                unsetenv("LISTEN_FDNAMES");
}

static void child_activation_names(void) {
        char dir[256], spec[512];
        ListenFd *l = NULL;
        size_t n = 0;
        int fds[6], port0, port2;

        make_tempdir(dir, sizeof(dir));
        snprintf(spec, sizeof(spec), "unix:%s/a.sock", dir);
        fds[0] = make_tcp_listener("127.0.0.1:0");
        port0 = listen_fd_port(fds[0]);
        {
                ListenSpec s;
                ASSERT_OK(listen_spec_parse(spec, &s));
                ASSERT_OK(listen_spec_open(&s, 0666, &fds[1]));
                listen_spec_done(&s);
        }
        fds[2] = make_tcp_listener("127.0.0.1:0");
        port2 = listen_fd_port(fds[2]);
        fds[3] = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);         /* not a stream socket: skipped */
        ASSERT_TRUE(fds[3] >= 0);
        fds[4] = make_tcp_listener("127.0.0.1:0");
        fds[5] = make_tcp_listener("127.0.0.1:0");

        pass_fds(fds, 6, "http:unix:weird-name:http:https:metrics");
        ASSERT_EQ(listen_fds_from_activation(false, &l, &n), 5);
        ASSERT_EQ(n, 5);

        ASSERT_EQ(l[0].fd, 3);
        ASSERT_EQ(l[0].kind, LISTEN_TCP);
        ASSERT_TRUE(l[0].activated);
        ASSERT_FALSE(l[0].tls);
        ASSERT_EQ(listen_fd_port(l[0].fd), port0);

        ASSERT_EQ(l[1].fd, 4);
        ASSERT_EQ(l[1].kind, LISTEN_UNIX);
        ASSERT_STREQ(l[1].description, spec);

        /* Unknown name: used by its family (with a warning). */
        ASSERT_EQ(l[2].fd, 5);
        ASSERT_EQ(l[2].kind, LISTEN_TCP);
        ASSERT_EQ(listen_fd_port(l[2].fd), port2);

        ASSERT_EQ(l[3].fd, 7);
        ASSERT_TRUE(l[3].tls);
        ASSERT_FALSE(l[3].metrics);

        /* "metrics": a metrics-only listener, plain HTTP. */
        ASSERT_EQ(l[4].fd, 8);
        ASSERT_TRUE(l[4].metrics);
        ASSERT_FALSE(l[4].tls);
        ASSERT_FALSE(l[0].metrics || l[1].metrics || l[2].metrics);

        /* The datagram socket was closed, and the environment is consumed. */
        ASSERT_TRUE(fcntl(6, F_GETFD) < 0);
        ASSERT_NULL(getenv("LISTEN_FDS"));
        ASSERT_NULL(getenv("LISTEN_FDNAMES"));

        listen_fds_free(l, n);
        rm_rf(dir);
}

TEST(activation_names) {
        run_in_child(child_activation_names);
}

static void child_activation_non_loopback(void) {
        ListenFd *l = NULL;
        size_t n = 0;
        int fds[2];

        fds[0] = make_tcp_listener("127.0.0.1:0");
        fds[1] = make_tcp_listener("0.0.0.0:0");
        pass_fds(fds, 2, "http:http");
        ASSERT_ERROR(listen_fds_from_activation(false, &l, &n), EPERM);
        /* Everything passed is closed on failure. */
        ASSERT_TRUE(fcntl(3, F_GETFD) < 0);
        ASSERT_TRUE(fcntl(4, F_GETFD) < 0);

        fds[0] = make_tcp_listener("0.0.0.0:0");
        pass_fds(fds, 1, "http");
        ASSERT_EQ(listen_fds_from_activation(true, &l, &n), 1);
        ASSERT_EQ(n, 1);
        listen_fds_free(l, n);
}

TEST(activation_non_loopback) {
        run_in_child(child_activation_non_loopback);
}

static void child_activation_wins(void) {
        ListenConfig c = { .socket_mode = 0666 };
        ListenFd *l = NULL;
        size_t n = 0;
        int fd, port;

        fd = make_tcp_listener("127.0.0.1:0");
        port = listen_fd_port(fd);
        pass_fds(&fd, 1, NULL);         /* no names: "unknown", used by family */
        ASSERT_OK(config_parse_listen("unix:/nonexistent-dir/never-created.sock", &c.listen));
        ASSERT_OK(listen_fds_open(&c, &l, &n));
        ASSERT_EQ(n, 1);
        ASSERT_TRUE(l[0].activated);
        ASSERT_EQ(listen_fd_port(l[0].fd), port);
        ASSERT_TRUE(access("/nonexistent-dir", F_OK) < 0);
        listen_fds_free(l, n);
        listen_config_done(&c);
}

TEST(activation_wins_over_config) {
        run_in_child(child_activation_wins);
}

static void child_activation_other_pid(void) {
        ListenFd *l = (ListenFd *) 0x1;
        size_t n = 99;
        int fd = make_tcp_listener("127.0.0.1:0");

        pass_fds(&fd, 1, "http");
        setenv("LISTEN_PID", "1", 1);   /* meant for somebody else */
        ASSERT_EQ(listen_fds_from_activation(false, &l, &n), 0);
        ASSERT_EQ(n, 0);
        ASSERT_NULL(l);
}

TEST(activation_other_pid) {
        run_in_child(child_activation_other_pid);
}

static void __attribute__((constructor)) init_logging(void) {
        log_set_max_level(LOG_DEBUG);
}
