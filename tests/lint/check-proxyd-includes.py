#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The include rules of kiro-proxyd's pipeline (docs/ARCHITECTURE.md), checked from the #include lines.

  api/ (front ends)      include no back end (kiro/, kimi/)
  kiro/, kimi/ (back ends) include no front end (api/), no other back end, and of chat/ only the form:
                         chat-conversation.h, chat-event.h, chat-backend.h, chat-catalog.h, chat-failure.h,
                         chat-tokens.h, chat-metrics.h
  chat/ (the form)       includes no api/, back end, auth/ or http/ (except chat.c/chat.h: http/http.h)
  http/ (HTTP server)    includes no api/, chat/, back end or auth/
  nothing                includes kiro-proxyd.c

Usage: check-proxyd-includes.py KIRO_PROXYD_DIR [OTHER_DIR...]; in the other directories (tests, benchmarks)
only the last rule applies. Exit 0 when clean, 1 listing every violation."""

import os
import re
import sys

BACKENDS = ("kiro", "kimi")
FORM = {"chat-conversation.h", "chat-event.h", "chat-backend.h", "chat-catalog.h", "chat-failure.h", "chat-tokens.h",
        "chat-metrics.h"}
INCLUDE = re.compile(r'^\s*#\s*include\s*[<"]([^">]+)[">]')


def violation(path, target):
    """Why 'path' (relative to kiro-proxyd/) may not include 'target', or None."""
    folder, name = (path.split("/", 1) + [""])[:2] if "/" in path else ("", path)
    if os.path.basename(target) == "kiro-proxyd.c":
        return "nothing includes kiro-proxyd.c"
    tfolder = target.split("/", 1)[0] if "/" in target else ""
    tname = os.path.basename(target)
    if folder == "api" and tfolder in BACKENDS:
        return "a front end (api/) includes no back end"
    if folder in BACKENDS:
        if tfolder == "api":
            return "a back end includes no front end (api/)"
        if tfolder in BACKENDS and tfolder != folder:
            return "a back end includes no other back end"
        if tfolder == "chat" and tname not in FORM:
            return "a back end includes only the form of chat/ (%s)" % ", ".join(sorted(FORM))
    if folder == "chat":
        if tfolder in ("api", "auth") + BACKENDS:
            return "chat/ includes no front end, back end or auth/"
        if tfolder == "http" and not (name in ("chat.c", "chat.h") and target == "http/http.h"):
            return "of http/, only chat.c and chat.h include http/http.h"
    if folder == "http" and tfolder in ("api", "chat", "auth") + BACKENDS:
        return "the HTTP layer knows no API, chat, back end or token cache"
    return None


def self_test():
    bad = [("api/api-openai.c", "kiro/kiro-request.h"), ("api/api-x.c", "kimi/kimi.h"),
           ("kiro/kiro-stream.c", "api/api-error.h"), ("kiro/kiro-upstream.h", "chat/chat.h"),
           ("kiro/kiro-upstream.c", "kimi/kimi-upstream.h"), ("chat/chat.c", "kiro/kiro-upstream.h"),
           ("chat/chat-event.h", "http/http.h"), ("chat/chat.c", "api/api-error.h"),
           ("http/http-server.c", "api/api-error.h"), ("http/http-server.c", "chat/chat.h"),
           ("http/http-listen.c", "auth/auth-tokencache.h"), ("api/api-openai.c", "kiro-proxyd.c")]
    good = [("api/api-openai.c", "chat/chat.h"), ("api/api-error.h", "http/http.h"),
            ("kiro/kiro-upstream.h", "chat/chat-backend.h"), ("kiro/kiro-upstream.h", "auth/auth-tokencache.h"),
            ("chat/chat.h", "http/http.h"), ("chat/chat.c", "chat/chat.h"), ("kiro-proxyd.c", "kiro/kiro-upstream.h"),
            ("http/http-server.c", "http/http.h"), ("kiro/kiro-stream.c", "json-util.h")]
    for path, target in bad:
        assert violation(path, target), (path, target)
    for path, target in good:
        assert not violation(path, target), (path, target, violation(path, target))


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    self_test()
    problems = []
    n_files = 0
    for i, top in enumerate(sys.argv[1:]):
        n, p = check_tree(top, proxyd=(i == 0))
        n_files += n
        problems += p
    if n_files == 0:
        print("no sources under %s" % " ".join(sys.argv[1:]), file=sys.stderr)
        return 1
    for p in problems:
        print(p)
    print("%d files checked, %d include rule violations" % (n_files, len(problems)))
    return 1 if problems else 0


def check_tree(top, proxyd):
    problems = []
    n_files = 0
    for root, _, files in os.walk(top):
        for f in sorted(files):
            if not f.endswith((".c", ".h")):
                continue
            full = os.path.join(root, f)
            rel = os.path.relpath(full, top)
            n_files += 1
            with open(full, encoding="utf-8", errors="replace") as fh:
                for lineno, line in enumerate(fh, 1):
                    m = INCLUDE.match(line)
                    if not m:
                        continue
                    if proxyd:
                        why = violation(rel, m.group(1))
                    elif os.path.basename(m.group(1)) == "kiro-proxyd.c":
                        why = "nothing includes kiro-proxyd.c"
                    else:
                        why = None
                    if why:
                        problems.append("%s:%d: includes %s: %s" % (full, lineno, m.group(1), why))
    return n_files, problems


if __name__ == "__main__":
    sys.exit(main())
