# Helpers shared by the benchmarks' run.sh scripts; sourced, not run. The sourcing script
# defines die (and log) and WORK, its temporary directory, before calling these.
# shellcheck shell=bash

# apt_install PACKAGE...: installs what a benchmark lacks from Debian's packages (root, or sudo).
apt_install() {
    (($#)) || return 0
    log "installing $*"
    local sudo=""
    [[ $(id -u) -eq 0 ]] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

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

# wait_http URL WHAT [PID] [SECONDS]: poll until URL answers 2xx (SECONDS at most, default 20).
wait_http() {
    local url=$1 what=$2 pid=${3:-} secs=${4:-20}
    for _ in $(seq $((secs * 20))); do
        curl -sf -o /dev/null --max-time 1 "$url" && return 0
        if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
            die "$what exited before it was ready (logs in $WORK)"
        fi
        sleep 0.05
    done
    die "$what not ready at $url after $secs s (logs in $WORK)"
}

# proc_tree PID: PID and all its descendants, one per line.
proc_tree() {
    local c
    echo "$1"
    for c in $(pgrep -P "$1" || true); do proc_tree "$c"; done
}

# tree_cpu_ns PID: CPU time used so far by PID and its descendants (all threads), in ns, from
# /proc/*/task/*/schedstat. A child that exits between two readings takes its time with it.
tree_cpu_ns() {
    local total=0 p f v
    for p in $(proc_tree "$1"); do
        for f in /proc/"$p"/task/*/schedstat; do
            read -r v _ 2>/dev/null <"$f" && total=$((total + v))
        done
    done
    echo "$total"
}

# tree_rss_kb PID: the sum of VmRSS over PID and its descendants, in KB (pages shared between
# them count once per process).
tree_rss_kb() {
    local total=0 p v
    for p in $(proc_tree "$1"); do
        v=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || true)
        total=$((total + ${v:-0}))
    done
    echo "$total"
}
