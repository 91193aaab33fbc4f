# starburst's binary R package for linux/<arch>, built from its source tarball (the Rust crates
# are vendored in it, so the build is offline). For a runtime where no published one exists:
# run once per account and architecture, e.g.
#   docker buildx build --platform linux/arm64 --build-arg R_VERSION=4.4.1 \
#     --build-arg TARBALL=starburst_0.1.0.tar.gz --output type=local,dest=out .
# and pass out/starburst_*_R_*.tar.gz as option starburst.runtime_package.
ARG R_VERSION=4.4.1
FROM rust:1-slim-bookworm AS rust

FROM rocker/r-ver:${R_VERSION} AS build
ARG TARBALL
COPY --from=rust /usr/local/cargo /usr/local/cargo
COPY --from=rust /usr/local/rustup /usr/local/rustup
ENV RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo CARGO_NET_OFFLINE=true \
    PATH=/usr/local/cargo/bin:$PATH
RUN apt-get update && apt-get install -y --no-install-recommends binutils \
    && rm -rf /var/lib/apt/lists/*
RUN Rscript -e 'install.packages(c("cli", "future", "jsonlite", "parallelly"))'
COPY ${TARBALL} /tmp/${TARBALL}
WORKDIR /out
RUN R CMD INSTALL --build --strip /tmp/${TARBALL}

FROM scratch
COPY --from=build /out/ /
