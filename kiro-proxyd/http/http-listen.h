/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Listening sockets for kiro-proxyd: socket activation, or Listen= specs (TCP loopback, AF_UNIX). */
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>

#include "macro.h"

typedef enum ListenKind {
        LISTEN_TCP,
        LISTEN_UNIX,
        _LISTEN_KIND_MAX,
        _LISTEN_KIND_INVALID = -EINVAL,
} ListenKind;

/* A parsed Listen= value:
 *   127.0.0.1:8399   [::1]:8399   localhost:8399   tls:127.0.0.1:8443   unix:/run/kiro-proxyd/http.sock
 *   unix:@abstract-name
 * Port 0 asks the kernel for a free port (tests). Host names other than "localhost" are not resolved. */
typedef struct ListenSpec {
        ListenKind kind;
        bool tls;
        union {
                struct sockaddr sa;
                struct sockaddr_in in;
                struct sockaddr_in6 in6;
                struct sockaddr_un un;
                struct sockaddr_storage storage;
        } addr;
        socklen_t addr_len;
        char *path;             /* LISTEN_UNIX in the file system; NULL for TCP and abstract sockets */
} ListenSpec;

/* An open listening socket and what it is. */
typedef struct ListenFd {
        int fd;
        ListenKind kind;
        bool tls;               /* serve HTTPS on it */
        bool activated;         /* passed by the service manager */
        bool metrics;           /* a MetricsListen= socket (or one passed as "metrics"): operator endpoints only */
        char *description;      /* "127.0.0.1:8399", "[::1]:8399", "unix:/run/…", for logs */
} ListenFd;

typedef struct ListenConfig {
        char **listen;          /* Listen= values in order; empty or NULL means LISTEN_DEFAULT */
        char **metrics_listen;  /* MetricsListen= values: extra sockets for /metrics, /healthz, /readyz only */
        bool allow_non_loopback;/* AllowNonLoopback= */
        mode_t socket_mode;     /* SocketMode= for AF_UNIX socket files */
} ListenConfig;

#define LISTEN_DEFAULT "127.0.0.1:8399"
#define LISTEN_SOCKET_MODE_DEFAULT ((mode_t) 0660)

const char *listen_kind_to_string(ListenKind k) _pure_;

/* Parses one Listen= value. -EINVAL on bad syntax. Does not judge loopback-ness. */
int listen_spec_parse(const char *s, ListenSpec *ret);
void listen_spec_done(ListenSpec *s);

/* True for AF_UNIX, 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104. */
bool sockaddr_is_loopback(const struct sockaddr *sa, socklen_t len) _pure_;
bool listen_spec_is_loopback(const ListenSpec *s) _pure_;

/* Creates, binds and listens (non-blocking, close-on-exec). For a socket file: creates the parent
 * directory, removes a stale socket left by a dead process (never a live one, never a non-socket),
 * and applies socket_mode. */
int listen_spec_open(const ListenSpec *s, mode_t socket_mode, int *ret_fd);

/* Takes the sockets passed by the service manager (names "http", "https", "unix", and "metrics" for a
 * metrics-only socket; other names are used by their address family, with a warning). Returns the number taken (0 when not activated).
 * Non-loopback TCP sockets are refused with -EPERM unless allow_non_loopback. Logs its errors. */
int listen_fds_from_activation(bool allow_non_loopback, ListenFd **ret, size_t *ret_n);

/* Socket activation if the service manager passed sockets, else every c->listen value (default
 * LISTEN_DEFAULT), then every c->metrics_listen value (marked metrics). Non-loopback TCP addresses are refused with -EPERM unless c->allow_non_loopback.
 * Logs its errors. */
int listen_fds_open(const ListenConfig *c, ListenFd **ret, size_t *ret_n);

/* Closes the fds that are still owned (fd >= 0) and frees the array; returns NULL. */
ListenFd *listen_fds_free(ListenFd *l, size_t n);

/* The bound port of a TCP socket, or -errno. */
int listen_fd_port(int fd);
/* "127.0.0.1:8399", "[::1]:8399", "unix:/path", "unix:@name" from getsockname(). */
int listen_fd_describe(int fd, char **ret);

/* ConfigParser for a repeatable Listen= (data: char ***): appends; an empty value clears the list. */
int config_parse_listen(const char *value, void *data);
/* ConfigParser for an octal file mode (data: mode_t *). */
int config_parse_mode(const char *value, void *data);

void listen_config_done(ListenConfig *c);
