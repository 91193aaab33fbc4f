#!/bin/bash
# Build times and sizes of the runtime and of environment images, with podman, cold (no layer
# cache), on the local Debian base with Debian's R (`cargo xtask containers` makes both images
# and the repository). The runtime's context is rendered by the production code (the
# `runtime_context` example, for rocker/r-ver and Posit Package Manager), then pointed at the
# local base and repository.
#
#   bash xtask/images/measure.sh <starburst_*_R_*.tar.gz> <repository URL> [runtime builds]
#
# The binary package: `Rscript -e 'cat(starburst:::pack_installed_package())'` with R_LIBS
# naming the library to pack. The repository: `python3 xtask/images/repo_server.py --dir
# $CARGO_TARGET_DIR/podman/repo --sysreqs $CARGO_TARGET_DIR/podman/repo/sysreqs.json`.
set -euo pipefail
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/starburst/target}
export CONTAINERS_CONF=$CARGO_TARGET_DIR/podman/containers.conf
PKG=$1
PM=$2
REPS=${3:-3}
cd "$(dirname "$0")/../.."
secs() { local s e; s=$(date +%s.%N); "$@" > /tmp/sb-measure.log 2>&1; e=$(date +%s.%N); echo "$e - $s" | bc; }
for i in $(seq 1 "$REPS"); do
  ctx=$(mktemp -d)
  cargo run -q -p starburst-provision --example runtime_context -- --r-version 4.2.2 --arch amd64 \
    --starburst-version 0.1.0 --package "$PKG" "$ctx" > /dev/null
  sed -i "s#rocker/r-ver:4.2.2#localhost/starburst/r:bookworm#; s#https://packagemanager.posit.co/cran/__linux__/jammy/latest#$PM/cran/__linux__/bookworm/latest#g" "$ctx/Dockerfile"
  echo "runtime build $i: $(secs podman build --no-cache --network host -t sbrt:fig "$ctx") s"
  rm -rf "$ctx"
done
podman image inspect --format '{{.Size}}' sbrt:fig | awk '{printf "runtime: %.0f MB uncompressed\n", $1/1e6}'
podman image inspect --format '{{.Size}}' localhost/starburst/r:bookworm | awk '{printf "  of which the base with R: %.0f MB\n", $1/1e6}'
# Compressed sizes, layer by layer, as a registry stores them (gzip -6) and as zstd -3.
out=$(mktemp -d)
podman push -q sbrt:fig "dir:$out/rt"
gz=0; zs=0
for f in "$out"/rt/*; do
  [ "$(stat -c %s "$f")" -gt 10000 ] || continue
  gz=$((gz + $(gzip -6 -c "$f" | wc -c))); zs=$((zs + $(zstd -3 -q -c "$f" | wc -c)))
done
echo "runtime compressed: gzip $((gz / 1000000)) MB, zstd $((zs / 1000000)) MB"
rm -rf "$out"
for set in "data.table xml2" "data.table xml2 R6 magrittr glue stringi zoo digest yaml Rcpp"; do
  ctx=$(mktemp -d)
  sed -e "s#{{tag}}#fig#; s#{{runtime}}#sbrt:fig#g; s#{{library}}#/opt/starburst/library#g" \
    templates/environment.Dockerfile > "$ctx/Dockerfile"
  PKGS="$set" PM=$PM Rscript -e 'pk <- strsplit(Sys.getenv("PKGS"), " ")[[1]]; pm <- Sys.getenv("PM")
    m <- list(packages = lapply(pk, function(p) list(name = p, version = packageDescription(p)$Version,
                                                    source = list(type = "repository", name = "CRAN"))),
              repositories = list(CRAN = paste0(pm, "/cran/__linux__/bookworm/latest")),
              distribution = list(name = "debian", release = "12", codename = "bookworm"),
              sysreqs = list(url = paste0(pm, "/__api__/repos/cran/sysreqs")))
    writeLines(jsonlite::toJSON(m, auto_unbox = TRUE), file.path(commandArgs(TRUE)[1], "manifest.json"))' "$ctx"
  n=$(echo "$set" | wc -w)
  for i in 1 2 3; do
    echo "environment of $n packages, build $i: $(secs podman build --no-cache --network host -t "sbenv:fig$n" "$ctx") s"
  done
  podman image inspect --format '{{.Size}}' "sbenv:fig$n" | awk -v n="$n" '{printf "environment of %d packages: %.0f MB uncompressed\n", n, $1/1e6}'
  rm -rf "$ctx"
done
podman rmi -f sbrt:fig sbenv:fig2 sbenv:fig10 > /dev/null
