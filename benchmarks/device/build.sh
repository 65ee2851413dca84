#!/usr/bin/env bash
# usage: benchmarks/device/build.sh [OUT_DIR]   (default: .devbundle, ignored by git)
# Builds the GPU machine's offline bundle from MANIFEST.txt (README.md beside this file says why and how it is used):
# CPython 3.12 manylinux x86_64 wheels of every pinned package, installed with --target and no dependencies, trimmed
# (trim.sh), every ELF stripped, then packed as two xz parts that fit one call's carry each, plus setup.sh.
# Needs pip (from any Python), PyPI, binutils' strip and xz. About 4 minutes on two cores.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="$(realpath -m "${1:-$root/.devbundle}")"
site="$(mktemp -d /tmp/site312.XXXXXX)"
trap 'rm -rf "$site"' EXIT
pip="${PIP:-$root/.venv/bin/pip}"
[ -x "$pip" ] || pip="pip3"
# the media part: PyAV (with its FFmpeg libraries), OpenImageIO, PyOpenColorIO, their bundled libraries and metadata
media=(av av.libs OpenImageIO PyOpenColorIO av-*.dist-info openimageio-*.dist-info opencolorio-*.dist-info)

platforms=()
for minor in $(seq 5 39); do platforms+=(--platform "manylinux_2_${minor}_x86_64"); done
platforms+=(--platform manylinux1_x86_64 --platform manylinux2010_x86_64 --platform manylinux2014_x86_64)

echo "build.sh: installing $(grep -c '==' "$here/MANIFEST.txt") packages into $site"
"$pip" install --quiet --target "$site" --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" -r <(grep "==" "$here/MANIFEST.txt") 2> >(grep -v "^WARNING: Location" >&2)
bash "$here/trim.sh" "$site"
find "$site" -type f \( -name '*.so' -o -name '*.so.*' -o -perm -u+x \) -print0 \
    | xargs -0 -r sh -c 'for f; do head -c 4 "$f" | grep -q ELF && strip --strip-unneeded "$f" 2>/dev/null; done; true' _

mkdir -p "$out"
cd "$site"
in_media=()
for pattern in "${media[@]}"; do
    for path in $pattern; do [ -e "$path" ] && in_media+=("$path"); done
done
[ "${#in_media[@]}" = "${#media[@]}" ] || { echo "build.sh: media part incomplete: ${in_media[*]}" >&2; exit 1; }
echo "build.sh: media part: ${in_media[*]}"
tar -cf - "${in_media[@]}" | xz -9 -T0 >"$out/site312-media.tar.xz.part"
ls -A | grep -vxF -f <(printf '%s\n' "${in_media[@]}") | tar -cf - -T - | xz -9 -T0 >"$out/site312-core.tar.xz.part"
mv "$out/site312-media.tar.xz.part" "$out/site312-media.tar.xz"
mv "$out/site312-core.tar.xz.part" "$out/site312-core.tar.xz"
cp "$here/setup.sh" "$out/setup.sh"
du -h "$out"/site312-*.tar.xz
