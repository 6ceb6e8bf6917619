# Asterisk 22 built by the harness's own script from ../shared/peers/asterisk (the tarballs
# and build.sh that `make test` uses); not run by CI (docs/testing.md).
FROM debian:bookworm
COPY --from=shared peers/asterisk /src/asterisk
RUN apt-get update \
    && PREFIX=/opt/asterisk WORK=/tmp/asterisk-build /src/asterisk/build.sh deps prep configure build install \
    && rm -rf /tmp/asterisk-build /var/lib/apt/lists/*
