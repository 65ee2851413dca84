# voidflow device bundle: `source .devbundle/setup.sh` from the repo root on the GPU machine.
# Unpacks the CPython 3.12 site-packages into /tmp/site312, from whichever parts this call carried:
#   site312-core.tar.xz  (ray, prefect, prefect-ray, diffusers, sqlalchemy, alembic, OTIO + adapters, google-genai, ...)
#   site312-media.tar.xz (PyAV with its FFmpeg libraries, OpenImageIO, PyOpenColorIO)
# Together they are over a call's 64 MiB, so two calls on one warm machine carry one part each; /tmp keeps the
# first part for the second. torch/numpy/transformers/opencv/pyarrow come from the machine's own python3.
# Then exports PYTHONPATH and a private PREFECT_HOME, and says which parts are there.
_vf_bundle="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")" && pwd)"
mkdir -p /tmp/site312
for _vf_part in core media; do
    if [ -f "$_vf_bundle/site312-$_vf_part.tar.xz" ] && [ ! -f "/tmp/site312/.unpacked-$_vf_part" ]; then
        tar -C /tmp/site312 -xJf "$_vf_bundle/site312-$_vf_part.tar.xz" && touch "/tmp/site312/.unpacked-$_vf_part" \
            || { echo "setup.sh: could not unpack site312-$_vf_part.tar.xz" >&2; return 1 2>/dev/null || exit 1; }
    fi
    [ -f "/tmp/site312/.unpacked-$_vf_part" ] && echo "setup.sh: $_vf_part packages in /tmp/site312" \
        || echo "setup.sh: no $_vf_part packages yet (carry .devbundle/site312-$_vf_part.tar.xz)" >&2
done
export PYTHONPATH="/tmp/site312:$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PREFECT_HOME="$(mktemp -d /tmp/prefect-home.XXXXXX)"
export PREFECT_SERVER_ANALYTICS_ENABLED=false RAY_USAGE_STATS_ENABLED=0 DO_NOT_TRACK=1
unset _vf_bundle _vf_part
