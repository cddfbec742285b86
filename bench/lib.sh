# Helpers shared by the benchmarks' run.sh scripts; sourced, not run. The sourcing script
# defines die (and log) and WORK, its temporary directory, before calling these.
# shellcheck shell=bash

USED_PORTS=" "
# pick_port VAR: a free loopback port below the ephemeral range, not handed out before.
pick_port() {
    local p
    for _ in $(seq 500); do
        p=$((20000 + RANDOM % 12000))
        [[ $USED_PORTS == *" $p "* ]] && continue
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            USED_PORTS+="$p "
            printf -v "$1" '%s' "$p"
            return 0
        fi
    done
    die "no free port found"
}

# wait_http URL WHAT [PID]: poll until URL answers 2xx (20 s at most).
wait_http() {
    local url=$1 what=$2 pid=${3:-}
    for _ in $(seq 400); do
        curl -sf -o /dev/null --max-time 1 "$url" && return 0
        if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
            die "$what exited before it was ready (logs in $WORK)"
        fi
        sleep 0.05
    done
    die "$what not ready at $url after 20 s (logs in $WORK)"
}
