# SPDX-License-Identifier: LGPL-2.1-or-later
# bash completion for kiroctl(1): verbs, options, and credential ids from kiro-authd ('kiroctl list').

__kiroctl_ids() {
        # The bus the command line talks to (--user or --system, the last one wins).
        kiroctl "$@" --no-legend --no-pager list 2>/dev/null | while read -r id _; do
                printf '%s\n' "$id"
        done
}

_kiroctl() {
        local cur prev words cword
        if declare -F _init_completion >/dev/null; then
                _init_completion || return
        else
                words=("${COMP_WORDS[@]}")
                cword=$COMP_CWORD
                cur=${COMP_WORDS[COMP_CWORD]}
                prev=${COMP_WORDS[COMP_CWORD - 1]}
        fi

        local verbs='status list import login refresh remove enable disable usage models top'
        local opts='-h --help --version --json --system --user --no-pager --no-legend'
        local login_opts='--start-url --region --id --replace --no-wait'
        local import_opts='--from-kiro-cli --from-kiro-ide --refresh-token-file --api-key-file --db --file
                           --id --region --egress-proxy --replace --link'

        case $prev in
        --refresh-token-file|--api-key-file|--db|--file)
                if declare -F _filedir >/dev/null; then
                        _filedir
                else
                        COMPREPLY=($(compgen -f -- "$cur"))
                fi
                return
                ;;
        --id|--region|--start-url|--egress-proxy|--interval|--iterations)
                return
                ;;
        esac

        local i verb='' nargs=0 bus=()
        for ((i = 1; i < cword; i++)); do
                case ${words[i]} in
                --user|--system)
                        bus=("${words[i]}")
                        ;;
                --refresh-token-file|--api-key-file|--db|--file|--id|--region|--start-url|--egress-proxy|--interval|--iterations)
                        ((i++))
                        ;;
                -*)
                        ;;
                *)
                        if [ -z "$verb" ]; then
                                verb=${words[i]}
                        else
                                ((nargs++))
                        fi
                        ;;
                esac
        done

        if [[ $cur == -* ]]; then
                [ "$verb" = import ] && opts+=" $import_opts"
                [ "$verb" = login ] && opts+=" $login_opts"
                [ "$verb" = top ] && opts+=" --interval --iterations"
                COMPREPLY=($(compgen -W "$opts" -- "$cur"))
                return
        fi
        if [ -z "$verb" ]; then
                COMPREPLY=($(compgen -W "$verbs" -- "$cur"))
                return
        fi
        case $verb in
        login)
                [ "$nargs" -eq 0 ] && COMPREPLY=($(compgen -W "builder-id idc google github kimi" -- "$cur"))
                ;;
        status|refresh|remove|enable|disable|usage)
                [ "$nargs" -eq 0 ] && COMPREPLY=($(compgen -W "$(__kiroctl_ids "${bus[@]}")" -- "$cur"))
                ;;
        esac
}

complete -F _kiroctl kiroctl
