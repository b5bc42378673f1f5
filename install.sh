#!/usr/bin/env bash
# Install everything the suite needs on a fresh Debian/Ubuntu machine: Debian's Fashion-MNIST and venv
# support through apt (as root, or with sudo), then the pinned Python packages into .venv, which every
# command in README runs from. The system Python is never touched (PEP 668).
set -euo pipefail
cd "$(dirname "$0")"
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
packages=()
# --with-browser adds Chromium, which the gallery test renders pages in (CI asks for it). --search-only installs
# what indexing and search need, without TensorFlow, for a model trained elsewhere. VENV names the venv (.venv).
browser=no search_only=no
for option in "$@"; do
  case "$option" in
    --with-browser) browser=yes ;;
    --search-only) search_only=yes ;;
    *) echo "install.sh: unknown option $option (--with-browser, --search-only)" >&2; exit 2 ;;
  esac
done
venv="${VENV:-.venv}"
[ "$browser" = yes ] && ! command -v chromium >/dev/null && packages+=(chromium)
[ "$search_only" = yes ] || [ -d /usr/share/datasets/fashion-mnist ] || packages+=(dataset-fashion-mnist)
# Debian and Ubuntu ship venv's ensurepip separately, as python3-venv.
python3 -c "import ensurepip, venv" 2>/dev/null || packages+=(python3-venv)
if [ "${#packages[@]}" -gt 0 ]; then
  as_root apt-get update -qq
  # A machine whose last package install was interrupted refuses new ones until that one is finished.
  as_root dpkg --configure -a >/dev/null 2>&1 || as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -f >/dev/null
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
fi
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
requirements=requirements.txt
[ "$search_only" = yes ] && requirements=requirements-search.txt
"$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$requirements"
# The imsearch package itself, editable, so the benchmarks and your own scripts can import it from anywhere.
"$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps -e .
