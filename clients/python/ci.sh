#!/usr/bin/env bash
# The Python client's CI: build the wheel, install it into a fresh venv for the oldest and the
# newest Python on the machine (it must pull in no dependency), run `mypy --strict` on the
# package, the examples and the tests, and run pytest against a real ferryd built by cargo.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cd "$repo"
start=$SECONDS

# Interpreters: every pyenv Python and the system's, at least 3.9; the oldest and the newest.
mapfile -t pythons < <(
  for p in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.*/bin/python /usr/bin/python3 /usr/local/bin/python3; do
    [ -x "$p" ] || continue
    "$p" -c 'import sys; v = sys.version_info; sys.exit(0 if v >= (3, 9) else 1); ' 2>/dev/null || continue
    "$p" -c 'import sys, venv; print("%d %d %s" % (sys.version_info[0], sys.version_info[1], sys.argv[1]))' "$p"
  done | sort -n -k1,1 -k2,2 | awk '!seen[$1" "$2]++ {print $3}'
)
if [ "${#pythons[@]}" -lt 2 ]; then
  echo "python client: need two Python versions >= 3.9 (oldest and newest) to test against; found ${#pythons[@]}" >&2
  exit 1
fi
oldest="${pythons[0]}"
newest="${pythons[${#pythons[@]}-1]}"
if ! "$newest" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)'; then
  echo "python client: the newest Python found ($newest) is older than 3.12; install a newer one (pyenv)" >&2
  exit 1
fi

echo "python client: testing on $oldest and $newest"

# The daemon the tests start (each test runs its own with --socket and --state-dir in a temp dir).
cargo build --bin ferryd --bin ferry
target_dir="$(cargo metadata --format-version 1 --no-deps | "$newest" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
export FERRY_BIN_DIR="$target_dir/debug"

work="$(mktemp -d /tmp/ferry-python-ci.XXXXXX)"
trap 'rm -rf "$work"' EXIT

# The wheel, built from the repository (pip fetches the build backend into an isolated env).
"$newest" -m venv "$work/build"
"$work/build/bin/python" -m pip wheel --quiet --no-deps --wheel-dir "$work/dist" "$here"
wheel="$(ls "$work"/dist/ferry_client-*.whl)"
echo "python client: built $(basename "$wheel")"

status=0
for py in "$oldest" "$newest"; do
  version="$("$py" -c 'import platform; print(platform.python_version())')"
  venv="$work/venv-$version"
  "$py" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet "$wheel"
  # Zero runtime dependencies: the venv holds the package and what venv itself installs.
  extra="$("$venv/bin/python" -m pip list --format=freeze | grep -v -i -E '^(pip|setuptools|ferry[-_]client)==' || true)"
  if [ -n "$extra" ]; then
    echo "python client ($version): installing the wheel pulled in dependencies: $extra" >&2
    exit 1
  fi
  "$venv/bin/python" -m pip install --quiet mypy pytest
  (cd "$here" && "$venv/bin/python" -m mypy --strict --no-incremental -p ferry_client && "$venv/bin/python" -m mypy --strict --no-incremental examples tests)
  set +e
  (cd "$here" && "$venv/bin/python" -m pytest tests -q -p no:cacheprovider -o console_output_style=classic)
  rc=$?
  set -e
  if [ "$rc" -eq 5 ]; then
    echo "python client ($version): pytest collected no tests" >&2
    exit 1
  fi
  if [ "$rc" -ne 0 ]; then
    echo "python client ($version): pytest failed (exit code $rc)" >&2
    status=1
  fi
done
echo "python client: done in $((SECONDS - start)) s"
exit "$status"
