#!/bin/zsh -f
# SPDX-License-Identifier: LGPL-2.1-or-later
# Prints the completions an interactive zsh offers for a command line, one per line:
#   zsh-complete.zsh FPATH_DIR 'kiroctl st'
# It runs zsh in a pseudo-terminal (zpty) with compinit and FPATH_DIR first in $fpath, has compadd also
# write every match it adds to a file, types the line and a TAB, and prints that file.
zmodload zsh/zpty || exit 1
dir=$1 line=$2
tmp=$(mktemp -d) || exit 1
out=$tmp/matches
zpty kz zsh -f -i
zpty -w kz "PS1=''; unsetopt zle_bell; HISTFILE=/dev/null"
zpty -w kz "fpath=(${(q)dir} \$fpath); autoload -Uz compinit; compinit -u -d ${(q)tmp}/zcompdump"
# Matches added directly (not those only asked about with -O, -A or -D).
zpty -w kz "compadd() { if (( \${@[(I)-[OAD]]} == 0 )); then local -a __m; builtin compadd -A __m \"\$@\"; (( \$#__m )) && print -rl -- \$__m >>${(q)out}; fi; builtin compadd \"\$@\"; }"
zpty -w kz "print -r -- READY-\$\$"
# Wait until the setup ran.
local l
for i in {1..100}; do
        zpty -r -t kz l && [[ $l == *READY-[0-9]* ]] && break
        sleep 0.05
done
: >$out
zpty -w -n kz "$line"$'\t'
# The matches are written while completion runs: wait until the file stops growing.
local prev=-1 cur
for i in {1..100}; do
        sleep 0.1
        cur=$(wc -c <$out)
        (( cur > 0 && cur == prev )) && break
        prev=$cur
done
zpty -d kz
sort -u $out
rm -rf $tmp
