#!/bin/sh
# pip install ./clients/python works offline (Debian's setuptools, no build
# isolation) and the installed package passes the tests against corrald.
#   install.sh PYTHON SRC_DIR CORRALD QEMU
set -eu
py=$1 src=$2 corrald=$(realpath "$3") qemu=$4
tmp=$(mktemp -d /tmp/corral-pip-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
# A copy: the build writes build/ and *.egg-info beside pyproject.toml.
cp -r "$src" "$tmp/src"
rm -rf "$tmp/src/build" "$tmp/src"/*.egg-info
"$py" -m pip install --quiet --no-build-isolation --no-deps --no-index \
	--target "$tmp/site" "$tmp/src" 2>&1 | grep -v "Running pip as the 'root' user" || true
test -f "$tmp/site/corral/__init__.py" || { echo "pip did not install the package"; exit 1; }
cd "$tmp"
CORRALTEST_DIR=$(cd "$src/../../tests/daemon" && pwd)
export CORRALTEST_DIR
CORRAL_PY_INSTALLED=1 PYTHONPATH="$tmp/site" "$py" "$tmp/src/tests/test_corral.py" "$corrald" "$qemu"
PYTHONPATH="$tmp/site" "$py" -c 'import corral, os; assert corral.__file__.startswith(os.environ["PYTHONPATH"]), corral.__file__; print("ok: imported from", os.path.dirname(corral.__file__))'
