#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# kiroctl's completions (shell-completion/) loaded by bash (with bash-completion), zsh (compinit, in a
# pseudo-terminal) and fish: each must complete a verb and a credential id. The ids come from a fake
# kiroctl on PATH, which prints what 'kiroctl list' prints on a pipe and records its arguments (so the
# test also sees that --user on the command line reaches the bus the ids are read from).
#
#   tests/completion/test-completion.sh SOURCE_DIR
#
# Exit status: 0 pass, 1 fail, 77 skipped (no shell of the three is installed, nor installable).
set -uo pipefail

src=$(cd "$1" && pwd)
comp=$src/shell-completion
here=$src/tests/completion

missing=()
for s in bash zsh fish; do
        command -v $s >/dev/null || missing+=($s)
done
[ -f /usr/share/bash-completion/bash_completion ] || missing+=(bash-completion)
if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" -eq 0 ]; then
        . "$src/tools/deps.sh"
        kirod_install_deps bash-completion zsh fish >/dev/null 2>&1 || true
fi
for s in bash zsh fish; do
        command -v $s >/dev/null || { echo "SKIP: $s is not installed (Debian: apt-get install $s)"; exit 77; }
done
[ -f /usr/share/bash-completion/bash_completion ] ||
        { echo "SKIP: bash-completion is not installed (Debian: apt-get install bash-completion)"; exit 77; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/bin" "$work/zsh"
cat >"$work/bin/kiroctl" <<EOS
#!/bin/sh
echo "\$*" >>"$work/calls"
printf 'main         kiro social active\nwork-2       kiro idc    needs-login\n'
EOS
chmod +x "$work/bin/kiroctl"
cp "$comp/_kiroctl" "$work/zsh/_kiroctl"
export PATH=$work/bin:$PATH

fails=0
# expect SHELL 'COMMAND LINE' 'EXPECTED MATCHES (sorted, space-separated)' [ARGUMENTS THE FAKE MUST GET]
expect() {
        local sh=$1 line=$2 want=$3 want_call=${4:-} got
        : >"$work/calls"
        case $sh in
        bash)
                got=$(bash --norc --noprofile -c '
                        . /usr/share/bash-completion/bash_completion
                        . "$1"
                        read -r -a COMP_WORDS <<<"$2"
                        [[ $2 == *" " ]] && COMP_WORDS+=("")
                        COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
                        COMP_LINE=$2
                        COMP_POINT=${#COMP_LINE}
                        $(complete -p kiroctl | sed -n "s/.*-F \([^ ]*\) .*/\1/p") kiroctl "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
                        printf "%s\n" "${COMPREPLY[@]}"' bash "$comp/kiroctl.bash" "$line")
                ;;
        zsh)
                got=$(timeout 60 zsh -f "$here/zsh-complete.zsh" "$work/zsh" "$line")
                ;;
        fish)
                got=$(fish --no-config -c 'source $argv[1]; complete -C $argv[2]' "$comp/kiroctl.fish" "$line" |
                      cut -f1)
                ;;
        esac
        got=$(printf '%s\n' "$got" | sed '/^$/d' | sort -u | tr '\n' ' ' | sed 's/ $//')
        if [ "$got" != "$want" ]; then
                echo "FAIL: $sh: '$line<TAB>' offers '$got', expected '$want'"
                fails=$((fails + 1))
                return
        fi
        if [ -n "$want_call" ] && ! grep -qxF -- "$want_call" "$work/calls"; then
                echo "FAIL: $sh: '$line<TAB>' ran kiroctl as '$(tr '\n' ';' <"$work/calls")', expected '$want_call'"
                fails=$((fails + 1))
                return
        fi
        echo "ok: $sh: '$line<TAB>' offers '$got'"
}

for sh in bash zsh fish; do
        expect $sh 'kiroctl st' 'status'
        expect $sh 'kiroctl re' 'refresh remove'
        expect $sh 'kiroctl status ' 'main work-2' '--no-legend --no-pager list'
        expect $sh 'kiroctl --user refresh w' 'work-2' '--user --no-legend --no-pager list'
        expect $sh 'kiroctl import --from-kiro-c' '--from-kiro-cli'
        expect $sh 'kiroctl to' 'top'
        expect $sh 'kiroctl top --inte' '--interval'
done

[ "$fails" -eq 0 ] || { echo "$fails completion checks failed"; exit 1; }
echo "PASS"
