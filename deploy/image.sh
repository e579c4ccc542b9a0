#!/bin/sh
# The container image's two steps, in one place: the Dockerfile runs them,
# `make wheel` runs the first, and tests/test_deploy.py runs the second in
# a fresh virtualenv, so what the tests check is what the image does.
#
#   deploy/image.sh wheel OUT_DIR    build the release wheel into OUT_DIR
#   deploy/image.sh install WHEEL_DIR
#                                    install the wheel found in WHEEL_DIR
#                                    (with its dependencies) into the Python
#                                    on PATH
set -eu

case "${1:-}" in
wheel)
    out=${2:?"give the directory to write the wheel to"}
    python3 -m pip install -q --no-cache-dir 'maturin>=1.9.4,<2'
    rm -rf "$out"
    python3 -m maturin build --release -q -o "$out"
    ;;
install)
    dir=${2:?"give the directory that holds the wheel"}
    set -- "$dir"/aiotest-*.whl
    if [ ! -f "$1" ]; then
        echo "deploy/image.sh: no aiotest wheel in $dir: run 'deploy/image.sh wheel $dir' first" >&2
        exit 2
    fi
    python3 -m pip install -q --no-cache-dir "$1"
    aiotest --version
    ;;
*)
    echo "usage: deploy/image.sh wheel OUT_DIR | install WHEEL_DIR" >&2
    exit 2
    ;;
esac
