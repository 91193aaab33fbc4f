# starburst environment {{tag}}: the runtime {{runtime}} and the environment's packages,
# restored from binaries by the manifest (image mode; in sync mode workers restore the same
# manifest themselves). Rendered by starburst-provision from templates/environment.Dockerfile.
# Build context: this Dockerfile and manifest.json. Nothing here compiles starburst.
FROM {{runtime}}
COPY manifest.json /opt/starburst/environment/manifest.json
RUN Rscript -e 'starburst:::restore_environment("/opt/starburst/environment/manifest.json", "{{library}}")'
ENV R_LIBS={{library}}
LABEL org.opencontainers.image.title="starburst environment" \
      io.starburst.environment="{{tag}}"
