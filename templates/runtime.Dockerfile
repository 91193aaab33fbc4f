# starburst runtime {{tag}}: R, starburst {{starburst_version}} (R package and worker binary)
# and the R packages starburst needs. Every environment of this R version and architecture
# builds on it, and in sync mode workers run it as it is. Rendered by starburst-provision from
# templates/runtime.Dockerfile. Build context: this Dockerfile and {{package}}, starburst's
# binary package for linux/{{arch}} (from a release, or built once by templates/package.Dockerfile):
# nothing here compiles.
FROM --platform=linux/{{arch}} {{base}}
# zstd and tar unpack environment archives (sync mode); ca-certificates for HTTPS repositories.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates zstd tar \
    && apt-get clean && rm -rf /var/lib/apt/lists/*
# starburst's R dependencies as binaries from {{repository}}, then starburst itself (mounted
# for the step, so the package file is not a layer of the image).
RUN --mount=type=bind,source={{package}},target=/tmp/{{package}} \
    Rscript -e 'options(warn = 2); install.packages(c({{imports}}), lib = "{{site_library}}", repos = c(CRAN = "{{repository}}"), type = "source")' \
    && R CMD INSTALL --library={{site_library}} /tmp/{{package}} \
    && Rscript -e 'library(starburst, lib.loc = "{{site_library}}"); cat("starburst", format(packageVersion("starburst")), "on", R.version.string, "\n")'
LABEL org.opencontainers.image.title="starburst runtime" \
      io.starburst.runtime="{{tag}}" \
      io.starburst.version="{{starburst_version}}"
ENV STARBURST_RUNTIME={{tag}}
WORKDIR /opt/starburst
ENTRYPOINT ["{{site_library}}/starburst/bin/starburst-worker"]
