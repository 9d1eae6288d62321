/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Linked Kiro IDE token files (authd-link.h). */
#include <assert.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "authd-ids.h"
#include "authd-import.h"
#include "authd-link.h"
#include "fileio.h"
#include "json-util.h"
#include "log.h"

#define LINK_FILE_MAX (1024U * 1024U)

static const char *const link_state_table[_LINK_STATE_MAX] = {
        [LINK_FOLLOWING] = "following",
        [LINK_SOURCE_CHANGED] = "source-changed",
        [LINK_SOURCE_MISSING] = "source-missing",
        [LINK_SOURCE_INVALID] = "source-invalid",
};

const char *link_state_to_string(LinkState s) {
        return s >= 0 && s < _LINK_STATE_MAX ? link_state_table[s] : NULL;
}

const char *credential_link_state(Credential *cred) {
        return cred->link ? link_state_to_string(cred->link->state) : "";
}

static void link_set(Credential *cred, LinkState s, const char *message) {
        CredentialLink *l = cred->link;
        bool changed = l->state != s;
        l->state = s;
        (void) free_and_strdup(&l->message, message);
        if (changed) {
                if (s == LINK_FOLLOWING)
                        log_info("Credential '%s' follows its source '%s' again.", cred->record->id, l->name);
                else
                        log_warning("Credential '%s': its source '%s' is %s: %s.", cred->record->id, l->name,
                                    link_state_to_string(s), strna(message));
                credential_emit_changed(cred);
        }
}

/* Reads the token file through the directory fd: never a symlink, only a regular file, size capped. */
static int link_read(CredentialLink *l, char **ret, size_t *ret_size) {
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

static void link_reread(Credential *cred) {
        CredentialLink *l = cred->link;
        _cleanup_free_ char *message = NULL;
        CredentialRecord *c = NULL;
        char *buf = NULL, hash[65] = "";
        size_t size = 0;
        int r;

        r = link_read(l, &buf, &size);
        if (r == -ELOOP)
                return link_set(cred, LINK_SOURCE_CHANGED, "it is a symlink now, which is not followed");
        if (r == -ENOENT)
                return link_set(cred, LINK_SOURCE_MISSING, "it was deleted or renamed; the credential keeps its login");
        if (r < 0)
                return link_set(cred, LINK_SOURCE_INVALID, r == -EBADFD ? "not a regular file" : strerror(-r));

        r = import_kiro_ide_json(buf, size, NULL, 0, &c, &message);
        erase_and_free_sized(buf, size);
        if (r != 0) {
                credential_record_free(c);
                return link_set(cred, LINK_SOURCE_INVALID, message ?: "not a Kiro IDE login");
        }
        if (c->method != cred->record->method || credential_record_account_hash(c, hash) < 0 ||
            !streq(hash, l->account)) {
                credential_record_free(c);
                return link_set(cred, LINK_SOURCE_CHANGED,
                                "another account logged in there; import it separately (kiroctl import --from-kiro-ide)");
        }
        if (streq_ptr(c->refresh_token, cred->record->refresh_token)) {
                credential_record_free(c);
                return link_set(cred, LINK_FOLLOWING, NULL);
        }
        /* A newer login of the same account (the IDE refreshed or logged in again): take it. */
        log_info("Credential '%s' takes the login its source '%s' holds now.", cred->record->id, l->name);
        r = manager_replace_login(cred->manager, cred, c);
        if (r < 0)
                return link_set(cred, LINK_SOURCE_INVALID, "its new login could not be stored");
        link_set(cred, LINK_FOLLOWING, NULL);
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
                        if (e->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED | IN_Q_OVERFLOW))
                                ours = true;
                        else if (e->len > 0 && streq(e->name, l->name))
                                ours = true;
                        p += sizeof *e + e->len;
                }
        }
        if (ours)
                link_reread(cred);
        return 0;
}

int credential_link_attach(Credential *cred, int dir_fd, const char *name) {
        _cleanup_close_ int dfd = -EBADF, ifd = -EBADF;
        char path[64], hash[65] = "";
        struct stat st;
        int r;

        assert(cred);
        assert(name);

        if (isempty(name) || strchr(name, '/') || streq(name, ".") || streq(name, "..") || strlen(name) > 255)
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
        if (inotify_add_watch(ifd, path, IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE |
                                                 IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR) < 0)
                return -errno;

        credential_link_free(cred);
        CredentialLink *l = calloc(1, sizeof *l);
        if (!l)
                return -ENOMEM;
        *l = (CredentialLink) { .dir_fd = -EBADF, .inotify_fd = -EBADF, .state = LINK_FOLLOWING };
        l->name = strdup(name);
        if (!l->name) {
                free(l);
                return -ENOMEM;
        }
        r = sd_event_add_io(cred->manager->event, &l->io, ifd, EPOLLIN, on_inotify, cred);
        if (r < 0) {
                free(l->name);
                free(l);
                return r;
        }
        l->dir_fd = TAKE_FD(dfd);
        l->inotify_fd = TAKE_FD(ifd);
        memcpy(l->account, hash, sizeof hash);
        cred->link = l;
        credential_emit_changed(cred);
        return 0;
}

void credential_link_free(Credential *cred) {
        CredentialLink *l = cred->link;
        if (!l)
                return;
        sd_event_source_disable_unref(l->io);
        safe_close(l->inotify_fd);
        safe_close(l->dir_fd);
        free(l->name);
        free(l->message);
        free(l);
        cred->link = NULL;
}

void credential_link_write_back(Credential *cred) {
        CredentialLink *l = cred->link;
        CredentialRecord *c = cred->record;
        _cleanup_json_ json_object *o = NULL;
        _cleanup_(credential_record_freep) CredentialRecord *there = NULL;
        _cleanup_free_ char *message = NULL;
        const char *perr = NULL;
        char *buf = NULL, *out = NULL, hash[65] = "", ts[64];
        size_t size = 0, out_size = 0;
        int r;

        if (!l || l->state != LINK_FOLLOWING)
                return;         /* a changed or missing source is never written */

        r = link_read(l, &buf, &size);
        if (r >= 0 && import_kiro_ide_json(buf, size, NULL, 0, &there, &message) == 0 &&
            credential_record_account_hash(there, hash) >= 0 && streq(hash, l->account))
                r = json_parse_secret(buf, size, 16, &o, &perr);
        else if (r >= 0)
                r = -EBADMSG;
        erase_and_free_sized(buf, size);
        if (r < 0) {
                log_warning("Credential '%s': not writing its rotated tokens to '%s', which no longer holds its login.",
                            c->id, l->name);
                return;
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
        if (r < 0)
                log_warning_errno(r, "Credential '%s': cannot write its rotated tokens to '%s': %m", c->id, l->name);
        else
                log_debug("Credential '%s': wrote its rotated tokens to '%s'.", c->id, l->name);
}
