/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Linked Kiro IDE token files and kiro-cli databases (authd-link.h). */
#include <assert.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "authd-ids.h"
#include "authd-import.h"
#include "authd-kirocli.h"
#include "authd-link.h"
#include "fileio.h"
#include "json-util.h"
#include "log.h"

#define LINK_FILE_MAX (1024U * 1024U)
/* A change is read after this quiet time, so a burst (kiro-cli writing its -wal and its database, the IDE's
 * temporary file and rename) is read once. */
#define LINK_COALESCE_USEC (30 * USEC_PER_MSEC)
#define LINK_RETRY_MIN_USEC (1 * USEC_PER_SEC)
#define LINK_RETRY_MAX_USEC (30 * USEC_PER_SEC)

static const char *const link_state_table[_LINK_STATE_MAX] = {
        [LINK_FOLLOWING] = "following",
        [LINK_WRITE_PENDING] = "write-pending",
        [LINK_SOURCE_CHANGED] = "source-changed",
        [LINK_SOURCE_MISSING] = "source-missing",
        [LINK_SOURCE_INVALID] = "source-invalid",
        [LINK_DETACHED] = "detached",
};

const char *link_state_to_string(LinkState s) {
        return s >= 0 && s < _LINK_STATE_MAX ? link_state_table[s] : NULL;
}

const char *credential_link_state(Credential *cred) {
        return cred->link ? link_state_to_string(cred->link->state) : "";
}

static void link_set(Credential *cred, LinkState s, const char *message) {
        CredentialLink *l = cred->link;
        bool changed = l->state != s, message_changed = !streq_ptr(l->message, message);
        l->state = s;
        (void) free_and_strdup(&l->message, message);
        if (s != LINK_WRITE_PENDING)
                l->write_failures = 0;
        if (changed) {
                if (s == LINK_FOLLOWING)
                        log_info("Credential '%s' follows its source '%s' again.", cred->record->id, l->name);
                else if (s != LINK_WRITE_PENDING)       /* that one is logged where it happens */
                        log_warning("Credential '%s': its source '%s' is %s: %s.", cred->record->id, l->name,
                                    link_state_to_string(s), strna(message));
                credential_emit_changed(cred);
        } else if (message_changed)
                credential_emit_changed(cred);
}

static int token_sha256_hex(const char *token, char ret[static SHA256_DIGEST_SIZE * 2 + 1]) {
        uint8_t d[SHA256_DIGEST_SIZE];
        int r = sha256(token, strlen(token), d);
        if (r < 0)
                return r;
        hex_encode(d, sizeof d, ret);
        return 0;
}

/* What the source holds as far as we know; its digest goes into the record (saved with the next write of
 * it, which a refresh always does before the write-back), so that after a restart or a re-link a source
 * still holding it is known to be stale rather than a newer login. */
static void link_set_known(Credential *cred, const char *refresh_token) {
        CredentialLink *l = cred->link;
        char hex[SHA256_DIGEST_SIZE * 2 + 1];

        (void) erase_and_strdup(&l->known_refresh_token, refresh_token);
        if (refresh_token && token_sha256_hex(refresh_token, hex) >= 0)
                (void) free_and_strdup(&cred->record->link_source_sha256, hex);
}

bool credential_link_source_is_stale(Credential *cred, const char *refresh_token) {
        char hex[SHA256_DIGEST_SIZE * 2 + 1];

        if (!refresh_token || streq_ptr(refresh_token, cred->record->refresh_token))
                return false;
        if (cred->link && cred->link->known_refresh_token)
                return streq(refresh_token, cred->link->known_refresh_token);
        return cred->record->link_source_sha256 && token_sha256_hex(refresh_token, hex) >= 0 &&
               streq(hex, cred->record->link_source_sha256);
}

/* Arms the one timer of the link after usec (relative); an earlier deadline already armed is kept. */
static void link_arm(Credential *cred, usec_t usec) {
        CredentialLink *l = cred->link;
        usec_t when = now(CLOCK_MONOTONIC) + usec, armed = 0;
        int enabled = SD_EVENT_OFF;

        (void) sd_event_source_get_enabled(l->timer, &enabled);
        if (enabled != SD_EVENT_OFF && sd_event_source_get_time(l->timer, &armed) >= 0 && armed <= when)
                return;
        if (sd_event_source_set_time(l->timer, when) < 0 ||
            sd_event_source_set_enabled(l->timer, SD_EVENT_ONESHOT) < 0)
                log_warning("Credential '%s': cannot arm the timer of its link to '%s'.", cred->record->id, l->name);
}

/* Reads the token file through the directory fd: never a symlink, only a regular file, size capped. */
static int link_read_file(CredentialLink *l, char **ret, size_t *ret_size) {
        _cleanup_close_ int fd = openat(l->dir_fd, l->name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
        struct stat st;
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EBADFD;
        return read_full_fd(fd, LINK_FILE_MAX, ret, ret_size);
}

/* The login the source holds: 0, an ImportError > 0 with *ret_message, or a negative errno. */
static int link_read_login(CredentialLink *l, CredentialRecord **ret, const char **ret_key, char **ret_message) {
        char *buf = NULL;
        size_t size = 0;
        int r;

        if (l->format == IMPORT_KIRO_CLI_SQLITE)
                return kirocli_db_read(l->dir_fd, l->name, ret, ret_key, ret_message);

        r = link_read_file(l, &buf, &size);
        if (r < 0)
                return r;
        r = import_kiro_ide_json(buf, size, NULL, 0, ret, ret_message);
        erase_and_free_sized(buf, size);
        return r;
}

static void link_try_write(Credential *cred);

static void link_reread_full(Credential *cred, bool may_write) {
        CredentialLink *l = cred->link;
        _cleanup_free_ char *message = NULL;
        _cleanup_(credential_record_freep) CredentialRecord *c = NULL;
        const char *key = NULL;
        char hash[65] = "";
        int r;

        r = link_read_login(l, &c, &key, &message);
        if (r != -EBUSY)
                l->busy_reads = 0;
        if (r == -ELOOP)
                return link_set(cred, LINK_SOURCE_CHANGED, "it is a symlink now, which is not followed");
        if (r == -ENOENT)
                return link_set(cred, LINK_SOURCE_MISSING, "it was deleted or renamed; the credential keeps its login");
        if (r == -EBUSY) {
                /* kiro-cli holds a write lock: read it when it is done. */
                usec_t delay = LINK_RETRY_MIN_USEC;
                for (unsigned i = 0; i < l->busy_reads && delay < LINK_RETRY_MAX_USEC; i++)
                        delay *= 2;
                delay = MIN(delay, LINK_RETRY_MAX_USEC);
                l->busy_reads++;
                log_debug("Credential '%s': its source '%s' is locked; reading it again in %llus.",
                          cred->record->id, l->name, (unsigned long long) (delay / USEC_PER_SEC));
                l->read_busy = true;
                l->retry_due = true;
                return link_arm(cred, delay);
        }
        if (r < 0)
                return link_set(cred, LINK_SOURCE_INVALID,
                                r == -EBADFD   ? "not a regular file"
                                : r == -ESTALE ? "it was replaced while it was being opened"
                                               : strerror(-r));
        if (r == IMPORT_E_NO_TOKEN && l->format == IMPORT_KIRO_CLI_SQLITE)
                /* A logout in kiro-cli deletes its token row. Our login still works (it is our own refresh
                 * token), so it is kept and used, but nothing is written there until kiro-cli logs in to this
                 * account again. Not needs-login: that would throw away a working login. */
                return link_set(cred, LINK_SOURCE_CHANGED,
                                "kiro-cli logged out (its database holds no login); the credential keeps its own "
                                "login and writes nothing there until kiro-cli logs in to this account again");
        if (r != 0)
                return link_set(cred, LINK_SOURCE_INVALID,
                                message ?: (l->format == IMPORT_KIRO_CLI_SQLITE ? "not a kiro-cli login"
                                                                                : "not a Kiro IDE login"));
        if (c->method != cred->record->method || credential_record_account_hash(c, hash) < 0 ||
            !streq(hash, l->account))
                return link_set(cred, LINK_SOURCE_CHANGED,
                                l->format == IMPORT_KIRO_CLI_SQLITE
                                        ? "another account logged in there; import it separately (kiroctl import --from-kiro-cli --id NAME)"
                                        : "another account logged in there; import it separately (kiroctl import --from-kiro-ide)");
        if (key)
                l->key = key;

        if (streq_ptr(c->refresh_token, cred->record->refresh_token)) {
                link_set_known(cred, c->refresh_token);
                return link_set(cred, LINK_FOLLOWING, NULL);
        }
        if (credential_link_source_is_stale(cred, c->refresh_token)) {
                /* The source still holds the token we refreshed from: our rotated one is not there yet
                 * (after a restart or a re-link: known only by its digest in the record). */
                if (!l->known_refresh_token)
                        link_set_known(cred, c->refresh_token);
                if (may_write)
                        link_try_write(cred);
                else if (l->state != LINK_WRITE_PENDING)
                        link_set(cred, LINK_FOLLOWING, NULL);
                return;
        }

        /* A newer login of the same account (kiro-cli or the IDE refreshed or logged in again): take it. */
        log_info("Credential '%s' takes the login its source '%s' holds now.", cred->record->id, l->name);
        _cleanup_erase_free_ char *rt = c->refresh_token ? strdup(c->refresh_token) : NULL;
        if (c->refresh_token && !rt)
                return link_set(cred, LINK_SOURCE_INVALID, "out of memory");
        r = manager_replace_login(cred->manager, cred, TAKE_PTR(c));
        if (r < 0)
                return link_set(cred, LINK_SOURCE_INVALID, "its new login could not be stored");
        link_set_known(cred, rt);
        link_set(cred, LINK_FOLLOWING, NULL);
}

/* cheap: for a change inotify saw. kiro-cli writes its database on every chat turn; the whole database is
 * read (and parsed with every defence of an import) only when the rows of a login changed. */
static void link_reread(Credential *cred, bool cheap) {
        CredentialLink *l = cred->link;
        uint8_t digest[SHA256_DIGEST_SIZE];
        bool have = false;

        /* A retry reads it whole anyway: no digest first, which would wait for the same lock twice. */
        if (l->format == IMPORT_KIRO_CLI_SQLITE && cheap) {
                have = kirocli_db_login_digest(l->dir_fd, l->name, digest) >= 0;
                if (have && l->have_digest && memcmp(digest, l->digest, sizeof digest) == 0) {
                        log_debug("Credential '%s': its source '%s' changed, but not its login.", cred->record->id,
                                  l->name);
                        return;
                }
        }
        log_debug("Credential '%s': reading its source '%s'.", cred->record->id, l->name);
        l->have_digest = false;
        l->read_busy = false;
        link_reread_full(cred, true);
        /* The digest taken before the read: a change in between is seen by the next event. */
        if (have && !l->read_busy) {
                memcpy(l->digest, digest, sizeof digest);
                l->have_digest = true;
        }
}

static void link_write_failed(Credential *cred, int r, const char *detail) {
        CredentialLink *l = cred->link;
        usec_t delay = LINK_RETRY_MIN_USEC;
        _cleanup_free_ char *message = NULL;

        for (unsigned i = 0; i < l->write_failures && delay < LINK_RETRY_MAX_USEC; i++)
                delay *= 2;
        delay = MIN(delay, LINK_RETRY_MAX_USEC);
        l->write_failures++;
        if (asprintf(&message, "its rotated refresh token is not written there yet (%s%s%s); retrying every %llus",
                     r == -EBUSY ? "the database is locked" : strerror(-r), detail ? ": " : "", strempty(detail),
                     (unsigned long long) (delay / USEC_PER_SEC)) < 0)
                message = NULL;
        /* Loud, and once per failed attempt: until it is written, the source holds a refresh token that no
         * longer works, so kiro-cli or the IDE are logged out if they use it. The new token is in our store. */
        log_event(l->write_failures == 1 || l->write_failures % 10 == 0 ? LOG_WARNING : LOG_NOTICE,
                  KIROD_MESSAGE_LINK_WRITE_PENDING,
                  "Credential '%s' was refreshed, but its rotated tokens cannot be written into its linked source "
                  "'%s' (%s%s%s), attempt %u: retrying in %llus. The new login is kept in kiro-authd's store.",
                  cred->record->id, l->name, r == -EBUSY ? "the database is locked" : strerror(-r),
                  detail ? ": " : "", strempty(detail), l->write_failures, (unsigned long long) (delay / USEC_PER_SEC));
        link_set(cred, LINK_WRITE_PENDING, message);
        l->retry_due = true;
        link_arm(cred, delay);
}

static void link_written(Credential *cred) {
        CredentialLink *l = cred->link;
        if (l->write_failures > 0)
                log_info("Credential '%s': its rotated tokens are written into '%s' now.", cred->record->id, l->name);
        else
                log_debug("Credential '%s': wrote its rotated tokens to '%s'.", cred->record->id, l->name);
        link_set_known(cred, cred->record->refresh_token);
        link_set(cred, LINK_FOLLOWING, NULL);
}

static int link_write_json(Credential *cred) {
        CredentialLink *l = cred->link;
        CredentialRecord *c = cred->record;
        _cleanup_json_ json_object *o = NULL;
        const char *perr = NULL, *there = NULL;
        char *buf = NULL, *out = NULL, ts[64];
        size_t size = 0, out_size = 0;
        int r;

        r = link_read_file(l, &buf, &size);
        if (r >= 0)
                r = json_parse_secret(buf, size, 16, &o, &perr);
        erase_and_free_sized(buf, size);
        if (r == -EBADMSG)
                return -ESTALE;
        if (r < 0)
                return r;
        if (!json_object_is_type(o, json_type_object) || json_get_string(o, "refreshToken", &there) < 0 ||
            !streq_ptr(there, l->known_refresh_token)) {
                json_object_erase_strings(o);
                return -ESTALE;
        }
        /* Only the token fields change; everything else in the file is kept as it is. */
        r = json_set_string(o, "accessToken", c->access_token);
        if (r >= 0)
                r = json_set_string(o, "refreshToken", c->refresh_token);
        if (r >= 0 && c->expires_at > 0 && c->expires_at != USEC_INFINITY)
                r = json_set_string(o, "expiresAt", format_rfc3339(ts, sizeof ts, c->expires_at));
        if (r >= 0)
                r = json_to_string_secret(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE, &out, &out_size);
        json_object_erase_strings(o);
        if (r >= 0)
                r = write_file_atomic_at(l->dir_fd, l->name, out, out_size, 0600);
        erase_and_free_sized(out, out_size);
        return r;
}

/* Writes our rotated tokens into the source, if it still holds the login we refreshed from. */
static void link_try_write(Credential *cred) {
        CredentialLink *l = cred->link;
        _cleanup_free_ char *message = NULL;
        int r;

        if (!l->key && l->format == IMPORT_KIRO_CLI_SQLITE)
                return link_reread_full(cred, false);   /* which key holds it: not read yet */

        if (l->format == IMPORT_KIRO_CLI_SQLITE)
                r = kirocli_db_write_back(l->dir_fd, l->name, l->key, l->known_refresh_token, cred->record,
                                          &message);
        else
                r = link_write_json(cred);
        if (r == 0)
                return link_written(cred);
        if (r == -ESTALE) {
                /* The source changed since we last read it (kiro-cli logged in or out, the IDE refreshed):
                 * nothing is overwritten; what it holds now decides. */
                log_info("Credential '%s': its source '%s' changed since it was read; not writing over it.",
                         cred->record->id, l->name);
                return link_reread_full(cred, false);
        }
        if (r == -ENOENT)
                return link_set(cred, LINK_SOURCE_MISSING, "it was deleted or renamed; the credential keeps its login");
        if (r == -ELOOP)
                return link_set(cred, LINK_SOURCE_CHANGED, "it is a symlink now, which is not followed");
        if (r > 0)
                return link_set(cred, LINK_SOURCE_INVALID, message ?: "not a kiro-cli database any more");
        link_write_failed(cred, r, message);
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Credential *cred = userdata;
        bool retry = cred->link->retry_due;

        cred->link->retry_due = false;
        link_reread(cred, !retry);
        return 0;
}

static bool link_event_is_ours(CredentialLink *l, const struct inotify_event *e) {
        const char *suffix;

        if (e->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED | IN_Q_OVERFLOW))
                return true;
        if (e->len == 0)
                return false;
        if (streq(e->name, l->name))
                /* SQLite writes the database in place (IN_MODIFY) and keeps it open. Our own reading opens it
                 * read-only, so it causes no event here. */
                return true;
        /* A WAL-mode transaction of kiro-cli's is in the -wal file until a checkpoint. Only real writes count:
         * every connection opens the -wal read-write, so closing it says nothing. */
        suffix = startswith(e->name, l->name);
        return l->format == IMPORT_KIRO_CLI_SQLITE && suffix && streq(suffix, "-wal") && (e->mask & IN_MODIFY);
}

static int on_inotify(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Credential *cred = userdata;
        CredentialLink *l = cred->link;
        union {
                struct inotify_event e;
                uint8_t raw[4096];
        } buf;
        bool ours = false;

        for (;;) {
                ssize_t n = read(fd, &buf, sizeof buf);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break;          /* EAGAIN: drained */
                for (uint8_t *p = buf.raw; p < buf.raw + n;) {
                        struct inotify_event *e = (struct inotify_event *) p;
                        if (link_event_is_ours(l, e))
                                ours = true;
                        p += sizeof *e + e->len;
                }
        }
        if (ours)
                link_arm(cred, LINK_COALESCE_USEC);
        return 0;
}

static bool link_name_is_valid(const char *name) {
        return !isempty(name) && !strchr(name, '/') && !streq(name, ".") && !streq(name, "..") && strlen(name) <= 250;
}

int credential_link_check(int dir_fd, const char *name, ImportFormat format) {
        _cleanup_close_ int fd = -EBADF;
        struct stat st;

        if (!name || !link_name_is_valid(name))
                return -EINVAL;
        if (fstat(dir_fd, &st) < 0)
                return -errno;
        if (!S_ISDIR(st.st_mode))
                return -ENOTDIR;
        /* As kiro-authd's own user: reading the file (and writing it in place, for SQLite), creating files
         * beside it (the IDE's atomic replace, SQLite's journal). The rights the fd was opened with give none
         * here: a lookup through it is checked against our user. */
        fd = openat(dir_fd, name, (format == IMPORT_KIRO_CLI_SQLITE ? O_RDWR : O_RDONLY) | O_NOFOLLOW | O_NONBLOCK |
                                          O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        if (faccessat(dir_fd, ".", W_OK | X_OK, AT_EACCESS) < 0)
                return -errno;
        return 0;
}

static CredentialLink *link_free_one(CredentialLink *l) {
        if (!l)
                return NULL;
        sd_event_source_disable_unref(l->io);
        sd_event_source_disable_unref(l->timer);
        safe_close(l->inotify_fd);
        safe_close(l->dir_fd);
        free(l->name);
        erase_and_free(l->known_refresh_token);
        free(l->message);
        free(l);
        return NULL;
}
DEFINE_TRIVIAL_CLEANUP_FUNC(CredentialLink *, link_free_one);

/* The live part of a link: our own dup of dir_fd, an inotify watch on it and the timer. Not attached to
 * cred yet; what the source holds is not known yet (known_refresh_token NULL). */
static int link_open(Credential *cred, int dir_fd, const char *name, ImportFormat format, CredentialLink **ret) {
        _cleanup_close_ int dfd = -EBADF, ifd = -EBADF;
        _cleanup_(sd_event_source_unrefp) sd_event_source *io = NULL, *timer = NULL;
        _cleanup_(link_free_onep) CredentialLink *l = NULL;
        char path[64], hash[65] = "";
        uint32_t mask;
        struct stat st;
        int r;

        assert(cred);
        assert(name);
        assert(ret);

        if (!link_name_is_valid(name) || !(format == IMPORT_KIRO_IDE_JSON || format == IMPORT_KIRO_CLI_SQLITE))
                return -EINVAL;
        dfd = fcntl(dir_fd, F_DUPFD_CLOEXEC, 3);
        if (dfd < 0)
                return -errno;
        if (fstat(dfd, &st) < 0)
                return -errno;
        if (!S_ISDIR(st.st_mode))
                return -ENOTDIR;
        r = credential_record_account_hash(cred->record, hash);
        if (r < 0)
                return r;

        ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        if (ifd < 0)
                return -errno;
        /* Our own fd, through /proc: no path of the user's is resolved. */
        snprintf(path, sizeof path, "/proc/self/fd/%d", dfd);
        mask = IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF |
               IN_ONLYDIR;
        if (format == IMPORT_KIRO_CLI_SQLITE)
                mask |= IN_MODIFY;
        if (inotify_add_watch(ifd, path, mask) < 0)
                return -errno;

        r = sd_event_add_io(cred->manager->event, &io, ifd, EPOLLIN, on_inotify, cred);
        if (r < 0)
                return r;
        r = sd_event_add_time(cred->manager->event, &timer, CLOCK_MONOTONIC, 0, 10 * USEC_PER_MSEC, on_timer, cred);
        if (r < 0)
                return r;
        r = sd_event_source_set_enabled(timer, SD_EVENT_OFF);
        if (r < 0)
                return r;

        l = calloc(1, sizeof *l);
        if (!l)
                return -ENOMEM;
        *l = (CredentialLink) { .dir_fd = -EBADF, .inotify_fd = -EBADF, .state = LINK_FOLLOWING, .format = format };
        l->name = strdup(name);
        if (!l->name)
                return -ENOMEM;
        l->io = TAKE_PTR(io);
        l->timer = TAKE_PTR(timer);
        l->dir_fd = TAKE_FD(dfd);
        l->inotify_fd = TAKE_FD(ifd);
        memcpy(l->account, hash, sizeof hash);
        *ret = TAKE_PTR(l);
        return 0;
}

/* FDSTORE=1 (add, with fd) or FDSTOREREMOVE=1 of "link-<id>". Ids are 1..64 of [A-Za-z0-9._-]: a valid
 * FDNAME (at most 255 characters, no ':' and no control characters). > 0 sent, 0 no service manager. */
static int link_fdstore_notify(const char *id, bool add, int fd) {
        char state[128];
        int r;

        assert(credential_id_is_valid(id));
        snprintf(state, sizeof state, "%s\nFDNAME=" LINK_FDNAME_PREFIX "%s", add ? "FDSTORE=1" : "FDSTOREREMOVE=1", id);
        r = add ? sd_pid_notify_with_fds(0, false, state, &fd, 1) : sd_pid_notify(0, false, state);
        if (r < 0)
                return log_warning_errno(r, "Credential '%s': cannot %s the service manager's fd store: %m", id,
                                         add ? "keep the directory fd of its link in" : "remove the directory fd of its link from");
        if (r == 0 && add)
                log_notice("Credential '%s': no service manager to keep the directory fd of its link ($NOTIFY_SOCKET is "
                           "not set); after kiro-authd restarts it is detached.", id);
        else
                log_debug("Credential '%s': %s '" LINK_FDNAME_PREFIX "%s' %s the service manager's fd store.", id,
                          add ? "stored" : "removed", id, add ? "in" : "from");
        return r;
}

/* The command that links cred again (with kiroctl's default source when the path cannot be quoted). */
static char *link_relink_command(Credential *cred) {
        CredentialRecord *c = cred->record;
        bool cli = streq_ptr(c->link_format, "kiro-cli-sqlite");
        const char *path = c->link_path && c->link_path[0] == '/' && !strchr(c->link_path, '\'') ? c->link_path : NULL;
        char *cmd = NULL;

        if (asprintf(&cmd, "kiroctl %simport %s%s%s%s --link --replace --id %s", cred->manager->user_mode ? "--user " : "",
                     cli ? "--from-kiro-cli" : "--from-kiro-ide", path ? (cli ? " --db '" : " --file '") : "",
                     strempty(path), path ? "'" : "", c->id) < 0)
                return NULL;
        return cmd;
}

/* A stored link without a directory fd: the credential keeps its login, nothing is read or written. */
static void link_detach(Credential *cred, const char *why) {
        CredentialRecord *c = cred->record;
        bool cli = streq_ptr(c->link_format, "kiro-cli-sqlite");
        _cleanup_free_ char *cmd = link_relink_command(cred), *message = NULL;
        CredentialLink *l;

        credential_link_free(cred);
        l = calloc(1, sizeof *l);
        if (!l) {
                log_oom();
                return;
        }
        *l = (CredentialLink) { .dir_fd = -EBADF, .inotify_fd = -EBADF, .state = LINK_DETACHED,
                                .format = cli ? IMPORT_KIRO_CLI_SQLITE : IMPORT_KIRO_IDE_JSON };
        l->name = strdup(strempty(c->link_name));
        if (asprintf(&message, "%s. It keeps its own login and keeps refreshing, but reads nothing from its source and "
                     "writes nothing there: after its next refresh %s holds a replaced refresh token until the "
                     "credential is linked again, which writes the new one there. Link it again: %s",
                     why, cli ? "kiro-cli" : "the Kiro IDE", strna(cmd)) < 0)
                message = NULL;
        l->message = TAKE_PTR(message);
        cred->link = l;
        log_credential_event(LOG_WARNING, KIROD_MESSAGE_LINK_DETACHED, c->id, "detached",
                             "Credential '%s' is detached from its linked source '%s': %s", c->id,
                             strna(c->link_path ?: c->link_name), strna(l->message));
        credential_emit_changed(cred);
}

int credential_link_attach(Credential *cred, int dir_fd, const char *name, ImportFormat format, const char *path) {
        CredentialLink *l = NULL;
        int r;

        assert(cred);
        assert(name);

        r = link_open(cred, dir_fd, name, format, &l);
        if (r < 0)
                return r;
        /* systemd keeps every fd sent under a name: a previous link of this credential (live or detached)
         * leaves the store first. */
        if (cred->record->link_format)
                (void) link_fdstore_notify(cred->record->id, false, -EBADF);
        credential_link_free(cred);
        cred->link = l;
        /* A re-link keeps the digest of what the source held: if it still holds that (we refreshed while
         * detached), our login is written there rather than the stale one taken. */
        _cleanup_free_ char *sha = TAKE_PTR(cred->record->link_source_sha256);
        r = credential_record_set_link(cred->record, import_format_to_string(format), name, path);
        if (r < 0)
                return r;
        if (sha)
                cred->record->link_source_sha256 = TAKE_PTR(sha);
        else
                link_set_known(cred, cred->record->refresh_token);
        r = credential_save(cred);
        if (r < 0)
                log_warning("Credential '%s': its link could not be stored; it lasts as long as this process.",
                            cred->record->id);
        else
                (void) link_fdstore_notify(cred->record->id, true, l->dir_fd);
        /* Which auth_kv key holds the login, and whether the source still holds it; a source holding the
         * token we rotated since (a re-link after refreshes while detached) gets ours written. */
        link_reread_full(cred, true);
        credential_emit_changed(cred);
        return 0;
}

/* A stored link and the fd the service manager kept for it: the same checks as a fresh link, then the
 * source is read again and the normal states decide. */
static int link_restore_one(Credential *cred, int fd) {
        ImportFormat format = import_format_from_string(cred->record->link_format);
        CredentialLink *l = NULL;
        int r;

        r = link_open(cred, fd, cred->record->link_name, format, &l);
        if (r < 0)
                return r;
        credential_link_free(cred);
        cred->link = l;
        log_info("Credential '%s' follows its source '%s' again, through the directory fd the service manager kept.",
                 cred->record->id, strna(cred->record->link_path ?: cred->record->link_name));
        link_reread_full(cred, true);
        credential_emit_changed(cred);
        return 0;
}

void credential_links_restore(Manager *m) {
        _cleanup_strv_free_ char **names = NULL;
        int n, r;

        assert(m);

        n = sd_listen_fds_with_names(true, &names);
        if (n < 0) {
                log_warning_errno(n, "Cannot take the fds the service manager passed: %m");
                n = 0;
        }
        for (int i = 0; i < n; i++)
                (void) fcntl(SD_LISTEN_FDS_START + i, F_SETFD, FD_CLOEXEC);

        for (int i = 0; i < n; i++) {
                int fd = SD_LISTEN_FDS_START + i;
                const char *name = names && names[i] ? names[i] : "";
                const char *id = startswith(name, LINK_FDNAME_PREFIX);
                Credential *cred = id && credential_id_is_valid(id) ? manager_find(m, id) : NULL;

                if (cred && cred->record->link_format && !cred->link) {
                        r = link_restore_one(cred, fd);
                        if (r < 0) {
                                _cleanup_free_ char *why = NULL;
                                (void) link_fdstore_notify(cred->record->id, false, -EBADF);
                                if (asprintf(&why, "the directory fd the service manager kept for it is not usable "
                                             "(%s)", strerror(-r)) < 0)
                                        why = NULL;
                                link_detach(cred, why ?: "the directory fd the service manager kept for it is not usable");
                        }
                } else if (cred && cred->link) {
                        /* A second fd under one name: keep the one in use, and only it in the store. */
                        log_notice("Credential '%s': the service manager passed more than one fd for its link; "
                                   "using the first.", cred->record->id);
                        (void) link_fdstore_notify(cred->record->id, false, -EBADF);
                        if (cred->link->dir_fd >= 0)
                                (void) link_fdstore_notify(cred->record->id, true, cred->link->dir_fd);
                } else {
                        log_notice("Closing fd '%s' from the service manager's fd store: no linked credential uses it.",
                                   name);
                        if (id && credential_id_is_valid(id))
                                (void) link_fdstore_notify(id, false, -EBADF);
                }
                safe_close(fd);
        }

        for (size_t i = 0; i < m->n_credentials; i++) {
                Credential *cred = m->credentials[i];
                if (cred->record->link_format && !cred->link)
                        link_detach(cred, "its directory fd did not come back from the service manager (systemd keeps "
                                          "it across 'systemctl restart' and a restart after a crash, not across a stop "
                                          "and start or a reboot, nor for more linked credentials than "
                                          "FileDescriptorStoreMax=; without systemd nothing keeps it)");
        }
}

int credential_link_unlink(Credential *cred, bool save) {
        assert(cred);

        if (cred->record->link_format)
                (void) link_fdstore_notify(cred->record->id, false, -EBADF);
        credential_link_free(cred);
        if (!cred->record->link_format)
                return 0;
        (void) credential_record_set_link(cred->record, NULL, NULL, NULL);
        credential_emit_changed(cred);
        return save ? credential_save(cred) : 0;
}

void credential_link_free(Credential *cred) {
        cred->link = link_free_one(cred->link);
}

void credential_link_write_back(Credential *cred) {
        CredentialLink *l = cred->link;

        if (l && l->state == LINK_DETACHED) {
                _cleanup_free_ char *cmd = link_relink_command(cred);
                /* Refreshing goes on (the credential's own login would run out otherwise, and kiroctl status
                 * says why), but every refresh says what it costs and how to stop it. */
                log_credential_event(LOG_WARNING, KIROD_MESSAGE_LINK_DETACHED, cred->record->id, "detached",
                                     "Credential '%s' was refreshed while detached from its linked source '%s': the "
                                     "source still holds the refresh token this refresh replaced, so %s has to log in "
                                     "again unless the credential is linked again before it next refreshes (that "
                                     "writes the new token there): %s", cred->record->id,
                                     strna(cred->record->link_path ?: cred->record->link_name),
                                     l->format == IMPORT_KIRO_CLI_SQLITE ? "kiro-cli" : "the Kiro IDE", strna(cmd));
                return;
        }
        if (!l || (l->state != LINK_FOLLOWING && l->state != LINK_WRITE_PENDING))
                return;         /* a changed, missing or invalid source is never written */
        link_try_write(cred);
}
