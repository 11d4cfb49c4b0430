# Sourced by the scripts: where builds and tools are cached, outside the
# clone, so a second run (and CI with a warm cache) skips the slow builds.
export WEIR_CACHE="${WEIR_CACHE:-$HOME/.cache/weir}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$WEIR_CACHE/target}"
export PATH="$WEIR_CACHE/tools/bin:$PATH"
