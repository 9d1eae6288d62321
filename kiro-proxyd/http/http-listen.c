/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Listening sockets for kiro-proxyd: socket activation, or Listen= specs (TCP loopback, AF_UNIX). */
#include <arpa/inet.h>
#include <assert.h>
#include <fcntl.h>
#include <libgen.h>
#include <netinet/in.h>
#include <stddef.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>

#include "fileio.h"
#include "log.h"
#include "http/http-listen.h"

static const char *const listen_kind_table[_LISTEN_KIND_MAX] = {
        [LISTEN_TCP] = "tcp",
        [LISTEN_UNIX] = "unix",
};

const char *listen_kind_to_string(ListenKind k) {
        if (k < 0 || k >= _LISTEN_KIND_MAX)
                return NULL;
        return listen_kind_table[k];
}

static int parse_port(const char *s, uint16_t *ret) {
        char *end;
        unsigned long v;

        if (!s[0] || strspn(s, "0123456789") != strlen(s) || strlen(s) > 5)
                return -EINVAL;
        errno = 0;
        v = strtoul(s, &end, 10);
        if (errno != 0 || *end || v > 65535)
                return -EINVAL;
        *ret = (uint16_t) v;
        return 0;
}

static int parse_unix(const char *p, ListenSpec *ret) {
        ListenSpec s = { .kind = LISTEN_UNIX };
        size_t l = strlen(p);

        s.addr.un.sun_family = AF_UNIX;
        if (p[0] == '@') {
                /* Abstract namespace: no file, no mode, no stale file to clean up. */
                if (l < 2 || l > sizeof(s.addr.un.sun_path))
                        return -EINVAL;
                memcpy(s.addr.un.sun_path + 1, p + 1, l - 1);
                s.addr_len = (socklen_t) (offsetof(struct sockaddr_un, sun_path) + l);
        } else {
                if (p[0] != '/' || l >= sizeof(s.addr.un.sun_path))
                        return -EINVAL;
                if (p[l - 1] == '/')
                        return -EINVAL;
                memcpy(s.addr.un.sun_path, p, l + 1);
                s.addr_len = (socklen_t) (offsetof(struct sockaddr_un, sun_path) + l + 1);
                s.path = strdup(p);
                if (!s.path)
                        return -ENOMEM;
        }
        *ret = s;
        return 0;
}

int listen_spec_parse(const char *s, ListenSpec *ret) {
        ListenSpec spec = { .kind = LISTEN_TCP };
        const char *p, *colon;
        uint16_t port;
        int r;

        assert(s);
        assert(ret);

        if ((p = startswith(s, "unix:")))
                return parse_unix(p, ret);

        if ((p = startswith(s, "tls:")))
                spec.tls = true;
        else
                p = s;

        if (p[0] == '[') {
                /* [v6]:port; zone ids ("%eth0") are refused, link-local serving makes no sense here. */
                char host[INET6_ADDRSTRLEN];
                const char *close = strchr(p, ']');

                if (!close || close[1] != ':')
                        return -EINVAL;
                if ((size_t) (close - p - 1) >= sizeof(host) || close == p + 1)
                        return -EINVAL;
                memcpy(host, p + 1, close - p - 1);
                host[close - p - 1] = 0;
                r = parse_port(close + 2, &port);
                if (r < 0)
                        return r;
                spec.addr.in6.sin6_family = AF_INET6;
                if (inet_pton(AF_INET6, host, &spec.addr.in6.sin6_addr) != 1)
                        return -EINVAL;
                spec.addr.in6.sin6_port = htons(port);
                spec.addr_len = sizeof(struct sockaddr_in6);
        } else {
                char host[INET_ADDRSTRLEN];

                colon = strrchr(p, ':');
                if (!colon || colon == p)
                        return -EINVAL;
                r = parse_port(colon + 1, &port);
                if (r < 0)
                        return r;
                spec.addr.in.sin_family = AF_INET;
                spec.addr.in.sin_port = htons(port);
                spec.addr_len = sizeof(struct sockaddr_in);
                if ((size_t) (colon - p) == strlen("localhost") && strneq(p, "localhost", colon - p))
                        spec.addr.in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
                else {
                        if ((size_t) (colon - p) >= sizeof(host))
                                return -EINVAL;
                        memcpy(host, p, colon - p);
                        host[colon - p] = 0;
                        /* inet_pton() accepts only the dotted quad, unlike inet_aton(): no "127.1". */
                        if (inet_pton(AF_INET, host, &spec.addr.in.sin_addr) != 1)
                                return -EINVAL;
                }
        }

        *ret = spec;
        return 0;
}

void listen_spec_done(ListenSpec *s) {
        if (!s)
                return;
        free(s->path);
        s->path = NULL;
}

bool sockaddr_is_loopback(const struct sockaddr *sa, socklen_t len) {
        if (!sa || len < sizeof(sa_family_t))
                return false;

        switch (sa->sa_family) {
        case AF_UNIX:
                return true;
        case AF_INET: {
                const struct sockaddr_in *in = (const struct sockaddr_in *) sa;
                if (len < sizeof(*in))
                        return false;
                return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
        }
        case AF_INET6: {
                const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *) sa;
                if (len < sizeof(*in6))
                        return false;
                if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr))
                        return true;
                return IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) && in6->sin6_addr.s6_addr[12] == 127;
        }
        default:
                return false;
        }
}

bool listen_spec_is_loopback(const ListenSpec *s) {
        return sockaddr_is_loopback(&s->addr.sa, s->addr_len);
}

/* Removes a socket file left behind by a dead server. A socket somebody still listens on is refused
 * (-EADDRINUSE), and so is anything that is not a socket (-EEXIST): we never delete a user's file. */
static int unlink_stale_socket(const ListenSpec *s) {
        _cleanup_close_ int fd = -EBADF;
        struct stat st;

        if (lstat(s->path, &st) < 0)
                return errno == ENOENT ? 0 : -errno;
        if (!S_ISSOCK(st.st_mode))
                return -EEXIST;

        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, &s->addr.sa, s->addr_len) >= 0)
                return -EADDRINUSE;
        if (errno != ECONNREFUSED && errno != ENOENT)
                return -EADDRINUSE;     /* EAGAIN: a live server with a full backlog */

        if (unlink(s->path) < 0 && errno != ENOENT)
                return -errno;
        return 0;
}

int listen_spec_open(const ListenSpec *s, mode_t socket_mode, int *ret_fd) {
        _cleanup_close_ int fd = -EBADF;
        int r;

        assert(s);
        assert(ret_fd);

        if (s->kind == LISTEN_UNIX && s->path) {
                _cleanup_free_ char *dir = strdup(s->path);
                if (!dir)
                        return -ENOMEM;
                r = mkdir_p(dirname(dir), 0755);
                if (r < 0)
                        return r;
                r = unlink_stale_socket(s);
                if (r < 0)
                        return r;
        }

        fd = socket(s->addr.sa.sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return -errno;

        if (s->kind == LISTEN_TCP) {
                int one = 1;
                if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
                        return -errno;
                /* "[::1]" means exactly that, not also the IPv4 side. */
                if (s->addr.sa.sa_family == AF_INET6 &&
                    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0)
                        return -errno;
        }

        if (bind(fd, &s->addr.sa, s->addr_len) < 0)
                return -errno;

        if (s->kind == LISTEN_UNIX && s->path && chmod(s->path, socket_mode) < 0) {
                r = -errno;
                (void) unlink(s->path);
                return r;
        }

        if (listen(fd, SOMAXCONN) < 0) {
                r = -errno;
                if (s->path)
                        (void) unlink(s->path);
                return r;
        }

        *ret_fd = TAKE_FD(fd);
        return 0;
}

int listen_fd_port(int fd) {
        union {
                struct sockaddr sa;
                struct sockaddr_in in;
                struct sockaddr_in6 in6;
                struct sockaddr_storage storage;
        } a;
        socklen_t l = sizeof(a);

        if (getsockname(fd, &a.sa, &l) < 0)
                return -errno;
        if (a.sa.sa_family == AF_INET)
                return ntohs(a.in.sin_port);
        if (a.sa.sa_family == AF_INET6)
                return ntohs(a.in6.sin6_port);
        return -EAFNOSUPPORT;
}

int listen_fd_describe(int fd, char **ret) {
        union {
                struct sockaddr sa;
                struct sockaddr_in in;
                struct sockaddr_in6 in6;
                struct sockaddr_un un;
                struct sockaddr_storage storage;
        } a = {};
        socklen_t l = sizeof(a);
        char host[INET6_ADDRSTRLEN];
        char *s = NULL;
        int k;

        assert(ret);

        if (getsockname(fd, &a.sa, &l) < 0)
                return -errno;

        switch (a.sa.sa_family) {
        case AF_INET:
                if (!inet_ntop(AF_INET, &a.in.sin_addr, host, sizeof(host)))
                        return -errno;
                k = asprintf(&s, "%s:%u", host, ntohs(a.in.sin_port));
                break;
        case AF_INET6:
                if (!inet_ntop(AF_INET6, &a.in6.sin6_addr, host, sizeof(host)))
                        return -errno;
                k = asprintf(&s, "[%s]:%u", host, ntohs(a.in6.sin6_port));
                break;
        case AF_UNIX: {
                size_t n = l > offsetof(struct sockaddr_un, sun_path) ? l - offsetof(struct sockaddr_un, sun_path) : 0;
                if (n == 0)
                        k = asprintf(&s, "unix:(unnamed)");
                else if (a.un.sun_path[0] == 0)
                        k = asprintf(&s, "unix:@%.*s", (int) (n - 1), a.un.sun_path + 1);
                else
                        k = asprintf(&s, "unix:%.*s", (int) strnlen(a.un.sun_path, n), a.un.sun_path);
                break;
        }
        default:
                return -EAFNOSUPPORT;
        }
        if (k < 0)
                return -ENOMEM;
        *ret = s;
        return 0;
}

ListenFd *listen_fds_free(ListenFd *l, size_t n) {
        for (size_t i = 0; l && i < n; i++) {
                safe_close(l[i].fd);
                free(l[i].description);
        }
        free(l);
        return NULL;
}

static int listen_fds_append(ListenFd **l, size_t *n, int fd, ListenKind kind, bool tls, bool activated,
                             bool metrics) {
        _cleanup_free_ char *d = NULL;
        ListenFd *nl;
        int r;

        r = listen_fd_describe(fd, &d);
        if (r < 0)
                return r;
        nl = reallocarray(*l, *n + 1, sizeof(ListenFd));
        if (!nl)
                return -ENOMEM;
        *l = nl;
        nl[(*n)++] = (ListenFd) {
                .fd = fd,
                .kind = kind,
                .tls = tls,
                .activated = activated,
                .metrics = metrics,
                .description = TAKE_PTR(d),
        };
        return 0;
}

static int refuse_non_loopback(const char *what) {
        return log_error_errno(EPERM,
                               "Refusing to listen on non-loopback address %s: this would expose the API (and "
                               "the credentials behind it) to the network. Set AllowNonLoopback=yes in "
                               "[Proxy] if that is really intended, preferably with APIKeysFile= and TLS.",
                               what);
}

int listen_fds_from_activation(bool allow_non_loopback, ListenFd **ret, size_t *ret_n) {
        _cleanup_strv_free_ char **names = NULL;
        ListenFd *l = NULL;
        size_t n_l = 0;
        int n, r;

        assert(ret);
        assert(ret_n);

        n = sd_listen_fds_with_names(true, &names);
        if (n < 0)
                return log_error_errno(n, "Failed to read the sockets passed by the service manager: %m");

        for (int i = 0; i < n; i++) {
                int fd = SD_LISTEN_FDS_START + i;
                const char *name = names && names[i] ? names[i] : "unknown";
                union {
                        struct sockaddr sa;
                        struct sockaddr_storage storage;
                } a;
                socklen_t al = sizeof(a);
                ListenKind kind;
                bool tls = false;
                _cleanup_free_ char *d = NULL;

                r = sd_is_socket(fd, AF_UNSPEC, SOCK_STREAM, 1);
                if (r < 0) {
                        r = log_error_errno(r, "Failed to check passed fd %d ('%s'): %m", fd, name);
                        goto fail;
                }
                if (r == 0) {
                        log_warning("Ignoring passed fd %d ('%s'): not a listening stream socket.", fd, name);
                        safe_close(fd);
                        continue;
                }
                if (getsockname(fd, &a.sa, &al) < 0) {
                        r = log_error_errno(errno, "Failed to get the address of passed fd %d: %m", fd);
                        goto fail;
                }

                if (a.sa.sa_family == AF_INET || a.sa.sa_family == AF_INET6)
                        kind = LISTEN_TCP;
                else if (a.sa.sa_family == AF_UNIX)
                        kind = LISTEN_UNIX;
                else {
                        log_warning("Ignoring passed fd %d ('%s'): unsupported address family %d.", fd, name,
                                    a.sa.sa_family);
                        safe_close(fd);
                        continue;
                }

                (void) listen_fd_describe(fd, &d);
                if (streq(name, "http") || streq(name, "https")) {
                        tls = streq(name, "https");
                        if (kind != LISTEN_TCP)
                                log_warning("Passed socket '%s' (%s) is not a TCP socket; serving it as %s.",
                                            name, strna(d), listen_kind_to_string(kind));
                } else if (streq(name, "metrics")) {
                        /* Metrics-only, TCP or AF_UNIX, plain HTTP. */
                } else if (streq(name, "unix")) {
                        if (kind != LISTEN_UNIX)
                                log_warning("Passed socket '%s' (%s) is not an AF_UNIX socket; serving it as %s.",
                                            name, strna(d), listen_kind_to_string(kind));
                } else
                        log_warning("Passed socket %s has unknown name '%s' (expected FileDescriptorName=http, "
                                    "https, unix or metrics); serving it as plain HTTP over %s.",
                                    strna(d), name, listen_kind_to_string(kind));

                if (kind == LISTEN_TCP && !allow_non_loopback && !sockaddr_is_loopback(&a.sa, al)) {
                        r = refuse_non_loopback(strna(d));
                        goto fail;
                }

                r = listen_fds_append(&l, &n_l, fd, kind, tls, /* activated= */ true, streq(name, "metrics"));
                if (r < 0) {
                        r = log_error_errno(r, "Failed to record passed socket %d: %m", fd);
                        goto fail;
                }
        }

        *ret = l;
        *ret_n = n_l;
        return (int) n_l;

fail:
        /* Close what we took, and the passed fds not looked at yet. */
        listen_fds_free(l, n_l);
        for (int i = 0; i < n; i++) {
                int fd = SD_LISTEN_FDS_START + i;
                if (fcntl(fd, F_GETFD) >= 0)
                        safe_close(fd);
        }
        return r;
}

/* Opens and appends the sockets of one list of Listen=-style values (key names the setting in messages). */
static int listen_values_open(const ListenConfig *c, char *const *values, const char *key, bool metrics, ListenFd **l,
                              size_t *n_l) {
        int r;

        STRV_FOREACH(v, (char **) values) {
                ListenSpec spec;
                int fd;

                r = listen_spec_parse(*v, &spec);
                if (r < 0)
                        return log_error_errno(r, "Invalid %s= value '%s' (expected ADDRESS:PORT, [IPV6]:PORT, "
                                               "tls:ADDRESS:PORT or unix:/PATH).", key, *v);
                if (!c->allow_non_loopback && !listen_spec_is_loopback(&spec)) {
                        listen_spec_done(&spec);
                        return refuse_non_loopback(*v);
                }
                r = listen_spec_open(&spec, c->socket_mode, &fd);
                listen_spec_done(&spec);
                if (r == -EADDRINUSE && startswith(*v, "unix:"))
                        return log_error_errno(r, "Failed to listen on '%s': another server is listening there.", *v);
                if (r == -EEXIST)
                        return log_error_errno(r, "Failed to listen on '%s': the path exists and is not a socket; "
                                               "not removing it.", *v);
                if (r < 0)
                        return log_error_errno(r, "Failed to listen on '%s': %m", *v);
                r = listen_fds_append(l, n_l, fd, spec.kind, spec.tls, /* activated= */ false, metrics);
                if (r < 0) {
                        safe_close(fd);
                        return log_error_errno(r, "Failed to record socket for '%s': %m", *v);
                }
        }
        return 0;
}

int listen_fds_open(const ListenConfig *c, ListenFd **ret, size_t *ret_n) {
        static char *const default_listen[] = { (char *) LISTEN_DEFAULT, NULL };
        ListenFd *l = NULL;
        size_t n_l = 0;
        char *const *values;
        int r;

        assert(c);
        assert(ret);
        assert(ret_n);

        r = listen_fds_from_activation(c->allow_non_loopback, &l, &n_l);
        if (r < 0)
                return r;
        if (r > 0) {
                if (strv_length(c->listen) > 0 || strv_length(c->metrics_listen) > 0)
                        log_info("Using the %zu socket(s) passed by the service manager; Listen= and MetricsListen= "
                                 "are ignored.", n_l);
                *ret = l;
                *ret_n = n_l;
                return 0;
        }
        l = listen_fds_free(l, n_l);
        n_l = 0;

        values = strv_length(c->listen) > 0 ? c->listen : default_listen;
        r = listen_values_open(c, values, "Listen", false, &l, &n_l);
        if (r >= 0)
                r = listen_values_open(c, c->metrics_listen, "MetricsListen", true, &l, &n_l);
        if (r < 0)
                goto fail;

        *ret = l;
        *ret_n = n_l;
        return 0;

fail:
        listen_fds_free(l, n_l);
        return r;
}

int config_parse_listen(const char *value, void *data) {
        char ***l = data;
        ListenSpec spec;
        int r;

        if (isempty(value)) {
                *l = strv_free(*l);
                return 0;
        }
        /* Refuse syntax errors at parse time, so the message names the file and line. */
        r = listen_spec_parse(value, &spec);
        if (r < 0)
                return r;
        listen_spec_done(&spec);
        return strv_extend(l, value);
}

int config_parse_mode(const char *value, void *data) {
        mode_t *m = data;
        unsigned long v;
        char *end;

        if (isempty(value) || strspn(value, "01234567") != strlen(value))
                return -EINVAL;
        errno = 0;
        v = strtoul(value, &end, 8);
        if (errno != 0 || *end || v > 07777)
                return -EINVAL;
        *m = (mode_t) v;
        return 0;
}

void listen_config_done(ListenConfig *c) {
        if (!c)
                return;
        c->listen = strv_free(c->listen);
        c->metrics_listen = strv_free(c->metrics_listen);
}
