/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* kiroctl's import sources: Kiro IDE files, token files and stdin, kiro-cli's default location. */
#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>

#include "fileio.h"
#include "kiroctl-import.h"
#include "kiroctl-snapshot.h"
#include "tests.h"

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        (void) remove(path);
        return 0;
}

static char *make_tmpdir(void) {
        char *d = strdup("/tmp/test-kiroctl-import.XXXXXX");
        ASSERT_NOT_NULL(d);
        ASSERT_NOT_NULL(mkdtemp(d));
        return d;
}

static void rm_rf(char *path) {
        (void) nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
        free(path);
}

static char *write_in(const char *dir, const char *name, const char *text) {
        char *p;
        int fd;

        ASSERT_TRUE(asprintf(&p, "%s/%s", dir, name) >= 0);
        fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        ASSERT_TRUE(fd >= 0);
        ASSERT_EQ(write(fd, text, strlen(text)), (ssize_t) strlen(text));
        close(fd);
        return p;
}

/* The fd is a sealed memfd holding exactly text. */
static void assert_sealed_with(int fd, const char *text) {
        char *buf = NULL;
        size_t size = 0;
        struct stat st;

        ASSERT_TRUE(fd >= 0);
        ASSERT_EQ(fcntl(fd, F_GET_SEALS), F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL);
        ASSERT_OK(fstat(fd, &st));
        ASSERT_TRUE(S_ISREG(st.st_mode));       /* what kiro-authd insists on */
        ASSERT_EQ(lseek(fd, 0, SEEK_CUR), 0);
        ASSERT_OK(read_full_fd(fd, 1 << 20, &buf, &size));
        ASSERT_EQ(size, strlen(text));
        ASSERT_TRUE(memcmp(buf, text, size) == 0);
        ASSERT_EQ(lseek(fd, 0, SEEK_SET), 0);
        free(buf);
}

#define SOCIAL "{\"accessToken\":\"at\",\"refreshToken\":\"rt\",\"expiresAt\":\"2025-12-31T02:32:45.144Z\"," \
               "\"authMethod\":\"social\",\"provider\":\"Google\"}"
#define IDC "{\"accessToken\":\"at\",\"refreshToken\":\"rt\",\"clientIdHash\":\"0a1b2c\",\"authMethod\":\"IdC\"}"
#define REG "{\"clientId\":\"cid\",\"clientSecret\":\"cs\",\"expiresAt\":\"2026-03-01T00:00:00.000Z\"}"

TEST(ide_social) {
        char *dir = make_tmpdir(), *token = write_in(dir, "kiro-auth-token.json", SOCIAL), *reg_path = (char *) 1;
        ErrorInfo e = ERROR_INFO_NULL;
        int fd = -1, reg = 123;

        ASSERT_OK(import_kiro_ide(token, &e, &fd, &reg, &reg_path));
        assert_sealed_with(fd, SOCIAL);
        ASSERT_EQ(reg, -EBADF);
        ASSERT_NULL(reg_path);
        close(fd);

        free(token);
        rm_rf(dir);
}

TEST(ide_idc_with_registration) {
        char *dir = make_tmpdir(), *token = write_in(dir, "kiro-auth-token.json", IDC), *reg_file, *reg_path = NULL;
        ErrorInfo e = ERROR_INFO_NULL;
        int fd = -1, reg = -1;

        reg_file = write_in(dir, "0a1b2c.json", REG);
        ASSERT_OK(import_kiro_ide(token, &e, &fd, &reg, &reg_path));
        assert_sealed_with(fd, IDC);
        assert_sealed_with(reg, REG);
        ASSERT_STREQ(reg_path, reg_file);

        /* What is sent is what was read: changing the files now changes nothing. */
        free(write_in(dir, "kiro-auth-token.json", SOCIAL));
        assert_sealed_with(fd, IDC);

        close(fd);
        close(reg);
        free(reg_path);
        free(reg_file);
        free(token);
        rm_rf(dir);
}

TEST(ide_missing_registration) {
        char *dir = make_tmpdir(), *token = write_in(dir, "kiro-auth-token.json", IDC), *expected, *m = NULL;
        ErrorInfo e = ERROR_INFO_NULL;
        int fd = -1, reg = -1, status;

        ASSERT_ERROR(import_kiro_ide(token, &e, &fd, &reg, NULL), ENOENT);
        ASSERT_EQ(fd, -1);
        ASSERT_EQ(e.context, ERROR_CONTEXT_KIRO_IDE_REG);
        ASSERT_TRUE(asprintf(&expected, "%s/0a1b2c.json", dir) >= 0);
        ASSERT_STREQ(e.path, expected);
        ASSERT_STREQ(e.extra, token);

        status = error_info_format(&e, &m);
        ASSERT_EQ(status, KIROCTL_EXIT_FAILURE);
        free(expected);
        ASSERT_TRUE(asprintf(&expected, "client registration '%s/0a1b2c.json', named by clientIdHash in '%s', not "
                                        "found. Log in again in the Kiro IDE.", dir, token) >= 0);
        ASSERT_STREQ(m, expected);

        free(m);
        free(expected);
        error_info_done(&e);
        free(token);
        rm_rf(dir);
}

TEST(ide_bad_files) {
        char *dir = make_tmpdir(), *token;
        ErrorInfo e = ERROR_INFO_NULL;
        int fd = -1, reg = -1;

        /* clientIdHash must name a file beside the token, nothing else. */
        token = write_in(dir, "kiro-auth-token.json", "{\"clientIdHash\":\"../../etc/passwd\"}");
        ASSERT_ERROR(import_kiro_ide(token, &e, &fd, &reg, NULL), EBADMSG);
        ASSERT_EQ(e.context, ERROR_CONTEXT_KIRO_IDE_REG);
        ASSERT_STREQ(e.detail, "clientIdHash is not a file name");
        free(token);

        token = write_in(dir, "kiro-auth-token.json", "{\"clientIdHash\":42}");
        ASSERT_ERROR(import_kiro_ide(token, &e, &fd, &reg, NULL), EBADMSG);
        ASSERT_STREQ(e.detail, "clientIdHash is not a string");
        free(token);

        token = write_in(dir, "kiro-auth-token.json", "{\"accessToken\": \"x\", ");
        ASSERT_ERROR(import_kiro_ide(token, &e, &fd, &reg, NULL), EBADMSG);
        ASSERT_EQ(e.context, ERROR_CONTEXT_KIRO_IDE);
        ASSERT_NOT_NULL(e.detail);
        free(token);

        token = write_in(dir, "kiro-auth-token.json", "[1, 2]");
        ASSERT_ERROR(import_kiro_ide(token, &e, &fd, &reg, NULL), EMEDIUMTYPE);
        free(token);

        token = write_in(dir, "kiro-auth-token.json", "");
        ASSERT_ERROR(import_kiro_ide(token, &e, &fd, &reg, NULL), ENODATA);
        free(token);

        ASSERT_ERROR(import_kiro_ide("/nonexistent/kiro-auth-token.json", &e, &fd, &reg, NULL), ENOENT);
        ASSERT_EQ(e.context, ERROR_CONTEXT_KIRO_IDE);
        ASSERT_STREQ(e.path, "/nonexistent/kiro-auth-token.json");

        ASSERT_ERROR(import_kiro_ide(dir, &e, &fd, &reg, NULL), EISDIR);
        ASSERT_EQ(fd, -1);
        ASSERT_EQ(reg, -1);

        error_info_done(&e);
        rm_rf(dir);
}

TEST(token_file) {
        char *dir = make_tmpdir(), *p = write_in(dir, "rt", "aorAAAAAG-refresh\n"), *big;
        ErrorInfo e = ERROR_INFO_NULL;
        int fd = -1;

        ASSERT_OK(import_read_file(p, SECRET_FILE_MAX, NULL, ERROR_CONTEXT_INPUT_FILE, &e, &fd));
        assert_sealed_with(fd, "aorAAAAAG-refresh\n");
        close(fd);
        fd = -1;

        ASSERT_ERROR(import_read_file(p, 8, NULL, ERROR_CONTEXT_INPUT_FILE, &e, &fd), EFBIG);
        ASSERT_EQ(e.context, ERROR_CONTEXT_INPUT_FILE);
        ASSERT_STREQ(e.path, p);
        ASSERT_STREQ(e.detail, "over 0 KiB");
        free(p);

        p = write_in(dir, "empty", "");
        ASSERT_ERROR(import_read_file(p, SECRET_FILE_MAX, NULL, ERROR_CONTEXT_INPUT_FILE, &e, &fd), ENODATA);
        ASSERT_EQ(fd, -1);
        free(p);

        ASSERT_ERROR(import_read_file(dir, SECRET_FILE_MAX, NULL, ERROR_CONTEXT_INPUT_FILE, &e, &fd), EISDIR);

        /* Just over the limit through a pipe (no size to stat): still refused. */
        big = malloc(SECRET_FILE_MAX + 2);
        memset(big, 'x', SECRET_FILE_MAX + 1);
        big[SECRET_FILE_MAX + 1] = 0;
        p = write_in(dir, "big", big);
        ASSERT_ERROR(import_read_file(p, SECRET_FILE_MAX, NULL, ERROR_CONTEXT_INPUT_FILE, &e, &fd), EFBIG);
        free(p);
        free(big);

        error_info_done(&e);
        rm_rf(dir);
}

TEST(token_from_stdin_pipe) {
        ErrorInfo e = ERROR_INFO_NULL;
        int pipefd[2], saved, fd = -1;

        /* A pipe cannot go to kiro-authd (it would block its event loop): kiroctl reads it. */
        ASSERT_OK(pipe2(pipefd, O_CLOEXEC));
        ASSERT_EQ(write(pipefd[1], "ksk_apikey", 10), 10);
        close(pipefd[1]);
        saved = dup(STDIN_FILENO);
        ASSERT_TRUE(saved >= 0);
        ASSERT_OK(dup2(pipefd[0], STDIN_FILENO));
        close(pipefd[0]);

        ASSERT_OK(import_read_file("-", SECRET_FILE_MAX, "prompt", ERROR_CONTEXT_INPUT_FILE, &e, &fd));
        assert_sealed_with(fd, "ksk_apikey");
        close(fd);

        /* At EOF now: empty. */
        ASSERT_ERROR(import_read_file("-", SECRET_FILE_MAX, "prompt", ERROR_CONTEXT_INPUT_FILE, &e, &fd), ENODATA);
        ASSERT_STREQ(e.path, "-");

        ASSERT_OK(dup2(saved, STDIN_FILENO));
        close(saved);
        error_info_done(&e);
}

TEST(kiro_cli_default_missing) {
        char *dir = make_tmpdir(), *expected;
        ErrorInfo e = ERROR_INFO_NULL;
        char *path = NULL;
        int fd = -1;

        ASSERT_OK(setenv("XDG_DATA_HOME", dir, 1));
        ASSERT_ERROR(import_kiro_cli(NULL, &e, &fd, &path), ENOENT);
        ASSERT_EQ(e.context, ERROR_CONTEXT_KIRO_CLI_DEFAULT);
        ASSERT_TRUE(asprintf(&expected, "%s/kiro-cli/data.sqlite3", dir) >= 0);
        ASSERT_STREQ(e.path, expected);
        ASSERT_NULL(path);
        free(expected);

        /* --db: relative paths are made absolute for the message and for source_path. */
        ASSERT_OK(chdir(dir));
        ASSERT_ERROR(import_kiro_cli("nope.sqlite3", &e, &fd, &path), ENOENT);
        ASSERT_EQ(e.context, ERROR_CONTEXT_KIRO_CLI_DB);
        ASSERT_TRUE(asprintf(&expected, "%s/nope.sqlite3", dir) >= 0);
        ASSERT_STREQ(e.path, expected);
        free(expected);
        ASSERT_OK(chdir("/"));

        error_info_done(&e);
        rm_rf(dir);
}
