#!/usr/bin/env bash
# The 12-shot throughput run on one lent GPU machine, longer than one call's 600 s: a warm-up, then the batch on the
# warmed node, in one background job that outlives the calls (a process in its own session runs on until the
# machine goes back) and that later calls watch. Each call starts within 30 s of the last one's end.
#
#   call 1, carrying .devbundle/setup.sh and .devbundle/site312-core.tar.xz:
#       source .devbundle/setup.sh && bash benchmarks/device/batch_run.sh start 500
#   call 2, carrying .devbundle/setup.sh and .devbundle/site312-media.tar.xz (the batch waits for this part):
#       source .devbundle/setup.sh && bash benchmarks/device/batch_run.sh watch 520
#   call 3 and on, carrying .devbundle/setup.sh: the same `watch`, until it says the job ended
# With BATCH_RUN_HOLD=1 on `start`, the batch waits after the warm-up for a `go SECONDS` call (a watch that first
# copies its checkout over the job's).
#
# `start` copies this checkout to /tmp/vf-batch/repo (a later call's copy of the working tree may be rewritten while
# the job reads it) and starts the job; `watch SECONDS` waits up to SECONDS for the job to end, then prints the
# end of its log and copies the log and whatever JSON it wrote so far (warm.json, throughput.json) to $OUT.
set -uo pipefail
work=/tmp/vf-batch
pass2_every=6  # the same in the warm-up and the batch: the warm-up compiles pass 2 at the lengths that ask for it
extra="${BATCH_RUN_ARGS:-}"  # more arguments for both runs, e.g. --smoke to try the script on a CPU
# BATCH_RUN_KEYS=1: both runs log every compile-cache key they compute (TORCH_LOGS_OUT, kept out of the job's log),
# and the job ends by comparing them (cache_keys.py: which parts of the keys the batch met were new to the warm-up);
# a watch before the end compares what the logs hold so far (keys-so-far.json).
keys="${BATCH_RUN_KEYS:-0}"
# BATCH_RUN_HOLD=1: after the warm-up the batch waits for `go`, which first copies this checkout over the job's copy
# (a change made while the warm-up ran is what the batch runs).
hold="${BATCH_RUN_HOLD:-0}"
# BATCH_RUN_WARM=0: no warm-up; the batch starts from empty compile caches (its workers compile on their first calls,
# which the after-warm-up figures leave out, and at each new length).
warm="${BATCH_RUN_WARM:-1}"

watch() {
    local deadline=$((SECONDS + $1))
    while [ ! -f "$work/exit" ] && [ "$SECONDS" -lt "$deadline" ]; do sleep 5; done
    tail -n 40 "$work/log"
    if [ -f "$work/exit" ]; then echo "batch_run: the job ended, exit $(cat "$work/exit")"; else echo "batch_run: still running"; fi
    if [ ! -f "$work/keys.json" ] && [ -f "$work/keys-warm.log" ] && [ -f "$work/keys-batch.log" ]; then
        python3 "$work/repo/benchmarks/device/cache_keys.py" "$work/keys-warm.log" "$work/keys-batch.log" \
            --out "$work/keys-so-far.json" >/dev/null
    fi
    if [ -n "${OUT:-}" ]; then
        cp "$work/log" "$OUT/batch_run.log"
        for name in warm.json throughput.json keys.json keys-so-far.json; do
            [ -f "$work/$name" ] && cp "$work/$name" "$OUT/"
        done
    fi
    return 0
}

copy_checkout() {  # this call's checkout over the job's copy (never the bundle or git's folder)
    mkdir -p "$work/repo"
    tar --exclude=./.devbundle --exclude=./.git -cf - . | tar -C "$work/repo" -xf -
}

case "${1:-}" in
start)
    rm -rf "$work" && copy_checkout
    [ "$hold" = 1 ] || touch "$work/go"
    cd "$work/repo" || exit 1
    setsid nohup bash -c "
        export PYTHONUNBUFFERED=1
        run() {  # run NAME ARGS...: one throughput.py run; with keys on, its cache keys go to $work/keys-NAME.log
            local name=\$1; shift
            if [ $keys != 1 ]; then python3 benchmarks/throughput.py \"\$@\"; return; fi
            TORCH_LOGS=+torch._inductor.codecache,+torch._functorch._aot_autograd.autograd_cache \\
                TORCH_LOGS_OUT=$work/keys-\$name.log python3 benchmarks/throughput.py \"\$@\" 2>&1 \\
                | grep --line-buffered -aEv '[VDI][0-9]{4} [0-9:.]+ +[0-9]+ .*(codecache|autograd_cache)[.]py:[0-9]+[]]'
            return \${PIPESTATUS[0]}
        }
        if [ $warm = 1 ]; then
            run warm --warm --pass2-every $pass2_every --keep $work/tp --out $work/warm.json $extra \\
                || { echo \$? > $work/exit; exit; }
            echo 'batch_run: warm-up done; the batch waits for the media packages and for go'
        fi
        until [ -f /tmp/site312/.unpacked-media ] && [ -f $work/go ]; do sleep 5; done
        echo 'batch_run: media packages there, starting the batch'
        run batch --pass2-every $pass2_every --keep $work/tp --out $work/throughput.json $extra
        status=\$?
        [ $keys = 1 ] && [ $warm = 1 ] && python3 benchmarks/device/cache_keys.py $work/keys-warm.log $work/keys-batch.log --out $work/keys.json
        echo \$status > $work/exit
    " >"$work/log" 2>&1 </dev/null &
    cd - >/dev/null || exit 1
    watch "${2:-500}"
    ;;
watch)
    [ -d "$work" ] || { echo "batch_run: no job on this machine (a fresh machine: start again)" >&2; exit 1; }
    watch "${2:-560}"
    ;;
go)
    [ -d "$work" ] || { echo "batch_run: no job on this machine (a fresh machine: start again)" >&2; exit 1; }
    [ -f "$work/go" ] && { echo "batch_run: the batch was already let go" >&2; exit 1; }
    copy_checkout && touch "$work/go" && echo "batch_run: this checkout copied; the batch goes"
    watch "${2:-560}"
    ;;
*)
    echo "usage: batch_run.sh start|watch|go [SECONDS]" >&2
    exit 2
    ;;
esac
