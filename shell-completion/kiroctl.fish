# SPDX-License-Identifier: LGPL-2.1-or-later
# fish completion for kiroctl(1): verbs, options, and credential ids from kiro-authd ('kiroctl list').

function __kiroctl_ids
        # The bus the command line talks to; the last of --user/--system wins.
        set -l bus
        for w in (commandline -opc)
                switch $w
                        case --user --system
                                set bus $w
                end
        end
        kiroctl $bus --no-legend --no-pager list 2>/dev/null | string replace -r '\s.*$' ''
end

set -l __kiroctl_verbs status list import login refresh remove enable disable usage models top
set -l __kiroctl_id_verbs status refresh remove enable disable usage

complete -c kiroctl -f
complete -c kiroctl -n "not __fish_seen_subcommand_from $__kiroctl_verbs" -a status -d 'Show credentials and their health'
complete -c kiroctl -n "not __fish_seen_subcommand_from $__kiroctl_verbs" -a list -d 'List credentials'
complete -c kiroctl -n "not __fish_seen_subcommand_from $__kiroctl_verbs" -a import -d 'Import a credential'
complete -c kiroctl -n "not __fish_seen_subcommand_from $__kiroctl_verbs" -a login -d 'Log in with a device code'
complete -c kiroctl -n '__fish_seen_subcommand_from login; and not __fish_seen_subcommand_from builder-id idc google github kimi' -a 'builder-id idc google github kimi' -d 'Login'
complete -c kiroctl -n '__fish_seen_subcommand_from login' -l start-url -x -d 'IAM Identity Center start URL'
complete -c kiroctl -n '__fish_seen_subcommand_from login' -l region -x -d 'IAM Identity Center region'
complete -c kiroctl -n '__fish_seen_subcommand_from login' -l id -x -d 'Name the new credential'
complete -c kiroctl -n '__fish_seen_subcommand_from login' -l replace -d 'Log in again into an existing credential'
complete -c kiroctl -n '__fish_seen_subcommand_from login' -l no-wait -d 'Print the login id and return'
complete -c kiroctl -n "not __fish_seen_subcommand_from $__kiroctl_verbs" -a refresh -d 'Refresh the access token now'
complete -c kiroctl -n "not __fish_seen_subcommand_from $__kiroctl_verbs" -a remove -d 'Remove a credential'
complete -c kiroctl -n "not __fish_seen_subcommand_from $__kiroctl_verbs" -a enable -d 'Let a credential be used'
complete -c kiroctl -n "not __fish_seen_subcommand_from $__kiroctl_verbs" -a disable -d 'Stop using a credential'
complete -c kiroctl -n "not __fish_seen_subcommand_from $__kiroctl_verbs" -a usage -d 'Show credits used and left'
complete -c kiroctl -n "not __fish_seen_subcommand_from $__kiroctl_verbs" -a top -d 'Redraw the status table every few seconds'
complete -c kiroctl -n "__fish_seen_subcommand_from top" -l interval -r -d 'Seconds between frames'
complete -c kiroctl -n "__fish_seen_subcommand_from top" -l iterations -r -d 'Frames to show'
complete -c kiroctl -n "__fish_seen_subcommand_from $__kiroctl_id_verbs" -a '(__kiroctl_ids)' -d 'Credential'

complete -c kiroctl -s h -l help -d 'Show the help'
complete -c kiroctl -l version -d 'Show the version'
complete -c kiroctl -l json -d 'Print JSON'
complete -c kiroctl -l system -d 'Talk to kiro-authd on the system bus'
complete -c kiroctl -l user -d 'Talk to kiro-authd on the session bus'
complete -c kiroctl -l no-pager -d 'Do not pipe output into a pager'
complete -c kiroctl -l no-legend -d 'Print no column headers and no summary line'
complete -c kiroctl -n '__fish_seen_subcommand_from import' -l from-kiro-cli -d 'Import the login of kiro-cli'
complete -c kiroctl -n '__fish_seen_subcommand_from import' -l from-kiro-ide -d 'Import the login of the Kiro IDE'
complete -c kiroctl -n '__fish_seen_subcommand_from import' -l refresh-token-file -rF -d 'Import a bare refresh token'
complete -c kiroctl -n '__fish_seen_subcommand_from import' -l api-key-file -rF -d 'Import a Kiro API key'
complete -c kiroctl -n '__fish_seen_subcommand_from import' -l db -rF -d 'The kiro-cli database'
complete -c kiroctl -n '__fish_seen_subcommand_from import' -l file -rF -d 'The Kiro IDE token file'
complete -c kiroctl -n '__fish_seen_subcommand_from import' -l id -x -d 'Name the imported credential'
complete -c kiroctl -n '__fish_seen_subcommand_from import' -l region -x -d 'Override the region of the login'
complete -c kiroctl -n '__fish_seen_subcommand_from import' -l egress-proxy -x -d 'Reach Kiro through this proxy for this credential'
complete -c kiroctl -n '__fish_seen_subcommand_from import' -l replace -d 'Replace a credential with the same id'
complete -c kiroctl -n '__fish_seen_subcommand_from import' -l link -d 'Follow the Kiro IDE token file instead of copying it'
