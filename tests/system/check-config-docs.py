#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Every configuration key a daemon parses is in its default configuration file (commented out, in
the right section) and in its man page, and neither documents a key the daemon does not parse.

    check-config-docs.py SOURCE.c CONF_FILE MAN_PAGE.scd

The keys are read from the ConfigItem table in SOURCE.c: lines like { "Section", "Key", parser, &x }.
"""

import re
import sys


def table_keys(source):
        text = open(source).read()
        return set(re.findall(r'\{\s*"([A-Za-z]+)",\s*"([A-Za-z]+)",\s*[a-z0-9_]*parse[a-z0-9_]*,', text))


def conf_keys(path):
        keys, section = set(), None
        for line in open(path):
                line = line.strip()
                m = re.fullmatch(r'\[([A-Za-z]+)\]', line)
                if m:
                        section = m.group(1)
                        continue
                m = re.fullmatch(r'#([A-Za-z]+)=.*', line)
                if m and section:
                        keys.add((section, m.group(1)))
        return keys


def man_keys(path):
        keys, section = set(), None
        for line in open(path):
                m = re.match(r'# \[([A-Za-z]+)\] SECTION', line)
                if m:
                        section = m.group(1)
                        continue
                if line.startswith('# '):
                        section = None
                        continue
                if section and not line.startswith('\t'):
                        for k in re.findall(r'\*([A-Za-z]+)=\*', line):
                                keys.add((section, k))
        return keys


def main():
        source, conf, man = sys.argv[1:4]
        want = table_keys(source)
        if not want:
                print(f"no configuration table found in {source}")
                return 1
        bad = 0
        for name, have in ((conf, conf_keys(conf)), (man, man_keys(man))):
                for s, k in sorted(want - have):
                        print(f"{name}: [{s}] {k}= is parsed by {source} but not documented")
                        bad = 1
                for s, k in sorted(have - want):
                        print(f"{name}: [{s}] {k}= is documented but {source} does not parse it")
                        bad = 1
        if not bad:
                print(f"{len(want)} keys of {source} documented in {conf} and {man}")
        return bad


if __name__ == "__main__":
        sys.exit(main())
