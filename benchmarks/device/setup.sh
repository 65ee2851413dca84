# voidflow device bundle: `source .devbundle/setup.sh` from the repo root on the GPU machine.
# Unpacks the CPython 3.12 site-packages (ray, prefect, prefect-ray, diffusers, sqlalchemy, alembic, OTIO + adapters,
# ffmpeg-python, google-genai, ...; torch/numpy/transformers/opencv/pyarrow come from the machine's own python3)
# into /tmp/site312 and static-ish ffmpeg/ffprobe 5.1.9 (+ their libav* libs, rpath $ORIGIN/lib) into /tmp/ffbin,
# then exports PYTHONPATH, PATH and a private PREFECT_HOME.
_vf_bundle="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")" && pwd)"
if [ ! -f /tmp/site312/.unpacked ]; then
    rm -rf /tmp/site312 && mkdir -p /tmp/site312 \
        && tar -C /tmp/site312 -xJf "$_vf_bundle/site312.tar.xz" && touch /tmp/site312/.unpacked \
        || { echo "setup.sh: could not unpack site312.tar.xz" >&2; return 1 2>/dev/null || exit 1; }
fi
if [ ! -x /tmp/ffbin/ffmpeg ]; then
    rm -rf /tmp/ffbin && mkdir -p /tmp/ffbin \
        && tar -C /tmp/ffbin -xJf "$_vf_bundle/ffmpeg.tar.xz" \
        || { echo "setup.sh: could not unpack ffmpeg.tar.xz" >&2; return 1 2>/dev/null || exit 1; }
fi
export PYTHONPATH="/tmp/site312:$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PATH="/tmp/ffbin:$PATH"
export PREFECT_HOME="$(mktemp -d /tmp/prefect-home.XXXXXX)"
export PREFECT_SERVER_ANALYTICS_ENABLED=false RAY_USAGE_STATS_ENABLED=0 DO_NOT_TRACK=1
unset _vf_bundle
